//! The whole Vigil stack as the end-to-end tests run it, set up once: a real `redis-server` with
//! the shipped ACL (the watchdog and the executor log in as their own users, the test reads as
//! `admin`), the watchdog's key pair, the executor with its audit file ([`ExecutorRig`]), the
//! watchdog behind its own gate, and a fake Telegram and Slack ([`Sinks`]), wired to each other
//! as a deployment is.
//!
//! [`Stack::builder`] starts from a watchdog alone with both sinks (alert-only mode); the knobs
//! add what a test varies: [`StackBuilder::redis`] (Redis and the key pair: the watchdog signs
//! requests and follows the audit stream), [`StackBuilder::executor`] with its policy settings
//! and metrics endpoint, the watchdog's own settings, and which parts start later.
//! [`StackBuilder::start`] returns once every part it started is ready. Parts stop and start
//! again mid-test: the executor, the watchdog (same settings and scope: it takes over), its
//! gate, and Redis (empty).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use vigil_docker::labels;
use vigil_protocol::signing::{VerifyKeys, load_verify_keys};

use crate::docker::{
    Container, Healthcheck, RunningContainer, SCOPE_LABEL, docker, require_engine,
};
use crate::executor_rig::{ExecutorRig, audit_verify, read_records, wait_ready};
use crate::gate_proc::GateProc;
use crate::ports::free_port;
use crate::process::ChildProcess;
use crate::redis_server::{RedisServer, WATCHDOG_PASSWORD};
use crate::watchdog_proc::{Sinks, Watchdog, WatchdogBuilder};

pub use crate::executor_rig::{DEPLOYMENT, KEY_ID};

/// How long a part may take to become ready on a busy 2-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// The watchdog's log line once its audit feed follows the stream.
pub const FEED_READY: &str = "Following the executor's audit stream";
/// The health check of [`Stack::healable`]: passes while `/tmp/state` says `ok` (shell
/// built-ins only).
pub const HEALTH_CMD: &str = r#"read s < /tmp/state && [ "$s" = ok ]"#;
/// The main process of [`Stack::healable`]: writes `ok` at every start, then idles; exits at
/// once on SIGTERM so a restart is quick.
pub const HEALS_ON_RESTART: &str =
    "echo ok > /tmp/state; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

/// Makes a [`Stack::healable`] container fail its health check until it restarts.
pub fn break_health(c: &RunningContainer) {
    docker(&["exec", c.id(), "sh", "-c", "echo broken > /tmp/state"]);
}

/// What to start; see the module docs.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    redis: bool,
    executor: bool,
    executor_at_start: bool,
    executor_metrics: bool,
    executor_env: Vec<(String, String)>,
    watchdog_at_start: bool,
    watchdog_env: Vec<(String, String)>,
    /// `(variable, file name, contents)`: the variable names a file holding the contents.
    watchdog_files: Vec<(String, String, String)>,
}

impl StackBuilder {
    /// Redis (shipped ACL, append functions) and the key pair: the watchdog signs remediation
    /// requests, keeps its alert state and follows the audit stream there.
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// The executor on the same Redis, with its audit file (implies [`StackBuilder::redis`]).
    pub fn executor(mut self) -> Self {
        self.redis = true;
        self.executor = true;
        self
    }

