//! What a locker is configured with: the lease TTL and the key prefix.

use std::time::Duration;

/// The lease TTL, in seconds, when none (or zero) is given.
pub const DEFAULT_TTL: i64 = 60;

/// The key prefix when none (or an empty one) is given.
pub const DEFAULT_PREFIX: &str = "/tusd";

/// The longest a single lease grant may take before it is retried or given up.
pub const GRANT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The lease TTL and the key prefix of a locker.
///
/// The contract mirrors the Go package: a zero TTL means [`DEFAULT_TTL`], an
/// empty prefix means [`DEFAULT_PREFIX`], and a prefix gets a leading `/`
/// when it lacks one, so `"my-prefix"` and `"/my-prefix"` name the same locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockerOptions {
    ttl: i64,
    prefix: String,
}

impl Default for LockerOptions {
    /// TTL 60 s, prefix `/tusd`.
    fn default() -> LockerOptions {
        LockerOptions::new(DEFAULT_TTL, DEFAULT_PREFIX)
    }
}

impl LockerOptions {
    /// Options with `ttl` seconds and `prefix`, normalized as described on the type.
    pub fn new(ttl: i64, prefix: &str) -> LockerOptions {
        let mut options = LockerOptions {
            ttl: DEFAULT_TTL,
            prefix: DEFAULT_PREFIX.to_owned(),
        };
        options.set_ttl(ttl);
        options.set_prefix(prefix);
        options
    }

    /// The lease TTL in seconds. Locks survive this long after the process
    /// stops renewing them (a crash); the process itself gives them up
    /// sooner, see the crate docs on loss.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Sets the lease TTL in seconds; zero or negative means [`DEFAULT_TTL`].
    pub fn set_ttl(&mut self, ttl: i64) {
        self.ttl = if ttl > 0 { ttl } else { DEFAULT_TTL };
    }

    /// The key prefix; every lock key starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sets the key prefix; empty means [`DEFAULT_PREFIX`], a missing leading `/` is added.
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = match prefix {
            "" => DEFAULT_PREFIX.to_owned(),
            p if p.starts_with('/') => p.to_owned(),
            p => format!("/{p}"),
        };
    }

    pub(crate) fn ttl_duration(&self) -> Duration {
        Duration::from_secs(self.ttl as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_go_package() {
        let options = LockerOptions::default();
        assert_eq!(options.ttl(), 60);
        assert_eq!(options.prefix(), "/tusd");
    }

    #[test]
    fn normalizes_prefix_and_ttl() {
        assert_eq!(LockerOptions::new(15, "my-prefix").prefix(), "/my-prefix");
        assert_eq!(LockerOptions::new(15, "/my-prefix").prefix(), "/my-prefix");
        assert_eq!(LockerOptions::new(0, "").prefix(), DEFAULT_PREFIX);
        assert_eq!(LockerOptions::new(0, "x").ttl(), DEFAULT_TTL);
        let mut options = LockerOptions::new(15, "x");
        options.set_ttl(3);
        options.set_prefix("y");
        assert_eq!((options.ttl(), options.prefix()), (3, "/y"));
    }
}
