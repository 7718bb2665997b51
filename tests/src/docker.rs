//! The machine's real Docker engine, driven through the docker CLI.
//!
//! - [`require_engine`] fails the test loudly when `/var/run/docker.sock` does not answer.
//! - [`TestImage`] is the offline image `vigil-test/busybox:latest` (static busybox, no registry
//!   needed), built by `scripts/build-test-image.sh` when missing or stale.
//! - [`Container`] builds a `docker run -d`; every container it starts has a unique name
//!   (`vigil-t-<random>`), carries `vigil.test=1` and `vigil.test.pid=<test process>`, and is
//!   removed (`docker rm -f -v`) when its [`RunningContainer`] is dropped.
//! - [`remove_leftover_test_containers`] removes the containers of test processes that are gone;
//!   [`remove_all_test_containers`] removes every test container, including running tests' ones.

use rand::Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The engine's socket on the project's machines.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The label every test container carries.
pub const TEST_LABEL: &str = "vigil.test";
/// The label naming the test process that owns a container (for leftover clean-up).
pub const TEST_PID_LABEL: &str = "vigil.test.pid";
/// The label on the test image holding the sha256 of the script that built it.
pub const IMAGE_HASH_LABEL: &str = "vigil.test.image.hash";
/// The label scoping a test's containers to one test run (`vigil.test.run=<run id>`).
pub const RUN_LABEL: &str = "vigil.test.run";
/// The label scoping a spawned watchdog to one test's containers (`vigil.run=<uuid>`).
pub const SCOPE_LABEL: &str = "vigil.run";
/// The label carrying the run id on every benchmark container.
pub const BENCH_LABEL: &str = "vigil.bench";
/// The label carrying a benchmark group id (one per phase).
pub const BENCH_GROUP_LABEL: &str = "vigil.bench.group";

/// Panics with a clear message unless the engine answers `GET /_ping` on [`DOCKER_SOCKET`].
pub fn require_engine() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| ping_engine(Path::new(DOCKER_SOCKET)));
    if let Err(why) = result {
        panic!(
            "the Docker engine is required by this test and is not reachable at {DOCKER_SOCKET}: \
             {why}. Start dockerd (and run scripts/setup-test.sh); this test never skips."
        );
    }
}

fn ping_engine(socket: &Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer to /_ping: {:?}",
            reply.lines().next().unwrap_or("")
        ))
    }
}

/// Runs `docker <args>` and returns its trimmed stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `docker <args>` and returns the raw output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI (is it installed?)")
}

/// The offline test image.
pub struct TestImage;

impl TestImage {
    pub const NAME: &'static str = "vigil-test/busybox:latest";

