//! Client → server: classify each frontend message, queue what expects a response, hold
//! SQL-carrying messages for a verdict and build refusal markers.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::frontend::{FrontendMessage, Target};
use crate::startup::Startup;

use super::state::{Entry, Expect, PortalRef, StmtRef};
use super::{
    ClientAction, ClientEvent, ClientStep, PendingStatement, Phase, Proxy, ProxyError, RequestId,
    ResultFormats, StatementKind, Verdict,
};

fn forward(raw: Bytes, event: Option<ClientEvent>) -> ClientStep {
    ClientStep {
        action: ClientAction::Forward(raw),
        event,
    }
}

impl Proxy {
    /// Handles one raw client message (as cut by [`Proxy::frame_client`]).
    ///
    /// # Errors
    /// A malformed or out-of-phase message ([`ProxyError::Protocol`]), a message while a
    /// decision is pending ([`ProxyError::DecisionPending`]), a session limit, or a message
    /// after Terminate. Any error should end the session.
    pub fn client_message(&mut self, raw: Bytes) -> Result<ClientStep, ProxyError> {
        if self.awaiting.is_some() {
            return Err(ProxyError::DecisionPending);
        }
        match self.phase {
            Phase::Startup => self.client_startup(raw),
            Phase::Authenticating => self.client_auth(raw),
            Phase::Ready => self.client_ready(raw),
            Phase::Terminated => Err(ProxyError::Terminated),
        }
    }

    fn client_startup(&mut self, raw: Bytes) -> Result<ClientStep, ProxyError> {
        match Startup::parse(&raw)? {
            // No TLS termination (yet): answering 'N' makes libpq continue in plaintext with
            // sslmode=prefer, and fail cleanly with sslmode=require.
            Startup::SslRequest | Startup::GssEncRequest => Ok(ClientStep {
                action: ClientAction::Reply(Bytes::from_static(b"N")),
                event: None,
            }),
            Startup::Cancel { pid, secret_key } => {
                self.phase = Phase::Terminated;
                Ok(ClientStep {
                    action: ClientAction::Cancel { pid, secret_key },
                    event: None,
                })
            }
            Startup::Params { minor, params, .. } => {
                self.phase = Phase::Authenticating;
                self.minor = minor;
                Ok(forward(raw, Some(ClientEvent::Startup { minor, params })))
            }
        }
    }

    fn client_auth(&mut self, raw: Bytes) -> Result<ClientStep, ProxyError> {
        match FrontendMessage::parse_in(&raw, self.text)? {
            // Password / SASL / GSS responses are relayed untouched and never recorded.
            FrontendMessage::Password(_) => Ok(forward(raw, None)),
            FrontendMessage::Terminate => {
                self.phase = Phase::Terminated;
                Ok(forward(raw, Some(ClientEvent::Terminate)))
            }
            other => Err(ProtocolError::UnexpectedMessage {
                message: other.name(),
                phase: "before authentication completed",
            }
            .into()),
        }
    }

    fn push(&mut self, request: RequestId, expect: Expect) -> Result<bool, ProxyError> {
        self.queue.push(
            Entry {
                request,
                expect,
                refusal: None,
            },
            self.config.max_outstanding,
        )
    }

