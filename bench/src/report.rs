//! The printed result: the machine, then one markdown table of measurement, value, target
//! (the project's performance targets) and whether the value meets it.

use crate::executor_load::ParallelRestarts;
use crate::footprint::{Flood, Footprint};
use crate::latency::{Latencies, percentile};
use crate::procfs::Machine;
use crate::sweep::SweepPoint;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;
use vigil_docker::EngineVersion;

const MIB: f64 = 1024.0 * 1024.0;
/// The project's performance targets.
/// Sweep targets by container count (median of the repetitions).
const SWEEP_TARGETS: &[(usize, Duration)] = &[
    (200, Duration::from_millis(500)),
    (1000, Duration::from_secs(2)),
];
/// Watchdog memory targets by container count.
const WATCHDOG_RSS_TARGETS_MIB: &[(usize, f64)] = &[(200, 12.0), (1000, 24.0)];
const EXECUTOR_RSS_TARGET_MIB: f64 = 8.0;
const REJECTIONS_TARGET_PER_S: f64 = 10_000.0;
const PARALLEL_RESTARTS_TARGET: Duration = Duration::from_secs(15);
/// CPU and memory signals should be no older than this: a stats round must fit in it.
const STATS_FRESH: Duration = Duration::from_secs(5);

fn sweep_target(containers: usize) -> Option<Duration> {
    SWEEP_TARGETS
        .iter()
        .find(|(n, _)| *n == containers)
        .map(|(_, t)| *t)
}

fn rss_target(containers: usize) -> Option<f64> {
    WATCHDOG_RSS_TARGETS_MIB
        .iter()
        .find(|(n, _)| *n == containers)
        .map(|(_, t)| *t)
}

struct Row {
    what: String,
    value: String,
    target: String,
    /// None: no target.
    meets: Option<bool>,
    failed: bool,
}

