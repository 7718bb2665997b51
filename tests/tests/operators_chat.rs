//! Operators (issue 12): alerts that say why, and a Telegram chat that answers back. The real
//! `vigil-watchdog` binary and the machine's Docker engine, with the fake Bot API (which checks
//! `parse_mode` and that every text parses as Telegram HTML, and serves `getUpdates`) and a fake
//! Slack. No engine is a failure, never a skip.

use std::time::Duration;
use vigil_tests::docker::{Healthcheck, RunningContainer, docker};
use vigil_tests::stack_rig::Stack;
use vigil_tests::watchdog_proc::CHAT_ID;

/// How long one step may take on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(45);
const SETTLE: Duration = Duration::from_secs(6);
/// The operator allowed to command in the tests below.
const OPERATOR: u64 = 7;

/// Healthy while `/tmp/ok` is non-empty; prints the probe text to make output visible.
const PROBE: &str = "test -s /tmp/ok || { echo 'db connection refused on 5432 <b>&_'; exit 1; }";

fn flaky(stack: &Stack, hint: &str) -> RunningContainer {
    let c = stack
        .scoped(hint)
        .healthcheck(Healthcheck::new(PROBE))
        .shell("echo ok > /tmp/ok; exec sleep 600")
        .start();
    c.wait_for_health("healthy", ARRIVAL);
    c
}

fn break_health(c: &RunningContainer) {
    docker(&["exec", c.id(), "sh", "-c", ": > /tmp/ok"]);
}

#[test]
fn an_unhealthy_alert_carries_the_healthcheck_output_rendered_literally() {
    let stack = Stack::builder().start();
    let c = flaky(&stack, "cause");
    break_health(&c);
    let alert = |m: &str| m.starts_with("ALERT") && m.contains(c.name());
    let (tg, slack) = stack
        .sinks
        .expect_exactly("unhealthy alert", 1, alert, ARRIVAL, SETTLE);
    for m in tg.iter().chain(&slack) {
        assert!(
            m.contains("db connection refused on 5432 <b>&_"),
            "the probe's output, literally: {m}"
        );
        assert!(m.contains("restarts: 0"), "{m}");
        assert!(m.contains("image: vigil-test/busybox"), "{m}");
        assert!(m.contains("not opted in"), "says how to opt in: {m}");
    }
    // As sent: HTML with the markup escaped (the fake refused anything that does not parse).
    let raw = stack.sinks.telegram.raw_messages();
    assert_eq!(raw[0]["parse_mode"], "HTML");
    assert!(
        raw[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("&lt;b&gt;&amp;_") && t.contains("<pre>")),
        "{raw:?}"
    );
}

#[test]
fn a_sigkill_exit_says_killed_and_an_oom_kill_names_the_limit() {
    let stack = Stack::builder().start();
    let killed = stack
        .scoped("kill9")
        // PID 1 cannot be SIGKILLed from inside; a child shell can, and its 137 is passed on.
        .shell("sleep 1; sh -c 'kill -KILL $$'; exit $?")
        .start();
    let oom = stack
        .scoped("oom")
        .memory("16m")
        .command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"])
        .start();
    let (tg, slack) = stack.sinks.expect_exactly(
        "exit alert",
        1,
        |m: &str| m.starts_with("ALERT") && m.contains(killed.name()),
        ARRIVAL,
        SETTLE,
    );
    assert_eq!(killed.exit_code(), 137);
    for m in tg.iter().chain(&slack) {
        assert!(m.contains("killed (137)"), "{m}");
    }
    let (tg, slack) = stack.sinks.expect_exactly(
        "OOM alert",
        1,
        |m: &str| m.starts_with("ALERT") && m.contains(oom.name()),
        ARRIVAL,
        SETTLE,
    );
    for m in tg.iter().chain(&slack) {
        assert!(m.contains("container_oom_killed"), "{m}");
        assert!(m.contains("memory limit: 16 MiB"), "{m}");
    }
}

