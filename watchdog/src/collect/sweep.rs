//! The sweep: the repair path. Every interval (the first at once) it lists all containers in
//! scope and inspects the ones whose list entry changed since the last sweep, with at most
//! `concurrency` inspects in flight, and sends the result as one [`Observation::Sweep`] that
//! holds every container: the fresh details of those inspected, the kept details of the rest.
//!
//! # What counts as changed
//! A container is inspected when it is new, when its list entry shows another state, labels or
//! status text (health, exit code, paused), when the age in its status text was reset (it
//! started or exited again, e.g. restarted by the engine's own restart policy between two
//! sweeps, which also raises its `RestartCount`: see [`super::status`]), and in any case every
//! [`REFRESH_SWEEPS`] to twice that many sweeps (spread per container) so that what the list
//! never shows (a changed memory limit, a health streak) cannot stay stale for long.
//!
//! # Failures
//! A container that vanishes between list and inspect (404) is left out; any other inspect
//! failure fails the whole sweep, because a sweep missing containers would read as containers
//! gone. Each request is bounded by the Docker timeout: a request without an answer, or an
//! error answer, reports the source down (once per outage) and its recovery once a sweep works
//! again. A sweep that merely takes long is not a failure: it is finished, a sweep longer than
//! the interval is logged and counted (`sweep_overruns_total`), and the next one starts when it
//! ends. Stats are not read here (see [`super::stats`]); the sweep publishes the running
//! containers it found for the stats task.

use super::status::ListMark;
use super::{Observation, SourceHealth, SourceId, Sweep, emit};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vigil_docker::{ContainerDetails, DockerClient, DockerError, RunState};
use vigil_shared::time::Timestamp;

/// A container's kept details are refreshed after this many sweeps at the latest (plus a
/// per-container spread of up to as many again, so a host's containers do not all come due in
/// the same sweep).
pub const REFRESH_SWEEPS: u64 = 20;

/// Inspects in flight during a sweep. Inspects answer in milliseconds; more would only queue
/// in the engine (and take connections the stats task needs through the read-only gate).
pub const INSPECT_CONCURRENCY: usize = 8;

/// Counters the sweep keeps for the metrics endpoint.
#[derive(Debug, Default)]
pub struct SweepCounters {
    /// Sweeps that took longer than the interval.
    pub overruns: AtomicU64,
    /// Containers inspected, over all sweeps.
    pub inspected: AtomicU64,
    /// Containers whose kept details were reused, over all sweeps.
    pub reused: AtomicU64,
}

#[derive(Debug)]
struct Known {
    mark: ListMark,
    details: ContainerDetails,
    /// The sweep number of the inspect.
    inspected_in: u64,
}

/// One sweep's result and what it cost.
#[derive(Debug)]
pub struct SweepReport {
    pub sweep: Sweep,
    pub inspected: usize,
    pub reused: usize,
}

/// Sweeps one engine, remembering what the last sweep saw.
#[derive(Debug)]
pub struct Sweeper {
    client: DockerClient,
    label: Option<String>,
    concurrency: usize,
    /// Boxed: the map is rebuilt every sweep with room for every container, and a spare
    /// bucket is then a pointer, not a whole `Known`.
    known: HashMap<String, Box<Known>>,
    /// When the last successful sweep's list call started.
    last: Option<Instant>,
    count: u64,
}

impl Sweeper {
    pub fn new(client: DockerClient, label: Option<String>, concurrency: usize) -> Sweeper {
        Sweeper {
            client,
            label,
            concurrency: concurrency.max(1),
            known: HashMap::new(),
            last: None,
            count: 0,
        }
    }

