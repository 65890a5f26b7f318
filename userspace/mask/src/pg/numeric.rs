//! PostgreSQL binary `numeric`: base-10000 digit groups ⇄ decimal text.
//!
//! Wire layout (big-endian): `ndigits i16, weight i16, sign u16, dscale u16`, then `ndigits` × `i16`
//! groups, each 0..=9999; the first group is worth `10000^weight`.

use crate::MaskError;

const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;

/// A decoded numeric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    /// NaN or ±Infinity: no digits to mask.
    Special,
    /// A finite number.
    Finite {
        /// Sign.
        neg: bool,
        /// Integer part, no leading zeros (`"0"` for zero).
        int: String,
        /// Fractional part, exactly `dscale` digits.
        frac: String,
        /// Display scale.
        dscale: u16,
    },
}

fn malformed(reason: &'static str) -> MaskError {
    MaskError::Malformed {
        what: "numeric",
        reason,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decode the binary form.
///
/// # Errors
/// [`MaskError::Malformed`] on a short buffer, a length that disagrees with `ndigits`, a bad sign,
/// display scale or digit group.
pub(crate) fn decode(v: &[u8]) -> Result<Numeric, MaskError> {
    if v.len() < 8 {
        return Err(malformed("shorter than its 8-byte header"));
    }
    let ndigits = be16(v, 0).cast_signed();
    let weight = be16(v, 2).cast_signed();
    let sign = be16(v, 4);
    let dscale = be16(v, 6);
    let Ok(nd) = usize::try_from(ndigits) else {
        return Err(malformed("negative digit count"));
    };
    if v.len() != 8 + 2 * nd {
        return Err(malformed("length does not match the digit count"));
    }
    if dscale > 0x3FFF {
        return Err(malformed("display scale out of range"));
    }
    match sign {
        NAN | PINF | NINF => return Ok(Numeric::Special),
        POS | NEG => {}
        _ => return Err(malformed("bad sign")),
    }
    let mut digits = Vec::with_capacity(nd);
    for k in 0..nd {
        let d = be16(v, 8 + 2 * k);
        if d > 9999 {
            return Err(malformed("digit group above 9999"));
        }
        digits.push(d);
    }
    let group = |idx: i32| -> u16 {
        usize::try_from(idx)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let w = i32::from(weight);
    let mut int = String::new();
    for idx in 0..=w {
        let d = group(idx);
        if int.is_empty() {
            if d != 0 {
                int.push_str(&d.to_string());
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut idx = w + 1;
    while frac.len() < usize::from(dscale) {
        frac.push_str(&format!("{:04}", group(idx)));
        idx += 1;
    }
    frac.truncate(usize::from(dscale));
    Ok(Numeric::Finite {
        neg: sign == NEG,
        int,
        frac,
        dscale,
    })
}

impl Numeric {
    /// Decimal text (`-123.45`) of a finite value.
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Numeric::Special => None,
            Numeric::Finite { neg, int, frac, .. } => {
                let mut s = String::with_capacity(int.len() + frac.len() + 2);
                if *neg {
                    s.push('-');
                }
                s.push_str(int);
                if !frac.is_empty() {
                    s.push('.');
                    s.push_str(frac);
                }
                Some(s)
            }
        }
    }
}

/// Encode decimal text (`[-]digits[.digits]`, as produced by [`Numeric::to_text`] and masked in the
/// digits alphabet) with display scale `dscale`.
///
/// # Errors
/// [`MaskError::Malformed`] if `text` is not such a decimal.
pub(crate) fn encode_text(text: &str, dscale: u16) -> Result<Vec<u8>, MaskError> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed("masked text is not a decimal"));
    }
    let int = int.trim_start_matches('0');
    let mut digits: Vec<u8> = Vec::new();
    let int_pad = (4 - int.len() % 4) % 4;
    digits.extend(std::iter::repeat_n(b'0', int_pad));
    digits.extend_from_slice(int.as_bytes());
    let int_groups = digits.len() / 4;
    digits.extend_from_slice(frac.as_bytes());
    digits.extend(std::iter::repeat_n(b'0', (4 - frac.len() % 4) % 4));
    let mut groups: Vec<u16> = digits
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0')))
        .collect();
    let mut weight = i64::try_from(int_groups).unwrap_or(i64::MAX) - 1;
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..lead);
    weight -= i64::try_from(lead).unwrap_or(0);
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = if groups.is_empty() {
        (0, POS)
    } else {
        (weight, if neg { NEG } else { POS })
    };
    let ndigits = i16::try_from(groups.len()).map_err(|_| malformed("too many digits"))?;
    let weight = i16::try_from(weight).map_err(|_| malformed("weight out of range"))?;
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str, dscale: u16) -> String {
        let enc = encode_text(text, dscale).expect("encode");
        decode(&enc).expect("decode").to_text().expect("finite")
    }

    #[test]
    fn encode_decode() {
        assert_eq!(roundtrip("4111111111111111", 0), "4111111111111111");
        assert_eq!(roundtrip("-12345.678", 3), "-12345.678");
        assert_eq!(roundtrip("0.00001234", 8), "0.00001234");
        assert_eq!(roundtrip("0000000000001111.00", 2), "1111.00");
        assert_eq!(roundtrip("-0000.00", 2), "0.00");
        assert_eq!(roundtrip("10000", 0), "10000");
        // Known wire bytes: 4111111111111111 = groups 4111 1111 1111 1111, weight 3.
        let enc = encode_text("4111111111111111", 0).expect("encode");
        assert_eq!(
            enc,
            [0, 4, 0, 3, 0, 0, 0, 0, 0x10, 0x0F, 0x04, 0x57, 0x04, 0x57, 0x04, 0x57]
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(decode(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err());
        assert!(decode(&[0, 0, 0, 0, 0x12, 0, 0, 0]).is_err());
        assert!(decode(&[0xFF, 0xFF, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!(decode(&[0, 0, 0, 0, 0xC0, 0, 0, 0]), Ok(Numeric::Special));
    }
}
