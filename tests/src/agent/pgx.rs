//! tokio-postgres scenarios run by `dbw-agent` inside a controlled cgroup (and, for comparison,
//! outside it): binary parameters and results, pipelining, COPY in both directions and both
//! formats, cancellation, and error recovery. Each prints deterministic lines on stdout so a test
//! can compare the output through dbwarden with the output of a direct connection.

use std::{
    error::Error,
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_util::{future::join_all, pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::{
    binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream},
    types::{to_sql_checked, FromSql, IsNull, ToSql, Type},
    Client, NoTls, SimpleQueryMessage,
};

/// Result of a scenario.
pub type Res = Result<(), Box<dyn Error>>;
type BoxErr = Box<dyn Error + Sync + Send>;

/// Connection tasks of this process, awaited by [`run`] so every connection ends with a
/// Terminate and an orderly close (a socket dropped with unread data is reset instead, which
/// the daemon rightly logs as an abnormal end).
static CONNECTIONS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Runs a scenario on a current-thread runtime, then lets its connections close cleanly.
pub fn run(f: impl Future<Output = Res>) -> Res {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            // The scenario's clients are dropped when it completes: their connections then
            // send Terminate and finish.
            let r = f.await;
            let tasks = std::mem::take(&mut *CONNECTIONS.lock().unwrap_or_else(|e| e.into_inner()));
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
            r
        })
}

/// Connects as `postgres` to `db` at `addr` with tokio-postgres' own connector (so the cancel
/// token knows where to send CancelRequests).
async fn connect(addr: &str, db: &str) -> Result<Client, Box<dyn Error>> {
    let a: SocketAddr = addr.parse()?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(a.ip().to_string())
        .port(a.port())
        .user("postgres")
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection error: {e}");
        }
    });
    CONNECTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(task);
    Ok(client)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| format!("no-sqlstate({e})"), |c| c.code().to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A `numeric` in PostgreSQL's binary format, held as its decimal text.
#[derive(Debug, Clone, PartialEq)]
struct Numeric(String);