#[test]
fn silence_unsilence_status_and_strangers_are_ignored() {
    let chat: i64 = CHAT_ID.parse().expect("numeric chat id");
    let stack = Stack::builder()
        .watchdog_env("WATCHDOG_TELEGRAM_ALLOWED_USERS", &OPERATOR.to_string())
        .start();
    let quiet = flaky(&stack, "quiet");
    let loud = flaky(&stack, "loud");

    // Strangers: another chat (even the operator), and another user in the right chat.
    let stranger_chat =
        stack
            .sinks
            .command_in(999, OPERATOR, &format!("/silence {} 10m", loud.name()));
    let stranger_user = stack
        .sinks
        .command_in(chat, 8, &format!("/silence {} 10m", loud.name()));
    let id_of = stack.sinks.command_in(
        chat,
        OPERATOR,
        &format!("/silence {} 10m maintenance", quiet.name()),
    );
    let said = stack.sinks.answer(id_of, ARRIVAL);
    assert!(
        said.contains(&format!("Silenced {}", quiet.name())),
        "{said}"
    );
    let silence_id = said
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("the answer names the silence id")
        .trim()
        .to_string();

    break_health(&quiet);
    break_health(&loud);
    stack.sinks.expect_exactly(
        "the other container's alert",
        1,
        |m: &str| m.starts_with("ALERT") && m.contains(loud.name()),
        ARRIVAL,
        SETTLE,
    );
    let about_quiet = |m: &str| m.contains(quiet.name()) && !m.starts_with("Silenced");
    assert!(
        !stack
            .sinks
            .telegram_messages()
            .iter()
            .any(|m| about_quiet(m))
            && !stack.sinks.slack_messages().iter().any(|m| about_quiet(m)),
        "nothing is sent for the silenced container: {}",
        stack.sinks.describe()
    );
    assert!(stack.sinks.telegram.replies_to(stranger_chat).is_empty());
    assert!(stack.sinks.telegram.replies_to(stranger_user).is_empty());

    let listed = stack
        .sinks
        .answer(stack.sinks.command_in(chat, OPERATOR, "/silences"), ARRIVAL);
    assert!(
        listed.contains(&silence_id)
            && listed.contains(quiet.name())
            && listed.contains("maintenance"),
        "{listed}"
    );

    let ended = stack.sinks.answer(
        stack
            .sinks
            .command_in(chat, OPERATOR, &format!("/unsilence {silence_id}")),
        ARRIVAL,
    );
    assert!(ended.contains("ended"), "{ended}");
    stack.sinks.expect_exactly(
        "the still-failing container alerted once the silence ended",
        1,
        |m: &str| m.starts_with("STILL FIRING after silence") && m.contains(quiet.name()),
        ARRIVAL,
        SETTLE,
    );

    // Two incidents now: /status lists both with how long and the remediation state.
    let status = stack
        .sinks
        .answer(stack.sinks.command_in(chat, OPERATOR, "/status"), ARRIVAL);
    for c in [&quiet, &loud] {
        let line = status
            .lines()
            .find(|l| l.contains(c.name()))
            .unwrap_or_else(|| panic!("{} missing from {status}", c.name()));
        assert!(
            line.contains(" for ") && line.contains("remediation:"),
            "{line}"
        );
    }
    assert!(status.contains("alert-only mode"), "{status}");

    // Bad usage is answered with the usage.
    let usage = stack.sinks.answer(
        stack.sinks.command_in(chat, OPERATOR, "/silence onlyname"),
        ARRIVAL,
    );
    assert!(usage.contains("usage: /silence"), "{usage}");
    // Still nothing for the strangers.
    assert!(stack.sinks.telegram.replies_to(stranger_chat).is_empty());
    assert!(stack.sinks.telegram.replies_to(stranger_user).is_empty());
}
