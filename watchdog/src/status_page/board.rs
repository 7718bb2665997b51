//! The board: what the status page shows, kept up to date by the engine (observations, alert
//! states, requests) and by the executor reader (audit records, heartbeat, pause). Reads take a
//! snapshot ([`Board::snapshot`]) under a short lock; nothing here does I/O.

use super::history::{self, Decision, History, MAX_CONTAINERS, MarkRec, Shown, bounded, window_ms};
use super::model::{
    ActionView, ContainerView, DiskView, ExecutorView, HistoryView, HostView, Incident, Mark,
    RemediationView, SCHEMA_NAME, SCHEMA_VERSION, SilenceView, StatusDoc, Subject, TimelinePoint,
    WatchdogView,
};
use super::remedy;
use crate::collect::{Observation, SourceId};
use crate::decide::AlertState;
use crate::incident::Incident as LoopIncident;
use crate::operators::SilenceView as Silences;
use crate::operators::book::{Ack, Silence};
use crate::signals::Signal;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vigil_docker::{EventAction, Health};
use vigil_shared::time::Timestamp;

/// Recent executor decisions kept for the page.
pub const MAX_ACTIONS: usize = 50;
/// How long a container that left the engine stays on the page (drawn "down").
pub const GONE_KEEP: Duration = Duration::from_secs(3600);
/// Containers whose audit marks arrive before the first sweep names them (start-up rebuild).
const MAX_ORPHANS: usize = 256;

/// The page reads audit records with the audit feed's own lenient view.
pub use crate::redis::audit_feed::{AuditView, TargetView};

/// Facts that do not change while the process runs.
#[derive(Debug, Clone)]
pub struct Meta {
    pub host: String,
    pub deployment: String,
    pub enabled: bool,
    pub remediation_configured: bool,
    pub started_at: Timestamp,
}

#[derive(Debug, Clone)]
struct Tracked {
    name: String,
    project: Option<String>,
    service: Option<String>,
    history: History,
    exit_code: Option<i64>,
    restart_count: u64,
    gone_since: Option<i64>,
    /// The last request the watchdog sent for it: (action, at).
    request: Option<(String, i64)>,
    /// The last audit record about it.
    audit: Option<AuditView>,
}

impl Tracked {
    fn bytes(&self, id: &str) -> usize {
        std::mem::size_of::<Tracked>()
            + history::entry_overhead()
            + id.len()
            + self.name.capacity()
            + self.project.as_ref().map_or(0, String::capacity)
            + self.service.as_ref().map_or(0, String::capacity)
            + self.history.bytes()
    }
}

#[derive(Debug, Default)]
struct State {
    containers: HashMap<String, Tracked>,
    orphan_marks: HashMap<String, Vec<MarkRec>>,
    alerts: Vec<(Signal, AlertState)>,
    /// The incident machine's open incidents, by signal key (a read-only copy).
    incidents: HashMap<String, LoopIncident>,
    actions: VecDeque<ActionView>,
    executor: ExecutorView,
    host: HostView,
    docker_ok: bool,
    last_sweep_at: Option<i64>,
    full_warned: bool,
}

/// Shared between the engine, the executor reader and the HTTP server.
pub struct Board {
    meta: Meta,
    state: Mutex<State>,
    /// The operators' silences and acks, once the engine set them up.
    silences: OnceLock<Arc<dyn Silences>>,
}

impl Board {
    pub fn new(meta: Meta) -> Board {
        Board {
            meta,
            state: Mutex::new(State {
                docker_ok: true,
                ..State::default()
            }),
            silences: OnceLock::new(),
        }
    }

    /// Where the page reads active silences and acknowledgements from (set once).
    pub fn set_silences(&self, view: Arc<dyn Silences>) {
        if self.silences.set(view).is_err() {
            tracing::debug!("Status page silences were already set; keeping the first.");
        }
    }

