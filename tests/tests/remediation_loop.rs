//! Remediation as a closed loop (issue 11), end to end: the real `vigil-watchdog` and
//! `vigil-executor` binaries, a real `redis-server`, the machine's Docker engine, a fake Telegram
//! and Slack. Every incident of an opted-in container ends healed or escalated, and people hear
//! its story once:
//! - one heal: per sink one alert, one "restarted (audit #)" update, one "healed" message, and
//!   no recovery before the restart finished;
//! - a burst of 8 over the executor's budget (5 per minute): all healthy again, each restarted
//!   exactly once;
//! - always broken: restarts up to the breaker, then exactly one escalation per sink and no
//!   more requests;
//! - Redis stopped for 30 s while a container fails, then started empty: restarted once;
//! - the executor down for 100 s: restarted once after it returns, by a fresh request;
//! - a `--restart always` container crashing at once: no `start` request;
//! - alert-only mode (no Redis), watchdog restarted mid-incident: no second page;
//! - a crash Docker's restart policy hides while the event stream is cut (the gate stopped):
//!   reported once after it returns.
//!
//! "Exactly one" means: one arrived, and after a settle period there is still one.

use serde_json::Value;
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_tests::docker::{Container, DOCKER_SOCKET, Healthcheck, RunningContainer, docker};
use vigil_tests::stack_rig::{HEALS_ON_RESTART, HEALTH_CMD, Stack, break_health};
use vigil_tests::watchdog_proc::poll_until;

/// How long one step may take on a busy 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(45);
/// How long to keep watching after the expected effects arrived.
const SETTLE: Duration = Duration::from_secs(8);

/// Broken from its first start until it is restarted once (the writable layer keeps
/// `/tmp/started` across restarts).
const BROKEN_UNTIL_RESTARTED: &str = "if [ -f /tmp/started ]; then echo ok > /tmp/state; \
     else touch /tmp/started; echo broken > /tmp/state; fi; \
     trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

// ---- Helpers ----------------------------------------------------------------------------------

fn for_container<'a>(records: &'a [Value], c: &RunningContainer, decision: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["decision"] == decision && r["target"]["id"] == c.id())
        .collect()
}

fn executed(records: &[Value], c: &RunningContainer) -> usize {
    for_container(records, c, "executed").len()
}

fn is_alert(kind: &str, name: &str) -> impl Fn(&str) -> bool {
    let (kind, name) = (kind.to_owned(), name.to_owned());
    move |m: &str| m.starts_with("ALERT") && m.contains(&kind) && m.contains(&name)
}

fn is_restarted(name: &str) -> impl Fn(&str) -> bool {
    let needle = format!("restarted {name}");
    move |m: &str| m.contains(&needle) && m.contains("(audit #")
}

fn is_healed(name: &str) -> impl Fn(&str) -> bool {
    let needle = format!("{name} healed after");
    move |m: &str| m.contains(&needle)
}

fn is_recovered(name: &str) -> impl Fn(&str) -> bool {
    let name = name.to_owned();
    move |m: &str| m.contains("RECOVERED") && m.contains(&name)
}

fn is_escalation(name: &str) -> impl Fn(&str) -> bool {
    let needle = format!("manual action needed for {name}");
    move |m: &str| m.contains(&needle)
}

fn restart_count(c: &RunningContainer) -> u64 {
    c.inspect_json()["RestartCount"]
        .as_u64()
        .unwrap_or_default()
}

/// More events than the engine keeps for `since=` replays (256 in current engines; the margin
/// covers larger buffers).
const EVENT_FLOOD: usize = 1500;

/// `n` container events on `c` (`kill` with SIGWINCH, which a shell ignores), straight on the
/// engine's socket: fast, and harmless to the container.
fn flood_events(c: &RunningContainer, n: usize) {
    use std::io::{Read, Write};
    for i in 0..n {
        let mut s = std::os::unix::net::UnixStream::connect(DOCKER_SOCKET).expect("engine socket");
        write!(
            s,
            "POST /containers/{}/kill?signal=WINCH HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n",
            c.id()
        )
        .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        assert!(
            answer.starts_with("HTTP/1.0 204") || answer.starts_with("HTTP/1.1 204"),
            "kill #{i}: {answer}"
        );
    }
}

