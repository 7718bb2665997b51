//! The watchdog binary against a fake Docker Engine API on a unix socket, for the faults a real
//! engine cannot be made to produce (issue 2, "Faults" and "Read-only"), and against fake sinks
//! that fail before they work.
//!
//! Every test starts from a scoped fake container that is already unhealthy and waits for its one
//! alert, so "no duplicate alert after the resync" is checked against a real earlier alert. Every
//! test ends by checking that the fake engine saw only GET and HEAD.

use serde_json::Value;
use std::time::{Duration, SystemTime};
use vigil_docker::{Health, RunState};
use vigil_tests::fake_docker::{FakeContainer, FakeDocker, Fault, RequestRecord};
use vigil_tests::watchdog_proc::{SCOPE_KEY, Sinks, Watchdog, WatchdogBuilder, poll_until};

const ARRIVAL: Duration = Duration::from_secs(30);
/// Three sweeps at `WATCHDOG_INTERVAL=2s`.
const RESYNC_SETTLE: Duration = Duration::from_secs(6);
/// How long an engine fault lasts after it was reported.
const OUTAGE: Duration = Duration::from_secs(8);

struct Setup {
    fake: FakeDocker,
    sinks: Sinks,
    wd: Watchdog,
    /// Unhealthy from the start: alerted once before any fault.
    sick: String,
    /// Running and fine until a test makes it fail.
    late: String,
}

/// A fake engine with two scoped containers (one unhealthy, one running), both fake sinks, and a
/// watchdog with a 2 s debounce for `docker_unreachable` and a 2 s request timeout; waits for
/// the unhealthy container's alert.
fn setup(sinks: Sinks) -> Setup {
    let fake = FakeDocker::start();
    let builder = WatchdogBuilder::new()
        .sinks(&sinks)
        .docker(&fake)
        .env("WATCHDOG_DOCKER__UNREACHABLE_AFTER", "2s")
        .env("WATCHDOG_DOCKER__TIMEOUT", "2s");
    let run_id = builder.run_id().expect("a scoped builder").to_owned();
    let sick = FakeContainer::new(&vigil_tests::docker::unique_name("sick"))
        .label(SCOPE_KEY, &run_id)
        .health(Health::Unhealthy);
    let late = FakeContainer::new(&vigil_tests::docker::unique_name("late"))
        .label(SCOPE_KEY, &run_id)
        .health(Health::Healthy);
    let (sick_name, late_name) = (sick.name.clone(), late.name.clone());
    fake.add_container(sick);
    fake.add_container(late);
    // A container outside the scope, unhealthy too: it must never be alerted.
    fake.add_container(
        FakeContainer::new(&vigil_tests::docker::unique_name("other")).health(Health::Unhealthy),
    );
    let wd = builder.start();
    assert!(
        fake.wait_for_event_streams(1, ARRIVAL),
        "the watchdog never opened the event stream; requests: {:?}",
        fake.requests()
    );
    assert!(
        sinks.wait_each(1, is_alert("container_unhealthy", &sick_name), ARRIVAL),
        "the unhealthy container was not alerted before the fault: {}",
        sinks.describe()
    );
    Setup {
        fake,
        sinks,
        wd,
        sick: sick_name,
        late: late_name,
    }
}

fn is_alert(kind: &'static str, name: &str) -> impl Fn(&str) -> bool + use<> {
    let name = name.to_owned();
    move |m: &str| m.starts_with("ALERT") && m.contains(kind) && m.contains(&name)
}

fn unreachable_alert(m: &str) -> bool {
    m.starts_with("ALERT") && m.contains("docker_unreachable")
}

fn unreachable_recovery(m: &str) -> bool {
    m.starts_with("RECOVERED") && m.contains("docker_unreachable")
}

/// The `late` container dies with code 3 (state first, then the engine's `die` event).
fn kill_late(fake: &FakeDocker, late: &str) {
    fake.update(late, |c| {
        c.state = RunState::Exited;
        c.exit_code = 3;
        c.health = Health::None;
        c.finished_at = Some(SystemTime::now());
    });
    fake.push_container_event(late, "die");
}

fn assert_read_only(fake: &FakeDocker) {
    let writes: Vec<RequestRecord> = fake.non_read_requests();
    assert!(
        writes.is_empty(),
        "the watchdog sent non-read requests to the engine: {writes:?}"
    );
    assert!(
        fake.requests().len() > 5,
        "the fake engine saw almost nothing: {:?}",
        fake.requests()
    );
}

fn count_on_each(sinks: &Sinks, pred: impl Fn(&str) -> bool) -> (usize, usize) {
    (
        sinks.telegram_messages().iter().filter(|m| pred(m)).count(),
        sinks.slack_messages().iter().filter(|m| pred(m)).count(),
    )
}

