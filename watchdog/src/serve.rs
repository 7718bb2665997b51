//! The watchdog's HTTP endpoint on `WATCHDOG_LISTEN`: `GET /healthz` (and `/metrics`).
//!
//! It answers even when the watchdog is disabled by the kill switch, so container health checks
//! and restart policies see a live process that does nothing.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` and serves until `cancel`. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Option<MetricsRender>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let handle = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accept failed on the health endpoint.");
                        continue;
                    }
                },
            };
            let health = health.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let resp = route(&req, &health, metrics.as_ref());
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "Health endpoint connection ended with an error.");
                }
            });
        }
    });
    Ok((bound, handle))
}

fn route(
    req: &Request<Incoming>,
    health: &Health,
    metrics: Option<&MetricsRender>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
            "text/plain",
        );
    }
    match (req.uri().path(), metrics) {
        ("/healthz", _) => text(StatusCode::OK, &health.body(), "application/json"),
        ("/metrics", Some(render)) => text(
            StatusCode::OK,
            &render(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}

fn text(status: StatusCode, body: &str, content_type: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}
