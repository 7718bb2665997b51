//! Group commit: many callers' audit records written with one `fdatasync`, in one chain order.
//!
//! Every caller of [`Journal::commit`] queues its entries, then waits for the log. Whoever gets
//! the log takes *everything* queued by then (its own entries and those of every caller that
//! queued meanwhile), checks the log can be written ([`AuditLog::check_writable`]), appends the
//! lot with [`AuditLog::append_batch`] (one write, one sync) and hands each caller its records.
//! A caller whose entries an earlier holder already wrote finds its answer waiting and returns.
//! So while one sync runs, the next batch gathers: one sync per batch, not per record, and no
//! caller returns before its records are durable.
//!
//! The chain stays one sequence: only the holder of the log seals records, and it seals them in
//! queue order. The lines then go to a backlog for the audit stream in the same order;
//! [`Journal::flush`] publishes it (one pipelined round trip per batch) under its own lock, so the
//! stream is in chain order too.
//!
//! The write itself runs on the blocking pool (`spawn_blocking`), and everything after the sync
//! (head, backlog, answers) is done there as well, so a caller that gives up waiting can never
//! leave a durable record unanswered or unpublished.

use crate::audit::{AuditEntry, AuditError, AuditRecord};
use crate::broker::{Broker, BrokerError};
use crate::journal::AuditLog;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most audit lines kept in memory for the stream while Redis is away, and most re-published
/// from the file after a reconnect: the stream is the recent feed, the file is the record.
pub const MAX_BACKLOG: usize = 2_000;
/// Lines published per round trip.
const PUBLISH_BATCH: usize = 256;

/// Why a commit did not happen. Nothing of the batch is in the file then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The log cannot be written right now (deleted, replaced, no space, a failed append not
    /// rolled back): checked before every batch.
    #[error("cannot audit: {0}")]
    CannotAudit(String),
    /// The write or the sync failed (and was rolled back).
    #[error("cannot write the audit log: {0}")]
    Write(String),
}

type Answer = Result<Vec<AuditRecord>, CommitError>;

struct Waiting {
    entries: Vec<AuditEntry>,
    reply: oneshot::Sender<Answer>,
}

struct Inner {
    path: PathBuf,
    log: Arc<tokio::sync::Mutex<AuditLog>>,
    queue: Mutex<Vec<Waiting>>,
    head: Mutex<(u64, String)>,
    /// `(seq, line)` durable in the file, not yet on the stream, in chain order.
    backlog: Mutex<VecDeque<(u64, String)>>,
    publishing: tokio::sync::Mutex<()>,
    batches: std::sync::atomic::AtomicU64,
}

