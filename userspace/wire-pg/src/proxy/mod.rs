//! The per-connection protocol state machine: one [`Proxy`] value per proxied connection, never
//! shared. It performs no I/O; the session loop feeds it raw messages and acts on what it returns.
//!
//! # Flow
//! - Client → server: [`Proxy::client_message`] returns a [`ClientStep`]. Messages carrying SQL
//!   (simple `Query`, `Parse`, fast-path `FunctionCall`) come back as
//!   [`ClientAction::Decide`] with a [`PendingStatement`]; nothing is forwarded until the caller
//!   passes it to [`Proxy::decide`] with a [`Verdict`] (it may wait for a human first: while a
//!   decision is pending, further client messages are refused with
//!   [`ProxyError::DecisionPending`], so the caller simply stops reading the client).
//! - Refusal keeps the server's own semantics: the statement is replaced by a *marker* (a Query,
//!   or a Parse with the same statement name, whose text is `dbwarden_refused_<nonce>`, a syntax
//!   error). The server fails at exactly that point — discarding the rest of an extended batch
//!   and setting the transaction state as it would for any error — and the proxy swaps the
//!   marker's 42601 error for the caller's [`ErrorResponse`]. If an earlier message of the batch
//!   already failed, the server never reaches the marker and the pending refusal is dropped.
//! - Server → client: [`Proxy::server_message`] returns a [`ServerStep`]: what to send
//!   ([`ServerOutput`]; every DataRow and CopyData carries the [`ResultContext`] or
//!   [`CopyContext`] masking needs) and [`ServerEvent`]s for the recorder.
//! - BackendKeyData from the server is replaced by the proxy's own key; the real one is reported
//!   in [`ServerEvent::BackendKey`] and by [`Proxy::server_key`].
//!
//! # Tracking responses
//! Every client message that produces a response is queued; responses pop the queue in order.
//! An error in the extended protocol pops everything up to the next Sync (the server discards
//! those messages), which also drops refusals that will never be reached. Named statements'
//! row descriptions (from `Describe S`) and portals' result formats (from Bind) are remembered so
//! rows of a prepared statement executed without Describe still get their context.
//!
//! Masking must know every column's type and format before the first row. When an Execute
//! arrives for a portal whose shape will not be known (neither it nor its statement was
//! described: an unnamed statement bound and executed directly, a SQL cursor), the proxy puts
//! `Describe P` in front of it in the same write, queues that under the Execute's request id,
//! and swallows the answer ([`ServerOutput::Forward`] of no bytes). An error on it (no such
//! portal) is reported as the Execute's, which is what the server would have said. Rows that
//! still arrive without a description are a lost-track condition the masker refuses.

mod client;
mod server;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::backend::{BackendKeyData, NotificationResponse, TransactionStatus};
use crate::data_row::DataRow;
use crate::error::ProtocolError;
use crate::error_response::{ErrorResponse, NoticeResponse};
use crate::format::Format;
use crate::frame::{
    split_message, split_startup, DEFAULT_MAX_MESSAGE_LEN, DEFAULT_MAX_STARTUP_LEN,
};
use crate::frontend::{Bind, FrontendMessage, FunctionCall, Target};
use crate::row_description::{FieldDescription, RowDescription};
use crate::startup::{MAX_SECRET_KEY_LEN, MIN_SECRET_KEY_LEN};

use state::{ClientView, Queue, ServerView};

/// Prefix of the refusal marker identifier.
pub const MARKER_PREFIX: &str = "dbwarden_refused_";

/// Errors of the state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A message violated the wire protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A client message was fed while a statement awaits [`Proxy::decide`].
    #[error("a statement is awaiting a policy decision; stop reading client messages until it is decided")]
    DecisionPending,
    /// [`Proxy::decide`] got a statement this proxy is not waiting for.
    #[error("decision for request {request} does not match the statement this session awaits")]
    UnknownDecision {
        /// The request of the statement passed in.
        request: RequestId,
    },
    /// The server sent a message that no outstanding request explains.
    #[error("server sent {message} while {expected}; connection out of sync")]
    Desync {
        /// The server's message type.
        message: &'static str,
        /// What the proxy was waiting for.
        expected: &'static str,
    },
    /// A per-session limit was exceeded.
    #[error("too many {what} in one session (limit {limit})")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// The configuration is unusable.
    #[error("invalid proxy configuration: {0}")]
    Config(&'static str),
    /// A message arrived after the client terminated the session.
    #[error("session already terminated")]
    Terminated,
}

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Random per-session token (8 to 64 characters of `[a-z0-9]`) that makes refusal markers
    /// unguessable: the marker is `dbwarden_refused_<nonce>`.
    pub marker_nonce: String,
    /// The cancellation key handed to the client instead of the server's (secret 4 to 256
    /// bytes; a protocol 3.0 client gets the first 4 bytes, see [`ServerEvent::BackendKey`]).
    pub proxy_key: BackendKeyData,
    /// Largest tagged message accepted from either side.
    pub max_message_len: usize,
    /// Largest startup packet accepted.
    pub max_startup_len: usize,
    /// Most prepared statements and portals tracked per session.
    pub max_prepared: usize,
    /// Most requests awaiting a server response (pipelining depth, in messages).
    pub max_outstanding: usize,
}

