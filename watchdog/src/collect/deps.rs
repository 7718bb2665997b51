//! Dependency probes: HTTP GET expecting 2xx, or a TCP connect, each under its own timeout.
//! All configured dependencies are probed concurrently once per interval; each result is an
//! [`Observation::Dependency`] whose `detail` says what went wrong in a few words
//! (`HTTP 503`, `connection refused`, `timed out after 3s`).
//!
//! HTTP goes through `ureq` on the blocking pool (http and https via rustls). Redirects are not
//! followed: a health endpoint answering 3xx is reported as such, not as its target's answer.

use super::config::{DependencyConfig, DependencyTarget};
use super::{DependencyProbe, Observation};
use std::io::Read;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("timed out after {}", short_duration(*.0))]
    TimedOut(Duration),
    #[error("connection refused")]
    Refused,
    #[error("host not found")]
    HostNotFound,
    #[error("{0}")]
    Http(String),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("probe task failed: {0}")]
    Task(String),
}

/// `300ms`, `3s`, `2m 0s`: sub-second timeouts keep their milliseconds.
fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        vigil_shared::time::human_duration(d)
    }
}

/// A response the probe read: status and (size-capped) body text.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// Blocking GET with a whole-request timeout; the body is read up to `body_limit` bytes
/// (further bytes are ignored). Non-2xx answers are returned, not turned into errors.
pub(crate) fn blocking_get(
    url: &url::Url,
    timeout: Duration,
    body_limit: u64,
) -> Result<HttpAnswer, ProbeError> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let map = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => ProbeError::TimedOut(timeout),
        ureq::Error::HostNotFound => ProbeError::HostNotFound,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ProbeError::Refused
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ProbeError::TimedOut(timeout)
        }
        other => ProbeError::Http(other.to_string()),
    };
    let mut response = agent.get(url.as_str()).call().map_err(map)?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(body_limit)
        .read_to_end(&mut bytes)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => ProbeError::TimedOut(timeout),
            _ => ProbeError::Http(format!("reading body: {e}")),
        })?;
    Ok(HttpAnswer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// [`blocking_get`] on the blocking pool, with an outer deadline in case the socket ignores
/// its own timeout.
pub(crate) async fn get(
    url: &url::Url,
    timeout: Duration,
    body_limit: u64,
) -> Result<HttpAnswer, ProbeError> {
    let owned = url.clone();
    let call = tokio::task::spawn_blocking(move || blocking_get(&owned, timeout, body_limit));
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => Err(ProbeError::TimedOut(timeout)),
        Ok(Err(join)) => Err(ProbeError::Task(join.to_string())),
        Ok(Ok(result)) => result,
    }
}

async fn tcp_connect(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => Err(ProbeError::TimedOut(timeout)),
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(ProbeError::Refused),
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
    }
}

/// Probes one dependency once.
pub async fn probe(dep: &DependencyConfig) -> DependencyProbe {
    let result = match &dep.target {
        DependencyTarget::Http(url) => match get(url, dep.timeout, 0).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                Ok(format!("HTTP {}", answer.status))
            }
            Ok(answer) => Err(ProbeError::Status(answer.status)),
            Err(e) => Err(e),
        },
        DependencyTarget::Tcp(addr) => tcp_connect(addr, dep.timeout)
            .await
            .map(|()| "connected".to_owned()),
    };
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(e) => {
            tracing::debug!(dependency.name = %dep.name, error = %e, "Dependency probe failed");
            (false, e.to_string())
        }
    };
    DependencyProbe {
        at: Timestamp::now(),
        name: dep.name.clone(),
        ok,
        detail,
    }
}

/// Probes every dependency concurrently each `interval` (first round at once) until `cancel`.
/// Returns at once when nothing is configured.
pub async fn run(
    deps: Vec<DependencyConfig>,
    interval: Duration,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    if deps.is_empty() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let results = tokio::select! {
            _ = cancel.cancelled() => return,
            r = futures_util::future::join_all(deps.iter().map(probe)) => r,
        };
        for result in results {
            if !super::emit(&tx, &cancel, Observation::Dependency(result)).await {
                return;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-route HTTP server on port 0 answering every request with `status` and `body`.
    pub(crate) async fn http_server(status: u16, body: &'static str) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn dep(target: DependencyTarget) -> DependencyConfig {
        DependencyConfig {
            name: "db".into(),
            target,
            timeout: Duration::from_secs(2),
        }
    }

    /// A port nothing listens on: bind, read the port, close.
    async fn closed_port() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn tcp_listener_is_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let p = probe(&dep(DependencyTarget::Tcp(addr.to_string()))).await;
        assert!(p.ok, "{p:?}");
        assert_eq!(p.name, "db");
    }

    #[tokio::test]
    async fn closed_tcp_port_is_down() {
        let addr = closed_port().await;
        let p = probe(&dep(DependencyTarget::Tcp(addr.to_string()))).await;
        assert!(!p.ok);
        assert_eq!(p.detail, "connection refused");
    }

    #[tokio::test]
    async fn http_2xx_is_up_and_503_is_down() {
        let ok = http_server(204, "").await;
        let p = probe(&dep(DependencyTarget::Http(
            format!("http://{ok}/health").parse().unwrap(),
        )))
        .await;
        assert!(p.ok, "{p:?}");
        let bad = http_server(503, "busy").await;
        let p = probe(&dep(DependencyTarget::Http(
            format!("http://{bad}/health").parse().unwrap(),
        )))
        .await;
        assert!(!p.ok);
        assert_eq!(p.detail, "HTTP 503");
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let addr = http_server(302, "").await;
        let p = probe(&dep(DependencyTarget::Http(
            format!("http://{addr}/").parse().unwrap(),
        )))
        .await;
        assert!(!p.ok);
        assert_eq!(p.detail, "HTTP 302");
    }

    #[tokio::test]
    async fn http_refused_and_stalled_servers() {
        let addr = closed_port().await;
        let p = probe(&dep(DependencyTarget::Http(
            format!("http://{addr}/").parse().unwrap(),
        )))
        .await;
        assert!(!p.ok);
        assert_eq!(p.detail, "connection refused");

        // Accepts but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let mut d = dep(DependencyTarget::Http(
            format!("http://{addr}/").parse().unwrap(),
        ));
        d.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let p = probe(&d).await;
        assert!(!p.ok);
        assert_eq!(p.detail, "timed out after 300ms");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn run_probes_all_dependencies_each_round() {
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down = closed_port().await;
        let deps = vec![
            DependencyConfig {
                name: "up".into(),
                ..dep(DependencyTarget::Tcp(up.local_addr().unwrap().to_string()))
            },
            DependencyConfig {
                name: "down".into(),
                ..dep(DependencyTarget::Tcp(down.to_string()))
            },
        ];
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(deps, Duration::from_millis(20), tx, cancel.clone()));
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..4 {
            match rx.recv().await.unwrap() {
                Observation::Dependency(p) => *seen.entry((p.name, p.ok)).or_insert(0) += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen.get(&("up".to_string(), true)), Some(&2), "{seen:?}");
        assert_eq!(seen.get(&("down".to_string(), false)), Some(&2), "{seen:?}");
        cancel.cancel();
        task.await.unwrap();
    }
}