    /// An executor setting (a policy window, a budget) on top of the rig's.
    pub fn executor_env(mut self, key: &str, value: &str) -> Self {
        self.executor_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The executor serves `/metrics` on a free loopback port ([`Stack::executor_metrics`]).
    pub fn executor_metrics(mut self) -> Self {
        self.executor_metrics = true;
        self
    }

    /// The executor is configured but not started: the test calls [`Stack::start_executor`].
    pub fn executor_later(mut self) -> Self {
        self.executor_at_start = false;
        self.executor()
    }

    /// The watchdog is configured but not started: the test calls [`Stack::start_watchdog`].
    pub fn watchdog_later(mut self) -> Self {
        self.watchdog_at_start = false;
        self
    }

    /// A watchdog setting, after (so replacing) the stack's own.
    pub fn watchdog_env(mut self, key: &str, value: &str) -> Self {
        self.watchdog_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `key` names a file in the watchdog's directory holding `contents` (a `*_FILE` secret, a
    /// TOML configuration).
    pub fn watchdog_file(mut self, key: &str, name: &str, contents: &str) -> Self {
        self.watchdog_files
            .push((key.to_owned(), name.to_owned(), contents.to_owned()));
        self
    }

    /// Starts the parts (Redis, then the executor, then the watchdog) and waits until each is
    /// ready: the executor consuming, the watchdog started and, with Redis, following the
    /// audit stream.
    pub fn start(self) -> Stack {
        require_engine();
        let rig = self.redis.then(|| {
            ExecutorRig::with_vigil_acl(&[
                ("EXECUTOR_CONSUMER", "exec-stack"),
                ("EXECUTOR_STOP_TIMEOUT", "2s"),
            ])
        });
        let executor_listen = self
            .executor_metrics
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let mut stack = Stack {
            watchdog: None,
            executor: None,
            rig,
            sinks: Sinks::start(),
            run_id: uuid::Uuid::new_v4().to_string(),
            executor_listen,
            settings: self,
        };
        if stack.settings.executor && stack.settings.executor_at_start {
            stack.start_executor();
        }
        if stack.settings.watchdog_at_start {
            stack.start_watchdog();
        }
        stack
    }
}

/// A request on `vigil:requests`, payload decoded (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    /// The target container's id.
    pub target: String,
}

/// The running parts; each is killed when the stack drops (the watchdog first).
pub struct Stack {
    watchdog: Option<Watchdog>,
    executor: Option<ChildProcess>,
    rig: Option<ExecutorRig>,
    pub sinks: Sinks,
    /// The scope label's value every watchdog of this stack watches.
    run_id: String,
    executor_listen: Option<SocketAddr>,
    settings: StackBuilder,
}

impl Stack {
    /// A watchdog with both fake sinks, nothing else yet.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            redis: false,
            executor: false,
            executor_at_start: true,
            executor_metrics: false,
            executor_env: Vec::new(),
            watchdog_at_start: true,
            watchdog_env: Vec::new(),
            watchdog_files: Vec::new(),
        }
    }

    // ---- The watchdog --------------------------------------------------------------------

    /// The running watchdog.
    pub fn watchdog(&self) -> &Watchdog {
        self.watchdog.as_ref().expect("the stack's watchdog runs")
    }

    pub fn watchdog_mut(&mut self) -> &mut Watchdog {
        self.watchdog.as_mut().expect("the stack's watchdog runs")
    }

    /// Starts a watchdog with the stack's settings and scope (killing a running one first) and
    /// waits until it is ready; a second one takes over where the first stopped.
    pub fn start_watchdog(&mut self) {
        self.watchdog = None;
        let mut b = WatchdogBuilder::new()
            .scope_id(&self.run_id)
            .sinks(&self.sinks);
        if let Some(rig) = &self.rig {
            b = b
                .env(
                    "WATCHDOG_REDIS_URL",
                    &rig.redis.url_for("watchdog", WATCHDOG_PASSWORD),
                )
                .env(
                    "WATCHDOG_SIGNING_KEY_FILE",
                    &rig.private_key.display().to_string(),
                )
                .env("WATCHDOG_KEY_ID", KEY_ID)
                .env("WATCHDOG_DEPLOYMENT", DEPLOYMENT);
        }
        for (key, value) in &self.settings.watchdog_env {
            b = b.env(key, value);
        }
        for (key, name, contents) in &self.settings.watchdog_files {
            let path = b.file(name, contents);
            b = b.env(key, &path.display().to_string());
        }
        let wd = b.start();
        if self.rig.is_some() {
            wd.process.expect_line(
                "the audit feed following the stream",
                |l| l.contains(FEED_READY),
                READY_TIMEOUT,
            );
        }
        self.watchdog = Some(wd);
    }

    /// SIGKILLs the watchdog (and its gate): no graceful shutdown.
    pub fn kill_watchdog(&mut self) {
        self.watchdog = None;
    }

    /// The watchdog's gate, to stop and start again (cutting its event stream).
    pub fn gate(&mut self) -> &mut GateProc {
        self.watchdog_mut()
            .gate_mut()
            .expect("the stack's watchdog reads Docker through a gate")
    }

    /// A container named after `hint` in the stack's scope (any of its watchdogs sees it).
    pub fn scoped(&self, hint: &str) -> Container {
        Container::new()
            .name_hint(hint)
            .label(SCOPE_LABEL, &self.run_id)
    }

    /// [`Stack::scoped`], healthy until [`break_health`], healed by a restart.
    pub fn healable(&self, hint: &str) -> Container {
        self.scoped(hint)
            .healthcheck(Healthcheck::new(HEALTH_CMD))
            .shell(HEALS_ON_RESTART)
    }

    /// [`Stack::healable`], opted in to remediation (`vigil.remediate=true`).
    pub fn opted_in(&self, hint: &str) -> Container {
        self.healable(hint).label(labels::REMEDIATE, "true")
    }

    // ---- The executor --------------------------------------------------------------------

    fn rig(&self) -> &ExecutorRig {
        self.rig
            .as_ref()
            .expect("the stack has Redis (StackBuilder::redis or ::executor)")
    }

    /// Starts the executor (after [`StackBuilder::executor_later`], or again after
    /// [`Stack::kill_executor`]) and waits until it consumes requests.
    pub fn start_executor(&mut self) {
        let listen = self.executor_listen.map(|a| a.to_string());
        let mut extra: Vec<(&str, &str)> = self
            .settings
            .executor_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(listen) = &listen {
            extra.push(("EXECUTOR_LISTEN", listen));
        }
        let executor = self.rig().spawn(&extra);
        wait_ready(&executor, READY_TIMEOUT);
        self.executor = Some(executor);
    }

    /// SIGKILLs the executor.
    pub fn kill_executor(&mut self) {
        self.executor = None;
    }

    /// The running executor.
    pub fn executor(&self) -> &ChildProcess {
        self.executor.as_ref().expect("the stack's executor runs")
    }

    /// The executor's `/metrics` address ([`StackBuilder::executor_metrics`]).
    pub fn executor_metrics(&self) -> SocketAddr {
        self.executor_listen
            .expect("the executor serves metrics (StackBuilder::executor_metrics)")
    }

    /// The executor's audit file.
    pub fn audit_file(&self) -> &Path {
        &self.rig().audit
    }

    /// The decision records of the audit log (the write-ahead `intent` before each action left
    /// out).
    pub fn records(&self) -> Vec<Value> {
        read_records(self.audit_file())
            .into_iter()
            .filter(|r| r["decision"] != "intent")
            .collect()
    }

    /// `vigil-executor audit verify` of the audit file must pass.
    pub fn verify_audit(&self) {
        let verify = audit_verify(self.audit_file(), &[]);
        assert!(
            verify.status.success(),
            "audit verify: {}\n{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// The executor's verification keys, loaded from its key directory as it loads them.
    pub fn verify_keys(&self) -> VerifyKeys {
        load_verify_keys(&self.rig().keys_dir()).expect("the executor's key directory")
    }

    // ---- Redis ---------------------------------------------------------------------------

    pub fn redis(&self) -> &RedisServer {
        &self.rig().redis
    }

    /// To kill Redis and start it again (empty).
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        &mut self
            .rig
            .as_mut()
            .expect("the stack has Redis (StackBuilder::redis or ::executor)")
            .redis
    }

    /// A connection as the `admin` user, for the test's own reads and writes.
    pub fn admin(&self) -> redis::Connection {
        self.rig().redis()
    }

    /// The `envelope` field of every entry on `vigil:requests`.
    pub fn request_envelopes(&self) -> Vec<String> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg("vigil:requests")
            .arg("-")
            .arg("+")
            .query(&mut self.admin())
            .expect("XRANGE vigil:requests");
        reply
            .ids
            .iter()
            .map(|e| {
                e.get::<String>("envelope")
                    .expect("every request entry has an envelope field")
            })
            .collect()
    }

    /// Every request on `vigil:requests`, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.request_envelopes()
            .iter()
            .map(|envelope| {
                let envelope: Value = serde_json::from_str(envelope).expect("envelope JSON");
                let payload = BASE64
                    .decode(envelope["payload"].as_str().expect("payload"))
                    .expect("base64 payload");
                let payload: Value = serde_json::from_slice(&payload).expect("payload JSON");
                Request {
                    id: payload["id"].as_str().expect("request id").to_owned(),
                    target: payload["target"]["id"]
                        .as_str()
                        .expect("target id")
                        .to_owned(),
                }
            })
            .collect()
    }

    /// The sinks, the audit log and both processes' output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\naudit: {:#?}\n--- executor ---\n{}\n--- watchdog ---\n{}",
            self.sinks.describe(),
            self.rig.as_ref().map(|_| self.records()),
            self.executor
                .as_ref()
                .map(ChildProcess::transcript)
                .unwrap_or_default(),
            self.watchdog
                .as_ref()
                .map(|w| w.process.transcript())
                .unwrap_or_default()
        )
    }
}
