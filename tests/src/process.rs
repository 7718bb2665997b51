//! Child processes under test: workspace binaries built on demand, and [`ChildProcess`], which
//! captures every output line so a test can wait for and assert on what a program logged.
//!
//! `env!("CARGO_BIN_EXE_<name>")` only exists inside the binary's own package, so
//! [`workspace_bin`] finds `target/debug/<name>` itself (respecting `CARGO_TARGET_DIR`) and runs
//! `cargo build -p <package> --bin <name>` once per test process when the binary is missing or
//! older than the sources it is built from.
//!
//! # Children die with the test
//! A test the runner kills mid-run (a timeout, Ctrl-C) never runs its destructors, so the
//! executors, watchdogs, gates and redis-servers it started would run on, orphaned. Every child is
//! therefore started through [`command`], which runs it under util-linux
//! `setpriv --pdeathsig KILL`: the kernel sends it SIGKILL when the thread that spawned it ends,
//! however the test process ends. (The workspace forbids unsafe code, so `pre_exec` with
//! `prctl` is not an option; `setpriv` sets the same flag and then execs the program, so the
//! child keeps its pid.) [`ChildProcess::spawn`] refuses a command not made by [`command`].
//! The flag follows the spawning *thread*: a child must be spawned on the thread that outlives
//! it (the test's own thread), not on a helper thread that ends first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The cargo target directory this workspace builds into.
pub fn target_dir() -> PathBuf {
    let root = crate::workspace_root();
    let configured = std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map(PathBuf::from);
    match configured {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Path of the workspace binary `bin` of package `package` in the debug profile, built first if
/// it is missing or stale. Builds at most once per (package, bin) per test process.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    build_bin(package, bin, None)
}

/// [`workspace_bin`] for a binary that needs cargo `features` (e.g. a test-only build).
pub fn workspace_bin_with_features(package: &str, bin: &str, features: &str) -> PathBuf {
    build_bin(package, bin, Some(features))
}

fn build_bin(package: &str, bin: &str, features: Option<&str>) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, String), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = lock(built);
    let key = (package.to_owned(), bin.to_owned());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let path = target_dir().join("debug").join(bin);
    if is_stale(&path) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut args = vec!["build", "-p", package, "--bin", bin];
        if let Some(f) = features {
            args.extend(["--features", f]);
        }
        eprintln!("[vigil-tests] building {bin} (cargo {})", args.join(" "));
        let status = Command::new(cargo)
            .current_dir(crate::workspace_root())
            .args(&args)
            .status()
            .expect("running cargo to build a workspace binary");
        assert!(
            status.success(),
            "cargo {} failed: {status}",
            args.join(" ")
        );
        assert!(
            path.exists(),
            "cargo built {bin} but {} does not exist",
            path.display()
        );
    }
    built.insert(key, path.clone());
    path
}

/// A binary is stale when any workspace source it may be built from (every member except the
/// tests and bench crates, plus the manifests and lock file) is newer than it.
fn is_stale(binary: &Path) -> bool {
    let Some(built_at) = fs::metadata(binary).and_then(|m| m.modified()).ok() else {
        return true;
    };
    let root = crate::workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for file in ["Cargo.toml", "Cargo.lock"] {
        newest = newest.max(mtime(&root.join(file)));
    }
    if let Ok(entries) = fs::read_dir(&root) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name();
            if name == "tests"
                || name == "bench"
                || name == "target"
                || !dir.join("Cargo.toml").is_file()
            {
                continue;
            }
            newest = newest.max(mtime(&dir.join("Cargo.toml")));
            newest = newest.max(newest_in(&dir.join("src")));
        }
    }
    newest > built_at
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn newest_in(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_in(&path)
        } else {
            mtime(&path)
        };
        newest = newest.max(t);
    }
    newest
}

/// The `setpriv` binary (util-linux), found on `PATH` once.
fn setpriv() -> &'static Path {
    static SETPRIV: OnceLock<PathBuf> = OnceLock::new();
    SETPRIV.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("setpriv"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "setpriv is not on PATH: install util-linux (scripts/setup-test.sh); the \
                     test harness runs every child under it so children die with the test"
                )
            })
    })
}

/// A command running `program` that is killed (SIGKILL) when the spawning thread ends, however
/// the test process ends (see the module docs). Add arguments and environment as to
/// `Command::new(program)`; `env_clear` clears the program's environment as usual.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(setpriv());
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
    cmd
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not hide this test's own result.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a child printed, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub text: String,
    /// Time since the child was spawned.
    pub at: Duration,
}

#[derive(Default)]
struct Output {
    lines: Vec<OutputLine>,
    /// Streams still open; 0 once the child closed both.
    open_streams: usize,
    /// Stop reading: each reader closes its end of the pipe after the next line.
    closing: bool,
}

type SharedOutput = Arc<(Mutex<Output>, Condvar)>;

