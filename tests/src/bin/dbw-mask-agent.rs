//! Agent helper for the masking end-to-end tests (`tests/tests/masking_e2e.rs`), run inside a
//! controlled cgroup via `dbwarden exec`.
//!
//! `dbw-mask-agent ADDR DB SQL...` connects with tokio-postgres (extended protocol, so every
//! result column comes back in BINARY format), runs each SQL in turn on the same connection and
//! prints one JSON line per statement:
//!
//! * `{"stmt": i, "columns": [{"name", "type"}...], "rows": [[value...]...]}` when the driver
//!   decoded every value with its own binary decoder for the column type (int8 → i64, numeric →
//!   a strict base-10000 decoder, jsonb → serde_json through postgres-types, text[] →
//!   `Vec<Option<String>>`, ...);
//! * `{"stmt": i, "error": "...", "code": "SQLSTATE", "detail": ...}` when the statement failed (server or
//!   dbwarden error) — the connection is kept and the next statement runs;
//! * `{"stmt": i, "decode_error": "..."}` when a value did not decode as its type (what a
//!   masker that breaks the wire format would cause).
//!
//! Exits non-zero only when the connection itself fails.

use std::{error::Error, net::SocketAddr};

use tokio_postgres::{
    types::{FromSql, Type},
    Row,
};

type BoxErr = Box<dyn Error + Sync + Send>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: dbw-mask-agent ADDR DB SQL...");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(&args[1], &args[2], &args[3..])) {
        eprintln!("dbw-mask-agent: {e}");
        std::process::exit(1);
    }
}

