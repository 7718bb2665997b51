//! The read-only gate (`vigil-gate`) against the real engine, on a temporary unix socket: what
//! it lets through works, `Config.Env` never comes back, everything else is 403/405 and never
//! reaches the engine, and `/events` streams without buffering.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_tests::docker::{Container, RUN_LABEL, TestImage, docker, require_engine};
use vigil_tests::process::ChildProcess;

const SECRET: &str = "gate-test-secret-c0ffee";

struct Gate {
    process: ChildProcess,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gate {
    fn start() -> Gate {
        require_engine();
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("gate.sock");
        let listen = format!("unix://{}", socket.display());
        let process = ChildProcess::spawn_bin(
            "vigil-gate",
            "vigil-gate",
            &["serve", "--listen", &listen],
            &[("GATE_LOG_LEVEL", "debug")],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the gate did not create {} within 20 s:\n{}",
                socket.display(),
                process.transcript()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Gate {
            process,
            socket,
            _dir: dir,
        }
    }

    /// One HTTP/1.0 request with the path sent byte for byte as given.
    fn request(&self, method: &str, raw_path: &str) -> (u16, Vec<u8>) {
        request(&self.socket, method, raw_path)
    }

    fn get_json(&self, raw_path: &str) -> Value {
        let (status, body) = self.request("GET", raw_path);
        assert_eq!(
            status,
            200,
            "GET {raw_path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("GET {raw_path}: not JSON ({e}): {body:?}"))
    }
}

fn request(socket: &Path, method: &str, raw_path: &str) -> (u16, Vec<u8>) {
    let mut stream = UnixStream::connect(socket).expect("connect to the gate");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let req = format!("{method} {raw_path} HTTP/1.0\r\nHost: gate\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..at]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, answer[at + 4..].to_vec())
}

fn secret_container() -> vigil_tests::docker::RunningContainer {
    Container::new()
        .image(TestImage::ensure())
        .name_hint("gate")
        .env("SECRET", SECRET)
        .command(&["sleep", "600"])
        .start()
}

#[test]
fn allowed_reads_work_and_never_carry_config_env() {
    let gate = Gate::start();
    let app = secret_container();
    // The engine itself does hand out the secret: what the gate removes is really there.
    let raw = docker(&["inspect", "--format", "{{json .Config.Env}}", app.id()]);
    assert!(
        raw.contains(SECRET),
        "docker inspect should show the env: {raw}"
    );

    let (status, body) = gate.request("GET", "/_ping");
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    let (status, _) = gate.request("HEAD", "/_ping");
    assert_eq!(status, 200);
    let version = gate.get_json("/version");
    assert!(version["ApiVersion"].is_string(), "{version}");

    for path in [
        format!("/containers/{}/json", app.id()),
        format!("/v1.41/containers/{}/json", app.id()),
        format!("/containers/{}/json", app.name()),
    ] {
        let inspect = gate.get_json(&path);
        assert_eq!(inspect["Id"], app.id(), "{path}");
        assert!(inspect["Config"].is_object(), "{path}: {inspect}");
        assert!(inspect["Config"].get("Env").is_none(), "{path}: {inspect}");
        assert_eq!(inspect["Config"]["Image"], TestImage::NAME, "{path}");
        assert!(
            !inspect.to_string().contains(SECRET),
            "{path} leaks the secret"
        );
    }

    let filters = format!("%7B%22id%22%3A%5B%22{}%22%5D%7D", app.id());
    let list = gate.get_json(&format!("/v1.41/containers/json?all=1&filters={filters}"));
    let entries = list.as_array().expect("a list");
    assert_eq!(entries.len(), 1, "the id filter passed through: {list}");
    assert_eq!(entries[0]["Id"], app.id());
    assert!(!list.to_string().contains(SECRET));

    let stats = gate.get_json(&format!(
        "/containers/{}/stats?stream=false&one-shot=true",
        app.id()
    ));
    assert!(stats["memory_stats"].is_object(), "{stats}");

    // A missing container is the engine's 404, passed through.
    let (status, _) = gate.request("GET", "/containers/vigil-no-such-container/json");
    assert_eq!(status, 404);
}

#[test]
fn everything_else_is_refused_and_never_reaches_the_engine() {
    let gate = Gate::start();
    let app = secret_container();
    let id = app.id().to_string();
    let started_at = || docker(&["inspect", "--format", "{{.State.StartedAt}}", &id]);
    let before = started_at();

    let cases: Vec<(&str, String, u16)> = vec![
        ("POST", format!("/containers/{id}/restart"), 405),
        ("POST", format!("/v1.41/containers/{id}/stop"), 405),
        ("POST", format!("/containers/{id}/kill"), 405),
        ("DELETE", format!("/containers/{id}"), 405),
        ("DELETE", format!("/v1.41/containers/{id}?force=1"), 405),
        ("DELETE", "/images/busybox".into(), 405),
        ("PUT", format!("/containers/{id}/archive?path=/tmp"), 405),
        ("PATCH", "/containers/json".into(), 405),
        ("POST", format!("/containers/{id}/json"), 405),
        (
            "GET",
            format!("/containers/{id}/archive?path=/etc/passwd"),
            403,
        ),
        (
            "HEAD",
            format!("/containers/{id}/archive?path=/etc/passwd"),
            403,
        ),
        ("GET", format!("/containers/{id}/export"), 403),
        (
            "GET",
            format!("/containers/{id}/logs?stdout=1&stderr=1"),
            403,
        ),
        ("GET", format!("/containers/{id}/attach/ws?stream=1"), 403),
        ("GET", format!("/containers/{id}/top"), 403),
        ("GET", "/images/vigil-test%2Fbusybox/get".into(), 403),
        ("GET", "/images/get?names=busybox".into(), 403),
        ("GET", "/images/json".into(), 403),
        ("GET", format!("/exec/{id}/json"), 403),
        ("GET", "/info".into(), 403),
        ("GET", "/volumes".into(), 403),
        ("GET", "/containers/x%2F..%2F..%2Fimages/json".into(), 403),
        ("GET", format!("/containers/{id}%2Farchive/json"), 403),
        ("GET", "/containers/%2e%2e/images/json".into(), 403),
        ("GET", "/containers/%2E%2E/%2E%2E/info".into(), 403),
        ("GET", format!("/containers/{id}/../../images/json"), 403),
        ("GET", format!("/containers/{id}/json/../archive"), 403),
        ("GET", "/v1.41/../info".into(), 403),
        ("GET", "//containers/json".into(), 403),
        ("GET", "/containers/json/".into(), 403),
        ("GET", format!("/containers/{id}/json/"), 403),
        ("GET", "/containers/x%252F..%252Farchive/json".into(), 403),
    ];
    let mut failures = Vec::new();
    for (method, path, want) in &cases {
        let (status, body) = gate.request(method, path);
        if status != *want {
            failures.push(format!(
                "{method} {path}: {status} (want {want}): {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "gate answers:\n{}",
        failures.join("\n")
    );

    // Nothing reached the engine: the container was neither restarted, stopped nor removed.
    assert_eq!(started_at(), before, "the container was restarted");
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Status}}", &id]),
        "running"
    );
    // Every denial is logged with its method, path and rule.
    let denials = gate.process.wait_for_lines(
        cases.len(),
        |l| l.contains("Gate denied a request"),
        Duration::from_secs(5),
    );
    assert!(denials.is_some(), "{}", gate.process.transcript());
    let transcript = gate.process.transcript();
    assert!(transcript.contains("gate.rule=method"), "{transcript}");
    assert!(transcript.contains("gate.rule=not_allowlisted"));
    assert!(transcript.contains("gate.rule=encoded_slash"));
    assert!(transcript.contains("gate.rule=dot_segment"));
    assert!(transcript.contains("http.method=DELETE"));
}

#[test]
fn events_stream_through_promptly() {
    let gate = Gate::start();
    let mut stream = UnixStream::connect(&gate.socket).expect("connect to the gate");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let label = format!("{RUN_LABEL}=gate-events-{}", std::process::id());
    let filters = format!(
        "%7B%22label%22%3A%5B%22{}%22%5D%7D",
        label.replace('=', "%3D")
    );
    let req = format!("GET /v1.41/events?filters={filters} HTTP/1.0\r\nHost: gate\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    assert!(status_line.contains(" 200 "), "{status_line}");
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        if header.trim().is_empty() {
            break;
        }
    }
    // The headers came before any event: the stream is not buffered to its end.
    let (key, value) = label.split_once('=').expect("label");
    let started = Instant::now();
    let app = Container::new()
        .image(TestImage::ensure())
        .name_hint("gate-events")
        .label(key, value)
        .command(&["sleep", "600"])
        .start();
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("an event within 15 s through the gate");
    let latency = started.elapsed();
    let event: Value = serde_json::from_str(line.trim()).expect("event JSON");
    assert_eq!(event["Type"], "container", "{event}");
    assert_eq!(event["Actor"]["ID"], app.id(), "{event}");
    assert!(
        latency < Duration::from_secs(10),
        "first event took {latency:?}"
    );
}

#[test]
fn secrets_in_command_arguments_labels_and_exec_never_pass() {
    let gate = Gate::start();
    let mut stream = UnixStream::connect(&gate.socket).expect("connect to the gate");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 1;
    let req = format!("GET /events?since={since} HTTP/1.0\r\nHost: gate\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    let app = Container::new()
        .image(TestImage::ensure())
        .name_hint("gate-projection")
        .label("thirdparty.auth", SECRET)
        .label(labels::REMEDIATE, "true")
        .command(&["sh", "-c", &format!("echo {SECRET} >/dev/null; sleep 600")])
        .start();
    // The engine does hand these out: the command, the arguments, the label.
    let raw = docker(&["inspect", app.id()]);
    assert!(raw.contains(SECRET), "docker inspect shows the secret");
    docker(&["exec", app.id(), "echo", SECRET]);

    let inspect = gate.get_json(&format!("/containers/{}/json", app.id()));
    assert!(!inspect.to_string().contains(SECRET), "inspect: {inspect}");
    assert_eq!(inspect["Config"]["Labels"][labels::REMEDIATE], "true");
    let list = gate.get_json("/containers/json?all=1");
    assert!(!list.to_string().contains(SECRET), "list leaks the secret");

    // Read the event stream until the exec has surely been reported (a later marker event).
    let marker = Container::new()
        .image(TestImage::ensure())
        .name_hint("gate-marker")
        .command(&["sleep", "600"])
        .start();
    let mut reader = BufReader::new(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains(marker.id()) && line.contains("\"start\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no marker start event: {seen}");
    }
    assert!(seen.contains(app.id()), "the app's own events pass: {seen}");
    assert!(!seen.contains(SECRET), "events leak the secret: {seen}");
    assert!(!seen.contains("exec_"), "exec events pass: {seen}");
}
