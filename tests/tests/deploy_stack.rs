//! The hardened compose stack (`compose/`), brought up for real on the engine (see
//! `docs/deploy.md`): images built offline by `scripts/build-images.sh --profile dev`, secrets by
//! `scripts/setup-deploy.sh`, then `docker-compose up` under a unique project name with the
//! test additions (`compose/docker-compose.test.yml`: a fake Telegram in the stack and an
//! opted-in app whose healthcheck always fails).
//!
//! Checked from the running stack, every check reported (not only the first failure):
//! - the parsed compose config: every service read-only, `cap_drop: [ALL]`,
//!   `no-new-privileges`, a healthcheck and a restart policy;
//! - every Vigil container: non-root, no capabilities, no-new-privs, a read-only root mount, and
//!   a real write to `/` fails;
//! - the watchdog: no docker.sock (mounts, its root filesystem, a connect attempt from inside),
//!   no docker group; through the gate with its own GET-only client (`vigil-watchdog
//!   docker-get`, the only Vigil binary in its image), archive, export, logs, attach, images get
//!   and encoded or `..` variants get 403 and inspect has no `Config.Env`; POST/DELETE on the
//!   gate's socket get 405;
//! - Redis ACLs: the watchdog and the executor are refused what they must not do (NOPERM), the
//!   default user is refused;
//! - end to end: the failing app is restarted by the executor, the alert reaches the fake
//!   Telegram, `audit verify` passes on the executor's log;
//! - `docker-compose down -v` leaves no container, network or volume of the project.

use serde_json::Value;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use vigil_tests::docker::{docker, docker_output, require_engine};
use vigil_tests::process::ChildProcess;
use vigil_tests::workspace_root;

const TAG: &str = "ci";
const APP_SECRET: &str = "deploy-stack-secret-5eb1";
const TELEGRAM_TOKEN: &str = "123456789:vigil-deploy-token";
const VIGIL_SERVICES: [&str; 4] = ["redis", "gate", "executor", "watchdog"];
const GATE_SOCKET: &str = "unix:///run/vigil-gate/docker.sock";
const AUDIT_FILE: &str = "/var/lib/vigil/audit.jsonl";

/// Collects every check's outcome so one run reports all that fail.
#[derive(Default)]
struct Checks {
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: impl Display, ok: bool, detail: impl Display) {
        if ok {
            self.passed.push(name.to_string());
        } else {
            self.failed.push(format!("{name}: {detail}"));
        }
    }

    fn finish(self) {
        eprintln!("[deploy_stack] {} checks passed", self.passed.len());
        assert!(
            self.failed.is_empty(),
            "{} of {} deployment checks failed:\n- {}",
            self.failed.len(),
            self.failed.len() + self.passed.len(),
            self.failed.join("\n- ")
        );
    }
}

/// The compose CLI: `docker-compose` (v1, what the project's machines have) or `docker compose`.
fn compose_program() -> Vec<String> {
    let v1 = Command::new("docker-compose").arg("version").output();
    if v1.is_ok_and(|o| o.status.success()) {
        return vec!["docker-compose".into()];
    }
    vec!["docker".into(), "compose".into()]
}

struct Stack {
    project: String,
    program: Vec<String>,
    compose_dir: PathBuf,
    secrets: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// `docker events` for the project's `restart` events, from before `up` (the engine keeps
    /// only its last few hundred events, so they are watched live rather than queried later).
    restarts: ChildProcess,
    is_down: bool,
}

