//! Server → client: match each backend message to the request it answers, attach row and copy
//! context, substitute refusals, replace the cancellation key, and report events.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{BackendMessage, CopyResponse, TransactionStatus};
use crate::error_response::ErrorResponse;
use crate::frontend::Target;
use crate::row_description::RowDescription;

use super::state::{Entry, Expect, ServerPortal};
use super::{
    CopyContext, Outcome, Phase, Proxy, ProxyError, RequestId, ResultContext, ResultFormats,
    ServerEvent, ServerOutput, ServerStep,
};

fn step(output: ServerOutput, events: Vec<ServerEvent>) -> ServerStep {
    ServerStep { output, events }
}

fn fwd(raw: Bytes) -> ServerStep {
    step(ServerOutput::Forward(raw), Vec::new())
}

fn error_outcome(err: &ErrorResponse) -> Outcome {
    Outcome::Error {
        code: err.code().map(str::to_owned),
        severity: err.severity().map(str::to_owned),
    }
}

impl Proxy {
    /// Handles one raw server message (as cut by [`Proxy::frame_server`]).
    ///
    /// # Errors
    /// A malformed message, or one that no outstanding request explains
    /// ([`ProxyError::Desync`]). Any error should end the session.
    pub fn server_message(&mut self, raw: Bytes) -> Result<ServerStep, ProxyError> {
        let msg = BackendMessage::parse_in(&raw, self.text)?;
        // Messages the server may send at any time.
        match msg {
            BackendMessage::NoticeResponse(n) => {
                return Ok(step(ServerOutput::Notice(n), Vec::new()))
            }
            BackendMessage::NotificationResponse(n) => {
                return Ok(step(ServerOutput::Notification(n), Vec::new()))
            }
            BackendMessage::ParameterStatus { name, value } => {
                if name == "client_encoding" {
                    // What the client sends from now on, and what the server answers in.
                    self.text = crate::TextEncoding::from_pg_name(&value);
                }
                return Ok(step(
                    ServerOutput::ParameterStatus {
                        name: name.clone(),
                        value: value.clone(),
                        raw,
                    },
                    vec![ServerEvent::ParameterStatus { name, value }],
                ));
            }
            _ => {}
        }
        match self.phase {
            Phase::Startup => Err(ProxyError::Desync {
                message: msg.name(),
                expected: "the client has not sent its startup packet",
            }),
            Phase::Authenticating => self.server_auth(msg, raw),
            Phase::Ready | Phase::Terminated => self.server_ready(msg, raw),
        }
    }

