//! PostgreSQL value awareness: mask one column value of a `DataRow` (or COPY data) so that the result
//! still decodes as its type in the client.
//!
//! | type (OID)                                | text format                          | binary format                                  |
//! |-------------------------------------------|--------------------------------------|------------------------------------------------|
//! | int2/int4/int8, money                     | digits alphabet (`0`-fill)           | big-endian integer; hit ⇒ masked integer       |
//! | numeric                                   | digits alphabet                      | base-10000 groups decoded, masked, re-encoded  |
//! | float4/float8                             | digits scan, then integral value     | integral value checked as digits               |
//! | text, varchar, bpchar, name, xml, unknown | text alphabet (`*`)                  | UTF-8 text, same                               |
//! | bytea                                     | `\x` hex or escape: decode, mask, re-encode | raw bytes                               |
//! | json, jsonb                               | `*` inside strings, numbers stay numbers | jsonb: version byte 1 + text              |
//! | arrays of the above                       | parsed, each element masked          | header + elements, each masked                 |
//! | bool, date/time, uuid, inet, oid, ...     | not rewritable: a hit is an error    | unchanged (no text inside)                     |
//! | any other type                            | text alphabet                        | raw scan, in place only, else error            |
//!
//! A column rule masks the whole value type-correctly (integers: redact ⇒ 0, last4 ⇒ the integer made
//! of the last four digits, hash ⇒ keyed digits; text: the strategy in the `*` alphabet; json: a JSON
//! string). `null` works for every type. A rule on a type that cannot carry it is an error, never a
//! pass-through.

mod copy;
mod numeric;

pub use copy::{mask_copy_data, CopyFormat, CopyKind};

use crate::strategy::{self, mac_digit, Mode};
use crate::{Finding, MaskError, Masker, Strategy};

