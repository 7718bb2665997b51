//! Delivery: detection hands notices to [`Notifier::enqueue`], which never blocks and never
//! fails; a worker task groups them ([`Grouper`]) and hands each message to one task per sink.
//!
//! Before grouping, each notice passes the operators' [`Gate`] (silences, acks), the
//! [`FlapDamper`], and, for a container alert, takes its facts: the known ones at once, a fresh
//! inspect (bounded by [`FACTS_DEADLINE`]) only when nothing is known of the container or it is
//! unhealthy (see [`super::facts`]).
//!
//! Each sink has its own bounded queue and task, so a slow or failing sink delays only itself.
//! A failed send is retried with exponential backoff (or after the wait the sink was told) up to
//! `max_attempts`; a permanent failure is not retried. A message waiting for its retry does not
//! hold back the messages behind it: they go out meanwhile. Every queue drops its oldest entry when
//! full and counts the drop: losing an old alert is better than stalling detection.
//!
//! Shutdown: when the cancellation token fires, the worker closes all open groups at once, hands
//! them to the sinks, and waits at most the drain deadline for the sinks to finish.

use super::config::NotifyConfig;
use super::facts::{FACTS_DEADLINE, FactSource};
use super::flap::FlapDamper;
use super::group::Grouper;
use super::message::{Message, Notice, Occasion};
use super::setup::configured_sinks;
use super::sink::{SendError, Sink};
use crate::operators::Operators;
use crate::operators::gate::Gate;
use crate::signals::{Signal, SignalKind};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_shared::backoff::Backoff;
use vigil_shared::shutdown::DRAIN_DEADLINE;

/// First retry wait when the sink gave none; doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest "retry after" we honour; a server asking for more is asked again sooner.
const MAX_HONOURED_WAIT: Duration = Duration::from_secs(300);

/// Counters of one sink, for metrics.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub name: &'static str,
    /// Messages delivered.
    pub sent: AtomicU64,
    /// Messages given up on (permanent failure or attempts exhausted).
    pub failed: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Messages dropped because this sink's queue was full.
    pub dropped: AtomicU64,
}

/// Counters of the whole notifier, for metrics.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Notices and messages accepted by `enqueue`.
    pub enqueued: AtomicU64,
    /// Dropped from the intake queue because it was full.
    pub dropped: AtomicU64,
    pub sinks: Vec<Arc<SinkStats>>,
}

impl NotifyStats {
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.as_ref())
    }
}

/// A bounded queue that drops its oldest entry when full. One consumer waits on it.
#[derive(Debug)]
struct DropOldest<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    closed: AtomicBool,
    wake: Notify,
}

