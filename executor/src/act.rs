//! Acting on the engine: the only code in Vigil that can change anything in Docker.
//!
//! [`DockerWriter`] is a minimal POST client (restart, start, stop of one container) whose only
//! entry point takes a [`Permit`], which only [`crate::policy::evaluate`] can make. Reads (the
//! fresh inspect policy needs) go through the shared GET-only
//! [`vigil_docker::DockerClient`]. [`DockerEngine`] puts both behind the pipeline's
//! [`Engine`] trait.

use crate::policy::{Permit, TargetFacts};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use std::str::FromStr;
use std::time::Duration;
use vigil_docker::client::validate_id;
use vigil_docker::transport::EngineHost;
use vigil_docker::{DockerClient, DockerError};
use vigil_protocol::wire::Action;

/// The API version the writes use: the lowest Vigil supports, where these three endpoints have
/// had their current shape for years.
pub const WRITE_API_PREFIX: &str = "/v1.41";
/// Cap on an error body read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;
const USER_AGENT: &str = concat!("vigil-executor/", env!("CARGO_PKG_VERSION"));

/// Engine failures, read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the Docker engine answered {status} to {action}: {message}")]
    Refused {
        action: Action,
        status: u16,
        message: String,
    },
    #[error("cannot reach the Docker engine: {0}")]
    Connect(String),
    #[error("the Docker engine did not answer {action} within {timeout:?}")]
    Timeout { action: Action, timeout: Duration },
}

/// What the pipeline needs from the engine: a fresh inspect, and the action itself.
pub trait Engine: Send + Sync {
    /// The container's facts, `None` when it does not exist.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TargetFacts>, ActError>>;
    /// Carries out the permitted action; returns what happened, in words. Must not be called
    /// with a dry-run permit (it refuses to act on one).
    fn act<'a>(&'a self, permit: &'a Permit) -> BoxFuture<'a, Result<String, ActError>>;
}

#[derive(Clone)]
enum Inner {
    Unix {
        client: Client<UnixConnector, Empty<Bytes>>,
        authority: Authority,
    },
    Tcp {
        client: Client<HttpConnector, Empty<Bytes>>,
        authority: Authority,
    },
}

/// The engine's stop timeout when neither the container nor the configuration sets one.
pub const ENGINE_DEFAULT_STOP_TIMEOUT: u64 = 10;
/// How much longer than the stop timeout a restart or stop call may take (the start half of a
/// restart, a slow engine).
const STOP_CALL_MARGIN: Duration = Duration::from_secs(20);

/// The writing client: POST `/v1.41/containers/{id}/{restart?t=N|start|stop?t=N}`.
///
/// `t` is the container's own stop timeout (`Config.StopTimeout`, compose's
/// `stop_grace_period`) unless `EXECUTOR_STOP_TIMEOUT` overrides it: a database that asked for
/// 60 s gets 60 s before SIGKILL.
#[derive(Clone)]
pub struct DockerWriter {
    inner: Inner,
    timeout: Duration,
    stop_timeout: Option<Duration>,
}

impl std::fmt::Debug for DockerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerWriter")
            .field("timeout", &self.timeout)
            .field("stop_timeout", &self.stop_timeout)
            .finish_non_exhaustive()
    }
}

