//! The stats task: CPU and memory samples of the running containers, off the sweep's path.
//!
//! Two sources give the same [`StatsSample`]s (so CPU % and memory % are computed once, by the
//! sample, whichever gave it):
//! - the host's cgroup files ([`super::cgroup`]), read directly: a round of 1,000 containers
//!   takes milliseconds and costs the engine nothing, so rounds start every [`CGROUP_PERIOD`]
//!   and CPU % is the rate between two consecutive samples;
//! - the engine's one-shot stats API, for the containers whose cgroup files cannot be found or
//!   read (or every container, when the cgroup root holds no hierarchy). The engine answers a
//!   stats request at its collector's next tick (about once a second), and answers every
//!   request waiting for that tick at once, so a round of N containers takes about
//!   ceil(N / concurrency) seconds with at most `concurrency` requests in flight. These reads
//!   happen at most every [`ENGINE_PERIOD`]; when no container could be read from cgroups,
//!   rounds start every [`ENGINE_PERIOD`] instead.
//!
//! Rounds are timed start to start; a late round delays the next, never overlaps it. Reading in
//! rounds was chosen over one long-lived stats stream per container: a stream makes the engine
//! collect every container's stats every second and holds a connection per container.
//!
//! A failed read only loses that container's sample (a container that stopped since the sweep
//! has no cgroup left and answers the engine with 404 or an empty sample, which is dropped).
//! Whether the engine answers is the events stream's and the sweep's to report, so this task
//! reports no source health of its own; which source is in use is logged when it changes and
//! counted in `vigil_watchdog_stats_samples_total{source}`.

use super::cgroup::{CgroupDriver, CgroupError, Hierarchy, read_host};
use super::{Observation, StatsBatch, emit};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vigil_docker::{DockerClient, StatsSample};
use vigil_shared::time::Timestamp;

/// How often a round starts when the cgroup files can be read: CPU % is over about this long.
pub const CGROUP_PERIOD: Duration = Duration::from_secs(2);

/// How often the engine's stats API is asked, for the containers the cgroup files did not give:
/// samples are at most this old, plus one round's duration.
pub const ENGINE_PERIOD: Duration = Duration::from_secs(5);

/// An engine read is due this much before a full [`ENGINE_PERIOD`] has passed, so rounds
/// [`ENGINE_PERIOD`] apart do not miss it by a timer's jitter.
const ENGINE_SLACK: Duration = Duration::from_millis(250);

/// The default of `docker.stats_concurrency`. The engine answers the calls waiting at each
/// collector tick (about 1.1 s apart on a busy host) together, so a round of N containers takes
/// ceil(N / this) ticks: 55 makes 200 containers 4 ticks (about 4.4 s), where 48 made them 5
/// (5.4 to 6.3 s). It is the most the read-only gate's 64 connections leave to the stats task
/// beside the sweep's [`super::sweep::INSPECT_CONCURRENCY`] inspects and the event stream; more
/// would only queue in the gate. Only containers the cgroup files do not give are read this way.
pub const DEFAULT_STATS_CONCURRENCY: usize = 55;

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSource {
    Cgroup,
    Engine,
}

impl StatsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            StatsSource::Cgroup => "cgroup",
            StatsSource::Engine => "engine",
        }
    }
}

/// Counters the stats task keeps for the metrics endpoint.
#[derive(Debug, Default)]
pub struct StatsCounters {
    /// Samples read from cgroup files, over all rounds.
    pub cgroup: AtomicU64,
    /// Samples read through the engine's stats API, over all rounds.
    pub engine: AtomicU64,
    /// Wall time of the last round, ms.
    pub last_round_ms: AtomicU64,
}

/// One engine round: a sample of each of `ids` that could be read through the stats API.
pub async fn engine_round(
    client: &DockerClient,
    ids: &[String],
    concurrency: usize,
) -> BTreeMap<String, StatsSample> {
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
    samples
}

/// A stopped container's stats carry no counters at all.
fn has_counters(s: &StatsSample) -> bool {
    s.cpu_total > 0 || s.memory_usage > 0
}

/// The cgroup files under a root, read with blocking file reads (call from a blocking thread).
/// Remembers the hierarchy it found and the layout the last container was in.
#[derive(Debug)]
pub struct CgroupSource {
    root: PathBuf,
    proc_root: PathBuf,
    hierarchy: Option<Hierarchy>,
    driver: Option<CgroupDriver>,
}