impl Stack {
    fn up() -> Stack {
        require_engine();
        let root = workspace_root();
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(root.join("scripts/build-images.sh"))
            .args(["--profile", "dev", "--test-images", "--tag", TAG])
            .status()
            .expect("running scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed: {status}");
        eprintln!("[deploy_stack] images built in {:?}", started.elapsed());

        let secrets = tempfile::tempdir().expect("temp dir");
        let token = secrets.path().join("token.in");
        std::fs::write(&token, TELEGRAM_TOKEN).expect("write token");
        let out_dir = secrets.path().join("secrets");
        let status = Command::new("bash")
            .arg(root.join("scripts/setup-deploy.sh"))
            .arg("--out")
            .arg(&out_dir)
            .arg("--telegram-token-file")
            .arg(&token)
            .args(["--telegram-chat-id", "42"])
            .status()
            .expect("running scripts/setup-deploy.sh");
        assert!(status.success(), "scripts/setup-deploy.sh failed: {status}");

        let project = format!(
            "vigildeploy{}x{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        let env = vec![
            ("VIGIL_TAG".to_string(), TAG.to_string()),
            (
                "VIGIL_TELEGRAM_API_URL".to_string(),
                "http://fake-telegram:8080/cgi-bin/telegram".to_string(),
            ),
            ("VIGIL_WATCHDOG_INTERVAL".to_string(), "2s".to_string()),
            ("VIGIL_SCOPE_PROJECTS".to_string(), project.clone()),
        ];
        let mut watch = vigil_tests::process::command("docker");
        watch.args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=restart",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}}",
        ]);
        let restarts = ChildProcess::spawn("docker-events", watch);
        let stack = Stack {
            restarts,
            project,
            program: compose_program(),
            compose_dir: root.join("compose"),
            secrets,
            env,
            is_down: false,
        };
        let out = stack.compose(&["up", "-d"]);
        assert!(
            out.status.success(),
            "compose up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stack
    }

    fn secrets_dir(&self) -> PathBuf {
        self.secrets.path().join("secrets")
    }

    fn compose_with_files(&self, files: &[&str], args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .current_dir(&self.compose_dir)
            .arg("--env-file")
            .arg(self.secrets_dir().join("compose.env"));
        for f in files {
            cmd.args(["-f", f]);
        }
        cmd.args(["-p", &self.project]).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().expect("running docker-compose")
    }

    fn compose(&self, args: &[&str]) -> Output {
        self.compose_with_files(&["docker-compose.yml", "docker-compose.test.yml"], args)
    }

    fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !id.is_empty(),
            "no container for service {service}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        id
    }

    fn down(&mut self) -> Output {
        self.is_down = true;
        self.compose(&["down", "-v", "--remove-orphans", "-t", "3"])
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.is_down {
            return;
        }
        if std::thread::panicking() {
            let logs = self.compose(&["logs", "--no-color", "--tail", "40"]);
            eprintln!(
                "[deploy_stack] logs:\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        let _ = self.down();
    }
}

fn inspect(id: &str) -> Value {
    let raw = docker(&["inspect", id]);
    let all: Value = serde_json::from_str(&raw).expect("docker inspect JSON");
    all[0].clone()
}

/// `/proc/<pid>/status` of the container's main process, as name -> value.
fn proc_status(pid: u64) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Mount options of the root mount as the container's process sees it.
fn root_mount_options(pid: u64) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .and_then(|f| f.get(5).map(|s| s.to_string()))
        .unwrap_or_default()
}

