//! Prometheus metrics of one handler, named after tusd's where tusd has one.
//!
//! The handler only counts; exposing them (`/metrics`) is the binary's job,
//! through [`Metrics::register`].

use std::time::Duration;

use crate::events::EventKind;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// Counters and gauges shared by every request of a handler. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<MethodLabel, Counter>,
    errors: Family<StatusLabel, Counter>,
    bytes_received: Counter,
    uploads_created: Counter,
    uploads_finished: Counter,
    uploads_terminated: Counter,
    connections_open: Gauge,
    lock_waits: Counter,
    lock_timeouts: Counter,
    lock_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            errors: Family::default(),
            bytes_received: Counter::default(),
            uploads_created: Counter::default(),
            uploads_finished: Counter::default(),
            uploads_terminated: Counter::default(),
            connections_open: Gauge::default(),
            lock_waits: Counter::default(),
            lock_timeouts: Counter::default(),
            lock_wait_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
        }
    }
}

impl Metrics {
    /// Adds every metric to `registry` under the `tusd_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tusd");
        r.register(
            "requests",
            "Requests received, by method",
            self.requests.clone(),
        );
        r.register(
            "errors",
            "Requests answered with an error status, by status",
            self.errors.clone(),
        );
        r.register(
            "bytes_received",
            "Upload bytes received in request bodies, including chunks then discarded for a checksum mismatch",
            self.bytes_received.clone(),
        );
        r.register(
            "uploads_created",
            "Uploads created",
            self.uploads_created.clone(),
        );
        r.register(
            "uploads_finished",
            "Uploads that received their last byte",
            self.uploads_finished.clone(),
        );
        r.register(
            "uploads_terminated",
            "Uploads deleted by a client or by expiry",
            self.uploads_terminated.clone(),
        );
        r.register(
            "connections_open",
            "Client connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "lock_waits",
            "Upload lock acquisitions attempted",
            self.lock_waits.clone(),
        );
        r.register(
            "lock_timeouts",
            "Upload lock acquisitions that gave up (423)",
            self.lock_timeouts.clone(),
        );
        r.register(
            "lock_wait_seconds",
            "Time spent waiting for upload locks",
            self.lock_wait_seconds.clone(),
        );
    }

    /// Counts a request under its method, or under `other` for a method
    /// outside tus and HTTP's usual ones: method names come from clients, and
    /// a label per name would grow without bound.
    pub(crate) fn request(&self, method: &str, status: u16) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        self.requests
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .inc();
        if status >= 400 {
            self.errors.get_or_create(&StatusLabel { status }).inc();
        }
    }

    pub(crate) fn bytes_received(&self, n: u64) {
        self.bytes_received.inc_by(n);
    }

    /// Counts an upload event (the state's event point calls this).
    pub(crate) fn upload_event(&self, kind: EventKind) {
        match kind {
            EventKind::Created => self.uploads_created.inc(),
            EventKind::Finished => self.uploads_finished.inc(),
            EventKind::Terminated => self.uploads_terminated.inc(),
            EventKind::Progress => return,
        };
    }

    pub(crate) fn lock_wait(&self, waited: Duration, acquired: bool) {
        self.lock_waits.inc();
        if !acquired {
            self.lock_timeouts.inc();
        }
        self.lock_wait_seconds.observe(waited.as_secs_f64());
    }

    /// The gauge the server moves as connections open and close.
    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }
}
