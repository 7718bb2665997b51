//! The executor end to end: the real `vigil-executor` binary against a real `redis-server` and
//! the machine's Docker engine. Requests are built with the shared `Signer` (or by hand, for the
//! malformed ones) and XADDed straight into `vigil:requests`; outcomes are read from the audit
//! file the executor writes and from `docker inspect`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_protocol::signing::{Signer, generate_signing_key};
use vigil_protocol::wire::{Action, Payload};
use vigil_shared::time::Timestamp;
use vigil_tests::docker::{Container, Healthcheck, RunningContainer};
use vigil_tests::executor_rig::{
    ExecutorRig, READY, audit_verify, http_get, opted_in, read_records, sleeper, started_at,
    wait_ready,
};
use vigil_tests::process::{ChildProcess, workspace_bin};

const WAIT: Duration = Duration::from_secs(25);

/// Redis, a key pair, a temp audit file, and the executor process.
struct Rig(ExecutorRig);

impl std::ops::Deref for Rig {
    type Target = ExecutorRig;
    fn deref(&self) -> &ExecutorRig {
        &self.0
    }
}

impl Rig {
    fn new() -> Rig {
        Rig(ExecutorRig::new(&[
            ("EXECUTOR_CONSUMER", "exec-test"),
            ("EXECUTOR_STOP_TIMEOUT", "2s"),
        ]))
    }

    /// Starts the executor with the test defaults plus `extra`, and waits until it consumes.
    /// An extra setting replaces the default; an empty one leaves the variable unset.
    fn start(&self, extra: &[(&str, &str)]) -> ChildProcess {
        let exec = self.spawn(extra);
        wait_ready(&exec, WAIT);
        exec
    }

    /// The fault-injection build, aborting at the fault point `fault`.
    fn spawn_faulty(&self, fault: &str) -> ChildProcess {
        // The crashed process's lease lapses quickly, so the next one need not wait long.
        self.0.spawn_faulty(fault, &[("EXECUTOR_LEASE_TTL", "2s")])
    }

    fn env(&self) -> Vec<(String, String)> {
        self.0.env(&self.audit, &[])
    }

    /// Signs and sends; returns the envelope JSON and the request id.
    fn send(&self, action: Action, c: &RunningContainer) -> (String, String) {
        let p = self.payload(action, c);
        let env = self.envelope(&p);
        self.send_raw(&env);
        (env, p.id.to_string())
    }

    /// Decision records: every record but the write-ahead `intent`s.
    fn records(&self) -> Vec<Value> {
        read_records(&self.audit)
            .into_iter()
            .filter(|r| r["decision"] != "intent")
            .collect()
    }

    /// Waits until the audit log holds at least `n` records; returns them all.
    fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let recs = self.records();
            if recs.len() >= n {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} audit records within {WAIT:?}, have {}: {recs:#?}",
                recs.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one request and waits for its record; returns the record.
    fn request(&self, action: Action, c: &RunningContainer) -> Value {
        let before = self.records().len();
        let (_, id) = self.send(action, c);
        let rec = self.wait_records(before + 1).pop().expect("a record");
        assert_eq!(rec["request_id"], id.as_str(), "{rec}");
        rec
    }

    fn audit_verify(&self) -> std::process::Output {
        audit_verify(&self.audit, &[])
    }
}

fn reason(rec: &Value) -> &str {
    rec["reason"].as_str().unwrap_or_default()
}

fn decision(rec: &Value) -> &str {
    rec["decision"].as_str().unwrap_or_default()
}

#[test]
fn forged_and_malformed_requests_are_rejected_audited_and_never_touch_the_target() {
    let rig = Rig::new();
    let target = opted_in().name_hint("forged").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);
    let exec = rig.start(&[]);

