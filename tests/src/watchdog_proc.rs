//! The watchdog as a process under test: [`WatchdogBuilder`] assembles a clean environment
//! (nothing inherited but `PATH` and `HOME`), [`Watchdog`] is the running binary with its captured
//! log and `/healthz`, and [`Sinks`] is a fake Telegram plus a fake Slack on their own runtime, so
//! tests can stay synchronous and simply poll.
//!
//! Every builder made with [`WatchdogBuilder::new`] gets a unique scope label
//! (`vigil.run=<uuid>`); containers passed through [`WatchdogBuilder::scoped`] (or
//! [`Watchdog::scoped`]) carry it, so tests running in parallel never see each other's
//! containers. Secrets (bot token, webhook URL) go through `*_FILE` variables pointing at files
//! in a temp dir the watchdog owns, as an operator would set them.
//!
//! **Through the gate by default.** A watchdog started against the real engine reads Docker
//! through its own `vigil-gate` process ([`GateProc`]), as it does when deployed: the gate's
//! allowlist and projection apply to every test. A test that needs the raw socket opts out with
//! [`WatchdogBuilder::raw_engine`] and says why; [`WatchdogBuilder::docker`] points the watchdog
//! at a fake engine instead (faults the real one cannot produce).

use crate::docker::Container;
use crate::fake_docker::FakeDocker;
use crate::fakes::{FakeSlack, FakeTelegram};
use crate::gate_proc::GateProc;
use crate::ports::free_port;
use crate::process::{ChildProcess, OutputLine, Stream, workspace_bin};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// The label key every scoped test container carries; the value is the builder's run id.
pub const SCOPE_KEY: &str = crate::docker::SCOPE_LABEL;
/// Logged once the configuration is valid and the watchdog begins watching.
pub const STARTING_LINE: &str = "Vigil watchdog starting";
/// Logged once the engine answered the version negotiation.
pub const CONNECTED_LINE: &str = "Connected to the Docker engine";
/// Logged once the notifier runs (after the engine connection attempt).
pub const NOTIFY_STARTED_LINE: &str = "Notifications started";
/// The chat id the tests configure for the fake Telegram.
pub const CHAT_ID: &str = "42";
/// How long a watchdog may take to come up on a busy 2-core machine (a rebuild not included:
/// [`workspace_bin`] builds before the clock starts).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Host signals are about the machine, not about a test's containers, so a scope label cannot
/// keep them apart: a loaded test machine would leak `host_memory_high` into every test's count.
const HOST_KINDS: &str = "host_memory_high,disk_high";

/// A fake Telegram and a fake Slack, served by a runtime of their own.
pub struct Sinks {
    pub telegram: FakeTelegram,
    pub slack: FakeSlack,
    // Declared last: the servers' handles are dropped before their runtime.
    runtime: tokio::runtime::Runtime,
}

impl Default for Sinks {
    fn default() -> Self {
        Self::start()
    }
}

impl Sinks {
    pub fn start() -> Sinks {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("building the fake sinks' runtime");
        let telegram = runtime.block_on(FakeTelegram::start());
        let slack = runtime.block_on(FakeSlack::start());
        Sinks {
            telegram,
            slack,
            runtime,
        }
    }

    /// The runtime serving the fakes (for their async helpers).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Accepted Telegram texts.
    pub fn telegram_messages(&self) -> Vec<String> {
        self.telegram.messages()
    }

    /// Accepted Slack texts (text plus attachment texts).
    pub fn slack_messages(&self) -> Vec<String> {
        self.slack.messages()
    }

    /// Every request either fake received (accepted or not).
    pub fn request_count(&self) -> usize {
        self.telegram.request_count() + self.slack.request_count()
    }

    /// Pushes `text` from `user` in `chat` to the fake Bot API's updates; returns the message
    /// id an answer must reply to.
    pub fn command_in(&self, chat: i64, user: u64, text: &str) -> i64 {
        let before = self.telegram.pending_update_count();
        self.telegram.push_update(chat, user, text);
        FakeTelegram::update_message_id(before)
    }

    /// [`Sinks::command_in`] the configured chat ([`CHAT_ID`]).
    pub fn command(&self, user: u64, text: &str) -> i64 {
        self.command_in(CHAT_ID.parse().expect("numeric chat id"), user, text)
    }

    /// The first Telegram message replying to `message_id`, waited for up to `timeout`.
    pub fn answer(&self, message_id: i64, timeout: Duration) -> String {
        let mut got = Vec::new();
        assert!(
            poll_until(timeout, || {
                got = self.telegram.replies_to(message_id);
                !got.is_empty()
            }),
            "no answer to command {message_id} within {timeout:?}; {}",
            self.describe()
        );
        got.remove(0)
    }

