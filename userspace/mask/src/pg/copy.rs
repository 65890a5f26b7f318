//! COPY TO STDOUT data (`CopyData` payloads).
//!
//! PostgreSQL sends one `CopyData` message per row, so a chunk must hold whole rows (it must end with a
//! newline; anything else is refused rather than risking a PAN split across chunks). Column rules are
//! applied per field (COPY carries no type information, so fields are masked in the `*` alphabet), then
//! the content detectors scan the whole row; bytea fields in hex form (`\\x...`) are decoded and scanned
//! too. Binary COPY has no type information at all and is refused (fail closed): deny
//! `COPY ... (FORMAT binary)` in policy or expect the statement to fail.

use super::{decode_bytea_text, encode_bytea_text, ByteaForm};
use crate::strategy::{self, Mode};
use crate::{MaskError, Masker, Strategy};

/// Layout of a COPY TO STDOUT stream, from the COPY statement's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    /// `FORMAT text`.
    Text,
    /// `FORMAT csv`.
    Csv,
    /// `FORMAT binary`: always refused.
    Binary,
}

/// Format and options of a COPY TO STDOUT stream (`FORMAT`, `DELIMITER`, `QUOTE`, `ESCAPE`,
/// `NULL`; `HEADER` is the caller's: it passes no column rules for the header row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFormat {
    /// Text, CSV or binary.
    pub kind: CopyKind,
    /// Field delimiter (text: tab, CSV: `,`).
    pub delimiter: u8,
    /// CSV quote character (`"`).
    pub quote: u8,
    /// CSV escape character inside quotes (defaults to the quote: doubled quotes).
    pub escape: u8,
    /// How NULL is written (text: `\N`, CSV: an unquoted empty field).
    pub null: Vec<u8>,
}

impl CopyFormat {
    /// PostgreSQL's default text format.
    #[must_use]
    pub fn text() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Text,
            delimiter: b'\t',
            quote: b'"',
            escape: b'"',
            null: b"\\N".to_vec(),
        }
    }

    /// PostgreSQL's default CSV format.
    #[must_use]
    pub fn csv() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Csv,
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        }
    }

    /// Binary COPY.
    #[must_use]
    pub fn binary() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Binary,
            ..CopyFormat::text()
        }
    }
}

/// Mask one `CopyData` chunk of whole rows. `rules[i]` is the column rule of field `i` (shorter slices
/// mean no rule for the remaining fields). `Ok(None)` = forward unchanged.
///
/// # Errors
/// [`MaskError::Uninspectable`] for binary COPY and for chunks that do not end with a newline;
/// [`MaskError::Malformed`] for an unterminated CSV quote or a bad bytea hex field.
pub fn mask_copy_data(
    m: &Masker,
    chunk: &[u8],
    format: &CopyFormat,
    rules: &[Option<Strategy>],
) -> Result<Option<Vec<u8>>, MaskError> {
    if format.kind == CopyKind::Binary {
        return Err(MaskError::Uninspectable(
            "binary COPY output cannot be inspected for cardholder data; use FORMAT text or csv",
        ));
    }
    if chunk.is_empty() {
        return Ok(None);
    }
    if chunk.last() != Some(&b'\n') {
        return Err(MaskError::Uninspectable(
            "COPY data chunk does not end at a row boundary",
        ));
    }
    let mut out = Vec::with_capacity(chunk.len());
    let mut any = false;
    let mut start = 0;
    while start < chunk.len() {
        let end = row_end(chunk, start, format)?;
        let row = &chunk[start..end];
        let masked = match format.kind {
            CopyKind::Text => text_row(m, row, format, rules)?,
            CopyKind::Csv => csv_row(m, row, format, rules)?,
            CopyKind::Binary => None,
        };
        let row_bytes = masked.as_deref().unwrap_or(row);
        let scanned = m.mask_mode(row_bytes, Mode::Text);
        any |= masked.is_some() || scanned.is_some();
        out.extend_from_slice(scanned.as_deref().unwrap_or(row_bytes));
        out.push(b'\n');
        start = end + 1;
    }
    Ok(any.then_some(out))
}

/// Index of the newline ending the row that starts at `start` (CSV quotes may hold newlines).
fn row_end(chunk: &[u8], start: usize, format: &CopyFormat) -> Result<usize, MaskError> {
    let (quote, escape) = (format.quote, format.escape);
    let csv = format.kind == CopyKind::Csv;
    let mut in_quote = false;
    let mut i = start;
    while i < chunk.len() {
        let b = chunk[i];
        if csv && in_quote {
            if b == escape
                && escape != quote
                && chunk.get(i + 1).is_some_and(|&n| n == quote || n == escape)
            {
                i += 2;
                continue;
            }
            if b == quote {
                in_quote = false;
            }
        } else if csv && b == quote {
            in_quote = true;
        } else if b == b'\n' {
            return Ok(i);
        }
        i += 1;
    }
    Err(MaskError::Malformed {
        what: "COPY csv",
        reason: "unterminated quoted field",
    })
}

