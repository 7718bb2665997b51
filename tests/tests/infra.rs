//! Tests of the test infrastructure itself: the offline image and container helper on the real
//! engine, the real Redis helper, the child-process helper, and the fake Docker API.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_docker::{Health, RunState};
use vigil_tests::docker::{
    self, Container, Healthcheck, TEST_LABEL, TEST_PID_LABEL, TestImage,
    remove_leftover_test_containers,
};
use vigil_tests::fake_docker::{FakeContainer, FakeDocker, Fault};
use vigil_tests::process::{ChildProcess, workspace_bin};
use vigil_tests::redis_server::{RedisOptions, RedisServer};

// ---------------------------------------------------------------------------------------------
// Real engine

#[test]
fn test_image_runs_echo_ok() {
    let c = Container::new()
        .name_hint("echo")
        .command(&["echo", "ok"])
        .start();
    c.wait_for_status("exited", Duration::from_secs(20));
    assert_eq!(c.exit_code(), 0);
    assert_eq!(c.logs().trim(), "ok");
    let inspect = c.inspect_json();
    assert_eq!(inspect["Config"]["Image"], TestImage::NAME);
    assert_eq!(inspect["Config"]["Labels"][TEST_LABEL], "1");
    assert_eq!(
        inspect["Config"]["Labels"][TEST_PID_LABEL],
        std::process::id().to_string()
    );
    assert!(c.name().starts_with("vigil-t-"), "{}", c.name());
}

#[test]
fn test_image_has_the_applets_and_users_tests_rely_on() {
    let script = "for a in sh sleep echo cat wget nc ls false true head dd kill ps printf test \
                  mkdir rm date httpd; do command -v $a >/dev/null || echo missing:$a; done; \
                  id -u nobody";
    let c = Container::new().shell(script).user("65534").start();
    c.wait_for_status("exited", Duration::from_secs(20));
    assert_eq!(c.exit_code(), 0, "logs: {}", c.logs());
    assert_eq!(
        c.logs().trim(),
        "65534",
        "every applet present and nobody known"
    );
}

#[test]
fn container_is_removed_on_drop() {
    let c = Container::new()
        .name_hint("drop")
        .command(&["sleep", "300"])
        .start();
    let id = c.id().to_owned();
    assert_eq!(c.status(), "running");
    drop(c);
    let out = docker::docker_output(&["inspect", &id]);
    assert!(
        !out.status.success(),
        "container {id} still exists after drop"
    );
}

