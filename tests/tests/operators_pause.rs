//! `/pause` and `/resume` from the chat (issue 12) with the real executor, watchdog, redis-server
//! and Docker engine: while paused an opted-in unhealthy container is not restarted (the executor
//! refuses); after `/resume` an opted-in container that fails is restarted.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use vigil_docker::labels;
use vigil_protocol::signing::write_keypair;
use vigil_tests::docker::{Container, Healthcheck, RunningContainer, docker, require_engine};
use vigil_tests::fakes::FakeTelegram;
use vigil_tests::ports::free_port;
use vigil_tests::process::ChildProcess;
use vigil_tests::redis_server::RedisServer;
use vigil_tests::watchdog_proc::{CHAT_ID, Sinks, WatchdogBuilder, poll_until};

const DEPLOYMENT: &str = "vigil-pause";
const KEY_ID: &str = "wd-pause";
const ARRIVAL: Duration = Duration::from_secs(45);
const HEALTH_CMD: &str = r#"read s < /tmp/state && [ "$s" = ok ]"#;
const MAIN: &str =
    "echo ok > /tmp/state; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

fn audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn started_at(c: &RunningContainer) -> String {
    c.inspect_json()["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn command(tg: &FakeTelegram, text: &str) -> i64 {
    let n = tg.pending_update_count();
    tg.push_update(CHAT_ID.parse().expect("chat id"), 7, text);
    FakeTelegram::update_message_id(n)
}

fn answer(sinks: &Sinks, reply_to: i64) -> String {
    let mut got = Vec::new();
    assert!(
        poll_until(ARRIVAL, || {
            got = sinks.telegram.replies_to(reply_to);
            !got.is_empty()
        }),
        "no answer to {reply_to}: {}",
        sinks.describe()
    );
    got.remove(0)
}

#[test]
fn pause_stops_restarts_and_resume_allows_them() {
    require_engine();
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = write_keypair(&dir.path().join("watchdog"), KEY_ID).expect("key pair");
    let verify = dir.path().join("verify");
    std::fs::create_dir(&verify).expect("verify dir");
    std::fs::copy(&keys.public, verify.join(format!("{KEY_ID}.pub"))).expect("public key");
    let audit_file = dir.path().join("audit.jsonl");
    let redis = RedisServer::start();
    let sinks = Sinks::start();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (url, verify_dir, audit_path, listen_s) = (
        redis.url(),
        verify.display().to_string(),
        audit_file.display().to_string(),
        listen.to_string(),
    );
    let executor = ChildProcess::spawn_bin(
        "vigil-executor",
        "vigil-executor",
        &["run"],
        &[
            ("EXECUTOR_REDIS_URL", url.as_str()),
            ("EXECUTOR_VERIFY_KEYS", verify_dir.as_str()),
            ("EXECUTOR_AUDIT_FILE", audit_path.as_str()),
            ("EXECUTOR_DEPLOYMENT", DEPLOYMENT),
            ("EXECUTOR_LISTEN", listen_s.as_str()),
            ("EXECUTOR_CONSUMER", "exec-pause"),
            ("EXECUTOR_STOP_TIMEOUT", "2s"),
        ],
    );
    executor.expect_line(
        "the executor consuming requests",
        |l| l.contains("Consuming the requests stream"),
        ARRIVAL,
    );
    let wd = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_REDIS_URL", &redis.url())
        .env(
            "WATCHDOG_SIGNING_KEY_FILE",
            &keys.private.display().to_string(),
        )
        .env("WATCHDOG_KEY_ID", KEY_ID)
        .env("WATCHDOG_DEPLOYMENT", DEPLOYMENT)
        .start();
    let opted_in = |hint: &str| {
        let c = wd
            .scoped(Container::new().name_hint(hint))
            .healthcheck(Healthcheck::new(HEALTH_CMD))
            .shell(MAIN)
            .label(labels::REMEDIATE, "true")
            .start();
        c.wait_for_health("healthy", ARRIVAL);
        c
    };
    let first = opted_in("paused");
    let second = opted_in("resumed");

    let paused = answer(&sinks, command(&sinks.telegram, "/pause"));
    assert!(paused.contains("Remediation paused"), "{paused}");
    let status = answer(&sinks, command(&sinks.telegram, "/status"));
    assert!(status.contains("remediation: PAUSED"), "{status}");

    let before = started_at(&first);
    docker(&["exec", first.id(), "sh", "-c", "echo broken > /tmp/state"]);
    assert!(
        poll_until(ARRIVAL, || audit(&audit_file).iter().any(|r| r["decision"]
            == "refused"
            && r["target"]["id"] == first.id())),
        "the executor refused while paused: {:#?}\n{}",
        audit(&audit_file),
        executor.transcript()
    );
    assert_eq!(started_at(&first), before, "not restarted while paused");

    let resumed = answer(&sinks, command(&sinks.telegram, "/resume"));
    assert!(resumed.contains("Remediation resumed"), "{resumed}");
    let status = answer(&sinks, command(&sinks.telegram, "/status"));
    assert!(status.contains("remediation: enabled"), "{status}");

    let before = started_at(&second);
    docker(&["exec", second.id(), "sh", "-c", "echo broken > /tmp/state"]);
    assert!(
        poll_until(ARRIVAL, || started_at(&second) != before),
        "restarted after /resume: {:#?}\n{}",
        audit(&audit_file),
        executor.transcript()
    );
    assert!(
        audit(&audit_file)
            .iter()
            .any(|r| r["decision"] == "executed" && r["target"]["id"] == second.id()),
        "{:#?}",
        audit(&audit_file)
    );
    drop(wd);
}
