//! Alert state in a local file, for alert-only mode (no Redis): a watchdog restarted while
//! something fires does not page everyone again.
//!
//! The file is `<data dir>/alerts.json`: `{"v":1,"alerts":[{"signal":..,"state":..,
//! "incident":..}, ..]}`, one entry per key that is not `Inactive` (the same shape as one Redis
//! alert record). It is read once at start-up and rewritten whole after changes, atomically:
//! written to `alerts.json.tmp`, fsync'd, renamed over the old file, and the directory fsync'd,
//! so a crash leaves either the old file or the new one, never half of one.
//!
//! Writes never block detection: [`AlertFile::save`] puts the change on a bounded channel and a
//! writer task applies them to its copy and writes at most every [`WRITE_EVERY`]. A write that
//! fails is retried; a watchdog restarted before it succeeds may alert again (logged).

use crate::change::StateChange;
use crate::redis::alert_store::StoredAlert;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "alerts.json";
/// Changes are gathered this long before the file is rewritten.
pub const WRITE_EVERY: Duration = Duration::from_millis(200);
/// Wait before writing again after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Changes waiting for the writer.
const BUFFER: usize = 4096;
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct FileBody {
    v: u32,
    alerts: Vec<StoredAlert>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an alert state file: {reason}")]
    Format { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The file's path in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The saved alert states (none when the file does not exist yet).
pub fn load(dir: &Path) -> Result<Vec<StoredAlert>, FileError> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let body: FileBody = serde_json::from_slice(&bytes).map_err(|e| FileError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if body.v != VERSION {
        return Err(FileError::Format {
            path: path.display().to_string(),
            reason: format!("version {} (expected {VERSION})", body.v),
        });
    }
    Ok(body.alerts)
}

/// Writes `alerts` to `dir` atomically (temporary file, fsync, rename, fsync of the directory).
pub fn write(dir: &Path, alerts: &BTreeMap<String, StoredAlert>) -> Result<(), FileError> {
    let path = path_in(dir);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let body = FileBody {
        v: VERSION,
        alerts: alerts.values().cloned().collect(),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| FileError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The handle the engine saves through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertFile {
    tx: mpsc::Sender<StateChange>,
}

impl AlertFile {
    /// Starts the writer with the states loaded at start-up (so the first write keeps them).
    /// On cancellation it writes what is pending once more.
    pub fn start(
        dir: PathBuf,
        loaded: Vec<StoredAlert>,
        cancel: CancellationToken,
    ) -> (AlertFile, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let current = loaded
            .into_iter()
            .map(|a| (a.signal.key.clone(), a))
            .collect();
        let handle = tokio::spawn(write_loop(dir, current, rx, cancel));
        (AlertFile { tx }, handle)
    }

    /// Queues a change. Never blocks: a full channel drops it (logged).
    pub fn save(&self, change: StateChange) {
        if self.tx.try_send(change).is_err() {
            tracing::warn!("Alert state change dropped: the state file writer is not keeping up.");
        }
    }
}

fn apply(current: &mut BTreeMap<String, StoredAlert>, change: StateChange) {
    match change {
        StateChange::Put {
            signal,
            state,
            incident,
        } => {
            current.insert(
                signal.key.clone(),
                StoredAlert {
                    signal: *signal,
                    state,
                    incident: incident.map(|i| *i),
                },
            );
        }
        StateChange::Remove { key } => {
            current.remove(&key);
        }
    }
}

async fn flush(dir: &Path, current: &BTreeMap<String, StoredAlert>) -> Result<(), FileError> {
    let (dir, snapshot) = (dir.to_path_buf(), current.clone());
    match tokio::task::spawn_blocking(move || write(&dir, &snapshot)).await {
        Ok(r) => r,
        Err(e) => Err(FileError::Io {
            path: FILE_NAME.to_string(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

async fn write_loop(
    dir: PathBuf,
    mut current: BTreeMap<String, StoredAlert>,
    mut rx: mpsc::Receiver<StateChange>,
    cancel: CancellationToken,
) {
    let mut dirty = false;
    let mut failing = false;
    loop {
        if !dirty {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                change = rx.recv() => match change {
                    Some(c) => { apply(&mut current, c); dirty = true; }
                    None => break,
                },
            }
        }
        let wait = if failing { RETRY_AFTER } else { WRITE_EVERY };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        while let Ok(c) = rx.try_recv() {
            apply(&mut current, c);
        }
        match flush(&dir, &current).await {
            Ok(()) => {
                if failing {
                    tracing::info!("Alert state is saved to the state file again.");
                }
                failing = false;
                dirty = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e,
                        "Cannot save alert state to the state file; will retry. A restart now \
                         may alert again."
                    );
                }
                failing = true;
            }
        }
    }
    while let Ok(c) = rx.try_recv() {
        apply(&mut current, c);
        dirty = true;
    }
    if dirty && let Err(e) = flush(&dir, &current).await {
        tracing::warn!(error = %e, "Alert state not saved at shutdown; a restart may alert again.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::AlertState;
    use crate::signals::{Severity, Signal, SignalKind, Subject};
    use vigil_shared::time::Timestamp;

    fn stored(name: &str) -> StoredAlert {
        let subject = Subject {
            container: Some(name.to_string()),
            container_id: Some(format!("id-{name}")),
            ..Subject::default()
        };
        StoredAlert {
            signal: Signal::new(
                SignalKind::ContainerUnhealthy,
                true,
                Severity::High,
                subject,
                "failing",
                Timestamp(1_000),
            ),
            state: AlertState::Pending {
                since: Timestamp(1_000),
            },
            incident: None,
        }
    }

    #[test]
    fn missing_file_is_empty_and_written_file_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load(dir.path()).expect("no file yet").is_empty());
        let mut all = BTreeMap::new();
        for n in ["a-1", "b-1"] {
            let s = stored(n);
            all.insert(s.signal.key.clone(), s);
        }
        write(dir.path(), &all).expect("written");
        let back = load(dir.path()).expect("read back");
        assert_eq!(back, all.values().cloned().collect::<Vec<_>>());
        assert!(
            !dir.path().join(format!("{FILE_NAME}.tmp")).exists(),
            "the temporary file was renamed"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(path_in(dir.path()), b"{\"v\":1,\"alerts\":[").expect("write");
        let e = load(dir.path()).expect_err("damaged");
        assert!(e.to_string().contains(FILE_NAME), "{e}");
        std::fs::write(path_in(dir.path()), b"{\"v\":9,\"alerts\":[]}").expect("write");
        assert!(load(dir.path()).is_err(), "unknown version");
    }

    #[tokio::test]
    async fn changes_reach_the_file_and_removals_leave_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cancel = CancellationToken::new();
        let keep = stored("keep-1");
        let (file, task) =
            AlertFile::start(dir.path().to_path_buf(), vec![keep.clone()], cancel.clone());
        let gone = stored("gone-1");
        file.save(StateChange::Put {
            signal: Box::new(gone.signal.clone()),
            state: gone.state,
            incident: None,
        });
        file.save(StateChange::Remove {
            key: gone.signal.key.clone(),
        });
        let added = stored("added-1");
        file.save(StateChange::Put {
            signal: Box::new(added.signal.clone()),
            state: added.state,
            incident: None,
        });
        cancel.cancel();
        task.await.expect("writer ends");
        let keys: Vec<String> = load(dir.path())
            .expect("file")
            .into_iter()
            .map(|a| a.signal.key)
            .collect();
        let mut want = vec![keep.signal.key, added.signal.key];
        want.sort();
        assert_eq!(keys, want);
    }
}
