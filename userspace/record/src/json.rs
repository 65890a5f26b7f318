//! Hand-written JSON for the record bodies every statement writes (statement, decision,
//! response, exchange, rows): the same bytes serde's derive gives, without its internally-tagged
//! enum machinery (a map serializer per record) and with an escape scan that copies a
//! string whole when nothing in it needs escaping, which is almost always.
//!
//! [`write_hot_body`] writes `,"type":...}` — the body's fields continuing an object the
//! caller opened — and returns `false` for the rare bodies it leaves to serde. The format
//! tests check it byte for byte against `serde_json` over every body shape and awkward
//! strings (control characters, quotes, backslashes, non-ASCII).

use crate::hot::{DecisionRef, ResponseRef, StatementRef};
use crate::model::{Action, Exchange, RecordBody, Rows, Truncation};
use crate::rows::RowsRef;

pub(crate) fn write_hot_body(out: &mut Vec<u8>, body: &RecordBody) -> bool {
    match body {
        RecordBody::Statement(s) => {
            out.extend_from_slice(STATEMENT_TYPE);
            statement(out, &s.view());
        }
        RecordBody::Decision(d) => {
            out.extend_from_slice(DECISION_TYPE);
            decision(out, &d.view());
        }
        RecordBody::Response(r) => {
            out.extend_from_slice(RESPONSE_TYPE);
            response(out, &r.view());
        }
        RecordBody::Exchange(x) => exchange(out, x),
        RecordBody::Rows(r) => rows(out, r),
        _ => return false,
    }
    out.push(b'}');
    true
}

/// What precedes a statement's fields in its own record.
pub(crate) const STATEMENT_TYPE: &[u8] = b",\"type\":\"statement\",";
/// What precedes a decision's fields in its own record.
pub(crate) const DECISION_TYPE: &[u8] = b",\"type\":\"decision\",";
/// What precedes a response's fields in its own record.
pub(crate) const RESPONSE_TYPE: &[u8] = b",\"type\":\"response\",";

/// An exchange body from a statement's and a decision's fields serialised earlier (by
/// [`statement`] and [`decision`]) and the response written here; without the closing `}` of
/// the record.
pub(crate) fn write_exchange_body(
    out: &mut Vec<u8>,
    statement: &[u8],
    decision: Option<&[u8]>,
    r: &ResponseRef<'_>,
) {
    out.extend_from_slice(b",\"type\":\"exchange\",\"statement\":{");
    out.extend_from_slice(statement);
    if let Some(d) = decision {
        out.extend_from_slice(b"},\"decision\":{");
        out.extend_from_slice(d);
    }
    out.extend_from_slice(b"},\"response\":{");
    response(out, r);
    out.push(b'}');
}

/// A statement's fields (`"stmt":…`), without braces.
pub(crate) fn statement(out: &mut Vec<u8>, s: &StatementRef<'_>) {
    out.extend_from_slice(b"\"stmt\":");
    u64_(out, s.stmt);
    out.extend_from_slice(b",\"text\":");
    str_(out, s.text);
    if !s.params.is_empty() {
        out.extend_from_slice(b",\"params\":");
        cells(out, s.params.iter().map(Option::as_deref));
    }
}

/// A decision's fields, without braces.
pub(crate) fn decision(out: &mut Vec<u8>, d: &DecisionRef<'_>) {
    out.extend_from_slice(b"\"stmt\":");
    u64_(out, d.stmt);
    out.extend_from_slice(match d.action {
        Action::Allow => b",\"action\":\"allow\"".as_slice(),
        Action::Deny => b",\"action\":\"deny\"",
        Action::Hold => b",\"action\":\"hold\"",
    });
    out.extend_from_slice(b",\"rule\":");
    opt_str(out, d.rule);
    if let Some(a) = d.approver {
        out.extend_from_slice(b",\"approver\":");
        str_(out, a);
    }
    if !d.tags.is_empty() {
        out.extend_from_slice(b",\"tags\":");
        strs(out, d.tags);
    }
    if let Some(m) = d.message {
        out.extend_from_slice(b",\"message\":");
        str_(out, m);
    }
}

