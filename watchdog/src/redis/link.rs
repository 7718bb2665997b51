//! The watchdog's Redis connection, and the probe that turns its health (and the executor's
//! heartbeat read through it) into observations.
//!
//! [`RedisLink`] connects lazily, so a Redis that is down at start-up is a signal, not a crash:
//! the first command that needs a connection makes a [`ConnectionManager`], which reconnects on
//! its own after that. Every command is bounded by a timeout, so no caller waits on a Redis that
//! has stopped answering. Blocking reads (`XREAD BLOCK`) would hold up a multiplexed connection,
//! so they use a [`RedisLink::dedicated`] link of their own.
//!
//! [`probe`] runs every `interval`: `PING` becomes `Observation::Source { source: Redis }`
//! (evaluation debounces it into `redis_unreachable`), and only while Redis answers, the
//! executor heartbeat (`<prefix>heartbeat:executor`, unix ms, refreshed every 5 s with a 30 s
//! expiry) becomes `Observation::Source { source: Executor }` (`executor_down` when missing or
//! older than [`EXECUTOR_HEARTBEAT_STALE_AFTER`]).
//!
//! The Redis URL holds a password: it is never logged, and errors never quote it.

use crate::collect::{self, Observation, SourceId};
use crate::evaluate::EXECUTOR_HEARTBEAT_STALE_AFTER;
use crate::redis::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use vigil_protocol::names::Names;
use vigil_shared::time::{Timestamp, human_duration};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an ordinary command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection attempts per failure inside the connection manager (the probe retries anyway).
const CONNECT_RETRIES: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL does not parse; the value is not shown because it may hold a password.
    #[error("invalid Redis URL (value not shown)")]
    BadUrl,
    #[error("Redis did not answer within {}", human_duration(*.0))]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One Redis server, reached through a lazily made, self-healing connection.
