//! Cancellation keys: each PostgreSQL client gets a key minted by the daemon; a CancelRequest
//! (which arrives on a new, itself redirected connection) is matched against it in constant time
//! and forwarded upstream with the server's real key — so a client can cancel its own query and
//! nothing else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{futures::Notified, Notify};

use bytes::{Bytes, BytesMut};
use dbwarden_wire_pg::{BackendKeyData, Startup};
use rand::RngCore;
use tokio::io::AsyncWriteExt;

use crate::destination::Destination;

/// How a CancelRequest reaches a statement held for approval (which the server never saw).
#[derive(Debug, Default)]
pub struct HoldSignal {
    notify: Notify,
    holding: AtomicBool,
}

/// Marks a session as holding a statement until dropped.
pub struct Holding<'a>(&'a HoldSignal);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.holding.store(false, Ordering::SeqCst);
    }
}

impl HoldSignal {
    /// A future completed by the next [`HoldSignal::cancel`]; create it before [`begin`].
    ///
    /// [`begin`]: HoldSignal::begin
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The session holds a statement until the returned guard is dropped.
    pub fn begin(&self) -> Holding<'_> {
        self.holding.store(true, Ordering::SeqCst);
        Holding(self)
    }

    /// Cancels the held statement, if there is one. Returns false when nothing is held: the
    /// cancel is then meant for the server. No permit is stored, so a cancel that arrives while
    /// nothing is held can never cancel a later hold.
    pub fn cancel(&self) -> bool {
        if self.holding.load(Ordering::SeqCst) {
            self.notify.notify_waiters();
            true
        } else {
            false
        }
    }
}

/// A key handed to a client, and what it maps to.
#[derive(Debug, Clone)]
struct Entry {
    client_secret: Bytes,
    upstream: Destination,
    server: Option<BackendKeyData>,
    /// Woken by a matching CancelRequest: cancels a statement held for approval.
    held: Arc<HoldSignal>,
}

/// What a matching CancelRequest should act on.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// Upstream server and its real key (None before the server sent BackendKeyData).
    pub server: Option<(Destination, BackendKeyData)>,
    /// The session's hold notifier.
    pub held: Arc<HoldSignal>,
}

/// Registry of live sessions' cancellation keys.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    inner: Mutex<HashMap<i32, Entry>>,
}

impl CancelRegistry {
    /// Mints a fresh key (unique pid, 32 random secret bytes) for a session to `upstream`;
    /// `held` is notified when the client cancels.
    pub fn mint(&self, upstream: Destination, held: Arc<HoldSignal>) -> BackendKeyData {
        let mut rng = rand::thread_rng();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = (rng.next_u32() & 0x3fff_ffff) as i32 | 0x1000_0000;
            if map.contains_key(&pid) {
                continue;
            }
            let mut secret = vec![0u8; 32];
            rng.fill_bytes(&mut secret);
            let secret = Bytes::from(secret);
            map.insert(
                pid,
                Entry {
                    client_secret: secret.clone(),
                    upstream: upstream.clone(),
                    server: None,
                    held,
                },
            );
            return BackendKeyData {
                pid,
                secret_key: secret,
            };
        }
    }

    /// Records the server's real key and the (possibly shortened) key the client received.
    pub fn bind(&self, client: &BackendKeyData, server: BackendKeyData) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&client.pid) {
            e.client_secret = client.secret_key.clone();
            e.server = Some(server);
        }
    }

    /// Forgets a session's key.
    pub fn remove(&self, pid: i32) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    /// Looks up a client's cancel request (secret compared in constant time).
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(&pid)?;
        if !constant_time_eq(&e.client_secret, secret) {
            return None;
        }
        Some(CancelTarget {
            server: e.server.clone().map(|k| (e.upstream.clone(), k)),
            held: e.held.clone(),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sends a CancelRequest with the server's key to `upstream`.
/// A cancel request carries no credentials (the server checks only the key), so a Unix-socket
/// upstream is reached as the daemon.
pub async fn forward_cancel(upstream: &Destination, key: &BackendKeyData) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    Startup::Cancel {
        pid: key.pid,
        secret_key: key.secret_key.clone(),
    }
    .encode(&mut buf)
    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut s = super::upstream::connect(upstream, std::time::Duration::from_secs(5)).await?;
    s.write_all(&buf).await?;
    s.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_secret_cancels() {
        let r = CancelRegistry::default();
        let up = Destination::Tcp("127.0.0.1:5432".parse().unwrap());
        let k = r.mint(up.clone(), Arc::new(HoldSignal::default()));
        assert!(
            r.lookup(k.pid, &k.secret_key).unwrap().server.is_none(),
            "no server key yet"
        );
        let server = BackendKeyData {
            pid: 77,
            secret_key: Bytes::from_static(b"srvk"),
        };
        let short = BackendKeyData {
            pid: k.pid,
            secret_key: k.secret_key.slice(..4),
        };
        r.bind(&short, server.clone());
        assert_eq!(
            r.lookup(k.pid, &k.secret_key[..4]).unwrap().server,
            Some((up, server))
        );
        assert!(r.lookup(k.pid, b"nope").is_none());
        assert!(r.lookup(k.pid + 1, &k.secret_key[..4]).is_none());
        r.remove(k.pid);
        assert!(r.lookup(k.pid, &k.secret_key[..4]).is_none());
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    #[tokio::test]
    async fn cancel_reaches_only_a_statement_held_now() {
        let h = HoldSignal::default();
        assert!(!h.cancel(), "nothing held: the cancel is for the server");
        let n = h.notified();
        tokio::pin!(n);
        let g = h.begin();
        assert!(h.cancel());
        n.as_mut().await;
        drop(g);
        assert!(!h.cancel());
    }
}
