//! The executor's HTTP endpoint on `EXECUTOR_LISTEN`: `GET /healthz` (JSON: enabled, paused,
//! dry_run, redis_ok, the audit head `seq` and `hash`) and `GET /metrics` (OpenMetrics text, see
//! [`crate::metrics`]).
//!
//! It answers 200 whatever the switches say, so a container health check sees a live process
//! even when the executor is disabled or paused. It answers 503 for two reasons, each listed in
//! `"problems"` (the first also names `"status"`): `cannot_audit`, with the reason in
//! `"audit"."problem"`, while the audit log cannot be written (the executor then acts on
//! nothing); and `consumer_stalled` while the request consumer makes no progress (see
//! `"consumer_idle_ms"`).

use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use vigil_shared::status::{self, StatusPages};
use vigil_shared::time::Timestamp;

pub use vigil_shared::status::ServeError;

/// Liveness facts; written by the consumer and the heartbeat, read by `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    pub enabled: AtomicBool,
    pub dry_run: AtomicBool,
    /// Whether the pause key was set at the last heartbeat.
    pub paused: AtomicBool,
    pub redis_ok: AtomicBool,
    audit_seq: AtomicU64,
    audit_hash: Mutex<String>,
    /// Why the audit log cannot be written, while it cannot.
    audit_problem: Mutex<Option<String>>,
    /// Unix ms of the process start and of the last heartbeat that reached Redis (0: none yet).
    started_ms: AtomicI64,
    last_heartbeat_ms: AtomicI64,
    /// Unix ms of the request consumer's last completed step (0: none yet).
    consumer_progress_ms: AtomicI64,
}

/// A reason for `/healthz` to answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthProblem {
    CannotAudit,
    ConsumerStalled,
}

impl HealthProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthProblem::CannotAudit => "cannot_audit",
            HealthProblem::ConsumerStalled => "consumer_stalled",
        }
    }
}

/// The request consumer is stalled when it has completed no step for this long (a step blocks
/// at most a second or two on an idle stream; a restart with a long stop timeout stays far
/// below this).
pub const CONSUMER_STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(180);

impl Health {
    pub fn new(enabled: bool, dry_run: bool) -> Arc<Health> {
        let h = Health::default();
        h.enabled.store(enabled, Ordering::Relaxed);
        h.dry_run.store(dry_run, Ordering::Relaxed);
        h.started_ms
            .store(Timestamp::now().as_millis(), Ordering::Relaxed);
        Arc::new(h)
    }

    /// A heartbeat reached Redis at `at`.
    pub fn heartbeat_ok(&self, at: Timestamp) {
        self.last_heartbeat_ms
            .store(at.as_millis(), Ordering::Relaxed);
    }

    /// Time from the last heartbeat that reached Redis (or from start-up, before the first) to
    /// `now`.
    pub fn heartbeat_age(&self, now: Timestamp) -> std::time::Duration {
        let last = match self.last_heartbeat_ms.load(Ordering::Relaxed) {
            0 => self.started_ms.load(Ordering::Relaxed),
            ms => ms,
        };
        now.since(Timestamp(last))
    }

    /// The consumer completed a step (read, handled and acknowledged a batch, or found none).
    pub fn consumer_progress(&self, at: Timestamp) {
        self.consumer_progress_ms
            .store(at.as_millis(), Ordering::Relaxed);
    }

    /// Time from the consumer's last completed step (or from start-up, before the first).
    pub fn consumer_idle(&self, now: Timestamp) -> std::time::Duration {
        let last = match self.consumer_progress_ms.load(Ordering::Relaxed) {
            0 => self.started_ms.load(Ordering::Relaxed),
            ms => ms,
        };
        now.since(Timestamp(last))
    }

    /// Whether the request consumer has stopped making progress (see [`CONSUMER_STALL_AFTER`]).
    pub fn consumer_stalled(&self, now: Timestamp) -> bool {
        self.consumer_idle(now) > CONSUMER_STALL_AFTER
    }

    pub fn audit_seq(&self) -> u64 {
        self.audit_seq.load(Ordering::Relaxed)
    }