    let good = |rig: &Rig| rig.payload(Action::Restart, &target);
    let stranger = Signer::new("wd1", generate_signing_key()).expect("id");
    let unknown = Signer::new("nobody", generate_signing_key()).expect("id");
    let mut flipped: Value =
        serde_json::from_str(&rig.envelope(&good(&rig))).expect("envelope JSON");
    let mut bytes = BASE64
        .decode(flipped["payload"].as_str().expect("payload"))
        .expect("base64");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    flipped["payload"] = BASE64.encode(&bytes).into();
    let mut other_deployment = good(&rig);
    other_deployment.deployment = "elsewhere".into();
    let expired = Payload {
        issued_at: Timestamp::now().minus(Duration::from_secs(600)),
        expires_at: Timestamp::now().minus(Duration::from_secs(540)),
        ..good(&rig)
    };
    let future = Payload {
        issued_at: Timestamp::now().plus(Duration::from_secs(300)),
        expires_at: Timestamp::now().plus(Duration::from_secs(360)),
        ..good(&rig)
    };
    let mut unknown_action = serde_json::to_value(good(&rig)).expect("json");
    unknown_action["action"] = "remove".into();
    let mut unknown_field = serde_json::to_value(good(&rig)).expect("json");
    unknown_field["privileged"] = true.into();
    let oversized = format!(
        r#"{{"v":1,"key_id":"wd1","payload":"{}","sig":""}}"#,
        "A".repeat(9000)
    );

    let cases: Vec<(&str, String)> = vec![
        (
            "bad_signature",
            stranger.sign(&good(&rig)).expect("signs").to_json(),
        ),
        (
            "unknown_key",
            unknown.sign(&good(&rig)).expect("signs").to_json(),
        ),
        ("bad_signature", flipped.to_string()),
        ("wrong_deployment", rig.envelope(&other_deployment)),
        ("expired", rig.envelope(&expired)),
        ("from_future", rig.envelope(&future)),
        ("too_large", oversized),
        ("not_json", "{this is not json".into()),
        (
            "unknown_action",
            rig.signer
                .sign_raw_payload(&serde_json::to_vec(&unknown_action).expect("json"))
                .to_json(),
        ),
        (
            "unknown_field",
            rig.signer
                .sign_raw_payload(&serde_json::to_vec(&unknown_field).expect("json"))
                .to_json(),
        ),
    ];
    for (_, env) in &cases {
        rig.send_raw(env);
    }
    let recs = rig.wait_records(cases.len());
    let got: Vec<(&str, &str)> = recs.iter().map(|r| (decision(r), reason(r))).collect();
    let want: Vec<(&str, &str)> = cases.iter().map(|(r, _)| ("rejected", *r)).collect();
    assert_eq!(got, want);
    assert_eq!(
        started_at(&target),
        before,
        "no rejected request touched the target"
    );
    assert_eq!(target.status(), "running");

    // The executor still serves: a valid request is executed.
    let (valid, id) = rig.send(Action::Restart, &target);
    let recs = rig.wait_records(cases.len() + 1);
    let last = recs.last().expect("record");
    assert_eq!((decision(last), reason(last)), ("executed", "ok"), "{last}");
    assert_eq!(last["request_id"], id.as_str());
    let restarted = started_at(&target);
    assert_ne!(restarted, before, "the valid request restarted the target");

    // The same envelope again: a replay.
    rig.send_raw(&valid);
    let recs = rig.wait_records(cases.len() + 2);
    assert_eq!(reason(recs.last().expect("record")), "replay");

    // And again after an executor restart: the reservation lives in Redis.
    drop(exec);
    let _exec = rig.start(&[]);
    rig.send_raw(&valid);
    let recs = rig.wait_records(cases.len() + 3);
    assert_eq!(reason(recs.last().expect("record")), "replay");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rig.records().len(),
        cases.len() + 3,
        "nothing else was recorded"
    );
    assert_eq!(
        started_at(&target),
        restarted,
        "replays did not restart it again"
    );
    let executed = rig
        .records()
        .iter()
        .filter(|r| decision(r) == "executed")
        .count();
    assert_eq!(executed, 1);

    // The real log verifies, and the audit stream carries every record.
    let out = rig.audit_verify();
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The stream is written right after the file: give it a moment. It also carries the intent
    // written before the one executed request.
    let expected = cases.len() + 4;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream_len = loop {
        let n: usize = redis::cmd("XLEN")
            .arg("vigil:audit")
            .query(&mut rig.redis())
            .expect("XLEN");
        if n >= expected || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stream_len, expected);
}

