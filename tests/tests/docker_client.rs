//! The GET-only Docker client against the machine's real engine.
//!
//! Needs `/var/run/docker.sock` and the offline image `vigil-test/busybox:latest`; fails loudly
//! without them. Containers carry `vigil.test=1` and are removed by a guard even on failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_docker::api::{ApiVersion, MIN_API_VERSION, PINNED_API_VERSION};
use vigil_docker::{
    ContainerEvent, DockerClient, DockerError, EventAction, EventStream, Health, RunState,
};
use vigil_tests::docker::TEST_LABEL;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "vigil-test/busybox:latest";
const SECRET: &str = "vigil-secret-value-4f1c";

/// Removes the container when the test ends, whether it passed or not.
struct ContainerGuard {
    name: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed for the engine tests");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn engine_client() -> DockerClient {
    assert!(
        Path::new(SOCKET).exists(),
        "the Docker socket {SOCKET} is missing: these tests need the real engine"
    );
    DockerClient::new(&format!("unix://{SOCKET}"), Duration::from_secs(10))
        .expect("a valid host string")
}

/// Starts a labelled test container; returns its guard and full id.
fn run_container(prefix: &str, extra: &[&str], cmd: &[&str]) -> (ContainerGuard, String) {
    let name = format!("vigil-test-{prefix}-{}", uuid::Uuid::new_v4().simple());
    let guard = ContainerGuard { name: name.clone() };
    let test_label = format!("{TEST_LABEL}=1");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &test_label,
        "--label",
        "com.docker.compose.project=vigiltest",
        "--label",
        "com.docker.compose.service=probe",
    ];
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    let id = docker(&args);
    (guard, id)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// Reads the stream until `want` matched an event of container `id`, or `within` passed.
