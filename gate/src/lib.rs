//! The read-only gate (docs/architecture.md): the only way the watchdog sees the Docker engine in
//! a deployment.
//!
//! # Layout
//! - this file: [`classify`] (the pure allowlist), [`redact_env`], [`GateConfig`] and
//!   [`BoundGate`] (listening sockets, the accept loop, forwarding with the shared transport);
//! - [`projection`]: the fields of list and inspect answers and of events that pass;
//! - [`config`]: the settings (optional TOML file plus `GATE_*` environment) as a [`GateConfig`];
//! - `main.rs`: the `vigil-gate` binary (`serve`, `check-config`, and `probe` for healthchecks).
//!
//! It serves HTTP/1 on a unix socket (a shared volume) and/or TCP (an internal network) and
//! forwards an allowlist of GET requests to the engine:
//!
//! - [`classify`] is pure: method first (anything but GET and HEAD is 405), then the path, matched
//!   only after each segment is percent-decoded and the whole is checked for `.`/`..` segments,
//!   empty segments (double or trailing slashes), encoded slashes, bad escapes and control
//!   characters (all 403). What remains must be one of `/_ping`, `/version`, `/containers/json`,
//!   `/containers/{id}/json`, `/containers/{id}/stats`, `/events`, with an optional `/v1.NN`
//!   prefix.
//! - The forwarded request is rebuilt from the classified [`Route`] (never the raw path) plus the
//!   raw query string, and sent with the shared GET/HEAD-only [`Transport`]: no client header, no
//!   body and no upgrade ever reaches the engine.
//! - List and inspect answers are parsed, projected to the fields the watchdog reads
//!   ([`projection`]: no `Config.Env`, `Cmd`, `Args`, mounts or third-party labels) and
//!   re-serialised, under a size cap; `/events` streams through line by line, keeping only the
//!   container events and attributes the watchdog uses; stats stream through frame by frame.
//!
//! Every denial is logged with the method, the path and the rule that denied it.

pub mod config;
pub mod projection;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_docker::DockerError;
use vigil_docker::transport::Transport;

/// Default cap on a list or inspect answer the gate buffers to redact.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// Default number of connections served at once (each `/events` reader holds one).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Longest path (before decoding) the gate looks at.
const MAX_PATH: usize = 512;
/// How long the engine may take to send response headers.
const UPSTREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send its request headers.
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const ENGINE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Response headers copied from the engine; everything else is dropped.
const FORWARDED_HEADERS: [&str; 6] = [
    "content-type",
    "api-version",
    "docker-experimental",
    "ostype",
    "server",
    "cache-control",
];

/// Errors of the gate's set-up and serving.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("invalid listen address {0:?} (expected unix:///path or tcp://ip:port)")]
    InvalidListen(String),
    #[error("no listen address configured")]
    NoListener,
    #[error("invalid Docker host: {0}")]
    Engine(#[from] DockerError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
}

/// What an allowed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    ContainerList,
    ContainerInspect { id: String },
    ContainerStats { id: String },
    Events,
}

/// An allowed request: the endpoint and the API version prefix it used (`"1.41"`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub version: Option<String>,
    pub endpoint: Endpoint,
}

impl Route {
    /// The canonical path forwarded to the engine, built from the route alone.
    pub fn upstream_path(&self) -> String {
        let prefix = match &self.version {
            Some(v) => format!("/v{v}"),
            None => String::new(),
        };
        let rest = match &self.endpoint {
            Endpoint::Ping => "/_ping".to_string(),
            Endpoint::Version => "/version".to_string(),
            Endpoint::ContainerList => "/containers/json".to_string(),
            Endpoint::ContainerInspect { id } => format!("/containers/{id}/json"),
            Endpoint::ContainerStats { id } => format!("/containers/{id}/stats"),
            Endpoint::Events => "/events".to_string(),
        };
        format!("{prefix}{rest}")
    }

    /// Whether the answer carries container config and must be redacted (so it is buffered).
    pub fn needs_redaction(&self) -> bool {
        matches!(
            self.endpoint,
            Endpoint::ContainerList | Endpoint::ContainerInspect { .. }
        )
    }

    /// The metric/log name of the endpoint.
    pub fn name(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Ping => "ping",
            Endpoint::Version => "version",
            Endpoint::ContainerList => "container_list",
            Endpoint::ContainerInspect { .. } => "container_inspect",
            Endpoint::ContainerStats { .. } => "container_stats",
            Endpoint::Events => "events",
        }
    }
}

