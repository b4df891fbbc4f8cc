//! Free loopback ports.
//!
//! The operating system picks a port that is free now; a process started
//! right after binds it. Another process could take it in between, which is
//! rare enough on a test machine that the start-up check (the server answers)
//! is the only guard.

use std::net::TcpListener;

/// A loopback port nobody listens on at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}
