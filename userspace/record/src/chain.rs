//! The growing end of a session file: record numbering, the hash chain, the totals, the
//! per-statement row cap, and the record lines of the segment being filled.
//!
//! [`Chain`] does no I/O. A [`Cut`] taken from it is one segment's payload with the chain
//! hashes around it; the segment output in [`crate::writer`] compresses, signs and writes it.
//! [`crate::SessionWriter`] owns both halves; so does a [`crate::Recorder`]'s writer thread,
//! which appends the records its session hands over as events.

use crate::error::{RecordError, Result};
use crate::format;
use crate::hot::{DecisionRef, ResponseRef, StatementRef};
use crate::json;
use crate::key::HostKey;
use crate::model::{Action, End, RecordBody, Seal, SessionHeader, SessionId, Totals, Truncation};
use crate::rows::RowsRef;
use crate::stamp::Stamp;
use crate::util::{hex, hex_into};
use crate::writer::RowCap;

/// Row-cap state of the statement whose rows are being recorded.
#[derive(Default)]
struct CapState {
    stmt: Option<u64>,
    rows: u64,
    bytes: u64,
    cut: bool,
}

/// What the cap keeps of a batch of rows.
enum Kept {
    /// The statement was cut earlier: nothing of this batch is written.
    Nothing,
    /// The first `n` rows, and where the cap cut (if it did).
    First(usize, Option<Truncation>),
}

/// One segment's payload and the chain around it.
#[derive(Debug)]
pub(crate) struct Cut {
    /// Record lines, uncompressed.
    pub raw: Vec<u8>,
    /// Index of the first record.
    pub first_record: u64,
    /// Records in `raw`.
    pub count: u32,
    /// Chain hash before the first record.
    pub prev_head: [u8; 32],
    /// Chain hash after the last record.
    pub head: [u8; 32],
}

/// Numbering, chain, totals and buffered lines of one session.
pub(crate) struct Chain {
    next_n: u64,
    head: [u8; 32],
    seg_prev: [u8; 32],
    seg_first: u64,
    seg_count: u32,
    buf: Vec<u8>,
    totals: Totals,
    cap: CapState,
    row_cap: RowCap,
}

impl Chain {
    pub(crate) fn new(session: &SessionId, row_cap: RowCap) -> Self {
        let g = format::genesis(session);
        Self {
            next_n: 0,
            head: g,
            seg_prev: g,
            seg_first: 0,
            seg_count: 0,
            buf: Vec::new(),
            totals: Totals::default(),
            cap: CapState::default(),
            row_cap,
        }
    }

    /// The header, record 0.
    pub(crate) fn header(&mut self, h: SessionHeader) -> Result<()> {
        let ts = h.start.into();
        self.push(ts, &RecordBody::Header(Box::new(h)))
    }

    /// Records so far.
    pub(crate) fn records(&self) -> u64 {
        self.next_n
    }