/// Why a request was refused: the status (403 or 405) and the rule that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateDenial {
    pub status: StatusCode,
    pub rule: DenyRule,
}

/// The rules a request can break, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyRule {
    /// Any method but GET and HEAD (405).
    Method,
    /// Not an absolute path, or longer than the gate looks at.
    MalformedPath,
    /// A `%` not followed by two hex digits, or an escape decoding to invalid UTF-8.
    BadEscape,
    /// A segment that decodes to something holding `/` or `\`.
    EncodedSlash,
    /// A `.` or `..` segment, raw or encoded.
    DotSegment,
    /// An empty segment: a double or trailing slash.
    EmptySegment,
    /// A control character, `%` left after decoding (double encoding), or another character
    /// that has no business in an Engine API path.
    BadCharacter,
    /// A container id or name that is not `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    BadContainerId,
    /// A well-formed path that is not on the allowlist.
    NotAllowlisted,
}

impl DenyRule {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyRule::Method => "method",
            DenyRule::MalformedPath => "malformed_path",
            DenyRule::BadEscape => "bad_escape",
            DenyRule::EncodedSlash => "encoded_slash",
            DenyRule::DotSegment => "dot_segment",
            DenyRule::EmptySegment => "empty_segment",
            DenyRule::BadCharacter => "bad_character",
            DenyRule::BadContainerId => "bad_container_id",
            DenyRule::NotAllowlisted => "not_allowlisted",
        }
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GateDenial {
    fn forbidden(rule: DenyRule) -> GateDenial {
        GateDenial {
            status: StatusCode::FORBIDDEN,
            rule,
        }
    }
}

/// Decides whether `method raw_path` (the path exactly as received, without the query) may pass.
/// Pure: no I/O, no clock.
pub fn classify(method: &Method, raw_path: &str) -> Result<Route, GateDenial> {
    if method != Method::GET && method != Method::HEAD {
        return Err(GateDenial {
            status: StatusCode::METHOD_NOT_ALLOWED,
            rule: DenyRule::Method,
        });
    }
    let deny = GateDenial::forbidden;
    if raw_path.len() > MAX_PATH {
        return Err(deny(DenyRule::MalformedPath));
    }
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(deny(DenyRule::MalformedPath));
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let decoded = percent_decode(raw).ok_or(deny(DenyRule::BadEscape))?;
        if decoded.contains(['/', '\\']) {
            return Err(deny(DenyRule::EncodedSlash));
        }
        if decoded == "." || decoded == ".." {
            return Err(deny(DenyRule::DotSegment));
        }
        if decoded.is_empty() {
            return Err(deny(DenyRule::EmptySegment));
        }
        if decoded
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '%')
        {
            return Err(deny(DenyRule::BadCharacter));
        }
        segments.push(decoded);
    }
    let (version, rest) = match segments.split_first() {
        Some((first, rest)) if api_version(first).is_some() => {
            (api_version(first).map(str::to_string), rest)
        }
        _ => (None, segments.as_slice()),
    };
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let endpoint = match parts.as_slice() {
        ["_ping"] => Endpoint::Ping,
        ["version"] => Endpoint::Version,
        ["containers", "json"] => Endpoint::ContainerList,
        ["events"] => Endpoint::Events,
        ["containers", id, "json"] => Endpoint::ContainerInspect {
            id: container_id(id)?,
        },
        ["containers", id, "stats"] => Endpoint::ContainerStats {
            id: container_id(id)?,
        },
        _ => return Err(deny(DenyRule::NotAllowlisted)),
    };
    Ok(Route { version, endpoint })
}

/// `v1.41` -> `1.41`: the engine's own rule is `v[0-9.]+`; this takes digits with at most one dot.
fn api_version(segment: &str) -> Option<&str> {
    let v = segment.strip_prefix('v')?;
    let (major, minor) = match v.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (v, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if digits(major) && minor.is_none_or(digits) {
        Some(v)
    } else {
        None
    }
}

/// A container id or name as the Docker client accepts one (the shared rule).
fn container_id(id: &str) -> Result<String, GateDenial> {
    vigil_docker::client::validate_id(id)
        .map(str::to_string)
        .map_err(|_| GateDenial::forbidden(DenyRule::BadContainerId))
}

/// Strict percent-decoding: `None` on a malformed escape or on bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Removes `Config.Env` from an inspect object, or from every entry of a list. Returns how many
/// `Env` fields were removed.
pub fn redact_env(value: &mut serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => items.iter_mut().map(redact_env).sum(),
        serde_json::Value::Object(object) => {
            let removed = object
                .get_mut("Config")
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|config| config.remove("Env"));
            usize::from(removed.is_some())
        }
        _ => 0,
    }
}

