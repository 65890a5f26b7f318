//! "Every intercepted port speaks what it claims": the first bytes of a connection are checked
//! against the protocol configured for the destination, and on a plain `tcp_ports` port they
//! decide how the session is handled.
//!
//! PostgreSQL clients speak first (a startup packet, SSLRequest, GSSENCRequest or
//! CancelRequest; PostgreSQL 17 direct TLS starts with a TLS record); MySQL servers speak first
//! (the v10 handshake, or an ERR packet such as "too many connections"). The checks are pure
//! functions over the bytes; the async part only reads them.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// PostgreSQL protocol codes in the first packet (int32 after the length).
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;
const PG_CANCEL_REQUEST: u32 = 80_877_102;
/// The startup packet's length limit PostgreSQL itself applies (MAX_STARTUP_PACKET_LENGTH).
const PG_MAX_STARTUP: u32 = 10_000;

/// The verdict on a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looks {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// It is the protocol asked about.
    Yes,
    /// It is not; the reason is logged.
    No(&'static str),
}

/// Do these first client bytes open a PostgreSQL connection?
pub fn client_is_postgres(b: &[u8]) -> Looks {
    if b.first() == Some(&0x16) {
        // TLS handshake record: PostgreSQL 17 direct SSL (sslnegotiation=direct).
        return Looks::Yes;
    }
    if b.len() < 8 {
        // Decide early when the length prefix already rules PostgreSQL out (a short first
        // message of another protocol must not wait for bytes that never come).
        let n = b.len().min(4);
        let mut lo = [0u8; 4];
        let mut hi = [0xffu8; 4];
        lo[..n].copy_from_slice(&b[..n]);
        hi[..n].copy_from_slice(&b[..n]);
        if u32::from_be_bytes(lo) > PG_MAX_STARTUP || u32::from_be_bytes(hi) < 8 {
            return Looks::No("the client's first bytes are not a PostgreSQL length prefix");
        }
        return Looks::NeedMore;
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    match code {
        PG_SSL_REQUEST | PG_GSSENC_REQUEST if len == 8 => Looks::Yes,
        PG_CANCEL_REQUEST if (16..=264).contains(&len) => Looks::Yes,
        c if c >> 16 == 3 && (8..=PG_MAX_STARTUP).contains(&len) => Looks::Yes,
        _ => Looks::No("the client's first packet is not a PostgreSQL startup, SSLRequest, GSSENCRequest or CancelRequest"),
    }
}

/// Do these first server bytes open a MySQL/MariaDB connection?
pub fn server_is_mysql(b: &[u8]) -> Looks {
    if b.len() < 5 {
        return Looks::NeedMore;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    let seq = b[3];
    if seq != 0 || len == 0 {
        return Looks::No("the server's first packet is not a MySQL packet with sequence id 0");
    }
    match b[4] {
        10 if len >= 30 => Looks::Yes,
        0xff if len >= 3 => Looks::Yes,
        _ => Looks::No(
            "the server's first packet is neither a MySQL v10 handshake nor an ERR packet",
        ),
    }
}

/// Why the first bytes did not settle the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecided {
    /// They are definitely not the protocol asked about.
    Not(String),
    /// The peer closed, a read failed, it sent too much, or the time ran out before a first
    /// packet was complete: nothing may be relayed on such a connection.
    Incomplete(String),
}

impl std::fmt::Display for Undecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecided::Not(w) | Undecided::Incomplete(w) => f.write_str(w),
        }
    }
}