    /// Chain hash after the last record.
    pub(crate) fn head(&self) -> [u8; 32] {
        self.head
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// Records buffered since the last cut.
    pub(crate) fn pending(&self) -> u32 {
        self.seg_count
    }

    /// Bytes buffered since the last cut.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the buffered records as one segment's payload (`None` when nothing is buffered).
    /// `spare` becomes the new buffer: the caller recycles payloads it has written.
    pub(crate) fn cut(&mut self, mut spare: Vec<u8>) -> Option<Cut> {
        if self.seg_count == 0 {
            return None;
        }
        spare.clear();
        let cut = Cut {
            raw: std::mem::replace(&mut self.buf, spare),
            first_record: self.seg_first,
            count: self.seg_count,
            prev_head: self.seg_prev,
            head: self.head,
        };
        self.seg_prev = self.head;
        self.seg_first = self.next_n;
        self.seg_count = 0;
        Some(cut)
    }

    /// Appends a record given whole. `Rows` and the rows of responses obey the row cap (a cut
    /// batch carries a [`Truncation`]; later batches of that statement are counted in
    /// `rows_cut` and not written). Header, end and seal records are the writer's own.
    pub(crate) fn append(&mut self, ts: Stamp, body: RecordBody) -> Result<()> {
        match body {
            RecordBody::Header(_) | RecordBody::End(_) | RecordBody::Seal(_) => {
                Err(RecordError::InvalidRecord(format!(
                    "{} records are written by the writer itself",
                    body.kind()
                )))
            }
            RecordBody::Statement(s) => self.statement(ts, &s.view()),
            RecordBody::Decision(d) => self.decision(ts, &d.view()),
            RecordBody::Response(r) => self.response(ts, &r.view()),
            RecordBody::Exchange(x) => {
                let mut st = Vec::new();
                json::statement(&mut st, &x.statement.view());
                let d = x.decision.as_ref().map(|d| {
                    let mut f = Vec::new();
                    json::decision(&mut f, &d.view());
                    (d.action, f)
                });
                self.exchange(
                    ts,
                    &st,
                    d.as_ref().map(|(a, f)| (*a, f.as_slice())),
                    &x.response.view(),
                )
            }
            RecordBody::Rows(mut rows) => match self.keep(rows.stmt, RowsRef::Cells(&rows.rows)) {
                Kept::Nothing => Ok(()),
                Kept::First(n, truncated) => {
                    rows.rows.truncate(n);
                    rows.truncated = truncated;
                    self.push(ts, &RecordBody::Rows(rows))
                }
            },
            body => {
                if let RecordBody::Gap(g) = &body {
                    self.totals.dropped += g.dropped;
                }
                self.push(ts, &body)
            }
        }
    }

    /// A statement record.
    pub(crate) fn statement(&mut self, ts: Stamp, s: &StatementRef<'_>) -> Result<()> {
        self.totals.statements += 1;
        self.line(ts, |out| {
            out.extend_from_slice(json::STATEMENT_TYPE);
            json::statement(out, s);
        })
    }

    /// A statement record from fields serialised earlier by [`json::statement`].
    pub(crate) fn statement_fields(&mut self, ts: Stamp, fields: &[u8]) -> Result<()> {
        self.totals.statements += 1;
        self.line(ts, |out| {
            out.extend_from_slice(json::STATEMENT_TYPE);
            out.extend_from_slice(fields);
        })
    }

    /// A decision record.
    pub(crate) fn decision(&mut self, ts: Stamp, d: &DecisionRef<'_>) -> Result<()> {
        self.count_decision(d.action);
        self.line(ts, |out| {
            out.extend_from_slice(json::DECISION_TYPE);
            json::decision(out, d);
        })
    }

    /// A decision record from fields serialised earlier by [`json::decision`].
    pub(crate) fn decision_fields(
        &mut self,
        ts: Stamp,
        action: Action,
        fields: &[u8],
    ) -> Result<()> {
        self.count_decision(action);
        self.line(ts, |out| {
            out.extend_from_slice(json::DECISION_TYPE);
            out.extend_from_slice(fields);
        })
    }

    /// A response record; its rows obey the cap.
    pub(crate) fn response(&mut self, ts: Stamp, r: &ResponseRef<'_>) -> Result<()> {
        let r = self.capped(r);
        self.line(ts, |out| {
            out.extend_from_slice(json::RESPONSE_TYPE);
            json::response(out, &r);
        })
    }

    /// A statement (fields serialised earlier), its decision (likewise) and its response as
    /// one exchange record.
    pub(crate) fn exchange(
        &mut self,
        ts: Stamp,
        statement: &[u8],
        decision: Option<(Action, &[u8])>,
        r: &ResponseRef<'_>,
    ) -> Result<()> {
        self.totals.statements += 1;
        if let Some((a, _)) = decision {
            self.count_decision(a);
        }
        let r = self.capped(r);
        self.line(ts, |out| {
            json::write_exchange_body(out, statement, decision.map(|d| d.1), &r);
        })
    }

    /// Writes the end record (reason and totals) and the signed seal record; returns the
    /// seal's signature. Nothing may be appended afterwards.
    pub(crate) fn seal(
        &mut self,
        session: &SessionId,
        key: &HostKey,
        ts: Stamp,
        reason: &str,
    ) -> Result<[u8; 64]> {
        let totals = self.totals;
        self.push(
            ts,
            &RecordBody::End(End {
                reason: reason.to_owned(),
                totals,
            }),
        )?;
        let records = self.next_n;
        let final_hash = self.head;
        let sig = key.sign(&format::seal_message(session, records, &final_hash));
        self.push(
            ts,
            &RecordBody::Seal(Seal {
                records,
                final_hash: hex(&final_hash),
                key_id: key.key_id().to_string(),
                signature: hex(&sig),
            }),
        )?;
        Ok(sig)
    }

    fn count_decision(&mut self, action: Action) {
        match action {
            Action::Deny => self.totals.denied += 1,
            Action::Hold => self.totals.held += 1,
            Action::Allow => {}
        }
    }

    /// `r` with its rows cut to the cap.
    fn capped<'a>(&mut self, r: &ResponseRef<'a>) -> ResponseRef<'a> {
        let mut r = *r;
        if r.data.is_empty() {
            return r;
        }
        match self.keep(r.stmt, r.data) {
            Kept::Nothing => r.data = RowsRef::default(),
            Kept::First(n, truncated) => {
                r.data = r.data.first(n);
                r.truncated = truncated;
            }
        }
        r
    }

    /// How many of `rows` (the next batch of statement `stmt`) the cap keeps; counts the rest.
    fn keep(&mut self, stmt: u64, rows: RowsRef<'_>) -> Kept {
        if self.cap.stmt != Some(stmt) {
            self.cap = CapState {
                stmt: Some(stmt),
                ..CapState::default()
            };
        }
        if self.cap.cut {
            self.totals.rows_cut += rows.len() as u64;
            return Kept::Nothing;
        }
        let cap = self.row_cap;
        let mut keep = 0;
        for i in 0..rows.len() {
            let b = rows.row_bytes(i);
            if self.cap.rows + 1 > cap.max_rows || self.cap.bytes + b > cap.max_bytes {
                self.cap.cut = true;
                break;
            }
            self.cap.rows += 1;
            self.cap.bytes += b;
            keep += 1;
        }
        self.totals.rows_recorded += keep as u64;
        if !self.cap.cut {
            return Kept::First(keep, None);
        }
        self.totals.rows_cut += (rows.len() - keep) as u64;
        Kept::First(
            keep,
            Some(Truncation {
                after_rows: self.cap.rows,
                after_bytes: self.cap.bytes,
                cap_rows: cap.max_rows,
                cap_bytes: cap.max_bytes,
            }),
        )
    }

    /// Appends a whole body, serialised generically.
    fn push(&mut self, ts: Stamp, body: &RecordBody) -> Result<()> {
        let n = self.next_n;
        self.push_with(|out| format::write_record_json(out, n, ts, body))
    }

    /// Appends a record whose body `write_body` writes as `,"type":…` after the common prefix;
    /// the closing brace is added here.
    fn line(&mut self, ts: Stamp, write_body: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let n = self.next_n;
        self.push_with(|out| {
            format::write_record_prefix(out, n, ts)?;
            write_body(out);
            out.push(b'}');
            Ok(())
        })
    }

    /// Appends one line whose JSON `write` puts into the buffer: a 64-byte hash placeholder and
    /// a space, the JSON, then the chain hash over that JSON written over the placeholder. On
    /// error the buffer is restored.
    fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), serde_json::Error>,
    ) -> Result<()> {
        let line_at = self.buf.len();
        self.buf.resize(line_at + 65, b' ');
        let json_at = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(line_at);
            return Err(RecordError::Serialize(e));
        }
        self.head = format::chain(&self.head, &self.buf[json_at..]);
        hex_into(&mut self.buf[line_at..json_at], &self.head);
        self.buf.push(b'\n');
        self.next_n += 1;
        self.seg_count += 1;
        Ok(())
    }
}
