//! Bookkeeping of one session: the queue of requests awaiting responses, the client's view of
//! statements and portals (updated as messages are sent) and the server's (updated as responses
//! arrive, which in a pipeline can be much later).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::error_response::ErrorResponse;
use crate::format::Format;
use crate::frontend::Target;
use crate::row_description::RowDescription;

use super::{CopyContext, ProxyError, RequestId, ResultContext, ResultFormats};

/// Session-local identity of one Parse (or of a statement first seen by name), so responses
/// arriving later attach to the right statement even if its name was reused meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct StmtId(pub u64);

/// What a queued request waits for.
#[derive(Debug)]
pub(super) enum Expect {
    /// Simple Query (or a refusal marker standing in for a Query or FunctionCall):
    /// results until ReadyForQuery.
    SimpleQuery { sql: Option<Arc<str>> },
    /// FunctionCall: FunctionCallResponse or error, then ReadyForQuery.
    FunctionCall { format: Option<Format> },
    /// ParseComplete. `stmt` is `None` for a refusal marker.
    Parse { name: String, stmt: Option<StmtId> },
    /// BindComplete.
    Bind {
        portal: String,
        stmt: StmtId,
        sql: Option<Arc<str>>,
        formats: ResultFormats,
    },
    /// ParameterDescription then RowDescription or NoData.
    DescribeStatement { name: String, stmt: StmtId },
    /// RowDescription or NoData. `injected`: sent by the proxy itself before an Execute whose
    /// row shape it did not know (the reply is swallowed; an error counts as the Execute's).
    DescribePortal { portal: String, injected: bool },
    /// Rows, then CommandComplete / EmptyQueryResponse / PortalSuspended.
    Execute {
        portal: String,
        sql: Option<Arc<str>>,
    },
    /// CloseComplete.
    Close { target: Target, name: String },
    /// ReadyForQuery.
    Sync,
    /// CopyDone/CopyFail sent by the client: no response; marks where a COPY FROM STDIN ends
    /// so the Syncs the server ignores during it can be dropped.
    CopyEnd,
}

impl Expect {
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Expect::SimpleQuery { .. } => "awaiting simple query results",
            Expect::FunctionCall { .. } => "awaiting a function call result",
            Expect::Parse { .. } => "awaiting ParseComplete",
            Expect::Bind { .. } => "awaiting BindComplete",
            Expect::DescribeStatement { .. } => "awaiting a statement description",
            Expect::DescribePortal { .. } => "awaiting a portal description",
            Expect::Execute { .. } => "awaiting Execute results",
            Expect::Close { .. } => "awaiting CloseComplete",
            Expect::Sync => "awaiting ReadyForQuery",
            Expect::CopyEnd => "awaiting nothing",
        }
    }
}

/// One request awaiting its response.
#[derive(Debug)]
pub(super) struct Entry {
    pub request: RequestId,
    pub expect: Expect,
    /// The caller's error to show if the server fails on this request's refusal marker.
    pub refusal: Option<ErrorResponse>,
}

/// Requests in the order the server will answer them.
#[derive(Debug, Default)]
pub(super) struct Queue {
    entries: VecDeque<Entry>,
    /// The server is discarding messages until Sync (an extended-protocol error arrived with
    /// no Sync queued yet): requests sent now get no response.
    pub skipping: bool,
    /// The server is in COPY FROM STDIN and the client has not ended it yet: the server
    /// ignores Sync and Flush until then.
    pub copy_in: bool,
}

impl Queue {
    /// Queues a request. Returns `false` when it will get no response (the server is
    /// discarding until Sync).
    pub(super) fn push(&mut self, entry: Entry, limit: usize) -> Result<bool, ProxyError> {
        if matches!(entry.expect, Expect::Sync) {
            self.skipping = false;
        } else if self.skipping {
            return Ok(false);
        }
        if self.entries.len() >= limit {
            return Err(ProxyError::LimitExceeded {
                what: "outstanding requests",
                limit,
            });
        }
        self.entries.push_back(entry);
        Ok(true)
    }

    pub(super) fn front(&self) -> Option<&Entry> {
        self.entries.front()
    }