/// Where the gate listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// Parses `unix:///absolute/path` or `tcp://ip:port`.
    pub fn parse(s: &str) -> Result<ListenAddr, GateError> {
        let invalid = || GateError::InvalidListen(s.to_string());
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() > 107 || path.contains('\0') {
                return Err(invalid());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            return addr.parse().map(ListenAddr::Tcp).map_err(|_| invalid());
        }
        Err(invalid())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// Everything the gate needs to run.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The engine (`unix:///var/run/docker.sock` or `tcp://host:port`).
    pub docker_host: String,
    pub listen: Vec<ListenAddr>,
    /// Permission bits of a unix listening socket (the watchdog reaches it through its group).
    pub socket_mode: u32,
    pub max_body: usize,
    pub max_connections: usize,
}

impl GateConfig {
    pub fn new(docker_host: &str, listen: Vec<ListenAddr>) -> GateConfig {
        GateConfig {
            docker_host: docker_host.to_string(),
            listen,
            socket_mode: 0o660,
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

/// A gate whose listeners are bound; [`BoundGate::run`] serves until cancelled.
pub struct BoundGate {
    listeners: Vec<Listener>,
    state: Arc<GateState>,
}

struct GateState {
    engine: Transport,
    max_body: usize,
    connections: Arc<Semaphore>,
}

type GateBody = BoxBody<Bytes, hyper::Error>;

impl BoundGate {
    /// Binds every listener (replacing a stale unix socket file, never any other file).
    pub async fn bind(config: &GateConfig) -> Result<BoundGate, GateError> {
        if config.listen.is_empty() {
            return Err(GateError::NoListener);
        }
        let engine = Transport::new(&config.docker_host, ENGINE_CONNECT_TIMEOUT)?;
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let bind_err = |error| GateError::Bind {
                addr: addr.to_string(),
                error,
            };
            match addr {
                ListenAddr::Unix(path) => {
                    remove_stale_socket(path)?;
                    let listener = UnixListener::bind(path).map_err(bind_err)?;
                    std::fs::set_permissions(
                        path,
                        std::fs::Permissions::from_mode(config.socket_mode),
                    )
                    .map_err(bind_err)?;
                    listeners.push(Listener::Unix(listener, path.clone()));
                }
                ListenAddr::Tcp(sock) => {
                    let listener = TcpListener::bind(sock).await.map_err(bind_err)?;
                    listeners.push(Listener::Tcp(listener));
                }
            }
        }
        Ok(BoundGate {
            listeners,
            state: Arc::new(GateState {
                engine,
                max_body: config.max_body,
                connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            }),
        })
    }

    /// Serves until `shutdown` is cancelled; open connections (event streams) are dropped then.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let state = self.state.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(accept_loop(listener, state, shutdown));
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), GateError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|error| GateError::Bind {
                addr: format!("unix://{}", path.display()),
                error,
            })
        }
        Ok(_) => Err(GateError::NotASocket {
            path: path.to_path_buf(),
        }),
        Err(_) => Ok(()),
    }
}

async fn accept_loop(listener: Listener, state: Arc<GateState>, shutdown: CancellationToken) {
    let addr = match &listener {
        Listener::Unix(_, path) => format!("unix://{}", path.display()),
        Listener::Tcp(t) => t
            .local_addr()
            .map(|a| format!("tcp://{a}"))
            .unwrap_or_default(),
    };
    tracing::info!(gate.listen = %addr, "Gate listening.");
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = state.connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(gate.listen = %addr, error = %e, "Gate accept failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CLIENT_HEADER_TIMEOUT)
                .serve_connection(io, service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "Gate connection ended with an error.");
                    }
                }
            }
        });
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

enum Conn {
    Unix(TokioIo<tokio::net::UnixStream>),
    Tcp(TokioIo<tokio::net::TcpStream>),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(TokioIo::new(s))),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(TokioIo::new(s))),
    }
}

// One connection type for both listeners, so one `serve_connection` call serves either.
impl hyper::rt::Read for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

