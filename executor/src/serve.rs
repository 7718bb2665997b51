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
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vigil_shared::status::{self, StatusPages};
use vigil_shared::time::Timestamp;

pub use crate::health::{Health, HealthProblem};
pub use vigil_shared::status::ServeError;

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
    use crate::health::CONSUMER_STALL_AFTER;

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
