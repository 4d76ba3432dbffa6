//! Prometheus metrics of the controllers, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub connection: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub service: String,
    pub operation: String,
}

/// AWS calls of the whole process. The SDK clients' interceptor records them wherever a
/// client was built, so they live outside any one registry; every [`Metrics`] exports them.
#[derive(Clone, Default)]
pub struct AwsCalls {
    /// Every attempt, retries included.
    pub attempts: Family<OperationLabels, Counter>,
    /// Attempts AWS answered with a throttling error.
    pub throttled: Family<OperationLabels, Counter>,
}

impl AwsCalls {
    pub fn record(&self, service: &str, operation: &str, throttled: bool) {
        let labels = OperationLabels {
            service: service.to_owned(),
            operation: operation.to_owned(),
        };
        if throttled {
            self.throttled.get_or_create(&labels).inc();
        }
        self.attempts.get_or_create(&labels).inc();
    }
}

/// The process's AWS call counters.
pub fn aws_calls() -> &'static AwsCalls {
    static CALLS: std::sync::LazyLock<AwsCalls> = std::sync::LazyLock::new(AwsCalls::default);
    &CALLS
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Failed reconciles by kind and error.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile duration by kind.
    pub duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Member accounts by phase per connection.
    pub accounts: Family<PhaseLabels, Gauge>,
    /// Member probes by outcome (the `Connected` condition's reason).
    pub probes: Family<OutcomeLabels, Counter>,
    /// Sync runs by outcome.
    pub sync_runs: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("orgconnect");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let accounts = Family::<PhaseLabels, Gauge>::default();
        let probes = Family::<OutcomeLabels, Counter>::default();
        let sync_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by kind and error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            duration.clone(),
        );
        registry.register(
            "member_accounts",
            "Member accounts by phase per connection",
            accounts.clone(),
        );
        registry.register("probes", "Member probes by outcome", probes.clone());
        registry.register(
            "aws_calls",
            "AWS API attempts by service and operation, retries included",
            aws_calls().attempts.clone(),
        );
        registry.register(
            "aws_throttles",
            "AWS API attempts answered with a throttling error, by service and operation",
            aws_calls().throttled.clone(),
        );
        registry.register(
            "sync_runs",
            "Finished sync runs by outcome",
            sync_runs.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            accounts,
            probes,
            sync_runs,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