impl ProxyConfig {
    /// A configuration with default limits.
    #[must_use]
    pub fn new(marker_nonce: impl Into<String>, proxy_key: BackendKeyData) -> ProxyConfig {
        ProxyConfig {
            marker_nonce: marker_nonce.into(),
            proxy_key,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_startup_len: DEFAULT_MAX_STARTUP_LEN,
            max_prepared: 100_000,
            max_outstanding: 1_000_000,
        }
    }
}

/// Identifies one client request (a message expecting a response) within a session, in
/// order. Events about its outcome carry the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A statement that needs a policy verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// Simple query: the whole string, possibly several statements (the policy splits it).
    Query {
        /// SQL text.
        sql: Arc<str>,
    },
    /// Parse: the text of a prepared statement, fixed from now on.
    Parse {
        /// Statement name ("" = unnamed).
        name: String,
        /// SQL text.
        sql: Arc<str>,
        /// Parameter type OIDs given by the client.
        param_types: Vec<u32>,
    },
    /// Fast-path function call by OID.
    FunctionCall(FunctionCall),
}

/// A statement awaiting [`Proxy::decide`]. Nothing has been sent to the server yet.
#[derive(Debug)]
#[must_use = "a pending statement must be passed to Proxy::decide"]
pub struct PendingStatement {
    proxy: u64,
    request: RequestId,
    kind: StatementKind,
    raw: Bytes,
}

impl PendingStatement {
    /// The request id its outcome events will carry.
    #[must_use]
    pub fn request(&self) -> RequestId {
        self.request
    }

    /// What is to be decided.
    #[must_use]
    pub fn kind(&self) -> &StatementKind {
        &self.kind
    }

    /// The SQL text (`None` for a function call).
    #[must_use]
    pub fn sql(&self) -> Option<&str> {
        match &self.kind {
            StatementKind::Query { sql } | StatementKind::Parse { sql, .. } => Some(sql),
            StatementKind::FunctionCall(_) => None,
        }
    }
}

/// The caller's decision about a [`PendingStatement`].
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Forward the statement unchanged.
    Allow,
    /// Make the server fail at this point and show the client this error instead (build it
    /// with [`ErrorResponse::insufficient_privilege`], naming the rule).
    Refuse(ErrorResponse),
}

/// What the caller must do with a client message.
#[derive(Debug)]
pub enum ClientAction {
    /// Send these bytes to the server.
    Forward(Bytes),
    /// Send these bytes back to the client (e.g. `N` in answer to SSLRequest); nothing goes to
    /// the server.
    Reply(Bytes),
    /// A statement needs a verdict; call [`Proxy::decide`] and forward what it returns.
    Decide(PendingStatement),
    /// A CancelRequest carrying a key the proxy handed out: look up the session it belongs to,
    /// send a CancelRequest with that session's real key, and close this connection.
    Cancel {
        /// Process id from the request.
        pid: i32,
        /// Secret key from the request (compare in constant time).
        secret_key: Bytes,
    },
}