    /// Makes sure the image exists and was built by the current `scripts/build-test-image.sh`
    /// (rebuilding it otherwise), once per test process; returns its name.
    pub fn ensure() -> &'static str {
        static ENSURED: OnceLock<()> = OnceLock::new();
        ENSURED.get_or_init(|| {
            require_engine();
            let script = crate::workspace_root()
                .join("scripts")
                .join("build-test-image.sh");
            let wanted = sha256_of(&script);
            let format = format!("{{{{ index .Config.Labels \"{IMAGE_HASH_LABEL}\" }}}}");
            let out = docker_output(&["image", "inspect", "--format", &format, Self::NAME]);
            let current = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || current != wanted {
                let status = Command::new("bash")
                    .arg(&script)
                    .status()
                    .expect("running scripts/build-test-image.sh");
                assert!(
                    status.success(),
                    "scripts/build-test-image.sh failed ({status}); run scripts/setup-test.sh"
                );
            }
        });
        Self::NAME
    }
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("running sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A random name `vigil-t-<8 hex>[-hint]`, unique per test.
pub fn unique_name(hint: &str) -> String {
    let n: u32 = rand::thread_rng().r#gen();
    if hint.is_empty() {
        format!("vigil-t-{n:08x}")
    } else {
        format!("vigil-t-{n:08x}-{hint}")
    }
}

/// A Docker healthcheck (`--health-*` options).
#[derive(Debug, Clone)]
pub struct Healthcheck {
    /// Run with `sh -c` inside the container (`CMD-SHELL`).
    pub cmd: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Healthcheck {
    /// A fast check: every 1 s, 1 s timeout, 1 retry, no start period.
    pub fn new(cmd: &str) -> Self {
        Healthcheck {
            cmd: cmd.to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 1,
            start_period: Duration::ZERO,
        }
    }
}

/// Builder for one test container started with `docker run -d`.
#[derive(Debug, Clone)]
pub struct Container {
    name: String,
    image: String,
    labels: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    healthcheck: Option<Healthcheck>,
    restart: Option<String>,
    memory: Option<String>,
    user: Option<String>,
    extra_args: Vec<String>,
    command: Vec<String>,
}

impl Default for Container {
    fn default() -> Self {
        Self::new()
    }
}

impl Container {
    /// A container of the test image with a unique name and the test labels.
    pub fn new() -> Self {
        let mut labels = BTreeMap::new();
        labels.insert(TEST_LABEL.to_owned(), "1".to_owned());
        labels.insert(TEST_PID_LABEL.to_owned(), std::process::id().to_string());
        Container {
            name: unique_name(""),
            image: TestImage::NAME.to_owned(),
            labels,
            env: Vec::new(),
            healthcheck: None,
            restart: None,
            memory: None,
            user: None,
            extra_args: Vec::new(),
            command: Vec::new(),
        }
    }

    /// Adds a readable hint to the unique name: `vigil-t-<random>-<hint>`.
    pub fn name_hint(mut self, hint: &str) -> Self {
        self.name = unique_name(hint);
        self
    }

    /// Uses exactly `name` (the caller keeps it unique).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Another image than the test image (it must exist locally: nothing can be pulled).
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_owned();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets compose's project and service labels, as `docker compose` would.
    pub fn compose(self, project: &str, service: &str) -> Self {
        self.label("com.docker.compose.project", project)
            .label("com.docker.compose.service", service)
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn healthcheck(mut self, check: Healthcheck) -> Self {
        self.healthcheck = Some(check);
        self
    }

    /// `--restart` policy: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub fn restart(mut self, policy: &str) -> Self {
        self.restart = Some(policy.to_owned());
        self
    }

    /// Memory limit (`8m`, `64m`, ...). Swap is set to the same value so that exceeding the
    /// limit OOM-kills instead of swapping.
    pub fn memory(mut self, limit: &str) -> Self {
        self.memory = Some(limit.to_owned());
        self
    }

    /// `--user` (e.g. `65534` for nobody).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Any other `docker run` option, e.g. `["--network", "none"]`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    /// The command (argv after the image).
    pub fn command(mut self, argv: &[&str]) -> Self {
        self.command = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Runs `script` with `sh -c`.
    pub fn shell(self, script: &str) -> Self {
        self.command(&["sh", "-c", script])
    }

    /// The name the container will get.
    pub fn container_name(&self) -> &str {
        &self.name
    }

    /// The `docker run` argv this builder produces (without the leading `docker`).
    pub fn run_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            self.name.clone(),
        ];
        for (k, v) in &self.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in &self.env {
            args.push("--env".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(check) = &self.healthcheck {
            args.push("--health-cmd".into());
            args.push(check.cmd.clone());
            args.push(format!(
                "--health-interval={}ms",
                check.interval.as_millis()
            ));
            args.push(format!("--health-timeout={}ms", check.timeout.as_millis()));
            args.push(format!("--health-retries={}", check.retries));
            args.push(format!(
                "--health-start-period={}ms",
                check.start_period.as_millis()
            ));
        }
        if let Some(policy) = &self.restart {
            args.push(format!("--restart={policy}"));
        }
        if let Some(limit) = &self.memory {
            args.push(format!("--memory={limit}"));
            args.push(format!("--memory-swap={limit}"));
        }
        if let Some(user) = &self.user {
            args.push(format!("--user={user}"));
        }
        args.extend(self.extra_args.iter().cloned());
        args.push(self.image.clone());
        args.extend(self.command.iter().cloned());
        args
    }

    /// `docker run -d`; panics if the engine refuses.
    pub fn start(self) -> RunningContainer {
        if self.image == TestImage::NAME {
            TestImage::ensure();
        } else {
            require_engine();
        }
        let args = self.run_args();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker_output(&argv);
        if !out.status.success() {
            // A failed run may still have created the container.
            let _ = docker_output(&["rm", "-f", "-v", &self.name]);
            panic!(
                "docker {} failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        RunningContainer {
            id,
            name: self.name,
        }
    }
}

/// A container started by [`Container::start`]; `docker rm -f -v` on drop.
#[derive(Debug)]
pub struct RunningContainer {
    id: String,
    name: String,
}

impl RunningContainer {
    /// Full container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Name without the leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `docker stop` (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&self) {
        docker(&["stop", &self.id]);
    }

    /// `docker stop -t <secs>`.
    pub fn stop_with_timeout(&self, secs: u32) {
        docker(&["stop", "-t", &secs.to_string(), &self.id]);
    }

    /// `docker kill` (SIGKILL).
    pub fn kill(&self) {
        docker(&["kill", &self.id]);
    }

    /// `docker kill -s <signal>`.
    pub fn kill_with(&self, signal: &str) {
        docker(&["kill", "-s", signal, &self.id]);
    }

    /// `docker start` again after a stop or exit.
    pub fn start_again(&self) {
        docker(&["start", &self.id]);
    }

    /// `docker restart`.
    pub fn restart(&self) {
        docker(&["restart", &self.id]);
    }

    /// `docker inspect` of this container: the object, not the one-element array.
    pub fn inspect_json(&self) -> Value {
        let text = docker(&["inspect", &self.id]);
        let mut all: Value = serde_json::from_str(&text).expect("docker inspect prints JSON");
        all.get_mut(0)
            .map(Value::take)
            .expect("docker inspect of one container prints one object")
    }

    /// `State.Status`: `created`, `running`, `exited`, ...
    pub fn status(&self) -> String {
        self.inspect_json()["State"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `State.Health.Status`, `None` without a healthcheck.
    pub fn health(&self) -> Option<String> {
        self.inspect_json()["State"]["Health"]["Status"]
            .as_str()
            .map(str::to_owned)
    }

    /// `State.ExitCode`.
    pub fn exit_code(&self) -> i64 {
        self.inspect_json()["State"]["ExitCode"]
            .as_i64()
            .unwrap_or_default()
    }

    /// `docker logs` (stdout and stderr together).
    pub fn logs(&self) -> String {
        let out = docker_output(&["logs", &self.id]);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    }

    /// Polls `docker inspect` every 100 ms until `pred` holds; panics with the last inspect after
    /// `timeout`, naming `what`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let inspect = self.inspect_json();
            if pred(&inspect) {
                return inspect;
            }
            if Instant::now() >= deadline {
                panic!(
                    "container {} not {what} within {timeout:?}; state: {}",
                    self.name, inspect["State"]
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `State.Health.Status` equals `status`.
    pub fn wait_for_health(&self, status: &str, timeout: Duration) {
        self.wait_until(&format!("health {status}"), timeout, |v| {
            v["State"]["Health"]["Status"].as_str() == Some(status)
        });
    }

    /// Waits until `State.Status` equals `status`.
    pub fn wait_for_status(&self, status: &str, timeout: Duration) {
        self.wait_until(&format!("status {status}"), timeout, |v| {
            v["State"]["Status"].as_str() == Some(status)
        });
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", "-v", &self.id]);
    }
}

/// Ids of every container (any state) carrying `vigil.test=1`.
pub fn test_container_ids() -> Vec<String> {
    let filter = format!("label={TEST_LABEL}=1");
    docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes every test container, including those of tests still running. For the end of a
/// benchmark or a whole run; a test should use [`remove_leftover_test_containers`].
pub fn remove_all_test_containers() -> usize {
    let ids = test_container_ids();
    remove(&ids);
    ids.len()
}

/// Removes the test containers whose owning test process (label `vigil.test.pid`) is gone;
/// leaves those of running tests, and those without the label, alone. Returns how many it
/// removed.
pub fn remove_leftover_test_containers() -> usize {
    let ids = test_container_ids();
    if ids.is_empty() {
        return 0;
    }
    let format = format!("{{{{.Id}}}} {{{{index .Config.Labels \"{TEST_PID_LABEL}\"}}}}");
    let mut args = vec!["inspect", "--format", &format];
    args.extend(ids.iter().map(String::as_str));
    let out = docker_output(&args);
    let stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let id = parts.next()?;
            let pid = parts.next()?.parse::<u32>().ok()?;
            let owner_gone = !Path::new(&format!("/proc/{pid}")).exists();
            owner_gone.then(|| id.to_owned())
        })
        .collect();
    remove(&stale);
    stale.len()
}

fn remove(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let mut args = vec!["rm", "-f", "-v"];
    args.extend(ids.iter().map(String::as_str));
    let _ = docker_output(&args);
}

/// A GET-only client on the real engine's socket, its API version negotiated. Panics with a
/// clear message when the engine does not answer.
pub async fn real_client() -> vigil_docker::DockerClient {
    require_engine();
    let client = vigil_docker::DockerClient::new(
        &format!("unix://{DOCKER_SOCKET}"),
        std::time::Duration::from_secs(5),
    )
    .expect("docker client");
    client
        .negotiate()
        .await
        .expect("the real Docker engine must answer at /var/run/docker.sock");
    client
}
