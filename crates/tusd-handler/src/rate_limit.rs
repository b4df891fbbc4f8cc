//! An opt-in limit on how many uploads one client address may create per
//! minute (`Config::creations_per_minute`), answered with 429.
//!
//! Creation is the one request that costs storage before any byte arrives
//! (two files, an fsync), so a client looping on POST could fill a disk
//! with empty uploads. Counting is per address in fixed one-minute windows,
//! kept in memory per process: a cluster of N nodes behind a round-robin
//! balancer lets a client create up to N times the limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::Request;

const WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked at once. Past this, windows that ended are dropped;
/// if all are current (a flood from very many addresses), the table starts
/// over rather than grow: the limit then errs on the side of letting
/// clients through.
const MAX_TRACKED: usize = 100_000;

pub(crate) struct CreationLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    created: u32,
}

impl CreationLimiter {
    pub(crate) fn new(per_minute: u32) -> CreationLimiter {
        CreationLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one creation by `client` at `now`; `Err(seconds)` when it is
    /// over the limit, with the seconds until its window ends.
    pub(crate) fn admit(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut windows = self.windows.lock().unwrap();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&client) {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                tracing::warn!(
                    "creation rate limit: too many client addresses at once, counts reset"
                );
                windows.clear();
            }
        }
        let window = windows.entry(client).or_insert(Window {
            started: now,
            created: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                created: 0,
            };
        }
        if window.created >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(window.started));
            return Err(left.as_secs().max(1));
        }
        window.created += 1;
        Ok(())
    }
}

/// The address of the client that sent `req`: the connection's peer, or
/// with `behind_proxy` the address the proxy reports. The *last* entry of
/// `X-Forwarded-For` (or `for=` of `Forwarded`) is used: it is the one the
/// proxy in front of us added; earlier ones come from the client and prove
/// nothing.
pub(crate) fn client_address<B>(req: &Request<B>, behind_proxy: bool) -> Option<IpAddr> {
    if behind_proxy {
        let headers = req.headers();
        let forwarded_for = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim);
        let forwarded = headers
            .get("forwarded")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for").then(|| v.trim_matches('"'))
                })
            });
        if let Some(ip) = forwarded_for.or(forwarded).and_then(parse_ip) {
            return Some(ip);
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5`, `[::1]`, `[::1]:5`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.trim_start_matches('[')
        .split(']')
        .next()
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_per_window() {
        let limiter = CreationLimiter::new(2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(limiter.admit(a, t0).is_ok());
        assert!(limiter.admit(a, t0).is_ok());
        let retry = limiter.admit(a, t0 + Duration::from_secs(15)).unwrap_err();
        assert_eq!(retry, 45);
        assert!(limiter.admit(b, t0).is_ok());
        assert!(limiter.admit(a, t0 + WINDOW).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = CreationLimiter::new(0);
        for _ in 0..1000 {
            assert!(limiter
                .admit("::1".parse().unwrap(), Instant::now())
                .is_ok());
        }
    }

    #[test]
    fn the_proxy_s_own_entry_names_the_client() {
        let request =
            |name: &str, value: &str| Request::builder().header(name, value).body(()).unwrap();
        let spoofed = request("x-forwarded-for", "6.6.6.6, 192.0.2.7");
        assert_eq!(
            client_address(&spoofed, true),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(client_address(&spoofed, false), None);
        let forwarded = request("forwarded", "for=6.6.6.6, for=\"[2001:db8::1]:4711\"");
        assert_eq!(
            client_address(&forwarded, true),
            Some("2001:db8::1".parse().unwrap())
        );
    }
}
