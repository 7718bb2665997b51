//! "The record never diverges from what was done", end to end: the real executor process, a
//! real `redis-server` and the machine's Docker engine, under a full disk (a small tmpfs this
//! test mounts), a deleted audit file, a torn last line, a crash between intent and outcome
//! (the fault-injection build), two executors with forced reclaims, and a 200 MB log.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use vigil_docker::labels;
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;
use vigil_tests::docker::{Container, RunningContainer};
use vigil_tests::executor_rig::{
    DEPLOYMENT, ExecutorRig, READY, audit_verify, http_get, is_outcome_of, opted_in, peak_rss_kib,
    read_records, started_at, wait_ready,
};
use vigil_tests::process::{ChildProcess, workspace_bin};

const WAIT: Duration = Duration::from_secs(60);
/// A crashed executor's lease lapses after its lifetime; keep it short so tests do not wait.
const QUICK_LEASE: [(&str, &str); 2] = [
    ("EXECUTOR_LEASE_TTL", "2s"),
    ("EXECUTOR_RECLAIM_IDLE", "1s"),
];

/// The shared executor rig with this file's defaults (quick stop, near-zero back-off).
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
            // Tests send a second request to a container they just restarted.
            ("EXECUTOR_POLICY__BACKOFF_INITIAL", "10ms"),
            ("EXECUTOR_POLICY__BACKOFF_MAX", "10ms"),
        ]))
    }

    fn audit(&self) -> PathBuf {
        self.0.audit.clone()
    }

    fn start_at(&self, audit: &Path, args: &[&str], extra: &[(&str, &str)]) -> ChildProcess {
        let exec = self.spawn_with(
            workspace_bin("vigil-executor", "vigil-executor"),
            args,
            audit,
            extra,
        );
        wait_ready(&exec, WAIT);
        exec
    }

    fn start(&self, extra: &[(&str, &str)]) -> ChildProcess {
        self.start_at(&self.audit(), &["run"], extra)
    }

    fn start_faulty(&self, fault: &str) -> ChildProcess {
        let exec = self.spawn_faulty(fault, &QUICK_LEASE);
        wait_ready(&exec, WAIT);
        exec
    }

    /// Signs and sends a restart of `c`; returns the request id.
    fn send(&self, c: &RunningContainer) -> String {
        let p = self.payload(Action::Restart, c);
        self.send_raw(&self.envelope(&p));
        p.id.to_string()
    }

    fn heartbeat(&self) -> Option<String> {
        redis::cmd("GET")
            .arg("vigil:heartbeat:executor")
            .query(&mut self.redis())
            .expect("GET heartbeat")
    }
}

/// Every line of the log (all parse: a fragment would fail here).
fn records(audit: &Path) -> Vec<Value> {
    read_records(audit)
}

fn outcome_for<'a>(recs: &'a [Value], id: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| is_outcome_of(r, id)).collect()
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A watchdog process on the rig's Redis (its own signing key, fake Telegram and Slack), with
/// `executor_down` paged after 2 s, as the full-disk test runs it: it reads the executor's
/// heartbeat and must page "executor cannot audit".
fn paging_watchdog(
    rig: &Rig,
    sinks: &vigil_tests::watchdog_proc::Sinks,
) -> vigil_tests::watchdog_proc::Watchdog {
    let b = vigil_tests::watchdog_proc::WatchdogBuilder::new().sinks(sinks);
    let keys = vigil_protocol::signing::write_keypair(&rig.dir.path().join("wd-keys"), "wd2")
        .expect("the watchdog's key pair");
    let config = b.file("watchdog.toml", "[alerts.executor_down]\nfor = \"2s\"\n");
    b.env("WATCHDOG_REDIS_URL", &rig.redis.url())
        .env(
            "WATCHDOG_SIGNING_KEY_FILE",
            &keys.private.display().to_string(),
        )
        .env("WATCHDOG_KEY_ID", "wd2")
        .env("WATCHDOG_DEPLOYMENT", DEPLOYMENT)
        .env("WATCHDOG_CONFIG", &config.display().to_string())
        .start()
}

