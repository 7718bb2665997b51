//! Operators (issue 12): alerts that say why, and a Telegram chat that answers back. The real
//! `vigil-watchdog` binary and the machine's Docker engine, with the fake Bot API (which checks
//! `parse_mode` and that every text parses as Telegram HTML, and serves `getUpdates`) and a fake
//! Slack. No engine is a failure, never a skip.

use std::time::Duration;
use vigil_tests::docker::{Container, Healthcheck, RunningContainer, docker, require_engine};
use vigil_tests::fakes::FakeTelegram;
use vigil_tests::watchdog_proc::{CHAT_ID, Sinks, Watchdog, WatchdogBuilder, poll_until};

/// How long one step may take on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(45);
const SETTLE: Duration = Duration::from_secs(6);
/// The operator allowed to command in the tests below.
const OPERATOR: u64 = 7;

/// Healthy while `/tmp/ok` is non-empty; prints the probe text to make output visible.
const PROBE: &str = "test -s /tmp/ok || { echo 'db connection refused on 5432 <b>&_'; exit 1; }";

fn watchdog(sinks: &Sinks, extra: &[(&str, &str)]) -> Watchdog {
    require_engine();
    let mut b = WatchdogBuilder::new().sinks(sinks);
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.start()
}

fn flaky(wd: &Watchdog, hint: &str) -> RunningContainer {
    let c = wd
        .scoped(Container::new().name_hint(hint))
        .healthcheck(Healthcheck::new(PROBE))
        .shell("echo ok > /tmp/ok; exec sleep 600")
        .start();
    c.wait_for_health("healthy", ARRIVAL);
    c
}

fn break_health(c: &RunningContainer) {
    docker(&["exec", c.id(), "sh", "-c", ": > /tmp/ok"]);
}

/// Sends a command as `user` in `chat`; returns the message id the answer must reply to.
fn command(tg: &FakeTelegram, chat: i64, user: u64, text: &str) -> i64 {
    let before = tg.pending_update_count();
    tg.push_update(chat, user, text);
    FakeTelegram::update_message_id(before)
}

fn answer(sinks: &Sinks, reply_to: i64) -> String {
    let mut got = Vec::new();
    assert!(
        poll_until(ARRIVAL, || {
            got = sinks.telegram.replies_to(reply_to);
            !got.is_empty()
        }),
        "no answer to command {reply_to}; telegram got {:#?}",
        sinks.telegram.messages()
    );
    got.remove(0)
}

#[test]
fn an_unhealthy_alert_carries_the_healthcheck_output_rendered_literally() {
    let sinks = Sinks::start();
    let wd = watchdog(&sinks, &[]);
    let c = flaky(&wd, "cause");
    break_health(&c);
    let alert = |m: &str| m.starts_with("ALERT") && m.contains(c.name());
    let (tg, slack) = sinks.expect_exactly("unhealthy alert", 1, alert, ARRIVAL, SETTLE);
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
    let raw = sinks.telegram.raw_messages();
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
    let sinks = Sinks::start();
    let wd = watchdog(&sinks, &[]);
    let killed = wd
        .scoped(Container::new().name_hint("kill9"))
        // PID 1 cannot be SIGKILLed from inside; a child shell can, and its 137 is passed on.
        .shell("sleep 1; sh -c 'kill -KILL $$'; exit $?")
        .start();
    let oom = wd
        .scoped(Container::new().name_hint("oom"))
        .memory("16m")
        .command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"])
        .start();
    let (tg, slack) = sinks.expect_exactly(
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
    let (tg, slack) = sinks.expect_exactly(
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
    let sinks = Sinks::start();
    let chat: i64 = CHAT_ID.parse().expect("numeric chat id");
    let wd = watchdog(
        &sinks,
        &[("WATCHDOG_TELEGRAM_ALLOWED_USERS", &OPERATOR.to_string())],
    );
    let quiet = flaky(&wd, "quiet");
    let loud = flaky(&wd, "loud");

    // Strangers: another chat (even the operator), and another user in the right chat.
    let stranger_chat = command(
        &sinks.telegram,
        999,
        OPERATOR,
        &format!("/silence {} 10m", loud.name()),
    );
    let stranger_user = command(
        &sinks.telegram,
        chat,
        8,
        &format!("/silence {} 10m", loud.name()),
    );
    let id_of = command(
        &sinks.telegram,
        chat,
        OPERATOR,
        &format!("/silence {} 10m maintenance", quiet.name()),
    );
    let said = answer(&sinks, id_of);
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
    sinks.expect_exactly(
        "the other container's alert",
        1,
        |m: &str| m.starts_with("ALERT") && m.contains(loud.name()),
        ARRIVAL,
        SETTLE,
    );
    let about_quiet = |m: &str| m.contains(quiet.name()) && !m.starts_with("Silenced");
    assert!(
        !sinks.telegram_messages().iter().any(|m| about_quiet(m))
            && !sinks.slack_messages().iter().any(|m| about_quiet(m)),
        "nothing is sent for the silenced container: {}",
        sinks.describe()
    );
    assert!(sinks.telegram.replies_to(stranger_chat).is_empty());
    assert!(sinks.telegram.replies_to(stranger_user).is_empty());

    let listed = answer(
        &sinks,
        command(&sinks.telegram, chat, OPERATOR, "/silences"),
    );
    assert!(
        listed.contains(&silence_id)
            && listed.contains(quiet.name())
            && listed.contains("maintenance"),
        "{listed}"
    );

    let ended = answer(
        &sinks,
        command(
            &sinks.telegram,
            chat,
            OPERATOR,
            &format!("/unsilence {silence_id}"),
        ),
    );
    assert!(ended.contains("ended"), "{ended}");
    sinks.expect_exactly(
        "the still-failing container alerted once the silence ended",
        1,
        |m: &str| m.starts_with("STILL FIRING after silence") && m.contains(quiet.name()),
        ARRIVAL,
        SETTLE,
    );

    // Two incidents now: /status lists both with how long and the remediation state.
    let status = answer(&sinks, command(&sinks.telegram, chat, OPERATOR, "/status"));
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
    let usage = answer(
        &sinks,
        command(&sinks.telegram, chat, OPERATOR, "/silence onlyname"),
    );
    assert!(usage.contains("usage: /silence"), "{usage}");
    // Still nothing for the strangers.
    assert!(sinks.telegram.replies_to(stranger_chat).is_empty());
    assert!(sinks.telegram.replies_to(stranger_user).is_empty());
}