    fn client_ready(&mut self, raw: Bytes) -> Result<ClientStep, ProxyError> {
        let msg = FrontendMessage::parse_in(&raw, self.text)?;
        let limit = self.config.max_prepared;
        match msg {
            FrontendMessage::Query { sql } => {
                Ok(self.pending(raw, StatementKind::Query { sql: sql.into() }))
            }
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            } => Ok(self.pending(
                raw,
                StatementKind::Parse {
                    name,
                    sql: query.into(),
                    param_types,
                },
            )),
            FrontendMessage::FunctionCall(f) => {
                Ok(self.pending(raw, StatementKind::FunctionCall(f)))
            }
            FrontendMessage::Bind(bind) => {
                let request = self.next_request();
                let stmt = self.client.statement(&bind.statement, limit)?;
                self.client.insert_portal(
                    bind.portal.clone(),
                    PortalRef {
                        statement: Some(bind.statement.clone()),
                        sql: stmt.sql.clone(),
                        described: stmt.described,
                    },
                    limit,
                )?;
                self.push(
                    request,
                    Expect::Bind {
                        portal: bind.portal.clone(),
                        stmt: stmt.id,
                        sql: stmt.sql.clone(),
                        formats: ResultFormats::from_codes(&bind.result_formats),
                    },
                )?;
                let event = ClientEvent::Bind {
                    request,
                    bind,
                    sql: stmt.sql,
                };
                Ok(forward(raw, Some(event)))
            }
            FrontendMessage::Describe { kind, name } => {
                let request = self.next_request();
                let expect = match kind {
                    Target::Statement => {
                        let stmt = self.client.statement(&name, limit)?.id;
                        if let Some(s) = self.client.statements.get_mut(&name) {
                            s.described = true;
                        }
                        Expect::DescribeStatement {
                            stmt,
                            name: name.clone(),
                        }
                    }
                    Target::Portal => {
                        self.client.portal_described(&name, limit)?;
                        Expect::DescribePortal {
                            portal: name.clone(),
                            injected: false,
                        }
                    }
                };
                self.push(request, expect)?;
                Ok(forward(
                    raw,
                    Some(ClientEvent::Describe {
                        request,
                        target: kind,
                        name,
                    }),
                ))
            }
            FrontendMessage::Execute { portal, max_rows } => {
                let request = self.next_request();
                let known = self.client.portals.get(&portal).cloned();
                let sql = known.as_ref().and_then(|p| p.sql.clone());
                // Masking needs every column's type and format before the first row: when
                // the client did not ask (tokio-postgres with an unnamed statement, hand-made
                // clients), ask ourselves, in the same write, and swallow the answer.
                let out = if known.as_ref().is_some_and(|p| p.described) {
                    raw
                } else {
                    let describe = FrontendMessage::Describe {
                        kind: Target::Portal,
                        name: portal.clone(),
                    }
                    .to_bytes()?;
                    let expect = Expect::DescribePortal {
                        portal: portal.clone(),
                        injected: true,
                    };
                    if self.push(request, expect)? {
                        self.client.portal_described(&portal, limit)?;
                    }
                    let mut both = bytes::BytesMut::with_capacity(describe.len() + raw.len());
                    both.extend_from_slice(&describe);
                    both.extend_from_slice(&raw);
                    both.freeze()
                };
                self.push(
                    request,
                    Expect::Execute {
                        portal: portal.clone(),
                        sql: sql.clone(),
                    },
                )?;
                Ok(forward(
                    out,
                    Some(ClientEvent::Execute {
                        request,
                        portal,
                        statement: known.and_then(|p| p.statement),
                        sql,
                        max_rows,
                    }),
                ))
            }
            FrontendMessage::Close { kind, name } => {
                let request = self.next_request();
                match kind {
                    Target::Statement => self.client.statements.remove(&name),
                    Target::Portal => {
                        self.client.portals.remove(&name);
                        None
                    }
                };
                self.push(
                    request,
                    Expect::Close {
                        target: kind,
                        name: name.clone(),
                    },
                )?;
                Ok(forward(
                    raw,
                    Some(ClientEvent::Close {
                        request,
                        target: kind,
                        name,
                    }),
                ))
            }
            FrontendMessage::Sync => {
                if self.queue.copy_in {
                    // Ignored by the server during COPY FROM STDIN: no ReadyForQuery will come.
                    return Ok(forward(raw, Some(ClientEvent::Sync { request: None })));
                }
                let request = self.next_request();
                self.push(request, Expect::Sync)?;
                Ok(forward(
                    raw,
                    Some(ClientEvent::Sync {
                        request: Some(request),
                    }),
                ))
            }
            FrontendMessage::Flush => Ok(forward(raw, Some(ClientEvent::Flush))),
            FrontendMessage::Terminate => {
                self.phase = Phase::Terminated;
                Ok(forward(raw, Some(ClientEvent::Terminate)))
            }
            FrontendMessage::CopyData(data) => Ok(forward(raw, Some(ClientEvent::CopyData(data)))),
            FrontendMessage::CopyDone | FrontendMessage::CopyFail { .. } => {
                if self.queue.copy_in {
                    self.queue.copy_in = false;
                } else {
                    let request = self.next_request();
                    self.push(request, Expect::CopyEnd)?;
                }
                let event = match msg {
                    FrontendMessage::CopyFail { message } => ClientEvent::CopyFail { message },
                    _ => ClientEvent::CopyDone,
                };
                Ok(forward(raw, Some(event)))
            }
            FrontendMessage::Password(_) => Err(ProtocolError::UnexpectedMessage {
                message: "PasswordMessage",
                phase: "after authentication completed",
            }
            .into()),
        }
    }

    fn pending(&mut self, raw: Bytes, kind: StatementKind) -> ClientStep {
        let request = self.next_request();
        self.awaiting = Some(request);
        ClientStep {
            action: ClientAction::Decide(PendingStatement {
                proxy: self.id,
                request,
                kind,
                raw,
            }),
            event: None,
        }
    }

    /// Applies the verdict on a statement returned in [`ClientAction::Decide`] and returns the
    /// bytes to send to the server: the original message if allowed, a refusal marker if
    /// refused. Client messages may be fed again afterwards.
    ///
    /// # Errors
    /// [`ProxyError::UnknownDecision`] if this session is not waiting for that statement; a
    /// session limit. Any error should end the session.
    pub fn decide(
        &mut self,
        stmt: PendingStatement,
        verdict: Verdict,
    ) -> Result<Bytes, ProxyError> {
        if stmt.proxy != self.id || self.awaiting != Some(stmt.request) {
            return Err(ProxyError::UnknownDecision {
                request: stmt.request,
            });
        }
        self.awaiting = None;
        let limit = self.config.max_prepared;
        let refusal = match verdict {
            Verdict::Allow => None,
            Verdict::Refuse(e) => Some(e),
        };
        let refused = refusal.is_some();
        let (expect, out) = match stmt.kind {
            StatementKind::Query { sql } => {
                // A simple query replaces the unnamed statement and portal.
                self.client.statements.remove("");
                self.client.portals.remove("");
                let out = if refused {
                    self.marker_query()?
                } else {
                    stmt.raw
                };
                (Expect::SimpleQuery { sql: Some(sql) }, out)
            }
            StatementKind::FunctionCall(f) => {
                let out = if refused {
                    self.marker_query()?
                } else {
                    stmt.raw
                };
                let expect = if refused {
                    // The marker is a Query: ErrorResponse then ReadyForQuery, the same shape
                    // as a failed function call.
                    Expect::SimpleQuery { sql: None }
                } else {
                    Expect::FunctionCall {
                        format: crate::format::Format::from_code(f.result_format),
                    }
                };
                (expect, out)
            }
            StatementKind::Parse { name, sql, .. } => {
                if refused {
                    // The server drops the unnamed statement before parsing; a named one that
                    // already exists is left as it was.
                    if name.is_empty() {
                        self.client.statements.remove("");
                    }
                    let out = FrontendMessage::Parse {
                        name: name.clone(),
                        query: self.marker.clone(),
                        param_types: Vec::new(),
                    }
                    .to_bytes()?;
                    (Expect::Parse { name, stmt: None }, out)
                } else {
                    let id = self.client.new_stmt_id();
                    self.client.insert_statement(
                        name.clone(),
                        StmtRef {
                            id,
                            sql: Some(sql),
                            described: false,
                        },
                        limit,
                    )?;
                    (
                        Expect::Parse {
                            name,
                            stmt: Some(id),
                        },
                        stmt.raw,
                    )
                }
            }
        };
        self.queue.push(
            Entry {
                request: stmt.request,
                expect,
                refusal,
            },
            self.config.max_outstanding,
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKeyData;
    use crate::proxy::ProxyConfig;
    use bytes::BytesMut;

    fn proxy() -> Proxy {
        Proxy::new(ProxyConfig::new(
            "testnonce1",
            BackendKeyData {
                pid: 9,
                secret_key: Bytes::from_static(b"wxyz"),
            },
        ))
        .unwrap()
    }

    fn bytes(m: &FrontendMessage) -> Bytes {
        m.to_bytes().unwrap()
    }

    #[test]
    fn startup_phase() {
        let mut p = proxy();
        let mut buf = BytesMut::new();
        Startup::SslRequest.encode(&mut buf).unwrap();
        let raw = p.frame_client(&mut buf).unwrap().unwrap();
        let step = p.client_message(raw).unwrap();
        assert!(matches!(step.action, ClientAction::Reply(ref b) if &b[..] == b"N"));
        // A query before the startup packet is not a startup packet.
        assert!(p.client_message(bytes(&FrontendMessage::Sync)).is_err());
        let mut p = proxy();
        let start = Startup::Params {
            major: 3,
            minor: 0,
            params: vec![("user".into(), "a".into())],
        };
        let mut buf = BytesMut::new();
        start.encode(&mut buf).unwrap();
        let step = p.client_message(buf.freeze()).unwrap();
        assert!(matches!(step.action, ClientAction::Forward(_)));
        assert!(matches!(
            step.event,
            Some(ClientEvent::Startup { minor: 0, .. })
        ));
        // Only password messages until authentication completes.
        let q = bytes(&FrontendMessage::Query {
            sql: "SELECT 1".into(),
        });
        assert!(matches!(
            p.client_message(q),
            Err(ProxyError::Protocol(
                ProtocolError::UnexpectedMessage { .. }
            ))
        ));
    }

    #[test]
    fn cancel_request_is_reported() {
        let mut p = proxy();
        let mut buf = BytesMut::new();
        Startup::Cancel {
            pid: 9,
            secret_key: Bytes::from_static(b"wxyz"),
        }
        .encode(&mut buf)
        .unwrap();
        let step = p.client_message(buf.freeze()).unwrap();
        assert!(
            matches!(step.action, ClientAction::Cancel { pid: 9, ref secret_key } if &secret_key[..] == b"wxyz")
        );
        assert!(matches!(
            p.client_message(Bytes::new()),
            Err(ProxyError::Terminated)
        ));
    }

    #[test]
    fn decision_must_match() {
        let mut p = proxy();
        p.phase = Phase::Ready;
        let step = p
            .client_message(bytes(&FrontendMessage::Query {
                sql: "SELECT 1".into(),
            }))
            .unwrap();
        let ClientAction::Decide(stmt) = step.action else {
            panic!("expected a decision");
        };
        assert_eq!(stmt.sql(), Some("SELECT 1"));
        assert!(matches!(
            p.client_message(bytes(&FrontendMessage::Sync)),
            Err(ProxyError::DecisionPending)
        ));
        let mut other = proxy();
        other.phase = Phase::Ready;
        let ClientAction::Decide(foreign) = other
            .client_message(bytes(&FrontendMessage::Query {
                sql: "SELECT 2".into(),
            }))
            .unwrap()
            .action
        else {
            panic!("expected a decision");
        };
        assert!(matches!(
            p.decide(foreign, Verdict::Allow),
            Err(ProxyError::UnknownDecision { .. })
        ));
        let out = p.decide(stmt, Verdict::Allow).unwrap();
        assert_eq!(
            FrontendMessage::parse(&out).unwrap(),
            FrontendMessage::Query {
                sql: "SELECT 1".into()
            }
        );
        assert_eq!(p.outstanding(), 1);
    }
}
