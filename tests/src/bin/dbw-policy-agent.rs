//! tokio-postgres "agent" for the policy and approval end-to-end tests (`policy_e2e.rs`,
//! `approvals_e2e.rs`), run inside a controlled cgroup via `dbwarden exec`. Every statement's
//! outcome is printed as one JSON line so the tests can assert SQLSTATEs and messages.
//!
//! Subcommands (ADDR is `ip:port`, DB the database name):
//! * `script ADDR DB simple|extended SQL...` — runs each SQL in turn on ONE connection (simple
//!   query protocol, or extended with binary results); one JSON line per statement:
//!   `{"i":N,"ok":true,"rows":[[..]]}` or `{"i":N,"ok":false,"code":"42501","message":".."}`.
//! * `pipeline ADDR DB SQL...` — issues every SQL at once on one connection with the extended
//!   protocol (tokio-postgres pipelines the Parse/Sync batches), prints the outcomes in order.
//! * `hold-cancel ADDR DB SQL` — runs SQL (expected to be held for approval), waits for the
//!   daemon's "held for approval" NoticeResponse, cancels the query with the client's cancel
//!   token (a CancelRequest on a new connection), then prints the outcome, and whether the
//!   session still works (`select 'usable'`).
//! * `cancel-then-run ADDR DB SQL` — cancels a running `pg_sleep(10)` with the cancel token
//!   (retrying every 200 ms until the server reports 57014), prints that, then runs SQL on the
//!   same connection, printing every notice as it arrives and then the outcome.

use std::{error::Error, net::SocketAddr, time::Duration};

use futures_util::{future::join_all, stream, StreamExt};
use serde_json::{json, Value};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

type Res = Result<(), Box<dyn Error>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r: Res = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("script") if args.len() >= 5 => script(&args[2], &args[3], &args[4], &args[5..]).await,
            Some("pipeline") if args.len() >= 4 => pipeline(&args[2], &args[3], &args[4..]).await,
            Some("hold-cancel") if args.len() == 5 => hold_cancel(&args[2], &args[3], &args[4]).await,
            Some("cancel-then-run") if args.len() == 5 => cancel_then_run(&args[2], &args[3], &args[4]).await,
            _ => Err("usage: dbw-policy-agent script ADDR DB simple|extended SQL... | pipeline ADDR DB SQL... | hold-cancel ADDR DB SQL".into()),
        }
    });
    if let Err(e) = r {
        eprintln!("dbw-policy-agent: {e}");
        std::process::exit(1);
    }
}

/// Connects as postgres with tokio-postgres' own connector (so cancel tokens know the address);
/// notices and other asynchronous messages are sent to the returned channel.
async fn connect(
    addr: &str,
    db: &str,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), Box<dyn Error>> {
    let a: SocketAddr = addr.parse()?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(a.ip().to_string())
        .port(a.port())
        .user("postgres")
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, mut conn) = cfg.connect(NoTls).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut msgs = stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = msgs.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n.message().to_string());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("connection error: {e}");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

fn err_json(i: usize, e: &tokio_postgres::Error) -> Value {
    match e.as_db_error() {
        Some(d) => json!({"i": i, "ok": false, "code": d.code().code(), "message": d.message()}),
        None => json!({"i": i, "ok": false, "code": null, "message": e.to_string()}),
    }
}

/// Renders a binary-format cell of the common types as text.
fn cell(row: &tokio_postgres::Row, i: usize) -> Value {
    use tokio_postgres::types::Type;
    let t = row.columns()[i].type_().clone();
    let v: Option<String> = match t {
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => row.get::<_, Option<String>>(i),
        other => Some(format!("<{other}>")),
    };
    v.map_or(Value::Null, Value::String)
}

async fn extended(c: &Client, i: usize, sql: &str) -> Value {
    match c.query(sql, &[]).await {
        Ok(rows) => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| Value::Array((0..r.len()).map(|k| cell(r, k)).collect()))
                .collect();
            json!({"i": i, "ok": true, "rows": rows})
        }
        Err(e) => err_json(i, &e),
    }
}

