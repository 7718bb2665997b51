//! The executor's Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! - `vigil_executor_requests_total{decision, reason}`: every audited decision (`executed`,
//!   `rejected`, `refused`, `dry_run`, `failed`) with its stable reason (rejection code, policy
//!   rule, `ok`, `engine_error`, ...), plus `redelivered`/`already_audited` for an entry that was
//!   only acknowledged after a crash.
//! - `vigil_executor_action_duration_seconds{action}`: time spent in the Docker call of each
//!   action carried out (restart, start, stop).
//! - `vigil_executor_audit_seq`: `seq` of the audit log's head.
//! - `vigil_executor_circuit_open`: containers whose circuit breaker is open now.
//! - `vigil_executor_heartbeat_age_seconds`: time since the last heartbeat reached Redis (since
//!   start-up when none has yet).
//! - `vigil_executor_redis_up`: 1 while the request stream works, else 0.
//!
//! Label values stay low-cardinality: decisions, reasons and actions come from fixed sets, and no
//! label ever carries a container id, a name or a request id. The audit head's *hash* is not a
//! metric either: as a label it would make a new series on every record (unbounded
//! cardinality), and a hash is not a number a gauge could hold. It is in `/healthz`
//! (`audit.head`), next to `audit.seq`, for anyone comparing heads.

use crate::health::Health;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub decision: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

type ActionHistograms = Family<ActionLabel, Histogram, fn() -> Histogram>;

/// 10 ms .. ~20 s: a restart waits up to the stop timeout before the start.
fn action_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

/// Every metric the executor exports. Cheap to share (`Arc`); updates are atomic.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    action_duration: ActionHistograms,
    circuit_open: Gauge,
}

impl Metrics {
    /// Builds the registry; `health` supplies the audit head, Redis state and heartbeat age at
    /// scrape time.
    pub fn new(health: Arc<Health>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("vigil_executor");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by audited decision and its stable reason",
            requests.clone(),
        );
        let action_duration: ActionHistograms =
            Family::new_with_constructor(action_histogram as fn() -> Histogram);
        // Every action has a series from the start, so a dashboard sees zeros, not gaps.
        for action in Action::ALL {
            let _series = action_duration.get_or_create(&ActionLabel {
                action: action.as_str().to_string(),
            });
        }
        registry.register(
            "action_duration_seconds",
            "Time spent in the Docker call of each action carried out",
            action_duration.clone(),
        );
        let circuit_open = Gauge::default();
        registry.register(
            "circuit_open",
            "Containers whose circuit breaker is open (too many actions within the window)",
            circuit_open.clone(),
        );
        registry.register_collector(Box::new(HealthCollector(health)));
        Arc::new(Metrics {
            registry,
            requests,
            action_duration,
            circuit_open,
        })
    }

    /// Counts one handled request. `decision` and `reason` must come from fixed sets.
    pub fn request(&self, decision: &str, reason: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                decision: decision.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn action_duration(&self, action: Action, took: Duration) {
        self.action_duration
            .get_or_create(&ActionLabel {
                action: action.as_str().to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn set_circuit_open(&self, containers: usize) {
        self.circuit_open
            .set(i64::try_from(containers).unwrap_or(i64::MAX));
    }

    /// OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "Cannot encode metrics.");
        }
        out
    }
}

/// Reads [`Health`] at scrape time, so the consumer and the heartbeat keep writing plain atomics.
/// Its names are unprefixed: the registry adds `vigil_executor_` to collectors too.
#[derive(Debug)]
struct HealthCollector(Arc<Health>);

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let health = &self.0;
        let enc = encoder.encode_descriptor(
            "audit_seq",
            "seq of the audit log's head record (its hash is in /healthz)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(health.audit_seq()).unwrap_or(i64::MAX)).encode(enc)?;
        let enc = encoder.encode_descriptor(
            "heartbeat_age_seconds",
            "Seconds since the heartbeat last reached Redis (since start-up if it never did)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(health.heartbeat_age(Timestamp::now()).as_secs_f64()).encode(enc)?;
        let enc = encoder.encode_descriptor(
            "redis_up",
            "1 while the requests stream is read without error, else 0",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(health.redis_up())).encode(enc)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_openmetrics_with_low_cardinality_labels() {
        let health = Health::new(true, false);
        health.set_audit_head((42, "ab".repeat(32)));
        health.heartbeat_ok(Timestamp::now().minus(Duration::from_secs(7)));
        let m = Metrics::new(health.clone());
        m.request("executed", "ok");
        m.request("executed", "ok");
        m.request("rejected", "bad_signature");
        m.action_duration(Action::Restart, Duration::from_millis(300));
        m.set_circuit_open(2);
        let text = m.render();

        assert_eq!(
            value(
                &text,
                "vigil_executor_requests_total{decision=\"executed\",reason=\"ok\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "vigil_executor_requests_total{decision=\"rejected\",reason=\"bad_signature\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "vigil_executor_action_duration_seconds_count{action=\"restart\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "vigil_executor_action_duration_seconds_count{action=\"stop\"}"
            ),
            Some(0.0),
            "every action has a series: {text}"
        );
        assert_eq!(value(&text, "vigil_executor_circuit_open"), Some(2.0));
        assert_eq!(value(&text, "vigil_executor_audit_seq"), Some(42.0));
        let age = value(&text, "vigil_executor_heartbeat_age_seconds").expect("age");
        assert!((7.0..60.0).contains(&age), "{age}\n{text}");
        assert_eq!(value(&text, "vigil_executor_redis_up"), Some(0.0));
        assert!(
            !text.contains(&"ab".repeat(32)),
            "the head hash is not a label: {text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");

        health
            .redis_ok
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(value(&m.render(), "vigil_executor_redis_up"), Some(1.0));
    }

    #[test]
    fn heartbeat_age_counts_from_start_until_the_first_beat() {
        let health = Health::new(true, false);
        let later = Timestamp::now().plus(Duration::from_secs(5));
        let age = health.heartbeat_age(later);
        assert!(
            age >= Duration::from_secs(4) && age < Duration::from_secs(60),
            "{age:?}"
        );
    }
}
