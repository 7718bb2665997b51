//! The watchdog's Docker sources against the machine's real engine: a sweep finds a labelled
//! running container and a stats round samples it, a restart between two sweeps is inspected
//! again, and the events source forwards its `die` after a kill.
//! No engine is a failure, not a skip.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_docker::{DockerClient, EventAction, RunState};
use vigil_tests::docker::{Container, RUN_LABEL, RunningContainer, TEST_LABEL};
use vigil_watchdog::collect::{Observation, SourceId, events, stats, sweep};

/// A sleeping test container (labelled `vigil.test=1`, removed on drop) with a unique
/// `vigil.test.run` label; returns the container and the `key=value` filter selecting it.
fn start_sleeper() -> (RunningContainer, String) {
    let run = uuid::Uuid::new_v4().to_string();
    let container = Container::new()
        .name_hint("collect")
        .label(RUN_LABEL, &run)
        .command(&["sleep", "60"])
        .start();
    (container, format!("{RUN_LABEL}={run}"))
}

async fn client() -> DockerClient {
    vigil_tests::docker::real_client().await
}

#[tokio::test]
async fn sweep_once_finds_a_labelled_running_container_and_the_stats_round_samples_it() {
    let client = client().await;
    let (container, label) = start_sleeper();

    let sweep = sweep::sweep_once(&client, Some(&label), 4)
        .await
        .expect("sweep");
    assert_eq!(
        sweep.containers.len(),
        1,
        "only the labelled container: {:?}",
        sweep.containers
    );
    let details = &sweep.containers[0];
    assert_eq!(details.container.id, container.id());
    assert_eq!(details.state, RunState::Running);
    assert_eq!(
        details.labels.get(TEST_LABEL).map(String::as_str),
        Some("1")
    );
    // Stats are no longer the sweep's: the stats task's round reads them.
    let ids = vec![container.id().to_string()];
    let samples = stats::engine_round(&client, &ids, 4).await;
    let sample = samples
        .get(container.id())
        .expect("a stats sample for the running container");
    assert!(sample.memory_usage > 0, "{sample:?}");
    assert!(sample.cpu_total > 0, "{sample:?}");

    // Killed, it is still swept (all=true), and a round has no sample for it.
    container.kill();
    let sweep = sweep::sweep_once(&client, Some(&label), 4)
        .await
        .expect("sweep after kill");
    assert_eq!(sweep.containers.len(), 1);
    assert_eq!(sweep.containers[0].state, RunState::Exited);
    assert_eq!(sweep.containers[0].exit_code, 137);
    let samples = stats::engine_round(&client, &ids, 4).await;
    assert!(samples.is_empty(), "{samples:?}");
    // Nor do its cgroup files (the engine removed them), and the engine has nothing either.
    let mut sampler = stats::Sampler::new(client.clone(), 4)
        .with_cgroups(stats::CgroupSource::new("/sys/fs/cgroup", "/proc"));
    let batch = sampler.round(&ids).await;
    assert!(batch.samples.is_empty(), "{:?}", batch.samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_by_the_restart_policy_between_two_sweeps_is_inspected_again() {
    let client = client().await;
    let run = uuid::Uuid::new_v4().to_string();
    let label = format!("{RUN_LABEL}={run}");
    // Runs 4 s, fails, and the engine's restart policy starts it again.
    let container = Container::new()
        .name_hint("collect-restart")
        .label(RUN_LABEL, &run)
        .restart("always")
        .shell("sleep 4; exit 1")
        .start();
    let mut sweeper = sweep::Sweeper::new(client.clone(), Some(label), 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = sweeper.sweep().await.expect("first sweep");
    assert_eq!((first.inspected, first.reused), (1, 0));
    assert_eq!(first.sweep.containers[0].restart_count, 0);
    let second = sweeper.sweep().await.expect("second sweep");
    assert_eq!(
        (second.inspected, second.reused),
        (0, 1),
        "nothing changed: the kept details are reused"
    );
    // Between this sweep and the next the container fails and is started again: running
    // before and after, and only the age in the list's status text tells.
    let seen = tokio::task::block_in_place(|| {
        container.wait_until("restarted by its policy", Duration::from_secs(20), |v| {
            v["RestartCount"].as_u64() == Some(1) && v["State"]["Status"] == "running"
        })
    });
    let third = sweeper.sweep().await.expect("third sweep");
    assert_eq!(
        (third.inspected, third.reused),
        (1, 0),
        "the reset age marks it changed; engine said {}",
        seen["State"]
    );
    let details = &third.sweep.containers[0];
    assert_eq!(details.state, RunState::Running);
    assert_eq!(details.restart_count, 1, "{details:?}");
}

#[tokio::test]
async fn sweep_task_sends_a_sweep_at_once_and_feeds_the_stats_task() {
    let client = client().await;
    let (container, label) = start_sleeper();
    let (tx, mut rx) = mpsc::channel(16);
    let (running_tx, running_rx) = tokio::sync::watch::channel(Vec::new());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sweep::run(
        sweep::Sweeper::new(client.clone(), Some(label), 4),
        Duration::from_secs(60),
        running_tx,
        Default::default(),
        tx.clone(),
        cancel.clone(),
    ));
    let sampler = stats::Sampler::new(client, 4)
        .with_cgroups(stats::CgroupSource::new("/sys/fs/cgroup", "/proc"));
    let stats_task = tokio::spawn(stats::run(sampler, running_rx, tx, cancel.clone()));
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the first sweep runs at once")
        .expect("a sweep");
    match first {
        Observation::Sweep(s) => {
            assert_eq!(s.containers.len(), 1);
            assert_eq!(s.containers[0].container.id, container.id());
        }
        other => panic!("expected a sweep, got {other:?}"),
    }
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a stats round after the sweep")
        .expect("a stats batch");
    match second {
        Observation::Stats(b) => {
            assert!(b.samples.contains_key(container.id()), "{b:?}");
            assert_eq!(
                (b.from_cgroups, b.from_engine),
                (1, 0),
                "this host's cgroup files give it"
            );
        }
        other => panic!("expected stats, got {other:?}"),
    }
    cancel.cancel();
    task.await.expect("the sweep task ends on cancel");
    stats_task.await.expect("the stats task ends on cancel");
}

#[tokio::test]
async fn events_task_forwards_the_die_of_a_killed_container() {
    let client = client().await;
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(events::run(client, tx, cancel.clone()));

    // Give the task a moment to subscribe, then prove it did: our own `start` must arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (container, _label) = start_sleeper();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let obs = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the start event within 10 s of docker run")
            .expect("the events task is running");
        match obs {
            Observation::Event(e)
                if e.container.id == container.id() && e.action == EventAction::Start =>
            {
                assert_eq!(e.labels.get(TEST_LABEL).map(String::as_str), Some("1"));
                break;
            }
            Observation::Source {
                source: SourceId::DockerEvents,
                ok: false,
                detail,
                ..
            } => {
                panic!("event stream failed: {detail}")
            }
            _ => {}
        }
    }
    container.kill();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saw_kill = false;
    let exit = loop {
        let obs = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a die event within 10 s of docker kill")
            .expect("the events task is running");
        match obs {
            Observation::Event(e) if e.container.id == container.id() => match e.action {
                EventAction::Kill { .. } => saw_kill = true,
                EventAction::Die { exit_code } => break exit_code,
                _ => {}
            },
            Observation::Source {
                source: SourceId::DockerEvents,
                ok: false,
                detail,
                ..
            } => {
                panic!("event stream failed: {detail}")
            }
            _ => {}
        }
    };
    assert!(saw_kill, "the kill event precedes the die");
    assert_eq!(exit, Some(137));
    cancel.cancel();
    task.await.expect("the events task ends on cancel");
}