impl<T> DropOldest<T> {
    fn new(capacity: usize) -> DropOldest<T> {
        DropOldest {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        // A panic while holding this lock cannot leave the deque inconsistent: keep going.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends; returns true when the oldest entry had to go.
    fn push(&self, item: T) -> bool {
        let dropped = {
            let mut q = self.lock();
            let dropped = if q.len() >= self.capacity {
                q.pop_front().is_some()
            } else {
                false
            };
            q.push_back(item);
            dropped
        };
        self.wake.notify_one();
        dropped
    }

    fn pop(&self) -> Option<T> {
        self.lock().pop_front()
    }

    fn take_all(&self) -> Vec<T> {
        self.lock().drain(..).collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves after a push or close (or at once if one happened since the last wait).
    async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[derive(Debug)]
enum Item {
    /// Grouped with others of its project.
    Notice(Box<Notice>),
    /// Sent as is, at once.
    Message(Message),
}

#[derive(Debug)]
struct Shared {
    intake: DropOldest<Item>,
    stats: Arc<NotifyStats>,
    host: String,
    sink_queues: Vec<Arc<DropOldest<Arc<Message>>>>,
}

/// The handle detection uses to tell people things. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

/// Optional stages of the notifier: the operators' filter and the container facts source.
#[derive(Default, Clone)]
pub struct Extras {
    pub operators: Option<Arc<Operators>>,
    pub facts: Option<Arc<dyn FactSource>>,
}

/// The stages a notice passes before grouping.
struct Filters {
    gate: Option<Gate>,
    operators: Option<Arc<Operators>>,
    flap: FlapDamper,
    facts: Option<Arc<dyn FactSource>>,
}

impl Filters {
    async fn admit(&mut self, notice: Notice, now: Instant) -> Option<Notice> {
        let notice = match self.gate.as_mut() {
            Some(g) => g.admit(notice, vigil_shared::time::Timestamp::now())?,
            None => notice,
        };
        let mut notice = self.flap.admit(notice, now)?;
        if let Some(src) = &self.facts
            && notice.facts.is_none()
            && !notice.occasion.is_recovery()
            && let Some(id) = notice.signal.subject.container_id.clone()
        {
            let known = src.known(&id);
            let fresh = known.is_none() || notice.signal.kind == SignalKind::ContainerUnhealthy;
            notice.facts = if fresh {
                tokio::time::timeout(FACTS_DEADLINE, src.facts(&id))
                    .await
                    .ok()
                    .flatten()
                    .or(known)
            } else {
                known
            };
        }
        Some(notice)
    }

    /// Notices that time made due: silences ended, flapping settled.
    async fn due(&mut self, now: Instant) -> Vec<Notice> {
        let wall = vigil_shared::time::Timestamp::now();
        let mut out = Vec::new();
        if let Some(ops) = &self.operators {
            ops.expire(wall).await;
        }
        if let Some(g) = self.gate.as_mut() {
            for n in g.released(wall) {
                out.extend(self.flap.admit(n, now));
            }
        }
        out.extend(self.flap.due(now));
        out
    }

    fn next_deadline(&self) -> Option<Instant> {
        let flap = self.flap.next_deadline();
        // With operators, silences may end at any moment: look once a second.
        let ops = self
            .operators
            .as_ref()
            .map(|_| Instant::now() + Duration::from_secs(1));
        [flap, ops].into_iter().flatten().min()
    }
}

/// Retry settings of one sink task.
#[derive(Debug, Clone, Copy)]
struct Retry {
    max_attempts: u32,
    send_timeout: Duration,
}

impl Notifier {
    /// Starts the worker with every configured sink (the log sink always). A sink that cannot be
    /// set up is logged at ERROR and left out. The handle resolves after `cancel` fires and the
    /// queues have drained (or [`DRAIN_DEADLINE`] passed).
    pub fn start(
        config: &NotifyConfig,
        host: String,
        cancel: CancellationToken,
    ) -> (Notifier, JoinHandle<()>) {
        Notifier::start_with(config, host, Extras::default(), cancel)
    }

    /// Like [`Notifier::start`], with the operators' filter and a facts source.
    pub fn start_with(
        config: &NotifyConfig,
        host: String,
        extras: Extras,
        cancel: CancellationToken,
    ) -> (Notifier, JoinHandle<()>) {
        let mut sinks = Vec::new();
        for sink in configured_sinks(config) {
            match sink {
                Ok(s) => sinks.push(s),
                Err(e) => tracing::error!(error = %e, "Notification sink left out."),
            }
        }
        Notifier::start_with_sinks_and(config, host, sinks, extras, cancel)
    }

    /// Like [`Notifier::start`] with the given sinks (tests, or callers with their own).
    pub fn start_with_sinks(
        config: &NotifyConfig,
        host: String,
        sinks: Vec<Arc<dyn Sink>>,
        cancel: CancellationToken,
    ) -> (Notifier, JoinHandle<()>) {
        Notifier::start_with_sinks_and(config, host, sinks, Extras::default(), cancel)
    }

    /// Like [`Notifier::start_with_sinks`], with the optional stages.
    pub fn start_with_sinks_and(
        config: &NotifyConfig,
        host: String,
        sinks: Vec<Arc<dyn Sink>>,
        extras: Extras,
        cancel: CancellationToken,
    ) -> (Notifier, JoinHandle<()>) {
        let retry = Retry {
            max_attempts: config.max_attempts.max(1),
            send_timeout: config.timeout,
        };
        let mut tasks = JoinSet::new();
        let mut sink_stats = Vec::new();
        let mut sink_queues = Vec::new();
        for sink in sinks {
            let stats = Arc::new(SinkStats {
                name: sink.name(),
                ..SinkStats::default()
            });
            let queue = Arc::new(DropOldest::new(config.queue_capacity));
            tasks.spawn(run_sink(sink, queue.clone(), stats.clone(), retry));
            sink_stats.push(stats);
            sink_queues.push(queue);
        }
        let names: Vec<&str> = sink_stats.iter().map(|s| s.name).collect();
        tracing::info!(
            notify.sinks = ?names,
            notify.group_window_ms = config.group_window.as_millis() as u64,
            "Notifications started."
        );
        let shared = Arc::new(Shared {
            intake: DropOldest::new(config.queue_capacity),
            stats: Arc::new(NotifyStats {
                sinks: sink_stats,
                ..NotifyStats::default()
            }),
            host,
            sink_queues,
        });
        let grouper = Grouper::new(config.group_window);
        let filters = Filters {
            gate: extras.operators.clone().map(Gate::new),
            operators: extras.operators,
            flap: FlapDamper::new(config.flap),
            facts: extras.facts,
        };
        let handle = tokio::spawn(run_worker(shared.clone(), grouper, filters, tasks, cancel));
        (Notifier { shared }, handle)
    }

    /// Queues a notice. Never blocks: when the queue is full the oldest entry is dropped.
    pub fn enqueue(&self, notice: Notice) {
        self.accept(Item::Notice(Box::new(notice)));
    }

    /// Queues a notice about `signal` from this notifier's host.
    pub fn notify(&self, occasion: Occasion, signal: Signal) {
        self.enqueue(Notice::new(occasion, signal, self.shared.host.clone()));
    }

    /// Queues a ready message (executor outcomes, announcements); it skips grouping.
    pub fn enqueue_message(&self, msg: Message) {
        self.accept(Item::Message(msg));
    }

    fn accept(&self, item: Item) {
        let stats = &self.shared.stats;
        stats.enqueued.fetch_add(1, Ordering::Relaxed);
        if self.shared.intake.push(item) {
            let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logging every drop would flood the log exactly when things are worst.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    notify.dropped = dropped,
                    "Notification queue full; dropped the oldest."
                );
            }
        }
    }

    pub fn host(&self) -> &str {
        &self.shared.host
    }

    pub fn stats(&self) -> &Arc<NotifyStats> {
        &self.shared.stats
    }

    /// Entries waiting in the intake queue (not yet grouped).
    pub fn queue_depth(&self) -> usize {
        self.shared.intake.len()
    }

    /// Messages waiting for each sink (not counting one in flight).
    pub fn sink_depths(&self) -> Vec<(&'static str, usize)> {
        self.shared
            .stats
            .sinks
            .iter()
            .zip(&self.shared.sink_queues)
            .map(|(s, q)| (s.name, q.len()))
            .collect()
    }
}

async fn run_worker(
    shared: Arc<Shared>,
    mut grouper: Grouper,
    mut filters: Filters,
    mut sinks: JoinSet<()>,
    cancel: CancellationToken,
) {
    let ops = filters.operators.clone();
    loop {
        for item in shared.intake.take_all() {
            match item {
                Item::Notice(n) => {
                    if let Some(n) = filters.admit(*n, Instant::now()).await {
                        grouper.push(n, Instant::now());
                    }
                }
                Item::Message(m) => dispatch(&shared, m),
            }
        }
        let now = Instant::now();
        for n in filters.due(now).await {
            grouper.push(n, now);
        }
        for m in grouper.due(now) {
            dispatch(&shared, m);
        }
        if cancel.is_cancelled() {
            break;
        }
        let next = [grouper.next_deadline(), filters.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let changed = async {
            match &ops {
                Some(o) => o.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = shared.intake.wait() => {}
            _ = sleep_until(next) => {}
            _ = changed => {}
        }
    }

    // Shutdown: nothing waits for its window any more.
    for item in shared.intake.take_all() {
        match item {
            Item::Notice(n) => grouper.push(*n, Instant::now()),
            Item::Message(m) => dispatch(&shared, m),
        }
    }
    for m in grouper.flush() {
        dispatch(&shared, m);
    }
    for q in &shared.sink_queues {
        q.close();
    }
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while sinks.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("Notifications drained."),
        Err(_) => {
            let left: usize = shared.sink_queues.iter().map(|q| q.len()).sum();
            sinks.abort_all();
            tracing::warn!(
                notify.undelivered = left,
                notify.deadline_ms = DRAIN_DEADLINE.as_millis() as u64,
                "Notifications not drained before the deadline; stopped anyway."
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Hands one message to every sink's queue.
fn dispatch(shared: &Shared, msg: Message) {
    let msg = Arc::new(msg);
    for (q, stats) in shared.sink_queues.iter().zip(&shared.stats.sinks) {
        if q.push(msg.clone()) {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                notify.sink = stats.name,
                "Sink queue full; dropped its oldest message."
            );
        }
    }
}

async fn run_sink(
    sink: Arc<dyn Sink>,
    queue: Arc<DropOldest<Arc<Message>>>,
    stats: Arc<SinkStats>,
    retry: Retry,
) {
    // Messages waiting for their next attempt: (due, message, attempt number).
    let mut later: Vec<(Instant, Arc<Message>, u32)> = Vec::new();
    loop {
        let now = Instant::now();
        let due = later
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, _, _))| *at)
            .map(|(i, _)| i);
        let (msg, attempt) = match due {
            Some(i) => {
                let (_, msg, attempt) = later.remove(i);
                (msg, attempt)
            }
            None => match queue.pop() {
                Some(msg) => (msg, 1),
                None => {
                    if queue.is_closed() && later.is_empty() {
                        return;
                    }
                    let next = later.iter().map(|(at, _, _)| *at).min();
                    if queue.is_closed() {
                        sleep_until(next).await;
                    } else {
                        tokio::select! {
                            _ = queue.wait() => {}
                            _ = sleep_until(next) => {}
                        }
                    }
                    continue;
                }
            },
        };
        if let Some(wait) = attempt_once(sink.as_ref(), &msg, attempt, &stats, retry).await {
            later.push((Instant::now() + wait, msg, attempt + 1));
        }
    }
}

/// Makes attempt number `attempt` to send one message; counts the outcome. Returns the wait
/// before the next attempt when one is due.
async fn attempt_once(
    sink: &dyn Sink,
    msg: &Message,
    attempt: u32,
    stats: &SinkStats,
    retry: Retry,
) -> Option<Duration> {
    let outcome = match tokio::time::timeout(retry.send_timeout, sink.send(msg)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::retryable(format!(
            "no answer within {}s",
            retry.send_timeout.as_secs_f64()
        ))),
    };
    match outcome {
        Ok(()) => {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            if attempt > 1 {
                tracing::info!(
                    notify.sink = sink.name(),
                    notify.title = %msg.title,
                    notify.attempt = attempt,
                    "Notification delivered after retrying."
                );
            }
            None
        }
        Err(SendError::Permanent(reason)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                notify.sink = sink.name(),
                notify.title = %msg.title,
                error = %reason,
                "Notification rejected; not retrying. Check this sink's configuration."
            );
            None
        }
        Err(SendError::Retryable { after, reason }) => {
            if attempt >= retry.max_attempts {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    notify.sink = sink.name(),
                    notify.title = %msg.title,
                    notify.attempts = attempt,
                    error = %reason,
                    "Notification not delivered; giving up."
                );
                return None;
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            let wait = retry_delay(attempt, after);
            tracing::warn!(
                notify.sink = sink.name(),
                notify.title = %msg.title,
                notify.attempt = attempt,
                notify.retry_in_ms = wait.as_millis() as u64,
                error = %reason,
                "Notification failed; will retry."
            );
            Some(wait)
        }
    }
}

/// The wait before attempt `attempt + 1`: what the server asked for (capped), else 1 s doubling
/// to 60 s.
fn retry_delay(attempt: u32, after: Option<Duration>) -> Duration {
    match after {
        Some(a) => a.min(MAX_HONOURED_WAIT),
        None => Backoff::new(BASE_BACKOFF, MAX_BACKOFF).nth(attempt.saturating_sub(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::container_notice;
    use crate::notify::sink::SendFuture;
    use std::sync::atomic::AtomicUsize;

    fn config(window: Duration, capacity: usize) -> NotifyConfig {
        NotifyConfig {
            group_window: window,
            queue_capacity: capacity,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            telegram: None,
            slack: None,
            webhook: None,
            flap: crate::notify::flap::FlapSettings::default(),
            state_file: None,
        }
    }

    /// Records messages; fails the first `fail_first` sends with `error`.
    struct Scripted {
        name: &'static str,
        calls: AtomicUsize,
        fail_first: usize,
        error: SendError,
        delay: Duration,
        got: Mutex<Vec<Message>>,
    }

    impl Scripted {
        fn new(name: &'static str, fail_first: usize, error: SendError) -> Arc<Scripted> {
            Arc::new(Scripted {
                name,
                calls: AtomicUsize::new(0),
                fail_first,
                error,
                delay: Duration::ZERO,
                got: Mutex::new(Vec::new()),
            })
        }

        fn got(&self) -> Vec<Message> {
            self.got.lock().expect("lock").clone()
        }
    }

    impl Sink for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }

        fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail_first {
                    return Err(self.error.clone());
                }
                self.got.lock().expect("lock").push(msg.clone());
                Ok(())
            })
        }
    }

    async fn settle() {
        // Paused time: lets every ready task run and timers advance.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_project_storm_is_the_first_notice_at_once_and_one_follow_up() {
        let sink = Scripted::new("s", 0, SendError::Permanent(String::new()));
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::from_secs(2), 100),
            "host-a".into(),
            vec![sink.clone()],
            cancel.clone(),
        );
        for i in 0..20 {
            n.enqueue(container_notice("shop", i, Occasion::Alert));
        }
        settle().await;
        let got = sink.got();
        assert_eq!(got.len(), 1, "the first notice went at once, the rest wait");
        assert!(got[0].title.starts_with("ALERT"), "{}", got[0].title);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        settle().await;
        let got = sink.got();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].title, "shop: 19 problems");
        assert_eq!(
            n.stats().sink("s").map(|s| s.sent.load(Ordering::Relaxed)),
            Some(2)
        );
        cancel.cancel();
        handle.await.expect("worker ends");
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failure_then_success_delivers_once() {
        let sink = Scripted::new(
            "s",
            2,
            SendError::Retryable {
                after: Some(Duration::from_secs(3)),
                reason: "429".into(),
            },
        );
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::ZERO, 100),
            "h".into(),
            vec![sink.clone()],
            cancel.clone(),
        );
        n.enqueue(container_notice("shop", 1, Occasion::Alert));
        settle().await;
        assert_eq!(sink.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(2900)).await;
        assert_eq!(sink.calls.load(Ordering::SeqCst), 1, "honours retry-after");
        tokio::time::sleep(Duration::from_secs(4)).await;
        settle().await;
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3);
        assert_eq!(sink.got().len(), 1);
        let st = n.stats().sink("s").expect("stats");
        assert_eq!(st.sent.load(Ordering::Relaxed), 1);
        assert_eq!(st.retries.load(Ordering::Relaxed), 2);
        assert_eq!(st.failed.load(Ordering::Relaxed), 0);
        cancel.cancel();
        handle.await.expect("worker ends");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failure_is_not_retried_and_attempts_are_bounded() {
        let perm = Scripted::new("perm", 100, SendError::Permanent("400".into()));
        let flaky = Scripted::new("flaky", 100, SendError::retryable("500"));
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::ZERO, 100),
            "h".into(),
            vec![perm.clone(), flaky.clone()],
            cancel.clone(),
        );
        n.enqueue(container_notice("shop", 1, Occasion::Alert));
        tokio::time::sleep(Duration::from_secs(600)).await;
        settle().await;
        assert_eq!(perm.calls.load(Ordering::SeqCst), 1);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3, "max_attempts = 3");
        assert_eq!(
            n.stats()
                .sink("perm")
                .map(|s| s.failed.load(Ordering::Relaxed)),
            Some(1)
        );
        assert_eq!(
            n.stats()
                .sink("flaky")
                .map(|s| s.failed.load(Ordering::Relaxed)),
            Some(1)
        );
        cancel.cancel();
        handle.await.expect("worker ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sink_does_not_delay_the_others() {
        let slow = Arc::new(Scripted {
            name: "slow",
            calls: AtomicUsize::new(0),
            fail_first: 0,
            error: SendError::Permanent(String::new()),
            delay: Duration::from_secs(9),
            got: Mutex::new(Vec::new()),
        });
        let fast = Scripted::new("fast", 0, SendError::Permanent(String::new()));
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::ZERO, 100),
            "h".into(),
            vec![slow.clone(), fast.clone()],
            cancel.clone(),
        );
        for i in 0..3 {
            n.enqueue(container_notice(&format!("p{i}"), i, Occasion::Alert));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settle().await;
        assert_eq!(fast.got().len(), 3);
        assert_eq!(slow.got().len(), 0);
        cancel.cancel();
        handle.await.expect("worker ends");
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_drops_the_oldest_without_blocking() {
        let sink = Scripted::new("s", 0, SendError::Permanent(String::new()));
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::ZERO, 4),
            "h".into(),
            vec![sink.clone()],
            cancel.clone(),
        );
        // No await in between: the worker cannot run, so the queue fills.
        for i in 0..10 {
            n.enqueue(container_notice(&format!("p{i}"), i, Occasion::Alert));
        }
        assert_eq!(n.queue_depth(), 4);
        assert_eq!(n.stats().dropped.load(Ordering::Relaxed), 6);
        assert_eq!(n.stats().enqueued.load(Ordering::Relaxed), 10);
        settle().await;
        let projects: Vec<String> = sink
            .got()
            .iter()
            .filter_map(|m| m.project.clone())
            .collect();
        assert_eq!(projects, ["p6", "p7", "p8", "p9"]);
        cancel.cancel();
        handle.await.expect("worker ends");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_open_groups() {
        let sink = Scripted::new("s", 0, SendError::Permanent(String::new()));
        let cancel = CancellationToken::new();
        let (n, handle) = Notifier::start_with_sinks(
            &config(Duration::from_secs(60), 100),
            "h".into(),
            vec![sink.clone()],
            cancel.clone(),
        );
        n.enqueue(container_notice("shop", 1, Occasion::Alert));
        n.enqueue(container_notice("shop", 2, Occasion::Alert));
        n.enqueue_message(Message::plain("hello", "world"));
        settle().await;
        assert_eq!(
            sink.got().len(),
            2,
            "the plain message skips grouping; shop's first notice goes at once"
        );
        cancel.cancel();
        handle.await.expect("worker ends");
        assert_eq!(
            sink.got().len(),
            3,
            "the held follow-up went out on shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_deadline() {
        let stuck = Scripted::new("stuck", 1000, SendError::retryable("500"));
        let cancel = CancellationToken::new();
        let mut cfg = config(Duration::ZERO, 100);
        cfg.max_attempts = 1000;
        let (n, handle) =
            Notifier::start_with_sinks(&cfg, "h".into(), vec![stuck.clone()], cancel.clone());
        n.enqueue(container_notice("shop", 1, Occasion::Alert));
        settle().await;
        let t0 = Instant::now();
        cancel.cancel();
        handle.await.expect("worker ends");
        assert!(t0.elapsed() <= DRAIN_DEADLINE + Duration::from_millis(10));
    }

    #[test]
    fn backoff_doubles_and_honours_after() {
        assert_eq!(retry_delay(1, None), Duration::from_secs(1));
        assert_eq!(retry_delay(2, None), Duration::from_secs(2));
        assert_eq!(retry_delay(3, None), Duration::from_secs(4));
        assert_eq!(retry_delay(30, None), MAX_BACKOFF);
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(9999))),
            MAX_HONOURED_WAIT
        );
    }
}