pub struct RedisLink {
    client: redis::Client,
    names: Names,
    response_timeout: Duration,
    manager: Mutex<Option<ConnectionManager>>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL (and its password): leave it out.
        f.debug_struct("RedisLink")
            .field("prefix", &self.names.prefix())
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Parses the URL; connects on first use.
    pub fn new(config: &RedisConfig) -> Result<RedisLink, LinkError> {
        let client = redis::Client::open(config.url.expose()).map_err(|_| LinkError::BadUrl)?;
        Ok(RedisLink {
            client,
            names: Names::new(&config.prefix),
            response_timeout: COMMAND_TIMEOUT,
            manager: Mutex::new(None),
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Another link to the same server with a connection of its own, whose commands may take up
    /// to `response_timeout` (blocking reads).
    pub fn dedicated(&self, response_timeout: Duration) -> RedisLink {
        RedisLink {
            client: self.client.clone(),
            names: self.names.clone(),
            response_timeout,
            manager: Mutex::new(None),
        }
    }

    /// The connection, made on first use (bounded by [`CONNECT_TIMEOUT`]).
    pub async fn connection(&self) -> Result<ConnectionManager, LinkError> {
        let mut slot = self.manager.lock().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(self.response_timeout)
            .set_number_of_retries(CONNECT_RETRIES);
        let make = ConnectionManager::new_with_config(self.client.clone(), config);
        // Retries inside the manager may add backoff on top of the connection timeout.
        let limit = CONNECT_TIMEOUT * 3;
        let manager = tokio::time::timeout(limit, make)
            .await
            .map_err(|_| LinkError::Timeout(limit))??;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Runs one command (or a pipeline through [`RedisLink::pipeline`]) with a timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, LinkError> {
        let mut conn = self.connection().await?;
        let limit = self.response_timeout + Duration::from_secs(1);
        tokio::time::timeout(limit, cmd.query_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout(limit))?
            .map_err(LinkError::from)
    }

    /// Runs a pipeline with a timeout.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, LinkError> {
        let mut conn = self.connection().await?;
        let limit = self.response_timeout + Duration::from_secs(1);
        tokio::time::timeout(limit, pipe.query_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout(limit))?
            .map_err(LinkError::from)
    }
}

/// What one heartbeat read means, as `(ok, detail)`. Pure: `now` comes in.
pub fn judge_heartbeat(key: &str, value: Option<&str>, now: Timestamp) -> (bool, String) {
    let Some(value) = value else {
        return (
            false,
            format!(
                "no executor heartbeat ({key} is missing): the executor is not running or cannot reach Redis"
            ),
        );
    };
    match vigil_protocol::heartbeat::decode(value).ok_or(()) {
        Ok(beat) => {
            if let Some(why) = beat.cannot_audit {
                return (false, format!("executor cannot audit: {why}"));
            }
            let ms = beat.at_ms;
            let age = now.since(Timestamp(ms));
            if age > EXECUTOR_HEARTBEAT_STALE_AFTER {
                (
                    false,
                    format!("last executor heartbeat {} ago", human_duration(age)),
                )
            } else {
                (true, String::new())
            }
        }
        // The key expires 30 s after its last refresh, so its presence alone says "alive".
        Err(_) => (true, String::new()),
    }
}

/// Probes Redis (and the executor heartbeat through it) every `interval` until cancelled.
pub async fn probe(
    link: Arc<RedisLink>,
    interval: Duration,
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let heartbeat_key = link.names().executor_heartbeat();
    let mut failing = false;
    loop {
        let at = Timestamp::now();
        match link.query::<String>(&redis::cmd("PING")).await {
            Ok(_) => {
                if failing {
                    tracing::info!("Redis answers again.");
                    failing = false;
                }
                let ok = Observation::Source {
                    source: SourceId::Redis,
                    at,
                    ok: true,
                    detail: String::new(),
                };
                if !collect::emit(&tx, &cancel, ok).await {
                    return;
                }
                let mut get = redis::cmd("GET");
                get.arg(&heartbeat_key);
                match link.query::<Option<String>>(&get).await {
                    Ok(value) => {
                        let (ok, detail) =
                            judge_heartbeat(&heartbeat_key, value.as_deref(), Timestamp::now());
                        let obs = Observation::Source {
                            source: SourceId::Executor,
                            at,
                            ok,
                            detail,
                        };
                        if !collect::emit(&tx, &cancel, obs).await {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot read the executor heartbeat.");
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "Redis does not answer; will keep trying.");
                    failing = true;
                }
                let obs = Observation::Source {
                    source: SourceId::Redis,
                    at,
                    ok: false,
                    detail: e.to_string(),
                };
                if !collect::emit(&tx, &cancel, obs).await {
                    return;
                }
            }
        }
        if !collect::pause(&cancel, interval).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "vigil:heartbeat:executor";

    #[test]
    fn heartbeat_missing_stale_and_fresh() {
        let now = Timestamp(100_000);
        let (ok, detail) = judge_heartbeat(KEY, None, now);
        assert!(!ok);
        assert!(
            detail.contains("vigil:heartbeat:executor is missing"),
            "{detail}"
        );
        let (ok, detail) = judge_heartbeat(KEY, Some("55000"), now);
        assert!(!ok);
        assert_eq!(detail, "last executor heartbeat 45s ago");
        assert_eq!(
            judge_heartbeat(KEY, Some("70000"), now),
            (true, String::new())
        );
        assert!(judge_heartbeat(KEY, Some("not a number"), now).0);
    }

    #[test]
    fn an_executor_that_cannot_audit_is_a_problem_even_when_fresh() {
        let now = Timestamp(100_000);
        let value =
            vigil_protocol::heartbeat::encode(99_000, Some("no space left for the audit log"));
        let (ok, detail) = judge_heartbeat(KEY, Some(&value), now);
        assert!(!ok);
        assert_eq!(
            detail,
            "executor cannot audit: no space left for the audit log"
        );
    }

    #[test]
    fn bad_urls_do_not_echo_the_value() {
        let cfg = RedisConfig {
            url: vigil_shared::config::Secret::new("not a url with password hunter2"),
            prefix: "vigil:".into(),
            unreachable_after: std::time::Duration::from_secs(10),
        };
        let err = RedisLink::new(&cfg).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
