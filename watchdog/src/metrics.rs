//! The watchdog's Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! Label values stay low-cardinality: signal kinds, decisions, sinks, sources and outcomes; never
//! container ids or names.

use crate::notify::Notifier;
use crate::signals::SignalKind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub kind: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Every metric the watchdog exports. Cheap to share (`Arc`); updates are atomic.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    signals_firing: Family<KindLabel, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    detection_latency: Histogram,
    sweep_duration: Histogram,
    docker_failures: Family<SourceLabel, Counter>,
    requests: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    /// Builds the registry. `notify` supplies the delivery counters at scrape time.
    pub fn new(notify: Option<Notifier>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("vigil_watchdog");
        let signals_firing = Family::<KindLabel, Gauge>::default();
        registry.register(
            "signals_firing",
            "Signals currently firing (alerted and not yet recovered), by kind",
            signals_firing.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Outcomes of decide() that produced a message, by signal kind and decision",
            decisions.clone(),
        );
        // 1 ms .. ~33 s.
        let detection_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "detection_latency_seconds",
            "From the engine's event time to the alert being handed to the notification queue",
            detection_latency.clone(),
        );
        let sweep_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "sweep_duration_seconds",
            "Wall time of one sweep (list, inspect, one-shot stats) until the core received it",
            sweep_duration.clone(),
        );
        let docker_failures = Family::<SourceLabel, Counter>::default();
        registry.register(
            "docker_api_failures",
            "Docker source failures (each outage of a source counts once), by source",
            docker_failures.clone(),
        );
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "requests_published",
            "Signed remediation requests, by outcome (published, failed)",
            requests.clone(),
        );
        if let Some(n) = notify {
            registry.register_collector(Box::new(NotifyCollector(n)));
        }
        Arc::new(Metrics {
            registry,
            signals_firing,
            decisions,
            detection_latency,
            sweep_duration,
            docker_failures,
            requests,
        })
    }

    /// Sets the firing gauge for every kind (kinds not in `firing` become 0).
    pub fn set_firing(&self, firing: &BTreeMap<SignalKind, usize>) {
        for kind in SignalKind::ALL {
            let n = firing.get(&kind).copied().unwrap_or(0);
            self.signals_firing
                .get_or_create(&KindLabel {
                    kind: kind.as_str().to_string(),
                })
                .set(n as i64);
        }
    }

    pub fn decision(&self, kind: SignalKind, decision: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                kind: kind.as_str().to_string(),
                decision: decision.to_string(),
            })
            .inc();
    }

    pub fn detection_latency(&self, latency: Duration) {
        self.detection_latency.observe(latency.as_secs_f64());
    }

    pub fn sweep_duration(&self, d: Duration) {
        self.sweep_duration.observe(d.as_secs_f64());
    }

    pub fn docker_failure(&self, source: &str) {
        self.docker_failures
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc();
    }

    pub fn request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
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

/// Reads the notifier's counters at scrape time, so delivery code stays free of metrics types.
#[derive(Debug)]
struct NotifyCollector(Notifier);

impl Collector for NotifyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let mut family = encoder.encode_descriptor(
            "vigil_watchdog_notifications",
            "Messages by sink and outcome (sent, failed, retried, dropped)",
            None,
            MetricType::Counter,
        )?;
        for s in &stats.sinks {
            for (outcome, value) in [
                ("sent", &s.sent),
                ("failed", &s.failed),
                ("retried", &s.retries),
                ("dropped", &s.dropped),
            ] {
                let labels = [("sink", s.name), ("outcome", outcome)];
                ConstCounter::new(value.load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let enc = encoder.encode_descriptor(
            "vigil_watchdog_notify_intake_dropped",
            "Notices dropped because the intake queue was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.dropped.load(Ordering::Relaxed)).encode(enc)?;
        let mut family = encoder.encode_descriptor(
            "vigil_watchdog_notify_queue_depth",
            "Messages waiting, in the intake queue and per sink",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.queue_depth() as i64)
            .encode(family.encode_family(&[("queue", "intake")])?)?;
        for (sink, depth) in self.0.sink_depths() {
            ConstGauge::new(depth as i64).encode(family.encode_family(&[("queue", sink)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_low_cardinality_labels() {
        let m = Metrics::new(None);
        let mut firing = BTreeMap::new();
        firing.insert(SignalKind::ContainerUnhealthy, 2);
        m.set_firing(&firing);
        m.decision(SignalKind::ContainerUnhealthy, "alert");
        m.detection_latency(Duration::from_millis(12));
        m.request("published");
        let text = m.render();
        assert!(
            text.contains("vigil_watchdog_signals_firing{kind=\"container_unhealthy\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("vigil_watchdog_signals_firing{kind=\"disk_high\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "vigil_watchdog_decisions_total{kind=\"container_unhealthy\",decision=\"alert\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vigil_watchdog_detection_latency_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_watchdog_requests_published_total{outcome=\"published\"} 1"),
            "{text}"
        );
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }
}