    /// [`Sinks::command`] `text` as `user`, then its [`Sinks::answer`].
    pub fn ask(&self, user: u64, text: &str, timeout: Duration) -> String {
        self.answer(self.command(user, text), timeout)
    }

    /// Both sinks' accepted messages, for failure output.
    pub fn describe(&self) -> String {
        format!(
            "telegram ({} request(s)): {:#?}\nslack ({} request(s)): {:#?}",
            self.telegram.request_count(),
            self.telegram_messages(),
            self.slack.request_count(),
            self.slack_messages()
        )
    }

    /// Waits until each sink accepted at least `n` messages matching `pred`; false on timeout.
    pub fn wait_each(&self, n: usize, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        poll_until(timeout, || {
            count(&self.telegram_messages(), &pred) >= n
                && count(&self.slack_messages(), &pred) >= n
        })
    }

    /// "Exactly `n`": waits (up to `timeout`) until each sink accepted `n` messages matching
    /// `pred`, then waits `settle` more and checks that each still has exactly `n`. Returns the
    /// matching (telegram, slack) texts; panics naming `what` otherwise.
    pub fn expect_exactly(
        &self,
        what: &str,
        n: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
        settle: Duration,
    ) -> (Vec<String>, Vec<String>) {
        if n > 0 {
            assert!(
                self.wait_each(n, &pred, timeout),
                "{what}: expected {n} message(s) per sink within {timeout:?}; got\n{}",
                self.describe()
            );
        }
        thread::sleep(settle);
        let tg = filter(&self.telegram_messages(), &pred);
        let slack = filter(&self.slack_messages(), &pred);
        assert!(
            tg.len() == n && slack.len() == n,
            "{what}: expected exactly {n} message(s) per sink after settling {settle:?}; got\n{}",
            self.describe()
        );
        (tg, slack)
    }
}

fn count(messages: &[String], pred: &impl Fn(&str) -> bool) -> usize {
    messages.iter().filter(|m| pred(m)).count()
}

fn filter(messages: &[String], pred: &impl Fn(&str) -> bool) -> Vec<String> {
    messages.iter().filter(|m| pred(m)).cloned().collect()
}

/// Polls `cond` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Builds the environment and arguments of one watchdog process.
pub struct WatchdogBuilder {
    env: BTreeMap<String, String>,
    args: Vec<String>,
    run_id: Option<String>,
    listen: Option<SocketAddr>,
    /// Why this watchdog talks to the engine's own socket (None: through a gate).
    raw_engine: Option<String>,
    dir: tempfile::TempDir,
}

impl Default for WatchdogBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchdogBuilder {
    /// The test set-up: a unique scope label, `WATCHDOG_INTERVAL=2s`, `/healthz` on a free
    /// loopback port, host signals off (see [`HOST_KINDS`]); no sinks yet.
    pub fn new() -> Self {
        let run_id = uuid::Uuid::new_v4().to_string();
        let port = free_port();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        Self::bare()
            .with_run_id(run_id)
            .env("WATCHDOG_INTERVAL", "2s")
            .env("WATCHDOG_LISTEN", &listen.to_string())
            .env("WATCHDOG_ALERTS__DISABLED", HOST_KINDS)
            .with_listen(listen)
    }

