//! What watching costs the engine: dockerd's (and containerd's) CPU over one window with N idle
//! containers, four times in a row:
//! - nothing watching (the baseline);
//! - Vigil's release watchdog scoped to the containers, default interval (a sweep every 15 s:
//!   list, inspect what changed) and its stats task reading the host's cgroup files every 2 s
//!   (the default source);
//! - the same watchdog with its cgroup root an empty directory, so its stats task falls back to
//!   the engine's one-shot stats of every running container every 5 s;
//! - an autoheal-like loop: what docker-autoheal does every 5 s, a container list filtered on
//!   `health=unhealthy` (`GET /containers/json?filters={"health":["unhealthy"]}`), by curl.
//!
//! The engine serves other clients too (on a shared machine, other builds and tests), so each
//! figure carries that noise; the baseline is measured right before, in the same conditions.

use crate::Bench;
use crate::daemon::Daemon;
use crate::fleet::Group;
use crate::interrupt;
use crate::latency::Webhook;
use crate::procfs;
use anyhow::{Context, Result, bail};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// docker-autoheal's default `AUTOHEAL_INTERVAL`.
const AUTOHEAL_INTERVAL: Duration = Duration::from_secs(5);
/// Time the watchdog gets to do its first (cold) sweep and stats round before the window.
const VIGIL_SETTLE: Duration = Duration::from_secs(20);

/// CPU of one engine process under the three conditions, % of one core.
#[derive(Debug, Clone)]
pub struct EngineCpu {
    pub containers: usize,
    pub window: Duration,
    /// `(process name, nothing, vigil (cgroup source), vigil (engine source), autoheal-like)`.
    pub rows: Vec<(String, f64, f64, f64, f64)>,
    /// Requests the autoheal-like loop made in its window.
    pub autoheal_polls: usize,
}

/// The pid of the first process whose `comm` is `name`.
fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

pub fn run(bench: &Bench, group: &Group, containers: usize, window: Duration) -> Result<EngineCpu> {
    let mut procs = vec![(
        "dockerd".to_string(),
        pid_of("dockerd").context("no dockerd process visible in /proc")?,
    )];
    if let Some(pid) = pid_of("containerd") {
        procs.push(("containerd".to_string(), pid));
    }
    let pids: Vec<u32> = procs.iter().map(|(_, p)| *p).collect();

    eprintln!("bench: engine CPU: {containers} idle containers, nothing watching, {window:?}");
    let nothing = procfs::idle_cpu(&pids, window)?;

    let webhook = Webhook::start(&bench.rt);
    let vigil = vigil_cpu(bench, group, &webhook, &pids, window, None)?;
    let no_cgroups = bench.work.join("no-cgroups");
    std::fs::create_dir_all(&no_cgroups).context("creating an empty cgroup root")?;
    let vigil_engine = vigil_cpu(bench, group, &webhook, &pids, window, Some(&no_cgroups))?;

    eprintln!("bench: engine CPU: autoheal-like loop every {AUTOHEAL_INTERVAL:?}, {window:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (stop, polls, failures) = (stop.clone(), polls.clone(), failures.clone());
        std::thread::spawn(move || autoheal_loop(&stop, &polls, &failures))
    };
    let autoheal = procfs::idle_cpu(&pids, window);
    stop.store(true, Ordering::SeqCst);
    let _ = poller.join();
    let autoheal = autoheal?;
    if failures.load(Ordering::SeqCst) > 0 {
        bail!(
            "the autoheal-like loop's curl failed {} time(s)",
            failures.load(Ordering::SeqCst)
        );
    }
    Ok(EngineCpu {
        containers,
        window,
        rows: procs
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                (
                    name.clone(),
                    nothing[i],
                    vigil[i],
                    vigil_engine[i],
                    autoheal[i],
                )
            })
            .collect(),
        autoheal_polls: polls.load(Ordering::SeqCst),
    })
}

/// The engine processes' CPU over `window` while Vigil's watchdog watches `group`, reading stats
/// from the cgroup files, or (with `cgroup_root` an empty directory) through the engine. Checks
/// the watchdog's log names the source it was meant to use.
fn vigil_cpu(
    bench: &Bench,
    group: &Group,
    webhook: &Webhook,
    pids: &[u32],
    window: Duration,
    cgroup_root: Option<&std::path::Path>,
) -> Result<Vec<f64>> {
    let mut env = bench.watchdog_env(&group.label(), &webhook.url(), false)?;
    let (source, log) = match cgroup_root {
        Some(root) => {
            env.push((
                "WATCHDOG_CGROUP_ROOT".to_string(),
                root.display().to_string(),
            ));
            ("engine", "stats.source=\"engine\"")
        }
        None => ("cgroup", "stats.source=\"cgroup\""),
    };
    let mut watchdog = Daemon::spawn(
        &format!("watchdog-engine-cpu-{source}"),
        &bench.watchdog_bin,
        &env,
        &bench.work,
    )?;
    watchdog.wait_for_log("Notifications started", Duration::from_secs(30))?;
    eprintln!(
        "bench: engine CPU: Vigil watching (stats source {source}); settling {VIGIL_SETTLE:?}, \
         then {window:?}"
    );
    interrupt::pause(VIGIL_SETTLE)?;
    watchdog.require_running()?;
    watchdog.wait_for_log(log, Duration::from_secs(1))?;
    let cpu = procfs::idle_cpu(pids, window)?;
    watchdog.require_running()?;
    Ok(cpu)
}

/// docker-autoheal's request, every [`AUTOHEAL_INTERVAL`] until `stop`.
fn autoheal_loop(stop: &AtomicBool, polls: &AtomicUsize, failures: &AtomicUsize) {
    // {"health":["unhealthy"]}, percent-encoded.
    const URL: &str =
        "http://localhost/containers/json?filters=%7B%22health%22%3A%5B%22unhealthy%22%5D%7D";
    while !stop.load(Ordering::SeqCst) {
        let ok = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "--unix-socket",
                "/var/run/docker.sock",
                URL,
            ])
            .status()
            .is_ok_and(|s| s.success());
        polls.fetch_add(1, Ordering::SeqCst);
        if !ok {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        let mut waited = Duration::ZERO;
        while waited < AUTOHEAL_INTERVAL && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
    }
}