/// PostgreSQL type OIDs this module understands (from `pg_type.dat`).
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `"char"` (single byte)
    pub const CHAR: u32 = 18;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `json`
    pub const JSON: u32 = 114;
    /// `xml`
    pub const XML: u32 = 142;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `unknown` (untyped literals)
    pub const UNKNOWN: u32 = 705;
    /// `money` (int8 cents in binary)
    pub const MONEY: u32 = 790;
    /// `bpchar` (`char(n)`)
    pub const BPCHAR: u32 = 1042;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time`
    pub const TIME: u32 = 1083;
    /// `timestamp`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `timetz`
    pub const TIMETZ: u32 = 1266;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
    /// `inet`
    pub const INET: u32 = 869;
    /// `cidr`
    pub const CIDR: u32 = 650;
    /// `macaddr`
    pub const MACADDR: u32 = 829;
    /// `bool[]`
    pub const BOOL_ARRAY: u32 = 1000;
    /// `bytea[]`
    pub const BYTEA_ARRAY: u32 = 1001;
    /// `name[]`
    pub const NAME_ARRAY: u32 = 1003;
    /// `int2[]`
    pub const INT2_ARRAY: u32 = 1005;
    /// `int4[]`
    pub const INT4_ARRAY: u32 = 1007;
    /// `text[]`
    pub const TEXT_ARRAY: u32 = 1009;
    /// `bpchar[]`
    pub const BPCHAR_ARRAY: u32 = 1014;
    /// `varchar[]`
    pub const VARCHAR_ARRAY: u32 = 1015;
    /// `int8[]`
    pub const INT8_ARRAY: u32 = 1016;
    /// `float4[]`
    pub const FLOAT4_ARRAY: u32 = 1021;
    /// `float8[]`
    pub const FLOAT8_ARRAY: u32 = 1022;
    /// `numeric[]`
    pub const NUMERIC_ARRAY: u32 = 1231;
    /// `json[]`
    pub const JSON_ARRAY: u32 = 199;
    /// `jsonb[]`
    pub const JSONB_ARRAY: u32 = 3807;
    /// `money[]`
    pub const MONEY_ARRAY: u32 = 791;
    /// `uuid[]`
    pub const UUID_ARRAY: u32 = 2951;
    /// `date[]`
    pub const DATE_ARRAY: u32 = 1182;
    /// `timestamp[]`
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    /// `timestamptz[]`
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    /// `xml[]`
    pub const XML_ARRAY: u32 = 143;
}

/// Result of masking one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaskedValue {
    /// Nothing sensitive: forward the original bytes.
    Unchanged,
    /// Forward these bytes instead (same format as the input).
    Replaced(Vec<u8>),
    /// Send SQL NULL (length -1) instead.
    Null,
}

/// How a type is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Int(usize),
    Money,
    Numeric,
    Float(usize),
    Text {
        fixed_width: bool,
    },
    Bytea,
    Json,
    Jsonb,
    /// Types that cannot carry free text (dates, uuids, bools...).
    Structured,
    Array(u32),
    Unknown,
}

fn class(type_oid: u32) -> Class {
    use oid::*;
    match type_oid {
        INT2 => Class::Int(2),
        INT4 => Class::Int(4),
        INT8 => Class::Int(8),
        MONEY => Class::Money,
        NUMERIC => Class::Numeric,
        FLOAT4 => Class::Float(4),
        FLOAT8 => Class::Float(8),
        TEXT | VARCHAR | NAME | XML | UNKNOWN | CHAR => Class::Text { fixed_width: false },
        BPCHAR => Class::Text { fixed_width: true },
        BYTEA => Class::Bytea,
        JSON => Class::Json,
        JSONB => Class::Jsonb,
        BOOL
        | OID
        | DATE
        | TIME
        | TIMETZ
        | TIMESTAMP
        | TIMESTAMPTZ
        | INTERVAL
        | UUID
        | INET
        | CIDR
        | MACADDR
        | 27..=29
        | 24
        | 2205
        | 2206
        | 3220
        | 774
        | 600 => Class::Structured,
        BOOL_ARRAY => Class::Array(BOOL),
        BYTEA_ARRAY => Class::Array(BYTEA),
        NAME_ARRAY => Class::Array(NAME),
        INT2_ARRAY => Class::Array(INT2),
        INT4_ARRAY => Class::Array(INT4),
        TEXT_ARRAY => Class::Array(TEXT),
        BPCHAR_ARRAY => Class::Array(BPCHAR),
        VARCHAR_ARRAY => Class::Array(VARCHAR),
        INT8_ARRAY => Class::Array(INT8),
        FLOAT4_ARRAY => Class::Array(FLOAT4),
        FLOAT8_ARRAY => Class::Array(FLOAT8),
        NUMERIC_ARRAY => Class::Array(NUMERIC),
        JSON_ARRAY => Class::Array(JSON),
        JSONB_ARRAY => Class::Array(JSONB),
        MONEY_ARRAY => Class::Array(MONEY),
        UUID_ARRAY => Class::Array(UUID),
        DATE_ARRAY => Class::Array(DATE),
        TIMESTAMP_ARRAY => Class::Array(TIMESTAMP),
        TIMESTAMPTZ_ARRAY => Class::Array(TIMESTAMPTZ),
        XML_ARRAY => Class::Array(XML),
        _ => Class::Unknown,
    }
}

/// Arrays may not nest (PostgreSQL has no arrays of arrays); one level of element recursion only.
const MAX_DEPTH: u8 = 1;
/// Maximum dimensions of a PostgreSQL array.
const MAX_DIMS: i32 = 6;

/// Mask one column value.
///
/// `type_oid` and `binary` come from the RowDescription; `rule` is the column rule for this column
/// ([`Masker::column_rule`]), if any. With a rule the whole value is masked; without one the content
/// detectors run with the type's alphabet.
///
/// # Errors
/// [`MaskError`] when the value cannot be masked correctly: it does not decode as its type, a rule is
/// given for a type that cannot carry it, or a hit in an unknown binary type cannot be rewritten in
/// place. The caller must then fail the statement; forwarding the value would break fail-closed.
pub fn mask_value(
    m: &Masker,
    type_oid: u32,
    binary: bool,
    value: &[u8],
    rule: Option<&Strategy>,
) -> Result<MaskedValue, MaskError> {
    mask_at_depth(m, type_oid, binary, value, rule.copied(), 0)
}

fn changed(v: Option<Vec<u8>>) -> MaskedValue {
    v.map_or(MaskedValue::Unchanged, MaskedValue::Replaced)
}

fn mask_at_depth(
    m: &Masker,
    type_oid: u32,
    binary: bool,
    value: &[u8],
    rule: Option<Strategy>,
    depth: u8,
) -> Result<MaskedValue, MaskError> {
    if rule == Some(Strategy::Null) {
        return Ok(MaskedValue::Null);
    }
    let format = if binary { "binary" } else { "text" };
    let unsupported = |strategy| MaskError::Unsupported {
        type_oid,
        format,
        strategy,
    };
    match class(type_oid) {
        Class::Int(width) => {
            let v = if binary {
                decode_int(value, width)?
            } else {
                parse_int_text(value)?
            };
            let out = match rule {
                Some(s) => Some(rule_int(m, s, v, width)),
                None => scan_int(m, v, width),
            };
            Ok(changed(out.map(|n| encode_int(n, width, binary))))
        }
        Class::Money | Class::Numeric if !binary => match rule {
            Some(s) => Ok(changed(rule_decimal_text(m, s, value)?)),
            None => Ok(changed(m.mask_mode(value, Mode::Digits))),
        },
        Class::Money => {
            let v = decode_int(value, 8)?;
            let out = match rule {
                Some(s) => Some(rule_int(m, s, v, 8)),
                None => scan_int(m, v, 8),
            };
            Ok(changed(out.map(|n| encode_int(n, 8, true))))
        }
        Class::Numeric => {
            let num = numeric::decode(value)?;
            let (Some(text), numeric::Numeric::Finite { dscale, .. }) = (num.to_text(), &num)
            else {
                return Ok(MaskedValue::Unchanged);
            };
            let masked = match rule {
                Some(s) => rule_decimal_text(m, s, text.as_bytes())?,
                None => m.mask_mode(text.as_bytes(), Mode::Digits),
            };
            match masked {
                None => Ok(MaskedValue::Unchanged),
                Some(t) => {
                    let t = String::from_utf8(t).map_err(|_| MaskError::Malformed {
                        what: "numeric",
                        reason: "masked text is not ASCII",
                    })?;
                    Ok(MaskedValue::Replaced(numeric::encode_text(&t, *dscale)?))
                }
            }
        }
        Class::Float(width) => mask_float(m, width, binary, value, rule),
        Class::Text { fixed_width } => {
            if binary && std::str::from_utf8(value).is_err() {
                return Err(MaskError::Malformed {
                    what: "text",
                    reason: "binary text value is not UTF-8",
                });
            }
            match rule {
                Some(s) => Ok(MaskedValue::Replaced(rule_text(
                    m,
                    s,
                    value,
                    fixed_width.then_some(value.len()),
                ))),
                None => Ok(changed(m.mask_mode(value, Mode::Text))),
            }
        }
        Class::Bytea => {
            let (bytes, form) = if binary {
                (std::borrow::Cow::Borrowed(value), None)
            } else {
                let (raw, form) = decode_bytea_text(value)?;
                (std::borrow::Cow::Owned(raw), Some(form))
            };
            let masked = match rule {
                Some(s) => Some(rule_text(m, s, &bytes, None)),
                None => m.mask_mode(&bytes, Mode::Text),
            };
            Ok(changed(masked.map(|b| match form {
                None => b,
                Some(f) => encode_bytea_text(&b, f),
            })))
        }
        Class::Json => mask_json_value(m, value, rule).map(changed),
        Class::Jsonb => {
            if !binary {
                return mask_json_value(m, value, rule).map(changed);
            }
            match value.split_first() {
                Some((1, text)) => Ok(changed(mask_json_value(m, text, rule)?.map(|t| {
                    let mut out = Vec::with_capacity(t.len() + 1);
                    out.push(1);
                    out.extend_from_slice(&t);
                    out
                }))),
                _ => Err(MaskError::Malformed {
                    what: "jsonb",
                    reason: "unknown binary jsonb version",
                }),
            }
        }
        Class::Structured => match rule {
            Some(s) => Err(unsupported(s)),
            None if !binary && !m.find(value).is_empty() => {
                Err(MaskError::CannotRewrite { type_oid })
            }
            None => Ok(MaskedValue::Unchanged),
        },
        Class::Array(elem) => {
            if depth >= MAX_DEPTH {
                return Err(MaskError::Malformed {
                    what: "array",
                    reason: "nested array element type",
                });
            }
            if binary {
                mask_binary_array(m, value, rule, depth + 1).map(changed)
            } else {
                mask_text_array(m, elem, value, rule, depth + 1).map(changed)
            }
        }
        Class::Unknown => match (rule, binary) {
            (Some(s), true) => Err(unsupported(s)),
            (Some(s), false) => Ok(MaskedValue::Replaced(rule_text(m, s, value, None))),
            (None, false) => Ok(changed(m.mask_mode(value, Mode::Text))),
            (None, true) => {
                let findings = m.find(value);
                if findings.is_empty() {
                    return Ok(MaskedValue::Unchanged);
                }
                let out = m.rewrite(value, &findings, |_| Mode::Text);
                if out.len() == value.len() {
                    Ok(MaskedValue::Replaced(out))
                } else {
                    Err(MaskError::CannotRewrite { type_oid })
                }
            }
        },
    }
}

impl Masker {
    /// Content-mask `input` in the given alphabet; `None` if nothing was found.
    pub(crate) fn mask_mode(&self, input: &[u8], mode: Mode) -> Option<Vec<u8>> {
        let findings = self.find(input);
        (!findings.is_empty()).then(|| self.rewrite(input, &findings, |_| mode))
    }
}

// ---------------------------------------------------------------- integers

fn decode_int(v: &[u8], width: usize) -> Result<i64, MaskError> {
    let err = MaskError::Malformed {
        what: "integer",
        reason: "binary length does not match the type width",
    };
    Ok(match width {
        2 => i64::from(i16::from_be_bytes(v.try_into().map_err(|_| err)?)),
        4 => i64::from(i32::from_be_bytes(v.try_into().map_err(|_| err)?)),
        _ => i64::from_be_bytes(v.try_into().map_err(|_| err)?),
    })
}

fn parse_int_text(v: &[u8]) -> Result<i64, MaskError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or(MaskError::Malformed {
            what: "integer",
            reason: "text value is not an integer",
        })
}

fn encode_int(n: i64, width: usize, binary: bool) -> Vec<u8> {
    if !binary {
        return n.to_string().into_bytes();
    }
    // Callers keep `n` within the type's range (see `fit`).
    match width {
        2 => i16::try_from(n).unwrap_or(0).to_be_bytes().to_vec(),
        4 => i32::try_from(n).unwrap_or(0).to_be_bytes().to_vec(),
        _ => n.to_be_bytes().to_vec(),
    }
}

/// Largest magnitude a width holds.
fn int_max(width: usize) -> u64 {
    match width {
        2 => 32767,
        4 => 2_147_483_647,
        _ => i64::MAX.cast_unsigned(),
    }
}

/// Keyed digits with the same digit count as `abs`, reduced to fit the width.
fn hashed_int(m: &Masker, abs: u64, width: usize) -> u64 {
    let digits = abs.to_string();
    let mac = m.key().mac(digits.as_bytes());
    let mut v: u64 = 0;
    for i in 0..digits.len().min(18) {
        v = v * 10 + u64::from(mac_digit(&mac, i) - b'0');
    }
    v % (int_max(width) + 1)
}

/// Apply a column rule to an integer.
fn rule_int(m: &Masker, s: Strategy, v: i64, width: usize) -> i64 {
    let neg = v < 0;
    let abs = v.unsigned_abs();
    let r = match s {
        Strategy::Redact | Strategy::Null => 0,
        Strategy::Last4 => abs % 10_000,
        Strategy::Hash => hashed_int(m, abs, width),
    };
    // `r` fits the width: last4 < 10000 (int2 max 32767), hash reduced by `int_max`.
    let r = i64::try_from(r).unwrap_or(0);
    if neg {
        -r
    } else {
        r
    }
}

/// Content-scan an integer as decimal digits; `Some(masked)` on a hit.
fn scan_int(m: &Masker, v: i64, width: usize) -> Option<i64> {
    let text = v.to_string();
    let masked = m.mask_mode(text.as_bytes(), Mode::Digits)?;
    Some(digits_to_int(&masked, width))
}

/// Parse digits-alphabet output back into an integer of `width`, reducing if the keyed digits overflow.
fn digits_to_int(masked: &[u8], width: usize) -> i64 {
    let neg = masked.first() == Some(&b'-');
    let mut v: u64 = 0;
    for &b in masked.iter().filter(|b| b.is_ascii_digit()) {
        v = (v.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))) % (int_max(width) + 1);
    }
    let v = i64::try_from(v).unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

// ---------------------------------------------------------------- decimals and floats

/// Column rule on decimal text (`[-]int[.frac]`): redact ⇒ zero, last4 ⇒ last four integer digits,
/// hash ⇒ keyed digits; the fraction keeps its length.
fn rule_decimal_text(m: &Masker, s: Strategy, text: &[u8]) -> Result<Option<Vec<u8>>, MaskError> {
    if !text.iter().any(|b| b.is_ascii_digit()) {
        // NaN, Infinity: nothing to hide.
        return Ok(None);
    }
    let mut out = Vec::with_capacity(text.len());
    let dot = text.iter().position(|&b| b == b'.').unwrap_or(text.len());
    let (int, frac) = text.split_at(dot);
    match s {
        Strategy::Last4 => {
            strategy::apply(Strategy::Last4, Mode::Digits, int, m.key(), None, &mut out);
            strategy::apply(
                Strategy::Redact,
                Mode::Digits,
                frac,
                m.key(),
                None,
                &mut out,
            );
        }
        other => strategy::apply(other, Mode::Digits, text, m.key(), None, &mut out),
    }
    Ok(Some(out))
}

/// Integral value of a float as decimal digits, when it is big enough to be a PAN.
fn float_digits(f: f64) -> Option<String> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() >= 1e12 && f.abs() < 1e19)
        .then(|| format!("{:.0}", f.abs()))
}

fn mask_float(
    m: &Masker,
    width: usize,
    binary: bool,
    value: &[u8],
    rule: Option<Strategy>,
) -> Result<MaskedValue, MaskError> {
    let bad = MaskError::Malformed {
        what: "float",
        reason: "value does not decode as a float",
    };
    let f = if binary {
        match width {
            4 => f64::from(f32::from_be_bytes(
                value.try_into().map_err(|_| bad.clone())?,
            )),
            _ => f64::from_be_bytes(value.try_into().map_err(|_| bad.clone())?),
        }
    } else {
        if rule.is_none() {
            if let Some(v) = m.mask_mode(value, Mode::Digits) {
                return Ok(MaskedValue::Replaced(v));
            }
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or(bad)?
    };
    let new = match rule {
        Some(s) if f.is_finite() => {
            let abs = f.abs().trunc().min(9.0e18);
            // `abs` is an integral value below 2^63: the conversion is exact or saturating.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "integral, in range"
            )]
            let n = abs as u64;
            let r = match s {
                Strategy::Redact | Strategy::Null => 0,
                Strategy::Last4 => n % 10_000,
                Strategy::Hash => hashed_int(m, n, 8) % 1_000_000_000_000_000,
            };
            #[expect(
                clippy::cast_precision_loss,
                reason = "masked values are small or keyed noise"
            )]
            let r = r as f64;
            if f < 0.0 {
                -r
            } else {
                r
            }
        }
        Some(_) => return Ok(MaskedValue::Unchanged),
        None => {
            let Some(digits) = float_digits(f) else {
                return Ok(MaskedValue::Unchanged);
            };
            let Some(masked) = m.mask_mode(digits.as_bytes(), Mode::Digits) else {
                return Ok(MaskedValue::Unchanged);
            };
            #[expect(
                clippy::cast_precision_loss,
                reason = "masked values are small or keyed noise"
            )]
            let r = digits_to_int(&masked, 8) as f64;
            if f < 0.0 {
                -r
            } else {
                r
            }
        }
    };
    Ok(MaskedValue::Replaced(if binary {
        if width == 4 {
            #[expect(clippy::cast_possible_truncation, reason = "float4 column")]
            let v = new as f32;
            v.to_be_bytes().to_vec()
        } else {
            new.to_be_bytes().to_vec()
        }
    } else {
        format!("{new}").into_bytes()
    }))
}

// ---------------------------------------------------------------- text, bytea, json

/// Column rule on a text-like value. `fixed` = the output must keep this byte length (bpchar).
fn rule_text(m: &Masker, s: Strategy, value: &[u8], fixed: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len().max(21));
    strategy::apply(s, Mode::Text, value, m.key(), fixed, &mut out);
    out
}

/// Which textual form a bytea value used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteaForm {
    Hex,
    Escape,
}

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_bytea_text(v: &[u8]) -> Result<(Vec<u8>, ByteaForm), MaskError> {
    let bad = |reason| MaskError::Malformed {
        what: "bytea",
        reason,
    };
    if let Some(hex) = v.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return Err(bad("odd number of hex digits"));
        }
        let mut out = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks(2) {
            match (hexval(pair[0]), hexval(pair[1])) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(bad("invalid hex digit")),
            }
        }
        return Ok((out, ByteaForm::Hex));
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' {
            out.push(v[i]);
            i += 1;
        } else if v.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = v.get(i + 1..i + 4).ok_or(bad("truncated escape"))?;
            if !oct.iter().all(|b| (b'0'..=b'7').contains(b)) || oct[0] > b'3' {
                return Err(bad("invalid escape"));
            }
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok((out, ByteaForm::Escape))
}

fn encode_bytea_text(b: &[u8], form: ByteaForm) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match form {
        ByteaForm::Hex => {
            let mut out = Vec::with_capacity(2 + 2 * b.len());
            out.extend_from_slice(b"\\x");
            for &x in b {
                out.push(HEX[usize::from(x >> 4)]);
                out.push(HEX[usize::from(x & 15)]);
            }
            out
        }
        ByteaForm::Escape => {
            let mut out = Vec::with_capacity(b.len());
            for &x in b {
                match x {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    0x20..=0x7E => out.push(x),
                    _ => out.extend_from_slice(&[
                        b'\\',
                        b'0' + (x >> 6),
                        b'0' + ((x >> 3) & 7),
                        b'0' + (x & 7),
                    ]),
                }
            }
            out
        }
    }
}

/// Whether each finding starts inside a JSON string.
fn json_in_string(text: &[u8], findings: &[Finding]) -> Vec<bool> {
    let mut res = Vec::with_capacity(findings.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut at = 0;
    for f in findings {
        while at < f.range.start.min(text.len()) {
            let b = text[at];
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
            } else if b == b'"' {
                in_str = true;
            }
            at += 1;
        }
        res.push(in_str);
    }
    res
}

/// Content-mask JSON text: `*` inside strings, and numbers stay valid numbers (no leading zeros).
fn mask_json_text(m: &Masker, text: &[u8]) -> Option<Vec<u8>> {
    let findings = m.find(text);
    if findings.is_empty() {
        return None;
    }
    let in_str = json_in_string(text, &findings);
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for (f, &s) in findings.iter().zip(&in_str) {
        out.extend_from_slice(&text[at..f.range.start]);
        let span = &text[f.range.clone()];
        if s {
            let target = (span.len() >= 13).then_some(span.len());
            strategy::apply(f.strategy, Mode::Text, span, m.key(), target, &mut out);
        } else {
            let mut digits = Vec::with_capacity(span.len());
            strategy::apply(f.strategy, Mode::Digits, span, m.key(), None, &mut digits);
            let lead = digits.iter().take_while(|&&b| b == b'0').count();
            let lead = if lead == digits.len() {
                lead.saturating_sub(1)
            } else {
                lead
            };
            out.extend_from_slice(&digits[lead..]);
        }
        at = f.range.end;
    }
    out.extend_from_slice(&text[at..]);
    Some(out)
}

fn json_string(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

fn mask_json_value(
    m: &Masker,
    text: &[u8],
    rule: Option<Strategy>,
) -> Result<Option<Vec<u8>>, MaskError> {
    if std::str::from_utf8(text).is_err() {
        return Err(MaskError::Malformed {
            what: "json",
            reason: "not UTF-8",
        });
    }
    Ok(match rule {
        // A rule replaces the whole document by a JSON string holding the masked text.
        Some(s) => Some(json_string(&rule_text(m, s, text, None))),
        None => mask_json_text(m, text),
    })
}

// ---------------------------------------------------------------- arrays

fn be32(v: &[u8], at: usize) -> Result<i32, MaskError> {
    v.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or(MaskError::Malformed {
            what: "array",
            reason: "truncated",
        })
}

fn mask_binary_array(
    m: &Masker,
    v: &[u8],
    rule: Option<Strategy>,
    depth: u8,
) -> Result<Option<Vec<u8>>, MaskError> {
    let bad = |reason| MaskError::Malformed {
        what: "array",
        reason,
    };
    let ndim = be32(v, 0)?;
    let flags = be32(v, 4)?;
    let elem = be32(v, 8)?.cast_unsigned();
    if !(0..=MAX_DIMS).contains(&ndim) || !(0..=1).contains(&flags) {
        return Err(bad("bad header"));
    }
    let ndim = usize::try_from(ndim).map_err(|_| bad("bad header"))?;
    let mut count: usize = usize::from(ndim > 0);
    for d in 0..ndim {
        let n = usize::try_from(be32(v, 12 + 8 * d)?).map_err(|_| bad("negative dimension"))?;
        count = count.checked_mul(n).ok_or(bad("too many elements"))?;
    }
    let mut at = 12 + 8 * ndim;
    if at > v.len() {
        return Err(bad("truncated"));
    }
    // Every element takes at least its 4-byte length: bound the count before looping.
    if count > (v.len() - at) / 4 {
        return Err(bad("more elements than bytes"));
    }
    let mut out: Vec<u8> = v[..at].to_vec();
    let mut any_changed = false;
    let mut any_null = false;
    for _ in 0..count {
        let len = be32(v, at)?;
        at += 4;
        if len == -1 {
            any_null = true;
            out.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad("negative element length"))?;
        let data = v.get(at..at + len).ok_or(bad("truncated element"))?;
        at += len;
        match mask_at_depth(m, elem, true, data, rule, depth)? {
            MaskedValue::Unchanged => {
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            MaskedValue::Replaced(new) => {
                any_changed = true;
                let n = u32::try_from(new.len()).map_err(|_| bad("element too large"))?;
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&new);
            }
            MaskedValue::Null => {
                any_changed = true;
                any_null = true;
                out.extend_from_slice(&(-1i32).to_be_bytes());
            }
        }
    }
    if at != v.len() {
        return Err(bad("trailing bytes"));
    }
    if !any_changed {
        return Ok(None);
    }
    out[4..8].copy_from_slice(&i32::from(any_null).to_be_bytes());
    Ok(Some(out))
}

/// Quote an array element for the text array format.
fn quote_elem(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn mask_text_array(
    m: &Masker,
    elem: u32,
    v: &[u8],
    rule: Option<Strategy>,
    depth: u8,
) -> Result<Option<Vec<u8>>, MaskError> {
    let bad = |reason| MaskError::Malformed {
        what: "array",
        reason,
    };
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    // Optional dimension decoration `[1:3]=`.
    if v.first() == Some(&b'[') {
        let eq = v
            .iter()
            .position(|&b| b == b'=')
            .ok_or(bad("bad dimensions"))?;
        out.extend_from_slice(&v[..=eq]);
        i = eq + 1;
    }
    if v.get(i) != Some(&b'{') {
        return Err(bad("missing '{'"));
    }
    let mut level = 0usize;
    let mut any_changed = false;
    let mut expect_elem = true;
    while i < v.len() {
        let b = v[i];
        match b {
            b'{' => {
                level += 1;
                if level > MAX_DIMS as usize {
                    return Err(bad("too many dimensions"));
                }
                out.push(b);
                i += 1;
                expect_elem = true;
            }
            b'}' => {
                level = level.checked_sub(1).ok_or(bad("unbalanced braces"))?;
                out.push(b);
                i += 1;
                expect_elem = false;
                if level == 0 {
                    break;
                }
            }
            b',' => {
                out.push(b);
                i += 1;
                expect_elem = true;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push(b);
                i += 1;
            }
            _ if expect_elem && level > 0 => {
                // One element: quoted or bare.
                let start = i;
                let mut raw = Vec::new();
                let quoted = b == b'"';
                if quoted {
                    i += 1;
                    loop {
                        let c = *v.get(i).ok_or(bad("unterminated quote"))?;
                        i += 1;
                        match c {
                            b'"' => break,
                            b'\\' => {
                                raw.push(*v.get(i).ok_or(bad("truncated escape"))?);
                                i += 1;
                            }
                            _ => raw.push(c),
                        }
                    }
                } else {
                    while i < v.len() && !matches!(v[i], b',' | b'}' | b'{') {
                        if v[i] == b'\\' {
                            i += 1;
                        }
                        if let Some(&c) = v.get(i) {
                            raw.push(c);
                        }
                        i += 1;
                    }
                    while raw.last().is_some_and(u8::is_ascii_whitespace) {
                        raw.pop();
                    }
                }
                expect_elem = false;
                if !quoted && raw.eq_ignore_ascii_case(b"NULL") {
                    out.extend_from_slice(&v[start..i]);
                    continue;
                }
                match mask_at_depth(m, elem, false, &raw, rule, depth)? {
                    MaskedValue::Unchanged => out.extend_from_slice(&v[start..i]),
                    MaskedValue::Replaced(new) => {
                        any_changed = true;
                        quote_elem(&new, &mut out);
                    }
                    MaskedValue::Null => {
                        any_changed = true;
                        out.extend_from_slice(b"NULL");
                    }
                }
            }
            _ => return Err(bad("unexpected character")),
        }
    }
    if level != 0 || i != v.len() {
        return Err(bad("unbalanced braces or trailing data"));
    }
    Ok(any_changed.then_some(out))
}

#[cfg(test)]
mod tests;
