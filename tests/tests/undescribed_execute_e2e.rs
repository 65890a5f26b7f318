//! Rows of a portal the client never described still get masked: dbwarden describes the portal
//! itself (in the same write as the Execute) and swallows the answer, so column types and
//! binary formats are known before the first row. And a RowDescription's column names are
//! masked like data (an alias is whatever the agent wrote).
//!
//! A raw protocol client inside the controlled cgroup (no driver quietly adding Describe),
//! through the real eBPF redirect, against PostgreSQL 15. The agent's bytes, the server-side
//! truth and the session file are all checked.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

const PAN_INT: i64 = 5_555_555_555_554_444;
const PAN_TEXT: &str = "4111111111111111";
const CVV: &str = "917";

/// Parse/Bind(all results binary)/Execute/Sync with no Describe at all, then a simple query
/// whose alias is a card number. Prints one line per message the client received:
/// `<type> <hex body>`.
const PY_RAW: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 5432))
db = sys.argv[1].encode()
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0" + db + b"\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
s.settimeout(20)
buf = b""
msgs = []
def until_ready():
    global buf
    while True:
        while len(buf) >= 5:
            t = buf[0:1]
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            msgs.append((t, buf[5:1 + n]))
            buf = buf[1 + n:]
            if t == b"Z":
                return
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
def msg(t, payload):
    return t + struct.pack("!I", len(payload) + 4) + payload
until_ready()
msgs.clear()
sql = b"select pan_num, cvv, card_number from cards order by id\0"
parse = msg(b"P", b"\0" + sql + struct.pack("!H", 0))
bind = msg(b"B", b"\0\0" + struct.pack("!HHHH", 0, 0, 1, 1))
execute = msg(b"E", b"\0" + struct.pack("!I", 0))
sync = msg(b"S", b"")
s.sendall(parse + bind + execute + sync)
until_ready()
q = b'select 1 as "4111111111111111"\0'
s.sendall(msg(b"Q", q))
until_ready()
for t, b in msgs:
    print(t.decode(), b.hex())
"#;

#[test]
fn execute_without_describe_is_masked_by_type_and_column() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("undescribed");
    psql_direct(
        &db.name,
        &format!(
            "create table cards (id int primary key, pan_num int8, cvv text, card_number text);
             insert into cards values (1, {PAN_INT}, '{CVV}', '{PAN_TEXT}'), (2, 42, '{CVV}', 'none');"
        ),
    );
    let mut c = d.agent("python3");
    c.args(["-c", PY_RAW, &db.name]);
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert_ok(&out, "raw client");
    let msgs: Vec<(String, Vec<u8>)> = stdout(&out)
        .lines()
        .map(|l| {
            let (t, hex) = l.split_once(' ').unwrap_or((l, ""));
            let b = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            (t.to_string(), b)
        })
        .collect();
    let types: Vec<&str> = msgs.iter().map(|(t, _)| t.as_str()).collect();
    // The client asked for no description in the extended batch and gets none: exactly what
    // PostgreSQL would send it directly. The simple query's RowDescription follows.
    assert_eq!(
        types,
        ["1", "2", "D", "D", "C", "Z", "T", "D", "C", "Z"],
        "{msgs:?}"
    );
    let rows: Vec<&Vec<u8>> = msgs
        .iter()
        .filter(|(t, _)| t == "D")
        .map(|(_, b)| b)
        .take(2)
        .collect();
    // Row 1: int8 PAN in binary, CVV, text PAN. None of them in clear.
    let all: Vec<u8> = msgs.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        !all.windows(8).any(|w| w == PAN_INT.to_be_bytes()),
        "the binary int8 PAN reached the agent"
    );
    assert!(
        !rows[0].windows(CVV.len()).any(|w| w == CVV.as_bytes()),
        "the CVV reached the agent: {:?}",
        rows[0]
    );
    assert_no_pan("agent bytes", &all, &[PAN_TEXT, "5555555555554444"]);
    // Row 2's non-sensitive int8 came through as the binary value 42.
    assert!(
        rows[1].windows(8).any(|w| w == 42i64.to_be_bytes()),
        "{:?}",
        rows[1]
    );
    // The alias of the simple query was masked in the RowDescription.
    let desc = &msgs[6].1;
    assert!(
        !String::from_utf8_lossy(desc).contains(PAN_TEXT),
        "{:?}",
        String::from_utf8_lossy(desc)
    );
    // The server really holds what the agent did not see.
    assert_eq!(
        psql_direct(
            &db.name,
            "select pan_num || ' ' || cvv from cards where id = 1"
        )
        .trim(),
        format!("{PAN_INT} {CVV}")
    );
    finish_and_scan(&d, &[PAN_TEXT, "5555555555554444"]);
    let dir = sessions_dir(&d);
    for f in session_files(&dir) {
        let text = sessions_cli(&dir, &["show", &f.to_string_lossy()]);
        let text = all_text(&text);
        assert!(
            !text.contains(&PAN_INT.to_string()),
            "session file holds the PAN"
        );
        let hex = format!("{PAN_INT:016x}");
        assert!(!text.contains(&hex), "session file holds the PAN as hex");
    }
}