/// What happened on the client side, for the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The startup packet (protocol version and parameters such as user and database).
    Startup {
        /// Minor protocol version requested.
        minor: u16,
        /// Startup parameters.
        params: Vec<(String, String)>,
    },
    /// Bind: parameters bound to a prepared statement.
    Bind {
        /// The request id.
        request: RequestId,
        /// The message (statement and portal names, formats, parameter values).
        bind: Bind,
        /// The statement's SQL, if it was prepared through this session.
        sql: Option<Arc<str>>,
    },
    /// Execute of a portal.
    Execute {
        /// The request id.
        request: RequestId,
        /// Portal name.
        portal: String,
        /// Statement the portal was bound from, if known.
        statement: Option<String>,
        /// The statement's SQL, if known.
        sql: Option<Arc<str>>,
        /// Row limit (0 = all).
        max_rows: i32,
    },
    /// Describe of a statement or portal.
    Describe {
        /// The request id.
        request: RequestId,
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// Close of a statement or portal.
    Close {
        /// The request id.
        request: RequestId,
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// Sync (end of an extended-protocol batch).
    Sync {
        /// The request id (`None` when the server ignores it, during COPY FROM STDIN).
        request: Option<RequestId>,
    },
    /// Flush.
    Flush,
    /// COPY FROM STDIN data sent by the client.
    CopyData(Bytes),
    /// End of COPY FROM STDIN data.
    CopyDone,
    /// The client aborted COPY FROM STDIN.
    CopyFail {
        /// The client's reason.
        message: String,
    },
    /// The client is closing the session.
    Terminate,
}

/// The outcome of a client message handled by [`Proxy::client_message`].
#[derive(Debug)]
pub struct ClientStep {
    /// What to do.
    pub action: ClientAction,
    /// What to record, if anything.
    pub event: Option<ClientEvent>,
}

/// Result column formats as known from Bind or a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultFormats {
    /// Not known (e.g. a portal created outside this session's view, such as a SQL cursor);
    /// treat every value as possibly binary or text.
    Unknown,
    /// One format for every column.
    All(Format),
    /// One format per column.
    PerColumn(Arc<[Format]>),
}

impl ResultFormats {
    /// From Bind's result format codes: none = all text, one = applies to all, else per column.
    #[must_use]
    pub fn from_codes(codes: &[i16]) -> ResultFormats {
        match codes {
            [] => ResultFormats::All(Format::Text),
            [one] => Format::from_code(*one).map_or(ResultFormats::Unknown, ResultFormats::All),
            many => many
                .iter()
                .map(|c| Format::from_code(*c))
                .collect::<Option<Arc<[Format]>>>()
                .map_or(ResultFormats::Unknown, ResultFormats::PerColumn),
        }
    }

    /// From the format fields of a RowDescription.
    #[must_use]
    pub fn from_description(rd: &RowDescription) -> ResultFormats {
        ResultFormats::PerColumn(rd.fields.iter().map(|f| f.format).collect())
    }
}

/// What masking needs to know about the rows of one result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultContext {
    /// The request that produced the rows.
    pub request: RequestId,
    /// The SQL that produced them (the whole simple-query string, or the prepared statement),
    /// if known.
    pub sql: Option<Arc<str>>,
    /// Column names, source table OIDs and type OIDs, if known.
    pub description: Option<Arc<RowDescription>>,
    /// Value formats.
    pub formats: ResultFormats,
}

impl ResultContext {
    /// The format of column `col`; `None` if unknown.
    #[must_use]
    pub fn format(&self, col: usize) -> Option<Format> {
        match &self.formats {
            ResultFormats::Unknown => None,
            ResultFormats::All(f) => Some(*f),
            ResultFormats::PerColumn(fs) => fs.get(col).copied(),
        }
    }

    /// The description of column `col`, if known.
    #[must_use]
    pub fn field(&self, col: usize) -> Option<&FieldDescription> {
        self.description.as_ref().and_then(|d| d.fields.get(col))
    }
}

/// What masking needs to know about COPY TO STDOUT (or replication) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyContext {
    /// The request that started the copy.
    pub request: RequestId,
    /// Its SQL, if known.
    pub sql: Option<Arc<str>>,
    /// Overall format (text: one row per CopyData line; binary: PGCOPY format).
    pub format: Format,
    /// Per-column formats.
    pub column_formats: Arc<[Format]>,
    /// Whether it is a CopyBoth (replication) stream rather than COPY TO STDOUT.
    pub both: bool,
    /// Which COPY of its request this is (0-based): a simple query can hold several.
    pub ordinal: usize,
}