#[test]
fn container_builder_sets_health_restart_memory_and_env() {
    let c = Container::new()
        .compose("infra", "web")
        .env("GREETING", "hi")
        .healthcheck(Healthcheck::new("test -f /tmp/ready"))
        .restart("on-failure:2")
        .memory("32m")
        .shell("touch /tmp/ready; exec sleep 300")
        .start();
    c.wait_for_health("healthy", Duration::from_secs(20));
    let inspect = c.inspect_json();
    assert_eq!(inspect["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(
        inspect["HostConfig"]["RestartPolicy"]["MaximumRetryCount"],
        2
    );
    assert_eq!(inspect["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(inspect["HostConfig"]["MemorySwap"], 32 << 20);
    assert_eq!(
        inspect["Config"]["Labels"]["com.docker.compose.project"],
        "infra"
    );
    assert_eq!(
        inspect["Config"]["Labels"]["com.docker.compose.service"],
        "web"
    );
    let env = inspect["Config"]["Env"]
        .as_array()
        .expect("Config.Env is an array");
    assert!(env.iter().any(|e| e == "GREETING=hi"), "{env:?}");
    assert_eq!(inspect["Config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
}

#[test]
fn leftover_containers_of_dead_test_processes_are_removed() {
    let mut gone = Command::new("true").spawn().expect("spawning true");
    let dead_pid = gone.id();
    gone.wait().expect("waiting for true");
    let orphan = Container::new()
        .label(TEST_PID_LABEL, &dead_pid.to_string())
        .command(&["sleep", "300"])
        .start();
    let ours = Container::new().command(&["sleep", "300"]).start();
    assert!(remove_leftover_test_containers() >= 1);
    assert!(
        !docker::docker_output(&["inspect", orphan.id()])
            .status
            .success(),
        "orphan still there"
    );
    assert_eq!(
        ours.status(),
        "running",
        "a live test's container must be left alone"
    );
}

// ---------------------------------------------------------------------------------------------
// Real Redis

#[test]
fn redis_server_answers_ping_and_set_get() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).expect("valid redis url");
    let mut con = client
        .get_connection()
        .expect("connecting to the test redis");
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = redis::cmd("SET")
        .arg("vigil:test")
        .arg("42")
        .query(&mut con)
        .expect("SET");
    let value: String = redis::cmd("GET")
        .arg("vigil:test")
        .query(&mut con)
        .expect("GET");
    assert_eq!(value, "42");
}

#[test]
fn redis_server_honours_an_acl_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("users.acl");
    std::fs::write(
        &acl,
        "user default off\nuser tester on >s3cret ~vigil:* +@all\n",
    )
    .expect("writing the ACL file");
    let server = RedisServer::start_with(RedisOptions {
        aclfile: Some(acl),
        ..Default::default()
    });

    let anonymous = redis::Client::open(server.url()).expect("valid url");
    let refused = anonymous.get_connection().and_then(|mut con| {
        redis::cmd("GET")
            .arg("vigil:x")
            .query::<Option<String>>(&mut con)
    });
    assert!(
        refused.is_err(),
        "the default user is off, so anonymous access must fail"
    );

    let client = redis::Client::open(server.url_for("tester", "s3cret")).expect("valid url");
    let mut con = client.get_connection().expect("connecting as tester");
    let _: () = redis::cmd("SET")
        .arg("vigil:k")
        .arg("v")
        .query(&mut con)
        .expect("SET vigil:k");
    let outside = redis::cmd("SET")
        .arg("other:k")
        .arg("v")
        .query::<()>(&mut con);
    assert!(outside.is_err(), "keys outside ~vigil:* are denied");
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Set in the helper run of [`children_die_with_the_test_process`]: where it writes its child's
/// pid.
const ORPHAN_HELPER_PIDFILE: &str = "VIGIL_TEST_ORPHAN_HELPER_PIDFILE";

/// Whether process `pid` is still running (gone, or dead and not yet reaped, is not).
fn is_running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `<pid> (<comm>) <state> ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// A test process killed mid-run (SIGKILL: no destructor runs) takes the children it started
/// through the harness with it. This test runs itself again as the helper (its own binary, this
/// test only), which starts a long `sleep` through [`ChildProcess`] and reports its pid; then
/// the helper is SIGKILLed and the `sleep` must be gone.
#[test]
fn children_die_with_the_test_process() {
    if let Some(pidfile) = std::env::var_os(ORPHAN_HELPER_PIDFILE) {
        let mut cmd = vigil_tests::process::command("sleep");
        cmd.arg("600");
        let child = ChildProcess::spawn("sleep", cmd);
        std::fs::write(pidfile, child.pid().to_string()).expect("writing the pid file");
        // Until killed.
        std::thread::sleep(Duration::from_secs(600));
        panic!("the helper was not killed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("grandchild.pid");
    let mut cmd = vigil_tests::process::command(std::env::current_exe().expect("own binary"));
    cmd.args([
        "--exact",
        "children_die_with_the_test_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ORPHAN_HELPER_PIDFILE, &pidfile);
    let mut helper = ChildProcess::spawn("helper", cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let grandchild = loop {
        if let Ok(pid) = std::fs::read_to_string(&pidfile)
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the helper wrote no pid; output:\n{}",
            helper.transcript()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(is_running(&grandchild), "the grandchild {grandchild} runs");
    helper.send_signal("KILL");
    helper
        .wait_exit(Duration::from_secs(30))
        .expect("the helper died");
    let gone = vigil_tests::watchdog_proc::poll_until(Duration::from_secs(30), || {
        !is_running(&grandchild)
    });
    if !gone {
        let _ = Command::new("kill").args(["-KILL", &grandchild]).status();
    }
    assert!(
        gone,
        "the grandchild {grandchild} outlived the test process that started it"
    );
}

#[test]
fn child_process_captures_lines_and_stops_on_sigterm() {
    let mut cmd = vigil_tests::process::command("sh");
    cmd.args([
        "-c",
        "trap 'echo bye; exit 0' TERM; echo first; echo second >&2; while :; do sleep 0.1; done",
    ]);
    let mut child = ChildProcess::spawn("sh", cmd);
    child.expect_line("first", |l| l == "first", Duration::from_secs(5));
    child.expect_line(
        "second on stderr",
        |l| l == "second",
        Duration::from_secs(5),
    );
    child.send_sigterm();
    let status = child
        .wait_exit(Duration::from_secs(5))
        .expect("sh exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        child
            .wait_for_line(|l| l == "bye", Duration::from_secs(2))
            .is_some()
    );
    assert!(
        child
            .wait_for_line(|l| l == "never printed", Duration::from_millis(100))
            .is_none()
    );
    assert_eq!(child.lines().len(), 3, "{}", child.transcript());
}

#[test]
fn workspace_binaries_are_found_and_built() {
    use std::os::unix::fs::PermissionsExt;
    let path = workspace_bin("vigil-watchdog", "vigil-watchdog");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        "{} is not executable",
        path.display()
    );
    let started = std::time::Instant::now();
    assert_eq!(workspace_bin("vigil-watchdog", "vigil-watchdog"), path);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the second lookup is cached"
    );
}

// ---------------------------------------------------------------------------------------------
// Fake Docker API

async fn request(socket: &Path, method: Method, path: &str) -> hyper::Response<Incoming> {
    let client: Client<UnixConnector, Full<Bytes>> = Client::unix();
    let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    client.request(req).await.expect("the fake engine answers")
}

async fn get_text(socket: &Path, path: &str) -> (StatusCode, String) {
    let resp = request(socket, Method::GET, path).await;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("reading the body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get_json(socket: &Path, path: &str) -> Value {
    let (status, body) = get_text(socket, path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// Reads the next newline-terminated JSON line of a streaming body.
async fn next_line(body: &mut Incoming, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            return Some(String::from_utf8_lossy(&line).trim().to_owned());
        }
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5 s")?
            .expect("a readable frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn fake_docker_answers_ping_version_list_and_inspect() {
    let fake = FakeDocker::start();
    let sock = fake.socket_path().to_owned();
    let id = fake.add_container(
        FakeContainer::new("shop-web-1")
            .compose("shop", "web")
            .health(Health::Unhealthy)
            .restart_count(4)
            .restart_policy("always")
            .oom_killed(true)
            .env("SECRET", "hunter2"),
    );
    fake.add_container(
        FakeContainer::new("shop-job-1")
            .state(RunState::Exited)
            .exit_code(3),
    );

    let (status, body) = get_text(&sock, "/_ping").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
    let head = request(&sock, Method::HEAD, "/_ping").await;
    assert_eq!(head.headers()["api-version"], "1.41");

    let version = get_json(&sock, "/version").await;
    assert_eq!(version["ApiVersion"], "1.41");
    assert_eq!(version["MinAPIVersion"], "1.12");

    let running = get_json(&sock, "/v1.41/containers/json").await;
    assert_eq!(
        running.as_array().map(Vec::len),
        Some(1),
        "without all=true only running ones"
    );
    let all = get_json(&sock, "/v1.41/containers/json?all=true").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let row = &running[0];
    assert_eq!(row["Id"], id.as_str());
    assert_eq!(row["Names"][0], "/shop-web-1");
    assert_eq!(row["State"], "running");
    assert_eq!(row["Labels"]["com.docker.compose.project"], "shop");
    assert!(
        row["Status"]
            .as_str()
            .is_some_and(|s| s.ends_with("(unhealthy)")),
        "{row}"
    );

    let filtered = get_json(
        &sock,
        "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22com.docker.compose.service%3Dweb%22%5D%7D",
    )
    .await;
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");

    let inspect = get_json(&sock, &format!("/v1.41/containers/{id}/json")).await;
    assert_eq!(inspect["Name"], "/shop-web-1");
    assert_eq!(inspect["State"]["Health"]["Status"], "unhealthy");
    assert_eq!(inspect["State"]["OOMKilled"], true);
    assert_eq!(inspect["RestartCount"], 4);
    assert_eq!(inspect["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert!(
        inspect["Config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "SECRET=hunter2"))
    );
    let by_name = get_json(&sock, "/containers/shop-job-1/json").await;
    assert_eq!(by_name["State"]["Status"], "exited");
    assert_eq!(by_name["State"]["ExitCode"], 3);
    assert!(
        by_name["State"].get("Health").is_none(),
        "no healthcheck, no State.Health"
    );

    let (status, _) = get_text(&sock, "/v1.41/containers/nope/json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get_text(&sock, "/v1.99/_ping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let first = get_json(
        &sock,
        &format!("/v1.41/containers/{id}/stats?stream=false&one-shot=true"),
    )
    .await;
    let second = get_json(
        &sock,
        &format!("/v1.41/containers/{id}/stats?stream=false&one-shot=true"),
    )
    .await;
    let delta = |k: &str| {
        second.pointer(k).and_then(Value::as_u64).unwrap()
            - first.pointer(k).and_then(Value::as_u64).unwrap()
    };
    let cpu = delta("/cpu_stats/cpu_usage/total_usage") as f64
        / delta("/cpu_stats/system_cpu_usage") as f64
        * second["cpu_stats"]["online_cpus"].as_f64().unwrap()
        * 100.0;
    assert!(
        (cpu - 1.0).abs() < 0.01,
        "default fake CPU is 1 %, got {cpu}"
    );
    assert!(
        second["memory_stats"]["stats"]["inactive_file"]
            .as_u64()
            .is_some()
    );
}

#[tokio::test]
async fn fake_docker_streams_pushed_events_and_replays_since() {
    let fake = FakeDocker::start();
    let sock = fake.socket_path().to_owned();
    fake.add_container(
        FakeContainer::new("shop-web-1")
            .compose("shop", "web")
            .exit_code(3),
    );

    let filters = "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22die%22%2C%22health_status%22%5D%7D";
    let resp = request(
        &sock,
        Method::GET,
        &format!("/v1.41/events?filters={filters}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(fake.wait_for_event_streams(1, Duration::from_secs(5)));
    let mut body = resp.into_body();
    let mut buf = Vec::new();

    fake.push_container_event("shop-web-1", "start"); // filtered out
    let die = fake.push_container_event("shop-web-1", "die");
    fake.push_container_event("shop-web-1", "health_status: unhealthy");

    let line = next_line(&mut body, &mut buf).await.expect("an event line");
    let event: Value = serde_json::from_str(&line).expect("event JSON");
    assert_eq!(event["Type"], "container");
    assert_eq!(event["Action"], "die");
    assert_eq!(event["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(event["Actor"]["Attributes"]["name"], "shop-web-1");
    assert_eq!(
        event["Actor"]["Attributes"]["com.docker.compose.project"],
        "shop"
    );
    assert_eq!(event["timeNano"], die["timeNano"]);
    assert!(event["time"].as_i64().is_some());
    let line = next_line(&mut body, &mut buf)
        .await
        .expect("a second event line");
    let health: Value = serde_json::from_str(&line).expect("event JSON");
    assert_eq!(health["Action"], "health_status: unhealthy");

    // A reconnect with since= gets what it missed, as from the engine's buffer.
    let since = die["timeNano"].as_i64().unwrap();
    let since = format!("{}.{:09}", since / 1_000_000_000, since % 1_000_000_000);
    let resp = request(
        &sock,
        Method::GET,
        &format!("/events?since={since}&filters={filters}"),
    )
    .await;
    let mut replayed = resp.into_body();
    let mut buf2 = Vec::new();
    let first: Value =
        serde_json::from_str(&next_line(&mut replayed, &mut buf2).await.unwrap()).unwrap();
    assert_eq!(first["Action"], "die");
    let second: Value =
        serde_json::from_str(&next_line(&mut replayed, &mut buf2).await.unwrap()).unwrap();
    assert_eq!(second["Action"], "health_status: unhealthy");

    // Ending the streams ends the bodies.
    fake.close_event_streams();
    assert!(
        next_line(&mut body, &mut buf).await.is_none(),
        "the stream ends"
    );
    assert!(
        next_line(&mut replayed, &mut buf2).await.is_none(),
        "every stream ends"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.event_streams_open() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.event_streams_open(), 0);
}

#[tokio::test]
async fn fake_docker_faults() {
    let fake = FakeDocker::start();
    let sock = fake.socket_path().to_owned();
    fake.add_container(FakeContainer::new("a"));

    fake.set_fault(Fault::Status500);
    let (status, body) = get_text(&sock, "/_ping").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        serde_json::from_str::<Value>(&body).is_ok_and(|v| v["message"].is_string()),
        "{body}"
    );

    fake.set_fault(Fault::MalformedJson);
    let (status, body) = get_text(&sock, "/v1.41/containers/json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "garbage expected, got {body}"
    );

    fake.set_fault(Fault::Stall);
    let stalled = tokio::time::timeout(Duration::from_millis(500), get_text(&sock, "/_ping")).await;
    assert!(stalled.is_err(), "a stalled engine never answers");

    fake.set_fault(Fault::None);
    let resp = request(&sock, Method::GET, "/events").await;
    assert!(fake.wait_for_event_streams(1, Duration::from_secs(5)));
    fake.set_fault(Fault::CloseEventStream);
    let mut body = resp.into_body();
    assert!(
        next_line(&mut body, &mut Vec::new()).await.is_none(),
        "CloseEventStream ends the stream"
    );
    fake.set_fault(Fault::None);
    let (status, body) = get_text(&sock, "/_ping").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "OK"),
        "healthy again after the fault"
    );
}

#[tokio::test]
async fn fake_docker_logs_every_request_with_its_method() {
    let fake = FakeDocker::start();
    let sock = fake.socket_path().to_owned();
    let id = fake.add_container(FakeContainer::new("victim"));
    get_text(&sock, "/v1.41/containers/json?all=true").await;
    assert!(fake.non_read_requests().is_empty());

    let resp = request(
        &sock,
        Method::POST,
        &format!("/v1.41/containers/{id}/restart"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let log = fake.requests();
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/v1.41/containers/json?all=true");
    let writes = fake.non_read_requests();
    assert_eq!(writes.len(), 1, "{log:?}");
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, format!("/v1.41/containers/{id}/restart"));
}