async fn handle(state: &GateState, req: Request<Incoming>) -> Response<GateBody> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let route = match classify(&method, &raw_path) {
        Ok(route) => route,
        Err(denial) => {
            tracing::warn!(
                http.method = %method,
                http.path = %truncate(&raw_path, 200),
                gate.rule = %denial.rule,
                http.status = denial.status.as_u16(),
                "Gate denied a request."
            );
            return deny_response(denial);
        }
    };
    let mut upstream = route.upstream_path();
    if let Some(query) = req.uri().query() {
        upstream.push('?');
        upstream.push_str(query);
    }
    tracing::debug!(http.method = %method, gate.endpoint = route.name(), "Gate forwarding.");
    let sent = if method == Method::HEAD {
        tokio::time::timeout(UPSTREAM_HEADER_TIMEOUT, state.engine.head(&upstream)).await
    } else {
        tokio::time::timeout(UPSTREAM_HEADER_TIMEOUT, state.engine.get(&upstream)).await
    };
    let answer = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!(gate.endpoint = route.name(), error = %e, "Gate cannot reach the engine.");
            return error_response(StatusCode::BAD_GATEWAY, "the Docker engine is unreachable");
        }
        Err(_) => {
            tracing::warn!(
                gate.endpoint = route.name(),
                "The engine did not answer the gate in time."
            );
            return error_response(StatusCode::GATEWAY_TIMEOUT, "the Docker engine timed out");
        }
    };
    let (parts, body) = answer.into_parts();
    let mut builder = Response::builder().status(parts.status);
    for name in FORWARDED_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            builder = builder.header(name, value);
        }
    }
    if matches!(route.endpoint, Endpoint::Events) && method != Method::HEAD {
        // Only the container events the watchdog uses, with only their attributes.
        let mut filter = projection::EventFilter::default();
        let body = body.map_frame(move |frame| match frame.into_data() {
            Ok(data) => hyper::body::Frame::data(Bytes::from(filter.push(&data))),
            Err(frame) => frame,
        });
        return builder
            .body(body.boxed())
            .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, "bad engine answer"));
    }
    if !route.needs_redaction() || method == Method::HEAD {
        // Streams (events, stats) and small answers pass through frame by frame.
        return builder
            .body(body.boxed())
            .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, "bad engine answer"));
    }
    let bytes = match Limited::new(body, state.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(gate.endpoint = route.name(), error = %e, "Engine answer too large or broken; refused.");
            return error_response(StatusCode::BAD_GATEWAY, "engine answer too large or broken");
        }
    };
    if !parts.status.is_success() {
        return builder
            .body(full(bytes))
            .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, "bad engine answer"));
    }
    let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(gate.endpoint = route.name(), error = %e, "Engine answer is not JSON; refused.");
            return error_response(StatusCode::BAD_GATEWAY, "engine answer is not JSON");
        }
    };
    let removed = redact_env(&mut value);
    // Projection, not redaction: only the fields the watchdog reads pass.
    let value = match route.endpoint {
        Endpoint::ContainerList => projection::project_list(&value),
        _ => projection::project_inspect(&value),
    };
    tracing::debug!(
        gate.endpoint = route.name(),
        gate.redacted = removed,
        "Projected an engine answer to the watchdog's allowlist."
    );
    let body = match serde_json::to_vec(&value) {
        Ok(b) => b,
        Err(_) => return error_response(StatusCode::BAD_GATEWAY, "cannot re-serialise"),
    };
    builder
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, "bad engine answer"))
}

fn full(bytes: Bytes) -> GateBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn deny_response(denial: GateDenial) -> Response<GateBody> {
    let message = match denial.status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed by the read-only gate".to_string(),
        _ => format!("forbidden by the read-only gate (rule {})", denial.rule),
    };
    let mut response = error_response(denial.status, &message);
    if denial.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

