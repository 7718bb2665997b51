//! Hostile input, driven as an attacker would: raw RESP over a TcpStream as the watchdog's Redis
//! user (where a client library would refuse the bytes), against the real `vigil-executor`, a
//! real `redis-server` running the shipped ACL and append functions, and the real engine.
//!
//! Each case is one the adversarial review reproduced on the old code: poison entries that
//! stalled the consumer for good, an id that blocked the stream, labels that failed open,
//! Vigil's own stop taken for an operator's, and a stop timeout that ignored the container's.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_protocol::wire::Action;
use vigil_tests::docker::{Container, Healthcheck, RunningContainer};
use vigil_tests::executor_rig::{
    ExecutorRig, is_outcome_of, peak_rss_kib, read_records, sleeper, started_at, wait_ready,
};
use vigil_tests::process::ChildProcess;
use vigil_tests::redis_server::{EXECUTOR_PASSWORD, RedisServer, WATCHDOG_PASSWORD};

const WAIT: Duration = Duration::from_secs(30);
/// The executor's peak RSS must stay under this while it reads poison entries.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// One raw RESP connection, authenticated as an ACL user.
struct Resp {
    stream: BufReader<TcpStream>,
}

impl Resp {
    fn connect(port: u16, user: &str, password: &str) -> Resp {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut r = Resp {
            stream: BufReader::new(stream),
        };
        let ok = r.call(&[b"AUTH", user.as_bytes(), password.as_bytes()]);
        assert_eq!(ok, "+OK", "AUTH {user}");
        r
    }

    /// Sends one command; returns the first line of the reply (`+OK`, `-ERR ...`, `$n`...),
    /// skipping the payload of bulk and array replies.
    fn call(&mut self, args: &[&[u8]]) -> String {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        if self.stream.get_mut().write_all(&out).is_err() {
            return "-CLOSED".into();
        }
        self.read_reply()
    }

    fn read_reply(&mut self) -> String {
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(0) | Err(_) => return "-CLOSED".into(),
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse::<i64>().ok())
            && n >= 0
        {
            let mut buf = vec![0; n as usize + 2];
            let _ = self.stream.read_exact(&mut buf);
            return String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        }
        if let Some(n) = line.strip_prefix('*').and_then(|n| n.parse::<i64>().ok()) {
            for _ in 0..n.max(0) {
                self.read_reply();
            }
        }
        line
    }
}

/// Redis with the shipped ACL, a key pair, an audit file, the executor as the `executor` user.
struct Rig(ExecutorRig);

impl std::ops::Deref for Rig {
    type Target = ExecutorRig;
    fn deref(&self) -> &ExecutorRig {
        &self.0
    }
}

impl Rig {
    fn new() -> Rig {
        Rig(ExecutorRig::with_vigil_acl(&[(
            "EXECUTOR_CONSUMER",
            "exec-hostile",
        )]))
    }

    fn start(&self, extra: &[(&str, &str)]) -> ChildProcess {
        let exec = self.spawn(extra);
        wait_ready(&exec, WAIT);
        exec
    }

    fn watchdog(&self) -> Resp {
        Resp::connect(self.redis.port(), "watchdog", WATCHDOG_PASSWORD)
    }

    fn envelope(&self, action: Action, c: &RunningContainer) -> (String, String) {
        let p = self.payload(action, c);
        (self.0.envelope(&p), p.id.to_string())
    }