    pub fn redis_up(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed)
    }

    /// Records the audit log's head `(seq, hash)`.
    pub fn set_audit_head(&self, (seq, hash): (u64, String)) {
        self.audit_seq.store(seq, Ordering::Relaxed);
        if let Ok(mut h) = self.audit_hash.lock() {
            *h = hash;
        }
    }

    /// Sets (or clears) why the audit log cannot be written.
    pub fn set_audit_problem(&self, why: Option<String>) {
        if let Ok(mut p) = self.audit_problem.lock() {
            *p = why;
        }
    }

    /// Why the audit log cannot be written, if it cannot.
    pub fn audit_problem(&self) -> Option<String> {
        self.audit_problem.lock().ok().and_then(|p| p.clone())
    }

    /// Why `/healthz` answers 503, each reason once: `cannot_audit` (the audit log cannot be
    /// written; the executor acts on nothing) and `consumer_stalled` (the request consumer
    /// completed no step for [`CONSUMER_STALL_AFTER`]). Empty when healthy.
    pub fn problems(&self, now: Timestamp) -> Vec<HealthProblem> {
        let mut out = Vec::new();
        if self.audit_problem().is_some() {
            out.push(HealthProblem::CannotAudit);
        }
        if self.consumer_stalled(now) {
            out.push(HealthProblem::ConsumerStalled);
        }
        out
    }

    pub fn body(&self) -> String {
        let problem = self.audit_problem();
        let hash = self
            .audit_hash
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let now = Timestamp::now();
        let problems = self.problems(now);
        // The first problem names the status; every one is listed.
        let status = problems.first().map_or("ok", |p| p.as_str());
        serde_json::json!({
            "status": status,
            "problems": problems,
            "consumer_idle_ms": self.consumer_idle(now).as_millis() as u64,
            "enabled": self.enabled.load(Ordering::Relaxed),
            "paused": self.paused.load(Ordering::Relaxed),
            "dry_run": self.dry_run.load(Ordering::Relaxed),
            "redis_ok": self.redis_ok.load(Ordering::Relaxed),
            "audit": {
                "seq": self.audit_seq.load(Ordering::Relaxed),
                "head": hash,
                "problem": problem,
            },
        })
        .to_string()
    }
}

struct Pages {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl StatusPages for Pages {
    fn healthz(&self) -> String {
        self.health.body()
    }
    fn metrics(&self) -> Option<String> {
        Some(self.metrics.render())
    }
    fn healthy(&self) -> bool {
        self.health.problems(Timestamp::now()).is_empty()
    }
}

/// Binds `addr` and serves until `cancel`. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    status::serve(addr, Arc::new(Pages { health, metrics }), cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_body_reports_switches_and_head() {
        let h = Health::new(false, true);
        h.set_audit_head((7, "ab".into()));
        let v: serde_json::Value = serde_json::from_str(&h.body()).expect("json");
        assert_eq!(v["enabled"], false);
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["paused"], false);
        assert_eq!(v["audit"]["seq"], 7);
        assert_eq!(v["audit"]["head"], "ab");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["problems"], serde_json::json!([]));
    }

    #[test]
    fn both_reasons_to_be_unhealthy_show() {
        let h = Health::new(true, false);
        let now = Timestamp::now();
        h.consumer_progress(now);
        assert!(h.problems(now).is_empty());
        h.set_audit_problem(Some("disk full".into()));
        let later = Timestamp(now.as_millis() + CONSUMER_STALL_AFTER.as_millis() as i64 + 1);
        assert_eq!(
            h.problems(later),
            vec![HealthProblem::CannotAudit, HealthProblem::ConsumerStalled]
        );
        let v: serde_json::Value = serde_json::from_str(&h.body()).expect("json");
        assert_eq!(v["status"], "cannot_audit");
        assert_eq!(v["audit"]["problem"], "disk full");
        h.set_audit_problem(None);
        assert_eq!(h.problems(later), vec![HealthProblem::ConsumerStalled]);
        assert!(h.problems(now).is_empty());
    }
}
