//! The watchdog's HTTP endpoint on `WATCHDOG_LISTEN`: `GET /healthz` and `/metrics`, served by
//! [`vigil_shared::status`], plus the status page ([`crate::status_page`]); this module owns the
//! watchdog's health facts.
//!
//! It answers even when the watchdog is disabled by the kill switch, so container health checks
//! and restart policies see a live process that does nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use tokio_util::sync::CancellationToken;
use vigil_shared::status::{self, StatusPages};

pub use vigil_shared::status::ServeError;

/// Liveness facts the endpoint reports; written by the engine, read by requests.
#[derive(Debug, Default)]
pub struct Health {
    pub enabled: AtomicBool,
    /// Unix ms of the engine's last loop turn (0 before the first).
    pub last_tick_ms: AtomicI64,
    pub docker_ok: AtomicBool,
}

impl Health {
    pub fn new(enabled: bool) -> Arc<Health> {
        let h = Health::default();
        h.enabled.store(enabled, Ordering::Relaxed);
        Arc::new(h)
    }

    fn body(&self) -> String {
        serde_json::json!({
            "status": "ok",
            "enabled": self.enabled.load(Ordering::Relaxed),
            "docker_ok": self.docker_ok.load(Ordering::Relaxed),
            "last_tick_ms": self.last_tick_ms.load(Ordering::Relaxed),
        })
        .to_string()
    }
}

/// Renders the metrics text; the engine supplies it so this module stays ignorant of metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

struct Pages {
    health: Arc<Health>,
    metrics: Option<MetricsRender>,
    web: Option<crate::status_page::Web>,
}

impl StatusPages for Pages {
    fn healthz(&self) -> String {
        self.health.body()
    }
    fn metrics(&self) -> Option<String> {
        self.metrics.as_ref().map(|render| render())
    }
    fn respond(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<http::Response<http_body_util::Full<bytes::Bytes>>> {
        self.web.as_ref()?.respond(method, uri, headers)
    }
}

/// Binds `addr` and serves until `cancel`. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Option<MetricsRender>,
    web: Option<crate::status_page::Web>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let pages = Pages {
        health,
        metrics,
        web,
    };
    status::serve(addr, Arc::new(pages), cancel).await
}
