//! The runtime: wires sources, evaluation, `decide` and notification together.
//!
//! [`Core`] is the synchronous heart (observation or tick in, decisions out; it never reads a
//! clock). [`run`] is the async shell around it: it starts the sources, feeds the core from one
//! channel, hands decisions to the notifier, and shuts everything down on SIGTERM/SIGINT.
//!
//! With Redis configured, `run` also restores the alert states saved before a restart, saves
//! every state change ([`crate::alert_store`]), sends a signed request for each alert the
//! planner has a remediation for ([`crate::plan`], [`crate::request`]), probes Redis and the
//! executor's heartbeat ([`crate::redis_link`]) and tells people what the executor did
//! ([`crate::audit_feed`]). All of that hangs off bounded channels: none of it can hold up
//! detection.

use crate::collect::{Observation, SourceId};
use crate::config::Config;
use crate::decide::{self, Action, AlertState, Timing};
use crate::evaluate::{EvalSettings, Tracker};
use crate::plan::{self, Remediation};
use crate::signals::{Signal, SignalKind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vigil_shared::time::Timestamp;

/// One outcome of `decide` that someone should hear about.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub signal: Signal,
}

/// A key whose alert state changed, for the alert store.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    /// The key's state (not `Inactive`) and its latest signal.
    Put {
        signal: Box<Signal>,
        state: AlertState,
        /// The key's remediation incident, attached by [`crate::incident::runner::Runner`].
        incident: Option<Box<crate::incident::Incident>>,
    },
    /// The key went back to `Inactive`.
    Remove { key: String },
}

#[derive(Debug, Clone)]
struct Tracked {
    last: Signal,
    state: AlertState,
}

/// Evaluation plus one alert state per signal key. Pure: `now` comes in with every call.
pub struct Core {
    tracker: Tracker,
    alerts: BTreeMap<String, Tracked>,
    timings: BTreeMap<SignalKind, Timing>,
    disabled: BTreeSet<SignalKind>,
    /// Keys whose state changed since the last [`Core::take_changes`].
    changed: BTreeSet<String>,
    /// Container keys restored from Redis that no sweep has confirmed yet. A container removed
    /// while the watchdog was down never produces a signal again, so the first good sweep
    /// resolves these instead of letting them re-alert until their TTL.
    unconfirmed: BTreeSet<String>,
    /// Keys whose container Vigil is acting on: their inactive `container_unhealthy` signals
    /// (the restart's `starting`) are not recoveries unless the engine said `healthy`.
    held: BTreeSet<String>,
}

