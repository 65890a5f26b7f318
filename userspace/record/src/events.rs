//! What a session hands its writer thread: its records as compact binary events, appended
//! under the session's lock with little more than copies, and turned into record lines (JSON,
//! chain hash) by the writer thread a batch at a time. Keeping the per-statement work on the
//! session's side this small keeps the proxy's own code and data in the cache; the writer
//! runs the serialisation code over hundreds of records at once.
//!
//! The encoding lives only in memory, between the two threads of one process: it is not a file
//! format. Fixed-size fields and lengths go into one byte buffer, string contents into a text
//! buffer beside it, so the writer reads strings back as `&str` without validating them again.
//! Owned [`RecordBody`] values (rare: notices, approvals, large row batches, gaps) travel
//! beside the bytes, referred to by index.

use crate::hot::{DecisionRef, Hot, ResponseRef, StatementRef};
use crate::model::{Action, RecordBody, Truncation};
use crate::rows::{RowBuf, RowsRef};
use crate::stamp::Stamp;

const STATEMENT: u8 = 1;
const DECISION: u8 = 2;
const RESPONSE: u8 = 3;
const BODY: u8 = 4;
const NONE: u32 = u32::MAX;

/// Events in arrival order.
#[derive(Default)]
pub(crate) struct Batch {
    /// Tags, timestamps, numbers and string lengths.
    buf: Vec<u8>,
    /// The strings' contents, in the order their lengths appear in `buf`.
    text: String,
    bodies: Vec<RecordBody>,
    count: u32,
}

impl Batch {
    /// Events held.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Bytes held (owned bodies not counted).
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.text.len()
    }

    /// Buffers this large are not kept for reuse.
    const KEEP: usize = 256 << 10;

    /// Empties the batch for reuse; `false` when its buffer grew too large to keep.
    pub(crate) fn recycle(&mut self) -> bool {
        self.buf.clear();
        self.text.clear();
        self.bodies.clear();
        self.count = 0;
        self.buf.capacity() + self.text.capacity() <= Self::KEEP
    }

    fn head(&mut self, tag: u8, ts: Stamp) {
        self.count += 1;
        self.buf.push(tag);
        let (secs, nanos) = ts.parts();
        self.buf.extend_from_slice(&secs.to_le_bytes());
        self.buf.extend_from_slice(&nanos.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn len32(&mut self, n: usize) {
        // Lengths above 4 GiB cannot occur: protocol messages are at most 1 GiB.
        let n = u32::try_from(n).unwrap_or(NONE - 1);
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        // A length prefix must match the bytes after it: a string past 4 GiB (which no
        // protocol message can carry) is cut at a character boundary below that.
        let mut end = s.len().min((NONE - 1) as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.len32(end);
        self.text.push_str(&s[..end]);
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.buf.extend_from_slice(&NONE.to_le_bytes()),
        }
    }

    fn strs<'a>(&mut self, n: usize, it: impl Iterator<Item = Option<&'a str>>) {
        self.len32(n);
        for s in it {
            self.opt_str(s);
        }
    }

    /// Appends one per-statement record.
    pub(crate) fn push_hot(&mut self, ts: Stamp, item: &Hot<'_>) {
        match item {
            Hot::Statement(s) => {
                self.head(STATEMENT, ts);
                self.u64(s.stmt);
                self.str(s.text);
                self.strs(s.params.len(), s.params.iter().map(Option::as_deref));
            }
            Hot::Decision(d) => {
                self.head(DECISION, ts);
                self.u64(d.stmt);
                self.buf.push(match d.action {
                    Action::Allow => 0,
                    Action::Deny => 1,
                    Action::Hold => 2,
                });
                self.opt_str(d.rule);
                self.opt_str(d.approver);
                self.strs(d.tags.len(), d.tags.iter().map(|t| Some(t.as_str())));
                self.opt_str(d.message);
            }
            Hot::Response(r) => {
                self.head(RESPONSE, ts);
                self.u64(r.stmt);
                self.strs(r.columns.len(), r.columns.iter().map(|c| Some(c.as_str())));
                match r.rows {
                    Some(n) => {
                        self.buf.push(1);
                        self.u64(n);
                    }
                    None => self.buf.push(0),
                }
                self.opt_str(r.command_tag);
                self.u64(r.duration_us);
                self.opt_str(r.error);
                match &r.truncated {
                    Some(t) => {
                        self.buf.push(1);
                        for v in [t.after_rows, t.after_bytes, t.cap_rows, t.cap_bytes] {
                            self.u64(v);
                        }
                    }
                    None => self.buf.push(0),
                }
                self.len32(r.data.len());
                match r.data {
                    RowsRef::Cells(rows) => {
                        for row in rows {
                            self.strs(row.len(), row.iter().map(Option::as_deref));
                        }
                    }
                    RowsRef::Buf { buf, rows } => {
                        for i in 0..rows {
                            self.strs(buf.row_cells(i), buf.row(i));
                        }
                    }
                }
            }
        }
    }

    /// Appends an owned record.
    pub(crate) fn push_body(&mut self, ts: Stamp, body: RecordBody) {
        self.head(BODY, ts);
        self.len32(self.bodies.len());
        self.bodies.push(body);
    }

    /// Reads the events back, in order.
    pub(crate) fn reader<'a>(&'a mut self, scratch: &'a mut Scratch) -> Reader<'a> {
        Reader {
            cur: Cur {
                buf: &self.buf,
                at: 0,
                text: &self.text,
                text_at: 0,
            },
            bodies: &mut self.bodies,
            scratch,
        }
    }
}

