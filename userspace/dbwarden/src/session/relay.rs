//! Byte relay for protocols without a codec yet: copies both ways, counting bytes, until either
//! side closes or the daemon shuts down.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{stream::Stream, Totals};

/// Relays until EOF on both sides, an error, or shutdown. `to_server` / `to_client` are bytes
/// already read from the other side (by the protocol check) and are delivered first.
pub async fn run(
    mut client: Stream,
    mut server: Stream,
    to_server: BytesMut,
    to_client: BytesMut,
    shutdown: &CancellationToken,
) -> Result<Totals, (Totals, String)> {
    let pre = (to_server.len() as u64, to_client.len() as u64);
    let relay = async {
        server.write_all(&to_server).await?;
        client.write_all(&to_client).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await
    };
    tokio::select! {
        r = relay => match r {
            Ok((c2s, s2c)) => Ok(Totals { client_to_server: c2s + pre.0, server_to_client: s2c + pre.1 }),
            Err(e) => Err((Totals::default(), format!("relay error: {e}"))),
        },
        _ = shutdown.cancelled() => {
            let _ = client.shutdown().await;
            Err((Totals::default(), "daemon shutting down".into()))
        }
    }
}