#[test]
fn valid_request_restarts_only_opted_in_unprotected_containers() {
    let rig = Rig::new();
    let sick = opted_in()
        .name_hint("sick")
        .healthcheck(Healthcheck::new("false"))
        .start();
    let plain = sleeper().name_hint("plain").start();
    let guarded = opted_in()
        .name_hint("guarded")
        .label(labels::PROTECTED, "true")
        .start();
    sick.wait_for_health("unhealthy", WAIT);
    plain.wait_for_status("running", WAIT);
    guarded.wait_for_status("running", WAIT);
    let (sick_before, plain_before, guarded_before) =
        (started_at(&sick), started_at(&plain), started_at(&guarded));
    let _exec = rig.start(&[]);

    let rec = rig.request(Action::Restart, &sick);
    assert_eq!((decision(&rec), reason(&rec)), ("executed", "ok"), "{rec}");
    assert_eq!(rec["target"]["id"], sick.id());
    assert_ne!(started_at(&sick), sick_before, "restarted");

    let rec = rig.request(Action::Restart, &plain);
    assert_eq!(
        (decision(&rec), reason(&rec)),
        ("refused", "not_opted_in"),
        "{rec}"
    );
    let rec = rig.request(Action::Restart, &guarded);
    assert_eq!(
        (decision(&rec), reason(&rec)),
        ("refused", "protected"),
        "{rec}"
    );
    assert_eq!(started_at(&plain), plain_before);
    assert_eq!(started_at(&guarded), guarded_before);

    let executed: Vec<Value> = rig
        .records()
        .into_iter()
        .filter(|r| decision(r) == "executed")
        .collect();
    assert_eq!(executed.len(), 1, "exactly one executed record");
    assert!(rig.audit_verify().status.success());

    // The heartbeat is fresh and expires on its own.
    let mut con = rig.redis();
    let beat: i64 = redis::cmd("GET")
        .arg("vigil:heartbeat:executor")
        .query(&mut con)
        .expect("heartbeat set");
    let age = Timestamp::now().as_millis() - beat;
    assert!((0..15_000).contains(&age), "heartbeat {age} ms old");
    let pttl: i64 = redis::cmd("PTTL")
        .arg("vigil:heartbeat:executor")
        .query(&mut con)
        .expect("PTTL");
    assert!(pttl > 0 && pttl <= 30_000, "PTTL {pttl}");
}

#[test]
fn kill_switch_and_runtime_pause_refuse_everything() {
    let rig = Rig::new();
    let target = opted_in().name_hint("switch").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);

    let port = vigil_tests::ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let exec = rig.start(&[("EXECUTOR_ENABLED", "false"), ("EXECUTOR_LISTEN", &listen)]);
    let rec = rig.request(Action::Restart, &target);
    assert_eq!(
        (decision(&rec), reason(&rec)),
        ("refused", "disabled"),
        "{rec}"
    );
    // The disabled executor still answers its health endpoint, and says it is disabled.
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let health = http_get(port, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let body: Value = serde_json::from_str(health.split("\r\n\r\n").nth(1).unwrap_or(""))
            .expect("healthz JSON");
        if body["audit"]["seq"] == 1 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body["enabled"], false, "{body}");
    assert_eq!(body["audit"]["seq"], 1, "{body}");
    drop(exec);

    let _exec = rig.start(&[]);
    let _: () = redis::cmd("SET")
        .arg("vigil:pause")
        .arg("1")
        .query(&mut rig.redis())
        .expect("SET pause");
    let rec = rig.request(Action::Restart, &target);
    assert_eq!(
        (decision(&rec), reason(&rec)),
        ("refused", "paused"),
        "{rec}"
    );
    assert_eq!(
        started_at(&target),
        before,
        "nothing was done while switched off"
    );

    // Lifting the pause takes effect on the next request, without a restart.
    let _: () = redis::cmd("DEL")
        .arg("vigil:pause")
        .query(&mut rig.redis())
        .expect("DEL pause");
    let rec = rig.request(Action::Restart, &target);
    assert_eq!(decision(&rec), "executed", "{rec}");
}