/// A JSON error in the engine's own shape (`{"message": …}`), so Docker clients show it.
fn error_response(status: StatusCode, message: &str) -> Response<GateBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(path: &str) -> Route {
        classify(&Method::GET, path).unwrap_or_else(|d| panic!("{path} denied: {d:?}"))
    }

    #[test]
    fn allowlisted_paths_pass_and_forward_canonically() {
        let cases: &[(&str, &str)] = &[
            ("/_ping", "/_ping"),
            ("/version", "/version"),
            ("/containers/json", "/containers/json"),
            ("/containers/abc123/json", "/containers/abc123/json"),
            (
                "/containers/my_app-1.web/stats",
                "/containers/my_app-1.web/stats",
            ),
            ("/events", "/events"),
            ("/v1.41/_ping", "/v1.41/_ping"),
            ("/v1.41/containers/json", "/v1.41/containers/json"),
            ("/v1.43/containers/abc/json", "/v1.43/containers/abc/json"),
            ("/v1.41/containers/abc/stats", "/v1.41/containers/abc/stats"),
            ("/v1.41/events", "/v1.41/events"),
            ("/v1/version", "/v1/version"),
            // Harmless escapes decode to the same route and are forwarded canonically.
            ("/%63ontainers/json", "/containers/json"),
            ("/containers/%61bc/json", "/containers/abc/json"),
        ];
        for (path, upstream) in cases {
            assert_eq!(allowed(path).upstream_path(), *upstream, "{path}");
            assert!(classify(&Method::HEAD, path).is_ok(), "HEAD {path}");
        }
        assert_eq!(
            allowed("/v1.41/containers/x/json"),
            Route {
                version: Some("1.41".into()),
                endpoint: Endpoint::ContainerInspect { id: "x".into() }
            }
        );
        assert!(allowed("/containers/x/json").needs_redaction());
        assert!(allowed("/containers/json").needs_redaction());
        assert!(!allowed("/events").needs_redaction());
        assert!(!allowed("/containers/x/stats").needs_redaction());
    }

    #[test]
    fn other_methods_get_405_before_the_path_is_looked_at() {
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::CONNECT,
            Method::TRACE,
        ] {
            for path in [
                "/containers/abc/restart",
                "/containers/abc",
                "/containers/json",
                "/_ping",
                "/../x",
            ] {
                let denial = classify(&method, path).expect_err("must be denied");
                assert_eq!(
                    denial.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(denial.rule, DenyRule::Method);
            }
        }
        let custom = Method::from_bytes(b"PROPFIND").expect("valid method");
        assert_eq!(
            classify(&custom, "/_ping").map_err(|d| d.status),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn everything_else_is_403_with_its_rule() {
        use DenyRule::{
            BadCharacter, BadContainerId, BadEscape, DotSegment, EmptySegment, EncodedSlash,
            MalformedPath, NotAllowlisted,
        };
        let cases: &[(&str, DenyRule)] = &[
            // Endpoints that leak files, logs or stdin, or write.
            ("/containers/abc/archive", NotAllowlisted),
            ("/v1.41/containers/abc/archive", NotAllowlisted),
            ("/containers/abc/export", NotAllowlisted),
            ("/containers/abc/logs", NotAllowlisted),
            ("/containers/abc/attach/ws", NotAllowlisted),
            ("/containers/abc/attach", NotAllowlisted),
            ("/containers/abc/top", NotAllowlisted),
            ("/containers/abc/changes", NotAllowlisted),
            ("/images/busybox/get", NotAllowlisted),
            ("/images/get", NotAllowlisted),
            ("/images/json", NotAllowlisted),
            ("/exec/abc/json", NotAllowlisted),
            ("/exec/abc/start", NotAllowlisted),
            ("/containers/abc/exec", NotAllowlisted),
            ("/secrets", NotAllowlisted),
            ("/configs", NotAllowlisted),
            ("/info", NotAllowlisted),
            ("/system/df", NotAllowlisted),
            ("/volumes", NotAllowlisted),
            ("/networks", NotAllowlisted),
            ("/plugins", NotAllowlisted),
            ("/session", NotAllowlisted),
            ("/swarm", NotAllowlisted),
            ("/build", NotAllowlisted),
            ("/", EmptySegment),
            ("", MalformedPath),
            ("*", MalformedPath),
            ("containers/json", MalformedPath),
            ("/containers", NotAllowlisted),
            ("/containers/abc", NotAllowlisted),
            ("/containers/abc/json/extra", NotAllowlisted),
            ("/Containers/json", NotAllowlisted),
            ("/_PING", NotAllowlisted),
            ("/v1.41", NotAllowlisted),
            ("/v1.41/v1.41/_ping", NotAllowlisted),
            ("/vx/_ping", NotAllowlisted),
            ("/v1.41.2/_ping", NotAllowlisted),
            ("/v/_ping", NotAllowlisted),
            // Traversal, raw and encoded.
            ("/containers/x/../../images/json", DotSegment),
            ("/containers/../images/busybox/get", DotSegment),
            ("/../containers/json", DotSegment),
            ("/./_ping", DotSegment),
            ("/containers/./json", DotSegment),
            ("/containers/%2e%2e/images/json", DotSegment),
            ("/containers/%2E%2E/images/json", DotSegment),
            ("/containers/.%2e/images/json", DotSegment),
            ("/containers/%2e/json", DotSegment),
            ("/containers/x%2F..%2F..%2Fimages/json", EncodedSlash),
            ("/containers/x%2f..%2f..%2fimages/json", EncodedSlash),
            ("/containers/x%2Farchive/json", EncodedSlash),
            ("/containers/%2Fabc/json", EncodedSlash),
            ("/containers/x%5C..%5Carchive/json", EncodedSlash),
            ("/containers/x\\..\\archive/json", EncodedSlash),
            // Double encoding never decodes twice.
            ("/containers/x%252F..%252Farchive/json", BadCharacter),
            ("/containers/%252e%252e/json", BadCharacter),
            // Malformed escapes and bytes that are not UTF-8.
            ("/containers/x%2/json", BadEscape),
            ("/containers/x%zz/json", BadEscape),
            ("/containers/x%/json", BadEscape),
            ("/containers/%ff/json", BadEscape),
            // Empty segments: double and trailing slashes.
            ("//containers/json", EmptySegment),
            ("/containers//json", EmptySegment),
            ("/containers/json/", EmptySegment),
            ("/_ping/", EmptySegment),
            ("/v1.41//_ping", EmptySegment),
            ("/containers/abc/json//", EmptySegment),
            // Control characters and bad ids.
            ("/containers/a%00b/json", BadCharacter),
            ("/containers/a%0ab/json", BadCharacter),
            ("/containers/a%20b/json", BadCharacter),
            ("/containers/-abc/json", BadContainerId),
            ("/containers/_abc/stats", BadContainerId),
            ("/containers/a:b/json", BadContainerId),
            ("/containers/a;b/json", BadContainerId),
        ];
        for (path, rule) in cases {
            match classify(&Method::GET, path) {
                Ok(route) => panic!("{path:?} was allowed as {route:?}"),
                Err(denial) => {
                    assert_eq!(denial.status, StatusCode::FORBIDDEN, "{path:?}");
                    assert_eq!(denial.rule, *rule, "{path:?}");
                }
            }
        }
        let long = format!("/containers/{}/json", "a".repeat(600));
        assert_eq!(
            classify(&Method::GET, &long).map_err(|d| d.rule),
            Err(MalformedPath)
        );
        let long_id = format!("/containers/{}/json", "a".repeat(300));
        assert_eq!(
            classify(&Method::GET, &long_id).map_err(|d| d.rule),
            Err(BadContainerId)
        );
    }

    #[test]
    fn env_is_removed_from_inspect_and_list_answers() {
        let mut inspect = serde_json::json!({
            "Id": "abc",
            "Config": {"Env": ["SECRET=x"], "Image": "busybox", "Labels": {"a": "b"}},
            "State": {"Status": "running"}
        });
        assert_eq!(redact_env(&mut inspect), 1);
        assert!(inspect["Config"].get("Env").is_none());
        assert_eq!(inspect["Config"]["Image"], "busybox");
        assert_eq!(inspect["State"]["Status"], "running");

        let mut list = serde_json::json!([
            {"Id": "a", "Names": ["/a"]},
            {"Id": "b", "Config": {"Env": ["TOKEN=y"]}},
            {"Id": "c", "Config": null},
            7
        ]);
        assert_eq!(redact_env(&mut list), 1);
        assert!(!list.to_string().contains("TOKEN"));
        assert_eq!(list[0]["Id"], "a");

        let mut no_config = serde_json::json!({"Id": "z"});
        assert_eq!(redact_env(&mut no_config), 0);
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            ListenAddr::parse("unix:///run/vigil-gate/docker.sock").unwrap(),
            ListenAddr::Unix(PathBuf::from("/run/vigil-gate/docker.sock"))
        );
        assert_eq!(
            ListenAddr::parse("tcp://0.0.0.0:2375").unwrap(),
            ListenAddr::Tcp("0.0.0.0:2375".parse().unwrap())
        );
        for bad in [
            "",
            "/run/x.sock",
            "unix://relative",
            "tcp://host:2375",
            "http://1.2.3.4:1",
        ] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
