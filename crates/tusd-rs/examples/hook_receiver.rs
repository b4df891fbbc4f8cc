//! A minimal HTTP hook receiver for `scripts/bench-hooks.sh`: it answers
//! every hook `{}` (go ahead, change nothing) over HTTP/1.1 keep-alive, so
//! the benchmark measures tusd-rs calling hooks, not the receiver. It
//! counts the TCP connections it accepted and the calls of each hook type,
//! which is how the benchmark checks that every upload was hooked and that
//! tusd-rs reuses its connections.
//!
//! Usage: `hook_receiver [PORT]` (0 or none: a free port). Prints the port
//! as its first stdout line. `GET /stats` answers
//! `{"connections": N, "calls": {"pre-create": N, ...}}`; any `POST` is a
//! hook call.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    calls: Mutex<BTreeMap<String, u64>>,
}

/// The hook type named in a request body, without parsing the whole JSON:
/// the receiver stays cheap next to the server it serves.
fn hook_type(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_once("\"Type\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| "unknown".to_owned(), |(kind, _)| kind.to_owned())
}

async fn answer(
    stats: Arc<Stats>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let json = |body: String| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("valid response")
    };
    if request.method() == Method::GET {
        let calls = stats.calls.lock().unwrap().clone();
        let report = serde_json::json!({
            "connections": stats.connections.load(Ordering::Relaxed),
            "calls": calls,
        });
        return Ok(json(report.to_string()));
    }
    let body = axum::body::to_bytes(Body::new(request.into_body()), 1 << 20)
        .await
        .unwrap_or_default();
    *stats
        .calls
        .lock()
        .unwrap()
        .entry(hook_type(&body))
        .or_default() += 1;
    Ok(json("{}".to_owned()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(0, |p| p.parse().expect("PORT is a number"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?.port());
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(stats.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
