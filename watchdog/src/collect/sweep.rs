//! The sweep: the repair path. Every interval (the first at once) it lists all containers in
//! scope, inspects each and takes a one-shot stats sample of each running one, with at most
//! `concurrency` engine requests in flight, and sends the result as one [`Observation::Sweep`].
//!
//! A container that vanishes between list and inspect (404) is left out; any other inspect
//! failure fails the whole sweep, because a sweep missing containers would read as containers
//! gone. A failed stats read only loses that container's sample. Each sweep runs under a
//! deadline so a stalled engine cannot wedge the source; a failed or late sweep reports the
//! source down (once per outage) and its recovery once it works again.

use super::{Observation, SourceHealth, SourceId, Sweep, emit};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use vigil_shared::docker::{ContainerDetails, DockerClient, DockerError, RunState, StatsSample};
use vigil_shared::time::Timestamp;

/// Longest a sweep may take, whatever the interval.
pub const MAX_DEADLINE: Duration = Duration::from_secs(10);

enum Job {
    Inspect(String),
    Stats(String),
}

enum Outcome {
    Details(Box<ContainerDetails>),
    Stats(String, StatsSample),
    Skipped,
}

/// One sweep. `at` is taken before the list call, so every state in the result is at least as
/// new as `at`. Containers come back sorted by name.
pub async fn sweep_once(
    client: &DockerClient,
    label: Option<&str>,
    concurrency: usize,
) -> Result<Sweep, DockerError> {
    let at = Timestamp::now();
    let summaries = client.list_containers(true, label).await?;
    let mut jobs = Vec::with_capacity(summaries.len() * 2);
    for s in &summaries {
        jobs.push(Job::Inspect(s.container.id.clone()));
        if s.state == RunState::Running {
            jobs.push(Job::Stats(s.container.id.clone()));
        }
    }
    let mut outcomes = futures_util::stream::iter(jobs)
        .map(|job| run_job(client, job))
        .buffer_unordered(concurrency.max(1));
    let mut containers = Vec::with_capacity(summaries.len());
    let mut stats = BTreeMap::new();
    while let Some(outcome) = outcomes.next().await {
        match outcome? {
            Outcome::Details(d) => {
                vigil_shared::labels::report_unclear(&d.container.name, &d.labels);
                containers.push(*d)
            }
            Outcome::Stats(id, sample) => {
                stats.insert(id, sample);
            }
            Outcome::Skipped => {}
        }
    }
    containers.sort_by(|a, b| a.container.name.cmp(&b.container.name));
    Ok(Sweep {
        at,
        containers,
        stats,
    })
}

async fn run_job(client: &DockerClient, job: Job) -> Result<Outcome, DockerError> {
    match job {
        Job::Inspect(id) => match client.inspect(&id).await {
            Ok(d) => Ok(Outcome::Details(Box::new(d))),
            Err(e) if e.is_not_found() => {
                tracing::debug!(container.id = %id, "Container vanished before inspect");
                Ok(Outcome::Skipped)
            }
            Err(e) => Err(e),
        },
        Job::Stats(id) => match client.stats_once(&id).await {
            Ok(sample) => Ok(Outcome::Stats(id, sample)),
            Err(e) => {
                if e.is_not_found() {
                    tracing::debug!(container.id = %id, "Container vanished before stats");
                } else {
                    tracing::debug!(container.id = %id, error = %e, "Stats unavailable; sample skipped");
                }
                Ok(Outcome::Skipped)
            }
        },
    }
}

/// How long one sweep may take: the interval, at most [`MAX_DEADLINE`], at least one second.
pub fn deadline_for(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), MAX_DEADLINE)
}

/// Sweeps every `interval` (first at once) until `cancel`.
pub async fn run(
    client: DockerClient,
    label: Option<String>,
    interval: Duration,
    concurrency: usize,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut health = SourceHealth::new(SourceId::DockerSweep);
    let deadline = deadline_for(interval);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(deadline, sweep_once(&client, label.as_deref(), concurrency)) => r,
        };
        let observations = match result {
            Ok(Ok(sweep)) => {
                tracing::debug!(
                    sweep.containers = sweep.containers.len(),
                    sweep.stats = sweep.stats.len(),
                    "Sweep done"
                );
                let recovered = health.recovered();
                if recovered.is_some() {
                    tracing::info!(source = SourceId::DockerSweep.as_str(), "Sweep works again");
                }
                [recovered, Some(Observation::Sweep(sweep))]
            }
            Ok(Err(e)) => [fail(&mut health, e.to_string()), None],
            Err(_) => [
                fail(
                    &mut health,
                    format!("sweep timed out after {}s", deadline.as_secs()),
                ),
                None,
            ],
        };
        for o in observations.into_iter().flatten() {
            if !emit(&tx, &cancel, o).await {
                return;
            }
        }
    }
}