impl DockerWriter {
    /// A writer for `host` (`unix:///path` or `tcp://host:port`). `timeout` bounds each call;
    /// a restart or stop may take its stop timeout plus a margin on top. `stop_timeout`
    /// overrides every container's own stop timeout when set.
    pub fn new(
        host: &str,
        timeout: Duration,
        stop_timeout: Option<Duration>,
    ) -> Result<Self, ActError> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30));
        let inner = match EngineHost::parse(host)? {
            EngineHost::Unix(path) => Inner::Unix {
                client: builder.build(UnixConnector),
                authority: Authority::from_str(&format!("{}:0", hex::encode(path)))
                    .map_err(|e| DockerError::InvalidHost(e.to_string()))?,
            },
            EngineHost::Tcp(authority) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                Inner::Tcp {
                    client: builder.build(connector),
                    authority,
                }
            }
        };
        Ok(DockerWriter {
            inner,
            timeout,
            stop_timeout,
        })
    }

    /// The request path for a permitted action.
    pub fn path_for(&self, permit: &Permit) -> Result<String, ActError> {
        let id = validate_id(permit.container_id())?;
        let t = self.stop_seconds(permit);
        Ok(match permit.action() {
            Action::Restart => format!("{WRITE_API_PREFIX}/containers/{id}/restart?t={t}"),
            Action::Start => format!("{WRITE_API_PREFIX}/containers/{id}/start"),
            Action::Stop => format!("{WRITE_API_PREFIX}/containers/{id}/stop?t={t}"),
        })
    }

    /// Seconds the engine waits before SIGKILL for this permit's container.
    pub fn stop_seconds(&self, permit: &Permit) -> u64 {
        self.stop_timeout
            .map(|d| d.as_secs())
            .or(permit.container_stop_timeout())
            .unwrap_or(ENGINE_DEFAULT_STOP_TIMEOUT)
    }

    /// How long the call for this permit may take.
    pub fn call_timeout(&self, permit: &Permit) -> Duration {
        match permit.action() {
            Action::Start => self.timeout,
            Action::Restart | Action::Stop => self
                .timeout
                .max(Duration::from_secs(self.stop_seconds(permit)) + STOP_CALL_MARGIN),
        }
    }

    /// Carries out the permitted action. 204 is done; 304 (already started/stopped) is done
    /// with nothing to do; anything else is [`ActError::Refused`].
    pub async fn execute(&self, permit: &Permit) -> Result<String, ActError> {
        if permit.is_dry_run() {
            return Ok("dry-run: nothing done".to_string());
        }
        let action = permit.action();
        let path = self.path_for(permit)?;
        let (scheme, authority) = match &self.inner {
            Inner::Unix { authority, .. } => (
                Scheme::from_str("unix").map_err(|e| ActError::Connect(e.to_string()))?,
                authority.clone(),
            ),
            Inner::Tcp { authority, .. } => (Scheme::HTTP, authority.clone()),
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path.as_str())
            .build()
            .map_err(|e| ActError::Connect(e.to_string()))?;
        let request = Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| ActError::Connect(e.to_string()))?;
        let send = async {
            let response = match &self.inner {
                Inner::Unix { client, .. } => client.request(request).await,
                Inner::Tcp { client, .. } => client.request(request).await,
            }
            .map_err(|e| ActError::Connect(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, ActError>((status, body))
        };
        let timeout = self.call_timeout(permit);
        let (status, body) = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| ActError::Timeout { action, timeout })??;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(match action {
                Action::Restart => "restarted",
                Action::Start => "started",
                Action::Stop => "stopped",
            }
            .to_string()),
            StatusCode::NOT_MODIFIED => Ok(match action {
                Action::Start => "already started",
                Action::Stop => "already stopped",
                Action::Restart => "not modified",
            }
            .to_string()),
            other => Err(ActError::Refused {
                action,
                status: other.as_u16(),
                message: engine_message(&body),
            }),
        }
    }
}

/// The engine's `{"message": ...}`, or the body's first bytes.
fn engine_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The real engine: the shared GET-only client for inspect, [`DockerWriter`] for the action.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    reader: DockerClient,
    writer: DockerWriter,
}

impl DockerEngine {
    pub fn new(reader: DockerClient, writer: DockerWriter) -> DockerEngine {
        DockerEngine { reader, writer }
    }
}

