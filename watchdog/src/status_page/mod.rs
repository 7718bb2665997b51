//! The status page: `GET /` (HTML for people, live-updating), `GET /live` (the page's live part,
//! which its script fetches every second), `GET /api/status` (the same data as versioned JSON,
//! see [`model`] and `docs/status-api.md`) and `GET /api/status.schema.json` (its JSON Schema),
//! all on the watchdog's listen address beside `/healthz` and `/metrics`.
//!
//! # Layout
//! - [`board`]: the in-memory state the engine and the reader keep current; [`history`]: the
//!   bounded per-container timeline behind the strips (and its documented memory cost).
//! - [`reader`]: the audit stream (rebuilt at start-up), heartbeat and pause key, through Redis.
//! - [`render`]: HTML from compile-time templates; [`model`]: the JSON document; [`remedy`]: what
//!   the page says about a remediation; [`time`]: how it writes an instant.
//! - [`access`]: loopback by default, a token for anything else.
//!
//! Everything here is read-only: the page has no control that changes anything, and no response
//! carries a secret (the token is checked, never echoed; the engine's health-probe output, which
//! may print anything, is never read).

pub mod access;
pub mod board;
pub mod history;
pub mod model;
pub mod reader;
pub mod remedy;
pub mod render;
pub mod time;

pub use access::Access;
pub use board::{Board, Meta};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use http_body_util::Full;
use std::sync::Arc;
use vigil_shared::time::Timestamp;

/// The documented JSON Schema of `/api/status`, served as is.
pub const SCHEMA_JSON: &str = include_str!("../../../docs/status-api.schema.json");

/// The board plus the access rule: what the HTTP server needs.
#[derive(Clone)]
pub struct Web {
    pub board: Arc<Board>,
    pub access: Access,
}

impl Web {
    /// Answers the status page's paths; None for anything else (the caller routes `/healthz`,
    /// `/metrics`, 404 and 405). With a token configured, every path but `/healthz` needs it.
    pub fn respond(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response<Full<Bytes>>> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let path = uri.path();
        if path == "/healthz" {
            return None;
        }
        let auth = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !self.access.allows(auth) {
            let mut resp = reply(
                StatusCode::UNAUTHORIZED,
                "a token is required: Authorization: Bearer <token>, or Basic with the token as \
                 password\n"
                    .into(),
                "text/plain; charset=utf-8",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Vigil status\", charset=\"UTF-8\""),
            );
            return Some(resp);
        }
        let now = Timestamp::now();
        let html = |r: Result<String, askama::Error>| match r {
            Ok(body) => reply(StatusCode::OK, body, "text/html; charset=utf-8"),
            Err(e) => {
                tracing::warn!(error = %e, "Status page could not be drawn.");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be drawn; see the watchdog's log\n".into(),
                    "text/plain; charset=utf-8",
                )
            }
        };
        match path {
            "/" | "/index.html" => Some(html(render::page(&self.board.snapshot(now)))),
            "/live" => Some(html(render::live(&self.board.snapshot(now)))),
            "/api/status" => Some(match serde_json::to_string(&self.board.snapshot(now)) {
                Ok(json) => reply(StatusCode::OK, json, "application/json"),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{e}\n"),
                    "text/plain; charset=utf-8",
                ),
            }),
            "/api/status.schema.json" => Some(reply(
                StatusCode::OK,
                SCHEMA_JSON.to_string(),
                "application/schema+json",
            )),
            _ => None,
        }
    }
}

fn reply(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(csp) = HeaderValue::from_str(&render::CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The board for this configuration (empty until the engine feeds it).
pub fn new_board(cfg: &crate::config::Config) -> Arc<Board> {
    Arc::new(Board::new(Meta {
        host: cfg.hostname.clone(),
        deployment: cfg.deployment.clone(),
        enabled: cfg.enabled,
        remediation_configured: cfg.redis.is_some(),
        started_at: Timestamp::now(),
    }))
}

#[cfg(test)]
mod tests;