#[test]
fn operator_stopped_container_is_never_started() {
    let rig = Rig::new();
    let target = Container::new()
        .name_hint("stopped")
        .label(labels::REMEDIATE, "true")
        .command(&["sleep", "3600"])
        .start();
    target.wait_for_status("running", WAIT);
    target.stop_with_timeout(1);
    target.wait_for_status("exited", WAIT);
    let _exec = rig.start(&[]);
    let rec = rig.request(Action::Start, &target);
    assert_eq!(
        (decision(&rec), reason(&rec)),
        ("refused", "stale"),
        "{rec}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(target.status(), "exited", "never started");
}

#[test]
fn crash_after_reading_acts_exactly_once() {
    let rig = Rig::new();
    let target = opted_in().name_hint("crash").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);

    let mut crashing = rig.spawn_faulty("after_reserve");
    crashing.expect_line("the consumer running", |l| l.contains(READY), WAIT);
    let (_, id) = rig.send(Action::Restart, &target);
    let status = crashing.wait_exit(WAIT).expect("the executor aborted");
    assert!(!status.success(), "aborted: {status:?}");
    assert!(rig.records().is_empty(), "nothing audited before the crash");
    assert_eq!(started_at(&target), before, "nothing done before the crash");

    let _exec = rig.start(&[
        ("EXECUTOR_LEASE_TTL", "2s"),
        ("EXECUTOR_RECLAIM_IDLE", "1s"),
    ]);
    let recs = rig.wait_records(1);
    std::thread::sleep(Duration::from_millis(500));
    let recs_after = rig.records();
    assert_eq!(recs_after.len(), 1, "one record only: {recs_after:#?}");
    assert_eq!((decision(&recs[0]), reason(&recs[0])), ("executed", "ok"));
    assert_eq!(recs[0]["request_id"], id.as_str());
    assert_ne!(started_at(&target), before, "restarted once");
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("vigil:requests")
        .arg("executors")
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut rig.redis())
        .expect("XPENDING");
    assert!(pending.is_empty(), "the entry was acknowledged");
}

#[test]
fn circuit_breaker_opens_after_three_actions_per_container() {
    let rig = Rig::new();
    let target = opted_in().name_hint("breaker").start();
    target.wait_for_status("running", WAIT);
    let _exec = rig.start(&[
        ("EXECUTOR_POLICY__BACKOFF_INITIAL", "10ms"),
        ("EXECUTOR_POLICY__BACKOFF_MAX", "10ms"),
    ]);
    let mut reasons = Vec::new();
    for _ in 0..5 {
        let rec = rig.request(Action::Restart, &target);
        reasons.push(reason(&rec).to_owned());
        // The next request is issued after this restart, as a watchdog would.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reasons, ["ok", "ok", "ok", "breaker_opened", "breaker"]);
}

#[test]
fn host_budget_limits_a_mass_restart() {
    let rig = Rig::new();
    let containers: Vec<RunningContainer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    (0..5)
                        .map(|_| opted_in().name_hint("budget").start())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("starting containers"))
            .collect()
    });
    assert_eq!(containers.len(), 30);
    for c in &containers {
        c.wait_for_status("running", WAIT);
    }
    let _exec = rig.start(&[]);
    let envelopes: Vec<String> = containers
        .iter()
        .map(|c| rig.envelope(&rig.payload(Action::Restart, c)))
        .collect();
    for env in &envelopes {
        rig.send_raw(env);
    }
    let recs = rig.wait_records(30);
    let executed = recs.iter().filter(|r| decision(r) == "executed").count();
    let budget = recs.iter().filter(|r| reason(r) == "budget").count();
    assert_eq!((executed, budget), (5, 25), "{recs:#?}");
}