    /// The incident machine's incident for `key` after a step (None: it ended). The page shows
    /// its phase as the remediation state of the key's alert.
    pub fn note_incident(&self, key: &str, incident: Option<&LoopIncident>) {
        let mut st = self.lock();
        match incident {
            Some(i) => {
                st.incidents.insert(key.to_string(), i.clone());
            }
            None => {
                st.incidents.remove(key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one observation (the engine calls this for every one).
    pub fn observe(&self, obs: &Observation, now: Timestamp) {
        let mut st = self.lock();
        match obs {
            Observation::Sweep(sweep) => {
                st.docker_ok = true;
                st.last_sweep_at = Some(now.as_millis());
                let mut present = std::collections::HashSet::new();
                for d in &sweep.containers {
                    present.insert(d.container.id.as_str());
                    let shown = Shown::of(d);
                    let exit_code = (shown == Shown::Exited).then_some(d.exit_code);
                    let at = sweep.at.as_millis();
                    let st = &mut *st;
                    let Some(t) = entry(st, &d.container.id, &d.container.name) else {
                        continue;
                    };
                    t.name = bounded(&d.container.name);
                    t.project = d.container.project.as_deref().map(bounded);
                    t.service = d.container.service.as_deref().map(bounded);
                    t.restart_count = d.restart_count;
                    t.gone_since = None;
                    if t.history.set(shown, at) || shown == Shown::Exited {
                        t.exit_code = exit_code;
                    }
                }
                let keep = i64::try_from(GONE_KEEP.as_millis()).unwrap_or(i64::MAX);
                let now_ms = now.as_millis();
                st.containers.retain(|id, t| {
                    if present.contains(id.as_str()) {
                        return true;
                    }
                    let since = *t.gone_since.get_or_insert(now_ms);
                    t.history.set(Shown::Down, now_ms);
                    now_ms - since < keep
                });
                for t in st.containers.values_mut() {
                    t.history.prune(now_ms);
                }
                st.orphan_marks
                    .retain(|_, marks| marks.iter().any(|m| m.at >= now_ms - window_ms()));
            }
            Observation::Event(event) => {
                let at = event.at().as_millis();
                let Some(t) = st.containers.get_mut(&event.container.id) else {
                    return; // Not in scope, or not swept yet: the next sweep says.
                };
                let had_health = t.history.current().is_some_and(|p| {
                    matches!(p.state, Shown::Healthy | Shown::Unhealthy | Shown::Starting)
                });
                match &event.action {
                    EventAction::Die { exit_code } => {
                        t.history.set(Shown::Exited, at);
                        t.exit_code = *exit_code;
                    }
                    EventAction::Start => {
                        let s = if had_health {
                            Shown::Starting
                        } else {
                            Shown::Running
                        };
                        t.history.set(s, at);
                        t.exit_code = None;
                    }
                    EventAction::HealthStatus(h) => {
                        let s = match h {
                            Health::Healthy => Shown::Healthy,
                            Health::Unhealthy => Shown::Unhealthy,
                            Health::Starting => Shown::Starting,
                            Health::None => Shown::Running,
                        };
                        t.history.set(s, at);
                    }
                    EventAction::Destroy => {
                        t.history.set(Shown::Down, at);
                    }
                    _ => {}
                }
            }
            Observation::Host(sample) => {
                st.host = HostView {
                    sampled_at: Some(sample.at.as_millis()),
                    memory_total_bytes: Some(sample.mem_total_bytes),
                    memory_available_bytes: Some(sample.mem_available_bytes),
                    disks: sample
                        .disks
                        .iter()
                        .map(|d| DiskView {
                            path: d.path.clone(),
                            total_bytes: d.total_bytes,
                            available_bytes: d.available_bytes,
                        })
                        .collect(),
                };
            }
            Observation::Source {
                source: SourceId::DockerEvents | SourceId::DockerSweep,
                ok,
                ..
            } => st.docker_ok = *ok,
            _ => {}
        }
    }

    /// The engine's alert states (called on every tick); only firing and resolving ones show.
    pub fn set_alerts<'a>(&self, alerts: impl Iterator<Item = (&'a Signal, &'a AlertState)>) {
        let list: Vec<(Signal, AlertState)> = alerts
            .filter(|(_, s)| matches!(s, AlertState::Firing { .. } | AlertState::Resolving { .. }))
            .map(|(sig, s)| (sig.clone(), *s))
            .collect();
        let mut st = self.lock();
        // An incident lives only while its alert fires: drop copies whose end was not reported.
        st.incidents
            .retain(|k, _| list.iter().any(|(sig, _)| &sig.key == k));
        st.alerts = list;
    }

    /// The watchdog asked the executor for `action` on container `id`.
    pub fn note_request(&self, id: &str, action: &str, now: Timestamp) {
        let mut st = self.lock();
        if let Some(t) = st.containers.get_mut(id) {
            t.request = Some((action.to_string(), now.as_millis()));
            t.history.mark(MarkRec {
                at: now.as_millis(),
                seq: 0,
                decision: Decision::Requested,
            });
        }
    }

    /// One audit record (from the start-up rebuild or the live reader), oldest first.
    pub fn record_audit(&self, rec: AuditView, now: Timestamp) {
        let mut st = self.lock();
        let at = rec.ts.unwrap_or(now).as_millis();
        let decision = Decision::parse(&rec.decision);
        match decision {
            Decision::DryRun => st.executor.dry_run = Some(true),
            Decision::Executed | Decision::Failed => st.executor.dry_run = Some(false),
            _ => {}
        }
        let target = rec.target.clone().unwrap_or_default();
        if let Some(id) = target.id.as_deref() {
            let mark = MarkRec {
                at,
                seq: rec.seq,
                decision,
            };
            if let Some(t) = st.containers.get_mut(id) {
                t.history.mark(mark);
                t.audit = Some(rec.clone());
            } else if at >= now.as_millis() - window_ms()
                && (st.orphan_marks.len() < MAX_ORPHANS || st.orphan_marks.contains_key(id))
            {
                let marks = st.orphan_marks.entry(id.to_string()).or_default();
                if marks.len() < history::MAX_MARKS {
                    marks.push(mark);
                }
            }
        }
        if st.actions.iter().any(|a| a.audit_seq == rec.seq) {
            return;
        }
        if st.actions.len() == MAX_ACTIONS {
            st.actions.pop_back();
        }
        st.actions.push_front(ActionView {
            audit_seq: rec.seq,
            at: rec.ts.map(Timestamp::as_millis),
            action: rec.action.clone(),
            target: target.name.or(target.id).map(|s| bounded(&s)),
            project: target.project.map(|s| bounded(&s)),
            decision: rec.decision,
            reason: rec.reason,
            result: rec.result.filter(|r| !r.is_empty()),
            retry_at: rec.retry_at.map(Timestamp::as_millis),
        });
    }

    /// The executor facts read through Redis.
    pub fn set_executor(
        &self,
        heartbeat_ok: bool,
        heartbeat_at: Option<i64>,
        paused: bool,
        now: Timestamp,
    ) {
        let mut st = self.lock();
        st.executor.heartbeat_ok = Some(heartbeat_ok);
        st.executor.heartbeat_at = heartbeat_at;
        st.executor.paused = Some(paused);
        st.executor.checked_at = Some(now.as_millis());
    }

    /// Bytes the container history holds now.
    pub fn history_bytes(&self) -> usize {
        let st = self.lock();
        st.containers.iter().map(|(id, t)| t.bytes(id)).sum()
    }

    /// The whole document, as `/api/status` serves it and the page draws it.
    pub fn snapshot(&self, now: Timestamp) -> StatusDoc {
        // Read before taking the board's lock: the two locks are never held together.
        let (silences, acks) = self.silences.get().map_or_else(Default::default, |v| {
            (v.active_silences(now), v.active_acks(now))
        });
        let st = self.lock();
        let now_ms = now.as_millis();
        let window_start = now_ms - window_ms();
        let mut incidents: Vec<Incident> = st
            .alerts
            .iter()
            .map(|(sig, state)| incident(sig, state, &st, &silences, &acks))
            .collect();
        incidents.sort_by(|a, b| {
            severity_rank(&b.severity)
                .cmp(&severity_rank(&a.severity))
                .then(a.state.cmp(&b.state))
                .then(a.since.cmp(&b.since))
                .then(a.key.cmp(&b.key))
        });
        let mut containers: Vec<(Shown, ContainerView)> = st
            .containers
            .iter()
            .map(|(id, t)| {
                let current = t.history.current();
                let shown = current.map_or(Shown::Down, |p| p.state);
                let view = ContainerView {
                    id: id.clone(),
                    name: t.name.clone(),
                    project: t.project.clone(),
                    service: t.service.clone(),
                    state: shown.as_str().to_string(),
                    exit_code: t.exit_code,
                    restart_count: t.restart_count,
                    since: current.map_or(now_ms, |p| p.at),
                    timeline: t
                        .history
                        .points()
                        .map(|p| TimelinePoint {
                            at: p.at,
                            state: p.state.as_str().to_string(),
                        })
                        .collect(),
                    marks: t
                        .history
                        .marks()
                        .chain(st.orphan_marks.get(id).into_iter().flatten())
                        .filter(|m| m.at >= window_start)
                        .map(|m| Mark {
                            at: m.at,
                            decision: m.decision.as_str().to_string(),
                            audit_seq: (m.seq != 0).then_some(m.seq),
                        })
                        .collect(),
                };
                (shown, view)
            })
            .collect();
        containers.sort_by(|(sa, a), (sb, b)| {
            sb.is_bad()
                .cmp(&sa.is_bad())
                .then(sa.cmp(sb))
                .then(a.name.cmp(&b.name))
                .then(a.id.cmp(&b.id))
        });
        let bytes_now = st.containers.iter().map(|(id, t)| t.bytes(id)).sum();
        StatusDoc {
            schema: SCHEMA_NAME.to_string(),
            version: SCHEMA_VERSION,
            generated_at: now_ms,
            host: self.meta.host.clone(),
            deployment: self.meta.deployment.clone(),
            watchdog: WatchdogView {
                enabled: self.meta.enabled,
                started_at: self.meta.started_at.as_millis(),
                docker_ok: st.docker_ok,
                last_sweep_at: st.last_sweep_at,
                remediation_configured: self.meta.remediation_configured,
            },
            executor: st.executor.clone(),
            incidents,
            containers: containers.into_iter().map(|(_, v)| v).collect(),
            actions: st.actions.iter().cloned().collect(),
            silences: silences.iter().map(silence_view).collect(),
            host_signals: st.host.clone(),
            history: HistoryView {
                window_ms: window_ms(),
                max_points_per_container: history::MAX_POINTS,
                max_marks_per_container: history::MAX_MARKS,
                max_containers: MAX_CONTAINERS,
                bytes_per_container_bound: history::BYTES_PER_CONTAINER,
                bytes_now,
            },
        }
    }
}

/// The tracked container for `id`, created (with its orphaned marks) when there is room.
fn entry<'a>(st: &'a mut State, id: &str, name: &str) -> Option<&'a mut Tracked> {
    if !st.containers.contains_key(id) {
        if st.containers.len() >= MAX_CONTAINERS {
            if !st.full_warned {
                st.full_warned = true;
                tracing::warn!(
                    max = MAX_CONTAINERS,
                    container = name,
                    "Status page history is full; further containers are not shown."
                );
            }
            return None;
        }
        let mut history = History::default();
        for m in st.orphan_marks.remove(id).unwrap_or_default() {
            history.mark(m);
        }
        st.containers.insert(
            id.to_string(),
            Tracked {
                name: bounded(name),
                project: None,
                service: None,
                history,
                exit_code: None,
                restart_count: 0,
                gone_since: None,
                request: None,
                audit: None,
            },
        );
    }
    st.containers.get_mut(id)
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "high" => 2,
        "medium" => 1,
        _ => 0,
    }
}

