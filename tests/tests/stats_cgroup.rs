//! Container CPU and memory from the host's cgroup files, against the machine's real engine: a
//! container holding memory is read from its cgroup with the same numbers the engine's stats API
//! gives, the files are readable by an unprivileged user through a read-only mount (as the
//! compose file mounts them), and a memory alert fires through the cgroup path, or through the
//! engine when the cgroup root holds nothing.
//! No engine is a failure, not a skip.

use std::time::Duration;
use vigil_docker::{DockerClient, StatsSample};
use vigil_tests::docker::{Container, RUN_LABEL, RunningContainer, require_engine};
use vigil_tests::watchdog_proc::{Sinks, Watchdog, WatchdogBuilder, http_get_text, poll_until};
use vigil_watchdog::collect::stats::{CgroupSource, Sampler};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const MIB: u64 = 1024 * 1024;

async fn client() -> DockerClient {
    vigil_tests::docker::real_client().await
}

/// A container limited to `limit` that writes `mib` MiB into its `/dev/shm` (a tmpfs: shared
/// memory, charged to the container and never inactive page cache) and then sleeps.
fn holding(container: Container, limit: &str, mib: u64) -> RunningContainer {
    let c = container
        .memory(limit)
        .shell(&format!(
            "head -c {mib}m /dev/zero > /dev/shm/fill && echo filled; exec sleep 300"
        ))
        .start();
    let filled = poll_until(Duration::from_secs(30), || c.logs().contains("filled"));
    assert!(filled, "{} did not fill its memory: {}", c.name(), c.logs());
    c
}

fn cgroup_sample(id: &str) -> StatsSample {
    let mut source = CgroupSource::new(CGROUP_ROOT, "/proc");
    let round = source.read(&[id.to_owned()]);
    assert!(
        round.missed.is_empty(),
        "{id} not read from {CGROUP_ROOT}: {:?}",
        round.problem.map(|e| e.to_string())
    );
    round.samples[id]
}

#[tokio::test]
async fn a_containers_cgroup_sample_agrees_with_the_engines_stats() {
    let client = client().await;
    let run = uuid::Uuid::new_v4().to_string();
    let c = holding(
        Container::new()
            .name_hint("cgroup-mem")
            .label(RUN_LABEL, &run),
        "64m",
        20,
    );
    let engine = client.stats_once(c.id()).await.expect("engine stats");
    let files = cgroup_sample(c.id());

    // Memory: both hold the 20 MiB, and agree within 1 MiB (the shell and sleep may move a
    // page or two between the reads).
    assert!(files.working_set() >= 20 * MIB, "{files:?}");
    let diff = files.working_set().abs_diff(engine.working_set());
    assert!(
        diff <= MIB,
        "cgroup {} vs engine {} bytes",
        files.working_set(),
        engine.working_set()
    );
    assert_eq!(files.memory_limit, 64 * MIB);
    assert_eq!(files.memory_limit, engine.memory_limit);
    let (pf, pe) = (
        files.memory_percent().unwrap(),
        engine.memory_percent().unwrap(),
    );
    assert!((pf - pe).abs() < 2.0, "memory % cgroup {pf} vs engine {pe}");

    // CPU: the same counters, read later, so never behind the engine's; the same CPU count.
    assert_eq!(files.online_cpus, engine.online_cpus);
    assert!(files.cpu_total >= engine.cpu_total, "{files:?} {engine:?}");
    assert!(
        files.system_cpu >= engine.system_cpu,
        "{files:?} {engine:?}"
    );
    // Within a minute of CPU time of each other (engine and files read seconds apart).
    let cpus = u64::from(files.online_cpus);
    assert!(
        files.system_cpu - engine.system_cpu < 60_000_000_000 * cpus,
        "system CPU from /proc/stat as the engine computes it: {files:?} {engine:?}"
    );

    // An unlimited container reports the host's memory, as the engine does.
    let unlimited = Container::new()
        .name_hint("cgroup-unlimited")
        .label(RUN_LABEL, &run)
        .command(&["sleep", "300"])
        .start();
    let engine = client.stats_once(unlimited.id()).await.expect("stats");
    let files = cgroup_sample(unlimited.id());
    assert_eq!(files.memory_limit, engine.memory_limit);
}

