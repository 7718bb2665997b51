//! The executor's heartbeat: `SET <prefix>heartbeat:executor <value> PX 30000` every 5 s, so
//! the watchdog can tell when the executor is gone; the value (see
//! [`vigil_protocol::heartbeat`]) also carries why the audit log cannot be written, if it cannot,
//! so the watchdog pages. Each beat also reads the pause key for `/healthz` (requests read it
//! themselves, per request).
//!
//! A stalled request consumer withholds the beat ([`Health::consumer_stalled`]): an executor
//! that reads no requests is as good as gone. While the audit log cannot be written the consumer
//! waits on purpose, so the beat goes on and carries that reason: the watchdog's page then names
//! the cause rather than an absent executor.

use crate::serve::Health;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_protocol::names::Names;
use vigil_shared::time::Timestamp;

/// Time between beats.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Lifetime of one beat: six missed beats and the key is gone.
pub const TTL: Duration = Duration::from_secs(30);
/// Longest one beat (its two commands, a reconnect included) may take before it counts as
/// failed: Redis is then reported down (`redis_ok: false`).
pub const BEAT_TIMEOUT: Duration = INTERVAL;

/// Beats until `cancel`; a Redis error or a beat without an answer within [`BEAT_TIMEOUT`] is
/// logged (once per outage), sets `redis_ok` false, and the next beat retries; a beat that
/// reaches Redis sets it true again.
pub async fn run(
    mut conn: ConnectionManager,
    names: Names,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    let key = names.executor_heartbeat();
    let pause = names.pause();
    let mut failing = false;
    let mut stalled_said = false;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        // A stalled consumer must not look alive to the watchdog: no beat, so it pages
        // `executor_down` instead of waiting calmly behind a stuck stream.
        if health.consumer_stalled(Timestamp::now()) && health.audit_problem().is_none() {
            if !stalled_said {
                tracing::error!(
                    consumer.idle_ms = health.consumer_idle(Timestamp::now()).as_millis() as u64,
                    "The request consumer makes no progress; withholding the heartbeat so the watchdog pages."
                );
            }
            stalled_said = true;
            continue;
        }
        stalled_said = false;
        let beat = async {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(vigil_protocol::heartbeat::encode(
                    Timestamp::now().as_millis(),
                    health.audit_problem().as_deref(),
                ))
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            let paused: i64 = redis::cmd("EXISTS")
                .arg(&pause)
                .query_async(&mut conn)
                .await?;
            Ok::<bool, redis::RedisError>(paused > 0)
        };
        // Raced against shutdown, and bounded: a Redis that accepts connections and answers
        // nothing (frozen) must neither hold the shutdown nor look alive.
        let beat = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(BEAT_TIMEOUT, beat) => r.unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "no answer within the beat's time limit",
                )))
            }),
        };
        match beat {
            Ok(paused) => {
                if failing {
                    tracing::info!("Heartbeat reaches Redis again.");
                }
                failing = false;
                health.heartbeat_ok(Timestamp::now());
                health.redis_ok.store(true, Ordering::Relaxed);
                health.paused.store(paused, Ordering::Relaxed);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "Cannot write the heartbeat to Redis; retrying every beat.");
                }
                failing = true;
                health.redis_ok.store(false, Ordering::Relaxed);
            }
        }
    }
}
