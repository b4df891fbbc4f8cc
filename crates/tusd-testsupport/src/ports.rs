//! Free loopback ports for servers that must be told their port up front
//! (etcd's client and peer URLs).
//!
//! A port is free when this returns it, and a process started right after
//! binds it; the risk is that something takes it in between. Asking the
//! kernel for any free port (`bind` to port 0) hands out ports from its
//! ephemeral range, the same range every outgoing connection of every test
//! draws its source port from, and tests make many connections. So ports
//! come from below that range instead (20000–31999; Linux's ephemeral range
//! starts at 32768 by default), in turn from a counter, so that two tests of
//! one process never get the same port, from a block that depends on the
//! process id, so that two processes rarely do. Each candidate is checked by
//! binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const BLOCKS: u32 = 12;
const BLOCK_SIZE: u32 = 1_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A loopback port nobody listens on at the time of the call.
pub fn free_port() -> u16 {
    let block = FIRST + (std::process::id() % BLOCKS) * BLOCK_SIZE;
    for _ in 0..BLOCKS * BLOCK_SIZE {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Past its own block a process moves on to the next ones.
        let port = FIRST + (block - FIRST + n) % (BLOCKS * BLOCK_SIZE);
        let port = u16::try_from(port).expect("ports stay below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + BLOCKS * BLOCK_SIZE - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        // Each was free when handed out (free_port binds it to check); it
        // is not re-checked here, since other tests of this process start
        // servers meanwhile and a port handed out earlier may be theirs.
        for port in ports {
            assert!((20_000..32_000).contains(&port), "{port}");
        }
    }
}
