//! Memory and idle CPU of both daemons, and the executor under a flood of forged requests.
//!
//! Footprint: a release watchdog (Redis, signing key, webhook sink, default 15 s interval) scoped
//! to the sweep phase's containers and a release executor run side by side; resident memory is
//! read after a few sweeps, then both processes' CPU time is sampled over one common idle window.
//!
//! Flood: envelopes signed with a key the executor does not know, under the executor's real key
//! id, are added to the requests stream in one pipeline; the rate is how fast the executor audits
//! them (the audit file is written and fsynced before each entry is acknowledged).

use crate::daemon::Daemon;
use crate::interrupt;
use crate::latency::Webhook;
use crate::procfs::{self, Memory};
use crate::{Bench, fleet::Group};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil_protocol::signing::{Signer, write_keypair};
use vigil_protocol::wire::{Action, Payload, Reason, Target};
use vigil_shared::time::Timestamp;

#[derive(Debug, Clone)]
pub struct Footprint {
    pub containers: usize,
    pub watchdog: Memory,
    pub executor: Memory,
    pub watchdog_cpu: f64,
    pub executor_cpu: f64,
    pub settle: Duration,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct Flood {
    pub requests: usize,
    pub elapsed: Duration,
    pub before: Memory,
    pub after: Memory,
    /// Audit decisions and reasons of the flood's records, with counts.
    pub outcomes: BTreeMap<String, usize>,
}

impl Flood {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A running executor and its audit file.
pub struct Executor {
    pub daemon: Daemon,
    pub audit_file: PathBuf,
}

/// Starts the release executor against the benchmark's Redis (after clearing the requests stream
/// of earlier phases' requests) and waits until it consumes the stream.
pub fn start_executor(bench: &Bench) -> Result<Executor> {
    let redis = bench.redis()?;
    bench
        .rt
        .block_on(async {
            let mut conn = redis.conn.clone();
            redis::cmd("DEL")
                .arg(redis.names.requests())
                .query_async::<()>(&mut conn)
                .await
        })
        .context("clearing the requests stream")?;
    let audit_file = bench.work.join("audit.jsonl");
    let port = vigil_tests::ports::free_port();
    let env: Vec<(String, String)> = [
        ("EXECUTOR_REDIS_URL", redis.url.clone()),
        ("EXECUTOR_VERIFY_KEYS", bench.keys_dir.display().to_string()),
        ("EXECUTOR_AUDIT_FILE", audit_file.display().to_string()),
        ("EXECUTOR_LISTEN", format!("127.0.0.1:{port}")),
        ("EXECUTOR_DEPLOYMENT", crate::DEPLOYMENT.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut daemon = Daemon::spawn("executor", &bench.executor_bin, &env, &bench.work)?;
    daemon.wait_for_log("Consuming the requests stream", Duration::from_secs(30))?;
    Ok(Executor { daemon, audit_file })
}

/// Runs the watchdog over `group` (`containers` of them) next to `executor`: memory after `settle`
/// (a few sweeps), then CPU over `window`.
pub fn footprint(
    bench: &Bench,
    executor: &mut Executor,
    group: &Group,
    containers: usize,
    settle: Duration,
    window: Duration,
) -> Result<Footprint> {
    let webhook = Webhook::start(&bench.rt);
    let env = bench.watchdog_env(&group.label(), &webhook.url(), true)?;
    let mut watchdog = Daemon::spawn("watchdog-footprint", &bench.watchdog_bin, &env, &bench.work)?;
    watchdog.wait_for_log("Notifications started", Duration::from_secs(30))?;
    eprintln!(
        "bench: footprint: {containers} containers in scope; settling {settle:?}, then {window:?} idle"
    );
    interrupt::pause(settle)?;
    watchdog.require_running()?;
    executor.daemon.require_running()?;
    let cpu = procfs::idle_cpu(&[watchdog.pid(), executor.daemon.pid()], window)?;
    watchdog.require_running()?;
    executor.daemon.require_running()?;
    let out = Footprint {
        containers,
        watchdog: procfs::memory(watchdog.pid())?,
        executor: procfs::memory(executor.daemon.pid())?,
        watchdog_cpu: cpu[0],
        executor_cpu: cpu[1],
        settle,
        window,
    };
    drop(watchdog);
    Ok(out)
}

/// The watchdog alone over `group` (`containers` of them, no Redis): resident memory after
/// `settle` (the first, cold sweep, later sweeps and stats rounds).
pub fn watchdog_rss(
    bench: &Bench,
    group: &Group,
    containers: usize,
    settle: Duration,
) -> Result<(usize, Memory)> {
    let webhook = Webhook::start(&bench.rt);
    let env = bench.watchdog_env(&group.label(), &webhook.url(), false)?;
    let mut watchdog = Daemon::spawn("watchdog-rss", &bench.watchdog_bin, &env, &bench.work)?;
    watchdog.wait_for_log("Notifications started", Duration::from_secs(30))?;
    eprintln!("bench: watchdog RSS: {containers} containers in scope; settling {settle:?}");
    interrupt::pause(settle)?;
    watchdog.require_running()?;
    let memory = procfs::memory(watchdog.pid())?;
    drop(watchdog);
    Ok((containers, memory))
}

/// Floods `executor` with `n` forged requests and times until all are audited.
pub fn flood(bench: &Bench, executor: &mut Executor, n: usize, timeout: Duration) -> Result<Flood> {
    // Same key id as the real key, different key: every signature check fails.
    let forger_dir = bench.work.join("forger");
    let forger = write_keypair(&forger_dir, &bench.key_id).context("writing the forger's key")?;
    let signer = Signer::from_key_file(bench.key_id.clone(), &forger.private)
        .context("loading the forger's key")?;
    let envelopes = (0..n)
        .map(|i| {
            let payload = Payload::new(
                crate::DEPLOYMENT,
                Action::Restart,
                Target {
                    id: format!("{i:064x}"),
                    name: format!("victim-{i}"),
                    project: None,
                    service: None,
                },
                Reason::new("container_unhealthy", "high", "forged by vigil-bench", 0.9),
                Timestamp::now(),
            );
            signer.sign(&payload).map(|e| e.to_json())
        })
        .collect::<Result<Vec<_>, _>>()
        .context("signing the forged requests")?;

    let base = procfs::line_count(&executor.audit_file)?;
    let before = procfs::memory(executor.daemon.pid())?;
    eprintln!("bench: flood: {n} forged requests");
    let started = Instant::now();
    bench
        .send_envelopes(envelopes.iter().map(String::as_str))
        .context("adding the forged requests")?;
    let done = interrupt::poll_until(timeout, Duration::from_millis(10), || {
        executor.daemon.require_running()?;
        Ok(procfs::line_count(&executor.audit_file)? >= base + n)
    })?;
    let elapsed = started.elapsed();
    if !done {
        bail!(
            "the executor audited {} of {n} forged requests within {timeout:?}",
            procfs::line_count(&executor.audit_file)?.saturating_sub(base)
        );
    }
    let after = procfs::memory(executor.daemon.pid())?;
    let text = std::fs::read_to_string(&executor.audit_file).context("reading the audit file")?;
    let mut outcomes = BTreeMap::new();
    for line in text.lines().skip(base) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let key = format!(
            "{}: {}",
            record["decision"].as_str().unwrap_or("?"),
            record["reason"].as_str().unwrap_or("?")
        );
        *outcomes.entry(key).or_insert(0) += 1;
    }
    Ok(Flood {
        requests: n,
        elapsed,
        before,
        after,
        outcomes,
    })
}
