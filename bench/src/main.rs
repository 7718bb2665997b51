//! `vigil-bench`: measures Vigil on the real Docker engine and a real Redis and prints one
//! markdown table against the project's performance targets. Run it through `scripts/bench.sh`,
//! which prepares the machine and builds the release binaries it measures.
//!
//! ```text
//! vigil-bench [--quick] [--page-only] [--stats-only SIZES] [--incidents N] [--bin-dir DIR]
//! ```
//!
//! # Layout (in the order the run goes)
//! - [`interrupt`]: Ctrl-C/SIGTERM unwind the run through its guards.
//! - [`fleet`]: benchmark containers, created in parallel and removed by label.
//! - [`daemon`]: the release `vigil-watchdog`/`vigil-executor` processes under measurement.
//! - [`latency`]: event-to-alert and event-to-restart-issued latency.
//! - [`sweep`]: sweep wall time (cold and steady) and the stats round at growing container counts.
//! - [`footprint`]: memory and idle CPU of both daemons; the forged-request flood.
//! - [`engine`]: the engine's own CPU with idle containers: nothing, Vigil, an autoheal-like loop.
//! - [`executor_load`]: slow restarts side by side through the executor.
//! - [`page`]: the status page's drawing time and history memory at 1,000 containers.
//! - [`procfs`]: `/proc` readings; [`report`]: the table.

mod daemon;
mod engine;
mod executor_load;
mod fleet;
mod footprint;
mod interrupt;
mod latency;
mod page;
mod procfs;
mod report;
mod sweep;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_docker::DockerClient;
use vigil_protocol::names::{DEFAULT_PREFIX, Names};
use vigil_tests::redis_server::RedisServer;

/// `WATCHDOG_DEPLOYMENT` and `EXECUTOR_DEPLOYMENT` of every daemon the benchmark starts.
pub const DEPLOYMENT: &str = "bench";
/// The signing key id.
const KEY_ID: &str = "bench";

/// How much to measure.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    /// Only the status page rows (no daemons, no containers): `--page-only`.
    page_only: bool,
    /// Only the sweep and stats rounds at these sizes and the engine's CPU at the largest:
    /// `--stats-only 200,1000`.
    stats_only: Option<Vec<usize>>,
    incidents: usize,
    sweep_sizes: Vec<usize>,
    /// Measured after the footprint and engine phases (sweep and watchdog memory only).
    large_sweep: Option<usize>,
    sweep_reps: usize,
    /// Each of the engine CPU comparison's three windows.
    engine_window: Duration,
    /// Wait before reading memory (the watchdog sweeps at start, then every 15 s).
    settle: Duration,
    idle_window: Duration,
    flood: usize,
    flood_timeout: Duration,
    bin_dir: Option<PathBuf>,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            page_only: false,
            stats_only: None,
            incidents: 60,
            sweep_sizes: vec![10, 50, 200],
            large_sweep: Some(1000),
            sweep_reps: 5,
            engine_window: Duration::from_secs(60),
            settle: Duration::from_secs(35),
            idle_window: Duration::from_secs(60),
            flood: 20_000,
            flood_timeout: Duration::from_secs(300),
            bin_dir: None,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            page_only: false,
            stats_only: None,
            incidents: 20,
            sweep_sizes: vec![10, 50],
            large_sweep: None,
            sweep_reps: 3,
            engine_window: Duration::from_secs(10),
            settle: Duration::from_secs(5),
            idle_window: Duration::from_secs(10),
            flood: 2000,
            flood_timeout: Duration::from_secs(60),
            bin_dir: None,
        }
    }

    fn from_args(args: impl Iterator<Item = String>) -> Result<Plan> {
        let args: Vec<String> = args.collect();
        let mut plan = if args.iter().any(|a| a == "--quick") {
            Plan::quick()
        } else {
            Plan::full()
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => {}
                "--page-only" => plan.page_only = true,
                "--stats-only" => {
                    let sizes = it
                        .next()
                        .context("--stats-only needs sizes, e.g. 200,1000")?;
                    let parsed = sizes
                        .split(',')
                        .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n >= 1))
                        .collect::<Option<Vec<_>>>()
                        .with_context(|| {
                            format!("--stats-only {sizes:?}: expected sizes like 200,1000")
                        })?;
                    plan.stats_only = Some(parsed);
                }
                "--incidents" => {
                    let n = it.next().context("--incidents needs a number")?;
                    plan.incidents =
                        n.parse().ok().filter(|n| *n >= 1).with_context(|| {
                            format!("--incidents {n:?}: expected a number >= 1")
                        })?;
                }
                "--bin-dir" => {
                    plan.bin_dir =
                        Some(PathBuf::from(it.next().context("--bin-dir needs a path")?));
                }
                "-h" | "--help" => {
                    println!(
                        "vigil-bench [--quick] [--page-only] [--stats-only SIZES] [--incidents N] \
                         [--bin-dir DIR]\n\n\
                         Measures the release vigil-watchdog and vigil-executor (from DIR, default \
                         target/release) on the real Docker engine and a real redis-server, and \
                         prints a markdown table. Run it through scripts/bench.sh. \
                         --page-only measures only the status page (in process, no daemons). \
                         --stats-only 200,1000 measures only the sweep and stats rounds (both \
                         sources) at each size and the engine's CPU at the largest."
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        Ok(plan)
    }
}

