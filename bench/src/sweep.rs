//! Sweep wall time against N labelled sleeping containers, with the watchdog's own code:
//! - cold: `sweep_once`, nothing remembered, so every container is listed and inspected (what
//!   the first sweep after start does);
//! - steady: one [`Sweeper`] sweeping again and again, as the daemon does: list, and inspect
//!   only what the list shows changed (here: nothing, the containers sleep);
//! - the stats task's round over the same containers, from each source: the host's cgroup files
//!   (the default) and the engine's one-shot stats of each running one at the default
//!   `docker.stats_concurrency` (the fallback), which bounds how fresh CPU and memory are.

use crate::Bench;
use crate::fleet::Group;
use crate::interrupt;
use anyhow::{Result, bail};
use std::time::{Duration, Instant};
use vigil_watchdog::collect::config::DEFAULT_CGROUP_ROOT;
use vigil_watchdog::collect::stats::{self, CgroupSource, Sampler};
use vigil_watchdog::collect::sweep::{INSPECT_CONCURRENCY, Sweeper, sweep_once};

/// The watchdog's default `docker.stats_concurrency`.
pub const STATS_CONCURRENCY: usize = stats::DEFAULT_STATS_CONCURRENCY;

#[derive(Debug, Clone)]
pub struct SweepPoint {
    pub containers: usize,
    pub cold: Timings,
    pub steady: Timings,
    /// One stats round over every container through the engine's API, and how many samples it
    /// got.
    pub stats_round: Duration,
    pub stats_samples: usize,
    /// One stats round as the watchdog reads it by default (cgroup files first; median of the
    /// repetitions), how many samples came from the files and how many through the engine.
    pub cgroup_round: Timings,
    pub cgroup_samples: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct Timings {
    pub median: Duration,
    pub runs: Vec<Duration>,
}

impl Timings {
    fn of(runs: Vec<Duration>) -> Result<Timings> {
        let mut sorted = runs.clone();
        sorted.sort();
        let Some(&median) = sorted.get(sorted.len() / 2) else {
            bail!("no timed sweep (repetitions must be at least 1)");
        };
        Ok(Timings { median, runs })
    }
}

/// Grows `group` to each size in turn (sleeping containers; `created` of them exist already)
/// and measures each size. The containers stay for the next phase. Returns the points and the
/// number of containers now in the group.
pub fn run(
    bench: &Bench,
    group: &Group,
    created: usize,
    sizes: &[usize],
    reps: usize,
) -> Result<(Vec<SweepPoint>, usize)> {
    let mut created = created;
    let mut points = Vec::new();
    let label = group.label();
    for &size in sizes {
        if size > created {
            eprintln!("bench: sweep: starting containers {created}..{size}");
            let containers = (created..size)
                .map(|i| {
                    // No network: a Linux bridge takes at most 1,024 ports, and removing
                    // hundreds of bridged containers at once has wedged this engine's
                    // network controller.
                    group
                        .container(i)
                        .arg("--network=none")
                        .command(&["sleep", "3600"])
                })
                .collect();
            group.start_all(containers)?;
            created = size;
        }
        let mut cold = Vec::with_capacity(reps);
        for rep in 0..=reps {
            interrupt::check()?;
            let started = Instant::now();
            let sweep =
                bench
                    .rt
                    .block_on(sweep_once(&bench.client, Some(&label), INSPECT_CONCURRENCY))?;
            let took = started.elapsed();
            if sweep.containers.len() != size {
                bail!(
                    "a sweep of {size} containers saw {} of them",
                    sweep.containers.len()
                );
            }
            // The first is a warm-up.
            if rep > 0 {
                cold.push(took);
            }
        }
        let mut sweeper = Sweeper::new(
            bench.client.clone(),
            Some(label.clone()),
            INSPECT_CONCURRENCY,
        );
        let first = bench.rt.block_on(sweeper.sweep())?;
        let ids: Vec<String> = first
            .sweep
            .containers
            .iter()
            .map(|c| c.container.id.clone())
            .collect();
        let mut steady = Vec::with_capacity(reps);
        for _ in 0..reps {
            interrupt::check()?;
            let started = Instant::now();
            let report = bench.rt.block_on(sweeper.sweep())?;
            steady.push(started.elapsed());
            if report.sweep.containers.len() != size {
                bail!(
                    "a steady sweep of {size} containers saw {} of them",
                    report.sweep.containers.len()
                );
            }
        }
        interrupt::check()?;
        let started = Instant::now();
        let samples =
            bench
                .rt
                .block_on(stats::engine_round(&bench.client, &ids, STATS_CONCURRENCY));
        let stats_round = started.elapsed();
        // A fresh sampler per round: each asks the engine for what the files miss.
        let mut cgroup_runs = Vec::with_capacity(reps);
        let mut cgroup_samples = (0, 0);
        for _ in 0..reps {
            interrupt::check()?;
            let mut sampler = Sampler::new(bench.client.clone(), STATS_CONCURRENCY)
                .with_cgroups(CgroupSource::new(DEFAULT_CGROUP_ROOT, "/proc"));
            let started = Instant::now();
            let batch = bench.rt.block_on(sampler.round(&ids));
            cgroup_runs.push(started.elapsed());
            cgroup_samples = (batch.from_cgroups, batch.from_engine);
        }
        let point = SweepPoint {
            containers: size,
            cold: Timings::of(cold)?,
            steady: Timings::of(steady)?,
            stats_round,
            stats_samples: samples.len(),
            cgroup_round: Timings::of(cgroup_runs)?,
            cgroup_samples,
        };
        eprintln!(
            "bench: sweep of {size}: cold median {:?} over {:?}; steady median {:?} over {:?}; \
             stats round through the engine {:?} ({} samples); from cgroup files median {:?} \
             over {:?} ({} from files, {} through the engine)",
            point.cold.median,
            point.cold.runs,
            point.steady.median,
            point.steady.runs,
            point.stats_round,
            point.stats_samples,
            point.cgroup_round.median,
            point.cgroup_round.runs,
            point.cgroup_samples.0,
            point.cgroup_samples.1,
        );
        points.push(point);
    }
    Ok((points, created))
}
