//! `/pause` and `/resume` from the chat (issue 12) with the real executor, watchdog, redis-server
//! and Docker engine: while paused an opted-in unhealthy container is not restarted (the executor
//! refuses); after `/resume` an opted-in container that fails is restarted.

use std::time::Duration;
use vigil_tests::executor_rig::started_at;
use vigil_tests::stack_rig::{Stack, break_health};
use vigil_tests::watchdog_proc::poll_until;

const ARRIVAL: Duration = Duration::from_secs(45);
/// The operator commanding in the chat.
const OPERATOR: u64 = 7;

#[test]
fn pause_stops_restarts_and_resume_allows_them() {
    let stack = Stack::builder().executor().start();
    let opted_in = |hint: &str| {
        let c = stack.opted_in(hint).start();
        c.wait_for_health("healthy", ARRIVAL);
        c
    };
    let first = opted_in("paused");
    let second = opted_in("resumed");

    let paused = stack.sinks.ask(OPERATOR, "/pause", ARRIVAL);
    assert!(paused.contains("Remediation paused"), "{paused}");
    let status = stack.sinks.ask(OPERATOR, "/status", ARRIVAL);
    assert!(status.contains("remediation: PAUSED"), "{status}");

    let before = started_at(&first);
    break_health(&first);
    assert!(
        poll_until(ARRIVAL, || stack.records().iter().any(|r| r["decision"]
            == "refused"
            && r["target"]["id"] == first.id())),
        "the executor refused while paused: {:#?}\n{}",
        stack.records(),
        stack.executor().transcript()
    );
    assert_eq!(started_at(&first), before, "not restarted while paused");

    let resumed = stack.sinks.ask(OPERATOR, "/resume", ARRIVAL);
    assert!(resumed.contains("Remediation resumed"), "{resumed}");
    let status = stack.sinks.ask(OPERATOR, "/status", ARRIVAL);
    assert!(status.contains("remediation: enabled"), "{status}");

    let before = started_at(&second);
    break_health(&second);
    assert!(
        poll_until(ARRIVAL, || started_at(&second) != before),
        "restarted after /resume: {:#?}\n{}",
        stack.records(),
        stack.executor().transcript()
    );
    assert!(
        stack
            .records()
            .iter()
            .any(|r| r["decision"] == "executed" && r["target"]["id"] == second.id()),
        "{:#?}",
        stack.records()
    );
}