fn fail(health: &mut SourceHealth, detail: String) -> Option<Observation> {
    let o = health.failed(detail.clone());
    if o.is_some() {
        tracing::warn!(source = SourceId::DockerSweep.as_str(), error = %detail, "Sweep failed");
    } else {
        tracing::debug!(error = %detail, "Sweep still failing");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_interval_within_bounds() {
        assert_eq!(deadline_for(Duration::from_secs(15)), MAX_DEADLINE);
        assert_eq!(deadline_for(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(
            deadline_for(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
    }

    type Handler = dyn Fn(&str) -> Option<(u16, String)> + Send + Sync;

    /// A fake engine over TCP answering each request with `handler(path)`; `None` stalls.
    /// `/version` always says 1.41.
    async fn fake_engine(handler: std::sync::Arc<Handler>) -> DockerClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let answer = if path == "/version" {
                        Some((
                            200,
                            r#"{"Version":"x","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}"#
                                .to_owned(),
                        ))
                    } else {
                        handler(&path)
                    };
                    let Some((status, body)) = answer else {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        DockerClient::new(&format!("tcp://{addr}"), Duration::from_secs(5)).unwrap()
    }

    const LIST: &str = r#"[{"Id":"aaa","Names":["/web-1"],"Image":"img","State":"running","Labels":{},"Created":1},{"Id":"bbb","Names":["/gone-1"],"Image":"img","State":"running","Labels":{},"Created":1},{"Id":"ccc","Names":["/done-1"],"Image":"img","State":"exited","Labels":{},"Created":1}]"#;
    const INSPECT_AAA: &str = r#"{"Id":"aaa","Name":"/web-1","State":{"Status":"running","ExitCode":0},"HostConfig":{"Memory":0},"Config":{"Image":"img","Labels":{}}}"#;
    const INSPECT_CCC: &str = r#"{"Id":"ccc","Name":"/done-1","State":{"Status":"exited","ExitCode":3},"HostConfig":{"Memory":0},"Config":{"Image":"img","Labels":{}}}"#;
    const STATS: &str = r#"{"read":"2026-11-23T22:30:47Z","cpu_stats":{"cpu_usage":{"total_usage":5000},"system_cpu_usage":900000,"online_cpus":4},"memory_stats":{"usage":10000,"stats":{"inactive_file":3000},"limit":67108864}}"#;

    fn engine_answer(path: &str) -> Option<(u16, String)> {
        let gone = (404, r#"{"message":"No such container"}"#.to_owned());
        Some(match path {
            p if p.starts_with("/v1.41/containers/json") => (200, LIST.to_owned()),
            "/v1.41/containers/aaa/json" => (200, INSPECT_AAA.to_owned()),
            "/v1.41/containers/ccc/json" => (200, INSPECT_CCC.to_owned()),
            p if p.starts_with("/v1.41/containers/aaa/stats") => (200, STATS.to_owned()),
            _ => gone,
        })
    }

    #[tokio::test]
    async fn vanished_containers_are_skipped_and_only_running_ones_get_stats() {
        let client = fake_engine(std::sync::Arc::new(engine_answer)).await;
        let sweep = sweep_once(&client, None, 2).await.unwrap();
        let names: Vec<_> = sweep
            .containers
            .iter()
            .map(|c| c.container.name.as_str())
            .collect();
        assert_eq!(names, ["done-1", "web-1"]);
        assert_eq!(sweep.stats.keys().collect::<Vec<_>>(), ["aaa"]);
        assert_eq!(sweep.stats["aaa"].working_set(), 7000);
    }

    #[tokio::test]
    async fn an_inspect_error_other_than_404_fails_the_sweep() {
        let client = fake_engine(std::sync::Arc::new(|path: &str| {
            if path == "/v1.41/containers/ccc/json" {
                Some((500, r#"{"message":"boom"}"#.to_owned()))
            } else {
                engine_answer(path)
            }
        }))
        .await;
        let err = sweep_once(&client, None, 2).await.unwrap_err();
        assert!(
            matches!(err, DockerError::Status { status: 500, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn failing_list_is_reported_once_then_recovers() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let client = fake_engine(std::sync::Arc::new(move |path: &str| {
            if path.starts_with("/v1.41/containers/json")
                && counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3
            {
                return Some((500, r#"{"message":"engine sick"}"#.to_owned()));
            }
            engine_answer(path)
        }))
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            client,
            None,
            Duration::from_millis(30),
            4,
            tx,
            cancel.clone(),
        ));
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let o = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            seen.push(o);
        }
        match &seen[0] {
            Observation::Source {
                source: SourceId::DockerSweep,
                ok: false,
                detail,
                ..
            } => {
                assert!(detail.contains("engine sick"), "{detail}")
            }
            other => panic!("expected the failure first, got {other:?}"),
        }
        assert!(
            matches!(
                seen[1],
                Observation::Source {
                    source: SourceId::DockerSweep,
                    ok: true,
                    ..
                }
            ),
            "one failure report for three failed sweeps, then recovery: {seen:?}"
        );
        assert!(
            matches!(&seen[2], Observation::Sweep(s) if s.containers.len() == 2),
            "{seen:?}"
        );
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 4);
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stalled_engine_times_the_sweep_out() {
        let client = fake_engine(std::sync::Arc::new(|path: &str| {
            if path.starts_with("/v1.41/containers/aaa/json") {
                None
            } else {
                engine_answer(path)
            }
        }))
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cancel = CancellationToken::new();
        let started = std::time::Instant::now();
        let task = tokio::spawn(run(
            client,
            None,
            Duration::from_millis(100),
            4,
            tx,
            cancel.clone(),
        ));
        let o = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        match o {
            Observation::Source {
                source: SourceId::DockerSweep,
                ok: false,
                detail,
                ..
            } => {
                assert_eq!(detail, "sweep timed out after 1s");
            }
            other => panic!("expected a timeout report, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