#[test]
fn entries_delivered_too_often_go_to_the_dead_letter_stream() {
    let rig = Rig::new();
    let target = opted_in().name_hint("dead").start();
    let mut con = rig.redis();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("vigil:requests")
        .arg("executors")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut con)
        .expect("XGROUP CREATE");
    let (_, _) = rig.send(Action::Restart, &target);
    // Another consumer reads it twice and dies without acknowledging.
    for id in [">", "0"] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("executors")
            .arg("ghost")
            .arg("STREAMS")
            .arg("vigil:requests")
            .arg(id)
            .query(&mut con)
            .expect("XREADGROUP");
    }
    let before = started_at(&target);
    let _exec = rig.start(&[
        ("EXECUTOR_MAX_DELIVERIES", "2"),
        ("EXECUTOR_RECLAIM_IDLE", "200ms"),
    ]);
    let recs = rig.wait_records(1);
    assert_eq!(
        (decision(&recs[0]), reason(&recs[0])),
        ("rejected", "dead_letter")
    );
    let dead: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("vigil:dead")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    assert_eq!(dead.len(), 1);
    let text = format!("{:?}", dead[0]);
    assert!(
        text.contains("max_deliveries") && text.contains("envelope"),
        "{text}"
    );
    assert_eq!(started_at(&target), before, "a dead letter is not acted on");
}

// --- Concurrency: different containers side by side, one container at a time, floods ----------

/// A container that ignores SIGTERM, so a restart or stop waits out its whole stop grace.
fn stubborn(grace_secs: u32) -> Container {
    Container::new()
        .shell("trap '' TERM; while :; do sleep 1; done")
        .label(labels::REMEDIATE, "true")
        .arg(&format!("--stop-timeout={grace_secs}"))
}

/// The engine's container events from now on (a live stream: the engine's own buffer holds only
/// its last 1,024 events): `<id> <action> <unix ns>` per line.
fn watch_events() -> ChildProcess {
    let mut cmd = vigil_tests::process::command("docker");
    cmd.args([
        "events",
        "--filter",
        "type=container",
        "--format",
        "{{.Actor.ID}} {{.Action}} {{.TimeNano}}",
    ]);
    let watch = ChildProcess::spawn("docker-events", cmd);
    // Give the stream a moment to attach before anything happens.
    std::thread::sleep(Duration::from_secs(1));
    watch
}

/// Unix ns of `id`'s events whose action is `action` (e.g. `kill`, `restart`, `die`, `start`).
fn event_times(watch: &ChildProcess, id: &str, action: &str) -> Vec<i64> {
    watch
        .matching_lines(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some(id) && it.next() == Some(action)
        })
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

