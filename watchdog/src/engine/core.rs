//! The pure core: evaluation plus one alert state per signal key. Observations and ticks in,
//! decisions and state changes out; `now` comes in with every call and nothing here does I/O.

use crate::change::StateChange;
use crate::collect::Observation;
use crate::config::Config;
use crate::decide::{self, Action, AlertState, Timing};
use crate::evaluate::{EvalSettings, Tracker};
use crate::plan::{self, Remediation};
use crate::signals::{Signal, SignalKind};
use std::collections::{BTreeMap, BTreeSet};
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
        let plan = plan::plan(&decision.signal, &history)?;
        // A `start` is only right when Docker will not bring the container back by itself:
        // with the policy unknown (seen in events only), the caller inspects first.
        if plan.action == vigil_protocol::wire::Action::Start && !history.restart_policy_known {
            return None;
        }
        Some(plan)
    }

    /// The container whose restart policy must be read (an inspect) before `decision` can be
    /// planned: an alert the planner would answer with `start` for a container no sweep has
    /// shown yet. None when planning needs nothing more.
    pub fn awaits_policy(&self, decision: &Decision) -> Option<String> {
        if decision.action != Action::Alert || !decision.signal.kind.is_container() {
            return None;
        }
        let id = decision.signal.subject.container_id.as_deref()?;
        let history = self.tracker.history_of(id)?;
        let plan = plan::plan(&decision.signal, &history)?;
        (plan.action == vigil_protocol::wire::Action::Start && !history.restart_policy_known)
            .then(|| id.to_string())
    }

    /// Whether the tracker knows the container's restart policy (a sweep or an inspect).
    pub fn knows_policy(&self, container_id: &str) -> bool {
        self.tracker
            .history_of(container_id)
            .is_some_and(|h| h.restart_policy_known)
    }

    /// The restart policy an inspect read (see [`Core::awaits_policy`]).
    pub fn learn_restart_policy(&mut self, container_id: &str, policy: &str) {
        self.tracker.learn_restart_policy(container_id, policy);
    }

    /// When the condition behind a key started, while it is pending, firing or resolving.
    pub fn since_of(&self, key: &str) -> Option<Timestamp> {
        match self.alerts.get(key)?.state {
            AlertState::Pending { since } | AlertState::Firing { since, .. } => Some(since),
            AlertState::Resolving { firing_since, .. } => Some(firing_since),
            AlertState::Inactive => None,
        }
    }

    /// Signals currently firing (or resolving), with when they started, for `/status`.
    pub fn firing(&self) -> Vec<(Signal, Timestamp)> {
        self.alerts
            .values()
            .filter_map(|t| match t.state {
                AlertState::Firing { since, .. } => Some((t.last.clone(), since)),
                AlertState::Resolving { firing_since, .. } => Some((t.last.clone(), firing_since)),
                _ => None,
            })
            .collect()
    }

    /// Signals currently firing, by kind (for metrics).
    pub fn alerts(&self) -> impl Iterator<Item = (&Signal, &AlertState)> {
        self.alerts.values().map(|t| (&t.last, &t.state))
    }

    /// Signals currently firing, by kind (for metrics).
    pub fn firing_by_kind(&self) -> BTreeMap<SignalKind, usize> {
        let mut m = BTreeMap::new();
        for t in self.alerts.values() {
            if t.state.is_alerting() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Sweep;
    use crate::evaluate::LABEL_REMEDIATE;
    use vigil_docker::{ContainerDetails, ContainerRef, Health, RunState};
    use vigil_protocol::wire::Action as RequestAction;

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
            last_probe: None,
            stop_timeout: None,
        }
    }

    fn sweep(at: i64, containers: Vec<ContainerDetails>) -> Observation {
        Observation::Sweep(Sweep {
            at: Timestamp(at),
            containers,
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
    fn a_start_waits_for_the_restart_policy_of_a_container_seen_only_in_events() {
        use crate::collect::Observation as O;
        use vigil_docker::{ContainerEvent, EventAction};
        let mut c = core();
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_REMEDIATE.to_string(), "true".to_string());
        let ev = O::Event(ContainerEvent {
            container: container("shop-web-1", Health::None, true).container,
            action: EventAction::Die { exit_code: Some(1) },
            labels,
            time_nano: 1_000_000_000,
        });
        let ds = c.observe(&ev, Timestamp(S));
        let a = alerts(&ds);
        assert_eq!(a.len(), 1, "{ds:?}");
        assert_eq!(
            c.remediation_for(a[0]),
            None,
            "no start while the policy is unknown"
        );
        assert_eq!(c.awaits_policy(a[0]).as_deref(), Some("id-shop-web-1"));
        c.learn_restart_policy("id-shop-web-1", "always");
        assert!(c.knows_policy("id-shop-web-1"));
        assert_eq!(
            c.remediation_for(a[0]),
            None,
            "Docker brings it back itself"
        );
        assert_eq!(c.awaits_policy(a[0]), None);
        c.learn_restart_policy("id-shop-web-1", "no");
        assert_eq!(
            c.remediation_for(a[0]).map(|r| r.action),
            Some(RequestAction::Start)
        );
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
