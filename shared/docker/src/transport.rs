//! One pooled HTTP/1 client to the engine, over a unix socket or TCP.
//!
//! Read-only by construction: requests carry an `Empty<Bytes>` body (the client type cannot
//! send any other), and the only public ways to send one are [`Transport::get`] and
//! [`Transport::head`]. The method is a private two-valued enum; no function of this module
//! takes an `http::Method`, so no code outside it can name POST, PUT or DELETE through it.
//!
//! The client is built once and cloned (the pool is shared), so a sweep of hundreds of
//! requests reuses keep-alive connections.

use crate::error::DockerError;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use std::str::FromStr;
use std::time::Duration;

/// The port of `tcp://host` without one (the engine's plain-HTTP default).
const DEFAULT_TCP_PORT: u16 = 2375;
/// Longest unix socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
const USER_AGENT: &str = concat!("vigil/", env!("CARGO_PKG_VERSION"));
/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The two methods this crate can send.
#[derive(Debug, Clone, Copy)]
enum ReadOnlyMethod {
    Get,
    Head,
}

impl ReadOnlyMethod {
    fn as_http(self) -> http::Method {
        match self {
            ReadOnlyMethod::Get => http::Method::GET,
            ReadOnlyMethod::Head => http::Method::HEAD,
        }
    }
}

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineHost {
    Unix(String),
    Tcp(Authority),
}

/// [`EngineHost::parse`] as a configuration validator (for `ConfigReader::get_checked`): every
/// program that takes a Docker address accepts exactly what this client reads,
/// `unix:///absolute/path` or `tcp://host[:port]`.
pub fn docker_host(s: &str) -> Result<(), String> {
    EngineHost::parse(s).map(drop).map_err(|e| e.to_string())
}

impl EngineHost {
    /// Parses `unix:///path/to/docker.sock` or `tcp://host[:port]`; anything else is
    /// [`DockerError::InvalidHost`] (TLS is not supported: use the unix socket or a gate).
    pub fn parse(host: &str) -> Result<EngineHost, DockerError> {
        let invalid =
            |why: &str| DockerError::InvalidHost(format!("{}: {why}", truncate(host, 120)));
        if let Some(path) = host.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid("the socket path must be absolute (unix:///path)"));
            }
            if path.len() > MAX_SOCKET_PATH || path.contains('\0') {
                return Err(invalid("not a usable socket path"));
            }
            return Ok(EngineHost::Unix(path.to_string()));
        }
        if let Some(rest) = host.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
                return Err(invalid("expected tcp://host:port"));
            }
            let authority =
                Authority::from_str(rest).map_err(|_| invalid("expected tcp://host:port"))?;
            if authority.host().is_empty() {
                return Err(invalid("expected tcp://host:port"));
            }
            let authority = match authority.port_u16() {
                Some(_) => authority,
                None => Authority::from_str(&format!("{rest}:{DEFAULT_TCP_PORT}"))
                    .map_err(|_| invalid("expected tcp://host:port"))?,
            };
            return Ok(EngineHost::Tcp(authority));
        }
        Err(invalid("expected unix:///path or tcp://host:port"))
    }
}

#[derive(Clone)]
enum Inner {
    Unix {
        client: Client<UnixConnector, Empty<Bytes>>,
        /// hyperlocal's form: the socket path hex-encoded as the host.
        authority: Authority,
    },
    Tcp {
        client: Client<HttpConnector, Empty<Bytes>>,
        authority: Authority,
    },
}

/// A cheap-to-clone, pooled, GET/HEAD-only HTTP client to one engine.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, authority) = match &self.inner {
            Inner::Unix { authority, .. } => ("unix", authority),
            Inner::Tcp { authority, .. } => ("tcp", authority),
        };
        f.debug_struct("Transport")
            .field("kind", &kind)
            .field("authority", authority)
            .finish()
    }
}