// ---- Scenarios ----------------------------------------------------------------------------------

#[test]
fn one_heal_is_one_alert_one_restarted_update_and_one_healed_message_per_sink() {
    let rig = Stack::builder().executor().start();
    let c = rig.opted_in("heal").start();
    c.wait_for_health("healthy", ARRIVAL);
    break_health(&c);

    rig.sinks.expect_exactly(
        "the alert",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    rig.sinks.expect_exactly(
        "the restarted update",
        1,
        is_restarted(c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    rig.sinks.expect_exactly(
        "the healed message",
        1,
        is_healed(c.name()),
        ARRIVAL,
        SETTLE,
    );
    for sink in [rig.sinks.telegram_messages(), rig.sinks.slack_messages()] {
        let about: Vec<&String> = sink.iter().filter(|m| m.contains(c.name())).collect();
        assert_eq!(
            about.len(),
            3,
            "alert, restarted, healed and nothing else about it: {about:#?}"
        );
        assert!(
            is_alert("container_unhealthy", c.name())(about[0])
                && is_restarted(c.name())(about[1])
                && is_healed(c.name())(about[2]),
            "in story order: {about:#?}"
        );
        assert!(
            !about.iter().any(|m| is_recovered(c.name())(m)),
            "no recovery of its own: {about:#?}"
        );
    }
    assert_eq!(c.health().as_deref(), Some("healthy"));
    let records = rig.records();
    assert_eq!(executed(&records, &c), 1, "{}", rig.describe());
    assert_eq!(records.len(), 1, "{records:#?}");
    rig.verify_audit();
}

#[test]
fn burst_of_eight_over_the_budget_all_heal_each_restarted_once() {
    let rig = Stack::builder()
        .executor()
        .executor_env("EXECUTOR_POLICY__BUDGET_PER_MINUTE", "5")
        .start();
    let containers: Vec<RunningContainer> = (0..8)
        .map(|i| {
            rig.scoped(&format!("burst{i}"))
                .label(labels::REMEDIATE, "true")
                .healthcheck(Healthcheck::new(HEALTH_CMD))
                .shell(BROKEN_UNTIL_RESTARTED)
                .start()
        })
        .collect();
    let began = Instant::now();
    let all_healthy = poll_until(Duration::from_secs(150), || {
        containers
            .iter()
            .all(|c| c.health().as_deref() == Some("healthy") && executed(&rig.records(), c) == 1)
    });
    assert!(
        all_healthy,
        "not all 8 healthy again within 150 s: {:?}\n{}",
        containers
            .iter()
            .map(|c| (c.name().to_owned(), c.health()))
            .collect::<Vec<_>>(),
        rig.describe()
    );
    eprintln!(
        "all 8 healthy again {:?} after they started",
        began.elapsed()
    );
    std::thread::sleep(SETTLE);
    let records = rig.records();
    for c in &containers {
        assert_eq!(
            executed(&records, c),
            1,
            "{} restarted exactly once\n{}",
            c.name(),
            rig.describe()
        );
        assert_eq!(c.health().as_deref(), Some("healthy"), "{}", c.name());
    }
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "refused" && r["reason"] == "budget"),
        "the budget held some back (else this test proves nothing): {records:#?}"
    );
    rig.verify_audit();
}

#[test]
fn always_broken_backs_off_to_the_breaker_then_escalates_once_and_stops_asking() {
    let rig = Stack::builder()
        .executor()
        .executor_env("EXECUTOR_POLICY__BACKOFF_INITIAL", "2s")
        .executor_env("EXECUTOR_POLICY__BACKOFF_MAX", "4s")
        .executor_env("EXECUTOR_POLICY__BREAKER_MAX_ACTIONS", "3")
        .start();
    let c = rig
        .scoped("broken")
        .label(labels::REMEDIATE, "true")
        .healthcheck(Healthcheck::new("false"))
        .shell(HEALS_ON_RESTART)
        .start();
    rig.sinks.expect_exactly(
        "one escalation",
        1,
        is_escalation(c.name()),
        Duration::from_secs(150),
        Duration::ZERO,
    );
    let asked = rig.requests().len();
    std::thread::sleep(Duration::from_secs(20));
    rig.sinks.expect_exactly(
        "still one escalation",
        1,
        is_escalation(c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    assert_eq!(
        rig.requests().len(),
        asked,
        "no request after the escalation\n{}",
        rig.describe()
    );
    let records = rig.records();
    assert_eq!(
        executed(&records, &c),
        3,
        "restarts up to the breaker\n{}",
        rig.describe()
    );
    assert!(
        for_container(&records, &c, "refused")
            .iter()
            .any(|r| r["reason"] == "breaker_opened"),
        "{records:#?}"
    );
    assert_eq!(
        rig.sinks
            .telegram_messages()
            .iter()
            .filter(|m| is_alert("container_unhealthy", c.name())(m))
            .count(),
        1,
        "one alert for the whole incident\n{}",
        rig.describe()
    );
    rig.verify_audit();
}

#[test]
fn redis_outage_then_empty_redis_the_failing_container_is_restarted_once() {
    let mut rig = Stack::builder().executor().start();
    let first = rig.opted_in("before").start();
    let second = rig.opted_in("during").start();
    first.wait_for_health("healthy", ARRIVAL);
    second.wait_for_health("healthy", ARRIVAL);
    // The loop works before the outage.
    break_health(&first);
    rig.sinks.expect_exactly(
        "first healed",
        1,
        is_healed(first.name()),
        ARRIVAL,
        Duration::ZERO,
    );

    rig.redis_mut().kill();
    break_health(&second);
    rig.sinks.expect_exactly(
        "the alert during the outage",
        1,
        is_alert("container_unhealthy", second.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        executed(&rig.records(), &second),
        0,
        "nothing acted while Redis was down"
    );
    rig.redis_mut().start_again();
    let back = Instant::now();
    assert!(
        poll_until(Duration::from_secs(60), || executed(
            &rig.records(),
            &second
        ) == 1),
        "not restarted within 60 s of Redis's return\n{}",
        rig.describe()
    );
    eprintln!("restarted {:?} after Redis returned", back.elapsed());
    second.wait_for_health("healthy", ARRIVAL);
    rig.sinks.expect_exactly(
        "second healed",
        1,
        is_healed(second.name()),
        ARRIVAL,
        SETTLE,
    );
    let records = rig.records();
    assert_eq!(executed(&records, &second), 1, "{}", rig.describe());
    assert_eq!(executed(&records, &first), 1, "{}", rig.describe());
    rig.sinks.expect_exactly(
        "first told once, even after the executor re-appended its log",
        1,
        is_restarted(first.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    rig.verify_audit();
}

#[test]
fn executor_down_for_100s_then_a_fresh_request_restarts_once() {
    let mut rig = Stack::builder().executor().start();
    let c = rig.opted_in("exdown").start();
    c.wait_for_health("healthy", ARRIVAL);
    rig.kill_executor();
    break_health(&c);
    rig.sinks.expect_exactly(
        "the alert",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_secs(100));
    let first_request = rig
        .requests()
        .into_iter()
        .find(|r| r.target == c.id())
        .map(|r| r.id)
        .expect("a request was sent while the executor was down");
    rig.start_executor();
    let back = Instant::now();
    assert!(
        poll_until(ARRIVAL, || executed(&rig.records(), &c) == 1),
        "not restarted after the executor returned\n{}",
        rig.describe()
    );
    eprintln!(
        "restarted {:?} after the executor was ready again",
        back.elapsed()
    );
    c.wait_for_health("healthy", ARRIVAL);
    rig.sinks
        .expect_exactly("healed", 1, is_healed(c.name()), ARRIVAL, SETTLE);
    let records = rig.records();
    let done = for_container(&records, &c, "executed");
    assert_eq!(done.len(), 1, "{}", rig.describe());
    assert_ne!(
        done[0]["request_id"].as_str(),
        Some(first_request.as_str()),
        "a fresh request did it"
    );
    assert!(
        records
            .iter()
            .any(|r| r["request_id"].as_str() == Some(first_request.as_str())
                && r["decision"] == "rejected"
                && r["reason"] == "expired"),
        "the stale request was refused as expired: {records:#?}"
    );
    rig.verify_audit();
}

#[test]
fn restart_always_container_crashing_at_once_gets_no_start_request() {
    let rig = Stack::builder().executor().start();
    let c = rig
        .scoped("always")
        .label(labels::REMEDIATE, "true")
        .restart("always")
        .shell("[ -f /tmp/once ] || { touch /tmp/once; exit 3; }; exec sleep 3600")
        .start();
    rig.sinks.expect_exactly(
        "the exit is alerted",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    c.wait_until("restarted by Docker and running", ARRIVAL, |v| {
        v["RestartCount"].as_u64() >= Some(1) && v["State"]["Status"] == "running"
    });
    std::thread::sleep(SETTLE);
    let asked: Vec<_> = rig
        .requests()
        .into_iter()
        .filter(|r| r.target == c.id())
        .collect();
    assert!(
        asked.is_empty(),
        "no request: {asked:?}\n{}",
        rig.describe()
    );
    assert!(
        rig.records().iter().all(|r| r["target"]["id"] != c.id()),
        "{}",
        rig.describe()
    );
    assert!(
        !rig.sinks
            .telegram_messages()
            .iter()
            .any(|m| m.contains("refused") && m.contains(c.name())),
        "{}",
        rig.describe()
    );
}

#[test]
fn alert_only_watchdog_restarted_mid_incident_pages_once() {
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().display().to_string();
    let mut stack = Stack::builder()
        .watchdog_env("WATCHDOG_DATA_DIR", &data_dir)
        .start();
    let c = stack.healable("alertonly").start();
    c.wait_for_health("healthy", ARRIVAL);
    break_health(&c);
    stack.sinks.expect_exactly(
        "the page",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    let first = &mut stack.watchdog_mut().process;
    first.send_sigterm();
    assert!(
        first.wait_exit(ARRIVAL).is_some(),
        "the watchdog did not stop"
    );
    assert!(
        data.path().join("alerts.json").exists(),
        "the state file was written"
    );

    stack.start_watchdog();
    stack.watchdog().process.expect_line(
        "the alert state restored",
        |l| l.contains("Alert state restored from the state file") && l.contains("restored=1"),
        ARRIVAL,
    );
    // Several sweeps (every 2 s) and health events of the still unhealthy container.
    std::thread::sleep(Duration::from_secs(10));
    stack.sinks.expect_exactly(
        "still one page after the restart",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    // The restored state is live: healing the container recovers the restored alert.
    docker(&["exec", c.id(), "sh", "-c", "echo ok > /tmp/state"]);
    stack.sinks.expect_exactly(
        "the recovery of the restored alert",
        1,
        is_recovered(c.name()),
        ARRIVAL,
        SETTLE,
    );
}

#[test]
fn crash_hidden_by_the_restart_policy_while_the_stream_is_cut_is_reported_once() {
    let mut stack = Stack::builder().start();
    let c = stack
        .scoped("hidden")
        .restart("always")
        .shell("while [ ! -f /tmp/crash ]; do sleep 0.2; done; rm /tmp/crash; exit 5")
        .start();
    // Seen by a few sweeps (every 2 s) before the cut.
    std::thread::sleep(Duration::from_secs(6));
    stack.gate().stop();
    docker(&["exec", c.id(), "touch", "/tmp/crash"]);
    c.wait_until("restarted by Docker and running", ARRIVAL, |v| {
        v["RestartCount"].as_u64() >= Some(1) && v["State"]["Status"] == "running"
    });
    assert_eq!(restart_count(&c), 1);
    // Push the `die` out of the engine's event buffer, so the reconnecting stream cannot replay
    // it (`since=`): only the sweep's RestartCount can tell.
    let noise = Container::new()
        .name_hint("noise")
        .command(&["sleep", "600"])
        .start();
    flood_events(&noise, EVENT_FLOOD);
    stack.gate().start_again();
    let (tg, _) = stack.sinks.expect_exactly(
        "the hidden crash, once",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        SETTLE,
    );
    assert!(
        tg[0].contains("restart count 0 -> 1"),
        "found by the sweep's restart count, not a replayed event: {tg:?}\n{}",
        stack.watchdog().process.transcript()
    );
    std::thread::sleep(Duration::from_secs(6));
    stack.sinks.expect_exactly(
        "still once after more sweeps",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
}