    /// Appends a signed request the way the watchdog does (the append function), retrying
    /// while the stream is still blocked; returns the request id.
    fn send(&self, action: Action, c: &RunningContainer) -> String {
        let (env, id) = self.envelope(action, c);
        let mut wd = self.watchdog();
        let deadline = Instant::now() + WAIT;
        loop {
            let reply = wd.call(&[
                b"FCALL",
                b"vigil_request_append",
                b"1",
                b"vigil:requests",
                b"envelope",
                env.as_bytes(),
            ]);
            if !reply.starts_with('-') {
                return id;
            }
            assert!(Instant::now() < deadline, "append kept failing: {reply}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn records(&self) -> Vec<Value> {
        read_records(&self.audit)
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no audit record for {what} within {WAIT:?}: {:#?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The request's outcome record (not its write-ahead `intent`).
    fn outcome(&self, request_id: &str) -> Value {
        self.wait_for(request_id, |r| is_outcome_of(r, request_id))
    }
}

fn decision_reason(rec: &Value) -> (String, String) {
    (
        rec["decision"].as_str().unwrap_or_default().to_owned(),
        rec["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn poison_entries_are_audited_as_malformed_and_a_valid_request_still_runs() {
    let rig = Rig::new();
    let sick = sleeper()
        .name_hint("poison")
        .label(labels::REMEDIATE, "true")
        .healthcheck(Healthcheck::new("false"))
        .start();
    sick.wait_for_health("unhealthy", WAIT);
    let before = started_at(&sick);
    let exec = rig.start(&[]);

    let mut wd = rig.watchdog();
    // 1. Not UTF-8 (the old consumer could not even parse the reply).
    let non_utf8 = wd.call(&[b"XADD", b"vigil:requests", b"*", b"\xff\xfe", b"x"]);
    assert!(!non_utf8.starts_with('-'), "{non_utf8}");
    // 2. No envelope field.
    wd.call(&[b"XADD", b"vigil:requests", b"*", b"other", b"x"]);
    // 3. Over the cap: the append function refuses it...
    let big = vec![b'A'; 900 * 1024];
    let refused = wd.call(&[
        b"FCALL",
        b"vigil_request_append",
        b"1",
        b"vigil:requests",
        b"envelope",
        &big,
    ]);
    assert!(refused.contains("over the cap"), "{refused}");
    // ...a raw XADD of it gets in (Redis runs functions with the caller's ACL, so the watchdog
    // keeps XADD), and the consumer must cope.
    let raw_big = wd.call(&[b"XADD", b"vigil:requests", b"*", b"envelope", &big]);
    assert!(!raw_big.starts_with('-'), "{raw_big}");
    // ...and 4 MB does not even reach Redis's command parser (proto-max-bulk-len 1mb).
    let huge = vec![b'A'; 4 << 20];
    let mut wd2 = rig.watchdog();
    let refused = wd2.call(&[b"XADD", b"vigil:requests", b"*", b"envelope", &huge]);
    assert!(refused.starts_with('-'), "a 4 MB XADD must fail: {refused}");
    // 4. A maximal id, last: it would block every later append.
    let max = b"18446744073709551615-18446744073709551615";
    let maxed = wd.call(&[b"XADD", b"vigil:requests", max, b"envelope", b"x"]);
    assert!(!maxed.starts_with('-'), "{maxed}");

    for why in ["not_utf8", "no_envelope", "over_cap", "future_id"] {
        let rec = rig.wait_for(why, |r| {
            r["reason"] == "malformed" && r["result"].as_str().unwrap_or("").ends_with(why)
        });
        assert_eq!(rec["decision"], "rejected", "{rec}");
    }

    // The stream takes appends again, and a valid request is executed within seconds.
    let id = rig.send(Action::Restart, &sick);
    let rec = rig.outcome(&id);
    assert_eq!(
        decision_reason(&rec),
        ("executed".into(), "ok".into()),
        "{rec}"
    );
    assert_ne!(started_at(&sick), before, "restarted");

    // Nothing of the poison's content is in the audit, and nothing stays pending.
    let audit = std::fs::read_to_string(&rig.audit).expect("audit");
    assert!(
        !audit.contains("AAAAAAAA"),
        "entry content leaked into the audit"
    );
    let mut admin = redis::Client::open(rig.redis.admin_url())
        .expect("url")
        .get_connection()
        .expect("admin connection");
    let count: i64 = redis::cmd("XPENDING")
        .arg("vigil:requests")
        .arg("executors")
        .query::<(i64, redis::Value, redis::Value, redis::Value)>(&mut admin)
        .expect("XPENDING summary")
        .0;
    assert_eq!(count, 0, "nothing left pending");

    let peak = peak_rss_kib(exec.pid());
    eprintln!("executor peak RSS (VmHWM): {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "executor peak RSS {peak} KiB >= {RSS_LIMIT_KIB} KiB"
    );
}

#[test]
fn the_acl_keeps_each_user_to_its_own_appends() {
    let redis = RedisServer::start_vigil();
    let mut wd = Resp::connect(redis.port(), "watchdog", WATCHDOG_PASSWORD);
    let denied = |reply: String, what: &str| {
        assert!(
            reply.starts_with("-NOPERM") || reply.starts_with("-ERR"),
            "{what}: {reply}"
        );
    };
    denied(wd.call(&[b"SCAN", b"0"]), "watchdog SCAN");
    denied(wd.call(&[b"KEYS", b"*"]), "watchdog KEYS");
    denied(
        wd.call(&[b"XADD", b"vigil:audit", b"*", b"record", b"x"]),
        "watchdog XADD audit",
    );
    denied(
        wd.call(&[
            b"FCALL",
            b"vigil_audit_append",
            b"1",
            b"vigil:audit",
            b"record",
            b"x",
        ]),
        "watchdog audit append",
    );
    denied(
        wd.call(&[b"FUNCTION", b"LOAD", b"REPLACE", b"#!lua name=x\n"]),
        "watchdog FUNCTION LOAD",
    );
    denied(
        wd.call(&[
            b"XREADGROUP",
            b"GROUP",
            b"executors",
            b"x",
            b"STREAMS",
            b"vigil:requests",
            b">",
        ]),
        "watchdog XREADGROUP",
    );
    // The pause key is the one operators' widening: SET/DEL/EXISTS on exactly that key.
    denied(wd.call(&[b"GET", b"vigil:pause"]), "watchdog GET pause");
    denied(
        wd.call(&[b"SET", b"vigil:pause2", b"1"]),
        "watchdog next to pause",
    );
    // The function refuses an entry over the cap and any shape but one envelope field.
    let big = vec![b'x'; vigil_protocol::names::MAX_REQUEST_ENTRY_BYTES + 1];
    denied(
        wd.call(&[
            b"FCALL",
            b"vigil_request_append",
            b"1",
            b"vigil:requests",
            b"envelope",
            &big,
        ]),
        "over the cap",
    );
    denied(
        wd.call(&[
            b"FCALL",
            b"vigil_request_append",
            b"1",
            b"vigil:requests",
            b"x",
            b"y",
        ]),
        "not an envelope",
    );
    let ok = wd.call(&[
        b"FCALL",
        b"vigil_request_append",
        b"1",
        b"vigil:requests",
        b"envelope",
        b"{}",
    ]);
    assert!(
        !ok.starts_with('-'),
        "the watchdog's own append works: {ok}"
    );

    let mut ex = Resp::connect(redis.port(), "executor", EXECUTOR_PASSWORD);
    denied(ex.call(&[b"SCAN", b"0"]), "executor SCAN");
    denied(
        ex.call(&[
            b"FCALL",
            b"vigil_request_append",
            b"1",
            b"vigil:requests",
            b"envelope",
            b"{}",
        ]),
        "executor request append",
    );
    denied(
        ex.call(&[b"XADD", b"vigil:requests", b"*", b"envelope", b"{}"]),
        "executor XADD requests",
    );
    denied(ex.call(&[b"DEL", b"vigil:audit"]), "executor DEL audit");
    denied(
        ex.call(&[b"XTRIM", b"vigil:audit", b"MAXLEN", b"0"]),
        "executor XTRIM",
    );
    denied(ex.call(&[b"FUNCTION", b"FLUSH"]), "executor FUNCTION FLUSH");
    denied(
        ex.call(&[
            b"FCALL",
            b"vigil_audit_append",
            b"1",
            b"vigil:audit",
            b"record",
            &big.repeat(8),
        ]),
        "audit over the cap",
    );
    let ok = ex.call(&[
        b"FCALL",
        b"vigil_audit_append",
        b"1",
        b"vigil:audit",
        b"record",
        b"{}",
    ]);
    assert!(
        !ok.starts_with('-'),
        "the executor's own append works: {ok}"
    );

    let mut anon = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect");
    anon.write_all(b"PING\r\n").expect("write");
    let mut line = String::new();
    BufReader::new(anon).read_line(&mut line).expect("read");
    assert!(line.starts_with("-NOAUTH"), "default user is off: {line}");
}

#[test]
fn labels_fail_safe_in_the_executor() {
    let rig = Rig::new();
    let exec = rig.start(&[]);
    let mut guarded = Vec::new();
    for value in ["1", "yes", "TRUE", " on ", "garbage"] {
        let c = sleeper()
            .name_hint("guarded")
            .label(labels::REMEDIATE, "true")
            .label(labels::PROTECTED, value)
            .start();
        c.wait_for_status("running", WAIT);
        guarded.push((value, c));
    }
    for (value, c) in &guarded {
        let rec = rig.outcome(&rig.send(Action::Restart, c));
        assert_eq!(
            decision_reason(&rec),
            ("refused".into(), "protected".into()),
            "{}={value:?}: {rec}",
            labels::PROTECTED
        );
    }
    let yes = sleeper()
        .name_hint("optin-yes")
        .label(labels::REMEDIATE, "yes")
        .start();
    yes.wait_for_status("running", WAIT);
    let before = started_at(&yes);
    let rec = rig.outcome(&rig.send(Action::Restart, &yes));
    assert_eq!(
        decision_reason(&rec),
        ("executed".into(), "ok".into()),
        "{rec}"
    );
    assert_ne!(started_at(&yes), before);
    // The unclear value was reported once, with its safe meaning.
    let lines = exec.matching_lines(|l| l.contains("neither true nor false"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("garbage"), "{}", lines[0]);
}

#[test]
fn vigils_own_stop_can_be_started_again_an_operators_cannot() {
    let rig = Rig::new();
    let _exec = rig.start(&[
        ("EXECUTOR_POLICY__ALLOWED_ACTIONS", "restart,start,stop"),
        ("EXECUTOR_POLICY__BACKOFF_INITIAL", "1s"),
        ("EXECUTOR_STOP_TIMEOUT", "2s"),
    ]);
    let c = sleeper()
        .name_hint("ownstop")
        .label(labels::REMEDIATE, "true")
        .start();
    c.wait_for_status("running", WAIT);

    let rec = rig.outcome(&rig.send(Action::Stop, &c));
    assert_eq!(
        decision_reason(&rec),
        ("executed".into(), "ok".into()),
        "{rec}"
    );
    c.wait_for_status("exited", WAIT);
    std::thread::sleep(Duration::from_millis(2500));
    let rec = rig.outcome(&rig.send(Action::Start, &c));
    assert_eq!(
        decision_reason(&rec),
        ("executed".into(), "ok".into()),
        "{rec}"
    );
    c.wait_for_status("running", WAIT);

    // A person stops it: Vigil never starts it again.
    c.stop();
    c.wait_for_status("exited", WAIT);
    std::thread::sleep(Duration::from_millis(2500));
    let rec = rig.outcome(&rig.send(Action::Start, &c));
    assert_eq!(
        decision_reason(&rec),
        ("refused".into(), "stale".into()),
        "{rec}"
    );
    assert_eq!(c.status(), "exited");
}

#[test]
fn stop_is_refused_unless_configured() {
    let rig = Rig::new();
    let _exec = rig.start(&[]);
    let c = sleeper()
        .name_hint("nostop")
        .label(labels::REMEDIATE, "true")
        .start();
    c.wait_for_status("running", WAIT);
    let rec = rig.outcome(&rig.send(Action::Stop, &c));
    assert_eq!(
        decision_reason(&rec),
        ("refused".into(), "action_not_allowed".into()),
        "{rec}"
    );
    assert_eq!(c.status(), "running");
}

#[test]
fn a_restart_waits_for_the_containers_own_stop_timeout() {
    let rig = Rig::new();
    let _exec = rig.start(&[]);
    // PID 1 ignores SIGTERM: only SIGKILL after the stop timeout ends it.
    let c = Container::new()
        .shell("trap '' TERM; while :; do sleep 1; done")
        .name_hint("grace")
        .label(labels::REMEDIATE, "true")
        .arg("--stop-timeout")
        .arg("30")
        .start();
    c.wait_for_status("running", WAIT);
    let started = Instant::now();
    let id = rig.send(Action::Restart, &c);
    let deadline = Instant::now() + Duration::from_secs(120);
    let rec = loop {
        if let Some(r) = rig.records().into_iter().find(|r| is_outcome_of(r, &id)) {
            break r;
        }
        assert!(Instant::now() < deadline, "no record within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        decision_reason(&rec),
        ("executed".into(), "ok".into()),
        "{rec}"
    );
    let took = started.elapsed();
    let duration_ms = rec["duration_ms"].as_u64().unwrap_or(0);
    assert!(
        duration_ms >= 25_000 && took >= Duration::from_secs(25),
        "the restart took {duration_ms} ms (wall {took:?}); the container asked for 30 s"
    );
}