/// The benchmark's Redis.
pub struct RedisCtx {
    pub url: String,
    pub names: Names,
    pub conn: redis::aio::MultiplexedConnection,
    _server: RedisServer,
}

/// What every phase shares. Field order is drop order: containers and Redis go before the
/// runtime and the work directory.
pub struct Bench {
    pub guard: fleet::RunGuard,
    redis: Option<RedisCtx>,
    pub client: DockerClient,
    pub watchdog_bin: PathBuf,
    pub executor_bin: PathBuf,
    /// Holds `<KEY_ID>.key` and `<KEY_ID>.pub` (the executor's `EXECUTOR_VERIFY_KEYS`).
    pub keys_dir: PathBuf,
    pub key_file: PathBuf,
    pub key_id: String,
    pub work: PathBuf,
    pub rt: tokio::runtime::Runtime,
    _work: tempfile::TempDir,
}

impl Bench {
    pub fn redis(&self) -> Result<&RedisCtx> {
        self.redis.as_ref().context("Redis is not running")
    }

    /// Appends each envelope to the requests stream, all in one pipelined round trip.
    pub fn send_envelopes<'a>(&self, envelopes: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let redis = self.redis()?;
        let mut pipe = redis::pipe();
        for e in envelopes {
            pipe.cmd("XADD")
                .arg(redis.names.requests())
                .arg("*")
                .arg(vigil_protocol::names::ENVELOPE_FIELD)
                .arg(e)
                .ignore();
        }
        let mut conn = redis.conn.clone();
        self.rt.block_on(pipe.query_async::<()>(&mut conn))?;
        Ok(())
    }

    /// The watchdog's environment: scope `scope_label`, `WATCHDOG_INTERVAL=15s`, grouping off
    /// (`0s`), the webhook at `webhook_url` (through a file) as the only remote sink, host signals
    /// off (they are about the machine, not the benchmark), and with `with_redis` the Redis URL
    /// and signing key.
    pub fn watchdog_env(
        &self,
        scope_label: &str,
        webhook_url: &str,
        with_redis: bool,
    ) -> Result<Vec<(String, String)>> {
        let url_file = self
            .work
            .join(format!("webhook-{}.url", uuid::Uuid::new_v4().simple()));
        std::fs::write(&url_file, format!("{webhook_url}\n")).context("writing the webhook URL")?;
        let port = vigil_tests::ports::free_port();
        let mut env = vec![
            ("WATCHDOG_INTERVAL", "15s".to_string()),
            ("WATCHDOG_NOTIFY__GROUP_WINDOW", "0s".to_string()),
            ("WATCHDOG_SCOPE__LABEL", scope_label.to_string()),
            ("WATCHDOG_WEBHOOK_URL_FILE", url_file.display().to_string()),
            ("WATCHDOG_LISTEN", format!("127.0.0.1:{port}")),
            (
                "WATCHDOG_ALERTS__DISABLED",
                "host_memory_high,disk_high".to_string(),
            ),
            ("WATCHDOG_DEPLOYMENT", DEPLOYMENT.to_string()),
        ];
        if with_redis {
            env.push(("WATCHDOG_REDIS_URL", self.redis()?.url.clone()));
            env.push((
                "WATCHDOG_SIGNING_KEY_FILE",
                self.key_file.display().to_string(),
            ));
            env.push(("WATCHDOG_KEY_ID", self.key_id.clone()));
        }
        Ok(env.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

fn main() {
    let code = match run() {
        Ok(all_ok) => {
            if all_ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("vigil-bench: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Runs every phase; Ok(false) when some phase failed (its rows say why).
fn run() -> Result<bool> {
    let plan = Plan::from_args(std::env::args().skip(1))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")?;
    interrupt::install(&rt);

    let bin_dir = daemon::bin_dir(plan.bin_dir.as_deref());
    if plan.page_only {
        let machine = procfs::machine()?;
        let client = DockerClient::new("unix:///var/run/docker.sock", Duration::from_secs(10))
            .context("building the Docker client")?;
        let engine = rt
            .block_on(client.negotiate())
            .context("asking the Docker engine for its version")?;
        let mut report = report::Report::new(&machine, &engine, &bin_dir, plan.quick);
        report.status_page(&page::run(1000, if plan.quick { 3 } else { 10 }));
        println!("{}", report.render());
        return Ok(report.all_ok());
    }
    let watchdog_bin = daemon::binary(&bin_dir, "vigil-watchdog")?;
    let executor_bin = daemon::binary(&bin_dir, "vigil-executor")?;
    let machine = procfs::machine()?;

    vigil_tests::docker::require_engine();
    let client = DockerClient::new("unix:///var/run/docker.sock", Duration::from_secs(10))
        .context("building the Docker client")?;
    let engine = rt
        .block_on(client.negotiate())
        .context("asking the Docker engine for its version")?;
    vigil_tests::docker::TestImage::ensure();

    let work = tempfile::Builder::new()
        .prefix("vigil-bench-")
        .tempdir()
        .context("creating the work directory")?;
    let keys_dir = work.path().join("keys");
    let keys = vigil_protocol::signing::write_keypair(&keys_dir, KEY_ID)
        .context("writing the signing key pair")?;

    let mut bench = Bench {
        guard: fleet::RunGuard::new(),
        redis: None,
        client,
        watchdog_bin,
        executor_bin,
        keys_dir,
        key_file: keys.private,
        key_id: KEY_ID.to_string(),
        work: work.path().to_path_buf(),
        rt,
        _work: work,
    };
    bench.redis = Some(start_redis(&bench.rt)?);

    let mut report = report::Report::new(&machine, &engine, &bin_dir, plan.quick);
    if let Some(sizes) = &plan.stats_only {
        let group = bench.guard.group();
        let points = sweep::run(&bench, &group, 0, sizes, plan.sweep_reps).map(|(p, _)| p);
        report.sweeps(&points, plan.sweep_reps);
        if points.is_ok() {
            let largest = sizes.iter().copied().max().unwrap_or(0);
            report.engine_cpu(&engine::run(&bench, &group, largest, plan.engine_window));
        }
        if let Err(e) = group.remove() {
            eprintln!("bench: removing the stats containers failed: {e:#}");
        }
        println!("{}", report.render());
        return Ok(report.all_ok());
    }

    let alert = latency::run(&bench, latency::Measure::Alert, plan.incidents);
    report.latency(
        "Event-to-alert latency, grouping off",
        &alert,
        None,
        Some(50.0),
    );
    interrupt::check()?;
    let alert_default = latency::run(&bench, latency::Measure::AlertDefault, plan.incidents);
    report.latency(
        "Event-to-alert latency, default configuration (2 s grouping window; each alert its \
         project's first)",
        &alert_default,
        None,
        Some(50.0),
    );
    interrupt::check()?;
    let request = latency::run(&bench, latency::Measure::Request, plan.incidents);
    report.latency(
        "Event-to-restart-issued latency",
        &request,
        None,
        Some(100.0),
    );
    interrupt::check()?;

    let sweep_group = bench.guard.group();
    let (points, mut created) =
        match sweep::run(&bench, &sweep_group, 0, &plan.sweep_sizes, plan.sweep_reps) {
            Ok((p, n)) => (Ok(p), n),
            Err(e) => (Err(e), 0),
        };
    report.sweeps(&points, plan.sweep_reps);
    interrupt::check()?;
    let in_scope = plan.sweep_sizes.iter().copied().max().unwrap_or(0);

    let executor = match footprint::start_executor(&bench) {
        Ok(mut executor) => {
            let fp = footprint::footprint(
                &bench,
                &mut executor,
                &sweep_group,
                in_scope,
                plan.settle,
                plan.idle_window,
            );
            report.footprint(&fp);
            Ok(executor)
        }
        Err(e) => {
            let e = e.context("starting the executor");
            report.footprint(&Err(anyhow::anyhow!("{e:#}")));
            Err(e)
        }
    };
    interrupt::check()?;
    if points.is_ok() {
        let cpu = engine::run(&bench, &sweep_group, in_scope, plan.engine_window);
        report.engine_cpu(&cpu);
        interrupt::check()?;
        if let Some(large) = plan.large_sweep {
            match sweep::run(&bench, &sweep_group, created, &[large], plan.sweep_reps) {
                Ok((p, n)) => {
                    created = n;
                    report.sweeps(&Ok(p), plan.sweep_reps);
                    let rss = footprint::watchdog_rss(&bench, &sweep_group, created, plan.settle);
                    report.watchdog_rss(&rss);
                }
                Err(e) => report.sweeps(&Err(e), plan.sweep_reps),
            }
            interrupt::check()?;
        }
    }
    if let Err(e) = sweep_group.remove() {
        eprintln!("bench: removing the sweep containers failed: {e:#}");
    }
    match executor {
        Ok(mut executor) => {
            let flood = footprint::flood(&bench, &mut executor, plan.flood, plan.flood_timeout);
            report.flood(&flood);
            interrupt::check()?;
            let group = bench.guard.group();
            let restarts = executor_load::parallel_restarts(
                &bench,
                &mut executor,
                &group,
                5,
                Duration::from_secs(10),
            );
            report.parallel_restarts(&restarts);
            if let Err(e) = group.remove() {
                eprintln!("bench: removing the restart containers failed: {e:#}");
            }
        }
        Err(e) => {
            report.parallel_restarts(&Err(anyhow::anyhow!("{e:#}")));
            report.flood(&Err(e));
        }
    }
    let _ = sweep_group.remove();
    report.status_page(&page::run(1000, if plan.quick { 3 } else { 10 }));

    println!("{}", report.render());
    Ok(report.all_ok())
}

fn start_redis(rt: &tokio::runtime::Runtime) -> Result<RedisCtx> {
    let server = RedisServer::start();
    let url = server.url();
    let conn = rt
        .block_on(async {
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
        })
        .context("connecting to the benchmark's redis-server")?;
    Ok(RedisCtx {
        url,
        names: Names::new(DEFAULT_PREFIX),
        conn,
        _server: server,
    })
}

/// The path relative to the current directory when it is inside it (for the report).
pub fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
