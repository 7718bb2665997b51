//! The watchdog's Redis side (issue 3, build item 2) with the real binary, the real Docker engine
//! and a real `redis-server`: signed remediation requests, alert state that survives a restart,
//! the audit feed, and the `executor_down` / `redis_unreachable` signals.
//!
//! Every test has its own Redis, its own watchdog process (unique scope label) and its own fake
//! sinks, so they run in parallel. "Exactly one" means: one arrived, and after a settle period
//! there is still one. No engine or no `redis-server` is a failure, never a skip.

use redis::Commands;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_docker::labels;
use vigil_protocol::signing::verify_envelope;
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;
use vigil_tests::docker::{Healthcheck, RunningContainer};
use vigil_tests::stack_rig::{DEPLOYMENT, KEY_ID, Stack, StackBuilder};
use vigil_tests::watchdog_proc::poll_until;

/// How long an alert may take to arrive on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(30);
/// How long to keep watching after the expected messages arrived.
const SETTLE: Duration = Duration::from_secs(5);
const AUDIT: &str = "vigil:audit";
const HEARTBEAT: &str = "vigil:heartbeat:executor";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn is_alert(kind: &'static str, name: &str) -> impl Fn(&str) -> bool {
    let name = name.to_owned();
    move |m: &str| m.starts_with("ALERT") && m.contains(kind) && m.contains(&name)
}

/// A container whose health check always fails: unhealthy about a second after it starts.
fn unhealthy(stack: &Stack, hint: &str, opted_in: bool) -> RunningContainer {
    let mut c = stack
        .scoped(hint)
        .healthcheck(Healthcheck::new("false"))
        .command(&["sleep", "300"]);
    if opted_in {
        c = c.label(labels::REMEDIATE, "true");
    }
    c.start()
}

/// Keeps `vigil:heartbeat:executor` fresh, as the executor does, until dropped.
struct FakeHeartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeHeartbeat {
    fn start(stack: &Stack) -> FakeHeartbeat {
        let mut con = stack.admin();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _: Result<(), _> = redis::cmd("SET")
                    .arg(HEARTBEAT)
                    .arg(now_ms())
                    .arg("PX")
                    .arg(30_000)
                    .query(&mut con);
                thread::sleep(Duration::from_millis(500));
            }
        });
        FakeHeartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeHeartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `builder`'s stack with Redis and no executor: its watchdog starts once the executor's
/// heartbeat ([`FakeHeartbeat`]) is fresh.
fn with_heartbeat(builder: StackBuilder) -> (Stack, FakeHeartbeat) {
    let mut stack = builder.redis().watchdog_later().start();
    let heartbeat = FakeHeartbeat::start(&stack);
    stack.start_watchdog();
    (stack, heartbeat)
}

