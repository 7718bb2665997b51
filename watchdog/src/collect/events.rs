//! The Docker event stream: the fast path. Every container event is forwarded at once as an
//! [`Observation::Event`]; nothing slow happens in the read loop, because the engine drops events
//! for readers that fall behind (1024-event buffer, 100 ms send timeout).
//!
//! When the stream fails or the engine closes it, the source reports itself down once per outage
//! and reconnects with jittered exponential backoff (100 ms doubling to 5 s, reset after a stream
//! stayed up for [`HEALTHY_RESET`]), asking for `since=<last timeNano>` so nothing is lost across
//! the gap. `since` is inclusive, so the replay starts with events already forwarded: those at
//! the boundary instant are remembered by `(timeNano, id, action)` and skipped.
//!
//! A connection that stalls without closing cannot be told from a quiet engine (events are
//! sparse); the sweep's failures are what report an unreachable engine in that case.

use super::{Observation, SourceHealth, SourceId, emit, pause};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use vigil_docker::{ContainerEvent, DockerClient, DockerError};
use vigil_shared::backoff::Backoff;

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream that stayed up this long resets the backoff.
pub const HEALTHY_RESET: Duration = Duration::from_secs(30);
/// A reconnected stream counts as recovered once it delivers an event or stays open this long.
/// Accepting the connection is not enough: an engine that closes `/events` at once would
/// otherwise reset the `docker_unreachable` debounce on every reconnect.
pub const STABLE_AFTER: Duration = Duration::from_secs(3);

/// The events forwarded at the latest instant seen, so a `since=` replay does not forward them
/// twice. Events inside one stream are never filtered (they cannot repeat there).
#[derive(Debug, Default)]
pub struct ReplayFilter {
    last_time_nano: Option<i64>,
    at_last: HashSet<(String, String)>,
}

impl ReplayFilter {
    fn key(event: &ContainerEvent) -> (String, String) {
        (event.container.id.clone(), format!("{:?}", event.action))
    }

    /// `since=` for the next connection: the latest event time forwarded.
    pub fn since(&self) -> Option<i64> {
        self.last_time_nano
    }

    /// True when `event` was already forwarded (a replay at the boundary instant).
    pub fn is_replay(&self, event: &ContainerEvent) -> bool {
        self.last_time_nano == Some(event.time_nano) && self.at_last.contains(&Self::key(event))
    }

    /// Records a forwarded event.
    pub fn record(&mut self, event: &ContainerEvent) {
        match self.last_time_nano {
            Some(t) if event.time_nano < t => {}
            Some(t) if event.time_nano == t => {
                self.at_last.insert(Self::key(event));
            }
            _ => {
                self.last_time_nano = Some(event.time_nano);
                self.at_last.clear();
                self.at_last.insert(Self::key(event));
            }
        }
    }
}

/// Why a connection ended.
enum Ended {
    Cancelled,
    Failed(String),
}

/// Follows the engine's event stream until `cancel`, reconnecting as described in the module
/// docs. Never returns early on engine errors; returns when cancelled or when `tx` is closed.
pub async fn run(client: DockerClient, tx: Sender<Observation>, cancel: CancellationToken) {
    let mut health = SourceHealth::new(SourceId::DockerEvents);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).jittered();
    let mut replay = ReplayFilter::default();
    // Before the first event, a reconnect asks for events since the first successful connect.
    let mut connected_since: Option<i64> = None;
    loop {
        let since = replay.since().or(connected_since);
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            r = client.events(since) => r,
        };
        let ended = match connected {
            Err(e) => Ended::Failed(format!("connecting to the event stream: {e}")),
            Ok(mut stream) => {
                if connected_since.is_none() {
                    connected_since = Some(now_nanos());
                }
                let up_at = Instant::now();
                let ended = forward(&mut stream, &mut replay, &mut health, &tx, &cancel).await;
                if up_at.elapsed() >= HEALTHY_RESET {
                    backoff.reset();
                }
                ended
            }
        };
        let detail = match ended {
            Ended::Cancelled => return,
            Ended::Failed(detail) => detail,
        };
        let delay = backoff.next_delay();
        if let Some(o) = health.failed(detail.clone()) {
            tracing::warn!(
                source = SourceId::DockerEvents.as_str(),
                error = %detail,
                retry.delay_ms = delay.as_millis() as u64,
                "Event stream lost; reconnecting"
            );
            if !emit(&tx, &cancel, o).await {
                return;
            }
        } else {
            tracing::debug!(error = %detail, retry.delay_ms = delay.as_millis() as u64, "Event stream still down");
        }
        if !pause(&cancel, delay).await {
            return;
        }
    }
}

