//! Every ISA against a naive byte-at-a-time oracle, with inputs shifted across every 16/32/64-byte
//! boundary.

use proptest::prelude::*;

use super::{Event, Isa, Sink, Want};

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Naive oracle: walk bytes, build stretches (digits joined by single space/dash followed by a digit),
/// check the SSN shape, IBAN starts and `@` byte by byte.
pub(crate) fn oracle(input: &[u8], want: Want) -> Vec<Event> {
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
    let at = |i: usize| input.get(i).copied().unwrap_or(0);
    let before = |i: usize, k: usize| i.checked_sub(k).map_or(0, |j| input[j]);
    for i in 0..input.len() {
        if want.ssn {
            let shape = b"ddd-dd-dddd".iter().enumerate().all(|(k, &p)| match p {
                b'd' => is_digit(at(i + k)),
                _ => at(i + k) == b'-',
            });
            let dash_group_after = at(i + 11) == b'-' && is_digit(at(i + 12));
            let dash_group_before = before(i, 1) == b'-' && is_digit(before(i, 2));
            let whole = !is_digit(at(i + 11))
                && !is_digit(before(i, 1))
                && !dash_group_after
                && !dash_group_before;
            if shape && whole {
                ev.push(Event::Ssn(i));
            }
        }
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

/// Records events and checks the [`Sink::settled`] contract: marks never decrease and no later event
/// lies before the last mark.
#[derive(Default)]
struct Checked {
    ev: Vec<Event>,
    mark: usize,
    marks: usize,
}

impl Sink for Checked {
    fn event(&mut self, e: Event) {
        let pos = match e {
            Event::Stretch(s, _) => s,
            Event::Ssn(p) | Event::Iban(p) | Event::At(p) => p,
        };
        assert!(pos >= self.mark, "{e:?} after settled({})", self.mark);
        self.ev.push(e);
    }

    fn settled(&mut self, pos: usize) {
        assert!(
            pos >= self.mark,
            "settled({pos}) after settled({})",
            self.mark
        );
        self.mark = pos;
        self.marks += 1;
    }
}

fn run(isa: Isa, input: &[u8], want: Want) -> Vec<Event> {
    let mut sink = Checked::default();
    isa.scan(input, want, &mut sink);
    if want != Want::default() {
        assert_eq!(sink.marks, input.len().div_ceil(64), "one mark per chunk");
        if want.min_stretch == 0 {
            // Without stretch events nothing is held back: each mark is the end of its chunk.
            assert_eq!(sink.mark, 64 * sink.marks, "final mark without stretches");
        } else if !input[input.len().saturating_sub(1)..]
            .iter()
            .any(|b| b.is_ascii_digit())
        {
            // No stretch reaches the end of the input, so nothing before the last chunk is held.
            assert!(sink.mark + 64 > input.len(), "final mark {}", sink.mark);
        }
    }
    let mut ev = sink.ev;
    ev.sort();
    ev
}

const WANTS: [Want; 5] = [
    // The PAN-only masker.
    Want {
        min_stretch: 13,
        min_digits: 13,
        ssn: false,
        iban: false,
        at: false,
    },
    // The default detector set.
    Want {
        min_stretch: 13,
        min_digits: 13,
        ssn: true,
        iban: true,
        at: true,
    },
    // Other thresholds (the run filter is generic over 8..=16).
    Want {
        min_stretch: 11,
        min_digits: 9,
        ssn: true,
        iban: true,
        at: true,
    },
    Want {
        min_stretch: 16,
        min_digits: 0,
        ssn: false,
        iban: true,
        at: false,
    },
    // Shape events only.
    Want {
        min_stretch: 0,
        min_digits: 0,
        ssn: true,
        iban: false,
        at: true,
    },
];

fn check_all(input: &[u8]) {
    for want in WANTS {
        let expect = oracle(input, want);
        for isa in Isa::available() {
            assert_eq!(
                run(isa, input, want),
                expect,
                "isa {isa:?} want {want:?} input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn every_isa_is_tested() {
    let isas = Isa::available();
    assert!(isas.contains(&Isa::Scalar));
    #[cfg(target_arch = "x86_64")]
    {
        assert!(isas.contains(&Isa::Sse2));
        assert_eq!(
            isas.contains(&Isa::Avx2),
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("popcnt")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("lzcnt")
        );
        assert_eq!(
            isas.contains(&Isa::Avx512),
            isas.contains(&Isa::Avx2) && std::is_x86_feature_detected!("avx512bw")
        );
        assert!(isas.contains(&Isa::detect()));
    }
}

#[test]
fn fixed_cases_at_every_offset() {
    let seeds: [&[u8]; 16] = [
        b"4111 1111 1111 1111",
        b"4111111111111111",
        b"1-2-3-4-5-6-7-8-9-0-1-2-3",
        b"DE89370400440532013000 a@b.cc",
        b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        b"1 -2  3--4 5",
        b"123-45-6789",
        b"12-123-45-6789",
        b"123-45-6789-1",
        b"123-45-6789-",
        b"-123-45-6789 1",
        b"1 123-45-6789 1234",
        b"1234-45-6789 123-456-6789 123-45-67890 123-4-56789",
        b"2024-03-04 10:05:00,+1 555-123-4567,ORD-00012345",
        b"123-45-6789123-45-6789 123-45-6789-123-45-6789",
        b"AB12 XY9 @ Q1 ZZ99",
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
            let mut z = vec![b'-'; pad];
            z.extend_from_slice(seed);
            z.extend_from_slice(b"-9");
            check_all(&z);
        }
    }
    check_all(b"");
    check_all(&[b'5'; 64]);
    check_all(&[b'5'; 128]);
    check_all(&[b'5'; 12]);
}

/// Long stretches spanning several chunks, starting and ending at every offset.
#[test]
fn stretches_spanning_chunks() {
    for len in [12, 13, 63, 64, 65, 127, 128, 129, 200] {
        for pad in 0..66 {
            let mut v = vec![b'a'; pad];
            v.extend((0..len).map(|i| {
                if i % 5 == 4 {
                    b' '
                } else {
                    b'0' + (i % 10) as u8
                }
            }));
            if v.last() == Some(&b' ') {
                v.push(b'1');
            }
            check_all(&v);
            v.extend_from_slice(b"-1");
            check_all(&v);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn isa_matches_oracle(input in proptest::collection::vec(
        prop_oneof![
            6 => b'0'..=b'9',
            2 => Just(b' '),
            3 => Just(b'-'),
            1 => Just(b'@'),
            2 => b'A'..=b'Z',
            1 => any::<u8>(),
        ],
        0..400,
    )) {
        check_all(&input);
    }

    /// Realistic SSN-dense input: `ddd-dd-dddd`-like tokens of jittered lengths.
    #[test]
    fn ssn_shapes_match_oracle(tokens in proptest::collection::vec(
        (1usize..5, 1usize..4, 3usize..6, prop_oneof![Just(b'-'), Just(b' '), Just(b','), Just(b'7')]),
        0..40,
    )) {
        let mut v = Vec::new();
        for (a, b, c, sep) in tokens {
            v.extend(std::iter::repeat_n(b'3', a));
            v.push(b'-');
            v.extend(std::iter::repeat_n(b'4', b));
            v.push(b'-');
            v.extend(std::iter::repeat_n(b'5', c));
            v.push(sep);
        }
        check_all(&v);
    }
}
