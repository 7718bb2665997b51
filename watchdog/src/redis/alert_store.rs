//! Alert state kept in Redis, so a watchdog restart does not re-page everyone.
//!
//! Every key whose alert state changed is written as `SET <prefix>alert:<signal key>
//! {"signal": .., "state": ..} PX <ttl>` and listed in the set `<prefix>alert_index`; a key back
//! to `Inactive` is deleted and unlisted. At start-up [`load`] reads them all back (`SMEMBERS`
//! of the index, then `MGET`; listed keys that expired are unlisted) for `Core::restore`. The
//! index spares the watchdog's Redis user the `SCAN` permission (which would show it every key
//! name in the database).
//!
//! Writes never block detection: [`AlertStore::save`] puts the change on a bounded channel and a
//! writer task applies them in batches, the latest change per key winning. When Redis fails the
//! batch is kept (still latest-wins, bounded) and retried, so an outage loses at most what
//! overflows the bound.

use crate::change::StateChange;
use crate::decide::AlertState;
use crate::incident::Incident;
use crate::redis::link::{LinkError, RedisLink};
use crate::signals::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_protocol::names::Names;

/// How long a stored state outlives its last change: a watchdog down longer than this starts
/// afresh (and re-alerts what still fires).
pub const STATE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Changes waiting for the writer.
pub const STORE_BUFFER: usize = 4096;
/// Keys held for retry while Redis fails; beyond this the oldest changes are dropped.
const MAX_PENDING_KEYS: usize = 10_000;
/// Wait before writing a failed batch again.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Keys per `MGET`.
const LOAD_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] LinkError),
}

/// The stored form of one key's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub signal: Signal,
    pub state: AlertState,
    /// The remediation loop's incident for this key, if one is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub written: AtomicU64,
    pub deleted: AtomicU64,
    /// Write attempts that failed (the batch is retried).
    pub failures: AtomicU64,
    /// Changes lost: the channel or the retry buffer was full.
    pub dropped: AtomicU64,
}

/// The handle the engine saves through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertStore {
    tx: mpsc::Sender<StateChange>,
    stats: Arc<StoreStats>,
}

impl AlertStore {
    /// Starts the writer. On cancellation it makes one last attempt at what is pending.
    pub fn start(link: Arc<RedisLink>, cancel: CancellationToken) -> (AlertStore, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(STORE_BUFFER);
        let stats = Arc::new(StoreStats::default());
        let handle = tokio::spawn(write_loop(link, rx, stats.clone(), cancel));
        (AlertStore { tx, stats }, handle)
    }

    /// Queues a change. Never blocks: a full channel drops it (counted).
    pub fn save(&self, change: StateChange) {
        if self.tx.try_send(change).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    store.dropped = n,
                    "Alert state changes dropped: the store is not keeping up."
                );
            }
        }
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

/// Latest change per signal key: `Some(json)` to write, `None` to delete.
type Batch = BTreeMap<String, Option<String>>;

fn add(batch: &mut Batch, change: StateChange, stats: &StoreStats) {
    let (key, value) = match change {
        StateChange::Put {
            signal,
            state,
            incident,
        } => {
            let key = signal.key.clone();
            match serde_json::to_string(&StoredAlert {
                signal: *signal,
                state,
                incident: incident.map(|i| *i),
            }) {
                Ok(json) => (key, Some(json)),
                Err(e) => {
                    tracing::error!(signal.key = %key, error = %e, "Cannot encode an alert state.");
                    return;
                }
            }
        }
        StateChange::Remove { key } => (key, None),
    };
    if batch.len() >= MAX_PENDING_KEYS && !batch.contains_key(&key) {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    batch.insert(key, value);
}

async fn write_loop(
    link: Arc<RedisLink>,
    mut rx: mpsc::Receiver<StateChange>,
    stats: Arc<StoreStats>,
    cancel: CancellationToken,
) {
    let mut pending = Batch::new();
    let mut failing = false;
    loop {
        if pending.is_empty() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                change = rx.recv() => match change {
                    Some(c) => add(&mut pending, c, &stats),
                    None => break,
                },
            }
        } else if failing {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
        while let Ok(c) = rx.try_recv() {
            add(&mut pending, c, &stats);
        }
        match write(&link, &pending).await {
            Ok(()) => {
                if failing {
                    tracing::info!("Alert state is saved to Redis again.");
                }
                failing = false;
                note_written(&pending, &stats);
                pending.clear();
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(
                        store.pending = pending.len(),
                        error = %e,
                        "Cannot save alert state to Redis; will retry."
                    );
                }
                failing = true;
            }
        }
    }
    // Shutdown: one last attempt, so a graceful restart keeps the newest state.
    while let Ok(c) = rx.try_recv() {
        add(&mut pending, c, &stats);
    }
    if !pending.is_empty() {
        match write(&link, &pending).await {
            Ok(()) => note_written(&pending, &stats),
            Err(e) => tracing::warn!(
                store.pending = pending.len(),
                error = %e,
                "Alert state not saved at shutdown; a restart may alert again."
            ),
        }
    }
}