/// Reads one connection until it ends, forwarding each new event at once.
async fn forward(
    stream: &mut vigil_docker::EventStream,
    replay: &mut ReplayFilter,
    health: &mut SourceHealth,
    tx: &Sender<Observation>,
    cancel: &CancellationToken,
) -> Ended {
    let stable = tokio::time::sleep(STABLE_AFTER);
    tokio::pin!(stable);
    let mut proven = false;
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            _ = &mut stable, if !proven => {
                proven = true;
                if !report_recovered(health, tx, cancel).await {
                    return Ended::Cancelled;
                }
                continue;
            }
            item = stream.next() => item,
        };
        if !proven && matches!(item, Some(Ok(_))) {
            proven = true;
            if !report_recovered(health, tx, cancel).await {
                return Ended::Cancelled;
            }
        }
        match item {
            None => return Ended::Failed("the engine closed the event stream".into()),
            Some(Ok(event)) => {
                if replay.is_replay(&event) {
                    tracing::debug!(container.id = %event.container.id, event.time_nano = event.time_nano, "Skipping replayed event");
                    continue;
                }
                replay.record(&event);
                if !emit(tx, cancel, Observation::Event(event)).await {
                    return Ended::Cancelled;
                }
            }
            Some(Err(e)) if is_single_event_error(&e) => {
                tracing::warn!(source = SourceId::DockerEvents.as_str(), error = %e, "Skipping a malformed event");
            }
            Some(Err(e)) => return Ended::Failed(format!("reading the event stream: {e}")),
        }
    }
}

/// Sends the source's recovery once per outage; false when cancelled.
async fn report_recovered(
    health: &mut SourceHealth,
    tx: &Sender<Observation>,
    cancel: &CancellationToken,
) -> bool {
    match health.recovered() {
        Some(o) => {
            tracing::info!(
                source = SourceId::DockerEvents.as_str(),
                "Event stream reconnected"
            );
            emit(tx, cancel, o).await
        }
        None => true,
    }
}