/// Reused decoding buffers (lists of strings and result rows).
#[derive(Default)]
pub(crate) struct Scratch {
    params: Vec<Option<String>>,
    tags: Vec<String>,
    columns: Vec<String>,
    rows: RowBuf,
}

/// One decoded event.
pub(crate) enum Event<'a> {
    Hot(Stamp, Hot<'a>),
    Body(Stamp, RecordBody),
}

pub(crate) struct Reader<'a> {
    cur: Cur<'a>,
    bodies: &'a mut Vec<RecordBody>,
    scratch: &'a mut Scratch,
}

/// Cursor over the encoded bytes. The bytes were written by [`Batch`] in this process, so a
/// short read is a bug: it panics (through slice indexing) rather than invent a record.
struct Cur<'a> {
    buf: &'a [u8],
    at: usize,
    text: &'a str,
    text_at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        b
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap_or_default())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap_or_default())
    }

    fn opt_str(&mut self) -> Option<&'a str> {
        match self.u32() {
            NONE => None,
            n => {
                // Whole strings were appended, so both ends are character boundaries.
                let s = &self.text[self.text_at..self.text_at + n as usize];
                self.text_at += n as usize;
                Some(s)
            }
        }
    }

    fn str(&mut self) -> &'a str {
        self.opt_str().unwrap_or_default()
    }
}

impl<'a> Reader<'a> {
    /// The next event, borrowing this reader's scratch buffers until the next call.
    pub(crate) fn next(&mut self) -> Option<Event<'_>> {
        let c = &mut self.cur;
        if c.at >= c.buf.len() {
            return None;
        }
        let tag = c.u8();
        let secs = c.u64() as i64;
        let nanos = c.u32();
        let ts = Stamp::from_unix(secs, nanos);
        let s = &mut *self.scratch;
        let ev = match tag {
            STATEMENT => {
                let stmt = c.u64();
                let text = c.str();
                let n = c.u32() as usize;
                s.params.resize(n, None);
                for p in &mut s.params {
                    fill_opt(p, c.opt_str());
                }
                Event::Hot(
                    ts,
                    Hot::Statement(StatementRef {
                        stmt,
                        text,
                        params: &s.params,
                    }),
                )
            }
            DECISION => {
                let stmt = c.u64();
                let action = match c.u8() {
                    1 => Action::Deny,
                    2 => Action::Hold,
                    _ => Action::Allow,
                };
                let rule = c.opt_str();
                let approver = c.opt_str();
                fill_strs(&mut s.tags, c);
                let message = c.opt_str();
                Event::Hot(
                    ts,
                    Hot::Decision(DecisionRef {
                        stmt,
                        action,
                        rule,
                        approver,
                        tags: &s.tags,
                        message,
                    }),
                )
            }
            RESPONSE => {
                let stmt = c.u64();
                fill_strs(&mut s.columns, c);
                let rows = (c.u8() == 1).then(|| c.u64());
                let command_tag = c.opt_str();
                let duration_us = c.u64();
                let error = c.opt_str();
                let truncated = (c.u8() == 1).then(|| Truncation {
                    after_rows: c.u64(),
                    after_bytes: c.u64(),
                    cap_rows: c.u64(),
                    cap_bytes: c.u64(),
                });
                s.rows.clear();
                for _ in 0..c.u32() {
                    for _ in 0..c.u32() {
                        match c.opt_str() {
                            Some(v) => s.rows.push_str(v),
                            None => s.rows.push_null(),
                        }
                    }
                    s.rows.end_row();
                }
                Event::Hot(
                    ts,
                    Hot::Response(ResponseRef {
                        stmt,
                        columns: &s.columns,
                        rows,
                        command_tag,
                        duration_us,
                        error,
                        data: RowsRef::buf(&s.rows),
                        truncated,
                    }),
                )
            }
            BODY => {
                let i = c.u32() as usize;
                let body = std::mem::replace(
                    &mut self.bodies[i],
                    RecordBody::Gap(crate::model::Gap { dropped: 0 }),
                );
                Event::Body(ts, body)
            }
            _ => unreachable!("unknown event tag {tag}"),
        };
        Some(ev)
    }
}