    /// Nothing but `PATH` and `HOME`: what a fresh clone runs with.
    pub fn bare() -> Self {
        let mut env = BTreeMap::new();
        for key in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                env.insert(key.to_owned(), v);
            }
        }
        WatchdogBuilder {
            env,
            args: Vec::new(),
            run_id: None,
            listen: None,
            raw_engine: None,
            dir: tempfile::Builder::new()
                .prefix("vigil-watchdog-test-")
                .tempdir()
                .expect("creating a temp dir for the watchdog's files"),
        }
    }

    /// Sets a fresh scope label (`WATCHDOG_SCOPE__LABEL=vigil.run=<uuid>`) on a bare builder.
    pub fn scope(self) -> Self {
        self.with_run_id(uuid::Uuid::new_v4().to_string())
    }

    /// Watches the scope `run_id` (another watchdog's, to take over where it stopped).
    pub fn scope_id(self, run_id: &str) -> Self {
        self.with_run_id(run_id.to_owned())
    }

    fn with_run_id(mut self, run_id: String) -> Self {
        self.env.insert(
            "WATCHDOG_SCOPE__LABEL".into(),
            format!("{SCOPE_KEY}={run_id}"),
        );
        self.run_id = Some(run_id);
        self
    }

    fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = Some(listen);
        self
    }

    /// The scope label's value (`<uuid>`), if the builder has one.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// `container` with this builder's scope label.
    pub fn scoped(&self, container: Container) -> Container {
        scope_container(self.run_id.as_deref(), container)
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        if key == "WATCHDOG_LISTEN" {
            // Keep the address `start` waits on in step with the one the watchdog will bind
            // (a wildcard bind is reached on loopback).
            self.listen = value.parse::<SocketAddr>().ok().map(|mut addr| {
                if addr.ip().is_unspecified() {
                    addr.set_ip([127, 0, 0, 1].into());
                }
                addr
            });
        }
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn remove_env(mut self, key: &str) -> Self {
        if key == "WATCHDOG_LISTEN" {
            self.listen = None;
        }
        self.env.remove(key);
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Writes `contents` to `<temp dir>/<name>` and returns the path (for `*_FILE` variables
    /// and TOML files).
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("writing a file for the watchdog");
        path
    }

    /// Telegram through the fake: token in a file, chat [`CHAT_ID`], API URL of the fake.
    pub fn telegram(self, telegram: &FakeTelegram) -> Self {
        let token = self.file("telegram_bot_token", &format!("{}\n", telegram.token()));
        self.env(
            "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
            &token.display().to_string(),
        )
        .env("WATCHDOG_TELEGRAM_CHAT_ID", CHAT_ID)
        .env("WATCHDOG_TELEGRAM_API_URL", &telegram.url())
    }

    /// The Slack webhook of the fake, through a file.
    pub fn slack(self, slack: &FakeSlack) -> Self {
        let url = self.file("slack_webhook_url", &format!("{}\n", slack.url()));
        self.env(
            "WATCHDOG_SLACK_WEBHOOK_URL_FILE",
            &url.display().to_string(),
        )
    }

    /// Both fakes of `sinks`.
    pub fn sinks(self, sinks: &Sinks) -> Self {
        self.telegram(&sinks.telegram).slack(&sinks.slack)
    }

    /// Points the watchdog at a fake engine (no gate: the fake stands for the engine's faults).
    pub fn docker(self, fake: &FakeDocker) -> Self {
        self.env("WATCHDOG_DOCKER_HOST", &fake.docker_host())
    }

    /// Opts out of the gate: the watchdog uses the engine's default socket directly. Only for a
    /// test whose point is the raw socket; `why` must say so (it is printed with the test).
    pub fn raw_engine(mut self, why: &str) -> Self {
        assert!(
            !why.trim().is_empty(),
            "raw_engine needs a reason: every other test goes through the gate"
        );
        eprintln!("[vigil-tests] watchdog without the gate: {why}");
        self.raw_engine = Some(why.to_owned());
        self
    }

    /// Starts this builder's gate and points `WATCHDOG_DOCKER_HOST` at it, unless the test
    /// opted out or chose another engine (a fake, or its own `WATCHDOG_DOCKER_HOST`).
    fn attach_gate(&mut self) -> Option<GateProc> {
        if self.raw_engine.is_some() || self.env.contains_key("WATCHDOG_DOCKER_HOST") {
            return None;
        }
        let gate = GateProc::start_in(self.dir.path());
        self.env
            .insert("WATCHDOG_DOCKER_HOST".into(), gate.docker_host());
        Some(gate)
    }

    /// The command this builder describes (clean environment).
    pub fn command(&self) -> Command {
        let mut cmd = crate::process::command(workspace_bin("vigil-watchdog", "vigil-watchdog"));
        cmd.env_clear().envs(&self.env).args(&self.args);
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Spawns the process (behind its gate, see the module docs) without waiting for anything.
    pub fn spawn(mut self) -> Watchdog {
        let gate = self.attach_gate();
        let process = ChildProcess::spawn("vigil-watchdog", self.command());
        Watchdog {
            process,
            gate,
            listen: self.listen,
            run_id: self.run_id,
            _dir: self.dir,
        }
    }

    /// Spawns the process and waits until it logged [`STARTING_LINE`], [`CONNECTED_LINE`] and
    /// [`NOTIFY_STARTED_LINE`] (so the sources are about to run).
    pub fn start(self) -> Watchdog {
        // Build (if stale) before the start-up clock runs.
        workspace_bin("vigil-watchdog", "vigil-watchdog");
        let wd = self.spawn();
        for line in [STARTING_LINE, CONNECTED_LINE, NOTIFY_STARTED_LINE] {
            let got = wd
                .process
                .expect_line(line, |l| l.contains(line), STARTUP_TIMEOUT);
            // The start-up summary names the engine it reads: the gate, unless opted out.
            if let (STARTING_LINE, Some(gate)) = (line, &wd.gate) {
                assert!(
                    got.contains(&format!("docker: {}", gate.docker_host())),
                    "the watchdog does not read Docker through its gate: {got}"
                );
            }
        }
        // The listener binds after the sources start: a test that asks /metrics or the status
        // page right away must find it serving, not refusing.
        if let Some(addr) = wd.listen {
            let serving = poll_until(STARTUP_TIMEOUT, || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            });
            assert!(serving, "the watchdog never served on {addr}");
        }
        wd
    }

    /// Runs the binary with `args` to completion (panics after `timeout`); returns its status
    /// and output.
    pub fn run_to_exit(mut self, args: &[&str], timeout: Duration) -> Finished {
        workspace_bin("vigil-watchdog", "vigil-watchdog");
        let _gate = self.attach_gate();
        let mut cmd = self.command();
        cmd.args(args);
        let mut process = ChildProcess::spawn("vigil-watchdog", cmd);
        let status = process.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "vigil-watchdog {args:?} did not exit within {timeout:?}; output:\n{}",
                process.transcript()
            )
        });
        Finished::new(status, &process.lines())
    }
}