/// The whole fault story: the engine fails with `fault`, the watchdog stays up, says
/// `docker_unreachable` once after the debounce, and after the engine is back it resyncs: one
/// recovery, the container that died meanwhile alerted once, the already-alerted one not again.
fn engine_fault_is_reported_and_resynced(fault: Fault) {
    let Setup {
        fake,
        sinks,
        mut wd,
        sick,
        late,
    } = setup(Sinks::start());

    fake.set_fault(fault);
    // The open event stream breaks too, so the reconnect meets the fault.
    fake.close_event_streams();
    sinks.expect_exactly(
        "docker_unreachable alert",
        1,
        unreachable_alert,
        ARRIVAL,
        Duration::ZERO,
    );
    // A container dies during the outage. Where the sweep is broken too, only the resync after
    // the outage can find it.
    kill_late(&fake, &late);
    if fault != Fault::CloseEventStream {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            count_on_each(&sinks, is_alert("container_exited", &late)),
            (0, 0),
            "an exit seen through a {fault:?} fault? {}",
            sinks.describe()
        );
    }
    // A long outage (past the event stream's longest reconnect backoff, 5 s) is still one alert.
    std::thread::sleep(OUTAGE);
    assert_eq!(
        count_on_each(&sinks, |m| m.contains("docker_unreachable")),
        (1, 1),
        "one docker_unreachable alert and no recovery while the {fault:?} fault lasts; {}",
        sinks.describe()
    );
    wd.assert_running(&format!("during the {fault:?} fault"));
    let health = wd.expect_healthz_ok(&format!("during the {fault:?} fault"));
    assert_eq!(health["status"], "ok", "{health}");

    fake.set_fault(Fault::None);
    sinks.expect_exactly(
        "docker_unreachable recovery",
        1,
        unreachable_recovery,
        ARRIVAL,
        Duration::ZERO,
    );
    assert!(
        sinks.wait_each(1, is_alert("container_exited", &late), ARRIVAL),
        "the container that died during the fault was not alerted after the resync: {}",
        sinks.describe()
    );
    std::thread::sleep(RESYNC_SETTLE);
    for (what, pred, n) in [
        (
            "the unhealthy container's alert (before the fault)",
            Box::new(is_alert("container_unhealthy", &sick)) as Box<dyn Fn(&str) -> bool>,
            1,
        ),
        ("docker_unreachable alerts", Box::new(unreachable_alert), 1),
        (
            "docker_unreachable recoveries",
            Box::new(unreachable_recovery),
            1,
        ),
        (
            "the exit during the fault",
            Box::new(is_alert("container_exited", &late)),
            1,
        ),
    ] {
        assert_eq!(
            count_on_each(&sinks, pred),
            (n, n),
            "{what}: expected {n} per sink; {}",
            sinks.describe()
        );
    }
    assert_eq!(sinks.telegram_messages().len(), 4, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 4, "{}", sinks.describe());
    let health = wd.expect_healthz_ok("after the resync");
    assert_eq!(health["docker_ok"], true, "{health}");
    wd.assert_running("after the resync");
    assert_read_only(&fake);
}

#[test]
fn engine_answering_500_is_reported_and_resynced_without_duplicates() {
    engine_fault_is_reported_and_resynced(Fault::Status500);
}

#[test]
fn engine_sending_malformed_json_is_reported_and_resynced_without_duplicates() {
    engine_fault_is_reported_and_resynced(Fault::MalformedJson);
}

#[test]
fn stalled_engine_is_reported_and_resynced_without_duplicates() {
    engine_fault_is_reported_and_resynced(Fault::Stall);
}

/// An event stream the engine closes once (a daemon reload, a proxy timeout) while every other
/// endpoint works is not an unreachable engine: the watchdog reconnects with `since=` and
/// delivers the event it missed while the stream was down, once, and says nothing about the
/// engine.
#[test]
fn closed_event_stream_is_reconnected_with_since_and_the_missed_event_delivered_once() {
    let Setup {
        fake,
        sinks,
        mut wd,
        sick,
        late,
    } = setup(Sinks::start());
    let events_requests = |fake: &FakeDocker| fake.count_requests(|r| r.path.contains("/events"));
    let before = events_requests(&fake);

    // New streams end at once; the open one ends now. The container dies while no stream is
    // open, and the fault clears at once (well inside the 2 s debounce).
    fake.set_fault(Fault::CloseEventStream);
    assert!(
        poll_until(ARRIVAL, || fake.event_streams_open() == 0),
        "the open event stream did not end"
    );
    kill_late(&fake, &late);
    fake.set_fault(Fault::None);
    assert!(
        fake.wait_for_event_streams(1, ARRIVAL),
        "the watchdog did not reopen the event stream; requests: {:?}",
        fake.requests()
    );
    let reconnects: Vec<RequestRecord> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/events"))
        .skip(before)
        .collect();
    assert!(
        !reconnects.is_empty() && reconnects.iter().all(|r| r.path.contains("since=")),
        "every reconnect asks for the events since the last one: {reconnects:?}"
    );
    assert!(events_requests(&fake) > before);

    sinks.expect_exactly(
        "the missed exit",
        1,
        is_alert("container_exited", &late),
        ARRIVAL,
        RESYNC_SETTLE,
    );
    assert_eq!(
        count_on_each(&sinks, is_alert("container_unhealthy", &sick)),
        (1, 1),
        "{}",
        sinks.describe()
    );
    // The stream was down only briefly and the sweep never failed: no docker_unreachable.
    assert_eq!(
        count_on_each(&sinks, |m| m.contains("docker_unreachable")),
        (0, 0),
        "{}",
        sinks.describe()
    );
    assert_eq!(sinks.telegram_messages().len(), 2, "{}", sinks.describe());
    assert_eq!(sinks.slack_messages().len(), 2, "{}", sinks.describe());
    wd.expect_healthz_ok("after the reconnect");
    wd.assert_running("after the reconnect");
    assert_read_only(&fake);
}