/// Every line of the audit file, in file order.
fn all_records(rig: &Rig) -> Vec<Value> {
    std::fs::read_to_string(&rig.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// The file's records are one chain in one order, and the audit stream holds them in that
/// same order.
fn assert_one_order(rig: &Rig) {
    let out = rig.audit_verify();
    assert!(out.status.success(), "audit verify: {out:?}");
    let seqs: Vec<u64> = all_records(rig)
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let last = *seqs.last().expect("records");
    let on_stream = wait_for(|| {
        let stream: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg("vigil:audit")
            .arg("-")
            .arg("+")
            .query(&mut rig.redis())
            .expect("XRANGE");
        let on_stream: Vec<u64> = stream
            .iter()
            .filter_map(|(_, f)| serde_json::from_str::<Value>(f.get("record")?).ok())
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        (on_stream.last() == Some(&last)).then_some(on_stream)
    });
    // The stream keeps the most recent records (it is capped); those it has are in chain order.
    assert_eq!(
        on_stream,
        seqs[seqs.len() - on_stream.len()..],
        "the stream is in chain order"
    );
}

/// Five containers with a 10 s stop grace, requests for all five at once: the restarts run side
/// by side (serially they would take 50 s), and the record is still one chain in one order.
#[test]
fn five_slow_restarts_run_side_by_side_and_the_audit_stays_one_chain() {
    let rig = Rig::new();
    let events = watch_events();
    let containers: Vec<RunningContainer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| stubborn(10).name_hint("par").start()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("starting a container"))
            .collect()
    });
    for c in &containers {
        c.wait_for_status("running", WAIT);
    }
    // The containers' own 10 s grace applies (no EXECUTOR_STOP_TIMEOUT override).
    let exec = rig.spawn(&[
        ("EXECUTOR_STOP_TIMEOUT", ""),
        ("EXECUTOR_DOCKER_TIMEOUT", "60s"),
    ]);
    exec.expect_line("the consumer running", |l| l.contains(READY), WAIT);
    let first_sent = Timestamp::now().0 * 1_000_000;
    let ids: Vec<String> = containers
        .iter()
        .map(|c| rig.send(Action::Restart, c).1)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let recs = loop {
        let recs = rig.records();
        let done = ids
            .iter()
            .filter(|id| recs.iter().any(|r| r["request_id"] == id.as_str()))
            .count();
        if done == ids.len() {
            break recs;
        }
        assert!(Instant::now() < deadline, "{done} of 5 decided: {recs:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for id in &ids {
        let rec = recs
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .expect("a record");
        assert_eq!(decision(rec), "executed", "{rec:#}");
    }
    // From the engine's own clock: each restart's span is from its first kill (SIGTERM) to its
    // restart event. Side by side means every span began before any ended.
    let mut began = Vec::new();
    let mut ended = Vec::new();
    for c in &containers {
        let span = wait_for(|| {
            let kills = event_times(&events, c.id(), "kill");
            let restarts = event_times(&events, c.id(), "restart");
            Some((*kills.iter().min()?, *restarts.iter().max()?))
        });
        began.push(span.0);
        ended.push(span.1);
    }
    let last_began = *began.iter().max().expect("spans");
    let first_ended = *ended.iter().min().expect("spans");
    assert!(
        last_began < first_ended,
        "the restarts overlap: began {began:?}, ended {ended:?}"
    );
    // The done-when of this case: all five restarted within 15 s of the first request.
    let all_done = *ended.iter().max().expect("spans");
    let took_ms = (all_done - first_sent) / 1_000_000;
    assert!(
        took_ms <= 15_000,
        "all restarted {took_ms} ms after the first request"
    );
    assert_one_order(&rig);
    drop(exec);
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stop and a start for one container sent together: the start is decided only after the
/// stop's outcome is recorded (run side by side, the start would find the container still
/// running and be refused), so both are carried out.
#[test]
fn two_requests_for_one_container_run_one_after_the_other() {
    let rig = Rig::new();
    let target = stubborn(3).name_hint("serial").start();
    target.wait_for_status("running", WAIT);
    let exec = rig.spawn(&[
        ("EXECUTOR_STOP_TIMEOUT", ""),
        ("EXECUTOR_POLICY__ALLOWED_ACTIONS", "restart,start,stop"),
        ("EXECUTOR_POLICY__BACKOFF_INITIAL", "10ms"),
        ("EXECUTOR_POLICY__BACKOFF_MAX", "10ms"),
    ]);
    exec.expect_line("the consumer running", |l| l.contains(READY), WAIT);
    let (_, stop) = rig.send(Action::Stop, &target);
    let (_, start) = rig.send(Action::Start, &target);
    let recs = wait_for(|| {
        let recs = all_records(&rig);
        let decided = |id: &str| {
            recs.iter()
                .any(|r| r["request_id"] == id && r["decision"] != "intent")
        };
        (decided(&stop) && decided(&start)).then_some(recs)
    });
    let seq_of = |id: &str, decision: &str| -> u64 {
        recs.iter()
            .find(|r| r["request_id"] == id && r["decision"] == decision)
            .and_then(|r| r["seq"].as_u64())
            .unwrap_or_else(|| panic!("no {decision} record for {id}: {recs:#?}"))
    };
    let stop_done = seq_of(&stop, "executed");
    let start_intent = seq_of(&start, "intent");
    let start_done = seq_of(&start, "executed");
    assert!(seq_of(&stop, "intent") < stop_done);
    assert!(
        stop_done < start_intent && start_intent < start_done,
        "the start began only after the stop's outcome: {recs:#?}"
    );
    target.wait_for_status("running", WAIT);
    assert_one_order(&rig);
    drop(exec);
}

/// A flood of forged requests with one valid request behind it: every forged one is rejected
/// and audited, the chain verifies, and the valid one is carried out.
#[test]
fn a_flood_of_forged_requests_is_audited_and_a_valid_request_behind_it_runs() {
    const FLOOD: usize = 1000;
    let rig = Rig::new();
    let target = opted_in().name_hint("flood").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);
    let exec = rig.start(&[]);
    let forger = Signer::new("wd1", generate_signing_key()).expect("id");
    let mut pipe = redis::pipe();
    for _ in 0..FLOOD {
        let env = forger
            .sign(&rig.payload(Action::Restart, &target))
            .expect("signs")
            .to_json();
        pipe.cmd("XADD")
            .arg("vigil:requests")
            .arg("*")
            .arg("envelope")
            .arg(env)
            .ignore();
    }
    let () = pipe.query(&mut rig.redis()).expect("flood");
    // The longest lifetime the executor accepts: a debug build on a busy machine may take
    // longer than the default minute to get through the flood.
    let mut payload = rig.payload(Action::Restart, &target);
    payload.expires_at = payload.issued_at.plus(Duration::from_secs(290));
    rig.send_raw(&rig.envelope(&payload));
    let valid = payload.id.to_string();
    let deadline = Instant::now() + Duration::from_secs(280);
    let recs = loop {
        let recs = rig.records();
        if recs.iter().any(|r| r["request_id"] == valid.as_str()) {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "valid request not decided; {} records",
            recs.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let forged = recs
        .iter()
        .filter(|r| decision(r) == "rejected" && reason(r) == "bad_signature")
        .count();
    assert_eq!(forged, FLOOD, "every forged request has its record");
    let rec = recs
        .iter()
        .find(|r| r["request_id"] == valid.as_str())
        .expect("record");
    assert_eq!(decision(rec), "executed", "{rec:#}");
    assert_ne!(started_at(&target), before);
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("vigil:requests")
        .arg("executors")
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut rig.redis())
        .expect("XPENDING");
    assert!(pending.is_empty(), "every entry acknowledged: {pending:?}");
    assert_one_order(&rig);
    drop(exec);
}

/// `healthcheck` (what the executor image's healthcheck runs) loads the configuration and asks
/// its own `/healthz`: 0 while the executor serves it, 1 naming the reason when nothing listens
/// on the configured address.
#[test]
fn healthcheck_asks_the_configured_healthz() {
    let rig = Rig::new();
    let listen = format!("127.0.0.1:{}", vigil_tests::ports::free_port());
    let _exec = rig.start(&[("EXECUTOR_LISTEN", listen.as_str())]);
    let healthcheck = |listen: &str| {
        let mut cmd = Command::new(workspace_bin("vigil-executor", "vigil-executor"));
        cmd.env_clear().arg("healthcheck");
        for (k, v) in rig.env() {
            cmd.env(k, v);
        }
        cmd.env("EXECUTOR_LISTEN", listen);
        cmd.output().expect("running vigil-executor healthcheck")
    };
    let healthy = healthcheck(&listen);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    let nothing = format!("127.0.0.1:{}", vigil_tests::ports::free_port());
    let down = healthcheck(&nothing);
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