/// Reads from `r` into `buf` until `check` decides or `timeout` passes.
///
/// # Errors
/// [`Undecided`], with a reason for the log.
pub async fn read_until_decided<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    check: fn(&[u8]) -> Looks,
    timeout: Duration,
    who: &str,
) -> Result<(), Undecided> {
    let fut = async {
        loop {
            match check(buf) {
                Looks::Yes => return Ok(()),
                Looks::No(why) => return Err(Undecided::Not(why.to_string())),
                Looks::NeedMore => {}
            }
            if buf.len() >= 64 * 1024 {
                return Err(Undecided::Incomplete(format!(
                    "{who} sent 64 KiB without a recognisable first packet"
                )));
            }
            buf.reserve(4096);
            match r.read_buf(buf).await {
                Ok(0) => {
                    return Err(Undecided::Incomplete(format!(
                        "{who} closed before its first packet was complete"
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(Undecided::Incomplete(format!("{who} read: {e}"))),
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(Undecided::Incomplete(format!(
                "{who} sent no complete first packet within {}s",
                timeout.as_secs()
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        body.extend_from_slice(b"user\0app\0\0");
        let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        p.extend(body);
        p
    }

    #[test]
    fn postgres_first_packets() {
        let s = startup();
        assert_eq!(client_is_postgres(&s), Looks::Yes);
        for cut in 0..8 {
            assert_eq!(client_is_postgres(&s[..cut]), Looks::NeedMore);
        }
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(client_is_postgres(&ssl), Looks::Yes);
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(client_is_postgres(&gss), Looks::Yes);
        let cancel = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(client_is_postgres(&cancel), Looks::Yes);
        assert_eq!(client_is_postgres(&[0x16, 3, 1]), Looks::Yes, "direct TLS");
        // Protocol 3.2 (PostgreSQL 18).
        let mut v32 = s.clone();
        v32[4..8].copy_from_slice(&0x0003_0002u32.to_be_bytes());
        assert_eq!(client_is_postgres(&v32), Looks::Yes);
    }

    #[test]
    fn other_protocols_are_not_postgres() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",                               // Redis
            b"\x00\x00\x00\x08\x00\x02\x00\x00",                   // protocol 2.0
            b"\x7f\xff\xff\xff\x00\x03\x00\x00",                   // absurd length
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f\x00"[..8].as_ref(), // fine: SSLRequest
        ] {
            let r = client_is_postgres(bad);
            if bad.starts_with(b"\x00\x00\x00\x08\x04\xd2") {
                assert_eq!(r, Looks::Yes);
            } else {
                assert!(matches!(r, Looks::No(_)), "{bad:?} -> {r:?}");
            }
        }
        let mut s = startup();
        s[0..4].copy_from_slice(&20_000u32.to_be_bytes());
        assert!(
            matches!(client_is_postgres(&s), Looks::No(_)),
            "over the startup limit"
        );
    }

    #[test]
    fn short_first_messages_of_other_protocols_are_decided_at_once() {
        for b in [&b"PING\r\n"[..], b"G", b"\x01\x00", b"\x00\x01\x00"] {
            assert!(matches!(client_is_postgres(b), Looks::No(_)), "{b:?}");
        }
        for b in [&b"\x00"[..], b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x27"] {
            assert_eq!(client_is_postgres(b), Looks::NeedMore, "{b:?}");
        }
    }

    #[test]
    fn mysql_greetings() {
        // MariaDB 10.11 handshake v10, first bytes.
        let mut g = vec![0x5b, 0, 0, 0, 10];
        g.extend_from_slice(b"5.5.5-10.11.6-MariaDB\0");
        assert_eq!(server_is_mysql(&g), Looks::Yes);
        let err = [0x17, 0, 0, 0, 0xff, 0x10, 0x04, b'T'];
        assert_eq!(server_is_mysql(&err), Looks::Yes);
        assert_eq!(server_is_mysql(&g[..4]), Looks::NeedMore);
        assert!(matches!(server_is_mysql(b"+OK redis\r\n"), Looks::No(_)));
        assert!(
            matches!(server_is_mysql(&[0x5b, 0, 0, 1, 10]), Looks::No(_)),
            "sequence 1"
        );
        assert!(
            matches!(server_is_mysql(&[0x5b, 0, 0, 0, 9]), Looks::No(_)),
            "protocol 9"
        );
    }

    #[tokio::test]
    async fn reading_stops_when_decided_and_keeps_the_bytes() {
        let s = startup();
        let (mut a, mut b) = tokio::io::duplex(64);
        let s2 = s.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in s2.chunks(3) {
                b.write_all(c).await.unwrap();
                tokio::task::yield_now().await;
            }
            b.write_all(b"more").await.unwrap();
            std::future::pending::<()>().await;
        });
        let mut buf = BytesMut::new();
        read_until_decided(
            &mut a,
            &mut buf,
            client_is_postgres,
            Duration::from_secs(5),
            "client",
        )
        .await
        .unwrap();
        assert!(s.starts_with(&buf[..8]) && buf.len() <= s.len() + 4);
        let mut buf = BytesMut::new();
        let (mut c, _d) = tokio::io::duplex(64);
        let e = read_until_decided(
            &mut c,
            &mut buf,
            client_is_postgres,
            Duration::from_millis(50),
            "client",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Undecided::Incomplete(w) if w.contains("within")),
            "{e}"
        );
    }
}