    fn server_auth(&mut self, msg: BackendMessage, raw: Bytes) -> Result<ServerStep, ProxyError> {
        match msg {
            BackendMessage::Authentication(_) => Ok(fwd(raw)),
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            } => {
                let newest = u16::try_from(newest_minor).unwrap_or(0);
                self.minor = self.minor.min(newest);
                Ok(step(
                    ServerOutput::Forward(raw),
                    vec![ServerEvent::NegotiatedVersion {
                        minor: self.minor,
                        unrecognized,
                    }],
                ))
            }
            BackendMessage::BackendKeyData(server) => {
                let mut client = self.config.proxy_key.clone();
                if self.minor < 2 {
                    // Protocol 3.0 clients only accept a 4-byte secret.
                    client.secret_key.truncate(4);
                }
                let out = BackendMessage::BackendKeyData(client.clone()).to_bytes()?;
                self.server_key = Some(server.clone());
                Ok(step(
                    ServerOutput::Forward(out),
                    vec![ServerEvent::BackendKey { server, client }],
                ))
            }
            BackendMessage::ReadyForQuery(status) => {
                self.phase = Phase::Ready;
                self.status = Some(status);
                Ok(step(
                    ServerOutput::Forward(raw),
                    vec![ServerEvent::ReadyForQuery(status)],
                ))
            }
            BackendMessage::ErrorResponse(e) => {
                let event = ServerEvent::SessionError {
                    code: e.code().map(str::to_owned),
                    severity: e.severity().map(str::to_owned),
                };
                Ok(step(ServerOutput::Error(e), vec![event]))
            }
            other => Err(ProxyError::Desync {
                message: other.name(),
                expected: "authenticating",
            }),
        }
    }

    fn desync(&self, message: &'static str) -> ProxyError {
        ProxyError::Desync {
            message,
            expected: self
                .queue
                .front()
                .map_or("no request is outstanding", |e| e.expect.describe()),
        }
    }

    fn server_ready(&mut self, msg: BackendMessage, raw: Bytes) -> Result<ServerStep, ProxyError> {
        self.queue.drop_stray_copy_ends();
        let name = msg.name();
        if let BackendMessage::ErrorResponse(err) = msg {
            return Ok(self.on_error(err));
        }
        let Some(front) = self.queue.front() else {
            return Err(self.desync(name));
        };
        let request = front.request;
        if front.refusal.is_some() {
            // A refusal marker can only fail; anything else means we lost track.
            if !matches!(
                (&front.expect, &msg),
                (Expect::SimpleQuery { .. }, BackendMessage::ReadyForQuery(_))
            ) {
                return Err(self.desync(name));
            }
        }
        match (&front.expect, msg) {
            (
                Expect::SimpleQuery { .. } | Expect::FunctionCall { .. } | Expect::Sync,
                BackendMessage::ReadyForQuery(status),
            ) => {
                let entry = self.queue.pop();
                self.server.result = None;
                self.server.copy = None;
                if matches!(
                    entry,
                    Some(Entry {
                        expect: Expect::SimpleQuery { .. },
                        ..
                    })
                ) {
                    // A simple query replaces the unnamed statement and portal.
                    self.server.drop_name("");
                    self.server.portals.remove("");
                }
                if status == TransactionStatus::Idle {
                    // Portals do not outlive their transaction.
                    self.server.portals.clear();
                    if self.queue.len() == 0 {
                        self.client.portals.clear();
                    }
                }
                self.status = Some(status);
                Ok(step(
                    ServerOutput::Forward(raw),
                    vec![ServerEvent::ReadyForQuery(status)],
                ))
            }
            (Expect::Parse { name, stmt }, BackendMessage::ParseComplete) => {
                if let Some(id) = stmt {
                    let (name, id) = (name.clone(), *id);
                    self.server.bind_name(&name, id);
                }
                self.queue.pop();
                Ok(self.completed(raw, request, Outcome::Parsed))
            }
            (
                Expect::Bind {
                    portal,
                    stmt,
                    sql,
                    formats,
                },
                BackendMessage::BindComplete,
            ) => {
                let limit = self.config.max_prepared;
                if self.server.portals.len() >= limit && !self.server.portals.contains_key(portal) {
                    return Err(ProxyError::LimitExceeded {
                        what: "portals",
                        limit,
                    });
                }
                let p = ServerPortal {
                    stmt: Some(*stmt),
                    sql: sql.clone(),
                    formats: formats.clone(),
                    described: None,
                    stmt_described: self.server.described.get(stmt).cloned().flatten(),
                };
                let portal = portal.clone();
                self.server.portals.insert(portal, p);
                self.queue.pop();
                Ok(fwd(raw))
            }
            (Expect::DescribeStatement { .. }, BackendMessage::ParameterDescription { .. }) => {
                Ok(fwd(raw))
            }
            (
                Expect::DescribeStatement { name, stmt },
                m @ (BackendMessage::RowDescription(_) | BackendMessage::NoData),
            ) => {
                let (name, id) = (name.clone(), *stmt);
                let desc = match m {
                    BackendMessage::RowDescription(rd) => Some(Arc::new(rd)),
                    _ => None,
                };
                self.server.bind_name(&name, id);
                self.server.described.insert(id, desc.clone());
                self.queue.pop();
                Ok(describe_output(desc, raw))
            }
            (
                Expect::DescribePortal { portal, injected },
                m @ (BackendMessage::RowDescription(_) | BackendMessage::NoData),
            ) => {
                let injected = *injected;
                let desc = match m {
                    BackendMessage::RowDescription(rd) => Some(Arc::new(rd)),
                    _ => None,
                };
                let limit = self.config.max_prepared;
                match self.server.portals.get_mut(portal) {
                    Some(p) => p.described = Some(desc.clone()),
                    None => {
                        // A portal the proxy never saw bound (a SQL cursor).
                        if self.server.portals.len() >= limit {
                            return Err(ProxyError::LimitExceeded {
                                what: "portals",
                                limit,
                            });
                        }
                        let p = ServerPortal {
                            stmt: None,
                            sql: None,
                            formats: ResultFormats::Unknown,
                            described: Some(desc.clone()),
                            stmt_described: None,
                        };
                        let portal = portal.clone();
                        self.server.portals.insert(portal, p);
                    }
                }
                self.queue.pop();
                if injected {
                    // The proxy asked, not the client: the client must not see the answer.
                    return Ok(fwd(Bytes::new()));
                }
                Ok(describe_output(desc, raw))
            }
            (Expect::SimpleQuery { sql }, BackendMessage::RowDescription(rd)) => {
                let rd = Arc::new(rd);
                self.server.result = Some(Arc::new(ResultContext {
                    request,
                    sql: sql.clone(),
                    formats: ResultFormats::from_description(&rd),
                    description: Some(rd.clone()),
                }));
                Ok(describe_output(Some(rd), raw))
            }
            (Expect::SimpleQuery { .. } | Expect::Execute { .. }, BackendMessage::DataRow(row)) => {
                let context = match (&self.server.result, &front.expect) {
                    (Some(c), _) => c.clone(),
                    (None, Expect::Execute { portal, sql }) => {
                        let c = self.execute_context(request, portal, sql.clone());
                        self.server.result = Some(c.clone());
                        c
                    }
                    // Rows of a simple query always follow a RowDescription.
                    (None, _) => return Err(self.desync(name)),
                };
                Ok(step(ServerOutput::DataRow { row, context }, Vec::new()))
            }
            (Expect::SimpleQuery { .. }, BackendMessage::CommandComplete { tag }) => {
                self.server.result = None;
                self.server.copy = None;
                Ok(self.completed(raw, request, Outcome::Command(tag)))
            }
            (Expect::SimpleQuery { .. }, BackendMessage::EmptyQueryResponse) => {
                Ok(self.completed(raw, request, Outcome::EmptyQuery))
            }
            (
                Expect::Execute { .. },
                m @ (BackendMessage::CommandComplete { .. }
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::PortalSuspended),
            ) => {
                let outcome = match m {
                    BackendMessage::CommandComplete { tag } => Outcome::Command(tag),
                    BackendMessage::EmptyQueryResponse => Outcome::EmptyQuery,
                    _ => Outcome::Suspended,
                };
                self.queue.pop();
                self.server.result = None;
                self.server.copy = None;
                Ok(self.completed(raw, request, outcome))
            }
            (
                Expect::SimpleQuery { sql } | Expect::Execute { sql, .. },
                BackendMessage::CopyOutResponse(c),
            ) => {
                let c = self.copy_context(request, sql.clone(), c, false);
                self.server.copy = Some(c);
                Ok(fwd(raw))
            }
            (
                Expect::SimpleQuery { sql } | Expect::Execute { sql, .. },
                BackendMessage::CopyBothResponse(c),
            ) => {
                let c = self.copy_context(request, sql.clone(), c, true);
                self.server.copy = Some(c);
                Ok(fwd(raw))
            }
            (
                Expect::SimpleQuery { .. } | Expect::Execute { .. },
                BackendMessage::CopyInResponse(_),
            ) => {
                self.queue.start_copy_in();
                Ok(fwd(raw))
            }
            (
                Expect::SimpleQuery { .. } | Expect::Execute { .. },
                BackendMessage::CopyData(data),
            ) => {
                let Some(context) = self.server.copy.clone() else {
                    return Err(self.desync(name));
                };
                Ok(step(
                    ServerOutput::CopyData { data, raw, context },
                    Vec::new(),
                ))
            }
            (Expect::SimpleQuery { .. } | Expect::Execute { .. }, BackendMessage::CopyDone) => {
                if self.server.copy.is_none() {
                    return Err(self.desync(name));
                }
                Ok(fwd(raw))
            }
            (Expect::FunctionCall { format }, BackendMessage::FunctionCallResponse { value }) => {
                let format = *format;
                Ok(step(
                    ServerOutput::FunctionResult { value, format, raw },
                    vec![ServerEvent::Completed {
                        request,
                        outcome: Outcome::FunctionReturned,
                    }],
                ))
            }
            (
                Expect::Close {
                    target,
                    name: closed,
                },
                BackendMessage::CloseComplete,
            ) => {
                match target {
                    Target::Statement => {
                        let closed = closed.clone();
                        self.server.drop_name(&closed);
                    }
                    Target::Portal => {
                        let closed = closed.clone();
                        self.server.portals.remove(&closed);
                    }
                }
                self.queue.pop();
                Ok(fwd(raw))
            }
            _ => Err(self.desync(name)),
        }
    }

    fn completed(&mut self, raw: Bytes, request: RequestId, outcome: Outcome) -> ServerStep {
        step(
            ServerOutput::Forward(raw),
            vec![ServerEvent::Completed { request, outcome }],
        )
    }

    /// Row context of the Execute at the front: the portal's own description if the client
    /// described it, else the description of its statement (from an earlier `Describe S`)
    /// combined with the result formats requested in Bind.
    fn execute_context(
        &self,
        request: RequestId,
        portal: &str,
        sql: Option<Arc<str>>,
    ) -> Arc<ResultContext> {
        let Some(p) = self.server.portals.get(portal) else {
            return Arc::new(ResultContext {
                request,
                sql,
                description: None,
                formats: ResultFormats::Unknown,
            });
        };
        let sql = sql.or_else(|| p.sql.clone());
        let (description, formats) = match &p.described {
            Some(Some(rd)) => (Some(rd.clone()), ResultFormats::from_description(rd)),
            _ => {
                let desc = p
                    .stmt
                    .and_then(|id| self.server.described.get(&id).cloned().flatten())
                    .or_else(|| p.stmt_described.clone());
                (desc, p.formats.clone())
            }
        };
        Arc::new(ResultContext {
            request,
            sql,
            description,
            formats,
        })
    }

    fn on_error(&mut self, err: ErrorResponse) -> ServerStep {
        let is_marker = self.is_marker_error(&err);
        if matches!(
            self.queue.front(),
            Some(Entry {
                expect: Expect::DescribePortal { injected: true, .. },
                ..
            })
        ) {
            // The Describe the proxy put before an Execute failed (no such portal): to the
            // client, that is the Execute failing, which is what it would have seen.
            self.queue.pop();
        }
        let Some(front) = self.queue.front_mut() else {
            let event = ServerEvent::SessionError {
                code: err.code().map(str::to_owned),
                severity: err.severity().map(str::to_owned),
            };
            return step(ServerOutput::Error(err), vec![event]);
        };
        let request = front.request;
        let (output, outcome) = match front.refusal.take() {
            Some(refusal) if is_marker => (refusal, Outcome::Refused),
            _ => {
                let outcome = error_outcome(&err);
                (err, outcome)
            }
        };
        let mut events = vec![ServerEvent::Completed { request, outcome }];
        match front.expect {
            // The simple query (or failed function call / marker) still ends with ReadyForQuery;
            // an error at Sync (e.g. a deferred constraint at commit) too.
            Expect::SimpleQuery { .. } | Expect::FunctionCall { .. } | Expect::Sync => {
                self.server.result = None;
                self.server.copy = None;
            }
            _ => {
                self.server.result = None;
                self.server.copy = None;
                for skipped in self.queue.skip_to_sync() {
                    if matches!(
                        skipped.expect,
                        Expect::DescribePortal { injected: true, .. }
                    ) {
                        // Its Execute, with the same request id, is reported instead.
                        continue;
                    }
                    events.push(ServerEvent::Completed {
                        request: skipped.request,
                        outcome: Outcome::Skipped,
                    });
                }
            }
        }
        step(ServerOutput::Error(output), events)
    }
}

/// A RowDescription goes out for masking of its names; NoData as it is.
fn describe_output(desc: Option<Arc<RowDescription>>, raw: Bytes) -> ServerStep {
    match desc {
        Some(description) => step(
            ServerOutput::RowDescription { description, raw },
            Vec::new(),
        ),
        None => fwd(raw),
    }
}

impl Proxy {
    /// Context of a COPY OUT (or CopyBoth) the front request starts.
    fn copy_context(
        &mut self,
        request: RequestId,
        sql: Option<Arc<str>>,
        c: CopyResponse,
        both: bool,
    ) -> Arc<CopyContext> {
        // Which COPY of a multi-statement query this is.
        let ordinal = match self.server.copies {
            Some((r, n)) if r == request => n + 1,
            _ => 0,
        };
        self.server.copies = Some((request, ordinal));
        Arc::new(CopyContext {
            request,
            sql,
            format: c.format,
            column_formats: c.column_formats.into(),
            both,
            ordinal,
        })
    }
}
