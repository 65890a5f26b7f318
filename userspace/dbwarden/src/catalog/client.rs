//! The smallest PostgreSQL client that can read the catalog: startup, trust or peer
//! authentication only (no password is known to the daemon), one simple query, text results.
//! Built on the wire-pg codec the proxy uses; nothing here is relayed to an agent.

use bytes::BytesMut;
use dbwarden_wire_pg::{BackendMessage, FrontendMessage, Startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::session::stream::Stream;

/// Largest catalog answer read (a few hundred columns of names).
const MAX_ANSWER: usize = 8 << 20;

/// Runs `sql` on a fresh connection over `stream` as `user` in `database`; returns the rows
/// (text values).
///
/// # Errors
/// The server asked for a password, refused the connection or the query, or the stream broke.
pub(super) async fn query(
    mut stream: Stream,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut out = BytesMut::new();
    Startup::Params {
        major: 3,
        minor: 0,
        params: vec![
            ("user".into(), user.into()),
            ("database".into(), database.into()),
            ("application_name".into(), "dbwarden-catalog".into()),
            // Names are read as UTF-8 whatever the database's encoding.
            ("client_encoding".into(), "UTF8".into()),
        ],
    }
    .encode(&mut out)
    .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let mut rows = Vec::new();
    let mut sent = false;
    let mut total = 0usize;
    loop {
        let raw = loop {
            if let Some(m) =
                dbwarden_wire_pg::split_message(&mut buf, MAX_ANSWER).map_err(|e| e.to_string())?
            {
                break m;
            }
            let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
            total += n;
            if n == 0 || total > MAX_ANSWER {
                return Err("the catalog connection closed early".into());
            }
        };
        match BackendMessage::parse(&raw).map_err(|e| e.to_string())? {
            BackendMessage::Authentication(a) if a.subtype == 0 => {}
            BackendMessage::Authentication(_) => {
                return Err("the server asks for a password for catalog look-ups".into())
            }
            BackendMessage::ErrorResponse(e) => {
                return Err(format!(
                    "catalog look-up failed: {}",
                    e.code().unwrap_or("?")
                ))
            }
            BackendMessage::DataRow(r) => rows.push(
                r.values()
                    .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
            BackendMessage::ReadyForQuery(_) if !sent => {
                sent = true;
                let q = FrontendMessage::Query { sql: sql.into() }
                    .to_bytes()
                    .map_err(|e| e.to_string())?;
                stream.write_all(&q).await.map_err(|e| e.to_string())?;
            }
            BackendMessage::ReadyForQuery(_) => {
                if let Ok(t) = FrontendMessage::Terminate.to_bytes() {
                    let _ = stream.write_all(&t).await;
                }
                return Ok(rows);
            }
            _ => {}
        }
    }
}