fn silence_view(s: &Silence) -> SilenceView {
    SilenceView {
        id: bounded(&s.id),
        target: bounded(&s.target),
        until: s.until.as_millis(),
        reason: Some(bounded(&s.reason)).filter(|r| !r.is_empty()),
        by: Some(bounded(&s.by)).filter(|b| !b.is_empty()),
    }
}

fn incident(
    sig: &Signal,
    state: &AlertState,
    st: &State,
    silences: &[Silence],
    acks: &[Ack],
) -> Incident {
    let (label, since) = match state {
        AlertState::Resolving { firing_since, .. } => ("resolving", *firing_since),
        AlertState::Firing { since, .. } | AlertState::Pending { since } => ("firing", *since),
        AlertState::Inactive => ("inactive", sig.observed_at),
    };
    let ack = sig
        .subject
        .container
        .as_deref()
        .and_then(|c| acks.iter().find(|a| a.container == c));
    let tracked = sig
        .subject
        .container_id
        .as_deref()
        .and_then(|id| st.containers.get(id));
    Incident {
        key: sig.key.clone(),
        kind: sig.kind.as_str().to_string(),
        severity: sig.severity.as_str().to_string(),
        state: label.to_string(),
        since: since.as_millis(),
        subject: Subject {
            container: sig.subject.container.clone(),
            container_id: sig.subject.container_id.clone(),
            project: sig.subject.project.clone(),
            service: sig.subject.service.clone(),
            name: sig.subject.name.clone(),
        },
        cause: sig.detail.clone(),
        remediation: match st.incidents.get(&sig.key) {
            Some(inc) => Some(remedy::from_incident(inc)),
            None => tracked.and_then(|t| remediation(t, since.as_millis())),
        },
        silence: silences
            .iter()
            .find(|s| s.matches(&sig.subject))
            .map(silence_view),
        acked: ack.is_some(),
        acked_by: ack.map(|a| bounded(&a.by)),
    }
}

