//! The watchdog binary against the machine's real Docker engine, alerting a local fake Telegram
//! Bot API and a fake Slack webhook (issue 2, "Real Docker engine").
//!
//! Each test runs its own watchdog process with a clean environment and a unique scope label, so
//! the tests run in parallel without seeing each other's containers. Counts are asserted after a
//! settle period: "exactly one" means one arrived, and a few seconds later there is still one.
//! No engine is a failure, never a skip.

use std::time::{Duration, Instant};
use vigil_tests::docker::{Container, Healthcheck, RunningContainer, docker, require_engine};
use vigil_tests::watchdog_proc::{Sinks, Watchdog, WatchdogBuilder};

/// How long an alert may take to arrive on a busy machine (the engine's own health retries
/// included).
const ARRIVAL: Duration = Duration::from_secs(30);
/// How long to keep watching after the expected messages arrived, before checking counts.
const SETTLE: Duration = Duration::from_secs(5);

/// A watchdog with both fake sinks, up and connected to the engine.
fn watchdog_with_sinks() -> (Watchdog, Sinks) {
    require_engine();
    let sinks = Sinks::start();
    let wd = WatchdogBuilder::new().sinks(&sinks).start();
    (wd, sinks)
}

fn is_alert(kind: &'static str, name: &str) -> impl Fn(&str) -> bool {
    let name = name.to_owned();
    move |m: &str| m.starts_with("ALERT") && m.contains(kind) && m.contains(&name)
}

fn names(name: &str) -> impl Fn(&str) -> bool {
    let name = name.to_owned();
    move |m: &str| m.contains(&name)
}

/// A container that exits with code 3 after `delay_s` seconds (a control for "no alert" tests:
/// its alert proves the watchdog was watching).
fn exit3_after(wd: &Watchdog, hint: &str, delay_s: u32) -> RunningContainer {
    wd.scoped(Container::new().name_hint(hint))
        .shell(&format!("sleep {delay_s}; exit 3"))
        .start()
}

#[test]
fn failing_healthcheck_alerts_once_per_sink_and_recovery_names_the_duration() {
    let (mut wd, sinks) = watchdog_with_sinks();
    let check = Healthcheck {
        retries: 2,
        ..Healthcheck::new("test -s /tmp/ok")
    };
    let c = wd
        .scoped(Container::new().name_hint("health"))
        .healthcheck(check)
        .shell("echo ok > /tmp/ok; exec sleep 300")
        .start();
    c.wait_for_health("healthy", ARRIVAL);

    // Empty the file: the check fails, and after 2 retries the engine says unhealthy.
    docker(&["exec", c.id(), "sh", "-c", ": > /tmp/ok"]);
    let (tg, slack) = sinks.expect_exactly(
        "unhealthy alert",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        SETTLE,
    );
    for m in tg.iter().chain(&slack) {
        assert!(m.contains(&format!("container: {}", c.name())), "{m}");
    }
    assert_eq!(c.health().as_deref(), Some("unhealthy"));

    docker(&["exec", c.id(), "sh", "-c", "echo ok > /tmp/ok"]);
    let recovered = |m: &str| {
        m.starts_with("RECOVERED")
            && m.contains("container_unhealthy")
            && m.contains(c.name())
            && m.contains("recovered after ")
    };
    sinks.expect_exactly("recovery", 1, recovered, ARRIVAL, SETTLE);
    // Nothing else at all: one alert and one recovery per sink.
    assert_eq!(sinks.telegram_messages().len(), 2, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 2, "{}", sinks.describe());
    wd.assert_running("after the recovery");
}

#[test]
fn exit_code_3_alerts_once_per_sink() {
    let (mut wd, sinks) = watchdog_with_sinks();
    let c = exit3_after(&wd, "exit3", 1);
    let (tg, slack) = sinks.expect_exactly(
        "exit alert",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        // Longer than a couple of sweeps (2 s): the sweep sees the exited container too.
        Duration::from_secs(6),
    );
    for m in tg.iter().chain(&slack) {
        assert!(m.contains('3'), "the exit code is named: {m}");
    }
    assert_eq!(c.exit_code(), 3);
    assert_eq!(sinks.telegram_messages().len(), 1, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 1, "{}", sinks.describe());
    wd.assert_running("after the exit alert");
}

