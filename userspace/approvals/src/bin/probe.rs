//! Test helper for dbwarden-approvals: connects to a control socket, sends one request line
//! and prints the first response line. Exit status 0 if a line was read, 2 on connect
//! failure (message on stderr), 1 otherwise.
//!
//! Usage: `dbwarden-approvals-probe SOCKET JSON-LINE`

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, line] = args.as_slice() else {
        eprintln!("usage: dbwarden-approvals-probe SOCKET JSON-LINE");
        return ExitCode::from(1);
    };
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect {socket}: {e}");
            return ExitCode::from(2);
        }
    };
    // A refused peer may see EPIPE here; the refusal is still readable.
    if let Err(e) = s.write_all(format!("{line}\n").as_bytes()) {
        eprintln!("write: {e}");
    }
    let mut resp = String::new();
    match BufReader::new(s).read_line(&mut resp) {
        Ok(n) if n > 0 => {
            print!("{resp}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("connection closed without a response");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("read: {e}");
            ExitCode::from(1)
        }
    }
}
