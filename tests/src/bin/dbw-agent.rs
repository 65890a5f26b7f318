//! A small "agent" the end-to-end tests run inside a controlled cgroup (via `dbwarden exec`).
//! It prints what it observes as JSON lines so tests can compare it with the daemon's view.
//!
//! Subcommands:
//! * `connect ADDR` — blocking connect, print pid/local/peer, exchange one echo line.
//! * `nonblocking ADDR` — non-blocking connect + poll, then the same.
//! * `hold ADDR MS` — connect, print, keep the connection open for MS milliseconds.
//! * `spawn-many ADDR N MS` — start N child processes running `hold`, wait for all.
//! * `pg ADDR DB SQL` — tokio-postgres over a socket we connected ourselves; prints the peer
//!   address and the rows (simple query protocol).
//! * `pg-extended ADDR DB SQL` — same with the extended protocol (prepared, binary results).
//! * `pg-types ADDR DB` — binary parameters and results of int8, numeric, text, bytea, bool and
//!   timestamptz round-tripped through a table; prints one line per value.
//! * `pg-pipeline ADDR DB N` — N prepared-statement executions in flight at once (tokio-postgres
//!   pipelines them), one of them failing; prints the results in order.
//! * `pg-copy ADDR DB N` — COPY IN then COPY OUT of N rows, text and binary format; prints
//!   counts and checksums.
//! * `pg-cancel ADDR DB` — cancels a running `pg_sleep(10)` with the client's cancel token;
//!   prints the SQLSTATE, the elapsed time and whether the session is still usable (JSON).
//! * `pg-errors ADDR DB` — syntax errors then valid statements on one connection, simple and
//!   extended protocol.
//! * `raw ADDR HEX...` — connects, sends each hex chunk (reading the answer in between), prints
//!   (hex and text) what it read until EOF or 10 s; JSON.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

fn main() {
    if let Err(e) = real_main() {
        eprintln!("dbw-agent: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("connect") => connect(&args[2], false, 0),
        Some("nonblocking") => connect(&args[2], true, 0),
        Some("hold") => connect(&args[2], false, args[3].parse().expect("ms")),
        Some("spawn-many") => spawn_many(&args[2], args[3].parse().expect("n"), &args[4]),
        Some("pg") => pg(&args[2], &args[3], &args[4], false),
        Some("pg-extended") => pg(&args[2], &args[3], &args[4], true),
        Some("pg-types") => pgx::run(pgx::types(args[2].clone(), args[3].clone())),
        Some("pg-pipeline") => pgx::run(pgx::pipeline(args[2].clone(), args[3].clone(), args[4].parse()?)),
        Some("pg-copy") => pgx::run(pgx::copy(args[2].clone(), args[3].clone(), args[4].parse()?)),
        Some("pg-cancel") => pgx::run(pgx::cancel(args[2].clone(), args[3].clone())),
        Some("pg-errors") => pgx::run(pgx::errors(args[2].clone(), args[3].clone())),
        Some("raw") => raw(&args[2], &args[3..]),
        _ => Err("usage: dbw-agent connect|nonblocking|hold|spawn-many|pg|pg-extended|pg-types|pg-pipeline|pg-copy|pg-cancel|pg-errors|raw ...".into()),
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

#[path = "../agent/pgx.rs"]
mod pgx;

/// Connects, sends each `hex` chunk in turn (collecting the answer in between), and prints
/// what came back until EOF or 10 s.
fn raw(addr: &str, hex: &[String]) -> Res {
    use std::io::Read;
    let addr: SocketAddr = addr.parse()?;
    let mut chunks = Vec::new();
    for h in hex {
        let h = h.as_bytes();
        if h.len() % 2 != 0 {
            return Err("odd number of hex digits".into());
        }
        let mut bytes = Vec::new();
        for pair in h.chunks(2) {
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair)?, 16)?);
        }
        chunks.push(bytes);
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut write_error = None;
    let mut sent = 0;
    for (i, bytes) in chunks.iter().enumerate() {
        if let Err(e) = s.write_all(bytes) {
            write_error = Some(e.to_string());
            break;
        }
        sent += bytes.len();
        if i + 1 < chunks.len() {
            // Between chunks: take the answer until the peer has been quiet for 300 ms (at
            // most 5 s), so the next chunk arrives as a separate, later message.
            let until = std::time::Instant::now() + Duration::from_secs(5);
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            while std::time::Instant::now() < until {
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if !got.is_empty() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (eof, read_error) = loop {
        match s.read(&mut chunk) {
            Ok(0) => break (true, None),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break (true, Some(e.to_string()))
            }
            Err(e) => break (false, Some(e.to_string())),
        }
    };
    let hexed: String = got.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{}",
        serde_json::json!({
            "pid": std::process::id(),
            "sent": sent,
            "write_error": write_error,
            "received_hex": hexed,
            "received_text": String::from_utf8_lossy(&got),
            "eof": eof,
            "read_error": read_error,
        })
    );
    Ok(())
}

fn connect(addr: &str, nonblocking: bool, hold_ms: u64) -> Res {
    let addr: SocketAddr = addr.parse()?;
    let s = if nonblocking {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_nonblocking(true)?;
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&sock),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: pfd is a valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
                if n != 1 {
                    return Err("non-blocking connect did not complete".into());
                }
                if let Some(e) = sock.take_error()? {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        sock.set_nonblocking(false)?;
        TcpStream::from(sock)
    } else {
        TcpStream::connect_timeout(&addr, Duration::from_secs(10))?
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let pid = std::process::id();
    let mut w = s.try_clone()?;
    writeln!(w, "hello from {pid}")?;
    let mut line = String::new();
    BufReader::new(s.try_clone()?).read_line(&mut line)?;
    println!(
        "{}",
        serde_json::json!({
            "pid": pid,
            "local": s.local_addr()?.to_string(),
            "peer": s.peer_addr()?.to_string(),
            "echo": line.trim_end(),
        })
    );
    std::io::stdout().flush()?;
    if hold_ms > 0 {
        std::thread::sleep(Duration::from_millis(hold_ms));
    }
    Ok(())
}

fn spawn_many(addr: &str, n: usize, ms: &str) -> Res {
    let me = std::env::current_exe()?;
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(&me)
                .args(["hold", addr, ms])
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut failed = 0;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            failed += 1;
        }
        std::io::stdout().write_all(&out.stdout)?;
    }
    if failed > 0 {
        return Err(format!("{failed} of {n} children failed").into());
    }
    Ok(())
}

fn pg(addr: &str, db: &str, sql: &str, extended: bool) -> Res {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr: SocketAddr = addr.parse()?;
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let peer = stream.peer_addr()?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.user("postgres").dbname(db);
        let (client, conn) = cfg.connect_raw(stream, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        println!(
            "{}",
            serde_json::json!({ "pid": std::process::id(), "peer": peer.to_string() })
        );
        if extended {
            for row in client.query(sql, &[]).await? {
                let cols: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
                println!("{}", cols.join("\t"));
            }
        } else {
            for m in client.simple_query(sql).await? {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    let cols: Vec<String> = (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect();
                    println!("{}", cols.join("\t"));
                }
            }
        }
        drop(client);
        let _ = task.await;
        Ok(())
    })
}

/// Renders a binary-format cell of the common types as text.
fn cell(row: &tokio_postgres::Row, i: usize) -> String {
    use tokio_postgres::types::Type;
    let t = row.columns()[i].type_().clone();
    let v: Option<String> = match t {
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
        _ => row.get::<_, Option<String>>(i),
    };
    v.unwrap_or_else(|| "NULL".into())
}