/// How long [`ChildProcess::wait_exit`] waits for the last lines after the child exited.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A spawned child whose stdout and stderr are captured line by line (and echoed to the test's
/// stderr with a prefix, so a failing test shows them). Killed and reaped on drop.
pub struct ChildProcess {
    label: String,
    child: Child,
    output: SharedOutput,
    started: Instant,
    exit: Option<ExitStatus>,
}

impl ChildProcess {
    /// Spawns `cmd` (made by [`command`]) with piped stdout/stderr and null stdin. `label`
    /// prefixes echoed lines.
    pub fn spawn(label: &str, mut cmd: Command) -> Self {
        assert_eq!(
            cmd.get_program(),
            setpriv().as_os_str(),
            "{label}: spawn children with vigil_tests::process::command, so they die with the test"
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {label} ({:?}): {e}", cmd.get_program()));
        let started = Instant::now();
        let output: SharedOutput = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        if let Some(stdout) = child.stdout.take() {
            spawn_reader(label, Stream::Stdout, stdout, output.clone(), started);
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_reader(label, Stream::Stderr, stderr, output.clone(), started);
        }
        ChildProcess {
            label: label.to_owned(),
            child,
            output,
            started,
            exit: None,
        }
    }

    /// Spawns the workspace binary `bin` of `package` (built on demand) with `args` and `env`.
    pub fn spawn_bin(package: &str, bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = command(workspace_bin(package, bin));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(bin, cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line captured so far, both streams, in arrival order.
    pub fn lines(&self) -> Vec<OutputLine> {
        lock(&self.output.0).lines.clone()
    }

    /// The text of every captured line matching `pred`.
    pub fn matching_lines(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        lock(&self.output.0)
            .lines
            .iter()
            .filter(|l| pred(&l.text))
            .map(|l| l.text.clone())
            .collect()
    }

    /// Everything captured so far as one string, one line per line (for failure messages).
    pub fn transcript(&self) -> String {
        lock(&self.output.0)
            .lines
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect()
    }

    /// Waits until a line (already captured or new) matches `pred`; returns it, or `None` on
    /// timeout or when the child closed its output without printing one.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.wait_for_lines(1, pred, timeout)
            .and_then(|mut v| v.pop())
    }

    /// Waits until `count` lines match `pred`; returns them, or `None` on timeout or end of output.
    pub fn wait_for_lines(
        &self,
        count: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let (mutex, cond) = &*self.output;
        let mut out = lock(mutex);
        loop {
            let found: Vec<String> = out
                .lines
                .iter()
                .filter(|l| pred(&l.text))
                .map(|l| l.text.clone())
                .collect();
            if found.len() >= count {
                return Some(found.into_iter().take(count).collect());
            }
            let now = Instant::now();
            if now >= deadline || out.open_streams == 0 {
                return None;
            }
            out = cond
                .wait_timeout(out, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Like [`wait_for_line`](Self::wait_for_line), but panics with `what` and the transcript
    /// when no line matches in time.
    pub fn expect_line(
        &self,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        match self.wait_for_line(pred, timeout) {
            Some(line) => line,
            None => panic!(
                "{}: no line showing {what} within {timeout:?}; output so far:\n{}",
                self.label,
                self.transcript()
            ),
        }
    }

    /// Sends SIGTERM (through `kill -TERM`, so no unsafe code is needed).
    pub fn send_sigterm(&self) {
        self.send_signal("TERM");
    }

    /// Sends the named signal (`TERM`, `INT`, `HUP`, ...) through `kill`.
    pub fn send_signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            self.pid()
        );
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("polling a child's status");
        }
        self.exit
    }

    /// Waits up to `timeout` for the child to exit, then (briefly) for its last output lines.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                self.wait_output_closed(OUTPUT_DRAIN_TIMEOUT);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the child's stdout and stderr are closed (every line captured); false on
    /// timeout (a grandchild may still hold them).
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (mutex, cond) = &*self.output;
        let mut out = lock(mutex);
        while out.open_streams > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            out = cond
                .wait_timeout(out, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }

    /// Stops reading the child's output, as when the test process that read it is killed: each
    /// stream's reading end is closed once the child writes its next line to it, and every
    /// write after that fails (`EPIPE`). Lines from then on are not captured.
    pub fn close_output(&self) {
        lock(&self.output.0).closing = true;
    }

    /// Time since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(
    label: &str,
    stream: Stream,
    pipe: impl Read + Send + 'static,
    output: SharedOutput,
    started: Instant,
) {
    lock(&output.0).open_streams += 1;
    let prefix = format!(
        "[{label} {}]",
        match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    );
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    eprintln!("{prefix} {text}");
                    let (mutex, cond) = &*output;
                    let mut out = lock(mutex);
                    out.lines.push(OutputLine {
                        stream,
                        text,
                        at: started.elapsed(),
                    });
                    cond.notify_all();
                    if out.closing {
                        break;
                    }
                }
            }
        }
        let (mutex, cond) = &*output;
        lock(mutex).open_streams -= 1;
        cond.notify_all();
    });
}