/// What to send to the client for one server message. Every variant that can carry database
/// values is separate from [`ServerOutput::Forward`] so it cannot skip masking by accident.
#[derive(Debug)]
pub enum ServerOutput {
    /// Send unchanged: carries no database values (completion tags, descriptions, status...).
    Forward(Bytes),
    /// A row description: column names come from the query (an alias can be anything the
    /// agent wrote, or a value of `format()`-built SQL), so mask them; send `raw` when nothing
    /// changes.
    RowDescription {
        /// The description.
        description: Arc<RowDescription>,
        /// The message as received.
        raw: Bytes,
    },
    /// A result row: mask it (rebuild with [`DataRow::with_values`]) and send it.
    DataRow {
        /// The row.
        row: DataRow,
        /// Its columns and formats.
        context: Arc<ResultContext>,
    },
    /// COPY data from the server: mask the payload, then encode it with [`encode_copy_data`].
    CopyData {
        /// The payload (without the message header).
        data: Bytes,
        /// The raw message (send it when nothing changes).
        raw: Bytes,
        /// The copy's formats.
        context: Arc<CopyContext>,
    },
    /// An error: the server's own (mask its fields, e.g. DETAIL echoes unique keys) or the
    /// caller's refusal substituted for a marker error.
    Error(ErrorResponse),
    /// A notice (may echo data): mask, then send.
    Notice(NoticeResponse),
    /// A NOTIFY: mask the payload, then send.
    Notification(NotificationResponse),
    /// A run-time parameter report. Its value can echo what the agent set
    /// (`application_name`, `set_config`), so it is masked like data; `raw` is sent when
    /// nothing changes.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
        /// The message as received.
        raw: Bytes,
    },
    /// A fast-path function result: mask the value, then send.
    FunctionResult {
        /// The value (`None` = NULL).
        value: Option<Bytes>,
        /// The format the client asked for, if valid.
        format: Option<Format>,
        /// The raw message.
        raw: Bytes,
    },
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A command finished with this tag (`SELECT 3`, `INSERT 0 1`, ...). A simple query
    /// reports one per statement.
    Command(String),
    /// The query string was empty.
    EmptyQuery,
    /// Execute stopped at its row limit.
    Suspended,
    /// Parse succeeded.
    Parsed,
    /// A fast-path call returned.
    FunctionReturned,
    /// The server reported an error.
    Error {
        /// SQLSTATE.
        code: Option<String>,
        /// Severity (`ERROR`, `FATAL`, ...).
        severity: Option<String>,
    },
    /// The statement was refused by policy; the client got the caller's error.
    Refused,
    /// The server skipped the request because an earlier one in its batch failed.
    Skipped,
}

/// What happened on the server side, for the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The server's real cancellation key and the one the client got instead.
    BackendKey {
        /// The server's key: keep it to forward cancel requests.
        server: BackendKeyData,
        /// The key sent to the client.
        client: BackendKeyData,
    },
    /// The server runs an older protocol minor version or ignores `_pq_.` options.
    NegotiatedVersion {
        /// The minor version now in effect.
        minor: u16,
        /// Options the server did not recognize.
        unrecognized: Vec<String>,
    },
    /// A run-time parameter changed.
    ParameterStatus {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// A request (or one statement of a simple query) finished.
    Completed {
        /// The request.
        request: RequestId,
        /// How.
        outcome: Outcome,
    },
    /// An error not tied to a request (authentication failure, FATAL shutdown, ...).
    SessionError {
        /// SQLSTATE.
        code: Option<String>,
        /// Severity.
        severity: Option<String>,
    },
    /// The server is ready for the next query; the first one ends authentication.
    ReadyForQuery(TransactionStatus),
}

/// The outcome of a server message handled by [`Proxy::server_message`].
#[derive(Debug)]
pub struct ServerStep {
    /// What to send to the client.
    pub output: ServerOutput,
    /// What to record (often empty).
    pub events: Vec<ServerEvent>,
}