fn fill_opt(slot: &mut Option<String>, v: Option<&str>) {
    match v {
        Some(v) => {
            let s = slot.get_or_insert_with(String::new);
            s.clear();
            s.push_str(v);
        }
        None => *slot = None,
    }
}

fn fill_strs(v: &mut Vec<String>, c: &mut Cur<'_>) {
    let n = c.u32() as usize;
    v.resize(n, String::new());
    for s in v.iter_mut() {
        s.clear();
        s.push_str(c.str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decision, Gap, ResponseSummary, Statement};

    #[test]
    fn events_read_back_as_written() {
        let st = Statement {
            stmt: 7,
            text: "SELECT $1, 'é'".into(),
            params: vec![Some("x".into()), None, Some(String::new())],
        };
        let d = Decision {
            stmt: 7,
            action: Action::Hold,
            rule: Some("r".into()),
            approver: None,
            tags: vec!["a".into(), "b".into()],
            message: Some("m".into()),
        };
        let r = ResponseSummary {
            stmt: 7,
            columns: vec!["c1".into(), "c2".into()],
            rows: Some(2),
            command_tag: Some("SELECT 2".into()),
            duration_us: 42,
            error: None,
            data: vec![vec![Some("1".into()), None], vec![]],
            truncated: Some(Truncation {
                after_rows: 1,
                after_bytes: 2,
                cap_rows: 3,
                cap_bytes: 4,
            }),
        };
        let mut flat = RowBuf::default();
        flat.push_str("z");
        flat.end_row();
        let flat_r = ResponseRef {
            stmt: 8,
            rows: None,
            error: Some("SQLSTATE 42P01"),
            data: RowsRef::buf(&flat),
            ..ResponseRef::default()
        };
        let t = |s: i64| Stamp::from_unix(1_800_000_000 + s, 123);
        let mut b = Batch::default();
        b.push_hot(t(0), &Hot::Statement(st.view()));
        b.push_hot(t(1), &Hot::Decision(d.view()));
        b.push_body(t(2), RecordBody::Gap(Gap { dropped: 3 }));
        b.push_hot(t(3), &Hot::Response(r.view()));
        b.push_hot(t(4), &Hot::Response(flat_r));
        assert_eq!(b.count(), 5);
        let mut scratch = Scratch::default();
        let mut got = Vec::new();
        let mut rd = b.reader(&mut scratch);
        while let Some(ev) = rd.next() {
            got.push(match ev {
                Event::Hot(ts, h) => (ts, h.to_body()),
                Event::Body(ts, body) => (ts, body),
            });
        }
        let want = vec![
            (t(0), RecordBody::Statement(st)),
            (t(1), RecordBody::Decision(d)),
            (t(2), RecordBody::Gap(Gap { dropped: 3 })),
            (t(3), RecordBody::Response(r)),
            (t(4), Hot::Response(flat_r).to_body()),
        ];
        assert_eq!(got, want);
        assert!(b.recycle());
        assert_eq!((b.count(), b.len()), (0, 0));
    }
}
