//! Sweep wall time: the watchdog's own `sweep_once` (list, inspect each, one-shot stats of each
//! running container, 16 at a time) against N labelled sleeping containers.

use crate::Bench;
use crate::fleet::Group;
use crate::interrupt;
use anyhow::{Result, bail};
use std::time::{Duration, Instant};
use vigil_watchdog::collect::sweep::sweep_once;

/// The watchdog's default stats concurrency.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct SweepPoint {
    pub containers: usize,
    /// The stats concurrency bound of these sweeps.
    pub concurrency: usize,
    pub median: Duration,
    pub runs: Vec<Duration>,
}

/// Grows `group` to each size in turn (sleeping containers) and times `reps` sweeps at each
/// (with the watchdog's default stats concurrency), after one untimed warm-up sweep; then, as a
/// diagnostic, the largest size once more with a concurrency that covers every container. The
/// containers stay for the next phase.
pub fn run(bench: &Bench, group: &Group, sizes: &[usize], reps: usize) -> Result<Vec<SweepPoint>> {
    let mut created = 0;
    let mut points = Vec::new();
    let label = group.label();
    let mut runs_of: Vec<(usize, usize)> = sizes.iter().map(|s| (*s, CONCURRENCY)).collect();
    if let Some(&largest) = sizes.iter().max()
        && largest > CONCURRENCY
    {
        runs_of.push((largest, largest));
    }
    for (size, concurrency) in runs_of {
        if size > created {
            eprintln!("bench: sweep: starting containers {created}..{size}");
            let containers = (created..size)
                .map(|i| group.container(i).command(&["sleep", "3600"]))
                .collect();
            group.start_all(containers)?;
            created = size;
        }
        let mut runs = Vec::with_capacity(reps);
        for rep in 0..=reps {
            interrupt::check()?;
            let started = Instant::now();
            let sweep = bench
                .rt
                .block_on(sweep_once(&bench.client, Some(&label), concurrency))?;
            let took = started.elapsed();
            if sweep.containers.len() != size {
                bail!(
                    "a sweep of {size} containers saw {} of them",
                    sweep.containers.len()
                );
            }
            if rep > 0 {
                runs.push(took);
            }
        }
        let mut sorted = runs.clone();
        sorted.sort();
        let Some(&median) = sorted.get(sorted.len() / 2) else {
            bail!("no timed sweep (repetitions must be at least 1)");
        };
        eprintln!(
            "bench: sweep of {size} (stats concurrency {concurrency}): median {median:?} over {runs:?}"
        );
        points.push(SweepPoint {
            containers: size,
            concurrency,
            median,
            runs,
        });
    }
    Ok(points)
}