    /// One sweep. `at` is taken before the list call, so every state in the result is at least
    /// as new as `at`. Containers come back sorted by name. On failure what the sweeper
    /// remembers is left as it was.
    pub async fn sweep(&mut self) -> Result<SweepReport, DockerError> {
        let at = Timestamp::now();
        let started = Instant::now();
        let summaries = self
            .client
            .list_containers(true, self.label.as_deref())
            .await?;
        let count = self.count + 1;
        let mut kept = Vec::new();
        let mut to_inspect = Vec::new();
        for s in summaries {
            let mark = ListMark::of(&s);
            let id = s.container.id;
            let unchanged = match (self.known.get(&id), self.last) {
                (Some(k), Some(last)) => {
                    !mark.changed_since(&k.mark, started.duration_since(last))
                        && count - k.inspected_in < REFRESH_SWEEPS + spread(&id)
                }
                _ => false,
            };
            if unchanged {
                kept.push((id, mark));
            } else {
                to_inspect.push((id, mark));
            }
        }
        let capacity = kept.len() + to_inspect.len();
        let client = &self.client;
        let mut outcomes = futures_util::stream::iter(to_inspect)
            .map(|(id, mark)| async move {
                match client.inspect(&id).await {
                    Ok(d) => Ok(Some((mark, d))),
                    Err(e) if e.is_not_found() => {
                        tracing::debug!(container.id = %id, "Container vanished before inspect");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency);
        let mut known = HashMap::with_capacity(capacity);
        let mut inspected = 0;
        while let Some(outcome) = outcomes.next().await {
            if let Some((mark, details)) = outcome? {
                vigil_docker::labels::report_unclear(&details.container.name, &details.labels);
                inspected += 1;
                known.insert(
                    details.container.id.clone(),
                    Box::new(Known {
                        mark,
                        details,
                        inspected_in: count,
                    }),
                );
            }
        }
        drop(outcomes);
        let reused = kept.len();
        for (id, mark) in kept {
            if let Some(mut k) = self.known.remove(&id) {
                k.mark = mark;
                known.insert(id, k);
            }
        }
        self.known = known;
        self.last = Some(started);
        self.count = count;
        let mut containers: Vec<ContainerDetails> =
            self.known.values().map(|k| k.details.clone()).collect();
        containers.sort_by(|a, b| a.container.name.cmp(&b.container.name));
        Ok(SweepReport {
            sweep: Sweep { at, containers },
            inspected,
            reused,
        })
    }
}

/// 0 to [`REFRESH_SWEEPS`] - 1, fixed per container id.
fn spread(id: &str) -> u64 {
    id.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % REFRESH_SWEEPS
}

/// One sweep with nothing remembered: every container is inspected.
pub async fn sweep_once(
    client: &DockerClient,
    label: Option<&str>,
    concurrency: usize,
) -> Result<Sweep, DockerError> {
    let mut sweeper = Sweeper::new(client.clone(), label.map(str::to_string), concurrency);
    Ok(sweeper.sweep().await?.sweep)
}

/// Sweeps every `interval` (first at once) until `cancel`. After each good sweep the ids of
/// the running containers it found are published on `running` (for the stats task).
pub async fn run(
    mut sweeper: Sweeper,
    interval: Duration,
    running: watch::Sender<Vec<String>>,
    counters: Arc<SweepCounters>,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut health = SourceHealth::new(SourceId::DockerSweep);
    let mut ticker = tokio::time::interval(interval);
    // A late sweep delays the next tick: the next sweep starts when the late one ends.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sweeper.sweep() => r,
        };
        let took = started.elapsed();
        let observations = match result {
            Ok(report) => {
                counters
                    .inspected
                    .fetch_add(report.inspected as u64, Ordering::Relaxed);
                counters
                    .reused
                    .fetch_add(report.reused as u64, Ordering::Relaxed);
                if took > interval {
                    counters.overruns.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        sweep.took_ms = took.as_millis() as u64,
                        sweep.interval_ms = interval.as_millis() as u64,
                        sweep.containers = report.sweep.containers.len(),
                        "Sweep took longer than its interval; the next one starts now."
                    );
                } else {
                    tracing::debug!(
                        sweep.took_ms = took.as_millis() as u64,
                        sweep.containers = report.sweep.containers.len(),
                        sweep.inspected = report.inspected,
                        "Sweep done"
                    );
                }
                running.send_replace(
                    report
                        .sweep
                        .containers
                        .iter()
                        .filter(|c| c.state == RunState::Running)
                        .map(|c| c.container.id.clone())
                        .collect(),
                );
                let recovered = health.recovered();
                if recovered.is_some() {
                    tracing::info!(source = SourceId::DockerSweep.as_str(), "Sweep works again");
                }
                [recovered, Some(Observation::Sweep(report.sweep))]
            }
            Err(e) => [fail(&mut health, e.to_string()), None],
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
pub(crate) mod tests {
    use super::*;

    pub(crate) type Handler = dyn Fn(&str) -> Option<(u16, String)> + Send + Sync;

    /// A fake engine over TCP answering each request with `handler(path)`; `None` stalls.
    /// `/version` always says 1.41.
    pub(crate) async fn fake_engine(handler: std::sync::Arc<Handler>) -> DockerClient {
        fake_engine_slow(handler, Duration::ZERO).await
    }

    /// [`fake_engine`] whose inspects answer after `inspect_delay`.
    async fn fake_engine_slow(
        handler: std::sync::Arc<Handler>,
        inspect_delay: Duration,
    ) -> DockerClient {
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
                    if path.ends_with("/json") && !path.starts_with("/v1.41/containers/json") {
                        tokio::time::sleep(inspect_delay).await;
                    }
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
        DockerClient::new(&format!("tcp://{addr}"), Duration::from_secs(1)).unwrap()
    }

    const LIST: &str = r#"[{"Id":"aaa","Names":["/web-1"],"Image":"img","State":"running","Labels":{},"Created":1},{"Id":"bbb","Names":["/gone-1"],"Image":"img","State":"running","Labels":{},"Created":1},{"Id":"ccc","Names":["/done-1"],"Image":"img","State":"exited","Labels":{},"Created":1}]"#;
    const INSPECT_AAA: &str = r#"{"Id":"aaa","Name":"/web-1","State":{"Status":"running","ExitCode":0},"HostConfig":{"Memory":0},"Config":{"Image":"img","Labels":{}}}"#;
    const INSPECT_CCC: &str = r#"{"Id":"ccc","Name":"/done-1","State":{"Status":"exited","ExitCode":3},"HostConfig":{"Memory":0},"Config":{"Image":"img","Labels":{}}}"#;

    fn engine_answer(path: &str) -> Option<(u16, String)> {
        let gone = (404, r#"{"message":"No such container"}"#.to_owned());
        Some(match path {
            p if p.starts_with("/v1.41/containers/json") => (200, LIST.to_owned()),
            "/v1.41/containers/aaa/json" => (200, INSPECT_AAA.to_owned()),
            "/v1.41/containers/ccc/json" => (200, INSPECT_CCC.to_owned()),
            _ => gone,
        })
    }

    #[tokio::test]
    async fn vanished_containers_are_skipped() {
        let client = fake_engine(std::sync::Arc::new(engine_answer)).await;
        let sweep = sweep_once(&client, None, 2).await.unwrap();
        let names: Vec<_> = sweep
            .containers
            .iter()
            .map(|c| c.container.name.as_str())
            .collect();
        assert_eq!(names, ["done-1", "web-1"]);
    }

    /// A fake engine whose list is `list` (changeable) and which counts inspects.
    async fn counting_engine(
        list: std::sync::Arc<std::sync::Mutex<String>>,
        inspects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> DockerClient {
        fake_engine(std::sync::Arc::new(move |path: &str| {
            if path.starts_with("/v1.41/containers/json") {
                return Some((200, list.lock().unwrap().clone()));
            }
            if path.ends_with("/json") {
                inspects.fetch_add(1, Ordering::SeqCst);
            }
            engine_answer(path)
        }))
        .await
    }

    fn listed(web_status: &str) -> String {
        format!(
            r#"[{{"Id":"aaa","Names":["/web-1"],"Image":"img","State":"running","Status":"{web_status}","Labels":{{}},"Created":1}},{{"Id":"ccc","Names":["/done-1"],"Image":"img","State":"exited","Status":"Exited (3) 2 hours ago","Labels":{{}},"Created":1}}]"#
        )
    }

    #[tokio::test]
    async fn only_changed_containers_are_inspected_again() {
        let list = std::sync::Arc::new(std::sync::Mutex::new(listed("Up 3 hours")));
        let inspects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = counting_engine(list.clone(), inspects.clone()).await;
        let mut sweeper = Sweeper::new(client, None, 4);
        let first = sweeper.sweep().await.unwrap();
        assert_eq!((first.inspected, first.reused), (2, 0));
        let second = sweeper.sweep().await.unwrap();
        assert_eq!((second.inspected, second.reused), (0, 2));
        assert_eq!(second.sweep.containers, first.sweep.containers);
        assert_eq!(inspects.load(Ordering::SeqCst), 2);
        // Restarted by its restart policy between two sweeps: still running, but the age in
        // the status text went back.
        *list.lock().unwrap() = listed("Up 2 seconds");
        let third = sweeper.sweep().await.unwrap();
        assert_eq!((third.inspected, third.reused), (1, 1));
        // Health in the text changed.
        *list.lock().unwrap() = listed("Up 2 seconds (unhealthy)");
        assert_eq!(sweeper.sweep().await.unwrap().inspected, 1);
        // A container gone from the list is gone from the sweep.
        *list.lock().unwrap() = r#"[{"Id":"ccc","Names":["/done-1"],"Image":"img","State":"exited","Status":"Exited (3) 2 hours ago","Labels":{},"Created":1}]"#.to_string();
        let gone = sweeper.sweep().await.unwrap();
        assert_eq!((gone.inspected, gone.reused), (0, 1));
        assert_eq!(gone.sweep.containers.len(), 1);
        assert_eq!(inspects.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn kept_details_are_refreshed_within_twice_the_refresh_period() {
        let list = std::sync::Arc::new(std::sync::Mutex::new(listed("Up 3 hours")));
        let inspects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = counting_engine(list, inspects.clone()).await;
        let mut sweeper = Sweeper::new(client, None, 4);
        for _ in 0..(2 * REFRESH_SWEEPS + 1) {
            sweeper.sweep().await.unwrap();
        }
        assert!(
            inspects.load(Ordering::SeqCst) >= 4,
            "each of the two containers inspected again: {inspects:?}"
        );
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
        let mut s = start(client, Duration::from_millis(30));
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(next(&mut s.rx).await);
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
        s.cancel.cancel();
        s.task.await.unwrap();
    }

    fn start(client: DockerClient, interval: Duration) -> Started {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (running_tx, running) = watch::channel(Vec::new());
        let cancel = CancellationToken::new();
        let counters = Arc::new(SweepCounters::default());
        let task = tokio::spawn(run(
            Sweeper::new(client, None, 4),
            interval,
            running_tx,
            counters.clone(),
            tx,
            cancel.clone(),
        ));
        Started {
            rx,
            running,
            counters,
            cancel,
            task,
        }
    }

    struct Started {
        rx: tokio::sync::mpsc::Receiver<Observation>,
        running: watch::Receiver<Vec<String>>,
        counters: Arc<SweepCounters>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn next(rx: &mut tokio::sync::mpsc::Receiver<Observation>) -> Observation {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_stalled_engine_fails_the_sweep_at_the_request_timeout() {
        let client = fake_engine(std::sync::Arc::new(|path: &str| {
            if path.starts_with("/v1.41/containers/aaa/json") {
                None
            } else {
                engine_answer(path)
            }
        }))
        .await;
        let mut s = start(client, Duration::from_millis(100));
        match next(&mut s.rx).await {
            Observation::Source {
                source: SourceId::DockerSweep,
                ok: false,
                detail,
                ..
            } => {
                assert!(detail.contains("did not answer"), "{detail}");
            }
            other => panic!("expected a timeout report, got {other:?}"),
        }
        s.cancel.cancel();
        s.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_sweep_longer_than_its_interval_is_an_overrun_not_a_failure() {
        // Every inspect answers after 300 ms: slow, but an answer. With two containers the first sweep takes about 300 ms against a 100 ms interval.
        let client = fake_engine_slow(
            std::sync::Arc::new(engine_answer),
            Duration::from_millis(300),
        )
        .await;
        let mut s = start(client, Duration::from_millis(100));
        for _ in 0..2 {
            match next(&mut s.rx).await {
                Observation::Sweep(sweep) => assert_eq!(sweep.containers.len(), 2),
                other => panic!("a slow engine still gives sweeps, got {other:?}"),
            }
        }
        assert_eq!(*s.running.borrow(), vec!["aaa".to_string()]);
        assert!(s.counters.overruns.load(Ordering::Relaxed) >= 1);
        assert!(s.counters.inspected.load(Ordering::Relaxed) >= 2);
        s.cancel.cancel();
        s.task.await.unwrap();
    }
}