async fn script(addr: &str, db: &str, mode: &str, sqls: &[String]) -> Res {
    let (c, _notices) = connect(addr, db).await?;
    for (i, sql) in sqls.iter().enumerate() {
        let v = match mode {
            "simple" => match c.simple_query(sql).await {
                Ok(msgs) => {
                    let rows: Vec<Value> = msgs
                        .iter()
                        .filter_map(|m| match m {
                            SimpleQueryMessage::Row(r) => Some(Value::Array(
                                (0..r.len())
                                    .map(|k| {
                                        r.get(k).map_or(Value::Null, |s| Value::String(s.into()))
                                    })
                                    .collect(),
                            )),
                            _ => None,
                        })
                        .collect();
                    json!({"i": i, "ok": true, "rows": rows})
                }
                Err(e) => err_json(i, &e),
            },
            "extended" => extended(&c, i, sql).await,
            other => return Err(format!("unknown mode {other:?}").into()),
        };
        println!("{v}");
    }
    Ok(())
}

async fn pipeline(addr: &str, db: &str, sqls: &[String]) -> Res {
    let (c, _notices) = connect(addr, db).await?;
    let futs = sqls.iter().enumerate().map(|(i, s)| extended(&c, i, s));
    for v in join_all(futs).await {
        println!("{v}");
    }
    // The session is still in sync after the pipeline.
    println!(
        "{}",
        extended(&c, sqls.len(), "select 'after pipeline'::text").await
    );
    Ok(())
}

async fn hold_cancel(addr: &str, db: &str, sql: &str) -> Res {
    let (c, mut notices) = connect(addr, db).await?;
    let token = c.cancel_token();
    let query = async { c.simple_query(sql).await.map(|_| ()) };
    let canceller = async {
        let notice = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(n) = notices.recv().await {
                if n.contains("held for approval") {
                    return Some(n);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or("no 'held for approval' notice within 20 s")?;
        println!("{}", json!({ "notice": notice }));
        token.cancel_query(NoTls).await?;
        Ok::<_, Box<dyn Error>>(())
    };
    let (r, cancelled) = tokio::join!(query, canceller);
    cancelled?;
    let outcome = match &r {
        Ok(()) => json!({"ok": true}),
        Err(e) => err_json(0, e),
    };
    println!("{}", json!({ "outcome": outcome }));
    println!("{}", extended(&c, 1, "select 'usable'::text").await);
    Ok(())
}

async fn cancel_then_run(addr: &str, db: &str, sql: &str) -> Res {
    let (c, mut notices) = connect(addr, db).await?;
    let token = c.cancel_token();
    let sleep = c.simple_query("select pg_sleep(10)");
    tokio::pin!(sleep);
    let start = std::time::Instant::now();
    let first = loop {
        tokio::select! {
            r = &mut sleep => break r,
            () = tokio::time::sleep(Duration::from_millis(200)) => token.cancel_query(NoTls).await?,
        }
    };
    let code = match &first {
        Ok(_) => "none".to_string(),
        Err(e) => e
            .code()
            .map_or_else(|| e.to_string(), |c| c.code().to_string()),
    };
    println!(
        "{}",
        json!({"phase": "sleep cancelled", "code": code, "ms": start.elapsed().as_millis() as u64})
    );
    let query = c.simple_query(sql);
    tokio::pin!(query);
    let r = loop {
        tokio::select! {
            r = &mut query => break r,
            Some(n) = notices.recv() => println!("{}", json!({ "notice": n })),
        }
    };
    while let Ok(n) = notices.try_recv() {
        println!("{}", json!({ "notice": n }));
    }
    let outcome = match &r {
        Ok(msgs) => {
            json!({"ok": true, "rows": msgs.iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count()})
        }
        Err(e) => err_json(0, e),
    };
    println!("{}", json!({ "outcome": outcome }));
    Ok(())
}