impl Core {
    pub fn new(cfg: &Config) -> Core {
        let timings = SignalKind::ALL
            .into_iter()
            .map(|k| {
                let base = decide::default_timing(k);
                let t = match cfg.alerts.overrides.get(&k) {
                    Some(o) => decide::apply_override(base, o),
                    None => base,
                };
                (k, t)
            })
            .collect();
        Core {
            tracker: Tracker::new(EvalSettings::from_config(cfg)),
            alerts: BTreeMap::new(),
            timings,
            disabled: cfg.alerts.disabled.iter().copied().collect(),
            changed: BTreeSet::new(),
            unconfirmed: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// Keys under remediation (see the `held` field).
    pub fn set_held(&mut self, held: BTreeSet<String>) {
        self.held = held;
    }

    /// Whether the key's signal is active and alerting (pending or firing).
    pub fn is_firing(&self, key: &str) -> bool {
        self.alerts.get(key).is_some_and(|t| {
            t.last.active
                && matches!(
                    t.state,
                    AlertState::Firing { .. } | AlertState::Pending { .. }
                )
        })
    }

    /// Whether the key has an alert that has not recovered yet (pending, firing or resolving).
    pub fn is_open(&self, key: &str) -> bool {
        self.alerts
            .get(key)
            .is_some_and(|t| t.state != AlertState::Inactive)
    }

    /// The key's latest signal and state, as the store keeps them.
    pub fn stored(&self, key: &str) -> Option<(Signal, AlertState)> {
        self.alerts.get(key).map(|t| (t.last.clone(), t.state))
    }

    /// Alert states to restore after a restart (from Redis), so a restart does not re-page.
    pub fn restore(&mut self, saved: Vec<(Signal, AlertState)>) {
        for (last, state) in saved {
            if last.kind.is_container() {
                self.unconfirmed.insert(last.key.clone());
            }
            self.alerts
                .insert(last.key.clone(), Tracked { last, state });
        }
    }

    pub fn observe(&mut self, obs: &Observation, now: Timestamp) -> Vec<Decision> {
        let mut signals = self.tracker.observe(obs, now);
        if let Observation::Sweep(sweep) = obs {
            signals.extend(self.resolve_vanished(sweep, now));
        }
        self.apply(signals, now)
    }

    /// Inactive signals for restored container keys whose container is not in `sweep`.
    fn resolve_vanished(&mut self, sweep: &crate::collect::Sweep, now: Timestamp) -> Vec<Signal> {
        if self.unconfirmed.is_empty() {
            return Vec::new();
        }
        let present: BTreeSet<&str> = sweep
            .containers
            .iter()
            .map(|c| c.container.id.as_str())
            .collect();
        let mut out = Vec::new();
        for key in std::mem::take(&mut self.unconfirmed) {
            let Some(tracked) = self.alerts.get(&key) else {
                continue;
            };
            let id = tracked.last.subject.container_id.as_deref().unwrap_or("");
            if !present.contains(id) {
                let mut gone = tracked.last.clone();
                gone.active = false;
                gone.detail = "container no longer exists".to_string();
                gone.observed_at = now;
                out.push(gone);
            }
        }
        out
    }

    /// Time-driven transitions: pending signals reaching `for`, re-alerts, recoveries.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Decision> {
        let signals = self.tracker.tick(now);
        let mut out = self.apply(signals, now);
        let mut idle = Vec::new();
        for (key, tracked) in self.alerts.iter_mut() {
            if tracked.state == AlertState::Inactive {
                if !tracked.last.active {
                    idle.push(key.clone());
                }
                continue;
            }
            let timing = self
                .timings
                .get(&tracked.last.kind)
                .copied()
                .unwrap_or_else(|| decide::default_timing(tracked.last.kind));
            let (action, next) = decide::decide(&tracked.last, &tracked.state, now, &timing);
            if next != tracked.state {
                self.changed.insert(key.clone());
            }
            tracked.state = next;
            if action != Action::None {
                out.push(Decision {
                    action,
                    signal: tracked.last.clone(),
                });
            }
        }
        for key in idle {
            self.alerts.remove(&key);
        }
        out
    }

    /// Keys whose alert state changed since the last call are persisted by the caller.
    pub fn state_of(&self, key: &str) -> Option<&AlertState> {
        self.alerts.get(key).map(|t| &t.state)
    }

    /// Every key whose alert state changed since the last call, as the store should see it.
    /// States restored by [`Core::restore`] are not changes.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|key| match self.alerts.get(&key) {
                Some(t) if t.state != AlertState::Inactive => StateChange::Put {
                    signal: Box::new(t.last.clone()),
                    state: t.state,
                    incident: None,
                },
                _ => StateChange::Remove { key },
            })
            .collect()
    }

    /// The remediation to request for a decision: only for an `Alert` (never a re-alert or a
    /// recovery) about a container the tracker knows, and only what the planner proposes.
    pub fn remediation_for(&self, decision: &Decision) -> Option<Remediation> {
        if decision.action != Action::Alert || !decision.signal.kind.is_container() {
            return None;
        }
        let id = decision.signal.subject.container_id.as_deref()?;
        let history = self.tracker.history_of(id)?;
        plan::plan(&decision.signal, &history)
    }

    /// When the condition behind a key started, while it is pending, firing or resolving.
    pub fn since_of(&self, key: &str) -> Option<Timestamp> {
        match self.alerts.get(key)?.state {
            AlertState::Pending { since } | AlertState::Firing { since, .. } => Some(since),
            AlertState::Resolving { firing_since, .. } => Some(firing_since),
            AlertState::Inactive => None,
        }
    }

    /// Signals currently firing, by kind (for metrics).
    pub fn firing_by_kind(&self) -> BTreeMap<SignalKind, usize> {
        let mut m = BTreeMap::new();
        for t in self.alerts.values() {
            if matches!(
                t.state,
                AlertState::Firing { .. } | AlertState::Resolving { .. }
            ) {
                *m.entry(t.last.kind).or_insert(0) += 1;
            }
        }
        m
    }

    fn apply(&mut self, signals: Vec<Signal>, now: Timestamp) -> Vec<Decision> {
        let mut out = Vec::new();
        for signal in signals {
            if self.disabled.contains(&signal.kind) {
                continue;
            }
            if !signal.active
                && signal.kind == SignalKind::ContainerUnhealthy
                && signal.detail.is_empty()
                && self.held.contains(&signal.key)
            {
                continue;
            }
            let timing = self
                .timings
                .get(&signal.kind)
                .copied()
                .unwrap_or_else(|| decide::default_timing(signal.kind));
            let prev = self
                .alerts
                .get(&signal.key)
                .map(|t| t.state)
                .unwrap_or_default();
            if !signal.active && prev == AlertState::Inactive {
                continue;
            }
            let (action, next) = decide::decide(&signal, &prev, now, &timing);
            if next != prev {
                self.changed.insert(signal.key.clone());
            }
            if action != Action::None {
                out.push(Decision {
                    action,
                    signal: signal.clone(),
                });
            }
            self.alerts.insert(
                signal.key.clone(),
                Tracked {
                    last: signal,
                    state: next,
                },
            );
        }
        out
    }
}

