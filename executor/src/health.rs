//! The executor's liveness facts: written by the consumer and the heartbeat, read by `/healthz`
//! ([`crate::serve`]) and by the metrics ([`crate::metrics`]).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vigil_shared::time::Timestamp;

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
