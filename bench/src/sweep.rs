//! Sweep wall time against N labelled sleeping containers, with the watchdog's own code:
//! - cold: `sweep_once`, nothing remembered, so every container is listed and inspected (what
//!   the first sweep after start does);
//! - steady: one [`Sweeper`] sweeping again and again, as the daemon does: list, and inspect
//!   only what the list shows changed (here: nothing, the containers sleep);
//! - the stats task's round over the same containers (one-shot stats of each running one, at the
//!   default `docker.stats_concurrency`), which bounds how fresh CPU and memory are.

use crate::Bench;
use crate::fleet::Group;
use crate::interrupt;
use anyhow::{Result, bail};
use std::time::{Duration, Instant};
use vigil_watchdog::collect::stats;
use vigil_watchdog::collect::sweep::{INSPECT_CONCURRENCY, Sweeper, sweep_once};

/// The watchdog's default `docker.stats_concurrency`.
pub const STATS_CONCURRENCY: usize = stats::DEFAULT_STATS_CONCURRENCY;

#[derive(Debug, Clone)]
pub struct SweepPoint {
    pub containers: usize,
    pub cold: Timings,
    pub steady: Timings,
    /// One stats round over every container, and how many samples it got.
    pub stats_round: Duration,
    pub stats_samples: usize,
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
        let batch = bench
            .rt
            .block_on(stats::round(&bench.client, &ids, STATS_CONCURRENCY));
        let stats_round = started.elapsed();
        let point = SweepPoint {
            containers: size,
            cold: Timings::of(cold)?,
            steady: Timings::of(steady)?,
            stats_round,
            stats_samples: batch.samples.len(),
        };
        eprintln!(
            "bench: sweep of {size}: cold median {:?} over {:?}; steady median {:?} over {:?}; \
             stats round {:?} ({} samples)",
            point.cold.median,
            point.cold.runs,
            point.steady.median,
            point.steady.runs,
            point.stats_round,
            point.stats_samples
        );
        points.push(point);
    }
    Ok((points, created))
}