use crate::alert_store::{self, AlertStore};
use crate::audit_feed;
use crate::audit_feed::AuditView;
use crate::collect;
use crate::config::RedisConfig;
use crate::incident::LoopSettings;
use crate::incident::runner::Runner;
use crate::metrics::Metrics;
use crate::notify::{Notifier, Occasion};
use crate::redis_link::{self, RedisLink};
use crate::request::{Requester, SendFailure, SentRequests};
use crate::serve::{self, Health};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_shared::docker::DockerClient;
use vigil_shared::signing::Signer;

/// How often time-driven transitions are evaluated. Cheap: no I/O.
const TICK: Duration = Duration::from_millis(500);
/// How long shutdown waits for queued notifications.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Observations in flight between the sources and the core. Sources wait when it is full; the
/// core only does in-memory work per observation, so it drains far faster than the engine emits.
const OBSERVATION_BUFFER: usize = 4096;
/// How long start-up waits for the saved alert states before going on without them.
const RESTORE_DEADLINE: Duration = Duration::from_secs(10);
/// Audit records read but not yet handled by the core loop.
const AUDIT_BUFFER: usize = 1024;
/// Longest wait of the audit feed's blocking read, plus slack.
const AUDIT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that needs Redis: the alert store, the request publisher, the audit feed and the
/// Redis/executor probe. Only exists when Redis is configured.
struct Remote {
    store: AlertStore,
    /// None when no signing key is configured (then nothing is requested).
    requester: Option<Requester>,
    sent: Arc<SentRequests>,
    /// Audit records from the feed, and requests the publisher could not add.
    /// Taken by the run loop.
    audit_rx: Option<mpsc::Receiver<AuditView>>,
    failures_rx: Option<mpsc::Receiver<SendFailure>>,
    /// The store's writer, the publisher and the audit feed.
    tasks: JoinSet<()>,
    /// Stops the store's writer once the core's last changes are queued.
    store_cancel: CancellationToken,
}

