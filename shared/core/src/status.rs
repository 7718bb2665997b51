//! The small HTTP endpoint both daemons serve for people and orchestrators: `GET /healthz`
//! (JSON) and `GET /metrics` (OpenMetrics text). Any other method gets 405, any other path 404.
//!
//! Each program supplies the page bodies through [`StatusPages`]; this module owns only the
//! listener and the routing, so the two daemons answer the same way.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// OpenMetrics content type for `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The bodies a daemon serves. Called per request; keep them cheap and non-blocking.
pub trait StatusPages: Send + Sync + 'static {
    /// The `/healthz` JSON document.
    fn healthz(&self) -> String;
    /// Whether `/healthz` answers 200 (else 503, with the same document).
    fn healthy(&self) -> bool {
        true
    }
    /// The `/metrics` text, or `None` when this daemon serves no metrics (404).
    fn metrics(&self) -> Option<String>;
    /// Any further page this daemon serves (and its access rule), asked first for every
    /// request; `None` falls through to `/healthz`, `/metrics`, 404 and 405.
    fn respond(
        &self,
        _method: &Method,
        _uri: &http::Uri,
        _headers: &http::HeaderMap,
    ) -> Option<Response<Full<Bytes>>> {
        None
    }
}

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
    pages: Arc<dyn StatusPages>,
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
                        tracing::warn!(error = %e, "Accept failed on the status endpoint.");
                        continue;
                    }
                },
            };
            let pages = pages.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let resp = pages
                        .respond(req.method(), req.uri(), req.headers())
                        .unwrap_or_else(|| route(req.method(), req.uri().path(), pages.as_ref()));
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "Status endpoint connection ended with an error.");
                }
            });
        }
    });
    Ok((bound, handle))
}

fn route(method: &Method, path: &str, pages: &dyn StatusPages) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
            "text/plain",
        );
    }
    match path {
        "/healthz" => {
            let status = if pages.healthy() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, pages.healthz(), "application/json")
        }
        "/metrics" => match pages.metrics() {
            Some(text) => reply(StatusCode::OK, text, OPENMETRICS),
            None => reply(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        },
        _ => reply(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

fn reply(status: StatusCode, body: String, content_type: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pages(Option<&'static str>);

    impl StatusPages for Pages {
        fn healthz(&self) -> String {
            "{\"status\":\"ok\"}".into()
        }
        fn metrics(&self) -> Option<String> {
            self.0.map(str::to_string)
        }
    }

    #[test]
    fn routes_methods_and_paths() {
        let with = Pages(Some("# EOF\n"));
        assert_eq!(
            route(&Method::GET, "/healthz", &with).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&Method::HEAD, "/metrics", &with).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&Method::POST, "/healthz", &with).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&Method::GET, "/x", &with).status(),
            StatusCode::NOT_FOUND
        );
        let without = Pages(None);
        assert_eq!(
            route(&Method::GET, "/metrics", &without).status(),
            StatusCode::NOT_FOUND
        );
        let resp = route(&Method::GET, "/metrics", &with);
        assert_eq!(resp.headers()[http::header::CONTENT_TYPE], OPENMETRICS);
    }
}
