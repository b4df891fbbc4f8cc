//! A loopback TCP proxy in front of one etcd member that passes a client's
//! HTTP/2 frames on but drops its cancellations and never passes its
//! disconnect on.
//!
//! A client that gives up on a request (a timeout) resets the stream; a
//! member that hangs reads that reset only when it resumes, right after the
//! request itself, and whether it then still applies the request is a race
//! inside etcd. Dropping the reset (and the connection's end) makes the
//! request that reached a hung member stay queued there for sure, which is
//! the case the locker must survive: the cancellation of a request is
//! best-effort on any network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The HTTP/2 client connection preface.
const PREFACE: usize = 24;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;

pub struct CancelDroppingProxy {
    port: u16,
    requests: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl CancelDroppingProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> CancelDroppingProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("a plain-text loopback endpoint")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = stop.cancelled() => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    tokio::spawn(forward(
                        client,
                        upstream.clone(),
                        requests.clone(),
                        stop.clone(),
                    ));
                }
            });
        }
        CancelDroppingProxy {
            port,
            requests,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests (HEADERS frames) went to the member so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for CancelDroppingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn forward(
    client: TcpStream,
    upstream: String,
    requests: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
            }
        }
    });
    let frames = copy_frames(&mut from_client, &mut to_server, &requests);
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = frames => {}
    }
    // The client is gone; the member must not hear of it before the test ends.
    stop.cancelled().await;
    drop(to_server);
}

/// Copies frames from the client to the member, leaving out resets and
/// GOAWAY; returns when the client's side ends.
async fn copy_frames(
    from_client: &mut tokio::net::tcp::OwnedReadHalf,
    to_server: &mut tokio::net::tcp::OwnedWriteHalf,
    requests: &AtomicU64,
) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE];
    from_client.read_exact(&mut preface).await?;
    to_server.write_all(&preface).await?;
    loop {
        let mut header = [0u8; 9];
        from_client.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        from_client.read_exact(&mut payload).await?;
        match header[3] {
            RST_STREAM | GOAWAY => continue,
            HEADERS => {
                requests.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        to_server.write_all(&header).await?;
        to_server.write_all(&payload).await?;
    }
}