impl Remote {
    /// Connects (lazily), restores the saved alert states into `core`, and starts the tasks.
    /// The probe is a source, so it joins `sources`.
    async fn start(
        cfg: &Config,
        redis: &RedisConfig,
        core: &mut Core,
        tx: &mpsc::Sender<Observation>,
        sources: &mut JoinSet<()>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(Remote, Vec<crate::incident::Incident>)> {
        let link = Arc::new(RedisLink::new(redis)?);
        let mut incidents = Vec::new();
        match tokio::time::timeout(RESTORE_DEADLINE, alert_store::load(&link)).await {
            Ok(Ok(saved)) => {
                tracing::info!(
                    alerts.restored = saved.len(),
                    "Alert state restored from Redis."
                );
                let mut states = Vec::with_capacity(saved.len());
                for s in saved {
                    incidents.extend(s.incident);
                    states.push((s.signal, s.state));
                }
                core.restore(states);
            }
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "Alert state not restored from Redis: what fired before the restart may alert again."
            ),
            Err(_) => tracing::warn!(
                deadline_s = RESTORE_DEADLINE.as_secs(),
                "Alert state not restored from Redis in time: what fired before the restart may \
                 alert again."
            ),
        }
        let mut tasks = JoinSet::new();
        let store_cancel = CancellationToken::new();
        let (store, writer) = AlertStore::start(link.clone(), store_cancel.clone());
        tasks.spawn(async move {
            let _ = writer.await;
        });
        let sent = Arc::new(SentRequests::default());
        let (failures_tx, failures_rx) = mpsc::channel(crate::request::REQUEST_BUFFER);
        let (audit_tx, audit_rx) = mpsc::channel(AUDIT_BUFFER);
        let requester = match &cfg.signing {
            Some(signing) => {
                let signer = Signer::from_key_file(signing.key_id.clone(), &signing.key_file)?;
                let (requester, publisher) = Requester::start(
                    link.clone(),
                    signer,
                    cfg.deployment.clone(),
                    sent.clone(),
                    failures_tx,
                    cancel.clone(),
                );
                tasks.spawn(async move {
                    let _ = publisher.await;
                });
                Some(requester)
            }
            None => {
                tracing::warn!(
                    "No signing key configured: remediation is planned but not requested."
                );
                None
            }
        };
        tasks.spawn(audit_feed::run(
            link.dedicated(AUDIT_READ_TIMEOUT),
            audit_tx,
            cancel.clone(),
        ));
        sources.spawn(redis_link::probe(
            link,
            cfg.interval,
            tx.clone(),
            cancel.clone(),
        ));
        let remote = Remote {
            store,
            requester,
            sent,
            audit_rx: Some(audit_rx),
            failures_rx: Some(failures_rx),
            tasks,
            store_cancel,
        };
        Ok((remote, incidents))
    }
}