    pub(super) fn front_mut(&mut self) -> Option<&mut Entry> {
        self.entries.front_mut()
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops leading CopyEnd markers (CopyDone/CopyFail outside a COPY are ignored by the server).
    pub(super) fn drop_stray_copy_ends(&mut self) {
        while matches!(
            self.entries.front(),
            Some(Entry {
                expect: Expect::CopyEnd,
                ..
            })
        ) {
            self.entries.pop_front();
        }
    }

    /// The front request failed in the extended protocol: the server discards every message up
    /// to the next Sync. Pops the front and those requests, returning the popped ones after the
    /// front (their refusals will never be reached).
    pub(super) fn skip_to_sync(&mut self) -> Vec<Entry> {
        self.entries.pop_front();
        let mut skipped = Vec::new();
        while let Some(e) = self.entries.front() {
            if matches!(e.expect, Expect::Sync) {
                return skipped;
            }
            if let Some(e) = self.entries.pop_front() {
                if !matches!(e.expect, Expect::CopyEnd) {
                    skipped.push(e);
                }
            }
        }
        self.skipping = true;
        skipped
    }

    /// The front request started COPY FROM STDIN: the server ignores Sync (and Flush) until the
    /// client's CopyDone/CopyFail. Removes the queued Syncs before the first CopyEnd and that
    /// CopyEnd; if the client has not ended the copy yet, remembers that it is in progress.
    pub(super) fn start_copy_in(&mut self) {
        let mut i = 1;
        while i < self.entries.len() {
            match self.entries[i].expect {
                Expect::Sync => {
                    self.entries.remove(i);
                }
                Expect::CopyEnd => {
                    self.entries.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }
}

/// A statement as the client knows it.
#[derive(Debug, Clone)]
pub(super) struct StmtRef {
    pub id: StmtId,
    pub sql: Option<Arc<str>>,
    /// The client sent `Describe S` for it: the server will have told its row shape before
    /// any portal bound from it runs.
    pub described: bool,
}

/// A portal as the client knows it.
#[derive(Debug, Clone)]
pub(super) struct PortalRef {
    /// The statement it was bound from (`None` for a portal the proxy first saw in a Describe
    /// or Execute, such as a SQL cursor).
    pub statement: Option<String>,
    pub sql: Option<Arc<str>>,
    /// Its row shape will be known before its rows arrive (its statement or itself was
    /// described): no Describe needs to be injected before Execute.
    pub described: bool,
}

/// The client's view, updated when client messages are handled.
#[derive(Debug, Default)]
pub(super) struct ClientView {
    pub statements: HashMap<String, StmtRef>,
    pub portals: HashMap<String, PortalRef>,
    next_stmt: u64,
}

impl ClientView {
    pub(super) fn new_stmt_id(&mut self) -> StmtId {
        self.next_stmt += 1;
        StmtId(self.next_stmt)
    }

    /// The statement of that name, registering an unknown one (e.g. created with SQL PREPARE)
    /// so its description can still be remembered.
    pub(super) fn statement(&mut self, name: &str, limit: usize) -> Result<StmtRef, ProxyError> {
        if let Some(s) = self.statements.get(name) {
            return Ok(s.clone());
        }
        let s = StmtRef {
            id: self.new_stmt_id(),
            sql: None,
            described: false,
        };
        self.insert_statement(name.to_owned(), s.clone(), limit)?;
        Ok(s)
    }

    pub(super) fn insert_statement(
        &mut self,
        name: String,
        s: StmtRef,
        limit: usize,
    ) -> Result<(), ProxyError> {
        if self.statements.len() >= limit && !self.statements.contains_key(&name) {
            return Err(ProxyError::LimitExceeded {
                what: "prepared statements",
                limit,
            });
        }
        self.statements.insert(name, s);
        Ok(())
    }

    /// The portal's row shape will be known: the client (or the proxy) sent `Describe P`.
    /// Registers a portal first seen here (a SQL cursor).
    pub(super) fn portal_described(&mut self, name: &str, limit: usize) -> Result<(), ProxyError> {
        if let Some(p) = self.portals.get_mut(name) {
            p.described = true;
            return Ok(());
        }
        self.insert_portal(
            name.to_owned(),
            PortalRef {
                statement: None,
                sql: None,
                described: true,
            },
            limit,
        )
    }

    pub(super) fn insert_portal(
        &mut self,
        name: String,
        p: PortalRef,
        limit: usize,
    ) -> Result<(), ProxyError> {
        if self.portals.len() >= limit && !self.portals.contains_key(&name) {
            return Err(ProxyError::LimitExceeded {
                what: "portals",
                limit,
            });
        }
        self.portals.insert(name, p);
        Ok(())
    }
}

/// A portal as the server has confirmed it.
#[derive(Debug, Clone)]
pub(super) struct ServerPortal {
    /// The statement it was bound from (`None` for one known only from `Describe P`).
    pub stmt: Option<StmtId>,
    pub sql: Option<Arc<str>>,
    pub formats: ResultFormats,
    /// From `Describe P`: `Some(None)` = NoData.
    pub described: Option<Option<Arc<RowDescription>>>,
    /// Its statement's description when it was bound (the statement may be closed or
    /// replaced while the portal lives on).
    pub stmt_described: Option<Arc<RowDescription>>,
}

/// The server's view, updated as responses arrive.
#[derive(Debug, Default)]
pub(super) struct ServerView {
    /// Row shape of described statements (`None` = NoData).
    pub described: HashMap<StmtId, Option<Arc<RowDescription>>>,
    /// Which statement currently holds each name.
    pub names: HashMap<String, StmtId>,
    pub portals: HashMap<String, ServerPortal>,
    /// Context of the result set being received.
    pub result: Option<Arc<ResultContext>>,
    /// Context of the COPY OUT being received.
    pub copy: Option<Arc<CopyContext>>,
    /// The request of the last COPY OUT started and its ordinal in that request.
    pub copies: Option<(super::RequestId, usize)>,
}

impl ServerView {
    /// Statement `id` now holds `name`; forget what the previous holder was.
    pub(super) fn bind_name(&mut self, name: &str, id: StmtId) {
        if let Some(old) = self.names.insert(name.to_owned(), id) {
            if old != id {
                self.described.remove(&old);
            }
        }
    }

    /// The statement called `name` is gone.
    pub(super) fn drop_name(&mut self, name: &str) {
        if let Some(old) = self.names.remove(name) {
            self.described.remove(&old);
        }
    }
}