impl Transport {
    /// Builds the client for `host` (see [`EngineHost::parse`]). `connect_timeout` bounds a TCP
    /// connect; callers bound whole requests themselves.
    pub fn new(host: &str, connect_timeout: Duration) -> Result<Transport, DockerError> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let inner = match EngineHost::parse(host)? {
            EngineHost::Unix(path) => {
                let authority = Authority::from_str(&format!("{}:0", hex::encode(path)))
                    .map_err(|e| DockerError::InvalidHost(e.to_string()))?;
                Inner::Unix {
                    client: builder.build(UnixConnector),
                    authority,
                }
            }
            EngineHost::Tcp(authority) => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(connect_timeout));
                Inner::Tcp {
                    client: builder.build(connector),
                    authority,
                }
            }
        };
        Ok(Transport { inner })
    }

    /// Sends `GET path_and_query` (which must start with `/`).
    pub async fn get(&self, path_and_query: &str) -> Result<Response<Incoming>, DockerError> {
        self.send(ReadOnlyMethod::Get, path_and_query).await
    }

    /// Sends `HEAD path_and_query` (which must start with `/`).
    pub async fn head(&self, path_and_query: &str) -> Result<Response<Incoming>, DockerError> {
        self.send(ReadOnlyMethod::Head, path_and_query).await
    }

    async fn send(
        &self,
        method: ReadOnlyMethod,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, DockerError> {
        if !path_and_query.starts_with('/') {
            return Err(DockerError::InvalidRequest(format!(
                "path must start with '/': {}",
                truncate(path_and_query, 120)
            )));
        }
        let (scheme, authority) = match &self.inner {
            Inner::Unix { authority, .. } => (
                Scheme::from_str("unix").map_err(|e| DockerError::InvalidRequest(e.to_string()))?,
                authority.clone(),
            ),
            Inner::Tcp { authority, .. } => (Scheme::HTTP, authority.clone()),
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| DockerError::InvalidRequest(e.to_string()))?;
        let request = Request::builder()
            .method(method.as_http())
            .uri(uri)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| DockerError::InvalidRequest(e.to_string()))?;
        let sent = match &self.inner {
            Inner::Unix { client, .. } => client.request(request).await,
            Inner::Tcp { client, .. } => client.request(request).await,
        };
        sent.map_err(|e| DockerError::Connect(error_chain(&e)))
    }
}

/// An error and its sources on one line (hyper's top-level messages alone say little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
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

    #[test]
    fn docker_hosts_are_what_the_client_reads() {
        for good in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://gate",
        ] {
            assert!(docker_host(good).is_ok(), "{good}");
        }
        for bad in ["http://localhost:2375", "unix://relative", "tcp://", ""] {
            assert!(docker_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            EngineHost::parse("unix:///var/run/docker.sock").unwrap(),
            EngineHost::Unix("/var/run/docker.sock".into())
        );
        match EngineHost::parse("tcp://127.0.0.1:2376").unwrap() {
            EngineHost::Tcp(a) => assert_eq!(a.as_str(), "127.0.0.1:2376"),
            other => panic!("{other:?}"),
        }
        match EngineHost::parse("tcp://gate/").unwrap() {
            EngineHost::Tcp(a) => assert_eq!(a.as_str(), "gate:2375"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_hosts_are_rejected() {
        for bad in [
            "",
            "/var/run/docker.sock",
            "unix://var/run/docker.sock",
            "unix://",
            "http://127.0.0.1:2375",
            "https://127.0.0.1:2376",
            "npipe:////./pipe/docker_engine",
            "ssh://user@host",
            "tcp://",
            "tcp://user@host:2375",
            "tcp://host:2375/path",
            "tcp://host:notaport",
            "tcp://:2375",
        ] {
            assert!(
                matches!(EngineHost::parse(bad), Err(DockerError::InvalidHost(_))),
                "accepted {bad:?}"
            );
        }
        let long = format!("unix:///{}", "a".repeat(200));
        assert!(EngineHost::parse(&long).is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[tokio::test]
    async fn paths_must_be_absolute() {
        let t = Transport::new("unix:///nonexistent/vigil.sock", Duration::from_secs(1)).unwrap();
        assert!(matches!(
            t.get("version").await,
            Err(DockerError::InvalidRequest(_))
        ));
        assert!(matches!(
            t.get("/version").await,
            Err(DockerError::Connect(_))
        ));
    }
}
