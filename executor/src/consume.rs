//! The consumer loop: reads the requests stream a batch at a time and sorts each batch.
//!
//! - **Decided at once** (no Docker call, no policy): entries that are not requests
//!   (`malformed`) and requests that do not verify (`rejected`). A whole batch of them is handled
//!   together: leases taken in one round trip, the records written with one group commit (one
//!   sync), then one `XACK` and the leases dropped. Several such batches are in flight at once, so
//!   the next batch is read and verified while the last one syncs. Verification is split across
//!   the runtime's threads. Each is audited; the log names the first few of each reason and
//!   summarises the rest ([`crate::rejections`]), which the loop closes every step.
//! - **Requests that verify** go to [`Lanes`] keyed by their target's name: requests for
//!   different containers run side by side (at most `EXECUTOR_CONCURRENCY`), requests for one
//!   container one after the other in stream order. Each runs the whole pipeline under its
//!   lease ([`RedisSource::process`]), and is verified again when it starts (it may have waited).
//! - **Re-delivered entries** (this consumer's pending ones after a restart, reclaimed ones) go to
//!   lanes one by one as well, so the dead-letter count and the lease checks apply to each.
//!
//! An entry is acknowledged only once its record is durable. Nothing is read while the audit log
//! cannot be written. When a job fails (Redis, the audit), its entry stays pending and the loop
//! goes through its error path (backoff, re-reading its own pending entries). On shutdown no new
//! job starts; those running finish.

use crate::lanes::Lanes;
use crate::pipeline::{Pipeline, PipelineError, malformed_entry, rejection_entry};
use crate::serve::Health;
use crate::source::{BACKOFF_MAX, BACKOFF_START, RedisSource, SourceError};
use crate::stream_entry::{Entry, Malformed};
use crate::verify::Rejected;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigil_shared::backoff::Backoff;
use vigil_shared::time::Timestamp;

/// How often a blocked audit log is checked again.
const AUDIT_RETRY: Duration = Duration::from_millis(500);
/// Batches of rejections in flight at once (reading and verifying the next while one syncs).
const QUICK_IN_FLIGHT: usize = 4;
/// Verified requests queued or running per unit of concurrency before reading pauses.
const QUEUED_PER_SLOT: usize = 16;
/// Below this many entries verification runs on one thread.
const SPLIT_VERIFY_AT: usize = 16;

/// An entry decided without the pipeline's Docker side.
enum Quick {
    Malformed(Entry, Malformed),
    Rejected(Entry, Rejected, u64),
}

impl Quick {
    fn entry(&self) -> &Entry {
        match self {
            Quick::Malformed(e, _) | Quick::Rejected(e, _, _) => e,
        }
    }
}

/// What the loop shares with the jobs it starts.
#[derive(Clone)]
struct Work {
    source: RedisSource,
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
    lanes: Lanes,
    quick: TaskTracker,
    quick_slots: Arc<Semaphore>,
    /// The first error of a job since the loop last looked.
    failure: Arc<Mutex<Option<SourceError>>>,
    /// Entries queued or running here: never dispatched or reclaimed a second time meanwhile.
    in_flight: Arc<Mutex<HashSet<String>>>,
    cancel: CancellationToken,
}

