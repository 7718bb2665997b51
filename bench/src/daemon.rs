//! The daemons under measurement (release builds of `vigil-watchdog` and `vigil-executor`), run
//! with a clean environment and their output in a log file, stopped (SIGTERM, then SIGKILL) when
//! dropped.

use crate::interrupt;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the release binaries are: `--bin-dir`, else `<target dir>/release`; absolute, since
/// daemons run in the work directory.
pub fn bin_dir(explicit: Option<&Path>) -> PathBuf {
    let dir = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| vigil_tests::process::target_dir().join("release"));
    dir.canonicalize().unwrap_or(dir)
}

/// `dir/name`, which must exist.
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build the release binaries first \
             (cargo build --release -p vigil-watchdog -p vigil-executor; scripts/bench.sh does)",
            path.display()
        );
    }
    Ok(path)
}

pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Daemon {
    /// Spawns `binary` with only `PATH`, `HOME` and `env` set; output goes to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("cloning a log file handle")?;
        let mut cmd = Command::new(binary);
        cmd.env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Fails unless the daemon is still running.
    pub fn require_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("polling a daemon")? {
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let found = interrupt::poll_until(timeout, Duration::from_millis(50), || {
            self.require_running()?;
            Ok(self.log_text().contains(needle))
        })?;
        if !found {
            bail!(
                "{} did not log {needle:?} within {timeout:?}; its log ends with:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps the process.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