pub struct Report {
    header: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let line = text.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(160).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short.replace('|', "/")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

impl Report {
    pub fn new(machine: &Machine, engine: &EngineVersion, bin_dir: &Path, quick: bool) -> Report {
        let header = vec![
            format!(
                "Machine: {} cores ({}), {:.1} GiB memory, Linux {}",
                machine.cores,
                machine.cpu_model,
                machine.memory_bytes as f64 / (MIB * 1024.0),
                machine.kernel
            ),
            format!(
                "Docker Engine {} (API {}, {}/{})",
                engine.version, engine.api_version, engine.os, engine.arch
            ),
            format!(
                "Measured: vigil-watchdog and vigil-executor from {} ({}); benchmark driver built {}{}",
                crate::display_path(bin_dir),
                match bin_dir.file_name().and_then(|n| n.to_str()) {
                    Some("release") =>
                        "release profile: opt-level s (signature and hash crates 3), fat LTO, codegen-units 1",
                    Some("debug") => "DEBUG profile: unoptimised, not representative",
                    _ => "profile unknown",
                },
                if cfg!(debug_assertions) {
                    "in debug (it only drives and times the daemons)"
                } else {
                    "in release"
                },
                if quick {
                    "; QUICK run (--quick): fewer incidents and sizes, short windows"
                } else {
                    ""
                }
            ),
        ];
        Report {
            header,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        target: &str,
        meets: Option<bool>,
    ) {
        self.rows.push(Row {
            what: what.into(),
            value: value.into(),
            target: target.to_string(),
            meets,
            failed: false,
        });
    }

    fn failed(&mut self, what: impl Into<String>, e: &anyhow::Error, target: &str) {
        self.rows.push(Row {
            what: what.into(),
            value: format!("failed: {}", first_line(e)),
            target: target.to_string(),
            meets: None,
            failed: true,
        });
    }

    /// Status page rows: drawing time at N containers (target 1 s) and history memory against
    /// its documented bound.
    pub fn status_page(&mut self, r: &anyhow::Result<crate::page::PageResult>) {
        match r {
            Ok(p) => {
                self.row(
                    format!(
                        "Status page at {} containers (GET /, p50 / max)",
                        p.containers
                    ),
                    format!(
                        "{} / {} ({} KiB HTML; /api/status p50 {})",
                        ms(p.html_p50),
                        ms(p.html_max),
                        p.html_bytes / 1024,
                        ms(p.json_p50)
                    ),
                    "< 1000 ms",
                    Some(p.html_max < Duration::from_secs(1)),
                );
                self.row(
                    format!("Status page history at {} containers", p.containers),
                    format!("{:.1} MiB", mib(p.history_bytes as u64)),
                    &format!("<= {:.1} MiB (7 KiB each)", mib(p.history_bound as u64)),
                    Some(p.history_bytes <= p.history_bound),
                );
            }
            Err(e) => self.failed("Status page at 1000 containers", e, "< 1000 ms"),
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// p50 and p99 rows for one latency phase; `p99_target` in ms.
    pub fn latency(
        &mut self,
        what: &str,
        result: &Result<Latencies>,
        p50_target: Option<f64>,
        p99_target: Option<f64>,
    ) {
        let target = |t: Option<f64>| t.map_or("—".to_string(), |t| format!("≤ {t:.0} ms"));
        let lat = match result {
            Ok(lat) => lat,
            Err(e) => {
                self.failed(format!("{what} p50"), e, &target(p50_target));
                self.failed(format!("{what} p99"), e, &target(p99_target));
                return;
            }
        };
        let n = lat.samples_ms.len();
        let missing = if lat.missing > 0 {
            format!(", {} of {} incidents missing", lat.missing, lat.incidents)
        } else {
            String::new()
        };
        for (p, t) in [(50.0, p50_target), (99.0, p99_target)] {
            let label = format!("{what} p{p:.0} ({n} incidents{missing})");
            match percentile(&lat.samples_ms, p) {
                Some(v) => {
                    // Missing incidents never count as meeting a target.
                    let meets = t.map(|t| v <= t && lat.missing == 0);
                    self.row(label, format!("{v:.1} ms"), &target(t), meets);
                }
                None => {
                    let e = anyhow::anyhow!("no incident measured");
                    self.failed(label, &e, &target(t));
                }
            }
        }
        if lat.missing > 0
            && let Some(r) = self.rows.last_mut()
        {
            r.failed = true;
        }
        if let (Some(p50), Some(p99)) = (
            percentile(&lat.delivery_ms, 50.0),
            percentile(&lat.delivery_ms, 99.0),
        ) {
            self.row(
                "For comparison: the engine's own delivery of the same die events to a plain \
                 /events reader, p50 / p99",
                format!("{p50:.1} / {p99:.1} ms"),
                "— (engine, not Vigil)",
                None,
            );
        }
    }

    pub fn sweeps(&mut self, result: &Result<Vec<SweepPoint>>, reps: usize) {
        let points = match result {
            Ok(p) => p,
            Err(e) => {
                self.failed("Sweep wall time", e, "200: ≤ 500 ms, 1000: ≤ 2 s");
                return;
            }
        };
        let range = |t: &crate::sweep::Timings| {
            format!(
                "{} (range {}–{})",
                ms(t.median),
                ms(t.runs.iter().min().copied().unwrap_or_default()),
                ms(t.runs.iter().max().copied().unwrap_or_default())
            )
        };
        for p in points {
            let target = sweep_target(p.containers);
            let target_text = target.map_or("—".to_string(), |t| format!("≤ {}", ms(t)));
            self.row(
                format!(
                    "Sweep wall time, {} containers, steady: list + inspect of what changed \
                     (median of {reps})",
                    p.containers
                ),
                range(&p.steady),
                &target_text,
                target.map(|t| p.steady.median <= t),
            );
            self.row(
                format!(
                    "Sweep wall time, {} containers, cold: the first sweep, every container \
                     inspected (median of {reps})",
                    p.containers
                ),
                range(&p.cold),
                &target_text,
                target.map(|t| p.cold.median <= t),
            );
            let (files, engine) = p.cgroup_samples;
            self.row(
                format!(
                    "Stats round, {} running containers, source cgroup (the default: the host's \
                     cgroup files, the engine for what they miss; median of {reps})",
                    p.containers,
                ),
                format!(
                    "{} ({files} from files, {engine} through the engine)",
                    range(&p.cgroup_round)
                ),
                &format!("≤ {} (fresh within 5 s)", ms(STATS_FRESH)),
                Some(p.cgroup_round.median <= STATS_FRESH && files + engine == p.containers),
            );
            self.row(
                format!(
                    "Stats round, {} running containers, source engine (the fallback: {} one-shot \
                     stats in flight)",
                    p.containers,
                    crate::sweep::STATS_CONCURRENCY
                ),
                format!("{} ({} samples)", ms(p.stats_round), p.stats_samples),
                "— (reported)",
                None,
            );
        }
    }

    /// The watchdog's memory alone at a larger container count.
    pub fn watchdog_rss(&mut self, result: &Result<(usize, crate::procfs::Memory)>) {
        match result {
            Ok((containers, m)) => {
                let w = mib(m.rss);
                let target = rss_target(*containers);
                self.row(
                    format!("Watchdog RSS, {containers} containers in scope"),
                    format!("{w:.1} MiB (peak {:.1})", mib(m.peak)),
                    &target.map_or("—".to_string(), |t| format!("≤ {t:.0} MiB")),
                    target.map(|t| w <= t),
                );
            }
            Err(e) => self.failed("Watchdog RSS, large host", e, "≤ 24 MiB"),
        }
    }

    /// dockerd's (and containerd's) CPU with idle containers: nothing, Vigil, autoheal-like.
    pub fn engine_cpu(&mut self, result: &Result<crate::engine::EngineCpu>) {
        let e = match result {
            Ok(e) => e,
            Err(err) => {
                self.failed("Engine CPU with idle containers", err, "—");
                return;
            }
        };
        for (name, nothing, vigil, vigil_engine, autoheal) in &e.rows {
            self.row(
                format!(
                    "{name} CPU over {} s, {} idle containers: nothing watching / Vigil (default \
                     config, stats from cgroup files) / Vigil (stats through the engine) / \
                     autoheal-like list of unhealthy every 5 s",
                    e.window.as_secs(),
                    e.containers
                ),
                format!(
                    "{nothing:.2} / {vigil:.2} / {vigil_engine:.2} / {autoheal:.2} % of one core"
                ),
                "— (reported)",
                None,
            );
        }
        if let Some((_, nothing, vigil, vigil_engine, autoheal)) = e.rows.first() {
            self.note(format!(
                "Engine CPU: with Vigil watching, dockerd used {:+.2} points of one core over the \
                 baseline ({:+.2} with stats through the engine), the autoheal-like loop ({} \
                 polls) {:+.2}. Vigil asks the engine for a list every 15 s, inspects of what \
                 changed and the events stream; CPU and memory come from the host's cgroup files \
                 (the engine's one-shot stats of every running container every 5 s where they \
                 cannot be read). In exchange it sees exits, OOM kills, restart loops, CPU and \
                 memory, not only unhealthy containers. The machine is shared, so each window \
                 carries other work's noise.",
                vigil - nothing,
                vigil_engine - nothing,
                e.autoheal_polls,
                autoheal - nothing
            ));
        }
    }

    pub fn footprint(&mut self, result: &Result<Footprint>) {
        let fp = match result {
            Ok(fp) => fp,
            Err(e) => {
                self.failed("Watchdog RSS", e, "≤ 12 MiB");
                self.failed("Executor RSS", e, "≤ 8 MiB");
                return;
            }
        };
        let w = mib(fp.watchdog.rss);
        let target = rss_target(fp.containers);
        self.row(
            format!(
                "Watchdog RSS, {} containers in scope, after {} s of sweeps every 15 s",
                fp.containers,
                (fp.settle + fp.window).as_secs()
            ),
            format!("{w:.1} MiB (peak {:.1})", mib(fp.watchdog.peak)),
            &target.map_or("—".to_string(), |t| format!("≤ {t:.0} MiB")),
            target.map(|t| w <= t),
        );
        self.row(
            format!(
                "Watchdog idle CPU over {} s ({} containers, 15 s interval)",
                fp.window.as_secs(),
                fp.containers
            ),
            format!("{:.2} % of one core", fp.watchdog_cpu),
            "—",
            None,
        );
        let e = mib(fp.executor.rss);
        self.row(
            "Executor RSS, idle",
            format!("{e:.1} MiB (peak {:.1})", mib(fp.executor.peak)),
            "≤ 8 MiB",
            Some(e <= EXECUTOR_RSS_TARGET_MIB),
        );
        self.row(
            format!("Executor idle CPU over {} s", fp.window.as_secs()),
            format!("{:.2} % of one core", fp.executor_cpu),
            "—",
            None,
        );
    }

    pub fn flood(&mut self, result: &Result<Flood>) {
        let f = match result {
            Ok(f) => f,
            Err(e) => {
                self.failed("Executor rejections per second (forged flood)", e, "—");
                return;
            }
        };
        let outcomes: Vec<String> = f
            .outcomes
            .iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect();
        self.row(
            format!(
                "Executor rejections per second, {} forged requests (each audited and synced before its acknowledgement, group commit)",
                f.requests
            ),
            format!(
                "{:.0} /s ({} in {:.2} s)",
                f.rate(),
                f.requests,
                f.elapsed.as_secs_f64()
            ),
            "≥ 10,000 /s",
            Some(f.rate() >= REJECTIONS_TARGET_PER_S),
        );
        let after = mib(f.after.rss);
        self.row(
            "Executor RSS before → after the flood",
            format!(
                "{:.1} → {after:.1} MiB (peak {:.1})",
                mib(f.before.rss),
                mib(f.after.peak)
            ),
            "≤ 8 MiB",
            Some(after <= EXECUTOR_RSS_TARGET_MIB),
        );
        self.note(format!("Flood audit outcomes: {}", outcomes.join(", ")));
    }

    pub fn parallel_restarts(&mut self, result: &Result<ParallelRestarts>) {
        let what =
            "Executor: 5 slow restarts at once (10 s stop grace), first request to all restarted";
        match result {
            Ok(r) => self.row(
                format!(
                    "Executor: {} slow restarts at once ({} s stop grace), first request to all restarted",
                    r.containers,
                    r.grace.as_secs()
                ),
                format!("{:.1} s", r.elapsed.as_secs_f64()),
                "≤ 15 s",
                Some(r.elapsed <= PARALLEL_RESTARTS_TARGET),
            ),
            Err(e) => self.failed(what, e, "≤ 15 s"),
        }
    }

    /// False when a phase failed or incidents went missing.
    pub fn all_ok(&self) -> bool {
        !self.rows.iter().any(|r| r.failed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            out.push_str(h);
            out.push('\n');
        }
        out.push('\n');
        out.push_str("| Measurement | Value | Target | Meets target |\n");
        out.push_str("| --- | --- | --- | --- |\n");
        for r in &self.rows {
            let meets = match (r.failed, r.meets) {
                (true, _) => "no (failed)",
                (false, Some(true)) => "yes",
                (false, Some(false)) => "**no**",
                (false, None) => "—",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.what, r.value, r.target, meets
            ));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(n);
                out.push('\n');
            }
        }
        out
    }
}