/// Runs the watchdog until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(vigil_shared::shutdown::cancel_on_signal(cancel.clone()));
    let health = Health::new(cfg.enabled);

    if !cfg.enabled {
        let server = start_server(&cfg, &health, None, &cancel).await?;
        tracing::warn!(
            "WATCHDOG_ENABLED=false: the watchdog is inert. It watches nothing, sends nothing \
             and requests nothing until re-enabled and restarted."
        );
        cancel.cancelled().await;
        if let Some(h) = server {
            let _ = h.await;
        }
        return Ok(());
    }

    tracing::info!(summary = %cfg.summary().replace('\n', "; "), "Vigil watchdog starting.");
    if !cfg.requests_enabled() {
        tracing::info!("Alert-only mode: no Redis configured, so no remediation is requested.");
    }

    let docker = DockerClient::new(&cfg.docker.host, cfg.docker.timeout)?;
    match docker.negotiate().await {
        Ok(v) => tracing::info!(
            docker.version = %v.version,
            docker.api_version = docker.api_version().unwrap_or_default(),
            "Connected to the Docker engine."
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "Docker engine not reachable yet; will keep trying and report docker_unreachable."
        ),
    }

    let (notifier, notify_task) =
        Notifier::start(&cfg.notify, cfg.hostname.clone(), cancel.child_token());
    let metrics = Metrics::new(Some(notifier.clone()));
    let server = start_server(&cfg, &health, Some(metrics.clone()), &cancel).await?;
    let (tx, mut rx) = mpsc::channel::<Observation>(OBSERVATION_BUFFER);
    let mut sources = JoinSet::new();
    let mut core = Core::new(&cfg);
    let (mut remote, saved_incidents) = match &cfg.redis {
        Some(redis) => {
            let (r, i) = Remote::start(&cfg, redis, &mut core, &tx, &mut sources, &cancel).await?;
            (Some(r), i)
        }
        None => (None, Vec::new()),
    };
    if let Some(requester) = remote.as_ref().and_then(|r| r.requester.as_ref()) {
        metrics.attach_requests(requester.stats().clone());
    }
    let mut runner = Runner::new(
        LoopSettings::default(),
        remote.as_ref().and_then(|r| r.requester.clone()),
        notifier.clone(),
        metrics.clone(),
        remote
            .as_ref()
            .map_or_else(Default::default, |r| r.sent.clone()),
    );
    runner.restore(saved_incidents);
    let mut audit_rx = remote.as_mut().and_then(|r| r.audit_rx.take());
    let mut failures_rx = remote.as_mut().and_then(|r| r.failures_rx.take());
    let label = cfg.scope.label.clone();
    sources.spawn(collect::events::run(
        docker.clone(),
        tx.clone(),
        cancel.clone(),
    ));
    sources.spawn(collect::sweep::run(
        docker.clone(),
        label,
        cfg.interval,
        cfg.docker.stats_concurrency,
        tx.clone(),
        cancel.clone(),
    ));
    sources.spawn(collect::host::run(
        cfg.host.clone(),
        cfg.interval,
        tx.clone(),
        cancel.clone(),
    ));
    sources.spawn(collect::deps::run(
        cfg.dependencies.clone(),
        cfg.interval,
        tx.clone(),
        cancel.clone(),
    ));
    if let Some(app) = cfg.app.clone() {
        sources.spawn(collect::app::run(
            app,
            cfg.interval,
            tx.clone(),
            cancel.clone(),
        ));
    }
    drop(tx);

    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let decisions = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            obs = rx.recv() => match obs {
                Some(obs) => {
                    let now = Timestamp::now();
                    note_source_health(&health, &metrics, &obs, now);
                    let decisions = core.observe(&obs, now);
                    if let Observation::Event(event) = &obs {
                        let latency = Timestamp::now().since(event.at());
                        for _ in decisions.iter().filter(|d| d.action == Action::Alert) {
                            metrics.detection_latency(latency);
                        }
                    }
                    decisions
                }
                None => break,
            },
            rec = recv_some(audit_rx.as_mut()) => {
                runner.on_audit(&mut core, rec, Timestamp::now());
                Vec::new()
            }
            failure = recv_some(failures_rx.as_mut()) => {
                runner.on_send_failure(&mut core, failure, Timestamp::now());
                Vec::new()
            }
            _ = ticker.tick() => {
                let now = Timestamp::now();
                health.last_tick_ms.store(now.as_millis(), Ordering::Relaxed);
                let decisions = core.tick(now);
                metrics.set_firing(&core.firing_by_kind());
                runner.tick(&mut core, now);
                decisions
            }
        };
        let now = Timestamp::now();
        for d in decisions {
            if runner.on_decision(&mut core, &d, now) {
                dispatch(&notifier, &metrics, d);
            }
        }
        save_changes(&mut core, &mut runner, remote.as_ref());
    }

    tracing::info!("Shutting down: stopping sources and draining notifications.");
    cancel.cancel();
    save_changes(&mut core, &mut runner, remote.as_ref());
    let drain = async {
        while sources.join_next().await.is_some() {}
        if let Some(remote) = remote.as_mut() {
            remote.store_cancel.cancel();
            while remote.tasks.join_next().await.is_some() {}
        }
        let _ = notify_task.await;
        if let Some(h) = server {
            let _ = h.await;
        }
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!(
            deadline_s = DRAIN_DEADLINE.as_secs(),
            "Shutdown deadline passed; exiting with work still queued."
        );
    }
    Ok(())
}