#[test]
fn telegram_429_with_retry_after_then_ok_delivers_exactly_once() {
    let sinks = Sinks::start();
    sinks.telegram.rate_limit_first(1, 1);
    let Setup {
        fake,
        sinks,
        mut wd,
        sick,
        ..
    } = setup(sinks);
    sinks.expect_exactly(
        "the alert",
        1,
        is_alert("container_unhealthy", &sick),
        ARRIVAL,
        Duration::from_secs(5),
    );
    let statuses: Vec<u16> = sinks.telegram.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200], "one 429, then one accepted send");
    let first = sinks.telegram.requests()[0].json();
    let second = sinks.telegram.requests()[1].json();
    assert_eq!(
        first.get("text"),
        second.get("text"),
        "the same message was retried"
    );
    assert_ne!(first.get("text"), None::<&Value>);
    assert_eq!(sinks.slack.request_count(), 1);
    wd.assert_running("after the retry");
    assert_read_only(&fake);
}

#[test]
fn slack_500_then_200_delivers_exactly_once() {
    let sinks = Sinks::start();
    sinks.slack.fail_next(1, 500);
    let Setup {
        fake,
        sinks,
        mut wd,
        sick,
        ..
    } = setup(sinks);
    sinks.expect_exactly(
        "the alert",
        1,
        is_alert("container_unhealthy", &sick),
        ARRIVAL,
        Duration::from_secs(5),
    );
    let statuses: Vec<u16> = sinks.slack.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 200], "one 500, then one accepted send");
    assert_eq!(
        sinks.slack.requests()[0].body,
        sinks.slack.requests()[1].body
    );
    assert_eq!(sinks.telegram.request_count(), 1);
    wd.assert_running("after the retry");
    assert_read_only(&fake);
}

/// An engine that accepts `/events` and closes it at once, for longer than the debounce, is a
/// broken event source: one `docker_unreachable` alert, one recovery, no flapping.
///
/// Ignored until `watchdog/src/collect/events.rs` is fixed: the source reports itself recovered
/// as soon as the engine answers the reconnect, before the stream has delivered anything, so
/// every reconnect resets the debounce, and once the backoff exceeds the debounce (here 2 s;
/// the backoff grows to 5 s) `docker_unreachable` alerts and recovers on every cycle (6 alert /
/// recovery pairs in 20 s when this was written).
#[test]
fn event_stream_closed_for_longer_than_the_debounce_is_reported_once_and_resynced() {
    engine_fault_is_reported_and_resynced(Fault::CloseEventStream);
}

/// What the real engine sent once in the e2e `docker stop` test (healthcheck with 1 retry): the
/// stop's `kill`, then `health_status: unhealthy` from a probe that ran into the dying container,
/// then `die` 137 and `stop`. An operator stop is not a failure, so nothing may be sent.
///
/// Ignored until `watchdog/src/evaluate.rs` is fixed: an `unhealthy` event after a `kill`/`stop`
/// event within the operator-intent window is alerted at once (`for` is 0 for
/// `container_unhealthy`) and recovered 60 ms later by the `die`.
#[test]
fn unhealthy_during_an_operator_stop_is_not_an_alert() {
    let Setup {
        fake,
        sinks,
        mut wd,
        late,
        ..
    } = setup(Sinks::start());
    fake.push_container_event(&late, "kill");
    std::thread::sleep(Duration::from_millis(1000));
    fake.update(&late, |c| c.health = Health::Unhealthy);
    fake.push_container_event(&late, "health_status: unhealthy");
    std::thread::sleep(Duration::from_millis(50));
    fake.update(&late, |c| {
        c.state = RunState::Exited;
        c.exit_code = 137;
        c.finished_at = Some(SystemTime::now());
    });
    fake.push_container_event(&late, "kill");
    fake.push_container_event(&late, "die");
    fake.push_container_event(&late, "stop");
    std::thread::sleep(RESYNC_SETTLE);
    assert_eq!(
        count_on_each(&sinks, |m| m.contains(&late)),
        (0, 0),
        "an operator stop must not alert; {}",
        sinks.describe()
    );
    wd.assert_running("after the stop");
    assert_read_only(&fake);
}