fn note_written(batch: &Batch, stats: &StoreStats) {
    let deleted = batch.values().filter(|v| v.is_none()).count() as u64;
    stats.deleted.fetch_add(deleted, Ordering::Relaxed);
    stats
        .written
        .fetch_add(batch.len() as u64 - deleted, Ordering::Relaxed);
}

async fn write(link: &RedisLink, batch: &Batch) -> Result<(), StoreError> {
    let names = link.names();
    let ttl_ms = u64::try_from(STATE_TTL.as_millis()).unwrap_or(u64::MAX);
    let mut pipe = redis::pipe();
    for (key, value) in batch {
        match value {
            Some(json) => {
                pipe.cmd("SET")
                    .arg(names.alert(key))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                pipe.cmd("SADD")
                    .arg(names.alert_index())
                    .arg(names.alert(key))
                    .ignore();
            }
            None => {
                pipe.cmd("DEL").arg(names.alert(key)).ignore();
                pipe.cmd("SREM")
                    .arg(names.alert_index())
                    .arg(names.alert(key))
                    .ignore();
            }
        }
    }
    link.pipeline::<()>(&pipe).await?;
    Ok(())
}

/// Every stored alert state, for `Core::restore`. Entries that do not parse, or whose signal key
/// does not match their Redis key, are skipped with a warning; `Inactive` ones are skipped.
pub async fn load(link: &RedisLink) -> Result<Vec<StoredAlert>, StoreError> {
    let names = link.names();
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(names.alert_index());
    let listed: Vec<Vec<u8>> = link.query(&smembers).await?;
    let prefix = names.alert("");
    // Only the watchdog writes the index; anything else in it is skipped.
    let mut keys: Vec<String> = listed
        .into_iter()
        .filter_map(|k| String::from_utf8(k).ok())
        .filter(|k| k.starts_with(&prefix))
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for chunk in keys.chunks(LOAD_BATCH) {
        let mut mget = redis::cmd("MGET");
        for k in chunk {
            mget.arg(k);
        }
        let values: Vec<Option<String>> = link.query(&mget).await?;
        for (redis_key, value) in chunk.iter().zip(values) {
            // Expired: unlist it.
            let Some(json) = value else {
                let mut srem = redis::cmd("SREM");
                srem.arg(names.alert_index()).arg(redis_key);
                let _: i64 = link.query(&srem).await?;
                continue;
            };
            match parse_stored(names, redis_key, &json) {
                Ok(Some(entry)) => out.push(entry),
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(redis.key = %redis_key, reason = %why, "Skipping a stored alert state.")
                }
            }
        }
    }
    Ok(out)
}

/// One stored entry, checked: `Ok(None)` for an `Inactive` state (nothing to restore).
pub fn parse_stored(
    names: &Names,
    redis_key: &str,
    json: &str,
) -> Result<Option<StoredAlert>, String> {
    let stored: StoredAlert =
        serde_json::from_str(json).map_err(|e| format!("not a stored alert: {e}"))?;
    if names.alert(&stored.signal.key) != redis_key {
        return Err(format!(
            "holds the state of {:?}, not of its own key",
            stored.signal.key
        ));
    }
    if stored.state == AlertState::Inactive {
        return Ok(None);
    }
    Ok(Some(stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{Severity, SignalKind, Subject};
    use vigil_shared::time::Timestamp;

    fn signal() -> Signal {
        Signal::new(
            SignalKind::DiskHigh,
            true,
            Severity::High,
            Subject::named("/data"),
            "disk /data 97% used",
            Timestamp(5),
        )
    }

    fn firing() -> AlertState {
        AlertState::Firing {
            since: Timestamp(1),
            last_notified: Timestamp(2),
            count: 1,
            interval: Duration::from_secs(3600),
            occurrence: None,
        }
    }

    #[test]
    fn stored_round_trip_and_checks() {
        let names = Names::default();
        let json = serde_json::to_string(&StoredAlert {
            signal: signal(),
            state: firing(),
            incident: None,
        })
        .unwrap();
        let stored = parse_stored(&names, "vigil:alert:disk_high//data", &json)
            .unwrap()
            .unwrap();
        assert_eq!(stored.signal, signal());
        assert_eq!(stored.state, firing());
        assert!(parse_stored(&names, "vigil:alert:other", &json).is_err());
        assert!(parse_stored(&names, "vigil:alert:x", "{").is_err());
        let inactive = serde_json::to_string(&StoredAlert {
            signal: signal(),
            state: AlertState::Inactive,
            incident: None,
        })
        .unwrap();
        assert_eq!(
            parse_stored(&names, "vigil:alert:disk_high//data", &inactive),
            Ok(None)
        );
    }

    #[test]
    fn batches_keep_the_latest_change_per_key() {
        let stats = StoreStats::default();
        let mut batch = Batch::new();
        add(
            &mut batch,
            StateChange::Put {
                signal: Box::new(signal()),
                state: firing(),
                incident: None,
            },
            &stats,
        );
        add(
            &mut batch,
            StateChange::Remove { key: signal().key },
            &stats,
        );
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.get(&signal().key), Some(&None));
    }
}
