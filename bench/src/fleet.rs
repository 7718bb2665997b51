//! Benchmark containers: created in parallel batches through the docker CLI, every one labelled
//! with the test labels (so `scripts/test.sh` also finds leftovers) and `vigil.bench=<run id>`,
//! and removed by label: per group when a phase ends, and all of the run's by [`RunGuard`] on
//! drop, whatever happened.

use crate::interrupt;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vigil_tests::docker::{Container, TestImage, docker_output};

/// Label carrying the run id on every benchmark container.
pub const RUN_LABEL: &str = vigil_tests::docker::BENCH_LABEL;
/// Label carrying a group id (one per phase); the watchdog's scope label in latency phases.
pub const GROUP_LABEL: &str = vigil_tests::docker::BENCH_GROUP_LABEL;
/// Parallel `docker run` calls.
pub const PARALLEL: usize = 8;
/// Parallel `docker rm` calls, each of at most [`RM_CHUNK`] containers: removing hundreds at once
/// has wedged the engine (Docker 20.10's network controller) on this machine.
const RM_PARALLEL: usize = 2;
const RM_CHUNK: usize = 50;

/// Removes every container of the run when dropped.
pub struct RunGuard {
    run_id: String,
}

impl RunGuard {
    pub fn new() -> Self {
        RunGuard {
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A fresh group of this run: its containers carry `vigil.bench.group=<id>`.
    pub fn group(&self) -> Group {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Group {
            run_id: self.run_id.clone(),
            id,
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let filter = format!("{RUN_LABEL}={}", self.run_id);
        match remove_labelled(&filter) {
            Ok(0) => {}
            Ok(n) => eprintln!("bench: removed {n} leftover container(s)"),
            Err(e) => eprintln!("bench: removing containers labelled {filter} failed: {e:#}"),
        }
    }
}

/// A set of containers created together and removed together.
pub struct Group {
    run_id: String,
    id: String,
}

impl Group {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `vigil.bench.group=<id>`: the label filter selecting this group.
    pub fn label(&self) -> String {
        format!("{GROUP_LABEL}={}", self.id)
    }

    /// A short, unique container name for the i-th container.
    pub fn name(&self, i: usize) -> String {
        format!("vigil-bench-{}-{i}", &self.id[..8])
    }

    /// The test image's container builder with this group's labels.
    pub fn container(&self, i: usize) -> Container {
        Container::new()
            .name(&self.name(i))
            .label(RUN_LABEL, &self.run_id)
            .label(GROUP_LABEL, &self.id)
    }

    /// Starts every container (`docker run -d`), [`PARALLEL`] at a time; returns their ids in
    /// order.
    pub fn start_all(&self, containers: Vec<Container>) -> Result<Vec<String>> {
        TestImage::ensure();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<String>>>> =
            Mutex::new((0..containers.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..PARALLEL.min(containers.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(c) = containers.get(i) else { break };
                        let outcome = interrupt::check().and_then(|()| run(c));
                        let failed = outcome.is_err();
                        if let Ok(mut r) = results.lock() {
                            r[i] = Some(outcome);
                        }
                        if failed {
                            // Stop everyone: one failure fails the phase.
                            next.store(usize::MAX / 2, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a docker run worker panicked"))?;
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(anyhow::anyhow!("not started (an earlier one failed)")))
            })
            .collect()
    }

    /// Removes this group's containers.
    pub fn remove(&self) -> Result<usize> {
        remove_labelled(&self.label())
    }
}

fn run(c: &Container) -> Result<String> {
    let args = c.run_args();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker_output(&argv);
    if !out.status.success() {
        let _ = docker_output(&["rm", "-f", "-v", c.container_name()]);
        bail!(
            "docker run {} failed: {}",
            c.container_name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes every container matching the label filter (`key=value`), [`RM_PARALLEL`] `docker rm`
/// calls of at most [`RM_CHUNK`] containers at a time; returns how many there were.
pub fn remove_labelled(filter: &str) -> Result<usize> {
    let out = docker_output(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={filter}"),
    ]);
    if !out.status.success() {
        bail!(
            "docker ps failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let chunks: Vec<&[String]> = ids.chunks(RM_CHUNK).collect();
    let failures = Mutex::new(Vec::new());
    for wave in chunks.chunks(RM_PARALLEL) {
        std::thread::scope(|s| {
            for part in wave {
                let failures = &failures;
                s.spawn(move || {
                    let mut args = vec!["rm", "-f", "-v"];
                    args.extend(part.iter().map(String::as_str));
                    let out = docker_output(&args);
                    if !out.status.success()
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                    }
                });
            }
        });
    }
    let failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        bail!("docker rm failed: {}", failures.join("; "));
    }
    Ok(ids.len())
}

/// A directory of FIFOs, one per container, bind-mounted at `/trig`: a container blocks in
/// `read` on its FIFO (using no CPU) until [`Triggers::fire`] writes a line to it.
pub struct Triggers {
    dir: PathBuf,
}

impl Triggers {
    /// Where containers find the FIFOs.
    pub const MOUNT: &'static str = "/trig";

    pub fn create(dir: &Path, count: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..count {
            let path = dir.join(i.to_string());
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o666),
                0,
            )
            .with_context(|| format!("mkfifo {}", path.display()))?;
        }
        Ok(Triggers {
            dir: dir.to_path_buf(),
        })
    }

    /// The `-v` argument mounting the FIFOs.
    pub fn volume(&self) -> String {
        format!("{}:{}", self.dir.display(), Self::MOUNT)
    }

    /// The script of container `i`: wait for the trigger, then exit with `code`.
    pub fn script(i: usize, code: u8) -> String {
        format!("read x < {}/{i}; exit {code}", Self::MOUNT)
    }

    /// Releases container `i`. Retries for a second if it has not opened its FIFO yet.
    pub fn fire(&self, i: usize) -> Result<()> {
        use std::io::Write;
        let path = self.dir.join(i.to_string());
        let mut last = None;
        for _ in 0..50 {
            match rustix::fs::open(
                &path,
                rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => {
                    let mut file = std::fs::File::from(fd);
                    file.write_all(b"go\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(());
                }
                // No reader yet.
                Err(e) if e == rustix::io::Errno::NXIO => {
                    last = Some(e);
                    interrupt::pause(Duration::from_millis(20))?;
                }
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            }
        }
        bail!(
            "container {i} never opened its trigger {} ({last:?})",
            path.display()
        )
    }
}