async fn wait_for(
    stream: &mut EventStream,
    id: &str,
    within: Duration,
    mut want: impl FnMut(&ContainerEvent) -> bool,
) -> Vec<ContainerEvent> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no matching event within {within:?}; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("the event stream ended; saw {seen:#?}"))
            .expect("a well-formed event from the real engine");
        if item.container.id != id {
            continue;
        }
        let done = want(&item);
        seen.push(item);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_list_inspect_stats_and_events_on_the_real_engine() {
    let client = engine_client();
    client.ping().await.expect("ping the engine");
    let version = client.negotiate().await.expect("negotiate the API version");
    let engine_api = ApiVersion::parse(&version.api_version).expect("engine API version");
    assert!(engine_api >= MIN_API_VERSION, "{version:?}");
    let expected = engine_api.min(PINNED_API_VERSION).to_string();
    assert_eq!(client.api_version().as_deref(), Some(expected.as_str()));
    assert_eq!(
        client.version().await.unwrap().api_version,
        version.api_version
    );

    let since = now_nanos() - 2_000_000_000;
    let (guard, id) = run_container(
        "client",
        &["-e", &format!("SECRET={SECRET}")],
        &["sleep", "300"],
    );
    let name = guard.name.clone();

    // List, filtered by label: our container is there, and only labelled containers are.
    let rows = client
        .list_containers(false, Some(&format!("{TEST_LABEL}=1")))
        .await
        .expect("list containers");
    let row = rows
        .iter()
        .find(|r| r.container.id == id)
        .unwrap_or_else(|| panic!("{name} missing from {rows:#?}"));
    assert_eq!(row.container.name, name);
    assert_eq!(row.state, RunState::Running);
    assert_eq!(row.image, IMAGE);
    assert_eq!(row.container.project.as_deref(), Some("vigiltest"));
    assert_eq!(row.container.service.as_deref(), Some("probe"));
    assert!(
        rows.iter()
            .all(|r| r.labels.get(TEST_LABEL).map(String::as_str) == Some("1"))
    );
    let other = client
        .list_containers(true, Some(&format!("{TEST_LABEL}=no-such-value")))
        .await
        .unwrap();
    assert!(other.iter().all(|r| r.container.id != id));

    // Inspect, by id and by name: state and labels, and no environment anywhere.
    let details = client.inspect(&id).await.expect("inspect by id");
    assert_eq!(
        details,
        client.inspect(&name).await.expect("inspect by name")
    );
    assert_eq!(details.container.name, name);
    assert_eq!(details.state, RunState::Running);
    assert_eq!(details.health, Health::None);
    assert_eq!(
        details.labels.get(TEST_LABEL).map(String::as_str),
        Some("1")
    );
    assert!(details.started_at.is_some());
    assert_eq!(details.finished_at, None);
    assert_eq!(details.memory_limit, 0);
    assert!(
        !format!("{details:?}").contains(SECRET),
        "the container's env leaked into {details:?}"
    );

    // One-shot stats.
    let stats = client.stats_once(&id).await.expect("one-shot stats");
    assert!(stats.memory_usage > 0, "{stats:?}");
    assert!(stats.memory_limit > 0, "{stats:?}");
    assert!(stats.online_cpus >= 1, "{stats:?}");
    assert!(stats.read_at.as_millis() > 0, "{stats:?}");

    // Bad ids never reach the engine; unknown ones are the engine's 404.
    assert!(matches!(
        client.inspect("../images/json").await,
        Err(DockerError::InvalidId(_))
    ));
    let missing = client
        .inspect("vigil-test-no-such-container")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");

    // Events: kill the container and see `kill` then `die` with its name and exit code.
    let mut stream = client
        .events(Some(since))
        .await
        .expect("subscribe to events");
    docker(&["kill", &name]);
    let seen = wait_for(&mut stream, &id, Duration::from_secs(20), |e| {
        matches!(e.action, EventAction::Die { .. })
    })
    .await;
    let kill = seen
        .iter()
        .find(|e| matches!(e.action, EventAction::Kill { .. }))
        .unwrap_or_else(|| panic!("no kill event in {seen:#?}"));
    assert_eq!(kill.action, EventAction::Kill { signal: Some(9) });
    assert_eq!(kill.container.name, name);
    assert_eq!(kill.container.project.as_deref(), Some("vigiltest"));
    let die = seen.last().expect("the die event");
    assert_eq!(
        die.action,
        EventAction::Die {
            exit_code: Some(137)
        }
    );
    assert_eq!(die.container.name, name);
    assert!(die.time_nano >= kill.time_nano);
    assert!(stream.last_time_nano() >= Some(die.time_nano));
    assert!(
        seen.iter().any(|e| e.action == EventAction::Start),
        "since= replays the start: {seen:#?}"
    );

    // A reconnect with since= replays from that point.
    let mut replay = client
        .events(Some(kill.time_nano))
        .await
        .expect("resubscribe");
    let again = wait_for(&mut replay, &id, Duration::from_secs(20), |e| {
        matches!(e.action, EventAction::Die { .. })
    })
    .await;
    assert_eq!(again.last().map(|e| e.time_nano), Some(die.time_nano));

    let exited = client.inspect(&id).await.unwrap();
    assert_eq!(exited.state, RunState::Exited);
    assert_eq!(exited.exit_code, 137);
    assert!(exited.finished_at.is_some());
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_healthcheck_is_reported_as_unhealthy() {
    let client = engine_client();
    let since = now_nanos() - 2_000_000_000;
    let (_guard, id) = run_container(
        "health",
        &[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sleep", "300"],
    );
    let mut stream = client
        .events(Some(since))
        .await
        .expect("subscribe to events");
    wait_for(&mut stream, &id, Duration::from_secs(30), |e| {
        e.action == EventAction::HealthStatus(Health::Unhealthy)
    })
    .await;
    let details = client.inspect(&id).await.unwrap();
    assert_eq!(details.health, Health::Unhealthy);
    assert!(details.health_failing_streak >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_sized_burst_reuses_connections() {
    let client = engine_client();
    let (_guard, id) = run_container("burst", &[], &["sleep", "300"]);
    client.negotiate().await.unwrap();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, id) = (client.clone(), id.clone());
        tasks.spawn(async move {
            for _ in 0..25 {
                client.inspect(&id).await.expect("inspect in a burst");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("burst task");
    }
    let elapsed = started.elapsed();
    eprintln!("400 inspects in {elapsed:?}");
    // Generous for a shared 2-core machine; the benchmark measures the real figure.
    assert!(
        elapsed < Duration::from_secs(5),
        "400 inspects took {elapsed:?}"
    );
}
