//! Conversions between std socket addresses and the kernel's word-array representation.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use dbwarden_common::ConnKey;

/// An IPv6 (or IPv4-mapped) network in the intercept set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Network address, IPv6 or IPv4-mapped.
    pub addr: Ipv6Addr,
    /// Prefix length in IPv6 terms (an IPv4 /8 is /104).
    pub prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = a.parse().map_err(|_| {
            format!(
                "invalid network {s:?}: expected an address or CIDR such as 10.0.0.0/8 or ::1/128"
            )
        })?;
        let (max, base) = match ip {
            IpAddr::V4(v4) => (32u8, v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => (128u8, v6),
        };
        let p = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}: must be 0..={max}"))?,
        };
        let prefix = if max == 32 { p + 96 } else { p };
        Ok(Network { addr: base, prefix })
    }
}

impl Network {
    /// The kernel key data for this network.
    pub fn words(&self) -> [u32; 4] {
        words(&self.addr)
    }
}

fn words(a: &Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    let mut w = [0u32; 4];
    for (i, wi) in w.iter_mut().enumerate() {
        *wi = u32::from_ne_bytes([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]]);
    }
    w
}

fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Kernel words for an address, IPv4 stored IPv4-mapped.
pub fn addr_words(ip: IpAddr) -> [u32; 4] {
    words(&mapped(ip))
}

/// Builds the 4-tuple key the sock_ops program stored for an accepted connection.
pub fn key_for(peer: SocketAddr, local: SocketAddr) -> ConnKey {
    ConnKey {
        client_addr: addr_words(peer.ip()),
        server_addr: addr_words(local.ip()),
        client_port: peer.port(),
        server_port: local.port(),
        _pad: 0,
    }
}

/// Converts a kernel address + host-order port back to a socket address (IPv4-mapped becomes
/// IPv4).
pub fn to_socket_addr(w: &[u32; 4], port: u16) -> SocketAddr {
    let mut o = [0u8; 16];
    for (i, wi) in w.iter().enumerate() {
        o[i * 4..i * 4 + 4].copy_from_slice(&wi.to_ne_bytes());
    }
    let v6 = Ipv6Addr::from(o);
    match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        None => SocketAddr::new(IpAddr::V6(v6), port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_networks() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert_eq!(n.prefix, 104);
        let n: Network = "::/0".parse().unwrap();
        assert_eq!(n.prefix, 0);
        let n: Network = "127.0.0.1".parse().unwrap();
        assert_eq!(n.prefix, 128);
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nope".parse::<Network>().is_err());
    }

    #[test]
    fn round_trips_addresses() {
        for s in ["127.0.0.1:5432", "[::1]:3306", "[fe80::1]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(to_socket_addr(&addr_words(a.ip()), a.port()), a);
        }
        let k = key_for(
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:7432".parse().unwrap(),
        );
        assert_eq!(
            k.client_addr,
            dbwarden_common::v4_mapped(u32::from_ne_bytes([127, 0, 0, 1]))
        );
        assert_eq!((k.client_port, k.server_port), (40000, 7432));
    }
}