fn scope_container(run_id: Option<&str>, container: Container) -> Container {
    match run_id {
        Some(id) => container.label(SCOPE_KEY, id),
        None => container,
    }
}

/// A finished one-shot command.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    fn new(status: ExitStatus, lines: &[OutputLine]) -> Finished {
        let join = |stream: Stream| {
            lines
                .iter()
                .filter(|l| l.stream == stream)
                .map(|l| format!("{}\n", l.text))
                .collect::<String>()
        };
        Finished {
            status,
            stdout: join(Stream::Stdout),
            stderr: join(Stream::Stderr),
        }
    }

    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A running watchdog process; killed when dropped (before its gate).
pub struct Watchdog {
    pub process: ChildProcess,
    /// The gate it reads Docker through; None for a raw-socket or fake-engine watchdog.
    gate: Option<GateProc>,
    listen: Option<SocketAddr>,
    run_id: Option<String>,
    _dir: tempfile::TempDir,
}

impl Watchdog {
    /// `container` with this watchdog's scope label.
    pub fn scoped(&self, container: Container) -> Container {
        scope_container(self.run_id.as_deref(), container)
    }

    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// The gate this watchdog reads Docker through, if it has one.
    pub fn gate(&self) -> Option<&GateProc> {
        self.gate.as_ref()
    }

    /// The gate, to stop and start again (cutting the watchdog's event stream).
    pub fn gate_mut(&mut self) -> Option<&mut GateProc> {
        self.gate.as_mut()
    }

    /// The listen address the builder chose (`WATCHDOG_LISTEN`), if any.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Panics with the transcript if the process exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.process.try_status() {
            panic!(
                "the watchdog exited ({status}) {when}; output:\n{}",
                self.process.transcript()
            );
        }
    }

    /// `GET /healthz`: (status code, JSON body). Err when nothing answers.
    pub fn healthz(&self) -> Result<(u16, Value), String> {
        let addr = self
            .listen
            .ok_or_else(|| "this watchdog has no known listen address".to_owned())?;
        http_get(addr, "/healthz")
    }

    /// `/healthz` must answer 200 with JSON; returns the body.
    pub fn expect_healthz_ok(&self, when: &str) -> Value {
        match self.healthz() {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("/healthz answered {status} {when}: {body}"),
            Err(e) => panic!("/healthz did not answer {when}: {e}"),
        }
    }

    /// Log lines of messages the log sink wrote (alerts at WARN, recoveries at INFO).
    pub fn notification_lines(&self) -> Vec<String> {
        self.process
            .matching_lines(|l| l.contains(" Alert.") || l.contains(" Notification."))
    }
}

/// A minimal HTTP/1.0 GET, enough for `/healthz`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Value), String> {
    let (status, body) = http_get_text(addr, path)?;
    let json = serde_json::from_str(&body).map_err(|e| format!("body {body:?}: {e}"))?;
    Ok((status, json))
}

/// A minimal HTTP/1.0 GET: the status and the body as text (e.g. `/metrics`).
pub fn http_get_text(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line in {reply:?}"))?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}