/// Encodes a CopyData message (after masking its payload).
///
/// # Errors
/// The payload is longer than the wire format allows.
pub fn encode_copy_data(data: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
    crate::write::encode_message(dst, Some(b'd'), "CopyData", |w| {
        w.bytes(data);
        Ok(())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the startup packet (SSLRequest may come first).
    Startup,
    /// Startup forwarded; relaying authentication until the first ReadyForQuery.
    Authenticating,
    /// Normal operation.
    Ready,
    /// The client sent Terminate.
    Terminated,
}

static NEXT_PROXY_ID: AtomicU64 = AtomicU64::new(1);

/// The protocol state of one proxied connection.
#[derive(Debug)]
pub struct Proxy {
    id: u64,
    config: ProxyConfig,
    marker: String,
    phase: Phase,
    /// Protocol minor version in effect (requested by the client, lowered by the server).
    minor: u16,
    next_request: u64,
    /// The statement awaiting a decision, if any.
    awaiting: Option<RequestId>,
    queue: Queue,
    client: ClientView,
    server: ServerView,
    server_key: Option<BackendKeyData>,
    status: Option<TransactionStatus>,
    /// The session's client encoding, as the server last reported it.
    text: crate::TextEncoding,
}

impl Proxy {
    /// Creates the state for one new connection.
    ///
    /// # Errors
    /// [`ProxyError::Config`] if the nonce is not 8 to 64 characters of `[a-z0-9]` or the proxy
    /// key's secret is not 4 to 256 bytes.
    pub fn new(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let n = &config.marker_nonce;
        if !(8..=64).contains(&n.len())
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ProxyError::Config(
                "marker_nonce must be 8 to 64 characters of [a-z0-9]",
            ));
        }
        if !(MIN_SECRET_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&config.proxy_key.secret_key.len()) {
            return Err(ProxyError::Config(
                "proxy_key secret must be 4 to 256 bytes",
            ));
        }
        Ok(Proxy {
            id: NEXT_PROXY_ID.fetch_add(1, Ordering::Relaxed),
            marker: format!("{MARKER_PREFIX}{n}"),
            config,
            phase: Phase::Startup,
            minor: 0,
            next_request: 1,
            awaiting: None,
            queue: Queue::default(),
            client: ClientView::default(),
            server: ServerView::default(),
            server_key: None,
            status: None,
            text: crate::TextEncoding::UTF8,
        })
    }

    /// Cuts the next client message off `buf`, using startup framing until the startup packet
    /// has been seen.
    ///
    /// # Errors
    /// An invalid length header (see [`crate::frame`]).
    pub fn frame_client(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        if self.phase == Phase::Startup {
            split_startup(buf, self.config.max_startup_len)
        } else {
            split_message(buf, self.config.max_message_len)
        }
    }

    /// Cuts the next server message off `buf`.
    ///
    /// # Errors
    /// An invalid length header (see [`crate::frame`]).
    pub fn frame_server(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        split_message(buf, self.config.max_message_len)
    }

    /// The refusal marker identifier of this session.
    #[must_use]
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Whether authentication finished and queries flow.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether a statement awaits [`Proxy::decide`].
    #[must_use]
    pub fn awaiting_decision(&self) -> bool {
        self.awaiting.is_some()
    }

    /// The server's real cancellation key, once received.
    #[must_use]
    pub fn server_key(&self) -> Option<&BackendKeyData> {
        self.server_key.as_ref()
    }

    /// The last transaction status reported by the server.
    #[must_use]
    pub fn transaction_status(&self) -> Option<TransactionStatus> {
        self.status
    }

    /// Number of requests still waiting for a server response.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    /// The protocol minor version in effect.
    #[must_use]
    pub fn protocol_minor(&self) -> u16 {
        self.minor
    }

    /// The encoding text fields are decoded with (the client encoding the server reported).
    #[must_use]
    pub fn text_encoding(&self) -> crate::TextEncoding {
        self.text
    }

    fn next_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    fn marker_query(&self) -> Result<Bytes, ProtocolError> {
        FrontendMessage::Query {
            sql: self.marker.clone(),
        }
        .to_bytes()
    }

    /// Whether `err` is the server's answer to this session's refusal marker.
    fn is_marker_error(&self, err: &ErrorResponse) -> bool {
        err.code() == Some(crate::error_response::sqlstate::SYNTAX_ERROR)
            && err
                .message()
                .is_some_and(|m| m.contains(self.marker.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BackendKeyData {
        BackendKeyData {
            pid: 1,
            secret_key: Bytes::from_static(b"abcd"),
        }
    }

    #[test]
    fn config_is_validated() {
        assert!(Proxy::new(ProxyConfig::new("abc", key())).is_err());
        assert!(Proxy::new(ProxyConfig::new("ABCDEFGH12", key())).is_err());
        assert!(Proxy::new(ProxyConfig::new("abc\"defgh", key())).is_err());
        let mut c = ProxyConfig::new("abcdefgh12", key());
        c.proxy_key.secret_key = Bytes::from_static(b"ab");
        assert!(Proxy::new(c).is_err());
        let p = Proxy::new(ProxyConfig::new("abcdefgh12", key())).unwrap();
        assert_eq!(p.marker(), "dbwarden_refused_abcdefgh12");
    }

    #[test]
    fn result_formats_from_codes() {
        assert_eq!(
            ResultFormats::from_codes(&[]),
            ResultFormats::All(Format::Text)
        );
        assert_eq!(
            ResultFormats::from_codes(&[1]),
            ResultFormats::All(Format::Binary)
        );
        assert_eq!(ResultFormats::from_codes(&[3]), ResultFormats::Unknown);
        let ctx = ResultContext {
            request: RequestId(1),
            sql: None,
            description: None,
            formats: ResultFormats::from_codes(&[0, 1]),
        };
        assert_eq!(ctx.format(1), Some(Format::Binary));
        assert_eq!(ctx.format(2), None);
        assert!(ctx.field(0).is_none());
    }
}
