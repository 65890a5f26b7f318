//! Where an agent meant to connect: a TCP address, or a Unix socket path.

use std::{fmt, net::SocketAddr, path::PathBuf};

/// The original destination of an intercepted connection, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// TCP (IPv4, or IPv6 / IPv4-mapped).
    Tcp(SocketAddr),
    /// A Unix-domain stream socket, by the path configured in `[intercept] unix_sockets`.
    Unix(PathBuf),
}

impl fmt::Display for Destination {
    /// `127.0.0.1:5432`, `[::1]:5432`, or `unix:/run/postgresql/.s.PGSQL.5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Tcp(a) => write!(f, "{a}"),
            Destination::Unix(p) => write!(
                f,
                "unix:{}",
                crate::identity::sanitize(&p.to_string_lossy())
            ),
        }
    }
}

impl serde::Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_transport() {
        assert_eq!(
            Destination::Tcp("127.0.0.1:5432".parse().unwrap()).to_string(),
            "127.0.0.1:5432"
        );
        assert_eq!(
            Destination::Unix("/run/mysqld/mysqld.sock".into()).to_string(),
            "unix:/run/mysqld/mysqld.sock"
        );
    }
}