#[test]
fn docker_stop_of_a_healthy_container_is_not_an_alert() {
    let (mut wd, sinks) = watchdog_with_sinks();
    // Docker's default of 3 retries. With 1, a probe the engine starts while it kills the
    // container can fail and flip it to `unhealthy` just before its `die`, and the watchdog does
    // not yet see that as part of the stop (seen once in about ten runs; the replay of that
    // sequence is `unhealthy_during_an_operator_stop_is_not_an_alert` in watchdog_faults.rs).
    let check = Healthcheck {
        retries: 3,
        ..Healthcheck::new("true")
    };
    let stopped = wd
        .scoped(Container::new().name_hint("stopped"))
        .healthcheck(check)
        .command(&["sleep", "300"])
        .start();
    stopped.wait_for_health("healthy", ARRIVAL);
    // `sleep` as PID 1 ignores SIGTERM: the engine SIGKILLs it after 1 s, exit code 137, the
    // hardest case (the same code an OOM kill has).
    stopped.stop_with_timeout(1);
    assert_eq!(stopped.exit_code(), 137);
    let control = exit3_after(&wd, "control", 0);

    let settled = Instant::now();
    sinks.expect_exactly(
        "control alert",
        1,
        is_alert("container_exited", control.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_secs(8).saturating_sub(settled.elapsed()));
    for m in sinks
        .telegram_messages()
        .iter()
        .chain(&sinks.slack_messages())
    {
        assert!(
            !m.contains(stopped.name()),
            "an operator stop must not alert: {m}"
        );
    }
    assert_eq!(sinks.telegram_messages().len(), 1, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 1, "{}", sinks.describe());
    wd.assert_running("after the stop");
}

#[test]
fn a_container_in_its_start_period_is_not_an_alert() {
    let (mut wd, sinks) = watchdog_with_sinks();
    let check = Healthcheck {
        start_period: Duration::from_secs(60),
        ..Healthcheck::new("false")
    };
    let starting = wd
        .scoped(Container::new().name_hint("starting"))
        .healthcheck(check)
        .command(&["sleep", "300"])
        .start();
    let started = Instant::now();
    let control = exit3_after(&wd, "control", 2);

    sinks.expect_exactly(
        "control alert",
        1,
        is_alert("container_exited", control.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
    // The check failed ~10 times by now, all inside the start period.
    assert_eq!(starting.health().as_deref(), Some("starting"));
    let about_starting = names(starting.name());
    assert!(
        !sinks.telegram_messages().iter().any(|m| about_starting(m))
            && !sinks.slack_messages().iter().any(|m| about_starting(m)),
        "`starting` is not unhealthy: {}",
        sinks.describe()
    );
    assert_eq!(sinks.telegram_messages().len(), 1, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 1, "{}", sinks.describe());
    wd.assert_running("after the start period test");
}

#[test]
fn an_oom_kill_alerts_once_as_oom_not_as_exit() {
    let (mut wd, sinks) = watchdog_with_sinks();
    let c = wd
        .scoped(Container::new().name_hint("oom"))
        .memory("16m")
        .command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"])
        .start();
    let (tg, _) = sinks.expect_exactly(
        "OOM alert",
        1,
        names(c.name()),
        ARRIVAL,
        Duration::from_secs(6),
    );
    let state = c.inspect_json()["State"].clone();
    assert_eq!(
        state["OOMKilled"], true,
        "the engine must OOM-kill it: {state}"
    );
    for m in tg.iter().chain(&sinks.slack_messages()) {
        assert!(
            m.starts_with("ALERT") && m.contains("container_oom_killed"),
            "{m}"
        );
        assert!(
            !m.contains("container_exited"),
            "an OOM kill is not also an exit: {m}"
        );
    }
    assert_eq!(sinks.telegram_messages().len(), 1, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 1, "{}", sinks.describe());
    wd.assert_running("after the OOM kill");
}

#[test]
fn a_crash_loop_alerts_once_as_a_restart_loop_not_once_per_cycle() {
    let (mut wd, sinks) = watchdog_with_sinks();
    let c = wd
        .scoped(Container::new().name_hint("loop"))
        .restart("always")
        .shell("exit 1")
        .start();
    let started = Instant::now();
    let is_loop = is_alert("container_restart_loop", c.name());
    assert!(
        sinks.wait_each(1, &is_loop, ARRIVAL),
        "no restart-loop alert: {}",
        sinks.describe()
    );
    // Keep watching for 20 s in all, while the engine keeps restarting it.
    std::thread::sleep(
        Duration::from_secs(20)
            .saturating_sub(started.elapsed())
            .max(SETTLE),
    );
    let restarts = c.inspect_json()["RestartCount"].as_u64().unwrap_or(0);
    assert!(
        restarts >= 4,
        "the engine restarted it only {restarts} times"
    );
    for (sink, messages) in [
        ("telegram", sinks.telegram_messages()),
        ("slack", sinks.slack_messages()),
    ] {
        let loops = messages.iter().filter(|m| is_loop(m)).count();
        let exits = messages
            .iter()
            .filter(|m| is_alert("container_exited", c.name())(m))
            .count();
        assert_eq!(loops, 1, "{sink}: one restart-loop alert; {messages:#?}");
        assert!(exits <= 1, "{sink}: at most one exit alert; {messages:#?}");
        assert!(
            messages.len() <= 2,
            "{sink}: nothing per cycle ({restarts} restarts); {messages:#?}"
        );
    }
    wd.assert_running("during the crash loop");
}

#[test]
fn twenty_containers_of_one_project_failing_together_make_at_most_two_messages_per_sink() {
    const N: usize = 20;
    require_engine();
    let sinks = Sinks::start();
    // Leading-edge grouping: the first exit goes out at once, the other nineteen together one
    // window later. Twenty exits on a loaded 2-core machine can spread over more than the
    // default 2 s; the window is widened so the test checks grouping, not the engine's speed.
    let mut wd = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_NOTIFY__GROUP_WINDOW", "10s")
        .start();
    let project = vigil_tests::docker::unique_name("proj");
    let trigger = tempfile::Builder::new()
        .prefix("vigil-trig-")
        .tempdir()
        .expect("a temp dir for the trigger file");
    let mount = format!("{}:/trig", trigger.path().display());
    let builders: Vec<Container> = (0..N)
        .map(|i| {
            wd.scoped(Container::new().name_hint(&format!("s{i}")))
                .compose(&project, &format!("s{i}"))
                .arg("-v")
                .arg(&mount)
                .shell("while [ ! -f /trig/go ]; do sleep 0.2; done; exit 3")
        })
        .collect();
    // Four at a time: `docker run` is slow on a 2-core machine.
    let containers: Vec<RunningContainer> = std::thread::scope(|s| {
        let handles: Vec<_> = builders
            .chunks(N / 4)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .cloned()
                        .map(Container::start)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("starting containers"))
            .collect()
    });
    assert_eq!(containers.len(), N);
    for c in &containers {
        c.wait_for_status("running", ARRIVAL);
    }
    std::fs::write(trigger.path().join("go"), b"go").expect("writing the trigger file");

    let (tg, slack) = sinks.expect_exactly(
        "the first exit at once, then one follow-up",
        2,
        |m: &str| m.contains(&project),
        ARRIVAL,
        Duration::from_secs(5),
    );
    for messages in [&tg, &slack] {
        let names_in = |m: &String| containers.iter().filter(|c| m.contains(c.name())).count();
        let mut named: Vec<usize> = messages.iter().map(names_in).collect();
        named.sort_unstable();
        assert_eq!(
            named,
            [1, N - 1],
            "one container, then the rest: {messages:#?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains(&format!("{} problems", N - 1))),
            "{messages:#?}"
        );
        for c in &containers {
            assert!(
                messages.iter().any(|m| m.contains(c.name())),
                "the messages name {}: {messages:#?}",
                c.name()
            );
        }
    }
    for c in &containers {
        assert_eq!(c.exit_code(), 3, "{} exited 3", c.name());
    }
    assert_eq!(sinks.telegram_messages().len(), 2, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 2, "{}", sinks.describe());
    wd.assert_running("after the group");
}

/// The README's run command on a fresh clone: no config file, no tokens, no Redis (only a scope
/// label, so the test sees its own container alone).
#[test]
fn fresh_clone_runs_alert_only_and_prints_alerts_to_the_log() {
    require_engine();
    let mut wd = WatchdogBuilder::bare()
        .scope()
        .raw_engine(
            "the README's run command sets nothing: the engine's default socket is the point",
        )
        .start();
    assert!(wd.gate().is_none());
    wd.process.expect_line(
        "alert-only mode",
        |l| l.contains("Alert-only mode"),
        Duration::from_secs(5),
    );
    let c = exit3_after(&wd, "fresh", 1);
    let alert = wd.process.expect_line(
        "the exit alert in the log",
        |l| l.contains("Alert.") && l.contains("container_exited") && l.contains(c.name()),
        ARRIVAL,
    );
    assert!(alert.contains("WARN"), "alerts log at WARN: {alert}");
    let on_stderr = wd
        .process
        .lines()
        .into_iter()
        .any(|l| l.stream == vigil_tests::process::Stream::Stderr && l.text == alert);
    assert!(on_stderr, "the log goes to stderr");
    wd.assert_running("after alerting");
}
