//! The watchdog binary's command line and kill switch (issue 2, "Kill switch", "Bad config"):
//! `WATCHDOG_ENABLED=false` keeps the process up and silent while containers fail; bad
//! configuration exits 78 naming the key, and `check-config` reports the same errors;
//! `test-notify` reaches every configured sink once.

use std::time::{Duration, Instant};
use vigil_tests::docker::{Container, require_engine};
use vigil_tests::fake_docker::{FakeContainer, FakeDocker};
use vigil_tests::gate_proc::GateProc;
use vigil_tests::watchdog_proc::{SCOPE_KEY, Sinks, WatchdogBuilder};

/// EX_CONFIG.
const EXIT_CONFIG: i32 = 78;
/// One-shot commands exit at once; generous for a busy machine.
const ONE_SHOT: Duration = Duration::from_secs(30);
const INERT_LINE: &str = "the watchdog is inert";

#[test]
fn kill_switch_keeps_the_process_up_and_silent_while_containers_fail() {
    require_engine();
    let sinks = Sinks::start();
    let builder = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_ENABLED", "false");
    // In scope and failing before and after the watchdog starts.
    let before = builder
        .scoped(Container::new().name_hint("ks-before"))
        .shell("exit 3")
        .start();
    let mut wd = builder.spawn();
    wd.process.expect_line(
        "the inert notice",
        |l| l.contains(INERT_LINE),
        Duration::from_secs(30),
    );
    let after = wd
        .scoped(Container::new().name_hint("ks-after"))
        .shell("sleep 1; exit 3")
        .start();

    // Ten seconds of failing containers: the process stays up and answers /healthz.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut checks = 0;
    while Instant::now() < deadline {
        wd.assert_running("with the kill switch on");
        let health = wd.expect_healthz_ok("with the kill switch on");
        assert_eq!(health["enabled"], false, "{health}");
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(checks >= 5, "/healthz was checked {checks} times");
    assert_eq!(after.exit_code(), 3);
    assert_eq!(before.exit_code(), 3);
    assert_eq!(
        sinks.request_count(),
        0,
        "nothing may reach a sink: {}",
        sinks.describe()
    );
    let inert = wd.process.matching_lines(|l| l.contains(INERT_LINE));
    assert_eq!(inert.len(), 1, "the inert notice is logged once: {inert:?}");
    assert!(
        wd.notification_lines().is_empty(),
        "no alert even in the log: {:?}",
        wd.notification_lines()
    );
    assert!(
        wd.process
            .matching_lines(
                |l| l.contains("Connected to the Docker engine") || l.contains("Signal decided")
            )
            .is_empty(),
        "an inert watchdog watches nothing:\n{}",
        wd.process.transcript()
    );
}

/// The same switch against a fake engine, which shows that an inert watchdog does not even ask
/// the engine anything.
#[test]
fn kill_switch_sends_no_request_to_the_engine() {
    let sinks = Sinks::start();
    let fake = FakeDocker::start();
    let builder = WatchdogBuilder::new()
        .sinks(&sinks)
        .docker(&fake)
        .env("WATCHDOG_ENABLED", "false");
    let run_id = builder.run_id().expect("scoped").to_owned();
    fake.add_container(
        FakeContainer::new("unhealthy")
            .label(SCOPE_KEY, &run_id)
            .health(vigil_docker::Health::Unhealthy),
    );
    let mut wd = builder.spawn();
    wd.process.expect_line(
        "the inert notice",
        |l| l.contains(INERT_LINE),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(5));
    wd.assert_running("with the kill switch on");
    let health = wd.expect_healthz_ok("with the kill switch on");
    assert_eq!(health["enabled"], false, "{health}");
    assert_eq!(
        fake.requests(),
        Vec::new(),
        "an inert watchdog asks the engine nothing"
    );
    assert_eq!(sinks.request_count(), 0, "{}", sinks.describe());
}

/// Runs the watchdog (default command) and `check-config` with the same configuration: both
/// must exit 78 with the same report, which names `key`.
fn assert_config_error(builder: impl Fn() -> WatchdogBuilder, key: &str) -> String {
    let run = builder().run_to_exit(&[], ONE_SHOT);
    assert_eq!(
        run.code(),
        Some(EXIT_CONFIG),
        "bad config exits 78; stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(key),
        "the error names {key}:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("Vigil watchdog starting"),
        "nothing starts on bad config:\n{}",
        run.stderr
    );
    let check = builder().run_to_exit(&["check-config"], ONE_SHOT);
    assert_eq!(
        check.code(),
        Some(EXIT_CONFIG),
        "check-config exits 78; stderr:\n{}",
        check.stderr
    );
    assert_eq!(
        check.stderr, run.stderr,
        "check-config reports the same errors as the run"
    );
    assert!(
        !check.stdout.contains("configuration ok"),
        "{}",
        check.stdout
    );
    run.stderr
}

#[test]
fn unknown_key_in_the_toml_file_exits_78_naming_the_key() {
    let stderr = assert_config_error(
        || {
            let b = WatchdogBuilder::new();
            let file = b.file(
                "watchdog.toml",
                "[notify]\ngroup_window = \"2s\"\nbogus = 1\n",
            );
            b.env("WATCHDOG_CONFIG", &file.display().to_string())
        },
        "notify.bogus",
    );
    assert!(stderr.contains("unknown"), "{stderr}");
    assert!(
        stderr.contains("1 error"),
        "exactly the one error: {stderr}"
    );
}

#[test]
fn bad_url_exits_78_naming_the_key() {
    let sinks = Sinks::start();
    let stderr = assert_config_error(
        || {
            WatchdogBuilder::new()
                .telegram(&sinks.telegram)
                .env("WATCHDOG_TELEGRAM_API_URL", "not a url")
        },
        "WATCHDOG_TELEGRAM_API_URL",
    );
    assert!(
        stderr.contains("1 error"),
        "exactly the one error: {stderr}"
    );
    assert_eq!(sinks.request_count(), 0);
}

#[test]
fn missing_secret_file_exits_78_naming_the_key() {
    let stderr = assert_config_error(
        || {
            WatchdogBuilder::new()
                .env("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE", "/nonexistent")
                .env("WATCHDOG_TELEGRAM_CHAT_ID", "42")
        },
        "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
    );
    assert!(
        stderr.contains("/nonexistent"),
        "the path is named: {stderr}"
    );
    assert!(
        stderr.contains("1 error"),
        "exactly the one error: {stderr}"
    );
}

#[test]
fn every_config_error_is_reported_at_once() {
    let stderr = assert_config_error(
        || {
            let b = WatchdogBuilder::new();
            let file = b.file("watchdog.toml", "[notify]\nbogus = 1\n");
            b.env("WATCHDOG_CONFIG", &file.display().to_string())
                .env("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE", "/nonexistent")
                .env("WATCHDOG_TELEGRAM_CHAT_ID", "42")
                .env("WATCHDOG_TELEGRAM_API_URL", "not a url")
        },
        "notify.bogus",
    );
    for key in [
        "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
        "WATCHDOG_TELEGRAM_API_URL",
    ] {
        assert!(stderr.contains(key), "{key} is named too: {stderr}");
    }
    assert!(stderr.contains("3 error"), "{stderr}");
}

#[test]
fn good_config_passes_check_config() {
    let sinks = Sinks::start();
    let b = WatchdogBuilder::new().sinks(&sinks);
    let file = b.file(
        "watchdog.toml",
        "interval = \"5s\"\n[notify]\ngroup_window = \"1s\"\n",
    );
    let out = b
        .env("WATCHDOG_CONFIG", &file.display().to_string())
        .run_to_exit(&["check-config"], ONE_SHOT);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(out.stdout.contains("configuration ok"), "{}", out.stdout);
    assert!(
        out.stdout.contains("telegram") && out.stdout.contains("slack"),
        "{}",
        out.stdout
    );
    // The summary never shows a secret.
    assert!(
        !out.stdout.contains(sinks.telegram.token()),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&sinks.slack.url()), "{}", out.stdout);
    assert_eq!(sinks.request_count(), 0, "check-config sends nothing");
}