fn exec(container: &str, argv: &[&str]) -> Output {
    let mut args = vec!["exec", container];
    args.extend_from_slice(argv);
    docker_output(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A GET through the gate from inside the watchdog container, with the watchdog's own GET-only
/// client (`vigil-watchdog docker-get`): (status, body).
fn via_gate(watchdog: &str, path: &str) -> (u16, String) {
    status_and_body(&exec(
        watchdog,
        &["/usr/local/bin/vigil-watchdog", "docker-get", path],
    ))
}

/// Another method than GET to the gate's socket, from inside the gate's container: the
/// watchdog's client cannot send one, so `vigil-gate probe --method` plays a compromised
/// watchdog on the same socket: (status, body).
fn other_method_to_gate(gate: &str, method: &str, path: &str) -> (u16, String) {
    status_and_body(&exec(
        gate,
        &[
            "/usr/local/bin/vigil-gate",
            "probe",
            "--print",
            "--method",
            method,
            GATE_SOCKET,
            path,
        ],
    ))
}

/// Both commands print the status on the first line, then the body.
fn status_and_body(out: &Output) -> (u16, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (first, body) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    (first.trim().parse().unwrap_or(0), body.to_string())
}

fn redis_url_password(file: &Path) -> String {
    let url = std::fs::read_to_string(file).expect("redis url secret");
    let after = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let userinfo = after.split_once('@').map(|(u, _)| u).unwrap_or_default();
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_string())
        .expect("user:password in the redis url")
}

fn redis_cli(redis: &str, user: Option<(&str, &str)>, cmd: &[&str]) -> String {
    let mut args: Vec<String> = vec!["exec".into()];
    if let Some((_, password)) = user {
        args.push("-e".into());
        args.push(format!("REDISCLI_AUTH={password}"));
    }
    args.push(redis.into());
    args.push("/usr/bin/redis-cli".into());
    args.push("--no-auth-warning".into());
    if let Some((name, _)) = user {
        args.push("--user".into());
        args.push(name.into());
    }
    args.extend(cmd.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    text(&docker_output(&argv))
}

fn wait_healthy(stack: &Stack, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let states: Vec<(String, String)> = VIGIL_SERVICES
            .iter()
            .map(|s| {
                let id = stack.container(s);
                let health = inspect(&id)["State"]["Health"]["Status"]
                    .as_str()
                    .unwrap_or("none")
                    .to_string();
                (s.to_string(), health)
            })
            .collect();
        if states.iter().all(|(_, h)| h == "healthy") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stack did not become healthy within {timeout:?}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn parsed_config(stack: &Stack, files: &[&str]) -> Value {
    let out = if stack.program.len() == 1 {
        // docker-compose v1 prints YAML only; PyYAML ships with it.
        let yaml = stack.compose_with_files(files, &["config"]);
        assert!(
            yaml.status.success(),
            "compose config: {}",
            String::from_utf8_lossy(&yaml.stderr)
        );
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (with PyYAML, a docker-compose dependency) to parse the config");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&yaml.stdout)
            .expect("write yaml");
        child.wait_with_output().expect("python3 output")
    } else {
        stack.compose_with_files(files, &["config", "--format", "json"])
    };
    assert!(out.status.success(), "parsing the compose config failed");
    serde_json::from_slice(&out.stdout).expect("compose config as JSON")
}

fn check_config(checks: &mut Checks, config: &Value, which: &str) {
    let services = config["services"].as_object().expect("services");
    for (name, svc) in services {
        let cap_drop = svc["cap_drop"].as_array().cloned().unwrap_or_default();
        checks.check(
            format!("{which}: {name} cap_drop [ALL]"),
            cap_drop == vec![Value::from("ALL")],
            format!("{:?}", svc["cap_drop"]),
        );
        let nnp = svc["security_opt"]
            .as_array()
            .is_some_and(|o| o.iter().any(|v| v == "no-new-privileges:true"));
        checks.check(
            format!("{which}: {name} no-new-privileges"),
            nnp,
            format!("{:?}", svc["security_opt"]),
        );
        checks.check(
            format!("{which}: {name} read_only"),
            svc["read_only"] == true,
            format!("{:?}", svc["read_only"]),
        );
        checks.check(
            format!("{which}: {name} healthcheck"),
            svc["healthcheck"]["test"].is_array(),
            format!("{:?}", svc["healthcheck"]),
        );
        checks.check(
            format!("{which}: {name} restart policy"),
            svc["restart"].is_string(),
            format!("{:?}", svc["restart"]),
        );
        let env = svc["environment"].as_object().cloned().unwrap_or_default();
        let secret_in_env = env.iter().any(|(k, v)| {
            !k.ends_with("_FILE")
                && v.as_str()
                    .is_some_and(|v| v.contains("://") && v.contains('@'))
        });
        checks.check(
            format!("{which}: {name} no credentials in the environment"),
            !secret_in_env,
            format!("{env:?}"),
        );
    }
}

#[test]
fn hardened_stack_works_and_the_watchdog_is_powerless() {
    let mut stack = Stack::up();
    let mut checks = Checks::default();
    let app = stack.container("app");
    wait_healthy(&stack, Duration::from_secs(120));
    let ids: Vec<(&str, String)> = VIGIL_SERVICES
        .iter()
        .map(|s| (*s, stack.container(s)))
        .collect();
    let id_of = |service: &str| {
        ids.iter()
            .find(|(s, _)| *s == service)
            .map(|(_, id)| id.clone())
            .expect("service id")
    };
    let docker_gid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/var/run/docker.sock")
            .expect("docker.sock")
            .gid()
            .to_string()
    };

    // --- the parsed compose config ---------------------------------------------------------
    let production = parsed_config(&stack, &["docker-compose.yml"]);
    for service in VIGIL_SERVICES {
        checks.check(
            format!("production config has {service}"),
            production["services"][service].is_object(),
            "missing",
        );
    }
    check_config(&mut checks, &production, "docker-compose.yml");
    let combined = parsed_config(&stack, &["docker-compose.yml", "docker-compose.test.yml"]);
    check_config(&mut checks, &combined, "with test additions");
    checks.check(
        "watchdog config has no docker socket volume",
        !production["services"]["watchdog"]["volumes"]
            .to_string()
            .contains("docker.sock"),
        production["services"]["watchdog"]["volumes"].to_string(),
    );

    // --- every Vigil container: non-root, no caps, read-only root ----------------------------
    for (service, id) in &ids {
        let info = inspect(id);
        let host = &info["HostConfig"];
        checks.check(
            format!("{service}: ReadonlyRootfs"),
            host["ReadonlyRootfs"] == true,
            host["ReadonlyRootfs"].to_string(),
        );
        checks.check(
            format!("{service}: CapDrop ALL"),
            host["CapDrop"].to_string().contains("ALL"),
            host["CapDrop"].to_string(),
        );
        let pid = info["State"]["Pid"].as_u64().unwrap_or(0);
        if pid == 0 {
            checks.check(format!("{service}: running"), false, "no pid");
            continue;
        }
        let status = proc_status(pid);
        let uid = status.get("Uid").cloned().unwrap_or_default();
        checks.check(
            format!("{service}: runs non-root"),
            !uid.is_empty() && uid.split_whitespace().all(|u| u != "0"),
            format!("Uid: {uid}"),
        );
        let cap_eff = status.get("CapEff").cloned().unwrap_or_default();
        checks.check(
            format!("{service}: no effective capabilities"),
            cap_eff.trim_start_matches('0').is_empty(),
            format!("CapEff: {cap_eff}"),
        );
        checks.check(
            format!("{service}: no-new-privs"),
            status.get("NoNewPrivs").map(String::as_str) == Some("1"),
            format!("{:?}", status.get("NoNewPrivs")),
        );
        let options = root_mount_options(pid);
        checks.check(
            format!("{service}: / mounted read-only"),
            options.split(',').any(|o| o == "ro"),
            format!("root mount options {options:?}"),
        );
        // A real write to /: as the container's user with its own binary where one writes
        // files, else (the watchdog's binary writes nothing at a given path) from here through
        // the process's root, which as root too must fail on a read-only mount.
        let attempt = match *service {
            "redis" => exec(
                id,
                &[
                    "/usr/bin/redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    "/vigil-write-probe.sock",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            ),
            "gate" => exec(
                id,
                &[
                    "/usr/local/bin/vigil-gate",
                    "serve",
                    "--docker-host",
                    "unix:///nonexistent.sock",
                    "--listen",
                    "unix:///vigil-write-probe.sock",
                ],
            ),
            "executor" => exec(
                id,
                &[
                    "/usr/local/bin/vigil-executor",
                    "keygen",
                    "--dir",
                    "/vigil-write-probe",
                    "--key-id",
                    "probe",
                ],
            ),
            _ => {
                let path = format!("/proc/{pid}/root/vigil-write-probe");
                let said = match std::fs::write(&path, b"x") {
                    Ok(()) => format!("wrote {path}"),
                    Err(e) => e.to_string(),
                };
                Output {
                    status: std::process::ExitStatus::default(),
                    stdout: Vec::new(),
                    stderr: said.into_bytes(),
                }
            }
        };
        let said = text(&attempt);
        checks.check(
            format!("{service}: cannot write to /"),
            said.contains("Read-only file system"),
            said.trim(),
        );
    }

    // --- the watchdog has neither the socket nor the docker group ----------------------------
    let watchdog = id_of("watchdog");
    let winfo = inspect(&watchdog);
    let mounts = winfo["Mounts"].to_string();
    checks.check(
        "watchdog: no docker.sock mount",
        !mounts.contains("docker.sock"),
        &mounts,
    );
    let gate_mount_ro = winfo["Mounts"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["Destination"] == "/run/vigil-gate" && m["RW"] == false)
    });
    checks.check(
        "watchdog: gate socket volume mounted read-only",
        gate_mount_ro,
        &mounts,
    );
    let group_add = winfo["HostConfig"]["GroupAdd"].clone();
    checks.check(
        "watchdog: no group_add",
        group_add.is_null() || group_add.as_array().is_some_and(Vec::is_empty),
        group_add.to_string(),
    );
    let wpid = winfo["State"]["Pid"].as_u64().unwrap_or(0);
    let groups = proc_status(wpid).get("Groups").cloned().unwrap_or_default();
    checks.check(
        "watchdog: not in the docker group",
        !groups.split_whitespace().any(|g| g == docker_gid),
        format!("Groups: {groups} (docker gid {docker_gid})"),
    );
    for path in ["var/run/docker.sock", "run/docker.sock"] {
        let seen = Path::new(&format!("/proc/{wpid}/root")).join(path);
        checks.check(
            format!("watchdog: no /{path} in its filesystem"),
            !seen.exists(),
            seen.display(),
        );
    }
    let direct = docker_output(&[
        "exec",
        "-e",
        "WATCHDOG_DOCKER_HOST=unix:///var/run/docker.sock",
        &watchdog,
        "/usr/local/bin/vigil-watchdog",
        "docker-get",
        "/_ping",
    ]);
    checks.check(
        "watchdog: connecting to /var/run/docker.sock fails from inside",
        !direct.status.success(),
        text(&direct),
    );
    let gate_info = inspect(&id_of("gate"));
    let gate_groups = proc_status(gate_info["State"]["Pid"].as_u64().unwrap_or(0))
        .get("Groups")
        .cloned()
        .unwrap_or_default();
    checks.check(
        "gate: reaches the socket through the docker group",
        gate_groups.split_whitespace().any(|g| g == docker_gid),
        format!("Groups: {gate_groups}"),
    );

    // --- through the gate, from inside the watchdog ------------------------------------------
    let raw_env = docker(&["inspect", "--format", "{{json .Config.Env}}", &app]);
    checks.check(
        "app: the engine does hold the secret in Config.Env",
        raw_env.contains(APP_SECRET),
        &raw_env,
    );
    let gate = id_of("gate");
    let (status, body) = via_gate(&watchdog, "/_ping");
    checks.check(
        "gate: GET /_ping",
        status == 200,
        format!("{status} {body}"),
    );
    for path in [
        format!("/containers/{app}/json"),
        format!("/v1.41/containers/{app}/json"),
    ] {
        let (status, body) = via_gate(&watchdog, &path);
        let parsed: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
        checks.check(
            format!("gate: inspect {path} answers without Config.Env"),
            status == 200
                && parsed["Config"].is_object()
                && parsed["Config"].get("Env").is_none()
                && !body.contains(APP_SECRET),
            format!("{status} {}", body.chars().take(300).collect::<String>()),
        );
    }
    let (status, body) = via_gate(&watchdog, "/containers/json?all=1");
    checks.check(
        "gate: list answers without the secret",
        status == 200 && body.contains(&app) && !body.contains(APP_SECRET),
        format!("{status}"),
    );
    let denied: Vec<(&str, String, u16)> = vec![
        ("POST", format!("/containers/{app}/restart"), 405),
        ("POST", format!("/v1.41/containers/{app}/restart"), 405),
        ("POST", format!("/containers/{app}/stop"), 405),
        ("DELETE", format!("/containers/{app}"), 405),
        ("DELETE", format!("/v1.41/containers/{app}?force=1"), 405),
        ("DELETE", "/volumes/anything".into(), 405),
        (
            "GET",
            format!("/containers/{app}/archive?path=/etc/passwd"),
            403,
        ),
        ("GET", format!("/containers/{app}/export"), 403),
        ("GET", format!("/containers/{app}/logs?stdout=1"), 403),
        ("GET", format!("/containers/{app}/attach/ws?stream=1"), 403),
        ("GET", format!("/images/vigil%2Ftest-app:{TAG}/get"), 403),
        ("GET", "/images/get?names=vigil/redis".into(), 403),
        ("GET", "/containers/x%2F..%2F..%2Fimages/json".into(), 403),
        ("GET", format!("/containers/{app}%2Farchive/json"), 403),
        ("GET", "/containers/%2e%2e/images/json".into(), 403),
        ("GET", format!("/containers/{app}/../../images/json"), 403),
        (
            "GET",
            format!("/v1.41/containers/{app}/json/../archive"),
            403,
        ),
        ("GET", "//containers/json".into(), 403),
        ("GET", "/info".into(), 403),
    ];
    for (method, path, want) in &denied {
        let (status, body) = if *method == "GET" {
            via_gate(&watchdog, path)
        } else {
            other_method_to_gate(&gate, method, path)
        };
        checks.check(
            format!("gate: {method} {path} -> {want}"),
            status == *want,
            format!("{status} {}", body.trim()),
        );
    }

    // --- Redis ACLs ----------------------------------------------------------------------------
    let redis = id_of("redis");
    let secrets = stack.secrets_dir();
    let wpass = redis_url_password(&secrets.join("watchdog_redis_url"));
    let epass = redis_url_password(&secrets.join("executor_redis_url"));
    let as_watchdog = |cmd: &[&str]| redis_cli(&redis, Some(("watchdog", &wpass)), cmd);
    let as_executor = |cmd: &[&str]| redis_cli(&redis, Some(("executor", &epass)), cmd);
    let said = as_watchdog(&["PING"]);
    checks.check(
        "redis: watchdog authenticates",
        said.trim() == "PONG",
        &said,
    );
    let said = as_executor(&["XREVRANGE", "vigil:audit", "+", "-", "COUNT", "1"]);
    checks.check(
        "redis: executor may read the audit stream",
        !said.contains("NOPERM") && !said.contains("ERR"),
        &said,
    );
    let watchdog_denied: Vec<Vec<&str>> = vec![
        vec![
            "XREADGROUP",
            "GROUP",
            "executors",
            "w",
            "COUNT",
            "1",
            "STREAMS",
            "vigil:requests",
            ">",
        ],
        vec!["XADD", "vigil:audit", "*", "record", "forged"],
        vec!["DEL", "vigil:requests"],
        vec!["DEL", "vigil:audit"],
        vec!["CONFIG", "GET", "*"],
        vec!["FLUSHALL"],
        vec!["KEYS", "*"],
        vec!["SET", "vigil:pause:x", "1"],
        vec!["GET", "vigil:pause"],
        vec!["HSET", "vigil:requests", "a", "b"],
        vec!["SET", "vigil:requests", "x"],
        vec!["XTRIM", "vigil:audit", "MAXLEN", "0"],
        vec!["SCAN", "0"],
        vec!["FUNCTION", "FLUSH"],
        vec!["FUNCTION", "LOAD", "REPLACE", "#!lua name=x\n"],
        vec![
            "FCALL",
            "vigil_audit_append",
            "1",
            "vigil:audit",
            "record",
            "forged",
        ],
    ];
    for cmd in &watchdog_denied {
        let said = as_watchdog(cmd);
        checks.check(
            format!("redis: watchdog refused {}", cmd.join(" ")),
            said.contains("NOPERM"),
            said.trim(),
        );
    }
    let executor_denied: Vec<Vec<&str>> = vec![
        vec!["XDEL", "vigil:audit", "0-1"],
        vec!["XTRIM", "vigil:audit", "MAXLEN", "0"],
        vec!["DEL", "vigil:audit"],
        vec!["SET", "vigil:audit", "x"],
        vec!["SET", "vigil:pause", "1"],
        vec!["FLUSHALL"],
        vec!["SCAN", "0"],
        vec!["FUNCTION", "FLUSH"],
        vec![
            "FCALL",
            "vigil_request_append",
            "1",
            "vigil:requests",
            "envelope",
            "{}",
        ],
    ];
    for cmd in &executor_denied {
        let said = as_executor(cmd);
        checks.check(
            format!("redis: executor refused {}", cmd.join(" ")),
            said.contains("NOPERM"),
            said.trim(),
        );
    }
    // The append functions (loaded by the executor) cap sizes and choose the id themselves.
    let big = "x".repeat(vigil_protocol::names::MAX_REQUEST_ENTRY_BYTES + 1);
    let said = as_watchdog(&[
        "FCALL",
        "vigil_request_append",
        "1",
        "vigil:requests",
        "envelope",
        &big,
    ]);
    checks.check(
        "redis: the request append function refuses an entry over the cap",
        said.contains("over the cap"),
        said.trim(),
    );
    let big = "x".repeat(vigil_protocol::names::MAX_AUDIT_ENTRY_BYTES + 1);
    let said = as_executor(&[
        "FCALL",
        "vigil_audit_append",
        "1",
        "vigil:audit",
        "record",
        &big,
    ]);
    checks.check(
        "redis: the audit append function refuses an entry over the cap",
        said.contains("over the cap"),
        said.trim(),
    );
    let said = redis_cli(&redis, None, &["PING"]);
    checks.check(
        "redis: unauthenticated PING refused",
        said.contains("NOAUTH") && !said.contains("PONG"),
        said.trim(),
    );
    let said = redis_cli(&redis, Some(("default", "")), &["GET", "vigil:pause"]);
    checks.check(
        "redis: the default user is refused",
        (said.contains("WRONGPASS") || said.contains("NOAUTH")) && !said.contains("(nil)"),
        said.trim(),
    );

    // --- end to end: restarted, alerted, audited ---------------------------------------------
    let executor = id_of("executor");
    let fake_telegram = stack.container("fake-telegram");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut alerted, mut restarted, mut audited) = (false, false, false);
    let app_name = inspect(&app)["Name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let audit_path = format!(
        "/proc/{}/root{AUDIT_FILE}",
        inspect(&executor)["State"]["Pid"].as_u64().unwrap_or(0)
    );
    let mut telegram_log = String::new();
    let mut audit_log = String::new();
    while Instant::now() < deadline && !(alerted && restarted && audited) {
        telegram_log = text(&exec(&fake_telegram, &["cat", "/tmp/telegram.log"]));
        let wanted_path = format!("/bot{TELEGRAM_TOKEN}/sendmessage");
        // The fake logs each request's line and then its (multi-line) body: judge per request.
        alerted = telegram_log
            .split("\nPOST ")
            .chain(telegram_log.split("\nGET "))
            .any(|req| {
                req.lines()
                    .next()
                    .is_some_and(|l| l.to_lowercase().contains(&wanted_path))
                    && req.contains("ALERT")
                    && req.contains("container_unhealthy")
                    && req.contains(&app_name)
            });
        let restart_events = stack
            .restarts
            .matching_lines(|l| l.starts_with(&format!("{app_name} ")))
            .join("\n");
        restarted = !restart_events.is_empty();
        audit_log = std::fs::read_to_string(&audit_path).unwrap_or_default();
        audited = audit_log.lines().any(|l| {
            l.contains(&app_name) && l.contains("\"restart\"") && l.contains("\"executed\"")
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    checks.check(
        "e2e: the alert reached the fake Telegram",
        alerted,
        format!("telegram log:\n{telegram_log}"),
    );
    checks.check(
        "e2e: the unhealthy app was restarted",
        restarted,
        format!(
            "no restart event for {app_name}; restart events of the project: {:?}",
            stack.restarts.matching_lines(|_| true)
        ),
    );
    checks.check(
        "e2e: the restart is in the executor's audit log",
        audited,
        format!("audit log:\n{audit_log}"),
    );
    let verify = exec(
        &executor,
        &[
            "/usr/local/bin/vigil-executor",
            "audit",
            "verify",
            "--file",
            AUDIT_FILE,
        ],
    );
    checks.check(
        "e2e: audit verify passes",
        verify.status.success() && !audit_log.is_empty(),
        text(&verify),
    );

    // --- teardown ------------------------------------------------------------------------------
    let down = stack.down();
    checks.check(
        "teardown: down -v succeeds",
        down.status.success(),
        text(&down),
    );
    let label = format!("label=com.docker.compose.project={}", stack.project);
    for (what, args) in [
        ("container", vec!["ps", "-aq", "--filter", label.as_str()]),
        (
            "network",
            vec!["network", "ls", "-q", "--filter", label.as_str()],
        ),
        (
            "volume",
            vec!["volume", "ls", "-q", "--filter", label.as_str()],
        ),
    ] {
        let left = docker(&args);
        checks.check(format!("teardown: no {what} left"), left.is_empty(), &left);
    }
    let by_name = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_", stack.project),
    ]);
    checks.check(
        "teardown: no volume named after the project",
        by_name.is_empty(),
        &by_name,
    );
    checks.finish();
}