/// What one read of the cgroup files gave.
#[derive(Debug, Default)]
pub struct CgroupRound {
    pub samples: BTreeMap<String, StatsSample>,
    /// The ids that could not be read (for the engine to try).
    pub missed: Vec<String>,
    /// The first reason a container could not be read, or why none could.
    pub problem: Option<CgroupError>,
    /// Whether the files are the source to use: the hierarchy and `/proc` could be read, and a
    /// container was found, in this read or an earlier one (when every container is missing
    /// after one was found, they stopped since the sweep: the engine has nothing for them
    /// either).
    pub usable: bool,
}

impl CgroupSource {
    /// `root` holds the cgroup hierarchy (`/sys/fs/cgroup`), `proc_root` the host's `/proc`.
    pub fn new(root: impl Into<PathBuf>, proc_root: impl Into<PathBuf>) -> CgroupSource {
        CgroupSource {
            root: root.into(),
            proc_root: proc_root.into(),
            hierarchy: None,
            driver: None,
        }
    }

    /// The hierarchy and layout the last read found, for logs: `cgroup v1 (cgroupfs) at /x`.
    pub fn describe(&self) -> String {
        match &self.hierarchy {
            Some(h) => format!(
                "{} ({}) at {}",
                h.version(),
                self.driver
                    .map_or("no container found yet", CgroupDriver::as_str),
                h.root().display()
            ),
            None => format!("nothing found yet at {}", self.root.display()),
        }
    }

    /// Reads a sample of each of `ids`. Blocking: a few small files per container.
    pub fn read(&mut self, ids: &[String]) -> CgroupRound {
        let all_missed = |problem| CgroupRound {
            samples: BTreeMap::new(),
            missed: ids.to_vec(),
            problem: Some(problem),
            usable: false,
        };
        let hierarchy = match &self.hierarchy {
            Some(h) => h.clone(),
            None => match Hierarchy::probe(&self.root) {
                Ok(h) => self.hierarchy.insert(h).clone(),
                Err(e) => return all_missed(e),
            },
        };
        let started = Instant::now();
        let host = match read_host(&self.proc_root) {
            Ok(h) => h,
            Err(e) => return all_missed(e),
        };
        let at = Timestamp::now();
        let mut round = CgroupRound::default();
        let mut read_after = Vec::with_capacity(ids.len());
        for id in ids {
            let read = hierarchy
                .find(id, self.driver)
                .and_then(|dirs| Ok((dirs.driver, hierarchy.read(&dirs)?)));
            match read {
                Ok((driver, counters)) => {
                    self.driver = Some(driver);
                    read_after.push((id, started.elapsed()));
                    round
                        .samples
                        .insert(id.clone(), counters.to_sample(&host, at));
                }
                Err(e) => {
                    tracing::debug!(container.id = %id, error = %e, "No cgroup sample");
                    round.missed.push(id.clone());
                    round.problem.get_or_insert(e);
                }
            }
        }
        // The host's CPU total at the moment each container was read, so a round that takes
        // longer than the last (a loaded host, many containers) does not skew CPU %.
        if let Ok(end) = read_host(&self.proc_root) {
            let span = started.elapsed();
            for (id, after) in read_after {
                if let Some(sample) = round.samples.get_mut(id) {
                    sample.system_cpu = interpolate(host.system_cpu, end.system_cpu, after, span);
                }
            }
        }
        if round.samples.is_empty() {
            // Maybe another hierarchy is mounted there now: probe again next time.
            self.hierarchy = None;
        }
        round.usable = self.driver.is_some();
        round
    }
}

/// The value a counter going from `from` to `to` over `span` had `after` into it.
fn interpolate(from: u64, to: u64, after: Duration, span: Duration) -> u64 {
    if to <= from || span.is_zero() {
        return from;
    }
    let frac = after.as_secs_f64() / span.as_secs_f64();
    from + ((to - from) as f64 * frac.clamp(0.0, 1.0)) as u64
}

/// Reads stats rounds: from the cgroup files when it has a [`CgroupSource`], else (and for what
/// they miss) through the engine.
#[derive(Debug)]
pub struct Sampler {
    client: DockerClient,
    concurrency: usize,
    cgroups: Option<Arc<Mutex<CgroupSource>>>,
    last_engine: Option<Instant>,
    /// Whether the last round found the cgroup files usable (None before the first).
    cgroups_working: Option<bool>,
    counters: Arc<StatsCounters>,
}

