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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_shared::labels;
use vigil_shared::signing::write_keypair;
use vigil_tests::docker::{
    Container, DOCKER_SOCKET, Healthcheck, RunningContainer, docker, require_engine,
};
use vigil_tests::ports::free_port;
use vigil_tests::process::{ChildProcess, workspace_bin};
use vigil_tests::redis_server::RedisServer;
use vigil_tests::watchdog_proc::{SCOPE_KEY, Sinks, Watchdog, WatchdogBuilder, poll_until};

const DEPLOYMENT: &str = "vigil-loop";
const KEY_ID: &str = "wd-loop";
/// How long one step may take on a busy 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(45);
/// How long to keep watching after the expected effects arrived.
const SETTLE: Duration = Duration::from_secs(8);
const EXECUTOR_READY: &str = "Consuming the requests stream";
const FEED_READY: &str = "Following the executor's audit stream";

/// The health check passes while `/tmp/state` says `ok` (shell built-ins only).
const HEALTH_CMD: &str = r#"read s < /tmp/state && [ "$s" = ok ]"#;
/// Writes `ok` at every start, then idles; exits at once on SIGTERM so a restart is quick.
const HEALS_ON_RESTART: &str =
    "echo ok > /tmp/state; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";
/// Broken from its first start until it is restarted once (the writable layer keeps
/// `/tmp/started` across restarts).
const BROKEN_UNTIL_RESTARTED: &str = "if [ -f /tmp/started ]; then echo ok > /tmp/state; \
     else touch /tmp/started; echo broken > /tmp/state; fi; \
     trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

// ---- The rig ----------------------------------------------------------------------------------

/// A key pair: the watchdog's private key and the executor's directory of public keys.
struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    verify: PathBuf,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = write_keypair(&dir.path().join("watchdog"), KEY_ID).expect("key pair");
    let verify = dir.path().join("verify");
    std::fs::create_dir(&verify).expect("verify key dir");
    std::fs::copy(&pair.public, verify.join(format!("{KEY_ID}.pub"))).expect("public key");
    Keys {
        _dir: dir,
        private: pair.private,
        verify,
    }
}

/// A `redis-server` on a fixed port that can be stopped and started again, empty (no
/// persistence), as an operator restarting Redis would see it.
struct RestartableRedis {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<ChildProcess>,
}

