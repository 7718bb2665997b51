//! The async daemon around [`Core`]: starts the sources, feeds the core from one channel,
//! hands decisions to the notifier, and shuts everything down on SIGTERM/SIGINT.

use super::core::{Core, Decision};
use crate::collect::{Observation, SourceId};
use crate::config::Config;
use crate::decide::Action;
use std::time::Duration;
use vigil_shared::time::Timestamp;

use crate::alert_file::{self, AlertFile};
use crate::change::StateChange;
use crate::collect;
use crate::incident::LoopSettings;
use crate::incident::runner::Runner;
use crate::metrics::Metrics;
use crate::notify::{Notifier, Occasion};
use crate::redis::alert_store::{self, AlertStore};
use crate::redis::audit_feed;
use crate::redis::audit_feed::AuditView;
use crate::redis::config::RedisConfig;
use crate::redis::link::{self as redis_link, RedisLink};
use crate::redis::request::{Requester, SendFailure, SentRequests};
use crate::serve::{self, Health};
use crate::status_page::{self, Board};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_docker::DockerClient;
use vigil_protocol::signing::Signer;
use vigil_shared::shutdown::DRAIN_DEADLINE;

/// How often time-driven transitions are evaluated. Cheap: no I/O.
const TICK: Duration = Duration::from_millis(500);
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
        let (failures_tx, failures_rx) = mpsc::channel(crate::redis::request::REQUEST_BUFFER);
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
    tokio::spawn(vigil_shared::shutdown::cancel_on_signal(
        cancel.clone(),
        DRAIN_DEADLINE,
    ));
    let health = Health::new(cfg.enabled);
    let board = status_page::new_board(&cfg);

    if !cfg.enabled {
        let server = start_server(&cfg, &health, None, &board, &cancel).await?;
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

    let ops = crate::operators::wiring::start(&cfg, &cancel).await?;
    board.set_silences(ops.clone());
    let facts = Arc::new(crate::notify::facts::FactBook::new(docker.clone()));
    let (notifier, notify_task) = Notifier::start_with(
        &cfg.notify,
        cfg.hostname.clone(),
        crate::notify::Extras {
            operators: Some(ops.clone()),
            facts: Some(facts.clone()),
        },
        cancel.child_token(),
    );
    let metrics = Metrics::new(Some(notifier.clone()));
    let server = start_server(&cfg, &health, Some(metrics.clone()), &board, &cancel).await?;
    let (tx, mut rx) = mpsc::channel::<Observation>(OBSERVATION_BUFFER);
    let mut sources = JoinSet::new();
    if let Some(redis) = &cfg.redis {
        let link = Arc::new(RedisLink::new(redis)?);
        sources.spawn(status_page::reader::run(
            link,
            board.clone(),
            cancel.clone(),
        ));
    }
    let mut core = Core::new(&cfg);
    let file_cancel = CancellationToken::new();
    let mut file_task = None;
    let mut file = None;
    let (mut remote, saved_incidents) = match (&cfg.redis, &cfg.data_dir) {
        (Some(redis), _) => {
            let (r, i) = Remote::start(&cfg, redis, &mut core, &tx, &mut sources, &cancel).await?;
            (Some(r), i)
        }
        (None, Some(dir)) => {
            let (f, task, incidents) = start_file(dir, &mut core, &file_cancel);
            file = Some(f);
            file_task = Some(task);
            (None, incidents)
        }
        (None, None) => (None, Vec::new()),
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
    crate::operators::wiring::publish_incidents(
        &ops,
        &board,
        saved_incidents.iter().map(|i| (i.key.as_str(), Some(i))),
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
    let (running_tx, running_rx) = tokio::sync::watch::channel(Vec::new());
    sources.spawn(collect::sweep::run(
        collect::sweep::Sweeper::new(docker.clone(), label, collect::sweep::INSPECT_CONCURRENCY),
        cfg.interval,
        running_tx,
        metrics.sweep_counters(),
        tx.clone(),
        cancel.clone(),
    ));
    let sampler = collect::stats::Sampler::new(docker.clone(), cfg.docker.stats_concurrency)
        .with_cgroups(collect::stats::CgroupSource::new(
            &cfg.host.cgroup_root,
            &cfg.host.proc_root,
        ))
        .with_counters(metrics.stats_counters());
    sources.spawn(collect::stats::run(
        sampler,
        running_rx,
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

    // Restart-policy reads the planner waits for (see `Runner::on_policy`).
    let mut inspections: JoinSet<(String, Result<String, String>)> = JoinSet::new();
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
                    board.observe(&obs, now);
                    // Before deciding, so an alert finds its container's facts at once.
                    match &obs {
                        Observation::Sweep(sweep) => facts.note_sweep(&sweep.containers),
                        Observation::Event(event) => facts.note_event(event),
                        _ => {}
                    }
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
            Some(Ok((id, policy))) = inspections.join_next(), if !inspections.is_empty() => {
                runner.on_policy(&mut core, &id, policy, Timestamp::now());
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
                crate::operators::wiring::publish_firing(&ops, core.firing());
                board.set_alerts(core.alerts());
                runner.tick(&mut core, now);
                decisions
            }
        };
        let now = Timestamp::now();
        for d in decisions {
            let remedy = remedy_for(&core, remote.as_ref(), &d);
            if let Some(r) = &remedy {
                ops.status.note_remedy(&d.signal.key, r);
            }
            if runner.on_decision(&mut core, &d, now) {
                let since = core.since_of(&d.signal.key);
                dispatch(&notifier, &metrics, d, since, remedy);
            }
        }
        for id in runner.take_inspections() {
            let docker = docker.clone();
            inspections.spawn(async move {
                let policy = docker
                    .inspect(&id)
                    .await
                    .map(|d| d.restart_policy)
                    .map_err(|e| e.to_string());
                (id, policy)
            });
        }
        save_changes(
            &mut core,
            &mut runner,
            remote.as_ref(),
            file.as_ref(),
            &ops,
            &board,
        );
    }

    tracing::info!("Shutting down: stopping sources and draining notifications.");
    cancel.cancel();
    save_changes(
        &mut core,
        &mut runner,
        remote.as_ref(),
        file.as_ref(),
        &ops,
        &board,
    );
    let drain = async {
        while sources.join_next().await.is_some() {}
        if let Some(remote) = remote.as_mut() {
            remote.store_cancel.cancel();
            while remote.tasks.join_next().await.is_some() {}
        }
        file_cancel.cancel();
        if let Some(task) = file_task {
            let _ = task.await;
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

/// Hands the core's state changes, with their incidents, to the alert store (Redis), or in
/// alert-only mode to the state file (dropped when neither is configured), and the incidents to
/// `/status` and the status page.
fn save_changes(
    core: &mut Core,
    runner: &mut Runner,
    remote: Option<&Remote>,
    file: Option<&AlertFile>,
    ops: &crate::operators::Operators,
    board: &Board,
) {
    let changes = runner.changes(core);
    crate::operators::wiring::publish_incidents(
        ops,
        board,
        changes.iter().map(|c| match c {
            StateChange::Put {
                signal, incident, ..
            } => (signal.key.as_str(), incident.as_deref()),
            StateChange::Remove { key } => (key.as_str(), None),
        }),
    );
    if let Some(remote) = remote {
        for change in changes {
            remote.store.save(change);
        }
    } else if let Some(file) = file {
        for change in changes {
            file.save(change);
        }
    }
}

/// Alert-only mode with a data directory: restores the saved alert states into `core` and
/// starts the state file's writer. A file that cannot be read is logged and left alone until
/// the first change replaces it.
fn start_file(
    dir: &std::path::Path,
    core: &mut Core,
    cancel: &CancellationToken,
) -> (
    AlertFile,
    tokio::task::JoinHandle<()>,
    Vec<crate::incident::Incident>,
) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(
            data_dir = %dir.display(),
            error = %e,
            "Cannot create the data directory: alert state will not survive a restart."
        );
    }
    let saved = match alert_file::load(dir) {
        Ok(saved) => {
            tracing::info!(
                alerts.restored = saved.len(),
                file = %alert_file::path_in(dir).display(),
                "Alert state restored from the state file."
            );
            saved
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "Alert state not restored: what fired before the restart may alert again."
            );
            Vec::new()
        }
    };
    let mut states = Vec::with_capacity(saved.len());
    let mut incidents = Vec::new();
    for s in &saved {
        incidents.extend(s.incident.clone());
        states.push((s.signal.clone(), s.state));
    }
    core.restore(states);
    let (file, task) = AlertFile::start(dir.to_path_buf(), saved, cancel.clone());
    (file, task, incidents)
}

/// What an alert says Vigil does about it: the planned remediation, requested or not.
fn remedy_for(core: &Core, remote: Option<&Remote>, d: &Decision) -> Option<String> {
    let plan = core.remediation_for(d)?;
    let requested = remote.and_then(|r| r.requester.as_ref()).is_some();
    Some(crate::operators::wiring::remedy_text(&plan, requested))
}

fn dispatch(
    notifier: &Notifier,
    metrics: &Metrics,
    d: Decision,
    since: Option<Timestamp>,
    remedy: Option<String>,
) {
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
    notifier.enqueue(
        crate::notify::Notice::new(occasion, d.signal, notifier.host())
            .with_since(since)
            .with_remedy(remedy),
    );
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
    board: &Arc<Board>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let render: Option<serve::MetricsRender> =
        metrics.map(|m| Arc::new(move || m.render()) as serve::MetricsRender);
    let web = status_page::Web {
        board: board.clone(),
        access: status_page::Access::new(cfg.listen_token.as_ref()),
    };
    let (bound, handle) =
        serve::serve(addr, health.clone(), render, Some(web), cancel.clone()).await?;
    tracing::info!(
        listen.addr = %bound,
        token_required = cfg.listen_token.is_some(),
        "Serving the status page, /api/status, /healthz and /metrics."
    );
    Ok(Some(handle))
}