impl Sampler {
    /// Engine only, at most `concurrency` stats requests in flight.
    pub fn new(client: DockerClient, concurrency: usize) -> Sampler {
        Sampler {
            client,
            concurrency,
            cgroups: None,
            last_engine: None,
            cgroups_working: None,
            counters: Arc::default(),
        }
    }

    /// Reads the cgroup files first.
    pub fn with_cgroups(mut self, source: CgroupSource) -> Sampler {
        self.cgroups = Some(Arc::new(Mutex::new(source)));
        self
    }

    /// Counts samples into `counters` (the metrics endpoint's).
    pub fn with_counters(mut self, counters: Arc<StatsCounters>) -> Sampler {
        self.counters = counters;
        self
    }

    /// How long from one round's start to the next's.
    pub fn period(&self) -> Duration {
        match (&self.cgroups, self.cgroups_working) {
            (Some(_), None | Some(true)) => CGROUP_PERIOD,
            _ => ENGINE_PERIOD,
        }
    }

    /// One round over `ids`: the cgroup files first, then the engine for what they missed (when
    /// an engine read is due).
    pub async fn round(&mut self, ids: &[String]) -> StatsBatch {
        let at = Timestamp::now();
        let mut round = match &self.cgroups {
            Some(source) => {
                let source = source.clone();
                let wanted = ids.to_vec();
                let read = tokio::task::spawn_blocking(move || {
                    source
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .read(&wanted)
                })
                .await;
                match read {
                    Ok(round) => round,
                    Err(e) => {
                        tracing::warn!(error = %e, "The cgroup read failed; using the engine.");
                        CgroupRound {
                            missed: ids.to_vec(),
                            ..CgroupRound::default()
                        }
                    }
                }
            }
            None => CgroupRound {
                missed: ids.to_vec(),
                ..CgroupRound::default()
            },
        };
        self.note_cgroups(&round);
        let from_cgroups = round.samples.len();
        let engine_due = self
            .last_engine
            .is_none_or(|t| t.elapsed() + ENGINE_SLACK >= ENGINE_PERIOD);
        let mut from_engine = 0;
        if !round.missed.is_empty() && engine_due {
            self.last_engine = Some(Instant::now());
            let read = engine_round(&self.client, &round.missed, self.concurrency).await;
            from_engine = read.len();
            round.samples.extend(read);
        }
        self.counters
            .cgroup
            .fetch_add(from_cgroups as u64, Ordering::Relaxed);
        self.counters
            .engine
            .fetch_add(from_engine as u64, Ordering::Relaxed);
        StatsBatch {
            at,
            samples: round.samples,
            from_cgroups,
            from_engine,
        }
    }

    /// Logs when the source in use changes.
    fn note_cgroups(&mut self, round: &CgroupRound) {
        let Some(source) = &self.cgroups else {
            if self.cgroups_working.is_none() {
                tracing::info!(
                    stats.source = StatsSource::Engine.as_str(),
                    "Reading container CPU and memory through the engine's stats API."
                );
                self.cgroups_working = Some(false);
            }
            return;
        };
        let working = round.usable;
        if self.cgroups_working != Some(working) {
            let problem = round.problem.as_ref().map(ToString::to_string);
            if working {
                let at = source.lock().unwrap_or_else(|p| p.into_inner()).describe();
                tracing::info!(
                    stats.source = StatsSource::Cgroup.as_str(),
                    cgroup = %at,
                    "Reading container CPU and memory from cgroup files."
                );
            } else {
                tracing::warn!(
                    stats.source = StatsSource::Engine.as_str(),
                    error = problem.as_deref().unwrap_or("no containers"),
                    "Cannot read container cgroups; reading CPU and memory through the engine's \
                     stats API instead (slower, and load on the engine). Mount the host's \
                     /sys/fs/cgroup read-only and set WATCHDOG_CGROUP_ROOT."
                );
            }
            self.cgroups_working = Some(working);
        }
        if working && !round.missed.is_empty() {
            tracing::debug!(
                stats.missed = round.missed.len(),
                error = round
                    .problem
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                "Some containers have no readable cgroup; reading them through the engine."
            );
        }
    }
}