impl Work {
    fn report(&self, result: Result<(), SourceError>) {
        self.health.set_audit_head(self.pipeline.audit_head());
        if let Err(e) = result {
            let mut slot = crate::pipeline::lock(&self.failure);
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    fn is_in_flight(&self, id: &str) -> bool {
        crate::pipeline::lock(&self.in_flight).contains(id)
    }

    fn done(&self, ids: impl IntoIterator<Item = String>) {
        let mut set = crate::pipeline::lock(&self.in_flight);
        for id in ids {
            set.remove(&id);
        }
    }

    fn take_failure(&self) -> Result<(), SourceError> {
        match crate::pipeline::lock(&self.failure).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `entry` through the whole pipeline in the lane `key`.
    fn submit(&self, key: String, entry: Entry, redelivered: bool) {
        let work = self.clone();
        self.lanes.submit(
            key,
            Box::pin(async move {
                if work.cancel.is_cancelled() {
                    // Not started: it stays pending and is picked up again.
                    work.done([entry.id]);
                    return;
                }
                let r = work
                    .source
                    .process(&work.pipeline, &entry, redelivered)
                    .await;
                work.done([entry.id]);
                work.report(r);
            }),
        );
    }

    /// Sorts a batch: re-delivered entries and verified requests to lanes, the rest decided
    /// together in a batch task.
    async fn dispatch(&self, entries: Vec<Entry>, redelivered: bool) -> Result<(), SourceError> {
        let entries: Vec<Entry> = {
            let mut set = crate::pipeline::lock(&self.in_flight);
            entries
                .into_iter()
                .filter(|e| set.insert(e.id.clone()))
                .collect()
        };
        if entries.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let mut sent: HashSet<String> = entries.iter().map(|e| e.id.clone()).collect();
        let verdicts = verify_all(&self.pipeline, entries, now).await;
        for (e, _) in &verdicts {
            sent.remove(&e.id);
        }
        // Whatever verification lost (a panic) stays pending and may be taken up again.
        self.done(sent);
        let mut quick = Vec::new();
        let mut gone = Vec::new();
        for (entry, verdict) in verdicts {
            match verdict {
                _ if entry.deleted => gone.push(entry.id),
                Verdict::Valid(name) => self.submit(format!("t:{name}"), entry, redelivered),
                _ if redelivered => self.submit(format!("e:{}", entry.id), entry, true),
                Verdict::Malformed(why) => quick.push(Quick::Malformed(entry, why)),
                Verdict::Rejected(r, took) => quick.push(Quick::Rejected(entry, r, took)),
            }
        }
        if quick.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = quick
            .iter()
            .map(|q| q.entry().id.clone())
            .chain(gone.iter().cloned())
            .collect();
        let Ok(permit) = self.quick_slots.clone().acquire_owned().await else {
            self.done(ids);
            return Err(SourceError::Reply("the batch slots were closed".into()));
        };
        let work = self.clone();
        self.quick.spawn(async move {
            let r = decide_quick(&work, quick, gone).await;
            drop(permit);
            work.done(ids);
            work.report(r);
        });
        Ok(())
    }
}

enum Verdict {
    Valid(String),
    Malformed(Malformed),
    Rejected(Rejected, u64),
}

fn verdict(pipeline: &Pipeline, entry: &Entry, now: Timestamp) -> Verdict {
    let started = Instant::now();
    let raw = match entry.check(now) {
        Ok(raw) => raw,
        Err(why) => return Verdict::Malformed(why),
    };
    match pipeline.verifier().verify(raw, now) {
        Ok(v) => Verdict::Valid(v.payload.target.name),
        Err(r) => Verdict::Rejected(r, crate::pipeline::elapsed_ms(started)),
    }
}

/// Verifies a batch, half of it on another task when it is large (ed25519 is the costly part of
/// a rejection). Keeps the batch's order.
async fn verify_all(
    pipeline: &Arc<Pipeline>,
    mut entries: Vec<Entry>,
    now: Timestamp,
) -> Vec<(Entry, Verdict)> {
    let judge = move |p: &Pipeline, entries: Vec<Entry>| -> Vec<(Entry, Verdict)> {
        entries
            .into_iter()
            .map(|e| {
                let v = verdict(p, &e, now);
                (e, v)
            })
            .collect()
    };
    if entries.len() < SPLIT_VERIFY_AT {
        return judge(pipeline, entries);
    }
    let second = entries.split_off(entries.len() / 2);
    let p = pipeline.clone();
    let other = tokio::spawn(async move { judge(&p, second) });
    let mut out = judge(pipeline, entries);
    match other.await {
        Ok(rest) => out.extend(rest),
        // Only a panic: the second half is simply not handled now (it stays pending).
        Err(e) => tracing::error!(error = %e, "Verifying half a batch failed."),
    }
    out
}

/// Leases, records (one commit), acknowledges and releases a batch of quick decisions.
async fn decide_quick(
    work: &Work,
    quick: Vec<Quick>,
    gone: Vec<String>,
) -> Result<(), SourceError> {
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    work.source.ack_many(&gone).await?;
    let claims = work.source.claims();
    let ids: Vec<&str> = quick.iter().map(|q| q.entry().id.as_str()).collect();
    let held = claims.acquire_many(&ids).await?;
    let leased: Vec<&Quick> = quick
        .iter()
        .zip(&held)
        .filter(|(_, h)| **h)
        .map(|(q, _)| q)
        .collect();
    let leased_ids: Vec<&str> = leased.iter().map(|q| q.entry().id.as_str()).collect();
    let result = async {
        let pending = claims.still_pending_many(&leased_ids).await?;
        let todo: Vec<&Quick> = leased
            .iter()
            .zip(&pending)
            .filter(|(_, p)| **p)
            .map(|(q, _)| *q)
            .collect();
        let now = Timestamp::now();
        let log = work.pipeline.rejections();
        let records = todo
            .iter()
            .map(|q| match q {
                Quick::Malformed(e, why) => malformed_entry(log, &e.id, e.size, why.as_str(), now),
                Quick::Rejected(e, r, took) => rejection_entry(log, &e.id, r, now, *took),
            })
            .collect();
        work.pipeline.record_batch(records).await?;
        let done: Vec<&str> = todo.iter().map(|q| q.entry().id.as_str()).collect();
        work.source.ack_many(&done).await?;
        for q in &todo {
            if let Quick::Malformed(e, Malformed::FutureId) = q {
                work.source.heal_future_id(&e.id).await?;
            }
        }
        Ok::<(), SourceError>(())
    }
    .await;
    if let Err(e) = claims.release_many(&leased_ids).await {
        tracing::warn!(error = %e, "Cannot release leases; they lapse on their own.");
    }
    result?;
    if let Err(e) = work.pipeline.flush_audit_stream().await {
        tracing::warn!(error = %e, "Cannot publish to the audit stream; the records are in the file and will be published later.");
    }
    Ok(())
}

/// Sleeps `d`; true when cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The consumer loop: runs until `cancel`, never returns early on a Redis error. Requests being
/// acted on are always finished (audited and acknowledged) before it returns.
pub async fn consume(
    source: RedisSource,
    pipeline: Pipeline,
    health: Arc<Health>,
    concurrency: usize,
    cancel: CancellationToken,
) {
    let work = Work {
        source: source.clone(),
        pipeline: Arc::new(pipeline),
        health: health.clone(),
        lanes: Lanes::new(concurrency),
        quick: TaskTracker::new(),
        quick_slots: Arc::new(Semaphore::new(QUICK_IN_FLIGHT)),
        failure: Arc::new(Mutex::new(None)),
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        cancel: cancel.clone(),
    };
    let pipeline = work.pipeline.clone();
    let max_queued = concurrency.max(1) * QUEUED_PER_SLOT;
    let opts = source.options().clone();
    let reclaim_every = opts.reclaim_idle.min(Duration::from_secs(10));
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let mut needs_setup = true;
    let mut last_reclaim = Instant::now();
    health.set_audit_head(pipeline.audit_head());
    let mut told_problem: Option<String> = None;
    while !cancel.is_cancelled() {
        let step = async {
            // Fail closed: while the audit cannot be written nothing is read or done.
            match pipeline.check_audit().await {
                Ok(()) => health.set_audit_problem(None),
                Err(why) => {
                    health.set_audit_problem(Some(why.clone()));
                    return Err(SourceError::Pipeline(PipelineError::CannotAudit(why)));
                }
            }
            work.take_failure()?;
            if needs_setup {
                source.load_functions().await?;
                source.ensure_group().await?;
                pipeline.resolve_intents().await?;
                pipeline.resync_audit_stream().await?;
                let mut after = "0".to_string();
                loop {
                    let pending = source.read_own_pending(&after).await?;
                    let Some(last) = pending.last() else { break };
                    if !stream_id_after(&last.id, &after) {
                        // A reply that does not move forward would make this loop spin.
                        return Err(SourceError::Reply(format!(
                            "pending entries did not advance past {after}"
                        )));
                    }
                    after = last.id.clone();
                    work.dispatch(pending, true).await?;
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                }
                needs_setup = false;
                tracing::info!(
                    redis.consumer = %opts.consumer,
                    concurrency,
                    "Consuming the requests stream."
                );
            }
            if last_reclaim.elapsed() >= reclaim_every {
                let mut start = "-".to_string();
                for _ in 0..8 {
                    let ours = |id: &str| work.is_in_flight(id);
                    let (next, claimed) = source.reclaim(&start, &ours).await?;
                    work.dispatch(claimed, true).await?;
                    if next == "-" || cancel.is_cancelled() {
                        break;
                    }
                    start = next;
                }
                last_reclaim = Instant::now();
                pipeline.prune(Timestamp::now());
            }
            if work.lanes.pending() >= max_queued {
                // Enough requests wait for their containers: read on once some are done.
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = work.lanes.some_finished() => {}
                    _ = tokio::time::sleep(crate::source::BLOCK) => {}
                }
                return Ok(());
            }
            let entries = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                read = source.read_new(crate::source::READ_BATCH) => read?,
            };
            work.dispatch(entries, false).await?;
            pipeline.flush_audit_stream().await?;
            Ok::<(), SourceError>(())
        };
        let stepped = step.await;
        pipeline.rejections().tick();
        match stepped {
            Ok(()) => {
                health.consumer_progress(Timestamp::now());
                health.set_audit_head(pipeline.audit_head());
                health
                    .redis_ok
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                backoff.reset();
                if told_problem.take().is_some() {
                    tracing::info!("The audit log can be written again; handling requests.");
                }
            }
            Err(SourceError::Pipeline(PipelineError::CannotAudit(why))) => {
                // Not a Redis problem: keep the connection state, retry soon, log once per cause.
                health.set_audit_problem(Some(why.clone()));
                needs_setup = true;
                if told_problem.as_deref() != Some(why.as_str()) {
                    tracing::error!(reason = %why, "Cannot write the audit log: acting on nothing; requests stay pending until it works.");
                    told_problem = Some(why);
                }
                if sleep_or_cancel(AUDIT_RETRY, &cancel).await {
                    break;
                }
            }
            Err(e) => {
                health
                    .redis_ok
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                needs_setup = true;
                let wait = backoff.next_delay();
                if matches!(
                    e,
                    SourceError::Pipeline(PipelineError::Audit(_) | PipelineError::Write(_))
                ) {
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "Cannot write the audit log; requests wait until it works.");
                } else {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Request stream step failed; retrying.");
                }
                if sleep_or_cancel(wait, &cancel).await {
                    break;
                }
            }
        }
    }
    tracing::info!(
        in_flight = work.lanes.pending(),
        "Request consumer stopping: finishing the requests being acted on."
    );
    work.lanes.close().await;
    work.quick.close();
    work.quick.wait().await;
    pipeline.rejections().finish();
    if let Err(e) = pipeline.flush_audit_stream().await {
        tracing::warn!(error = %e, "Cannot publish the last audit records; the next start does.");
    }
    tracing::info!("Request consumer stopped.");
}

/// Whether stream id `a` sorts after `b` (`ms-seq`, numerically; anything unparsable is not).
fn stream_id_after(a: &str, b: &str) -> bool {
    fn parts(id: &str) -> Option<(u64, u64)> {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        Some((ms.parse().ok()?, seq.parse().ok()?))
    }
    matches!((parts(a), parts(b)), (Some(a), Some(b)) if a > b)
}

#[cfg(test)]
mod tests {
    use super::stream_id_after;

    #[test]
    fn stream_ids_compare_numerically() {
        assert!(stream_id_after("10-0", "9-5"));
        assert!(stream_id_after("1-1", "0"));
        assert!(!stream_id_after("1-1", "1-1"));
        assert!(!stream_id_after("x", "0"));
    }
}