/// The next item of an optional channel; pends for ever when there is none or it closed.
async fn recv_some<T>(rx: Option<&mut mpsc::Receiver<T>>) -> T {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(v) => v,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Hands the core's state changes, with their incidents, to the alert store (dropped in
/// alert-only mode).
fn save_changes(core: &mut Core, runner: &mut Runner, remote: Option<&Remote>) {
    let changes = runner.changes(core);
    if let Some(remote) = remote {
        for change in changes {
            remote.store.save(change);
        }
    }
}

fn dispatch(notifier: &Notifier, metrics: &Metrics, d: Decision) {
    let Some(occasion) = Occasion::from_action(&d.action) else {
        return;
    };
    metrics.decision(d.signal.kind, occasion.as_str());
    tracing::info!(
        signal.key = %d.signal.key,
        signal.kind = %d.signal.kind,
        signal.severity = %d.signal.severity,
        decision = occasion.as_str(),
        "Signal decided."
    );
    notifier.notify(occasion, d.signal);
}

fn note_source_health(health: &Health, metrics: &Metrics, obs: &Observation, now: Timestamp) {
    match obs {
        Observation::Source {
            source: source @ (SourceId::DockerEvents | SourceId::DockerSweep),
            ok,
            ..
        } => {
            health.docker_ok.store(*ok, Ordering::Relaxed);
            if !ok {
                metrics.docker_failure(source.as_str());
            }
        }
        Observation::Sweep(sweep) => {
            health.docker_ok.store(true, Ordering::Relaxed);
            metrics.sweep_duration(now.since(sweep.at));
        }
        Observation::Event(_) => {
            health.docker_ok.store(true, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Serves `/healthz` (and `/metrics` when given) on `WATCHDOG_LISTEN`, if set.
async fn start_server(
    cfg: &Config,
    health: &Arc<Health>,
    metrics: Option<Arc<Metrics>>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let render: Option<serve::MetricsRender> =
        metrics.map(|m| Arc::new(move || m.render()) as serve::MetricsRender);
    let (bound, handle) = serve::serve(addr, health.clone(), render, cancel.clone()).await?;
    tracing::info!(listen.addr = %bound, "Serving /healthz and /metrics.");
    Ok(Some(handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Sweep;
    use crate::evaluate::LABEL_REMEDIATE;
    use vigil_shared::docker::{ContainerDetails, ContainerRef, Health, RunState};
    use vigil_shared::protocol::Action as RequestAction;

    const S: i64 = 1000;

    fn container(name: &str, health: Health, opted_in: bool) -> ContainerDetails {
        let mut labels = BTreeMap::new();
        if opted_in {
            labels.insert(LABEL_REMEDIATE.to_string(), "true".to_string());
        }
        ContainerDetails {
            container: ContainerRef {
                id: format!("id-{name}"),
                name: name.to_string(),
                project: Some("shop".into()),
                service: Some("web".into()),
            },
            image: "img".into(),
            labels,
            state: RunState::Running,
            health,
            health_failing_streak: 0,
            exit_code: 0,
            oom_killed: false,
            restart_count: 0,
            restart_policy: String::new(),
            started_at: None,
            finished_at: None,
            memory_limit: 0,
            stop_timeout: None,
        }
    }

    fn sweep(at: i64, containers: Vec<ContainerDetails>) -> Observation {
        Observation::Sweep(Sweep {
            at: Timestamp(at),
            containers,
            stats: BTreeMap::new(),
        })
    }

    fn core() -> Core {
        Core::new(&Config::with_hostname("test"))
    }

    fn alerts(decisions: &[Decision]) -> Vec<&Decision> {
        decisions
            .iter()
            .filter(|d| d.action == Action::Alert)
            .collect()
    }

    #[test]
    fn an_opted_in_unhealthy_alert_plans_a_restart_once() {
        let mut c = core();
        let ds = c.observe(
            &sweep(0, vec![container("shop-web-1", Health::Unhealthy, true)]),
            Timestamp(0),
        );
        let a = alerts(&ds);
        assert_eq!(a.len(), 1);
        let r = c.remediation_for(a[0]).expect("a remediation");
        assert_eq!(r.action, RequestAction::Restart);
        assert_eq!(c.since_of(&a[0].signal.key), Some(Timestamp(0)));
        // Still unhealthy an hour later: a re-alert, never a second request.
        let later = c.tick(Timestamp(3600 * S));
        assert!(
            later.iter().any(|d| d.action == Action::Realert),
            "{later:?}"
        );
        assert!(later.iter().all(|d| c.remediation_for(d).is_none()));
    }

    #[test]
    fn no_label_no_plan() {
        let mut c = core();
        let ds = c.observe(
            &sweep(0, vec![container("shop-web-1", Health::Unhealthy, false)]),
            Timestamp(0),
        );
        let a = alerts(&ds);
        assert_eq!(a.len(), 1);
        assert_eq!(c.remediation_for(a[0]), None);
    }

    #[test]
    fn changes_are_reported_once_and_restored_state_does_not_re_alert() {
        let mut c = core();
        let unhealthy = sweep(0, vec![container("shop-web-1", Health::Unhealthy, true)]);
        c.observe(&unhealthy, Timestamp(0));
        let changes = c.take_changes();
        let saved: Vec<(Signal, AlertState)> = changes
            .iter()
            .filter_map(|ch| match ch {
                StateChange::Put { signal, state, .. } => Some((signal.as_ref().clone(), *state)),
                StateChange::Remove { .. } => None,
            })
            .collect();
        assert_eq!(saved.len(), 1, "{changes:?}");
        assert!(matches!(saved[0].1, AlertState::Firing { .. }));
        assert!(c.take_changes().is_empty(), "taken once");
        // Same state again: no change to store.
        c.observe(
            &sweep(
                2 * S,
                vec![container("shop-web-1", Health::Unhealthy, true)],
            ),
            Timestamp(2 * S),
        );
        assert!(c.take_changes().is_empty());

        // A new process with the saved state: the same observation alerts nothing.
        let mut after = core();
        after.restore(saved.clone());
        assert!(after.take_changes().is_empty(), "restoring is not a change");
        let ds = after.observe(
            &sweep(
                5 * S,
                vec![container("shop-web-1", Health::Unhealthy, true)],
            ),
            Timestamp(5 * S),
        );
        assert!(alerts(&ds).is_empty(), "{ds:?}");
        // Without it, it would have alerted.
        let mut fresh = core();
        let ds = fresh.observe(
            &sweep(
                5 * S,
                vec![container("shop-web-1", Health::Unhealthy, true)],
            ),
            Timestamp(5 * S),
        );
        assert_eq!(alerts(&ds).len(), 1);

        // Healthy again: recovery, and the key is removed from the store.
        let ds = after.observe(
            &sweep(9 * S, vec![container("shop-web-1", Health::Healthy, true)]),
            Timestamp(9 * S),
        );
        assert!(
            ds.iter()
                .any(|d| matches!(d.action, Action::Recovery { .. })),
            "{ds:?}"
        );
        assert_eq!(
            after.take_changes(),
            vec![StateChange::Remove {
                key: saved[0].0.key.clone()
            }]
        );
    }

    #[test]
    fn a_restored_alert_for_a_container_gone_while_down_recovers_on_the_first_sweep() {
        let mut c = core();
        c.observe(
            &sweep(0, vec![container("shop-web-1", Health::Unhealthy, true)]),
            Timestamp(0),
        );
        let saved: Vec<(Signal, AlertState)> = c
            .take_changes()
            .into_iter()
            .filter_map(|ch| match ch {
                StateChange::Put { signal, state, .. } => Some((*signal, state)),
                StateChange::Remove { .. } => None,
            })
            .collect();
        assert_eq!(saved.len(), 1);
        let mut after = core();
        after.restore(saved);
        // The container was removed while the watchdog was down: the sweep no longer lists it.
        let ds = after.observe(
            &sweep(5 * S, vec![container("other-1", Health::Healthy, false)]),
            Timestamp(5 * S),
        );
        assert!(
            ds.iter()
                .any(|d| matches!(d.action, Action::Recovery { .. })
                    && d.signal.subject.container.as_deref() == Some("shop-web-1")),
            "{ds:?}"
        );
        // And it does not re-alert later.
        let later = after.tick(Timestamp(3 * 3600 * S));
        assert!(later.is_empty(), "{later:?}");
    }
}