/// A response's fields, without braces.
pub(crate) fn response(out: &mut Vec<u8>, r: &ResponseRef<'_>) {
    out.extend_from_slice(b"\"stmt\":");
    u64_(out, r.stmt);
    if !r.columns.is_empty() {
        out.extend_from_slice(b",\"columns\":");
        strs(out, r.columns);
    }
    out.extend_from_slice(b",\"rows\":");
    match r.rows {
        Some(n) => u64_(out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"command_tag\":");
    opt_str(out, r.command_tag);
    out.extend_from_slice(b",\"duration_us\":");
    u64_(out, r.duration_us);
    if let Some(e) = r.error {
        out.extend_from_slice(b",\"error\":");
        str_(out, e);
    }
    if !r.data.is_empty() {
        out.extend_from_slice(b",\"data\":");
        table(out, r.data);
    }
    if let Some(t) = &r.truncated {
        truncated(out, t);
    }
}

fn exchange(out: &mut Vec<u8>, x: &Exchange) {
    out.extend_from_slice(b",\"type\":\"exchange\",\"statement\":{");
    statement(out, &x.statement.view());
    if let Some(d) = &x.decision {
        out.extend_from_slice(b"},\"decision\":{");
        decision(out, &d.view());
    }
    out.extend_from_slice(b"},\"response\":{");
    response(out, &x.response.view());
    out.push(b'}');
}

fn rows(out: &mut Vec<u8>, r: &Rows) {
    out.extend_from_slice(b",\"type\":\"rows\",\"stmt\":");
    u64_(out, r.stmt);
    if !r.columns.is_empty() {
        out.extend_from_slice(b",\"columns\":");
        strs(out, &r.columns);
    }
    out.extend_from_slice(b",\"rows\":");
    table(out, RowsRef::Cells(&r.rows));
    if let Some(t) = &r.truncated {
        truncated(out, t);
    }
}

fn truncated(out: &mut Vec<u8>, t: &Truncation) {
    out.extend_from_slice(b",\"truncated\":{\"after_rows\":");
    u64_(out, t.after_rows);
    out.extend_from_slice(b",\"after_bytes\":");
    u64_(out, t.after_bytes);
    out.extend_from_slice(b",\"cap_rows\":");
    u64_(out, t.cap_rows);
    out.extend_from_slice(b",\"cap_bytes\":");
    u64_(out, t.cap_bytes);
    out.push(b'}');
}

fn table(out: &mut Vec<u8>, rows: RowsRef<'_>) {
    match rows {
        RowsRef::Cells(c) => table_of(out, c.iter().map(|r| r.iter().map(Option::as_deref))),
        RowsRef::Buf { buf, rows } => table_of(out, (0..rows).map(|r| buf.row(r))),
    }
}

fn table_of<'a, R: Iterator<Item = Option<&'a str>>>(
    out: &mut Vec<u8>,
    rows: impl Iterator<Item = R>,
) {
    out.push(b'[');
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        cells(out, row);
    }
    out.push(b']');
}

fn cells<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = Option<&'a str>>) {
    out.push(b'[');
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        opt_str(out, c);
    }
    out.push(b']');
}

fn strs(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str_(out, s);
    }
    out.push(b']');
}