/// Errors that spoil one event but leave the stream usable: a line that is not a valid event, or
/// an over-long line the decoder has already discarded.
fn is_single_event_error(e: &DockerError) -> bool {
    matches!(e, DockerError::Decode { .. } | DockerError::TooLarge { .. })
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_docker::{ContainerRef, EventAction};

    fn event(id: &str, action: EventAction, time_nano: i64) -> ContainerEvent {
        ContainerEvent {
            container: ContainerRef {
                id: id.into(),
                name: id.into(),
                project: None,
                service: None,
            },
            action,
            labels: Default::default(),
            time_nano,
        }
    }

    #[test]
    fn replay_filter_skips_only_forwarded_events_at_the_boundary() {
        let mut f = ReplayFilter::default();
        assert_eq!(f.since(), None);
        let a = event("a", EventAction::Die { exit_code: Some(1) }, 100);
        let b = event("b", EventAction::Start, 200);
        let c = event("c", EventAction::Oom, 200);
        for e in [&a, &b, &c] {
            assert!(!f.is_replay(e));
            f.record(e);
        }
        assert_eq!(f.since(), Some(200));
        // Replay from since=200 repeats b and c, then new events follow.
        assert!(f.is_replay(&b));
        assert!(f.is_replay(&c));
        // Same instant, different container or action: new.
        assert!(!f.is_replay(&event("d", EventAction::Start, 200)));
        assert!(!f.is_replay(&event("b", EventAction::Stop, 200)));
        assert!(!f.is_replay(&event("b", EventAction::Start, 201)));
        // An older event arriving late (not a replay) is recorded without moving the boundary.
        f.record(&event("z", EventAction::Start, 150));
        assert_eq!(f.since(), Some(200));
        f.record(&event("e", EventAction::Start, 300));
        assert_eq!(f.since(), Some(300));
        assert!(!f.is_replay(&b), "the boundary moved on");
    }

    /// What the fake engine does on the n-th `/events` request.
    enum Script {
        Status500,
        /// Send these lines, then close the stream (or hold it open).
        Stream {
            lines: Vec<String>,
            close: bool,
        },
    }

    fn line(id: &str, action: &str, time_nano: i64, extra: &str) -> String {
        format!(
            r#"{{"status":"{action}","id":"{id}","from":"img","Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"name":"{id}"{extra}}}}},"scope":"local","time":{},"timeNano":{time_nano}}}"#,
            time_nano / 1_000_000_000
        )
    }

    /// A minimal fake engine over TCP: `/version` says 1.41, `/events` follows `scripts` in
    /// order. Returns its address and the log of `/events` request paths.
    async fn fake_engine(
        scripts: Vec<Script>,
    ) -> (
        std::net::SocketAddr,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let scripts = Arc::new(Mutex::new(std::collections::VecDeque::from(scripts)));
        let served_log = log.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = served_log.clone();
                let scripts = scripts.clone();
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
                    if path.ends_with("/version") {
                        let body = r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#;
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(reply.as_bytes()).await;
                        return;
                    }
                    log.lock().unwrap().push(path);
                    let script = scripts.lock().unwrap().pop_front();
                    match script {
                        Some(Script::Status500) | None => {
                            let body = r#"{"message":"boom"}"#;
                            let reply = format!(
                                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = sock.write_all(reply.as_bytes()).await;
                        }
                        Some(Script::Stream { lines, close }) => {
                            let mut reply = String::from(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
                            );
                            for l in lines {
                                reply.push_str(&l);
                                reply.push('\n');
                            }
                            let _ = sock.write_all(reply.as_bytes()).await;
                            if !close {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                            }
                        }
                    }
                });
            }
        });
        (addr, log)
    }

    async fn next(rx: &mut tokio::sync::mpsc::Receiver<Observation>) -> Observation {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an observation within 10 s")
            .expect("the source is running")
    }

    fn event_of(o: Observation) -> (String, i64) {
        match o {
            Observation::Event(e) => (e.container.id, e.time_nano),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn source_of(o: Observation) -> bool {
        match o {
            Observation::Source {
                source: SourceId::DockerEvents,
                ok,
                ..
            } => ok,
            other => panic!("expected a source status, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn reconnects_with_since_and_skips_the_replayed_boundary() {
        let (addr, log) = fake_engine(vec![
            Script::Stream {
                lines: vec![
                    line("aaa", "start", 1_000_000_100, ""),
                    "{this is not json".into(),
                    line("bbb", "die", 1_000_000_200, r#","exitCode":"1""#),
                ],
                close: true,
            },
            Script::Stream {
                lines: vec![
                    line("bbb", "die", 1_000_000_200, r#","exitCode":"1""#),
                    line("ccc", "start", 1_000_000_300, ""),
                ],
                close: false,
            },
        ])
        .await;
        let client = DockerClient::new(&format!("tcp://{addr}"), Duration::from_secs(2)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(client, tx, cancel.clone()));

        assert_eq!(event_of(next(&mut rx).await), ("aaa".into(), 1_000_000_100));
        // The malformed line is skipped without dropping the connection.
        assert_eq!(event_of(next(&mut rx).await), ("bbb".into(), 1_000_000_200));
        assert!(
            !source_of(next(&mut rx).await),
            "closing the stream reports the source down"
        );
        assert!(source_of(next(&mut rx).await), "reconnecting reports it up");
        // bbb's replay is not forwarded again.
        assert_eq!(event_of(next(&mut rx).await), ("ccc".into(), 1_000_000_300));

        let paths = log.lock().unwrap().clone();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(!paths[0].contains("since="), "{}", paths[0]);
        assert!(paths[1].contains("since=1.000000200"), "{}", paths[1]);
        cancel.cancel();
        task.await.unwrap();
        assert!(rx.try_recv().is_err(), "nothing else was sent");
    }

    #[tokio::test]
    async fn an_outage_is_reported_once_across_retries() {
        let (addr, log) = fake_engine(vec![
            Script::Status500,
            Script::Status500,
            Script::Status500,
            Script::Stream {
                lines: vec![line("aaa", "start", 5, "")],
                close: false,
            },
        ])
        .await;
        let client = DockerClient::new(&format!("tcp://{addr}"), Duration::from_secs(2)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(client, tx, cancel.clone()));

        match next(&mut rx).await {
            Observation::Source {
                source: SourceId::DockerEvents,
                ok: false,
                detail,
                ..
            } => {
                assert!(detail.contains("500"), "{detail}");
            }
            other => panic!("expected the outage, got {other:?}"),
        }
        assert!(
            source_of(next(&mut rx).await),
            "one recovery after three failed attempts"
        );
        assert_eq!(event_of(next(&mut rx).await), ("aaa".into(), 5));
        assert_eq!(log.lock().unwrap().len(), 4);
        cancel.cancel();
        task.await.unwrap();
    }
}