impl Engine for DockerEngine {
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TargetFacts>, ActError>> {
        Box::pin(async move {
            match self.reader.inspect(id).await {
                Ok(details) => {
                    vigil_docker::labels::report_unclear(&details.container.name, &details.labels);
                    Ok(Some(TargetFacts::from(&details)))
                }
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn act<'a>(&'a self, permit: &'a Permit) -> BoxFuture<'a, Result<String, ActError>> {
        Box::pin(self.writer.execute(permit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_messages_are_extracted() {
        assert_eq!(
            engine_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(engine_message(b"plain"), "plain");
    }

    fn permit(action: Action, dry_run: bool) -> Permit {
        use crate::policy::{PolicySettings, PolicyState, Switches, evaluate};
        use vigil_docker::{Health, RunState};
        use vigil_protocol::wire::{Payload, Reason, Target};
        use vigil_shared::time::Timestamp;
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let facts = TargetFacts {
            id: id.into(),
            name: "web-1".into(),
            project: None,
            service: None,
            labels: [(
                vigil_docker::labels::REMEDIATE.to_string(),
                "true".to_string(),
            )]
            .into(),
            state: if action == Action::Start {
                RunState::Exited
            } else {
                RunState::Running
            },
            health: Health::None,
            exit_code: 1,
            oom_killed: false,
            started_at: None,
            finished_at: None,
            stop_timeout: Some(45),
        };
        let target = Target {
            id: id.into(),
            name: "web-1".into(),
            project: None,
            service: None,
        };
        let now = Timestamp(1_700_000_000_000);
        let req = Payload::new("d", action, target, Reason::new("s", "h", "d", 1.0), now);
        let switches = Switches {
            enabled: true,
            paused: false,
            dry_run,
        };
        evaluate(
            &req,
            Some(&facts),
            &PolicyState::new(),
            &PolicySettings {
                allowed_actions: Action::ALL.to_vec(),
                ..PolicySettings::default()
            },
            switches,
            now,
        )
        .expect("permitted")
    }

    #[test]
    fn paths_use_the_containers_own_stop_timeout_unless_overridden() {
        let own = DockerWriter::new("unix:///var/run/docker.sock", Duration::from_secs(30), None)
            .expect("valid host");
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            own.path_for(&permit(Action::Restart, false)).expect("path"),
            format!("/v1.41/containers/{id}/restart?t=45")
        );
        assert_eq!(
            own.call_timeout(&permit(Action::Stop, false)),
            Duration::from_secs(65),
            "the call outlives the stop timeout"
        );
        assert_eq!(
            own.call_timeout(&permit(Action::Start, false)),
            Duration::from_secs(30)
        );
        let w = DockerWriter::new(
            "unix:///var/run/docker.sock",
            Duration::from_secs(30),
            Some(Duration::from_secs(10)),
        )
        .expect("valid host");
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            w.path_for(&permit(Action::Restart, false)).expect("path"),
            format!("/v1.41/containers/{id}/restart?t=10")
        );
        assert_eq!(
            w.path_for(&permit(Action::Start, false)).expect("path"),
            format!("/v1.41/containers/{id}/start")
        );
        assert_eq!(
            w.path_for(&permit(Action::Stop, false)).expect("path"),
            format!("/v1.41/containers/{id}/stop?t=10")
        );
    }

    #[tokio::test]
    async fn a_dry_run_permit_never_reaches_the_engine() {
        // No engine listens on this socket: any request would fail with Connect.
        let w = DockerWriter::new(
            "unix:///nonexistent/vigil-test.sock",
            Duration::from_secs(1),
            None,
        )
        .expect("valid host");
        let out = w
            .execute(&permit(Action::Restart, true))
            .await
            .expect("no call");
        assert!(out.starts_with("dry-run"), "{out}");
        let err = w
            .execute(&permit(Action::Restart, false))
            .await
            .expect_err("no engine");
        assert!(matches!(err, ActError::Connect(_)), "{err:?}");
    }

    #[test]
    fn bad_hosts_are_refused() {
        assert!(DockerWriter::new("http://x", Duration::from_secs(1), None).is_err());
    }
}