#[test]
fn opted_in_unhealthy_container_gets_one_signed_restart_request_and_unlabelled_gets_none() {
    let (mut stack, _heartbeat) = with_heartbeat(Stack::builder());
    let opted = unhealthy(&stack, "optin", true);
    let plain = unhealthy(&stack, "plain", false);

    // Both are alerted: the label changes what is requested, not what is said.
    stack.sinks.expect_exactly(
        "opted-in alert",
        1,
        is_alert("container_unhealthy", opted.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    stack.sinks.expect_exactly(
        "unlabelled alert",
        1,
        is_alert("container_unhealthy", plain.name()),
        ARRIVAL,
        SETTLE,
    );

    let envelopes = stack.request_envelopes();
    assert_eq!(
        envelopes.len(),
        1,
        "exactly one request, for the opted-in container: {envelopes:#?}\n{}",
        stack.watchdog().process.transcript()
    );
    let verified = verify_envelope(
        envelopes[0].as_bytes(),
        &stack.verify_keys(),
        DEPLOYMENT,
        Timestamp::now(),
        Duration::from_secs(30),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|r| panic!("the envelope must verify with the public key: {r}"));
    assert_eq!(verified.key_id, KEY_ID);
    let p = verified.payload;
    assert_eq!(p.action, Action::Restart);
    assert_eq!(p.target.id, opted.id());
    assert_eq!(p.target.name, opted.name());
    assert_eq!(p.deployment, DEPLOYMENT);
    assert_eq!(p.reason.signal, "container_unhealthy");
    assert!((p.reason.confidence - 0.9).abs() < 1e-9, "{:?}", p.reason);
    assert_eq!(p.expires_at.0 - p.issued_at.0, 60_000);
    stack.watchdog_mut().assert_running("after requesting");
}

#[test]
fn alert_state_survives_a_watchdog_restart() {
    let (mut stack, _heartbeat) = with_heartbeat(Stack::builder());
    let sick = unhealthy(&stack, "sick", false);
    stack.sinks.expect_exactly(
        "first alert",
        1,
        is_alert("container_unhealthy", sick.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    // The state is saved asynchronously: wait until it is in Redis before the crash.
    let mut con = stack.admin();
    let key = format!("vigil:alert:container_unhealthy/-/-/{}", sick.name());
    assert!(
        poll_until(Duration::from_secs(10), || con
            .exists::<_, bool>(&key)
            .unwrap_or(false)),
        "{key} was never saved; keys: {:?}",
        con.keys::<_, Vec<String>>("vigil:alert:*")
    );
    stack.kill_watchdog(); // SIGKILL: no graceful shutdown.

    stack.start_watchdog();
    stack.watchdog().process.expect_line(
        "restored alert state",
        |l| l.contains("Alert state restored from Redis") && !l.contains("restored=0"),
        ARRIVAL,
    );
    // A control container turning unhealthy now proves the second watchdog is watching.
    let control = stack
        .scoped("control")
        .healthcheck(Healthcheck::new("false"))
        .command(&["sleep", "300"])
        .start();
    stack.sinks.expect_exactly(
        "control alert from the second watchdog",
        1,
        is_alert("container_unhealthy", control.name()),
        ARRIVAL,
        Duration::from_secs(10),
    );
    let again: Vec<String> = stack
        .sinks
        .telegram_messages()
        .into_iter()
        .filter(|m| is_alert("container_unhealthy", sick.name())(m))
        .collect();
    assert_eq!(
        again.len(),
        1,
        "the restart must not re-page: {}",
        stack.sinks.describe()
    );
    stack.watchdog_mut().assert_running("after the restart");
}

#[test]
fn audit_records_are_told_to_people() {
    let mut stack = Stack::builder().redis().watchdog_later().start();
    let _heartbeat = FakeHeartbeat::start(&stack);
    // Already in the stream before the watchdog starts: history, not news.
    let mut con = stack.admin();
    let old = r#"{"seq":1,"ts":1,"request_id":null,"key_id":null,"action":"restart","target":{"id":"old","name":"old-1"},"decision":"executed","reason":"ok","result":"restarted","duration_ms":3,"prev_hash":"0","hash":"1"}"#;
    let _: String = con
        .xadd(AUDIT, "*", &[("record", old)])
        .expect("XADD old record");
    // Started: its audit feed follows the stream.
    stack.start_watchdog();
    let executed = serde_json::json!({
        "seq": 12, "ts": now_ms(), "request_id": "0b7f7d4e-1111-4a4a-8888-000000000012",
        "key_id": KEY_ID, "action": "restart",
        "target": {"id": "abc", "name": "shop-web-1", "project": "shop", "service": "web"},
        "decision": "executed", "reason": "ok", "result": "restarted", "duration_ms": 420,
        "prev_hash": "00", "hash": "11"
    });
    let refused = serde_json::json!({
        "seq": 13, "ts": now_ms(), "request_id": "0b7f7d4e-1111-4a4a-8888-000000000013",
        "key_id": KEY_ID, "action": "restart",
        "target": {"id": "def", "name": "db-1"},
        "decision": "refused", "reason": "breaker_opened", "result": null, "duration_ms": 0,
        "prev_hash": "11", "hash": "22"
    });
    for rec in [&executed, &refused] {
        let _: String = con
            .xadd(AUDIT, "*", &[("record", rec.to_string())])
            .expect("XADD audit record");
    }
    stack.sinks.expect_exactly(
        "executed outcome",
        1,
        |m| m.contains("restarted shop-web-1") && m.contains("(audit #12)"),
        ARRIVAL,
        Duration::ZERO,
    );
    stack.sinks.expect_exactly(
        "circuit breaker outcome",
        1,
        |m| {
            m.contains("circuit breaker opened for db-1")
                && m.contains("manual action needed")
                && m.contains("(audit #13)")
        },
        ARRIVAL,
        SETTLE,
    );
    for m in stack.sinks.telegram_messages() {
        assert!(!m.contains("old-1"), "history is not replayed: {m}");
    }
    // The cursor is kept, so a restarted watchdog continues where this one stopped.
    let cursor: Option<String> = con.get("vigil:watchdog:audit_cursor").expect("GET cursor");
    assert!(cursor.is_some(), "the audit cursor is persisted");
    stack.watchdog_mut().assert_running("after the audit feed");
}

#[test]
fn executor_down_then_redis_unreachable_and_the_watchdog_keeps_running() {
    let toml = "[alerts.executor_down]\nfor = \"2s\"\n\n[alerts.redis_unreachable]\nfor = \"0s\"\n";
    let (mut stack, heartbeat) = with_heartbeat(
        Stack::builder()
            .watchdog_file("WATCHDOG_CONFIG", "watchdog.toml", toml)
            .watchdog_env("WATCHDOG_DOCKER__UNREACHABLE_AFTER", "3s"),
    );

    // A fresh heartbeat: no executor_down (checked over a few probe intervals).
    thread::sleep(Duration::from_secs(7));
    let down = |m: &str| m.starts_with("ALERT") && m.contains("executor_down");
    assert!(
        !stack.sinks.telegram_messages().iter().any(|m| down(m)),
        "executor_down with a fresh heartbeat: {}",
        stack.sinks.describe()
    );

    // The executor stops: its heartbeat goes away.
    drop(heartbeat);
    let mut con = stack.admin();
    let _: () = con.del(HEARTBEAT).expect("DEL heartbeat");
    let (tg, _) =
        stack
            .sinks
            .expect_exactly("executor_down alert", 1, down, ARRIVAL, Duration::ZERO);
    assert!(tg[0].contains("heartbeat"), "{}", tg[0]);

    // Redis goes away: redis_unreachable, and the watchdog goes on.
    stack.redis_mut().kill();
    let unreachable = |m: &str| m.starts_with("ALERT") && m.contains("redis_unreachable");
    stack
        .sinks
        .expect_exactly("redis_unreachable alert", 1, unreachable, ARRIVAL, SETTLE);
    stack.watchdog_mut().assert_running("with Redis gone");
    stack.watchdog().expect_healthz_ok("with Redis gone");
}
