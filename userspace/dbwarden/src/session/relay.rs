//! Byte relay for protocols without a codec yet: copies both ways, counting bytes, until either
//! side closes or the daemon shuts down.

use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_util::sync::CancellationToken;

use super::Totals;

/// Relays until EOF on both sides, an error, or shutdown.
pub async fn run(
    mut client: TcpStream,
    mut server: TcpStream,
    shutdown: &CancellationToken,
) -> Result<Totals, (Totals, String)> {
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::select! {
        r = copy => match r {
            Ok((c2s, s2c)) => Ok(Totals { client_to_server: c2s, server_to_client: s2c }),
            Err(e) => Err((Totals::default(), format!("relay error: {e}"))),
        },
        _ = shutdown.cancelled() => {
            let _ = client.shutdown().await;
            Err((Totals::default(), "daemon shutting down".into()))
        }
    }
}
