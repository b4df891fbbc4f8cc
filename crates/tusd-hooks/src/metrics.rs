//! Hook metrics, under tusd's names where tusd has them:
//! `tusd_hook_invocations_total` and `tusd_hook_errors_total` (label
//! `hooktype`, as tusd's), plus `tusd_hook_duration_seconds`; each also
//! labelled with the backend `kind` (`http`, `file`, `grpc`). Eight event
//! names times one kind: the label set is bounded.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::HookType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hooktype: &'static str,
    kind: &'static str,
}

/// Counts and times the hook calls of one [`crate::TusdHooks`].
#[derive(Clone)]
pub struct HookMetrics {
    invocations: Family<HookLabels, Counter>,
    errors: Family<HookLabels, Counter>,
    duration: Family<HookLabels, Histogram>,
}

impl Default for HookMetrics {
    fn default() -> HookMetrics {
        HookMetrics {
            invocations: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 4.0, 10))
            }),
        }
    }
}

impl HookMetrics {
    /// Adds the metrics to `registry` under the `tusd` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tusd");
        r.register(
            "hook_invocations",
            "Hook calls, by event (hooktype) and backend (kind)",
            self.invocations.clone(),
        );
        r.register(
            "hook_errors",
            "Hook calls that failed (after retries), by event and backend",
            self.errors.clone(),
        );
        r.register(
            "hook_duration_seconds",
            "Time a hook call took (retries included), by event and backend",
            self.duration.clone(),
        );
    }

    pub(crate) fn observe(&self, hook: HookType, kind: &'static str, took: Duration, ok: bool) {
        let labels = HookLabels {
            hooktype: hook.name(),
            kind,
        };
        self.invocations.get_or_create(&labels).inc();
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}
