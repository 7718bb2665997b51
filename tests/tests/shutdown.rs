//! "A daemon always stops on SIGTERM", with the real binaries and a real `redis-server` in the
//! states that used to hold a process up: an executor that cannot audit (its file deleted) with a
//! request waiting, and a watchdog, each with its Redis gone in the two ways Redis goes away for
//! real: killed (connections refused) and frozen (`SIGSTOP`: connections open, nothing
//! answered), and with its log output gone (the reader of its stderr pipe closed, as when the
//! process that started it was killed: every log write then fails). Each must exit with code 0
//! within its drain deadline plus a margin; the test only fails when the process is still alive
//! after a generous wait (no wall-clock assertion).

use std::time::{Duration, Instant};
use vigil_protocol::signing::write_keypair;
use vigil_protocol::wire::{Action, Payload, Reason, Target};
use vigil_shared::time::Timestamp;
use vigil_tests::executor_rig::{ExecutorRig, http_get, wait_ready};
use vigil_tests::process::ChildProcess;
use vigil_tests::redis_server::RedisServer;
use vigil_tests::watchdog_proc::{Sinks, WatchdogBuilder};

/// Set-up waits on a busy 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
/// The executor's configured drain deadline in these tests.
const EXECUTOR_DRAIN: Duration = Duration::from_secs(3);
/// What a stopping process may take beyond its drain deadline before the test calls it stuck:
/// generous (a loaded machine), and still far below "never".
const MARGIN: Duration = Duration::from_secs(45);

/// How Redis goes away.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// Killed: connections refused.
    Killed,
    /// `SIGSTOP`: the kernel still accepts connections, nothing answers.
    Frozen,
}

fn take_away(redis: &mut RedisServer, how: Gone) {
    match how {
        Gone::Killed => redis.kill(),
        Gone::Frozen => redis.freeze(),
    }
}

/// Polls `f` every 200 ms until it returns `Some`; panics with `what` after `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the daemon's output is still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Read,
    /// The reading end closed ([`ChildProcess::close_output`]).
    Gone,
}

/// Sends SIGTERM and waits for the exit; fails when the process is still running after
/// `deadline` plus [`MARGIN`] or exits with anything but 0. With its output still read, it must
/// also have said it was shutting down.
fn expect_clean_stop(process: &mut ChildProcess, deadline: Duration, output: Output, what: &str) {
    process.send_sigterm();
    let Some(status) = process.wait_exit(deadline + MARGIN) else {
        let transcript = process.transcript();
        process.kill();
        panic!(
            "{what}: still running {:?} after SIGTERM (drain deadline {deadline:?}); output:\n{transcript}",
            deadline + MARGIN
        );
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: exit status {status} after SIGTERM; output:\n{}",
        process.transcript()
    );
    assert!(
        output == Output::Gone
            || process
                .transcript()
                .contains("Shutting down: finishing the requests in flight")
            || process
                .transcript()
                .contains("Shutting down: stopping sources"),
        "{what}: exited without going through its shutdown; output:\n{}",
        process.transcript()
    );
}

/// An executor that cannot audit (file deleted) with a request waiting, then its Redis gone.
fn executor_cannot_audit_without_redis(how: Gone, output: Output) {
    let mut rig = ExecutorRig::new(&[
        ("EXECUTOR_CONSUMER", "exec-shutdown"),
        ("EXECUTOR_SHUTDOWN_TIMEOUT", "3s"),
    ]);
    let port = vigil_tests::ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut exec = rig.spawn(&[("EXECUTOR_LISTEN", &listen)]);
    wait_ready(&exec, WAIT);
    if output == Output::Gone {
        exec.close_output();
    }

    std::fs::remove_file(&rig.audit).expect("rm the audit file");
    let payload = Payload::new(
        vigil_tests::executor_rig::DEPLOYMENT,
        Action::Restart,
        Target {
            id: "0".repeat(64),
            name: "vigil-shutdown-target".into(),
            project: None,
            service: None,
        },
        Reason::new("container_unhealthy", "high", "test", 0.9),
        Timestamp::now(),
    );
    rig.send_raw(&rig.envelope(&payload));
    wait_until("/healthz cannot_audit", WAIT, || {
        let h = http_get(port, "/healthz");
        h.contains("\"cannot_audit\"").then_some(())
    });

    take_away(&mut rig.redis, how);
    // The heartbeat says so: Redis is not answering (a frozen Redis must not look fine).
    wait_until("/healthz redis_ok false", WAIT, || {
        let h = http_get(port, "/healthz");
        h.contains("\"redis_ok\":false").then_some(())
    });
    assert!(exec.try_status().is_none(), "{}", exec.transcript());
    expect_clean_stop(
        &mut exec,
        EXECUTOR_DRAIN,
        output,
        &format!("executor, Redis {how:?}, output {output:?}"),
    );
}

#[test]
fn an_executor_that_cannot_audit_stops_on_sigterm_with_redis_killed_and_its_output_gone() {
    executor_cannot_audit_without_redis(Gone::Killed, Output::Gone);
}

#[test]
fn an_executor_that_cannot_audit_stops_on_sigterm_with_redis_frozen_and_its_output_gone() {
    executor_cannot_audit_without_redis(Gone::Frozen, Output::Gone);
}

#[test]
fn an_executor_that_cannot_audit_stops_on_sigterm_with_redis_frozen() {
    executor_cannot_audit_without_redis(Gone::Frozen, Output::Read);
}

/// A watchdog requesting remediation over Redis, then its Redis gone.
fn watchdog_without_redis(how: Gone, output: Output) {
    let mut redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("temp dir for keys");
    let files = write_keypair(keys.path(), "wd-shutdown").expect("a key pair");
    let sinks = Sinks::start();
    let mut wd = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_REDIS_URL", &redis.url())
        .env(
            "WATCHDOG_SIGNING_KEY_FILE",
            &files.private.display().to_string(),
        )
        .env("WATCHDOG_KEY_ID", &files.key_id)
        .env("WATCHDOG_DEPLOYMENT", "vigil-test")
        .start();
    // Its Redis side is running: it has written alert state or read the audit stream.
    wait_until("/healthz 200 before Redis goes away", WAIT, || {
        matches!(wd.healthz(), Ok((200, _))).then_some(())
    });

    if output == Output::Gone {
        wd.process.close_output();
    }
    take_away(&mut redis, how);
    // Long enough for every Redis task to be inside a command that gets no answer (or to have
    // failed and logged into the closed pipe).
    if output == Output::Read {
        wait_until("the watchdog to notice Redis gone", WAIT, || {
            let lines = wd.process.matching_lines(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("redis") && (l.contains("warn") || l.contains("error"))
            });
            (!lines.is_empty()).then_some(())
        });
    } else {
        std::thread::sleep(Duration::from_secs(8));
    }
    wd.assert_running("with Redis gone");
    expect_clean_stop(
        &mut wd.process,
        vigil_shared::shutdown::DRAIN_DEADLINE,
        output,
        &format!("watchdog, Redis {how:?}, output {output:?}"),
    );
}

#[test]
fn a_watchdog_stops_on_sigterm_with_redis_killed_and_its_output_gone() {
    watchdog_without_redis(Gone::Killed, Output::Gone);
}

#[test]
fn a_watchdog_stops_on_sigterm_with_redis_frozen() {
    watchdog_without_redis(Gone::Frozen, Output::Read);
}