impl RestartableRedis {
    fn start() -> RestartableRedis {
        let mut r = RestartableRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            process: None,
        };
        r.start_again();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn start_again(&mut self) {
        let mut cmd = vigil_tests::process::command("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let process = ChildProcess::spawn("redis-server", cmd);
        process.expect_line(
            "redis-server ready",
            |l| l.contains("Ready to accept connections"),
            Duration::from_secs(20),
        );
        self.process = Some(process);
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// The read-only gate on a unix socket, stoppable to cut the watchdog's event stream.
struct Gate {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    process: Option<ChildProcess>,
}

impl Gate {
    fn start() -> Gate {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut g = Gate {
            socket: dir.path().join("gate.sock"),
            _dir: dir,
            process: None,
        };
        g.start_again();
        g
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn start_again(&mut self) {
        let listen = self.docker_host();
        let process = ChildProcess::spawn_bin(
            "vigil-gate",
            "vigil-gate",
            &["serve", "--listen", &listen],
            &[("GATE_LOG_LEVEL", "info")],
        );
        // A stale socket file from the killed gate is replaced: wait for a connect to work.
        assert!(
            poll_until(Duration::from_secs(20), || {
                std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
            }),
            "the gate did not listen on {}:\n{}",
            self.socket.display(),
            process.transcript()
        );
        self.process = Some(process);
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// A watchdog and an executor sharing one Redis and a key pair, with both fake sinks.
struct Loop {
    _dir: tempfile::TempDir,
    keys: Keys,
    audit: PathBuf,
    redis_url: String,
    sinks: Sinks,
    executor_env: Vec<(String, String)>,
    executor: Option<ChildProcess>,
    watchdog: Watchdog,
}

impl Loop {
    /// `executor_env`: extra `EXECUTOR_*` settings (policy windows).
    fn start(redis_url: String, executor_env: &[(&str, &str)]) -> Loop {
        require_engine();
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = keys();
        let audit = dir.path().join("audit.jsonl");
        let sinks = Sinks::start();
        let executor_env = executor_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut rig = Loop {
            watchdog: WatchdogBuilder::new()
                .sinks(&sinks)
                .env("WATCHDOG_REDIS_URL", &redis_url)
                .env(
                    "WATCHDOG_SIGNING_KEY_FILE",
                    &keys.private.display().to_string(),
                )
                .env("WATCHDOG_KEY_ID", KEY_ID)
                .env("WATCHDOG_DEPLOYMENT", DEPLOYMENT)
                .start(),
            _dir: dir,
            keys,
            audit,
            redis_url,
            sinks,
            executor_env,
            executor: None,
        };
        rig.start_executor();
        rig.watchdog
            .process
            .expect_line("the audit feed", |l| l.contains(FEED_READY), ARRIVAL);
        rig
    }

    fn start_executor(&mut self) {
        let (verify, audit) = (
            self.keys.verify.display().to_string(),
            self.audit.display().to_string(),
        );
        let mut env: Vec<(&str, &str)> = vec![
            ("EXECUTOR_REDIS_URL", self.redis_url.as_str()),
            ("EXECUTOR_VERIFY_KEYS", verify.as_str()),
            ("EXECUTOR_AUDIT_FILE", audit.as_str()),
            ("EXECUTOR_DEPLOYMENT", DEPLOYMENT),
            ("EXECUTOR_LISTEN", "off"),
            ("EXECUTOR_CONSUMER", "exec-loop"),
            ("EXECUTOR_STOP_TIMEOUT", "2s"),
            ("EXECUTOR_LOG_LEVEL", "info"),
        ];
        env.extend(
            self.executor_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let executor = ChildProcess::spawn_bin("vigil-executor", "vigil-executor", &["run"], &env);
        executor.expect_line(
            "the executor consuming requests",
            |l| l.contains(EXECUTOR_READY),
            ARRIVAL,
        );
        self.executor = Some(executor);
    }

    fn kill_executor(&mut self) {
        if let Some(mut p) = self.executor.take() {
            p.kill();
        }
    }

    /// An opted-in container in the watchdog's scope.
    fn container(&self, hint: &str, check: Healthcheck, script: &str) -> RunningContainer {
        self.watchdog
            .scoped(Container::new().name_hint(hint))
            .label(labels::REMEDIATE, "true")
            .healthcheck(check)
            .shell(script)
            .start()
    }

    fn records(&self) -> Vec<Value> {
        audit_records(&self.audit)
    }

    /// `(request id, target id)` of every request on `vigil:requests` (payload decoded, not
    /// verified).
    fn requests(&self) -> Vec<(String, String)> {
        requests(&self.redis_url)
    }

    fn describe(&self) -> String {
        format!(
            "{}\naudit: {:#?}\n--- executor ---\n{}\n--- watchdog ---\n{}",
            self.sinks.describe(),
            self.records(),
            self.executor
                .as_ref()
                .map(ChildProcess::transcript)
                .unwrap_or_default(),
            self.watchdog.process.transcript()
        )
    }
}

fn requests(url: &str) -> Vec<(String, String)> {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connecting to the test redis-server");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("vigil:requests")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE vigil:requests");
    reply
        .ids
        .iter()
        .map(|e| {
            let envelope: String = e.get("envelope").expect("an envelope field");
            let envelope: Value = serde_json::from_str(&envelope).expect("envelope JSON");
            let payload = BASE64
                .decode(envelope["payload"].as_str().expect("payload"))
                .expect("base64 payload");
            let payload: Value = serde_json::from_slice(&payload).expect("payload JSON");
            (
                payload["id"].as_str().expect("request id").to_owned(),
                payload["target"]["id"]
                    .as_str()
                    .expect("target id")
                    .to_owned(),
            )
        })
        .collect()
}

/// The decision records of the audit log (the write-ahead `intent` before each action left out).
fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("audit line is JSON"))
        .filter(|r| r["decision"] != "intent")
        .collect()
}

fn for_container<'a>(records: &'a [Value], c: &RunningContainer, decision: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["decision"] == decision && r["target"]["id"] == c.id())
        .collect()
}

fn executed(records: &[Value], c: &RunningContainer) -> usize {
    for_container(records, c, "executed").len()
}

fn verify_audit(path: &Path) {
    let verify = Command::new(workspace_bin("vigil-executor", "vigil-executor"))
        .args(["audit", "verify", "--file"])
        .arg(path)
        .output()
        .expect("running audit verify");
    assert!(
        verify.status.success(),
        "audit verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn break_health(c: &RunningContainer) {
    docker(&["exec", c.id(), "sh", "-c", "echo broken > /tmp/state"]);
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
    let redis = RedisServer::start();
    let rig = Loop::start(redis.url(), &[]);
    let c = rig.container("heal", Healthcheck::new(HEALTH_CMD), HEALS_ON_RESTART);
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
    verify_audit(&rig.audit);
}

#[test]
fn burst_of_eight_over_the_budget_all_heal_each_restarted_once() {
    let redis = RedisServer::start();
    let rig = Loop::start(redis.url(), &[("EXECUTOR_POLICY__BUDGET_PER_MINUTE", "5")]);
    let containers: Vec<RunningContainer> = (0..8)
        .map(|i| {
            rig.container(
                &format!("burst{i}"),
                Healthcheck::new(HEALTH_CMD),
                BROKEN_UNTIL_RESTARTED,
            )
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
    verify_audit(&rig.audit);
}

#[test]
fn always_broken_backs_off_to_the_breaker_then_escalates_once_and_stops_asking() {
    let redis = RedisServer::start();
    let rig = Loop::start(
        redis.url(),
        &[
            ("EXECUTOR_POLICY__BACKOFF_INITIAL", "2s"),
            ("EXECUTOR_POLICY__BACKOFF_MAX", "4s"),
            ("EXECUTOR_POLICY__BREAKER_MAX_ACTIONS", "3"),
        ],
    );
    let c = rig.container("broken", Healthcheck::new("false"), HEALS_ON_RESTART);
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
    verify_audit(&rig.audit);
}

#[test]
fn redis_outage_then_empty_redis_the_failing_container_is_restarted_once() {
    let mut redis = RestartableRedis::start();
    let rig = Loop::start(redis.url(), &[]);
    let first = rig.container("before", Healthcheck::new(HEALTH_CMD), HEALS_ON_RESTART);
    let second = rig.container("during", Healthcheck::new(HEALTH_CMD), HEALS_ON_RESTART);
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

    redis.stop();
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
    redis.start_again();
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
    verify_audit(&rig.audit);
}

#[test]
fn executor_down_for_100s_then_a_fresh_request_restarts_once() {
    let redis = RedisServer::start();
    let mut rig = Loop::start(redis.url(), &[]);
    let c = rig.container("exdown", Healthcheck::new(HEALTH_CMD), HEALS_ON_RESTART);
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
        .find(|(_, target)| target == c.id())
        .map(|(id, _)| id)
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
    verify_audit(&rig.audit);
}

#[test]
fn restart_always_container_crashing_at_once_gets_no_start_request() {
    let redis = RedisServer::start();
    let rig = Loop::start(redis.url(), &[]);
    let c = rig
        .watchdog
        .scoped(Container::new().name_hint("always"))
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
        .filter(|(_, target)| target == c.id())
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
    require_engine();
    let sinks = Sinks::start();
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().display().to_string();
    let mut first = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_DATA_DIR", &data_dir)
        .start();
    let run_id = first.run_id().expect("scoped").to_owned();
    let c = first
        .scoped(Container::new().name_hint("alertonly"))
        .healthcheck(Healthcheck::new(HEALTH_CMD))
        .shell(HEALS_ON_RESTART)
        .start();
    c.wait_for_health("healthy", ARRIVAL);
    break_health(&c);
    sinks.expect_exactly(
        "the page",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    first.process.send_sigterm();
    assert!(
        first.process.wait_exit(ARRIVAL).is_some(),
        "the watchdog did not stop"
    );
    assert!(
        data.path().join("alerts.json").exists(),
        "the state file was written"
    );

    let second = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_DATA_DIR", &data_dir)
        .env("WATCHDOG_SCOPE__LABEL", &format!("{SCOPE_KEY}={run_id}"))
        .start();
    second.process.expect_line(
        "the alert state restored",
        |l| l.contains("Alert state restored from the state file") && l.contains("restored=1"),
        ARRIVAL,
    );
    // Several sweeps (every 2 s) and health events of the still unhealthy container.
    std::thread::sleep(Duration::from_secs(10));
    sinks.expect_exactly(
        "still one page after the restart",
        1,
        is_alert("container_unhealthy", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    // The restored state is live: healing the container recovers the restored alert.
    docker(&["exec", c.id(), "sh", "-c", "echo ok > /tmp/state"]);
    sinks.expect_exactly(
        "the recovery of the restored alert",
        1,
        is_recovered(c.name()),
        ARRIVAL,
        SETTLE,
    );
}

#[test]
fn crash_hidden_by_the_restart_policy_while_the_stream_is_cut_is_reported_once() {
    require_engine();
    let mut gate = Gate::start();
    let sinks = Sinks::start();
    let wd = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_DOCKER_HOST", &gate.docker_host())
        .start();
    let c = wd
        .scoped(Container::new().name_hint("hidden"))
        .restart("always")
        .shell("while [ ! -f /tmp/crash ]; do sleep 0.2; done; rm /tmp/crash; exit 5")
        .start();
    // Seen by a few sweeps (every 2 s) before the cut.
    std::thread::sleep(Duration::from_secs(6));
    gate.stop();
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
    gate.start_again();
    let (tg, _) = sinks.expect_exactly(
        "the hidden crash, once",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        SETTLE,
    );
    assert!(
        tg[0].contains("restart count 0 -> 1"),
        "found by the sweep's restart count, not a replayed event: {tg:?}\n{}",
        wd.process.transcript()
    );
    std::thread::sleep(Duration::from_secs(6));
    sinks.expect_exactly(
        "still once after more sweeps",
        1,
        is_alert("container_exited", c.name()),
        ARRIVAL,
        Duration::ZERO,
    );
}