#[tokio::test]
async fn a_busy_containers_cpu_percent_comes_from_two_cgroup_samples() {
    let client = client().await;
    let run = uuid::Uuid::new_v4().to_string();
    let busy = Container::new()
        .name_hint("cgroup-cpu")
        .label(RUN_LABEL, &run)
        .shell("while :; do :; done")
        .start();
    let mut sampler = Sampler::new(client, 4).with_cgroups(CgroupSource::new(CGROUP_ROOT, "/proc"));
    let ids = vec![busy.id().to_owned()];
    let first = sampler.round(&ids).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = sampler.round(&ids).await;
    assert_eq!((first.from_cgroups, second.from_cgroups), (1, 1));
    assert_eq!((first.from_engine, second.from_engine), (0, 0));
    let cpu = second.samples[busy.id()]
        .cpu_percent_since(&first.samples[busy.id()])
        .expect("counters advanced");
    // A shell spinning on a machine shared with other work: clearly busy. (`docker stats`
    // scaling: 100 % is one CPU; steal time, left out of the system total as the engine does,
    // can lift one CPU's work above 100 %.)
    let cpus = f64::from(second.samples[busy.id()].online_cpus);
    assert!(cpu > 10.0 && cpu <= 100.0 * cpus, "CPU {cpu} %");
}

#[test]
fn an_unprivileged_user_reads_the_files_through_a_read_only_mount() {
    require_engine();
    let run = uuid::Uuid::new_v4().to_string();
    let target = Container::new()
        .name_hint("cgroup-target")
        .label(RUN_LABEL, &run)
        .command(&["sleep", "300"])
        .start();
    let files = if std::path::Path::new(CGROUP_ROOT)
        .join("cgroup.controllers")
        .exists()
    {
        format!(
            "/host/cg/docker/{0}/memory.current /host/cg/docker/{0}/cpu.stat",
            target.id()
        )
    } else {
        format!(
            "/host/cg/memory/docker/{0}/memory.usage_in_bytes \
             /host/cg/memory/docker/{0}/memory.stat /host/cg/cpuacct/docker/{0}/cpuacct.usage",
            target.id()
        )
    };
    // As the compose file runs the watchdog: another user, the host's cgroups read-only.
    let reader = Container::new()
        .name_hint("cgroup-reader")
        .label(RUN_LABEL, &run)
        .user("10001:10000")
        .arg(&format!("--volume={CGROUP_ROOT}:/host/cg:ro"))
        .shell(&format!(
            "cat {files} > /dev/null && echo readable; echo x > /host/cg/memory.x 2>/dev/null \
             || echo read-only; exec sleep 300"
        ))
        .start();
    let seen = poll_until(Duration::from_secs(20), || {
        let logs = reader.logs();
        logs.contains("readable") && logs.contains("read-only")
    });
    assert!(seen, "reader said: {}", reader.logs());
}

/// A watchdog scoped to its own containers, alerting on memory above 50 % at once.
fn memory_watchdog(builder: WatchdogBuilder, sinks: &Sinks) -> Watchdog {
    builder
        .sinks(sinks)
        .env("WATCHDOG_THRESHOLDS__MEMORY_PERCENT", "50")
        .env("WATCHDOG_ALERTS__CONTAINER_MEMORY_HIGH__FOR", "0s")
        .start()
}

/// `vigil_watchdog_stats_samples_total{source="<source>"}` from the watchdog's `/metrics`.
fn samples_from(wd: &Watchdog, source: &str) -> u64 {
    let addr = wd.listen().expect("the watchdog listens");
    let (status, text) = http_get_text(addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{text}");
    let series = format!("vigil_watchdog_stats_samples_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .trim()
        .parse()
        .expect("a count")
}

fn memory_alert_fires(wd: &Watchdog, sinks: &Sinks) {
    // 20 MiB of 32: above 50 % (with the shell, about 63 %).
    let c = holding(wd.scoped(Container::new().name_hint("memhigh")), "32m", 20);
    let name = c.name().to_owned();
    let is_memory_alert = move |m: &str| {
        m.starts_with("ALERT") && m.contains("container_memory_high") && m.contains(&name)
    };
    assert!(
        sinks.wait_each(1, &is_memory_alert, Duration::from_secs(30)),
        "no memory alert: {}",
        sinks.describe()
    );
}

#[test]
fn a_memory_alert_fires_through_the_cgroup_path() {
    require_engine();
    let sinks = Sinks::start();
    let mut wd = memory_watchdog(WatchdogBuilder::new(), &sinks);
    memory_alert_fires(&wd, &sinks);
    assert!(samples_from(&wd, "cgroup") > 0);
    assert_eq!(
        samples_from(&wd, "engine"),
        0,
        "nothing asked of the engine"
    );
    wd.assert_running("after the memory alert");
}

#[test]
fn with_no_cgroup_hierarchy_the_same_alert_fires_through_the_engine() {
    require_engine();
    let sinks = Sinks::start();
    let empty = tempfile::tempdir().expect("an empty cgroup root");
    let builder =
        WatchdogBuilder::new().env("WATCHDOG_CGROUP_ROOT", &empty.path().display().to_string());
    let mut wd = memory_watchdog(builder, &sinks);
    memory_alert_fires(&wd, &sinks);
    assert_eq!(samples_from(&wd, "cgroup"), 0);
    assert!(
        samples_from(&wd, "engine") > 0,
        "the engine's stats API was used"
    );
    wd.assert_running("after the memory alert");
}