/// Split a text-format row into fields (byte ranges), honouring backslash escapes.
fn text_fields(row: &[u8], delimiter: u8) -> Vec<(usize, usize)> {
    let mut fields = Vec::new();
    let mut s = 0;
    let mut i = 0;
    while i < row.len() {
        if row[i] == b'\\' {
            i += 2;
            continue;
        }
        if row[i] == delimiter {
            fields.push((s, i));
            s = i + 1;
        }
        i += 1;
    }
    fields.push((s, row.len().max(s)));
    fields
}

fn decode_text_field(f: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\' && i + 1 < f.len() {
            out.push(match f[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                c => c,
            });
            i += 2;
        } else {
            out.push(f[i]);
            i += 1;
        }
    }
    out
}

fn encode_text_field(f: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    for &b in f {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if b == delimiter => out.extend_from_slice(&[b'\\', b]),
            _ => out.push(b),
        }
    }
}

fn text_row(
    m: &Masker,
    row: &[u8],
    format: &CopyFormat,
    rules: &[Option<Strategy>],
) -> Result<Option<Vec<u8>>, MaskError> {
    let delimiter = format.delimiter;
    let fields = text_fields(row, delimiter);
    let mut out = Vec::with_capacity(row.len());
    let mut any = false;
    for (k, &(s, e)) in fields.iter().enumerate() {
        if k > 0 {
            out.push(delimiter);
        }
        let field = &row[s..e];
        let rule = rules.get(k).copied().flatten();
        if field == format.null.as_slice() {
            out.extend_from_slice(field);
            continue;
        }
        if let Some(r) = rule {
            any = true;
            if r == Strategy::Null {
                out.extend_from_slice(&format.null);
            } else {
                let mut masked = Vec::new();
                strategy::apply(
                    r,
                    Mode::Text,
                    &decode_text_field(field),
                    m.key(),
                    None,
                    &mut masked,
                );
                encode_text_field(&masked, delimiter, &mut out);
            }
            continue;
        }
        // bytea in hex form: `\\x` + hex once COPY's own backslash escape is undone.
        if field.starts_with(b"\\\\x") {
            let decoded = decode_text_field(field);
            if let Ok((raw, ByteaForm::Hex)) = decode_bytea_text(&decoded) {
                if let Some(masked) = m.mask_mode(&raw, Mode::Text) {
                    any = true;
                    encode_text_field(
                        &encode_bytea_text(&masked, ByteaForm::Hex),
                        delimiter,
                        &mut out,
                    );
                    continue;
                }
            }
        }
        out.extend_from_slice(field);
    }
    Ok(any.then_some(out))
}

fn csv_row(
    m: &Masker,
    row: &[u8],
    format: &CopyFormat,
    rules: &[Option<Strategy>],
) -> Result<Option<Vec<u8>>, MaskError> {
    let (delimiter, quote, escape) = (format.delimiter, format.quote, format.escape);
    if rules.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(row.len());
    let mut any = false;
    let mut i = 0;
    let mut k = 0;
    loop {
        let start = i;
        let mut content = Vec::new();
        if row.get(i) == Some(&quote) {
            i += 1;
            loop {
                let c = *row.get(i).ok_or(MaskError::Malformed {
                    what: "COPY csv",
                    reason: "unterminated quoted field",
                })?;
                i += 1;
                if c == escape && escape != quote {
                    match row.get(i) {
                        Some(&n) if n == quote || n == escape => {
                            content.push(n);
                            i += 1;
                        }
                        _ => content.push(c),
                    }
                } else if c == quote {
                    if escape == quote && row.get(i) == Some(&quote) {
                        content.push(quote);
                        i += 1;
                    } else {
                        break;
                    }
                } else {
                    content.push(c);
                }
            }
        } else {
            while i < row.len() && row[i] != delimiter {
                content.push(row[i]);
                i += 1;
            }
        }
        let raw = &row[start..i];
        // An unquoted field equal to the NULL string is NULL.
        let is_null = raw == format.null.as_slice();
        match rules.get(k).copied().flatten() {
            Some(_) if is_null => out.extend_from_slice(raw),
            Some(Strategy::Null) => {
                any = true;
                out.extend_from_slice(&format.null);
            }
            Some(r) => {
                any = true;
                let mut masked = Vec::new();
                strategy::apply(r, Mode::Text, &content, m.key(), None, &mut masked);
                out.push(quote);
                for b in masked {
                    if b == quote || (escape != quote && b == escape) {
                        out.push(escape);
                    }
                    out.push(b);
                }
                out.push(quote);
            }
            None => out.extend_from_slice(raw),
        }
        k += 1;
        if i >= row.len() {
            break;
        }
        if row[i] != delimiter {
            return Err(MaskError::Malformed {
                what: "COPY csv",
                reason: "garbage after a quoted field",
            });
        }
        out.push(delimiter);
        i += 1;
        if i == row.len() {
            // Trailing empty (NULL) field: nothing to mask.
            break;
        }
    }
    Ok(any.then_some(out))
}