fn u64_(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => str_(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string exactly as `serde_json` writes it: `"` and `\` escaped, the control
/// characters below 0x20 as `\b \t \n \f \r` or `\u00xx` (lowercase hex), everything
/// else (DEL, non-ASCII) as is.
fn str_(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(b, start) {
        out.extend_from_slice(&b[start..i]);
        start = i + 1;
        let c = b[i];
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
        }
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// The first byte at or after `from` that a JSON string must escape (`"`, `\`, below 0x20).
/// Eight bytes at a time: SQL text and result cells rarely need escaping, and a byte loop was
/// the recorder's largest instruction count after the compressor.
fn next_escape(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let needs = |c: u8| c < 0x20 || c == b'"' || c == b'\\';
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // A byte below 0x20, or equal to '"' or '\\': the classic "has less than" and "has
        // zero byte" tests (exact for every byte value, including non-ASCII).
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let hit = (x.wrapping_sub(ONES * 0x20) & !x
            | quote.wrapping_sub(ONES) & !quote
            | slash.wrapping_sub(ONES) & !slash)
            & HIGH;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i.min(b.len())..]
        .iter()
        .position(|&c| needs(c))
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decision, ResponseSummary, Statement};

    #[test]
    fn bodies_from_split_fields_equal_the_direct_ones() {
        let st = Statement {
            stmt: 3,
            text: "SELECT \"x\"\n".into(),
            params: vec![None, Some("1".into())],
        };
        let d = Decision {
            stmt: 3,
            action: Action::Deny,
            rule: Some("r".into()),
            approver: None,
            tags: vec!["t".into()],
            message: Some("no".into()),
        };
        let r = ResponseSummary {
            stmt: 3,
            columns: vec!["c".into()],
            rows: Some(1),
            data: vec![vec![Some("v".into())]],
            ..ResponseSummary::default()
        };
        let direct = |b: &RecordBody| {
            let mut v = Vec::new();
            assert!(write_hot_body(&mut v, b));
            v
        };
        let fields = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            v
        };
        let own = |ty: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = ty.to_vec();
            f(&mut v);
            v.push(b'}');
            v
        };
        assert_eq!(
            own(STATEMENT_TYPE, &|o| statement(o, &st.view())),
            direct(&RecordBody::Statement(st.clone()))
        );
        assert_eq!(
            own(DECISION_TYPE, &|o| decision(o, &d.view())),
            direct(&RecordBody::Decision(d.clone()))
        );
        assert_eq!(
            own(RESPONSE_TYPE, &|o| response(o, &r.view())),
            direct(&RecordBody::Response(r.clone()))
        );
        for with_decision in [true, false] {
            let x = Exchange {
                statement: st.clone(),
                decision: with_decision.then(|| d.clone()),
                response: r.clone(),
            };
            let mut v = Vec::new();
            write_exchange_body(
                &mut v,
                &fields(&|o| statement(o, &st.view())),
                with_decision
                    .then(|| fields(&|o| decision(o, &d.view())))
                    .as_deref(),
                &r.view(),
            );
            v.push(b'}');
            assert_eq!(v, direct(&RecordBody::Exchange(Box::new(x))));
        }
    }

    #[test]
    fn bodies_written_with_explicit_nulls_still_read() {
        let d: Decision = serde_json::from_str(
            r#"{"stmt":1,"action":"allow","rule":null,"approver":null,"message":null}"#,
        )
        .unwrap();
        assert_eq!((&d.approver, &d.message), (&None, &None));
        let r: ResponseSummary = serde_json::from_str(
            r#"{"stmt":1,"rows":null,"command_tag":null,"duration_us":3,"error":null}"#,
        )
        .unwrap();
        assert_eq!(r.error, None);
        let mut v = Vec::new();
        decision(&mut v, &d.view());
        assert_eq!(v, br#""stmt":1,"action":"allow","rule":null"#);
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é\u{2028}\u{10ffff}\"\\x\\\"");
        for s in [
            "",
            "plain",
            "\"",
            "\\",
            "a\u{0}b",
            "\u{1f}\u{7f}",
            all.as_str(),
        ] {
            let mut got = Vec::new();
            str_(&mut got, s);
            assert_eq!(got, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_the_word_scan() {
        // The scan reads eight bytes at a time: every special byte at every position of
        // strings of 0..=20 bytes, over ASCII and multi-byte backgrounds (bytes >= 0x80 must
        // never be taken for specials, nor hide them).
        for background in ["abcdefghijklmnopqrst", "ééééééééééé"] {
            for special in [
                '"', '\\', '\u{0}', '\n', '\u{1f}', ' ', '\u{7f}', '!', '#', '[', ']',
            ] {
                for len in 0..=20 {
                    let bg: Vec<char> = background.chars().collect();
                    for at in 0..=len.min(bg.len()) {
                        let mut s: String = bg[..len.min(bg.len())].iter().collect();
                        let byte_at = s.char_indices().nth(at).map_or(s.len(), |(i, _)| i);
                        s.insert(byte_at, special);
                        s.push(special);
                        let mut got = Vec::new();
                        str_(&mut got, &s);
                        assert_eq!(got, serde_json::to_vec(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
    }
}
