//! The runtime: wires sources, evaluation, `decide` and notification together.
//!
//! [`Core`] is the synchronous heart (observation or tick in, decisions out; it never reads a
//! clock). [`run`] is the async shell around it: it starts the sources, feeds the core from one
//! channel, hands decisions to the notifier, and shuts everything down on SIGTERM/SIGINT.

use crate::collect::{Observation, SourceId};
use crate::config::Config;
use crate::decide::{self, Action, AlertState, Timing};
use crate::evaluate::{EvalSettings, Tracker};
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
        }
    }

    /// Alert states to restore after a restart (from Redis), so a restart does not re-page.
    pub fn restore(&mut self, saved: Vec<(Signal, AlertState)>) {
        for (last, state) in saved {
            self.alerts
                .insert(last.key.clone(), Tracked { last, state });
        }
    }

    pub fn observe(&mut self, obs: &Observation, now: Timestamp) -> Vec<Decision> {
        let signals = self.tracker.observe(obs, now);
        self.apply(signals, now)
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

use crate::collect;
use crate::notify::{Notifier, Occasion};
use crate::serve::{self, Health};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_shared::docker::DockerClient;

/// How often time-driven transitions are evaluated. Cheap: no I/O.
const TICK: Duration = Duration::from_millis(500);
/// How long shutdown waits for queued notifications.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Observations in flight between the sources and the core. Sources wait when it is full; the
/// core only does in-memory work per observation, so it drains far faster than the engine emits.
const OBSERVATION_BUFFER: usize = 4096;

/// Runs the watchdog until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let health = Health::new(cfg.enabled);
    let server = match cfg.listen {
        Some(addr) => {
            let (bound, handle) = serve::serve(addr, health.clone(), None, cancel.clone()).await?;
            tracing::info!(listen.addr = %bound, "Serving /healthz.");
            Some(handle)
        }
        None => None,
    };

    if !cfg.enabled {
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
    let (tx, mut rx) = mpsc::channel::<Observation>(OBSERVATION_BUFFER);
    let mut sources = tokio::task::JoinSet::new();
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

    let mut core = Core::new(&cfg);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let decisions = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            obs = rx.recv() => match obs {
                Some(obs) => {
                    note_source_health(&health, &obs);
                    core.observe(&obs, Timestamp::now())
                }
                None => break,
            },
            _ = ticker.tick() => {
                let now = Timestamp::now();
                health.last_tick_ms.store(now.as_millis(), Ordering::Relaxed);
                core.tick(now)
            }
        };
        for d in decisions {
            dispatch(&notifier, d);
        }
    }

    tracing::info!("Shutting down: stopping sources and draining notifications.");
    cancel.cancel();
    let drain = async {
        while sources.join_next().await.is_some() {}
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

fn dispatch(notifier: &Notifier, d: Decision) {
    let Some(occasion) = Occasion::from_action(&d.action) else {
        return;
    };
    tracing::info!(
        signal.key = %d.signal.key,
        signal.kind = %d.signal.kind,
        signal.severity = %d.signal.severity,
        decision = occasion.as_str(),
        "Signal decided."
    );
    notifier.notify(occasion, d.signal);
}

fn note_source_health(health: &Arc<Health>, obs: &Observation) {
    match obs {
        Observation::Source {
            source: SourceId::DockerEvents | SourceId::DockerSweep,
            ok,
            ..
        } => {
            health.docker_ok.store(*ok, Ordering::Relaxed);
        }
        Observation::Sweep(_) | Observation::Event(_) => {
            health.docker_ok.store(true, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// SIGTERM and SIGINT in one place: both cancel the token.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot install the SIGTERM handler.");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received."),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received."),
        }
        cancel.cancel();
    });
}