/// Reads rounds of the containers last published on `running` until `cancel`, one every
/// [`Sampler::period`]. Waits for the first publication (the first sweep) before the first round.
pub async fn run(
    mut sampler: Sampler,
    mut running: watch::Receiver<Vec<String>>,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        changed = running.changed() => if changed.is_err() { return },
    }
    loop {
        let started = tokio::time::Instant::now();
        let ids = running.borrow_and_update().clone();
        if !ids.is_empty() {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return,
                b = sampler.round(&ids) => b,
            };
            let took = started.elapsed();
            sampler
                .counters
                .last_round_ms
                .store(took.as_millis() as u64, Ordering::Relaxed);
            if took > sampler.period() {
                tracing::info!(
                    stats.took_ms = took.as_millis() as u64,
                    stats.containers = ids.len(),
                    stats.from_cgroups = batch.from_cgroups,
                    stats.from_engine = batch.from_engine,
                    "Stats round took longer than its period; mount the host's cgroups or raise \
                     docker.stats_concurrency to keep CPU and memory fresh."
                );
            } else {
                tracing::debug!(
                    stats.took_ms = took.as_millis() as u64,
                    stats.from_cgroups = batch.from_cgroups,
                    stats.from_engine = batch.from_engine,
                    "Stats round done"
                );
            }
            if !emit(&tx, &cancel, Observation::Stats(batch)).await {
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(started + sampler.period()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::cgroup::tests::{ID, MEMINFO, PROC_STAT, v1_fixture, v2_fixture};

    /// The sweep tests' fake engine: `aaa` and the fixtures' `ID` have stats, `zzz` answers an
    /// empty sample, anything else is gone.
    async fn fake_engine() -> DockerClient {
        crate::collect::sweep::tests::fake_engine(std::sync::Arc::new(|path: &str| {
            Some(match path {
                p if p.starts_with("/v1.41/containers/aaa/stats") => (200, STATS.to_owned()),
                p if p.starts_with(&format!("/v1.41/containers/{ID}/stats")) => {
                    (200, STATS.to_owned())
                }
                p if p.starts_with("/v1.41/containers/zzz/stats") => (200, EMPTY.to_owned()),
                _ => (404, r#"{"message":"No such container"}"#.to_owned()),
            })
        }))
        .await
    }

    const STATS: &str = r#"{"read":"2026-11-23T22:30:47Z","cpu_stats":{"cpu_usage":{"total_usage":5000},"system_cpu_usage":900000,"online_cpus":4},"memory_stats":{"usage":10000,"stats":{"inactive_file":3000},"limit":67108864}}"#;
    const EMPTY: &str = r#"{"read":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":0}},"memory_stats":{}}"#;

    /// A proc root with `stat` and `meminfo`.
    fn proc_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), PROC_STAT).unwrap();
        std::fs::write(dir.path().join("meminfo"), MEMINFO).unwrap();
        dir
    }

    #[tokio::test]
    async fn an_engine_round_keeps_the_samples_it_could_read() {
        let client = fake_engine().await;
        let ids = ["aaa", "gone", "zzz"].map(String::from);
        let samples = engine_round(&client, &ids, 2).await;
        assert_eq!(samples.keys().collect::<Vec<_>>(), ["aaa"]);
        assert_eq!(samples["aaa"].working_set(), 7000);
    }

    #[tokio::test]
    async fn cgroup_files_come_first_and_the_engine_reads_only_what_they_miss() {
        let cgroups = tempfile::tempdir().unwrap();
        v1_fixture(cgroups.path(), CgroupDriver::Cgroupfs, "67108864\n");
        let procfs = proc_root();
        let counters = Arc::new(StatsCounters::default());
        let mut sampler = Sampler::new(fake_engine().await, 4)
            .with_cgroups(CgroupSource::new(cgroups.path(), procfs.path()))
            .with_counters(counters.clone());
        assert_eq!(sampler.period(), CGROUP_PERIOD);
        let ids = [ID, "aaa"].map(String::from);
        let batch = sampler.round(&ids).await;
        assert_eq!((batch.from_cgroups, batch.from_engine), (1, 1));
        let from_files = &batch.samples[ID];
        // The fixture's numbers, not the engine's (the engine's would be 5000 ns, 7000 bytes).
        assert_eq!(from_files.cpu_total, 123_456_789);
        assert_eq!(from_files.working_set(), 7000);
        assert_eq!(
            from_files.memory_percent(),
            Some(7000.0 * 100.0 / 67108864.0)
        );
        assert_eq!(from_files.online_cpus, 2);
        assert_eq!(batch.samples["aaa"].cpu_total, 5000);
        assert_eq!(sampler.period(), CGROUP_PERIOD);
        // The engine is asked again only once ENGINE_PERIOD has passed.
        let again = sampler.round(&ids).await;
        assert_eq!((again.from_cgroups, again.from_engine), (1, 0));
        assert_eq!(counters.cgroup.load(Ordering::Relaxed), 2);
        assert_eq!(counters.engine.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_cgroup_root_without_a_hierarchy_falls_back_to_the_engine() {
        let empty = tempfile::tempdir().unwrap();
        let procfs = proc_root();
        let mut sampler = Sampler::new(fake_engine().await, 4)
            .with_cgroups(CgroupSource::new(empty.path(), procfs.path()));
        let ids = [ID, "zzz"].map(String::from);
        let batch = sampler.round(&ids).await;
        assert_eq!((batch.from_cgroups, batch.from_engine), (0, 1));
        assert_eq!(batch.samples.keys().collect::<Vec<_>>(), [ID]);
        assert_eq!(batch.samples[ID].cpu_total, 5000, "the engine's sample");
        assert_eq!(sampler.period(), ENGINE_PERIOD);

        // A hierarchy appearing later (a mount fixed) is probed again and used.
        v2_fixture(empty.path(), CgroupDriver::Systemd, "max\n");
        let batch = sampler.round(&ids).await;
        assert_eq!(batch.from_cgroups, 1);
        assert_eq!(batch.samples[ID].cpu_total, 1_500_000);
        assert_eq!(sampler.period(), CGROUP_PERIOD);
    }

    #[tokio::test]
    async fn containers_gone_since_the_sweep_do_not_switch_to_the_engine() {
        let cgroups = tempfile::tempdir().unwrap();
        v1_fixture(cgroups.path(), CgroupDriver::Cgroupfs, "1\n");
        let procfs = proc_root();
        let mut source = CgroupSource::new(cgroups.path(), procfs.path());
        let gone = ID.replace('0', "f");
        // Never found one: a layout this source does not know; the engine's to read.
        assert!(!source.read(std::slice::from_ref(&gone)).usable);
        assert!(source.read(&[ID.to_owned()]).usable);
        // Found one before: the missing ones stopped.
        let round = source.read(std::slice::from_ref(&gone));
        assert!(round.samples.is_empty());
        assert!(round.usable);
        assert_eq!(round.missed, [gone]);
    }

    #[test]
    fn system_cpu_is_taken_at_each_containers_read() {
        let span = Duration::from_millis(1000);
        assert_eq!(interpolate(100, 300, Duration::from_millis(500), span), 200);
        assert_eq!(interpolate(100, 300, Duration::ZERO, span), 100);
        assert_eq!(interpolate(100, 300, span * 2, span), 300);
        assert_eq!(interpolate(300, 100, span, span), 300, "never backwards");
        assert_eq!(interpolate(100, 300, span, Duration::ZERO), 100);
    }

    #[tokio::test]
    async fn unreadable_proc_falls_back_to_the_engine() {
        let cgroups = tempfile::tempdir().unwrap();
        v1_fixture(cgroups.path(), CgroupDriver::Cgroupfs, "1\n");
        let nothing = tempfile::tempdir().unwrap();
        let mut source = CgroupSource::new(cgroups.path(), nothing.path());
        let round = source.read(&[ID.to_owned()]);
        assert!(round.samples.is_empty());
        assert_eq!(round.missed, [ID]);
        let problem = round.problem.expect("a reason").to_string();
        assert!(problem.contains("stat"), "{problem}");
    }

    #[tokio::test]
    async fn rounds_follow_what_the_sweep_published() {
        let client = fake_engine().await;
        let (running_tx, running) = watch::channel(Vec::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let cancel = CancellationToken::new();
        let cgroups = tempfile::tempdir().unwrap();
        v1_fixture(cgroups.path(), CgroupDriver::Cgroupfs, "1\n");
        let procfs = proc_root();
        let sampler =
            Sampler::new(client, 4).with_cgroups(CgroupSource::new(cgroups.path(), procfs.path()));
        let task = tokio::spawn(run(sampler, running, tx, cancel.clone()));
        // Nothing before the first sweep.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), rx.recv())
                .await
                .is_err()
        );
        running_tx.send_replace(vec![ID.into()]);
        for _ in 0..2 {
            let o = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            match o {
                Observation::Stats(b) => {
                    assert!(b.samples.contains_key(ID));
                    assert_eq!(b.from_cgroups, 1);
                }
                other => panic!("expected stats, got {other:?}"),
            }
        }
        cancel.cancel();
        task.await.unwrap();
    }
}
