//! The stats task: CPU and memory samples of the running containers, off the sweep's path.
//!
//! Every [`PERIOD`] (start to start; a late round delays the next, never overlaps it) the task
//! reads a one-shot stats sample of each running container the last sweep found, with at most
//! `concurrency` requests in flight, and sends them as one [`Observation::Stats`]. The engine
//! answers a stats request at its collector's next tick (about once a second), and answers every
//! request waiting for that tick at once, so a round of N containers takes about
//! ceil(N / concurrency) seconds. Reading in rounds was chosen over one long-lived stats stream
//! per container: a stream makes the engine collect every container's stats every second and
//! holds a connection per container, a round costs one collection per container per period.
//!
//! A failed read only loses that container's sample (a container that stopped since the sweep
//! answers 404 or an empty sample, which is dropped). Whether the engine answers is the events
//! stream's and the sweep's to report, so this task reports no source health of its own.

use super::{Observation, StatsBatch, emit};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vigil_docker::{DockerClient, StatsSample};
use vigil_shared::time::Timestamp;

/// How often a round starts: samples are at most this old, plus one round's duration.
pub const PERIOD: Duration = Duration::from_secs(5);

/// The default of `docker.stats_concurrency`. The engine answers the calls waiting at each
/// collector tick (about 1.1 s apart on a busy host) together, so a round of N containers takes
/// ceil(N / this) ticks: 55 makes 200 containers 4 ticks (about 4.4 s), where 48 made them 5
/// (5.4 to 6.3 s). It is the most the read-only gate's 64 connections leave to the stats task
/// beside the sweep's [`super::sweep::INSPECT_CONCURRENCY`] inspects and the event stream; more
/// would only queue in the gate. 1,000 containers in one round of 5 s need about 250 in flight
/// (and a gate that serves that many).
pub const DEFAULT_STATS_CONCURRENCY: usize = 55;

/// One round: a sample of each of `ids` that could be read.
pub async fn round(client: &DockerClient, ids: &[String], concurrency: usize) -> StatsBatch {
    let at = Timestamp::now();
    let mut reads = futures_util::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let read = client.stats_once(&id).await;
            (id, read)
        })
        .buffer_unordered(concurrency.max(1));
    let mut samples = BTreeMap::new();
    while let Some((id, read)) = reads.next().await {
        match read {
            Ok(sample) if has_counters(&sample) => {
                samples.insert(id, sample);
            }
            Ok(_) => tracing::debug!(container.id = %id, "Empty stats (not running); skipped"),
            Err(e) if e.is_not_found() => {
                tracing::debug!(container.id = %id, "Container vanished before stats");
            }
            Err(e) => {
                tracing::debug!(container.id = %id, error = %e, "Stats unavailable; sample skipped")
            }
        }
    }
    StatsBatch { at, samples }
}

/// A stopped container's stats carry no counters at all.
fn has_counters(s: &StatsSample) -> bool {
    s.cpu_total > 0 || s.memory_usage > 0
}

/// Reads rounds every [`PERIOD`] of the containers last published on `running` until `cancel`.
/// Waits for the first publication (the first sweep) before the first round.
pub async fn run(
    client: DockerClient,
    mut running: watch::Receiver<Vec<String>>,
    concurrency: usize,
    period: Duration,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        changed = running.changed() => if changed.is_err() { return },
    }
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let ids = running.borrow_and_update().clone();
        if ids.is_empty() {
            continue;
        }
        let started = Instant::now();
        let batch = tokio::select! {
            _ = cancel.cancelled() => return,
            b = round(&client, &ids, concurrency) => b,
        };
        let took = started.elapsed();
        if took > period {
            tracing::info!(
                stats.took_ms = took.as_millis() as u64,
                stats.containers = ids.len(),
                stats.concurrency = concurrency,
                "Stats round took longer than its period; raise docker.stats_concurrency to \
                 keep CPU and memory fresh."
            );
        } else {
            tracing::debug!(
                stats.took_ms = took.as_millis() as u64,
                stats.samples = batch.samples.len(),
                "Stats round done"
            );
        }
        if !emit(&tx, &cancel, Observation::Stats(batch)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep tests' fake engine: `aaa` has stats, `zzz` answers an empty sample, anything
    /// else is gone.
    async fn fake_engine() -> DockerClient {
        crate::collect::sweep::tests::fake_engine(std::sync::Arc::new(|path: &str| {
            Some(match path {
                p if p.starts_with("/v1.41/containers/aaa/stats") => (200, STATS.to_owned()),
                p if p.starts_with("/v1.41/containers/zzz/stats") => (200, EMPTY.to_owned()),
                _ => (404, r#"{"message":"No such container"}"#.to_owned()),
            })
        }))
        .await
    }

    const STATS: &str = r#"{"read":"2026-11-23T22:30:47Z","cpu_stats":{"cpu_usage":{"total_usage":5000},"system_cpu_usage":900000,"online_cpus":4},"memory_stats":{"usage":10000,"stats":{"inactive_file":3000},"limit":67108864}}"#;
    const EMPTY: &str = r#"{"read":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":0}},"memory_stats":{}}"#;

    #[tokio::test]
    async fn a_round_keeps_the_samples_it_could_read() {
        let client = fake_engine().await;
        let ids = ["aaa", "gone", "zzz"].map(String::from);
        let batch = round(&client, &ids, 2).await;
        assert_eq!(batch.samples.keys().collect::<Vec<_>>(), ["aaa"]);
        assert_eq!(batch.samples["aaa"].working_set(), 7000);
    }

    #[tokio::test]
    async fn rounds_follow_what_the_sweep_published() {
        let client = fake_engine().await;
        let (running_tx, running) = watch::channel(Vec::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            client,
            running,
            4,
            Duration::from_millis(20),
            tx,
            cancel.clone(),
        ));
        // Nothing before the first sweep.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), rx.recv())
                .await
                .is_err()
        );
        running_tx.send_replace(vec!["aaa".into()]);
        for _ in 0..2 {
            let o = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            match o {
                Observation::Stats(b) => assert!(b.samples.contains_key("aaa")),
                other => panic!("expected stats, got {other:?}"),
            }
        }
        cancel.cancel();
        task.await.unwrap();
    }
}