#[test]
fn full_disk_acts_on_nothing_reports_it_and_resumes_once_space_returns() {
    let rig = Rig::new();
    let fs = Tmpfs::mount("1m");
    let audit = fs.path().join("audit.jsonl");
    let target = opted_in().name_hint("fulldisk").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);
    let port = vigil_tests::ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _exec = rig.start_at(&audit, &["run"], &[("EXECUTOR_LISTEN", &listen)]);
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    let sinks = vigil_tests::watchdog_proc::Sinks::start();
    let mut wd = paging_watchdog(&rig, &sinks);
    let paged = |m: &str| m.starts_with("ALERT") && m.contains("executor_down");
    // While the executor can audit, nobody is paged (over a few heartbeat probes).
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !sinks.telegram_messages().iter().any(|m| paged(m)),
        "executor_down while the executor is fine: {}",
        sinks.describe()
    );

    let filler = fs.fill();
    let id = rig.send(&target);
    let health = wait_until("/healthz 503", WAIT, || {
        let h = http_get(port, "/healthz");
        h.starts_with("HTTP/1.1 503").then_some(h)
    });
    assert!(health.contains("no space left"), "{health}");
    // The heartbeat carries the reason and the watchdog's reading pages it.
    let beat = wait_until("a heartbeat naming the problem", WAIT, || {
        rig.heartbeat().filter(|b| b.contains("cannot-audit"))
    });
    let (ok, detail) = vigil_watchdog::redis::link::judge_heartbeat(
        "vigil:heartbeat:executor",
        Some(&beat),
        Timestamp::now(),
    );
    assert!(!ok, "the watchdog treats it as a problem");
    assert!(
        detail.starts_with("executor cannot audit: no space left"),
        "{detail}"
    );
    // The running watchdog pages it, on both sinks, while the disk is still full.
    let (tg, slack) = sinks.expect_exactly("executor_down page", 1, paged, WAIT, Duration::ZERO);
    for m in tg.iter().chain(&slack) {
        assert!(m.contains("executor cannot audit: no space left"), "{m}");
    }
    wd.assert_running("while the executor cannot audit");
    assert!(std::fs::metadata(&filler).is_ok(), "still full when paged");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        started_at(&target),
        before,
        "not executed while the disk is full"
    );
    assert!(outcome_for(&records(&audit), &id).is_empty());

    std::fs::remove_file(filler).expect("free the space");
    let recs = wait_until("the request executed", WAIT, || {
        let recs = records(&audit);
        (!outcome_for(&recs, &id).is_empty()).then_some(recs)
    });
    let outcome = outcome_for(&recs, &id);
    assert_eq!(outcome.len(), 1, "{recs:#?}");
    assert_eq!(outcome[0]["decision"], "executed", "{recs:#?}");
    assert_ne!(started_at(&target), before);
    assert!(
        audit_verify(&audit, &[]).status.success(),
        "{:?}",
        audit_verify(&audit, &[])
    );
    wait_until("/healthz 200", WAIT, || {
        http_get(port, "/healthz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    // Not a fragment: every line of the file is a whole record.
    let text = std::fs::read_to_string(&audit).expect("audit file");
    assert!(text.ends_with('\n'), "the log ends with a whole record");
    assert_eq!(records(&audit).len(), text.lines().count());
    // The page ends: the watchdog tells people the executor is back.
    let recovered = |m: &str| m.starts_with("RECOVERED") && m.contains("executor_down");
    assert!(
        sinks.wait_each(1, recovered, WAIT),
        "no recovery of executor_down: {}",
        sinks.describe()
    );
    wd.assert_running("after the executor resumed");
}

#[test]
fn deleted_file_stops_actions_and_a_restart_with_the_flag_records_the_gap() {
    let rig = Rig::new();
    let target = opted_in().name_hint("deleted").start();
    target.wait_for_status("running", WAIT);
    let port = vigil_tests::ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let audit = rig.audit();
    let mut exec = rig.start_at(&audit, &["run"], &[("EXECUTOR_LISTEN", &listen)]);
    let first = rig.send(&target);
    wait_until("the first request executed", WAIT, || {
        let recs = records(&audit);
        (!outcome_for(&recs, &first).is_empty()).then_some(())
    });

    std::fs::remove_file(&audit).expect("rm the audit file");
    let before = started_at(&target);
    let id = rig.send(&target);
    let health = wait_until("/healthz 503", WAIT, || {
        let h = http_get(port, "/healthz");
        h.starts_with("HTTP/1.1 503").then_some(h)
    });
    assert!(health.contains("was deleted"), "{health}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(started_at(&target), before, "not executed without a file");
    exec.kill();

    // Without the flag the executor refuses to start: the file is behind the audit stream.
    let mut refused = rig.spawn_with(
        workspace_bin("vigil-executor", "vigil-executor"),
        &["run"],
        &audit,
        &[],
    );
    let status = refused.wait_exit(WAIT).expect("exits");
    assert!(!status.success());
    assert!(
        refused.transcript().contains("--accept-audit-gap"),
        "{}",
        refused.transcript()
    );

    let _exec = rig.start_at(&audit, &["run", "--accept-audit-gap"], &[]);
    let recs = wait_until("the pending request executed", WAIT, || {
        let recs = records(&audit);
        (!outcome_for(&recs, &id).is_empty()).then_some(recs)
    });
    assert_eq!(recs[0]["decision"], "gap", "{recs:#?}");
    assert_eq!(outcome_for(&recs, &id)[0]["decision"], "executed");
    assert_ne!(started_at(&target), before);
    let out = audit_verify(&audit, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("gap"));
}

#[test]
fn torn_tail_is_repaired_at_start_up_and_recorded() {
    let rig = Rig::new();
    let target = opted_in().name_hint("torn").start();
    target.wait_for_status("running", WAIT);
    let audit = rig.audit();
    let mut exec = rig.start(&[]);
    let first = rig.send(&target);
    wait_until("the first request executed", WAIT, || {
        (!outcome_for(&records(&audit), &first).is_empty()).then_some(())
    });
    exec.send_signal("KILL");
    exec.wait_exit(WAIT).expect("killed");
    let whole = records(&audit).last().expect("a record").to_string();
    let half = &whole[..whole.len() / 2];
    let mut content = std::fs::read(&audit).expect("read");
    content.extend_from_slice(half.as_bytes());
    std::fs::write(&audit, &content).expect("tear the tail");
    assert!(
        !audit_verify(&audit, &[]).status.success(),
        "torn before the start"
    );

    let _exec = rig.start(&[]);
    let recs = records(&audit);
    let recovered = recs
        .iter()
        .find(|r| r["decision"] == "recovered")
        .expect("a recovered record");
    let text = recovered["result"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("cut {} bytes", half.len())),
        "{recovered}"
    );
    assert!(audit_verify(&audit, &[]).status.success());
    let before = started_at(&target);
    let id = rig.send(&target);
    let recs = wait_until("the next request executed", WAIT, || {
        let recs = records(&audit);
        (!outcome_for(&recs, &id).is_empty()).then_some(recs)
    });
    assert_eq!(outcome_for(&recs, &id)[0]["decision"], "executed");
    assert_ne!(started_at(&target), before);
}

#[test]
fn crash_between_intent_and_outcome_is_resolved_from_the_container_and_not_repeated() {
    let rig = Rig::new();
    let target = opted_in().name_hint("intent").start();
    target.wait_for_status("running", WAIT);
    let before = started_at(&target);
    let audit = rig.audit();
    let mut crashing = rig.start_faulty("after_act");
    let id = rig.send(&target);
    let status = crashing
        .wait_exit(WAIT)
        .expect("aborted at the fault point");
    assert!(!status.success());
    let recs = records(&audit);
    assert_eq!(
        recs.last().expect("a record")["decision"],
        "intent",
        "{recs:#?}"
    );
    target.wait_for_status("running", WAIT);
    let after_crash = started_at(&target);
    assert_ne!(after_crash, before, "the restart happened before the crash");

    let _exec = rig.start(&QUICK_LEASE);
    let recs = wait_until("the intent resolved", WAIT, || {
        let recs = records(&audit);
        (!outcome_for(&recs, &id).is_empty()).then_some(recs)
    });
    let outcome = outcome_for(&recs, &id);
    assert_eq!(outcome.len(), 1, "{recs:#?}");
    assert_eq!(
        (&outcome[0]["decision"], &outcome[0]["reason"]),
        (
            &Value::from("executed"),
            &Value::from("resolved_after_crash")
        ),
        "{recs:#?}"
    );
    // The entry is acknowledged once the crashed process's lease has lapsed, without acting.
    wait_until("the entry acknowledged", WAIT, || {
        let pending: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg("vigil:requests")
            .arg("executors")
            .arg("-")
            .arg("+")
            .arg(10)
            .query(&mut rig.redis())
            .expect("XPENDING");
        pending.is_empty().then_some(())
    });
    assert_eq!(
        started_at(&target),
        after_crash,
        "the action is not repeated"
    );
    let recs = records(&audit);
    assert_eq!(outcome_for(&recs, &id).len(), 1, "{recs:#?}");
    assert!(audit_verify(&audit, &[]).status.success());
}

/// Restart events the engine reported for `id` since `since` (Unix seconds).
/// Watches the engine's `restart` events from now on. A live stream, not a `docker events
/// --since` query afterwards: the engine keeps only its last 1,024 events, and a busy test run
/// pushes a two-minute-old restart out of that buffer.
fn watch_restarts() -> ChildProcess {
    let mut cmd = vigil_tests::process::command("docker");
    cmd.args([
        "events",
        "--filter",
        "type=container",
        "--filter",
        "event=restart",
        "--format",
        "{{.Actor.ID}}",
    ]);
    ChildProcess::spawn("docker-events", cmd)
}

fn restart_events(watch: &ChildProcess, id: &str) -> usize {
    watch.matching_lines(|l| l.trim() == id).len()
}

#[test]
fn two_executors_with_forced_reclaims_run_every_request_exactly_once() {
    let rig = Rig::new();
    let restarts = watch_restarts();
    // Give the events stream a moment to attach before anything happens.
    std::thread::sleep(Duration::from_secs(1));
    // One container that ignores SIGTERM: its restart waits out a 30 s stop grace.
    let slow = Container::new()
        .shell("trap '' TERM; while :; do sleep 1; done")
        .label(labels::REMEDIATE, "true")
        .name_hint("slow")
        .start();
    let fast: Vec<RunningContainer> = (0..19)
        .map(|_| opted_in().name_hint("fast").start())
        .collect();
    slow.wait_for_status("running", WAIT);
    for c in &fast {
        c.wait_for_status("running", WAIT);
    }
    let common = [
        ("EXECUTOR_STOP_TIMEOUT", "30s"),
        ("EXECUTOR_DOCKER_TIMEOUT", "90s"),
        ("EXECUTOR_RECLAIM_IDLE", "1s"),
        ("EXECUTOR_LEASE_TTL", "3s"),
        ("EXECUTOR_POLICY__BUDGET_PER_MINUTE", "100"),
    ];
    let audit_a = rig.dir.path().join("a.jsonl");
    let audit_b = rig.dir.path().join("b.jsonl");
    let mut env_a = common.to_vec();
    env_a.push(("EXECUTOR_CONSUMER", "exec-a"));
    // One request at a time in A, so the rest of what it read waits (unleased) behind the slow
    // restart, for B to reclaim.
    env_a.push(("EXECUTOR_CONCURRENCY", "1"));
    let mut env_b = common.to_vec();
    env_b.push(("EXECUTOR_CONSUMER", "exec-b"));

    // A takes the slow one first and holds the rest in its batch; B then reclaims them while
    // A's slow restart is still running (its lease keeps B off that one).
    let exec_a = rig.start_at(&audit_a, &["run"], &env_a);
    let mut ids = vec![(slow.id().to_owned(), rig.send(&slow))];
    for c in &fast {
        ids.push((c.id().to_owned(), rig.send(c)));
    }
    std::thread::sleep(Duration::from_secs(3));
    let exec_b = rig.start_at(&audit_b, &["run"], &env_b);

    let all = || {
        let mut r = records(&audit_a);
        r.extend(records(&audit_b));
        r
    };
    let recs = wait_until("every request decided", Duration::from_secs(240), || {
        let recs = all();
        ids.iter()
            .all(|(_, id)| !outcome_for(&recs, id).is_empty())
            .then_some(recs)
    });
    std::thread::sleep(Duration::from_secs(5));
    let recs = {
        let later = all();
        assert_eq!(later.len(), recs.len(), "nothing more happened");
        later
    };
    for (container, id) in &ids {
        let outcome = outcome_for(&recs, id);
        assert_eq!(outcome.len(), 1, "request {id}: {outcome:#?}");
        assert_eq!(outcome[0]["decision"], "executed", "{:#}", outcome[0]);
        let intents = recs
            .iter()
            .filter(|r| r["request_id"] == id.as_str() && r["decision"] == "intent")
            .count();
        assert_eq!(intents, 1, "one intent for {id}");
        // The engine publishes the restart event when the restart completes; on a loaded
        // machine the events query can lag the audit record by a moment.
        let seen = wait_until(
            "the engine's restart event",
            Duration::from_secs(30),
            || {
                let n = restart_events(&restarts, container);
                (n > 0).then_some(n)
            },
        );
        assert_eq!(seen, 1, "engine restarts of {container}");
    }
    let by_b = records(&audit_b)
        .iter()
        .filter(|r| r["decision"] == "executed")
        .count();
    assert!(by_b > 0, "B reclaimed and executed some requests");
    assert!(audit_verify(&audit_a, &[]).status.success());
    assert!(audit_verify(&audit_b, &[]).status.success());
    // One "restarted" announcement per request on the audit stream.
    let stream: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("vigil:audit")
        .arg("-")
        .arg("+")
        .query(&mut rig.redis())
        .expect("XRANGE");
    let executed_on_stream = stream
        .iter()
        .filter(|e| format!("{e:?}").contains(r#"decision\":\"executed"#))
        .count();
    assert_eq!(executed_on_stream, ids.len());
    drop((exec_a, exec_b));
}

#[test]
fn a_200_mb_log_across_segments_starts_in_bounded_memory_and_verifies() {
    use vigil_executor::audit::{AuditEntry, Decision};
    use vigil_executor::journal::{AuditLog, LogLimits, segments};
    let rig = Rig::new();
    let audit = rig.audit();
    let limits = LogLimits {
        segment_bytes: 32 << 20,
        min_free_bytes: 0,
    };
    let (mut log, _, _) = AuditLog::open_with(&audit, limits, None, |_| {}).expect("creates");
    let old = Timestamp::now().as_millis() - 3 * 24 * 3600 * 1000;
    let mut total = 0u64;
    let pad = "x".repeat(2000);
    let mut n = 0i64;
    while total < 200 << 20 {
        let batch: Vec<AuditEntry> = (0..500)
            .map(|i| {
                n += 1;
                AuditEntry {
                    ts: Timestamp(old + n),
                    request_id: Some(format!("{:064x}", n)),
                    key_id: Some("wd1".into()),
                    action: None,
                    target: None,
                    decision: Decision::Rejected,
                    reason: "bad_signature".into(),
                    // Long results: fewer, bigger records keep the (debug-build) generator fast.
                    result: Some(format!(
                        "signature does not verify (forged flood #{i}) {pad}"
                    )),
                    duration_ms: 0,
                    retry_at: None,
                }
            })
            .collect();
        log.append_batch(batch).expect("append");
        total = segments(&audit)
            .expect("segments")
            .iter()
            .map(|(_, p)| std::fs::metadata(p).expect("meta").len())
            .sum::<u64>()
            + std::fs::metadata(&audit).expect("meta").len();
    }
    drop(log);
    let segs = segments(&audit).expect("segments");
    assert!(segs.len() >= 6, "{segs:?}");

    let exec = rig.spawn_with(
        workspace_bin("vigil-executor", "vigil-executor"),
        &["run"],
        &audit,
        &[("EXECUTOR_AUDIT_SEGMENT_BYTES", "33554432")],
    );
    // Start-up verifies all 200 MB first: generous on a loaded machine.
    exec.expect_line(
        "the consumer running",
        |l| l.contains(READY),
        Duration::from_secs(600),
    );
    let hwm = peak_rss_kib(exec.pid());
    assert!(hwm < 32 * 1024, "start-up peak RSS {hwm} KiB");
    drop(exec);

    let out = audit_verify(&audit, &[]);
    assert!(out.status.success(), "{out:?}");
    // An edit in the oldest segment is still detected.
    let first = &segs[0].1;
    let text = std::fs::read_to_string(first).expect("read");
    std::fs::write(
        first,
        text.replacen("forged flood #5)", "forged flood #6)", 1),
    )
    .expect("edit");
    let out = audit_verify(&audit, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(".000001") && said.contains("record #6"),
        "{said}"
    );
}