/// Encodes a plain decimal string (`-123.4500`) into the binary `numeric` format.
fn encode_numeric(s: &str) -> Result<Vec<u8>, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(format!("not a plain decimal: {s:?}"));
    }
    let dscale = u16::try_from(frac.len()).map_err(|_| "scale too large")?;
    let int = int.trim_start_matches('0');
    let idigits = "0".repeat((4 - int.len() % 4) % 4) + int;
    let fdigits = frac.to_string() + &"0".repeat((4 - frac.len() % 4) % 4);
    let mut groups: Vec<i16> = idigits
        .as_bytes()
        .chunks(4)
        .chain(fdigits.as_bytes().chunks(4))
        .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
        .collect();
    let mut weight = (idigits.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

/// Decodes the binary `numeric` format into a plain decimal string with `dscale` digits.
fn decode_numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<[u8; 2], String> {
        raw.get(i..i + 2)
            .map(|s| [s[0], s[1]])
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let nd = i16::from_be_bytes(word(0)?);
    let weight = i16::from_be_bytes(word(2)?) as isize;
    let sign = u16::from_be_bytes(word(4)?);
    let dscale = u16::from_be_bytes(word(6)?) as usize;
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let nd = usize::try_from(nd).map_err(|_| "negative digit count")?;
    if raw.len() != 8 + 2 * nd {
        return Err(format!("numeric of {} bytes with {nd} digits", raw.len()));
    }
    let digits: Vec<i16> = (0..nd)
        .map(|i| i16::from_be_bytes([raw[8 + 2 * i], raw[9 + 2 * i]]))
        .collect();
    let digit = |idx: isize| -> i16 {
        if idx < 0 {
            0
        } else {
            digits.get(idx as usize).copied().unwrap_or(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        for j in 1..=dscale.div_ceil(4) as isize {
            frac.push_str(&format!("{:04}", digit(weight + j)));
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

impl ToSql for Numeric {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.extend_from_slice(&encode_numeric(&self.0)?);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Numeric, BoxErr> {
        Ok(Numeric(decode_numeric(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

fn micros(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i128,
        Err(e) => -(e.duration().as_micros() as i128),
    }
}

/// `pg-types`: binary parameters in, binary results out, cross-checked with the server's text.
pub async fn types(addr: String, db: String) -> Res {
    let c = connect(&addr, &db).await?;
    c.batch_execute(
        "create table vals (id int primary key, i8 int8, n numeric, t text, b bytea, f bool, ts timestamptz)",
    )
    .await?;
    let ins = c
        .prepare("insert into vals values ($1, $2, $3, $4, $5, $6, $7)")
        .await?;
    type Case = (
        i32,
        Option<i64>,
        Option<Numeric>,
        Option<String>,
        Option<Vec<u8>>,
        Option<bool>,
        Option<SystemTime>,
    );
    let cases: Vec<Case> = vec![
        (
            1,
            Some(-9_000_000_001),
            Some(Numeric("123456789.000123".into())),
            Some("héllo\tworld 'quoted' \\ back".into()),
            Some(vec![0, 1, 2, 0x5c, 0xff, b'\n']),
            Some(true),
            Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
        ),
        (
            2,
            Some(42),
            Some(Numeric("-0.5".into())),
            Some(String::new()),
            Some(Vec::new()),
            Some(false),
            Some(UNIX_EPOCH - Duration::from_secs(86_400 * 365)),
        ),
        (
            3,
            Some(0),
            Some(Numeric("0".into())),
            Some("x".repeat(5000)),
            Some(vec![7; 3000]),
            Some(true),
            Some(UNIX_EPOCH),
        ),
        (4, None, None, None, None, None, None),
        (
            5,
            Some(7),
            Some(Numeric("10000.0001".into())),
            Some("z".into()),
            Some(vec![9]),
            Some(false),
            Some(UNIX_EPOCH),
        ),
    ];
    for (id, i8, n, t, b, f, ts) in &cases {
        c.execute(&ins, &[id, i8, n, t, b, f, ts]).await?;
    }
    let rows = c
        .query("select id, i8, n, t, b, f, ts, n::text, extract(epoch from ts)::text from vals order by id", &[])
        .await?;
    for r in rows {
        let id: i32 = r.get(0);
        let i8: Option<i64> = r.get(1);
        let n: Option<Numeric> = r.get(2);
        let t: Option<String> = r.get(3);
        let b: Option<Vec<u8>> = r.get(4);
        let f: Option<bool> = r.get(5);
        let ts: Option<SystemTime> = r.get(6);
        let n_text: Option<String> = r.get(7);
        let epoch_text: Option<String> = r.get(8);
        println!(
            "id={id} i8={i8:?} n={:?} n_text={n_text:?} t_len={:?} t_head={:?} b={:?} f={f:?} ts_us={:?} epoch={epoch_text:?}",
            n.map(|n| n.0),
            t.as_ref().map(|t| t.chars().count()),
            t.as_ref().map(|t| t.chars().take(40).collect::<String>()),
            b.as_ref().map(|b| if b.len() > 16 { format!("{}..({} bytes)", hex(&b[..16]), b.len()) } else { hex(b) }),
            ts.map(micros),
        );
    }
    // Parameters echoed straight back (no table): every type both ways in one statement.
    let echo = c
        .query_one(
            "select $1::int8 * 2, $2::numeric + 1, $3::text || '!', length($4::bytea), not $5::bool",
            &[&21i64, &Numeric("0.25".into()), &"hi", &vec![1u8, 2, 3], &false],
        )
        .await?;
    let doubled: i64 = echo.get(0);
    let plus: Numeric = echo.get(1);
    let bang: String = echo.get(2);
    let len: i32 = echo.get(3);
    let neg: bool = echo.get(4);
    println!("echo {doubled} {} {bang} {len} {neg}", plus.0);
    Ok(())
}

/// `pg-pipeline`: `n` pairs (insert, select) in flight together, every 50th replaced by a
/// failing statement; then a summary.
pub async fn pipeline(addr: String, db: String, n: usize) -> Res {
    let c = connect(&addr, &db).await?;
    c.batch_execute("create table pipe (id int primary key, v text)")
        .await?;
    let ins = c
        .prepare("insert into pipe values ($1, $2) returning id * 10")
        .await?;
    let sel = c.prepare("select v from pipe where id = $1").await?;
    let div = c.prepare("select 10 / $1::int").await?;
    let mut futs = Vec::new();
    for i in 0..n as i32 {
        let (c, ins, sel, div) = (&c, &ins, &sel, &div);
        futs.push(Box::pin(async move {
            if i % 50 == 25 {
                match c.query(div, &[&0i32]).await {
                    Ok(_) => format!("{i} div unexpectedly succeeded"),
                    Err(e) => format!("{i} div error {}", sqlstate(&e)),
                }
            } else {
                let v = format!("value {i}");
                let r = c.query_one(ins, &[&i, &v]).await;
                match r {
                    Ok(r) => format!("{i} ins {}", r.get::<_, i32>(0)),
                    Err(e) => format!("{i} ins error {}", sqlstate(&e)),
                }
            }
        })
            as std::pin::Pin<Box<dyn Future<Output = String>>>);
        futs.push(Box::pin(async move {
            match c.query(sel, &[&i]).await {
                Ok(rows) => format!(
                    "{i} sel {}",
                    rows.first()
                        .map_or("<none>".to_string(), |r| r.get::<_, String>(0))
                ),
                Err(e) => format!("{i} sel error {}", sqlstate(&e)),
            }
        }));
    }
    for line in join_all(futs).await {
        println!("{line}");
    }
    let r = c
        .query_one("select count(*), sum(id)::int8 from pipe", &[])
        .await?;
    println!("total {} {}", r.get::<_, i64>(0), r.get::<_, i64>(1));
    Ok(())
}

fn fnv1a(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// `pg-copy`: COPY FROM STDIN (text and binary) then COPY TO STDOUT (text and binary).
pub async fn copy(addr: String, db: String, n: usize) -> Res {
    let c = connect(&addr, &db).await?;
    c.batch_execute("create table cp (id int8, name text, payload bytea, note text)")
        .await?;
    // Text format, sent in ~32 KiB CopyData chunks that split rows anywhere.
    let sink = c.copy_in("copy cp from stdin").await?;
    pin_mut!(sink);
    let mut data = Vec::new();
    for i in 0..n {
        let note = if i % 7 == 0 {
            "\\N".to_string()
        } else {
            format!("note {i} é ✓")
        };
        data.extend_from_slice(
            format!(
                "{i}\tname {i} with\\ttab\t\\\\x{:06x}00ff\t{note}\n",
                i * 7919 % 0xff_ffff
            )
            .as_bytes(),
        );
    }
    for chunk in data.chunks(32 * 1024 + 3) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    let copied = sink.finish().await?;
    println!("copy_in_text {copied}");
    // Binary format.
    let types = [Type::INT8, Type::TEXT, Type::BYTEA, Type::TEXT];
    let sink = c.copy_in("copy cp from stdin (format binary)").await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for i in n..2 * n {
        let id = i as i64;
        let name = format!("bin {i}");
        let payload: Vec<u8> = (0..(i % 64)).map(|k| (k * 31 + i) as u8).collect();
        let note: Option<String> = (i % 5 != 0).then(|| format!("b{i}"));
        writer
            .as_mut()
            .write(&[&id, &name, &payload, &note])
            .await?;
    }
    println!("copy_in_binary {}", writer.finish().await?);
    // Aborted COPY FROM STDIN: dropping the sink sends CopyFail; the server rejects the copy,
    // nothing is inserted, and the session goes on.
    {
        let sink = c.copy_in::<_, Bytes>("copy cp from stdin").await?;
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"99999\tabandoned\t\\\\xab\t\\N\n"))
            .await?;
    }
    let r = c
        .query_one("select count(*) from cp where name = 'abandoned'", &[])
        .await?;
    println!("copy_in_aborted inserted={}", r.get::<_, i64>(0));
    // Text out.
    let stream = c
        .copy_out("copy (select id, name, payload, note from cp order by id) to stdout")
        .await?;
    pin_mut!(stream);
    let (mut bytes, mut lines, mut h) = (0usize, 0usize, 0xcbf2_9ce4_8422_2325u64);
    while let Some(chunk) = stream.try_next().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        fnv1a(&mut h, &chunk);
    }
    println!("copy_out_text lines={lines} bytes={bytes} fnv={h:016x}");
    // Binary out. dbwarden may refuse it (binary COPY cannot be inspected for masking: fail
    // closed); either outcome is printed, and the session must stay usable.
    let binary_out = async {
        let stream = c
            .copy_out("copy (select id, name, payload, note from cp order by id) to stdout (format binary)")
            .await?;
        let rows = BinaryCopyOutStream::new(stream, &types);
        pin_mut!(rows);
        let (mut count, mut id_sum, mut payload_bytes, mut nulls, mut h) =
            (0usize, 0i64, 0usize, 0usize, 0xcbf2_9ce4_8422_2325u64);
        while let Some(row) = rows.try_next().await? {
            count += 1;
            id_sum += row.get::<i64>(0);
            let name: &str = row.get(1);
            fnv1a(&mut h, name.as_bytes());
            let payload: &[u8] = row.get(2);
            payload_bytes += payload.len();
            fnv1a(&mut h, payload);
            if row.get::<Option<&str>>(3).is_none() {
                nulls += 1;
            }
        }
        Ok::<_, tokio_postgres::Error>(format!(
            "copy_out_binary rows={count} id_sum={id_sum} payload_bytes={payload_bytes} nulls={nulls} fnv={h:016x}"
        ))
    };
    match binary_out.await {
        Ok(line) => println!("{line}"),
        Err(e) => println!(
            "copy_out_binary refused {}: {}",
            sqlstate(&e),
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        ),
    }
    let r = c
        .query_one("select count(*), count(note) from cp", &[])
        .await?;
    println!(
        "table rows={} notes={}",
        r.get::<_, i64>(0),
        r.get::<_, i64>(1)
    );
    Ok(())
}

/// Waits (on a second connection) until a query starting with `prefix` is active in `db`.
async fn wait_active(mon: &Client, prefix: &str, deadline: Instant) -> Res {
    loop {
        let r = mon
            .query_one(
                "select count(*) from pg_stat_activity where datname = current_database() \
                 and state = 'active' and pid <> pg_backend_pid() and starts_with(query, $1)",
                &[&prefix],
            )
            .await?;
        if r.get::<_, i64>(0) > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("query {prefix:?} never became active").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `pg-cancel`: cancels `pg_sleep(10)` (simple, then extended protocol) with the cancel token;
/// prints one JSON line per case.
pub async fn cancel(addr: String, db: String) -> Res {
    let c = connect(&addr, &db).await?;
    let mon = connect(&addr, &db).await?;
    let pid_before: i32 = c.query_one("select pg_backend_pid()", &[]).await?.get(0);
    for mode in ["simple", "extended"] {
        let token = c.cancel_token();
        let start = Instant::now();
        let query = async {
            if mode == "simple" {
                c.simple_query("select pg_sleep(10) /* simple */")
                    .await
                    .map(|_| ())
            } else {
                c.query("select pg_sleep($1) /* extended */", &[&10f64])
                    .await
                    .map(|_| ())
            }
        };
        let canceller = async {
            let prefix = if mode == "simple" {
                "select pg_sleep(10)"
            } else {
                "select pg_sleep($1)"
            };
            wait_active(&mon, prefix, start + Duration::from_secs(9)).await?;
            let sent_after = start.elapsed();
            token.cancel_query(NoTls).await?;
            Ok::<_, Box<dyn Error>>(sent_after)
        };
        let (r, sent_after) = tokio::join!(query, canceller);
        let elapsed = start.elapsed();
        let sent_after = sent_after?;
        let (code, message) = match &r {
            Ok(()) => ("none".to_string(), String::new()),
            Err(e) => (
                sqlstate(e),
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default(),
            ),
        };
        let after: String = c.query_one("select 'usable'::text", &[]).await?.get(0);
        let pid_after: i32 = c.query_one("select pg_backend_pid()", &[]).await?.get(0);
        println!(
            "{}",
            serde_json::json!({
                "mode": mode,
                "code": code,
                "message": message,
                "elapsed_ms": elapsed.as_millis() as u64,
                "cancel_sent_ms": sent_after.as_millis() as u64,
                "after": after,
                "same_backend": pid_after == pid_before,
            })
        );
    }
    Ok(())
}

/// `pg-errors`: errors of every kind, each followed by a statement that must work.
pub async fn errors(addr: String, db: String) -> Res {
    let c = connect(&addr, &db).await?;
    let simple_rows = |msgs: Vec<SimpleQueryMessage>| -> Vec<String> {
        msgs.into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .collect()
    };
    let show = |what: &str, r: Result<Vec<String>, tokio_postgres::Error>| match r {
        Ok(rows) => println!("{what} ok {}", rows.join(",")),
        Err(e) => println!("{what} error {}", sqlstate(&e)),
    };
    // Simple protocol.
    show(
        "simple_syntax",
        c.simple_query("selec 1").await.map(simple_rows),
    );
    show(
        "simple_after",
        c.simple_query("select 'simple ok'").await.map(simple_rows),
    );
    show(
        "simple_multi_error",
        c.simple_query("select 1; selec 2; select 3")
            .await
            .map(simple_rows),
    );
    show(
        "simple_multi_after",
        c.simple_query("select 'a'; select 'b'")
            .await
            .map(simple_rows),
    );
    show(
        "simple_runtime",
        c.simple_query("select 1/0").await.map(simple_rows),
    );
    show(
        "simple_runtime_after",
        c.simple_query("select 'still ok'").await.map(simple_rows),
    );
    // A failed transaction block stays failed until ROLLBACK, exactly as without the proxy.
    show("tx_begin", c.simple_query("begin").await.map(simple_rows));
    show(
        "tx_error",
        c.simple_query("select 1/0").await.map(simple_rows),
    );
    show(
        "tx_in_failed",
        c.simple_query("select 1").await.map(simple_rows),
    );
    show(
        "tx_rollback",
        c.simple_query("rollback").await.map(simple_rows),
    );
    show(
        "tx_after",
        c.simple_query("select 'tx ok'").await.map(simple_rows),
    );
    // Extended protocol.
    let text_rows = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    show(
        "ext_syntax",
        c.query("selec $1::text", &[&"x"]).await.map(text_rows),
    );
    show(
        "ext_after",
        c.query("select $1::text || ' ok'", &[&"extended"])
            .await
            .map(text_rows),
    );
    show(
        "ext_runtime",
        c.query("select (10 / $1::int)::text", &[&0i32])
            .await
            .map(text_rows),
    );
    show(
        "ext_runtime_after",
        c.query("select (10 / $1::int)::text", &[&5i32])
            .await
            .map(text_rows),
    );
    show(
        "ext_unknown_table",
        c.query("select x::text from no_such_table", &[])
            .await
            .map(text_rows),
    );
    show(
        "ext_unknown_after",
        c.query("select 'unknown ok'::text", &[])
            .await
            .map(text_rows),
    );
    // An error inside a pipeline fails only its own batch.
    let (a, b, d) = tokio::join!(
        c.query("select 'first'::text", &[]),
        c.query("select (1 / $1::int)::text", &[&0i32]),
        c.query("select 'third'::text", &[]),
    );
    show("pipe_first", a.map(text_rows));
    show("pipe_error", b.map(text_rows));
    show("pipe_third", d.map(text_rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trips() {
        for s in [
            "0",
            "1",
            "-0.5",
            "123456789.000123",
            "10000.0001",
            "0.0001",
            "99990000",
            "-12.30",
        ] {
            let enc = encode_numeric(s).unwrap();
            assert_eq!(decode_numeric(&enc).unwrap(), s, "{s}");
        }
    }
}
