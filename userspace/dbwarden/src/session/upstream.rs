//! Connecting to the database the agent meant to reach over TCP (and, as the daemon, to a Unix
//! socket for a cancel request, which carries no credentials). A Unix-socket session's upstream
//! is connected as the agent by [`crate::unix_resolve`] through [`super::as_agent`].

use std::{io, time::Duration};

use tokio::net::TcpStream;

use super::stream::Stream;
use crate::destination::Destination;

/// Connects to `dst` within `timeout`.
pub async fn connect(dst: &Destination, timeout: Duration) -> io::Result<Stream> {
    let fut = async {
        match dst {
            Destination::Tcp(a) => Ok(Stream::Tcp(TcpStream::connect(a).await?)),
            Destination::Unix(p) => {
                into_tokio(std::os::unix::net::UnixStream::connect(p)?).map(Stream::Unix)
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "upstream connect timed out",
        )),
    }
}

/// A std Unix stream as a tokio one.
pub fn into_tokio(s: std::os::unix::net::UnixStream) -> io::Result<tokio::net::UnixStream> {
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}
