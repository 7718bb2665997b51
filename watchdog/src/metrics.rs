//! The watchdog's Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! Label values stay low-cardinality: signal kinds, decisions, sinks, sources and outcomes; never
//! container ids or names.
//!
//! Collectors (read at scrape time) use unprefixed names: the registry adds `vigil_watchdog_` to
//! them as it does to registered metrics.

use crate::collect::stats::StatsCounters;
use crate::collect::sweep::SweepCounters;
use crate::notify::Notifier;
use crate::redis::request::RequestStats;
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
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
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

/// Every metric the watchdog exports. Cheap to share (`Arc`); updates are atomic.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    signals_firing: Family<KindLabel, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    detection_latency: Histogram,
    sweep_duration: Histogram,
    docker_failures: Family<SourceLabel, Counter>,
    requests: Arc<RequestCounts>,
    sweep: Arc<SweepCounters>,
    stats: Arc<StatsCounters>,
}

/// `requests_published_total{outcome}`: what the engine counts itself (`queued`: handed to the
/// publisher) plus, once [`Metrics::attach_requests`] was called, the publisher's own counts
/// (`published`: added to the stream, `failed`: not signed or not added, `dropped`: the
/// publisher's channel was full).
#[derive(Debug, Default)]
struct RequestCounts {
    by_caller: Mutex<BTreeMap<String, u64>>,
    publisher: OnceLock<Arc<RequestStats>>,
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
            "Wall time of one sweep (list, inspect of what changed) until the core received it",
            sweep_duration.clone(),
        );
        let docker_failures = Family::<SourceLabel, Counter>::default();
        registry.register(
            "docker_api_failures",
            "Docker source failures (each outage of a source counts once), by source",
            docker_failures.clone(),
        );
        let requests = Arc::new(RequestCounts::default());
        registry.register_collector(Box::new(RequestsCollector(requests.clone())));
        let sweep = Arc::new(SweepCounters::default());
        registry.register_collector(Box::new(SweepCollector(sweep.clone())));
        let stats = Arc::new(StatsCounters::default());
        registry.register_collector(Box::new(StatsCollector(stats.clone())));
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
            sweep,
            stats,
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

    /// Counts a request outcome seen by the caller (e.g. `queued`). `outcome` must come from a
    /// fixed set and differ from the publisher's (`published`, `failed`, `dropped`).
    pub fn request(&self, outcome: &str) {
        let mut counts = self
            .requests
            .by_caller
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counts.entry(outcome.to_string()).or_default() += 1;
    }

    /// Reports the request publisher's counters (published, failed, dropped) from now on. Only
    /// the first call counts: there is one publisher.
    pub fn attach_requests(&self, stats: Arc<RequestStats>) {
        if self.requests.publisher.set(stats).is_err() {
            tracing::debug!("Request counters were already attached; ignoring.");
        }
    }

    /// The counters the sweep source updates (overruns, inspected, reused).
    pub fn sweep_counters(&self) -> Arc<SweepCounters> {
        self.sweep.clone()
    }

    /// The counters the stats task updates (samples by source, the last round's duration).
    pub fn stats_counters(&self) -> Arc<StatsCounters> {
        self.stats.clone()
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

#[derive(Debug)]
struct RequestsCollector(Arc<RequestCounts>);

impl Collector for RequestsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "requests_published",
            "Signed remediation requests, by outcome (queued, published, failed, dropped)",
            None,
            MetricType::Counter,
        )?;
        let by_caller = self
            .0
            .by_caller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (outcome, n) in &by_caller {
            ConstCounter::new(*n)
                .encode(family.encode_family(&[("outcome", outcome.as_str())])?)?;
        }
        if let Some(stats) = self.0.publisher.get() {
            for (outcome, value) in [
                ("published", &stats.sent),
                ("failed", &stats.failed),
                ("dropped", &stats.dropped),
            ] {
                ConstCounter::new(value.load(Ordering::Relaxed))
                    .encode(family.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SweepCollector(Arc<SweepCounters>);

impl Collector for SweepCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let enc = encoder.encode_descriptor(
            "sweep_overruns",
            "Sweeps that took longer than the interval (the next one started when it ended)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.0.overruns.load(Ordering::Relaxed)).encode(enc)?;
        let mut family = encoder.encode_descriptor(
            "sweep_containers",
            "Containers the sweep inspected, or whose kept details it reused as unchanged",
            None,
            MetricType::Counter,
        )?;
        for (how, value) in [("inspected", &self.0.inspected), ("reused", &self.0.reused)] {
            ConstCounter::new(value.load(Ordering::Relaxed))
                .encode(family.encode_family(&[("how", how)])?)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct StatsCollector(Arc<StatsCounters>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "stats_samples",
            "Container CPU and memory samples, by source: the host's cgroup files or the \
             engine's stats API (for containers whose cgroup files cannot be read)",
            None,
            MetricType::Counter,
        )?;
        for (source, value) in [("cgroup", &self.0.cgroup), ("engine", &self.0.engine)] {
            ConstCounter::new(value.load(Ordering::Relaxed))
                .encode(family.encode_family(&[("source", source)])?)?;
        }
        let enc = encoder.encode_descriptor(
            "stats_round_seconds",
            "Wall time of the stats task's last round",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.last_round_ms.load(Ordering::Relaxed) as f64 / 1000.0)
            .encode(enc)?;
        Ok(())
    }
}

/// Reads the notifier's counters at scrape time, so delivery code stays free of metrics types.
#[derive(Debug)]
struct NotifyCollector(Notifier);

impl Collector for NotifyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let mut family = encoder.encode_descriptor(
            "notifications",
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
            "notify_intake_dropped",
            "Notices dropped because the intake queue was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.dropped.load(Ordering::Relaxed)).encode(enc)?;
        let mut family = encoder.encode_descriptor(
            "notify_queue_depth",
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
        m.request("queued");
        let stats = Arc::new(RequestStats::default());
        stats.sent.fetch_add(1, Ordering::Relaxed);
        m.attach_requests(stats);
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
        for series in [
            "vigil_watchdog_requests_published_total{outcome=\"queued\"} 1",
            "vigil_watchdog_requests_published_total{outcome=\"published\"} 1",
            "vigil_watchdog_requests_published_total{outcome=\"failed\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }

    #[tokio::test]
    async fn notifier_counters_carry_the_prefix_once() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let (notifier, task) = Notifier::start(
            &crate::config::NotifyConfig::default(),
            "host".into(),
            cancel.clone(),
        );
        let text = Metrics::new(Some(notifier)).render();
        cancel.cancel();
        let _ = task.await;
        assert!(
            text.contains("vigil_watchdog_notifications_total{sink=\"log\",outcome=\"sent\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("vigil_watchdog_notify_queue_depth{queue=\"intake\"} 0"),
            "{text}"
        );
        assert!(!text.contains("vigil_watchdog_vigil_watchdog"), "{text}");
    }
}