/// What was done about a container since `since`: the newer of its last request and its last
/// audit record.
fn remediation(t: &Tracked, since: i64) -> Option<RemediationView> {
    let audit = t
        .audit
        .as_ref()
        .filter(|a| a.ts.is_none_or(|ts| ts.as_millis() >= since));
    let request = t.request.as_ref().filter(|(_, at)| *at >= since);
    match (audit, request) {
        (Some(a), req) if req.is_none_or(|(_, at)| a.ts.is_none_or(|ts| ts.as_millis() >= *at)) => {
            let escalated = a.reason == "breaker_opened" || a.reason == "breaker";
            let state = if escalated {
                "escalated".to_string()
            } else {
                a.decision.clone()
            };
            let detail = a
                .result
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| a.reason.replace(['_', '-'], " "));
            Some(RemediationView {
                state,
                action: a.action.clone(),
                at: a.ts.map_or(since, Timestamp::as_millis),
                audit_seq: Some(a.seq),
                retry_at: a.retry_at.map(Timestamp::as_millis),
                detail,
                phase: None,
                attempts: None,
                executed: None,
                verify_until: None,
            })
        }
        (_, Some((action, at))) => Some(RemediationView {
            state: "requested".to_string(),
            action: Some(action.clone()),
            at: *at,
            audit_seq: None,
            retry_at: None,
            detail: String::new(),
            phase: None,
            attempts: None,
            executed: None,
            verify_until: None,
        }),
        _ => None,
    }
}