async fn run(addr: &str, db: &str, sqls: &[String]) -> Result<(), Box<dyn Error>> {
    let addr: SocketAddr = addr.parse()?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").dbname(db);
    let (client, conn) = cfg.connect_raw(stream, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    for (i, sql) in sqls.iter().enumerate() {
        let line = match client.query(sql.as_str(), &[]).await {
            Ok(rows) => match render_rows(&rows) {
                Ok(v) => {
                    let cols: Vec<serde_json::Value> = rows
                        .first()
                        .map(|r| {
                            r.columns()
                                .iter()
                                .map(|c| serde_json::json!({"name": c.name(), "type": c.type_().name()}))
                                .collect()
                        })
                        .unwrap_or_default();
                    serde_json::json!({"stmt": i, "columns": cols, "rows": v})
                }
                Err(e) => serde_json::json!({"stmt": i, "decode_error": e.to_string()}),
            },
            Err(e) => {
                let (msg, code, detail) = match e.as_db_error() {
                    Some(db) => (
                        db.message().to_string(),
                        db.code().code().to_string(),
                        db.detail().map(str::to_string),
                    ),
                    None => (e.to_string(), String::new(), None),
                };
                serde_json::json!({"stmt": i, "error": msg, "code": code, "detail": detail})
            }
        };
        println!("{line}");
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

fn render_rows(rows: &[Row]) -> Result<Vec<Vec<serde_json::Value>>, BoxErr> {
    rows.iter()
        .map(|r| (0..r.len()).map(|i| render(r, i)).collect())
        .collect()
}

/// Decodes column `i` with the driver's decoder for its type.
fn render(row: &Row, i: usize) -> Result<serde_json::Value, BoxErr> {
    use serde_json::Value as J;
    let t = row.columns()[i].type_().clone();
    let v = match t {
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(J::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(J::from),
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(J::from),
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(J::from),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(J::from),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(i)?.map(J::from)
        }
        Type::NUMERIC => row.try_get::<_, Option<Numeric>>(i)?.map(|n| J::from(n.0)),
        Type::JSON | Type::JSONB => row.try_get::<_, Option<serde_json::Value>>(i)?,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            row.try_get::<_, Option<Vec<Option<String>>>>(i)?.map(|v| {
                J::from(
                    v.into_iter()
                        .map(|x| x.map_or(J::Null, J::from))
                        .collect::<Vec<_>>(),
                )
            })
        }
        Type::INT8_ARRAY => row.try_get::<_, Option<Vec<Option<i64>>>>(i)?.map(|v| {
            J::from(
                v.into_iter()
                    .map(|x| x.map_or(J::Null, J::from))
                    .collect::<Vec<_>>(),
            )
        }),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map(|b| J::from(String::from_utf8_lossy(&b).into_owned())),
        Type::DATE => row.try_get::<_, Option<Date>>(i)?.map(|d| J::from(d.0)),
        _ => row.try_get::<_, Option<Raw>>(i)?.map(|r| J::from(r.0)),
    };
    Ok(v.unwrap_or(serde_json::Value::Null))
}

/// `numeric` decoded strictly from its binary form (ndigits, weight, sign, dscale, base-10000
/// digits) into its canonical text.
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxErr> {
        let be16 = |at: usize| -> Result<i16, BoxErr> {
            raw.get(at..at + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "numeric: truncated".into())
        };
        let ndigits = usize::try_from(be16(0)?).map_err(|_| "numeric: negative ndigits")?;
        let weight = i32::from(be16(2)?);
        let sign = be16(4)? as u16;
        let dscale = usize::try_from(be16(6)?).map_err(|_| "numeric: negative dscale")?;
        if raw.len() != 8 + 2 * ndigits {
            return Err(format!("numeric: {} bytes for {ndigits} digits", raw.len()).into());
        }
        match sign {
            0xC000 => return Ok(Numeric("NaN".into())),
            0xD000 => return Ok(Numeric("Infinity".into())),
            0xF000 => return Ok(Numeric("-Infinity".into())),
            0x0000 | 0x4000 => {}
            s => return Err(format!("numeric: bad sign {s:#x}").into()),
        }
        let mut groups = Vec::with_capacity(ndigits);
        for k in 0..ndigits {
            let g = be16(8 + 2 * k)?;
            if !(0..10000).contains(&g) {
                return Err(format!("numeric: digit group {g} out of range").into());
            }
            groups.push(g as u32);
        }
        // Integer part: groups with weight >= 0.
        let mut int = String::new();
        for w in (0..=weight).rev() {
            let idx = weight - w;
            let g = usize::try_from(idx)
                .ok()
                .and_then(|i| groups.get(i))
                .copied()
                .unwrap_or(0);
            if int.is_empty() {
                if g != 0 {
                    int = g.to_string();
                }
            } else {
                int.push_str(&format!("{g:04}"));
            }
        }
        if int.is_empty() {
            int.push('0');
        }
        let mut frac = String::new();
        let mut w = -1;
        while frac.len() < dscale {
            let idx = weight - w;
            let g = usize::try_from(idx)
                .ok()
                .and_then(|i| groups.get(i))
                .copied()
                .unwrap_or(0);
            frac.push_str(&format!("{g:04}"));
            w -= 1;
        }
        frac.truncate(dscale);
        let mut s = String::new();
        if sign == 0x4000 {
            s.push('-');
        }
        s.push_str(&int);
        if dscale > 0 {
            s.push('.');
            s.push_str(&frac);
        }
        Ok(Numeric(s))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// `date`: days since 2000-01-01, rendered as YYYY-MM-DD.
struct Date(String);

impl<'a> FromSql<'a> for Date {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxErr> {
        let b: [u8; 4] = raw.try_into().map_err(|_| "date: expected 4 bytes")?;
        let days = i64::from(i32::from_be_bytes(b)) + 10957; // days since 1970-01-01
                                                             // Civil-from-days (H. Hinnant).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        Ok(Date(format!("{y:04}-{m:02}-{d:02}")))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// Any other type: its raw bytes as lossy text (for scanning).
struct Raw(String);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxErr> {
        Ok(Raw(String::from_utf8_lossy(raw).into_owned()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
