//! Every ISA against a naive byte-at-a-time oracle, with inputs shifted across every chunk offset.

use proptest::prelude::*;

use super::{Event, Isa, Want};

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Naive oracle: walk bytes, build stretches (digits joined by single space/dash followed by a digit).
fn oracle(input: &[u8], want: Want) -> Vec<Event> {
    let mut ev = Vec::new();
    if want.min_stretch > 0 {
        let mut i = 0;
        while i < input.len() {
            if !is_digit(input[i]) {
                i += 1;
                continue;
            }
            let s = i;
            loop {
                while i < input.len() && is_digit(input[i]) {
                    i += 1;
                }
                if i + 1 < input.len()
                    && (input[i] == b' ' || input[i] == b'-')
                    && is_digit(input[i + 1])
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let digits = input[s..i].iter().filter(|b| b.is_ascii_digit()).count();
            if i - s >= want.min_stretch && digits >= want.min_digits as usize {
                ev.push(Event::Stretch(s, i));
            }
        }
    }
    for i in 0..input.len() {
        if want.iban
            && i + 3 < input.len()
            && input[i].is_ascii_uppercase()
            && input[i + 1].is_ascii_uppercase()
            && is_digit(input[i + 2])
            && is_digit(input[i + 3])
        {
            ev.push(Event::Iban(i));
        }
        if want.at && input[i] == b'@' {
            ev.push(Event::At(i));
        }
    }
    ev.sort();
    ev
}

fn run(isa: Isa, input: &[u8], want: Want) -> Vec<Event> {
    let mut ev = Vec::new();
    isa.scan(input, want, &mut |e| ev.push(e));
    ev.sort();
    ev
}

const WANTS: [Want; 3] = [
    Want {
        min_stretch: 13,
        min_digits: 13,
        iban: false,
        at: false,
    },
    Want {
        min_stretch: 11,
        min_digits: 9,
        iban: true,
        at: true,
    },
    Want {
        min_stretch: 16,
        min_digits: 0,
        iban: true,
        at: false,
    },
];

fn check_all(input: &[u8]) {
    for want in WANTS {
        let expect = oracle(input, want);
        for isa in Isa::available() {
            assert_eq!(run(isa, input, want), expect, "isa {isa:?} want {want:?}");
        }
    }
}

#[test]
fn fixed_cases_at_every_offset() {
    let seeds: [&[u8]; 6] = [
        b"4111 1111 1111 1111",
        b"4111111111111111",
        b"1-2-3-4-5-6-7-8-9-0-1-2-3",
        b"DE89370400440532013000 a@b.cc",
        b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        b"1 -2  3--4 5",
    ];
    for seed in seeds {
        for pad in 0..130 {
            let mut v = vec![b'x'; pad];
            v.extend_from_slice(seed);
            v.extend_from_slice(b"y");
            check_all(&v);
            let mut w = vec![b'7'; pad];
            w.extend_from_slice(seed);
            check_all(&w);
        }
    }
    check_all(b"");
    check_all(&[b'5'; 64]);
    check_all(&[b'5'; 128]);
    check_all(&[b'5'; 12]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn isa_matches_oracle(input in proptest::collection::vec(
        prop_oneof![
            6 => b'0'..=b'9',
            2 => Just(b' '),
            2 => Just(b'-'),
            1 => Just(b'@'),
            2 => b'A'..=b'Z',
            1 => any::<u8>(),
        ],
        0..400,
    )) {
        check_all(&input);
    }
}
