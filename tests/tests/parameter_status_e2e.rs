//! ParameterStatus is data too: `application_name` (from the startup packet or SET) is echoed
//! back by the server, so a card number put there must come back masked, like any value.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

/// A raw PostgreSQL client: startup with `application_name`, one simple query, and every byte
/// the server (through dbwarden) answered, as hex.
const PY_RAW: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 5432))
app = sys.argv[1].encode()
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0application_name\0" + app + b"\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
s.settimeout(10)
got = b""
def until_ready():
    global got
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        got += chunk
        if got.endswith(b"Z\x00\x00\x00\x05I"):
            return
until_ready()
q = ("SET application_name = '%s'" % sys.argv[2]).encode() + b"\0"
s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
until_ready()
print(got.hex())
"#;

#[test]
fn parameter_status_values_are_masked() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let mut c = d.agent("python3");
    c.args(["-c", PY_RAW, "app 4111111111111111", "5555 5555 5555 4444"]);
    let out = output_timeout(c, None, Duration::from_secs(30));
    assert_ok(&out, "raw client");
    let bytes: Vec<u8> = (0..stdout(&out).len() / 2)
        .map(|i| u8::from_str_radix(&stdout(&out)[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    // The server did report application_name both times, and neither value reached the agent.
    assert_eq!(text.matches("application_name").count(), 2, "{text}");
    assert_no_pan(
        "ParameterStatus",
        &bytes,
        &["4111111111111111", "5555555555554444"],
    );
    finish_and_scan(&d, &["4111111111111111", "5555555555554444"]);
}