/// The audit log behind group commit. Cheap to clone (shared).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    pub fn new(log: AuditLog) -> Journal {
        let (seq, hash) = log.head();
        let head = (seq, hash.to_string());
        Journal {
            inner: Arc::new(Inner {
                path: log.path().to_path_buf(),
                log: Arc::new(tokio::sync::Mutex::new(log)),
                queue: Mutex::new(Vec::new()),
                head: Mutex::new(head),
                backlog: Mutex::new(VecDeque::new()),
                publishing: tokio::sync::Mutex::new(()),
                batches: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `(seq, hash)` of the last durable record.
    pub fn head(&self) -> (u64, String) {
        lock(&self.inner.head).clone()
    }

    /// How many syncs (batches) were written so far.
    pub fn batches(&self) -> u64 {
        self.inner
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lines waiting for the audit stream.
    pub fn backlog_len(&self) -> usize {
        lock(&self.inner.backlog).len()
    }

    /// Appends `entries` (in this order, consecutive in the chain unless other callers' batches
    /// are interleaved between calls) and returns once they are durable.
    pub async fn commit(&self, entries: Vec<AuditEntry>) -> Answer {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, mut answer) = oneshot::channel();
        lock(&self.inner.queue).push(Waiting { entries, reply });
        let guard = self.inner.log.clone().lock_owned().await;
        if let Ok(done) = answer.try_recv() {
            return done;
        }
        let batch = std::mem::take(&mut *lock(&self.inner.queue));
        let inner = self.inner.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut log = guard;
            write_batch(&inner, &mut log, batch);
        })
        .await;
        if let Err(e) = written {
            // The write panicked: the answers were dropped with it.
            return Err(CommitError::Write(format!("the audit writer failed: {e}")));
        }
        answer.try_recv().unwrap_or_else(|_| {
            Err(CommitError::Write(
                "the audit writer dropped the batch".into(),
            ))
        })
    }

    /// Runs `f` on the log (for the rare operations that are not appends), after any commit in
    /// progress.
    pub async fn with_log<T>(&self, f: impl FnOnce(&mut AuditLog) -> T) -> T {
        let mut log = self.inner.log.lock().await;
        let out = f(&mut log);
        let (seq, hash) = log.head();
        *lock(&self.inner.head) = (seq, hash.to_string());
        out
    }

    /// Why the log cannot be written now, or `Ok` when it can.
    pub async fn check_writable(&self) -> Result<(), String> {
        self.with_log(AuditLog::check_writable).await
    }

    /// Queues a line written outside [`Journal::commit`] (a gap record) for the stream.
    pub fn queue_line(&self, rec: &AuditRecord) {
        push_backlog(&self.inner, rec.seq, rec.to_line());
    }

    /// Publishes the backlog to the stream, oldest first. Returns how many lines went out.
    pub async fn flush(&self, broker: &dyn Broker) -> Result<usize, BrokerError> {
        let _one = self.inner.publishing.lock().await;
        let mut sent = 0;
        loop {
            let lines: Vec<(u64, String)> = lock(&self.inner.backlog)
                .iter()
                .take(PUBLISH_BATCH)
                .cloned()
                .collect();
            let Some(&(last, _)) = lines.last() else {
                return Ok(sent);
            };
            let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
            broker.publish_audit_batch(&text).await?;
            sent += text.len();
            let mut backlog = lock(&self.inner.backlog);
            while backlog.front().is_some_and(|(seq, _)| *seq <= last) {
                backlog.pop_front();
            }
        }
    }

    /// Replaces the backlog with every file record after `stream_seq` (at most
    /// [`MAX_BACKLOG`]), keeping queued lines newer than the file's, then publishes it.
    pub async fn resync(&self, broker: &dyn Broker, stream_seq: u64) -> Result<usize, ResyncError> {
        {
            let _one = self.inner.publishing.lock().await;
            let file_lines = self
                .with_log(|log| log.lines_after(stream_seq, MAX_BACKLOG))
                .await
                .map_err(ResyncError::Audit)?;
            let mut fresh: VecDeque<(u64, String)> = file_lines
                .into_iter()
                .filter_map(|l| Some((line_seq(&l)?, l)))
                .collect();
            let newest = fresh.back().map_or(stream_seq, |(s, _)| *s);
            let mut backlog = lock(&self.inner.backlog);
            fresh.extend(backlog.drain(..).filter(|(s, _)| *s > newest));
            *backlog = fresh;
        }
        self.flush(broker).await.map_err(ResyncError::Broker)
    }
}

/// Why [`Journal::resync`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error(transparent)]
    Audit(AuditError),
    #[error(transparent)]
    Broker(BrokerError),
}

fn line_seq(line: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(line).ok().map(|s| s.seq)
}

fn push_backlog(inner: &Inner, seq: u64, line: String) {
    let mut backlog = lock(&inner.backlog);
    if backlog.len() >= MAX_BACKLOG {
        backlog.pop_front();
    }
    backlog.push_back((seq, line));
}

/// Checks, appends and syncs every queued caller's entries at once, then answers each.
fn write_batch(inner: &Inner, log: &mut AuditLog, batch: Vec<Waiting>) {
    let mut sizes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut all = Vec::new();
    for w in batch {
        sizes.push(w.entries.len());
        replies.push(w.reply);
        all.extend(w.entries);
    }
    let result = log
        .check_writable()
        .map_err(CommitError::CannotAudit)
        .and_then(|()| {
            log.append_batch(all)
                .map_err(|e| CommitError::Write(e.to_string()))
        });
    match result {
        Ok(records) => {
            inner
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(last) = records.last() {
                *lock(&inner.head) = (last.seq, last.hash.clone());
            }
            for rec in &records {
                push_backlog(inner, rec.seq, rec.to_line());
            }
            let mut records = records.into_iter();
            for (n, reply) in sizes.into_iter().zip(replies) {
                let mine: Vec<AuditRecord> = records.by_ref().take(n).collect();
                let _ = reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