#[test]
fn test_notify_sends_one_message_to_each_sink() {
    let sinks = Sinks::start();
    let out = WatchdogBuilder::new()
        .sinks(&sinks)
        .run_to_exit(&["test-notify"], ONE_SHOT);
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("telegram: sent"), "{}", out.stdout);
    assert!(out.stdout.contains("slack: sent"), "{}", out.stdout);
    let tg = sinks.telegram_messages();
    let slack = sinks.slack_messages();
    assert_eq!(tg.len(), 1, "{}", sinks.describe());
    assert_eq!(slack.len(), 1, "{}", sinks.describe());
    assert_eq!(sinks.telegram.request_count(), 1);
    assert_eq!(sinks.slack.request_count(), 1);
    for m in tg.iter().chain(&slack) {
        assert!(m.contains("Vigil test notification"), "{m}");
    }
    assert_eq!(sinks.telegram.chat_ids(), vec!["42".to_owned()]);
}

#[test]
fn test_notify_exits_non_zero_when_a_sink_refuses() {
    let sinks = Sinks::start();
    sinks.slack.fail_always(404);
    let out = WatchdogBuilder::new()
        .sinks(&sinks)
        .run_to_exit(&["test-notify"], ONE_SHOT);
    assert_eq!(out.code(), Some(1), "stdout:\n{}", out.stdout);
    assert!(out.stdout.contains("telegram: sent"), "{}", out.stdout);
    assert!(out.stdout.contains("slack: FAILED"), "{}", out.stdout);
    assert_eq!(sinks.telegram_messages().len(), 1, "{}", sinks.describe());
    // A 404 is not retried.
    assert_eq!(sinks.slack.request_count(), 1, "{}", sinks.describe());
    assert!(
        !out.stdout.contains(&sinks.slack.url()),
        "the webhook URL is a secret: {}",
        out.stdout
    );
}

/// `healthcheck` (what the image's healthcheck runs) asks the configured `/healthz`: 0 while the
/// watchdog serves it, 1 naming the reason when nothing listens there.
#[test]
fn healthcheck_asks_the_configured_healthz() {
    let fake = FakeDocker::start();
    let mut wd = WatchdogBuilder::new()
        .docker(&fake)
        .env("WATCHDOG_ENABLED", "false")
        .spawn();
    wd.process.expect_line(
        "the inert notice",
        |l| l.contains(INERT_LINE),
        Duration::from_secs(30),
    );
    wd.expect_healthz_ok("before the healthcheck");
    let listen = wd.listen().expect("a listen address").to_string();
    let healthy = WatchdogBuilder::bare()
        .env("WATCHDOG_LISTEN", &listen)
        .run_to_exit(&["healthcheck"], ONE_SHOT);
    assert_eq!(healthy.code(), Some(0), "{}", healthy.stderr);
    wd.assert_running("after the healthcheck");

    let nothing = format!("127.0.0.1:{}", vigil_tests::ports::free_port());
    let down = WatchdogBuilder::bare()
        .env("WATCHDOG_LISTEN", &nothing)
        .run_to_exit(&["healthcheck"], ONE_SHOT);
    assert_eq!(down.code(), Some(1), "{}", down.stderr);
    assert!(down.stderr.contains("cannot connect"), "{}", down.stderr);
}

/// `docker-get` (what the deployment test runs inside the watchdog's image) GETs a path through
/// the configured Docker host with the watchdog's own GET-only client: here the real gate in
/// front of the real engine. It prints the status, then the body; exit 0 on 2xx only.
#[test]
fn docker_get_shows_what_the_gate_lets_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = GateProc::start_in(dir.path());
    let host = format!("unix://{}", gate.socket().display());
    let get = |path: &str| {
        WatchdogBuilder::bare()
            .env("WATCHDOG_DOCKER_HOST", &host)
            .run_to_exit(&["docker-get", path], ONE_SHOT)
    };

    let ping = get("/_ping");
    assert_eq!(ping.code(), Some(0), "{}", ping.stderr);
    assert_eq!(ping.stdout.trim_end(), "200\nOK", "{}", ping.stdout);

    let list = get("/containers/json?all=1");
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    let (status, body) = list.stdout.split_once('\n').expect("status line");
    assert_eq!(status, "200");
    let rows: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON list");
    assert!(rows.is_array(), "{body}");

    let info = get("/info");
    assert_eq!(info.code(), Some(1), "{}", info.stderr);
    assert!(info.stdout.starts_with("403\n"), "{}", info.stdout);
    assert!(info.stderr.contains("answered 403"), "{}", info.stderr);
}
