//! The tracker: observations in, signals out. Pure: no clock, no I/O; `now` comes from the
//! caller and all memory (per container, per source) lives in [`Tracker`] where tests can see
//! what it knows.
//!
//! [`Tracker::observe`] handles one observation; [`Tracker::tick`] draws the conclusions that
//! only need time to pass (the `docker_unreachable` debounce, an exit 137 that no OOM explained,
//! a restart loop that has gone quiet). Both return active *and* inactive signals: inactive
//! means "this key is fine now", so `decide` can resolve it (also for keys it has never seen
//! active, e.g. after a watchdog restart where the alert state came back from Redis).
//!
//! # Layout
//! - this file: [`Tracker`] (what it remembers), [`EvalSettings`], the container labels it
//!   reads, and the severity tiers; the concerns below import from it, never the other way;
//! - `observe`: the dispatch of `observe`/`tick` to the concerns;
//! - `phase`: [`Phase`], the one place a container's phase (running, exited, a kill held for
//!   its OOM verdict, stopped by an operator) and its transitions are written;
//! - `lifecycle`: events and sweeps into health, exit, OOM-kill, restart-loop and missing
//!   signals; `load`: container CPU/memory tiers; `host`: host memory and disk;
//! - `app`: the metrics endpoint and its threshold rules; `probes`: dependencies and the
//!   executor heartbeat; `reachability`: the Docker and Redis debounce.
//!
//! # Rules worth knowing
//! - An operator stop is not a failure: a `kill` or `stop` event for the container within
//!   [`EvalSettings::operator_intent_window`] before a `die` is intent, whatever the exit code.
//!   An exited container found by a sweep with code 137/143 and no OOM kill is assumed stopped
//!   by someone (only a signal sent from outside produces those codes without an OOM).
//! - `starting` is not unhealthy.
//! - A `die` with code 137 and no intent is held for [`EvalSettings::oom_grace`]: an `oom`
//!   event (or a sweep showing `OOMKilled`) turns it into `container_oom_killed`, otherwise
//!   `tick` reports it as an exit. An OOM kill's die never raises `container_exited` too.
//! - Exits and OOM kills are edge signals (occurrence = the event's `timeNano`, or
//!   `finished_at` in nanoseconds when a sweep found the exit). One is a new occurrence only if
//!   none of its kind was signalled for the container within the restart-loop window and no
//!   restart loop is active; otherwise it is folded into `container_restart_loop`, so a crash
//!   loop gives one exit alert and one loop alert, not one per cycle.
//! - A restart loop is counted from die→start cycles (or `RestartCount` growth between sweeps)
//!   within the window; it stays active until no failure happened for a full window.
//! - CPU/memory/disk/host memory tiers: active above 0.8 x threshold with severity `medium`,
//!   `high` above the threshold, `critical` above 95 % (and above the threshold). Memory is the
//!   working set (excluding inactive_file) against the container's own limit; containers
//!   without a limit are covered by `host_memory_high` instead.
//! - A sweep is a snapshot taken at `Sweep::at`; for a container with an event newer than that,
//!   the sweep's view of its state is stale and only its restart count, limits and labels are
//!   used. CPU and memory come from the stats task's rounds ([`StatsBatch`]), applied to the
//!   containers the tracker already watches; a sweep that finds a container not running drops
//!   its CPU baseline and memory trend.
//! - While a Docker source is failing, nothing is concluded from missing data: no
//!   `container_missing`, and restart loops do not expire.
//! - App threshold rules (`[[app.rules]]`) are evaluated on every answered probe: a sample above
//!   `above` or below `below` is an active `app_metric/<metric>` signal; a rule whose metric is
//!   absent from the answer says nothing (the endpoint being down is `app_down`'s job).

mod app;
mod host;
mod lifecycle;
mod load;
mod observe;
mod phase;
mod probes;
mod reachability;

use crate::collect::{
    AppProbe, DependencyProbe, HostSample, Observation, SourceId, StatsBatch, Sweep,
};
use crate::signals::{Severity, Signal, SignalKind, Subject};
use phase::{HeldKill, Phase};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;
use vigil_docker::{
    ContainerDetails, ContainerEvent, ContainerRef, EventAction, Health, RunState, StatsSample,
};
use vigil_shared::time::{Timestamp, human_duration};

// Label names and their meaning live in the shared crate (the executor reads them too).
pub use vigil_docker::labels::{
    CPU_THRESHOLD as LABEL_CPU_THRESHOLD, IGNORE as LABEL_IGNORE,
    MEMORY_THRESHOLD as LABEL_MEMORY_THRESHOLD, MONITOR as LABEL_MONITOR,
    PROTECTED as LABEL_PROTECTED, REMEDIATE as LABEL_REMEDIATE,
};

/// The detail of an inactive `container_unhealthy` signal that is a recovery (the engine said
/// `healthy`), as opposed to one that only means "not unhealthy now" (`starting` after a
/// restart, stopped, gone). The remediation loop heals incidents on the former only.
pub const HEALTHY_AGAIN: &str = "healthy";

/// Severity ladder for sampled percentages: above this every threshold is critical.
const CRITICAL_PERCENT: f64 = 95.0;
/// A sweep's `finished_at` and an event's time for the same exit differ by a few milliseconds;
/// exits closer than this are one exit.
const SAME_EXIT_TOLERANCE: Duration = Duration::from_secs(5);

/// What evaluation needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub host_memory_percent: f64,
    pub disk_percent: f64,
    /// Cycles (or RestartCount growth) within `restart_loop_window` that make a loop.
    pub restart_loop_restarts: u32,
    pub restart_loop_window: Duration,
    /// A Docker source must fail this long before `docker_unreachable`.
    pub docker_unreachable_after: Duration,
    /// Redis must fail this long before `redis_unreachable`.
    pub redis_unreachable_after: Duration,
    /// `app_down` after this many consecutive failed probes.
    pub app_down_after: u32,
    /// Threshold rules on the app's samples.
    pub app_rules: Vec<crate::collect::config::AppRule>,
    /// `project/service` pairs that must have a running container.
    pub expected_services: Vec<String>,
    /// Only containers with this label (`key` or `key=value`).
    pub scope_label: Option<String>,
    /// Only these compose projects; empty means all.
    pub scope_projects: Vec<String>,
    /// A `kill`/`stop` this long before a `die` makes the die an operator stop.
    pub operator_intent_window: Duration,
    /// How long a die with code 137 waits for OOM evidence.
    pub oom_grace: Duration,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            cpu_percent: 85.0,
            memory_percent: 80.0,
            host_memory_percent: 90.0,
            disk_percent: 90.0,
            restart_loop_restarts: 3,
            restart_loop_window: Duration::from_secs(600),
            docker_unreachable_after: Duration::from_secs(10),
            redis_unreachable_after: Duration::from_secs(10),
            app_down_after: 3,
            app_rules: Vec::new(),
            expected_services: Vec::new(),
            scope_label: None,
            scope_projects: Vec::new(),
            operator_intent_window: Duration::from_secs(30),
            oom_grace: Duration::from_secs(2),
        }
    }
}

impl EvalSettings {
    /// Whether a container with these labels is watched at all (scope and opt-out).
    pub fn watches(&self, labels: &BTreeMap<String, String>) -> bool {
        if vigil_docker::labels::is_ignored(labels) {
            return false;
        }
        if let Some(scope) = &self.scope_label {
            let matched = match scope.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(scope.as_str()),
            };
            if !matched {
                return false;
            }
        }
        if !self.scope_projects.is_empty() {
            let project = labels.get(vigil_docker::LABEL_PROJECT);
            if !project.is_some_and(|p| self.scope_projects.iter().any(|s| s == p)) {
                return false;
            }
        }
        true
    }
}

/// `true`, `1`, `yes`, `on` (any case): [`vigil_docker::labels::is_true`].
pub fn label_is_true(labels: &BTreeMap<String, String>, key: &str) -> bool {
    vigil_docker::labels::is_true(labels, key)
}

/// `false`, `0`, `no`, `off` (any case): [`vigil_docker::labels::is_false`].
pub fn label_is_false(labels: &BTreeMap<String, String>, key: &str) -> bool {
    vigil_docker::labels::is_false(labels, key)
}

/// A percentage label: [`vigil_docker::labels::percent`].
fn label_percent(labels: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    vigil_docker::labels::percent(labels, key)
}

/// The severity tier of a sampled percentage, `None` below 0.8 x threshold.
pub fn tier(value: f64, threshold: f64) -> Option<Severity> {
    if value > threshold && value > CRITICAL_PERCENT {
        Some(Severity::Critical)
    } else if value > threshold {
        Some(Severity::High)
    } else if value > 0.8 * threshold {
        Some(Severity::Medium)
    } else {
        None
    }
}

fn pct(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}%")
    } else {
        format!("{v:.1}%")
    }
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || (v - v.round()).abs() < 0.05 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Nanoseconds for an occurrence found by a sweep (events use `timeNano` directly).
fn nanos(t: Timestamp) -> i64 {
    t.as_millis().saturating_mul(1_000_000)
}

fn close(a: Timestamp, b: Timestamp) -> bool {
    a.since(b).max(b.since(a)) <= SAME_EXIT_TOLERANCE
}

/// Everything the tracker remembers about one container.
#[derive(Debug, Clone, Default)]
struct ContainerMemory {
    container: ContainerRef,
    labels: BTreeMap<String, String>,
    /// `HostConfig.Memory` from the last sweep (0: unlimited or unknown).
    memory_limit: u64,
    /// `HostConfig.RestartPolicy.Name` from the last sweep (or an inspect after a `die`).
    restart_policy: String,
    /// Whether `restart_policy` was read from the engine (a sweep or an inspect) at all.
    policy_known: bool,
    /// Last `die` event of any kind: the stream saw that exit.
    last_die_seen: Option<Timestamp>,
    /// Working-set samples while running, oldest first (the planner's memory trend).
    memory_samples: VecDeque<(Timestamp, u64)>,
    /// Newest event time, to tell a stale sweep.
    last_event_at: Option<Timestamp>,
    /// Last `kill`/`stop` event (operator or engine intent); cleared on `start`.
    intent_at: Option<Timestamp>,
    /// Stopped, exited, holding a kill for its OOM verdict, or running: see [`Phase`].
    phase: Phase,
    health_streak: u64,
    last_die_at: Option<Timestamp>,
    last_oom_at: Option<Timestamp>,
    /// Starts that completed a die→start cycle.
    cycles: VecDeque<Timestamp>,
    /// `(sweep time, RestartCount)`, oldest first; the first is the baseline.
    restart_samples: VecDeque<(Timestamp, u64)>,
    /// Last failure die or RestartCount growth.
    last_failure_at: Option<Timestamp>,
    loop_active: bool,
    /// When the last exit that was signalled happened, and its occurrence while still active.
    exit_signalled_at: Option<Timestamp>,
    exit_active: Option<(i64, String)>,
    oom_signalled_at: Option<Timestamp>,
    oom_active: Option<(i64, String)>,
    /// `finished_at` of an exit a sweep already judged, so it is judged once.
    sweep_judged_finish: Option<Timestamp>,
    prev_stats: Option<StatsSample>,
}

impl ContainerMemory {
    fn signal(
        &self,
        kind: SignalKind,
        active: bool,
        severity: Severity,
        detail: impl Into<String>,
        at: Timestamp,
    ) -> Signal {
        Signal::new(
            kind,
            active,
            severity,
            Subject::container(&self.container),
            detail,
            at,
        )
    }

    fn inactive(&self, kind: SignalKind, at: Timestamp) -> Signal {
        self.signal(kind, false, Severity::Info, "", at)
    }

    fn intended(&self, die_at: Timestamp, window: Duration) -> bool {
        self.intent_at
            .is_some_and(|i| i <= die_at.plus(SAME_EXIT_TOLERANCE) && die_at.since(i) <= window)
    }

    fn oom_detail(&self) -> String {
        if self.memory_limit > 0 {
            format!(
                "OOM-killed (memory limit {})",
                human_bytes(self.memory_limit)
            )
        } else {
            "OOM-killed".to_string()
        }
    }

    fn recent_cycles(&self, now: Timestamp, window: Duration) -> impl Iterator<Item = &Timestamp> {
        self.cycles.iter().filter(move |t| now.since(**t) < window)
    }
}

/// What the tracker knows about one container that the planner's rules need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerHistory {
    pub labels: BTreeMap<String, String>,
    /// A restart loop is active for this container.
    pub restart_loop_active: bool,
    /// Stopped by an operator (a `docker stop`/`kill`) and not started since.
    pub stopped_by_operator: bool,
    /// `HostConfig.RestartPolicy.Name`: "", "no", "always", "unless-stopped", "on-failure".
    pub restart_policy: String,
    /// Whether `restart_policy` was read from the engine; false for a container only seen in
    /// events so far (its policy is unknown, not "none").
    pub restart_policy_known: bool,
    /// `HostConfig.Memory` in bytes, 0 when unlimited or unknown.
    pub memory_limit: u64,
    /// Working-set samples `(sampled at, bytes)`, oldest first.
    pub memory_samples: Vec<(Timestamp, u64)>,
}

/// Memory samples kept per container for the planner's trend (one per sweep).
const MEMORY_SAMPLES_KEPT: usize = 12;
/// The executor heartbeat is refreshed every 5 s with a 30 s expiry: older means down.
pub const EXECUTOR_HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(30);

/// Observations → signals, with all the memory that takes.
#[derive(Debug, Clone)]
pub struct Tracker {
    settings: EvalSettings,
    /// Boxed: the table keeps spare buckets (up to half of it at some sizes), and a bucket is
    /// then a pointer, not a whole `ContainerMemory`.
    containers: HashMap<String, Box<ContainerMemory>>,
    /// Docker sources currently failing (`docker_unreachable`).
    docker: reachability::Debounce<SourceId>,
    /// Redis failing (`redis_unreachable`), debounced like Docker.
    redis: reachability::Debounce<()>,
    app_failures: u32,
}

impl Tracker {
    pub fn new(settings: EvalSettings) -> Tracker {
        Tracker {
            settings,
            containers: HashMap::new(),
            docker: reachability::Debounce::new(),
            redis: reachability::Debounce::new(),
            app_failures: 0,
        }
    }

    pub fn settings(&self) -> &EvalSettings {
        &self.settings
    }

    /// What the planner needs to know about a tracked container.
    pub fn history_of(&self, container_id: &str) -> Option<ContainerHistory> {
        let mem = self.containers.get(container_id)?;
        Some(ContainerHistory {
            labels: mem.labels.clone(),
            restart_loop_active: mem.loop_active,
            stopped_by_operator: mem.phase.stopped_by_operator(),
            restart_policy: mem.restart_policy.clone(),
            restart_policy_known: mem.policy_known,
            memory_limit: mem.memory_limit,
            memory_samples: mem.memory_samples.iter().copied().collect(),
        })
    }

    /// The restart policy read by an inspect (after a `die` of a container no sweep has shown
    /// yet), so the planner knows whether Docker brings it back by itself.
    pub fn learn_restart_policy(&mut self, container_id: &str, policy: &str) {
        if let Some(mem) = self.containers.get_mut(container_id) {
            mem.restart_policy = policy.to_string();
            mem.policy_known = true;
        }
    }

    /// Containers the tracker currently remembers.
    pub fn tracked_containers(&self) -> usize {
        self.containers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{DiskUsage, Sweep};

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    fn cref(name: &str) -> ContainerRef {
        ContainerRef {
            id: format!("id-{name}"),
            name: name.to_string(),
            project: Some("shop".into()),
            service: Some(
                name.trim_start_matches("shop-")
                    .trim_end_matches("-1")
                    .to_string(),
            ),
        }
    }

    fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        l.insert(vigil_docker::LABEL_PROJECT.to_string(), "shop".to_string());
        for (k, v) in extra {
            l.insert(k.to_string(), v.to_string());
        }
        l
    }

    fn event(name: &str, action: EventAction, at_ms: i64) -> Observation {
        Observation::Event(ContainerEvent {
            container: cref(name),
            action,
            labels: labels(&[]),
            time_nano: at_ms * 1_000_000,
        })
    }

    fn die(name: &str, code: i64, at_ms: i64) -> Observation {
        event(
            name,
            EventAction::Die {
                exit_code: Some(code),
            },
            at_ms,
        )
    }

    fn details(name: &str, state: RunState) -> ContainerDetails {
        ContainerDetails {
            container: cref(name),
            image: "img".into(),
            labels: labels(&[]),
            state,
            health: Health::None,
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

    fn sweep(at_ms: i64, containers: Vec<ContainerDetails>) -> Observation {
        Observation::Sweep(Sweep {
            at: t(at_ms),
            containers,
        })
    }

    fn active(signals: &[Signal], kind: SignalKind) -> Vec<Signal> {
        signals
            .iter()
            .filter(|s| s.kind == kind && s.active)
            .cloned()
            .collect()
    }

    fn has_active(signals: &[Signal], kind: SignalKind) -> bool {
        !active(signals, kind).is_empty()
    }

    fn has_inactive(signals: &[Signal], kind: SignalKind) -> bool {
        signals.iter().any(|s| s.kind == kind && !s.active)
    }

    /// Feeds observations in order (each at its own time), collecting every signal.
    fn feed(tr: &mut Tracker, obs: Vec<(i64, Observation)>) -> Vec<Signal> {
        let mut out = Vec::new();
        for (at, o) in obs {
            out.extend(tr.observe(&o, t(at)));
        }
        out
    }

    #[test]
    fn unhealthy_from_event_and_sweep_and_back() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(
            &event(
                "shop-web-1",
                EventAction::HealthStatus(Health::Unhealthy),
                0,
            ),
            t(0),
        );
        let a = active(&out, SignalKind::ContainerUnhealthy);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "container_unhealthy/shop/web/shop-web-1");

        let mut d = details("shop-web-1", RunState::Running);
        d.health = Health::Unhealthy;
        d.health_failing_streak = 3;
        let out = tr.observe(&sweep(10 * S, vec![d.clone()]), t(10 * S));
        let a = active(&out, SignalKind::ContainerUnhealthy);
        assert_eq!(a[0].detail, "health check failing (3 consecutive failures)");

        let out = tr.observe(
            &event(
                "shop-web-1",
                EventAction::HealthStatus(Health::Healthy),
                20 * S,
            ),
            t(20 * S),
        );
        assert!(has_inactive(&out, SignalKind::ContainerUnhealthy));
        assert!(!has_active(&out, SignalKind::ContainerUnhealthy));
    }

    #[test]
    fn starting_is_not_unhealthy() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(
            &event("shop-web-1", EventAction::HealthStatus(Health::Starting), 0),
            t(0),
        );
        assert!(!has_active(&out, SignalKind::ContainerUnhealthy));
        let mut d = details("shop-web-1", RunState::Running);
        d.health = Health::Starting;
        d.health_failing_streak = 2;
        let out = tr.observe(&sweep(S, vec![d]), t(S));
        assert!(!has_active(&out, SignalKind::ContainerUnhealthy), "{out:?}");
        assert!(has_inactive(&out, SignalKind::ContainerUnhealthy));
    }

    #[test]
    fn unhealthy_clears_on_operator_stop_and_destroy() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(
            &event(
                "shop-web-1",
                EventAction::HealthStatus(Health::Unhealthy),
                0,
            ),
            t(0),
        );
        let out = feed(
            &mut tr,
            vec![
                (
                    S,
                    event("shop-web-1", EventAction::Kill { signal: Some(15) }, S),
                ),
                (2 * S, die("shop-web-1", 143, 2 * S)),
            ],
        );
        assert!(has_inactive(&out, SignalKind::ContainerUnhealthy));
        let out = tr.observe(&event("shop-web-1", EventAction::Destroy, 3 * S), t(3 * S));
        assert!(has_inactive(&out, SignalKind::ContainerUnhealthy));
        assert!(has_inactive(&out, SignalKind::ContainerRestartLoop));
        assert_eq!(
            tr.tracked_containers(),
            0,
            "destroy drops the container's memory"
        );
    }

    #[test]
    fn unhealthy_during_an_operator_stop_is_not_a_failure() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = feed(
            &mut tr,
            vec![
                (
                    0,
                    event("shop-web-1", EventAction::Kill { signal: Some(15) }, 0),
                ),
                (
                    S / 2,
                    event(
                        "shop-web-1",
                        EventAction::HealthStatus(Health::Unhealthy),
                        S / 2,
                    ),
                ),
                (S, die("shop-web-1", 143, S)),
            ],
        );
        assert!(
            active(&out, SignalKind::ContainerUnhealthy).is_empty(),
            "{out:?}"
        );
        assert!(
            active(&out, SignalKind::ContainerExited).is_empty(),
            "{out:?}"
        );
    }

    #[test]
    fn exit_with_nonzero_code_alerts_once() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(&die("shop-job-1", 3, 0), t(0));
        let a = active(&out, SignalKind::ContainerExited);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].detail, "exited with error (3)");
        assert_eq!(a[0].occurrence, Some(0));
        // The sweep sees the same exit: same occurrence, not a new one.
        let mut d = details("shop-job-1", RunState::Exited);
        d.exit_code = 3;
        d.finished_at = Some(t(3));
        let out = tr.observe(&sweep(5 * S, vec![d]), t(5 * S));
        let a = active(&out, SignalKind::ContainerExited);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].occurrence, Some(0));
        // Exit 0 is not a failure.
        let out = tr.observe(&die("shop-other-1", 0, 6 * S), t(6 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited));
    }

    #[test]
    fn operator_stop_is_not_a_failure() {
        // docker kill: kill (9) then die 137.
        let mut tr = Tracker::new(EvalSettings::default());
        let out = feed(
            &mut tr,
            vec![
                (
                    0,
                    event("shop-web-1", EventAction::Kill { signal: Some(9) }, 0),
                ),
                (10, die("shop-web-1", 137, 10)),
            ],
        );
        let out2 = tr.tick(t(10 * S));
        for s in out.iter().chain(&out2) {
            assert!(!s.active, "operator kill raised {s:?}");
        }
        // stop then die 143.
        let mut tr = Tracker::new(EvalSettings::default());
        let out = feed(
            &mut tr,
            vec![
                (0, event("shop-web-1", EventAction::Stop, 0)),
                (S, die("shop-web-1", 143, S)),
            ],
        );
        assert!(out.iter().all(|s| !s.active), "{out:?}");
        // The real `docker stop` order: kill 15, die 143, stop; and a later sweep of the
        // exited container still says nothing.
        let mut tr = Tracker::new(EvalSettings::default());
        let out = feed(
            &mut tr,
            vec![
                (
                    0,
                    event("shop-web-1", EventAction::Kill { signal: Some(15) }, 0),
                ),
                (10 * S, die("shop-web-1", 137, 10 * S)),
                (
                    10 * S + 5,
                    event("shop-web-1", EventAction::Stop, 10 * S + 5),
                ),
            ],
        );
        let mut d = details("shop-web-1", RunState::Exited);
        d.exit_code = 137;
        d.finished_at = Some(t(10 * S));
        let mut all = out;
        all.extend(tr.observe(&sweep(30 * S, vec![d]), t(30 * S)));
        all.extend(tr.tick(t(60 * S)));
        assert!(all.iter().all(|s| !s.active), "{all:?}");
        // A kill long before the die is not intent for it.
        let mut tr = Tracker::new(EvalSettings::default());
        let out = feed(
            &mut tr,
            vec![
                (
                    0,
                    event("shop-web-1", EventAction::Kill { signal: Some(1) }, 0),
                ),
                (5 * MIN, die("shop-web-1", 2, 5 * MIN)),
            ],
        );
        assert!(has_active(&out, SignalKind::ContainerExited));
    }

    #[test]
    fn oom_kill_is_not_also_an_exit() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-web-1", RunState::Running);
        d.memory_limit = 16 * 1024 * 1024;
        tr.observe(&sweep(0, vec![d]), t(0));
        let mut out = feed(
            &mut tr,
            vec![
                (S, event("shop-web-1", EventAction::Oom, S)),
                (S + 3, die("shop-web-1", 137, S + 3)),
            ],
        );
        out.extend(tr.tick(t(30 * S)));
        let oom = active(&out, SignalKind::ContainerOomKilled);
        assert_eq!(oom.len(), 1, "{out:?}");
        assert_eq!(oom[0].detail, "OOM-killed (memory limit 16 MiB)");
        assert_eq!(oom[0].occurrence, Some(S * 1_000_000));
        assert!(!has_active(&out, SignalKind::ContainerExited), "{out:?}");
    }

    #[test]
    fn die_137_then_oom_event_is_an_oom() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut out = tr.observe(&die("shop-web-1", 137, 0), t(0));
        assert!(
            out.iter().all(|s| !s.active),
            "held until OOM evidence or the grace: {out:?}"
        );
        out.extend(tr.observe(&event("shop-web-1", EventAction::Oom, 5), t(5)));
        out.extend(tr.tick(t(10 * S)));
        assert_eq!(active(&out, SignalKind::ContainerOomKilled).len(), 1);
        assert!(!has_active(&out, SignalKind::ContainerExited));
    }

    #[test]
    fn die_137_without_kill_or_oom_is_an_exit_after_the_grace() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(&die("shop-web-1", 137, 0), t(0));
        assert!(tr.tick(t(S)).iter().all(|s| !s.active));
        let out = tr.tick(t(3 * S));
        let a = active(&out, SignalKind::ContainerExited);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].detail, "killed (137)");
    }

    #[test]
    fn oom_found_by_sweep() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-web-1", RunState::Exited);
        d.exit_code = 137;
        d.oom_killed = true;
        d.finished_at = Some(t(500));
        let out = tr.observe(&sweep(S, vec![d.clone()]), t(S));
        let oom = active(&out, SignalKind::ContainerOomKilled);
        assert_eq!(oom.len(), 1);
        assert_eq!(oom[0].occurrence, Some(500 * 1_000_000));
        assert!(!has_active(&out, SignalKind::ContainerExited));
        // The next sweep repeats the same occurrence, not a new one.
        let out = tr.observe(&sweep(16 * S, vec![d]), t(16 * S));
        let oom = active(&out, SignalKind::ContainerOomKilled);
        assert_eq!(oom.len(), 1);
        assert_eq!(oom[0].occurrence, Some(500 * 1_000_000));
    }

    #[test]
    fn exit_found_by_sweep_once_per_finish_and_never_after_operator_stop() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-job-1", RunState::Exited);
        d.exit_code = 2;
        d.finished_at = Some(t(100));
        let out = tr.observe(&sweep(S, vec![d.clone()]), t(S));
        let a = active(&out, SignalKind::ContainerExited);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].occurrence, Some(100 * 1_000_000));
        // Started again, the same old finish must not come back as active.
        let mut running = details("shop-job-1", RunState::Running);
        running.finished_at = Some(t(100));
        let out = tr.observe(&sweep(16 * S, vec![running]), t(16 * S));
        assert!(has_inactive(&out, SignalKind::ContainerExited));
        // An exit 143 found by a sweep is someone's stop.
        let mut d = details("shop-api-1", RunState::Exited);
        d.exit_code = 143;
        d.finished_at = Some(t(100));
        let out = tr.observe(&sweep(31 * S, vec![d]), t(31 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited));
        // A container the tracker saw stopped by an operator is never reported by a sweep.
        let mut tr = Tracker::new(EvalSettings::default());
        feed(
            &mut tr,
            vec![
                (0, event("shop-web-1", EventAction::Stop, 0)),
                (S, die("shop-web-1", 1, S)),
            ],
        );
        let mut d = details("shop-web-1", RunState::Exited);
        d.exit_code = 1;
        d.finished_at = Some(t(S));
        let out = tr.observe(&sweep(20 * S, vec![d]), t(20 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited), "{out:?}");
    }

    #[test]
    fn restart_loop_counted_from_die_start_cycles() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut out = Vec::new();
        for i in 0..5 {
            let at = i * 20 * S;
            out.extend(tr.observe(&die("shop-web-1", 1, at), t(at)));
            out.extend(tr.observe(&event("shop-web-1", EventAction::Start, at + S), t(at + S)));
        }
        let loops = active(&out, SignalKind::ContainerRestartLoop);
        let keys: BTreeSet<&str> = loops.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys.len(), 1, "exactly one restart-loop key: {keys:?}");
        assert!(
            loops[0].detail.starts_with("restarted 3 times in"),
            "{}",
            loops[0].detail
        );
        // First exit alerted, later ones folded into the loop.
        let exits: BTreeSet<Option<i64>> = active(&out, SignalKind::ContainerExited)
            .iter()
            .map(|s| s.occurrence)
            .collect();
        assert_eq!(exits.len(), 1, "{exits:?}");
        // Still looping: no expiry while dies keep coming.
        assert!(
            tr.tick(t(5 * MIN))
                .iter()
                .all(|s| s.kind != SignalKind::ContainerRestartLoop)
        );
        // Quiet for a full window after the last die (at 80 s): inactive.
        let out = tr.tick(t(80 * S + 10 * MIN));
        assert!(has_inactive(&out, SignalKind::ContainerRestartLoop));
        // The next crash is a fresh exit.
        let out = tr.observe(&die("shop-web-1", 1, 30 * MIN), t(30 * MIN));
        assert_eq!(active(&out, SignalKind::ContainerExited).len(), 1);
    }

    #[test]
    fn operator_restarts_are_not_a_loop() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut out = Vec::new();
        for i in 0..5 {
            let at = i * 20 * S;
            out.extend(feed(
                &mut tr,
                vec![
                    (
                        at,
                        event("shop-web-1", EventAction::Kill { signal: Some(15) }, at),
                    ),
                    (at + 10, die("shop-web-1", 143, at + 10)),
                    (at + 20, event("shop-web-1", EventAction::Stop, at + 20)),
                    (at + 30, event("shop-web-1", EventAction::Start, at + 30)),
                ],
            ));
        }
        assert!(out.iter().all(|s| !s.active), "{out:?}");
    }

    #[test]
    fn restart_loop_from_restart_count_growth() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut out = Vec::new();
        for (i, count) in [0u64, 1, 3, 4].into_iter().enumerate() {
            let at = i as i64 * 15 * S;
            let mut d = details("shop-web-1", RunState::Running);
            d.restart_count = count;
            out = tr.observe(&sweep(at, vec![d]), t(at));
            if count < 3 {
                assert!(
                    !has_active(&out, SignalKind::ContainerRestartLoop),
                    "count {count}"
                );
            }
        }
        let a = active(&out, SignalKind::ContainerRestartLoop);
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].detail,
            "restarted 4 times in 45s; manual action needed"
        );
        // No growth for a full window: inactive.
        let mut d = details("shop-web-1", RunState::Running);
        d.restart_count = 4;
        let out = tr.observe(&sweep(45 * S + 10 * MIN, vec![d]), t(45 * S + 10 * MIN));
        assert!(has_inactive(&out, SignalKind::ContainerRestartLoop));
        assert!(!has_active(&out, SignalKind::ContainerRestartLoop));
    }

    fn restarted(count: u64, finished_ms: i64) -> ContainerDetails {
        let mut d = details("shop-web-1", RunState::Running);
        d.restart_count = count;
        d.restart_policy = "always".into();
        d.finished_at = Some(t(finished_ms));
        d
    }

    #[test]
    fn restart_count_growth_the_stream_missed_is_one_exit() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(&sweep(0, vec![restarted(0, 0)]), t(0));
        assert!(!has_active(&out, SignalKind::ContainerExited), "baseline");
        // Docker restarted it while the stream was cut: no die was seen.
        let out = tr.observe(&sweep(15 * S, vec![restarted(1, 9 * S)]), t(15 * S));
        let exits = active(&out, SignalKind::ContainerExited);
        assert_eq!(exits.len(), 1, "{out:?}");
        assert!(
            exits[0].detail.contains("restart count 0 -> 1"),
            "{}",
            exits[0].detail
        );
        assert_eq!(exits[0].occurrence, Some(9 * S * 1_000_000));
        // Running again in the same sweep: the exit is over (resolves silently).
        let last_exit = out
            .iter()
            .rev()
            .find(|s| s.kind == SignalKind::ContainerExited)
            .expect("exit signals");
        assert!(!last_exit.active);
        // The stream comes back and replays the die and start: the same exit, not a new one.
        let out = tr.observe(&die("shop-web-1", 1, 9 * S), t(16 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited), "{out:?}");
        // The next sweep with the same count: nothing new.
        let out = tr.observe(&sweep(30 * S, vec![restarted(1, 9 * S)]), t(30 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited), "{out:?}");
    }

    #[test]
    fn restart_count_growth_the_stream_showed_is_not_reported_again() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(&sweep(0, vec![restarted(0, 0)]), t(0));
        let out = tr.observe(&die("shop-web-1", 1, 9 * S), t(9 * S));
        assert_eq!(active(&out, SignalKind::ContainerExited).len(), 1);
        tr.observe(
            &event("shop-web-1", EventAction::Start, 9 * S + 200),
            t(9 * S + 200),
        );
        let out = tr.observe(&sweep(15 * S, vec![restarted(1, 9 * S)]), t(15 * S));
        assert!(!has_active(&out, SignalKind::ContainerExited), "{out:?}");
    }

    #[test]
    fn restart_policy_is_known_from_a_sweep_or_an_inspect_only() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(&die("shop-new-1", 1, S), t(S));
        let h = tr
            .history_of("id-shop-new-1")
            .expect("tracked from its event");
        assert!(!h.restart_policy_known, "events carry no restart policy");
        tr.learn_restart_policy("id-shop-new-1", "always");
        let h = tr.history_of("id-shop-new-1").expect("tracked");
        assert!(h.restart_policy_known);
        assert_eq!(h.restart_policy, "always");
        tr.observe(
            &sweep(2 * S, vec![details("shop-web-1", RunState::Running)]),
            t(2 * S),
        );
        let h = tr
            .history_of("id-shop-web-1")
            .expect("tracked from the sweep");
        assert!(h.restart_policy_known, "a sweep reads it (empty: none)");
    }

    fn stats(at_ms: i64, cpu_total: u64, system: u64, mem: u64, limit: u64) -> StatsSample {
        StatsSample {
            read_at: t(at_ms),
            cpu_total,
            system_cpu: system,
            online_cpus: 1,
            memory_usage: mem,
            memory_limit: limit,
            inactive_file: 0,
        }
    }

    /// A sweep that finds `d`, then a stats round with its sample, both at `at_ms`.
    fn observe_stats(
        tr: &mut Tracker,
        at_ms: i64,
        d: &ContainerDetails,
        s: StatsSample,
        now: Timestamp,
    ) -> Vec<Signal> {
        let mut out = tr.observe(&sweep(at_ms, vec![d.clone()]), now);
        let mut samples = BTreeMap::new();
        samples.insert(d.container.id.clone(), s);
        let batch = StatsBatch {
            at: t(at_ms),
            samples,
            ..StatsBatch::default()
        };
        out.extend(tr.observe(&Observation::Stats(batch), now));
        out
    }

    #[test]
    fn cpu_tiers_from_consecutive_samples() {
        let mut tr = Tracker::new(EvalSettings::default());
        let d = details("shop-web-1", RunState::Running);
        let out = observe_stats(&mut tr, 0, &d, stats(0, 0, 0, 0, 0), t(0));
        assert!(
            !out.iter().any(|s| s.kind == SignalKind::ContainerCpuHigh),
            "one sample has no CPU %"
        );
        let out = observe_stats(
            &mut tr,
            15 * S,
            &d,
            stats(15 * S, 931, 1000, 0, 0),
            t(15 * S),
        );
        let a = active(&out, SignalKind::ContainerCpuHigh);
        assert_eq!(a[0].severity, Severity::High);
        assert_eq!(a[0].detail, "CPU 93.1% (threshold 85%)");
        let out = observe_stats(
            &mut tr,
            30 * S,
            &d,
            stats(30 * S, 931 + 700, 2000, 0, 0),
            t(30 * S),
        );
        assert_eq!(
            active(&out, SignalKind::ContainerCpuHigh)[0].severity,
            Severity::Medium
        );
        let out = observe_stats(
            &mut tr,
            45 * S,
            &d,
            stats(45 * S, 1631 + 990, 3000, 0, 0),
            t(45 * S),
        );
        assert_eq!(
            active(&out, SignalKind::ContainerCpuHigh)[0].severity,
            Severity::Critical
        );
        let out = observe_stats(
            &mut tr,
            60 * S,
            &d,
            stats(60 * S, 2621 + 100, 4000, 0, 0),
            t(60 * S),
        );
        assert!(has_inactive(&out, SignalKind::ContainerCpuHigh));
    }

    #[test]
    fn memory_against_the_containers_limit() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-web-1", RunState::Running);
        d.memory_limit = 1000;
        let mut s = stats(0, 0, 0, 900, 1000);
        s.inactive_file = 50;
        let out = observe_stats(&mut tr, 0, &d, s, t(0));
        let a = active(&out, SignalKind::ContainerMemoryHigh);
        assert_eq!(a[0].severity, Severity::High, "85% > 80%");
        // Unlimited containers: no memory signal (host memory covers them).
        let d2 = details("shop-api-1", RunState::Running);
        let out = observe_stats(&mut tr, S, &d2, stats(S, 0, 0, 990, 1000), t(S));
        assert!(!has_active(&out, SignalKind::ContainerMemoryHigh));
    }

    #[test]
    fn label_opt_out_and_threshold_override() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut ignored = details("shop-web-1", RunState::Running);
        ignored.labels = labels(&[(LABEL_IGNORE, "true")]);
        ignored.health = Health::Unhealthy;
        let mut unmonitored = details("shop-api-1", RunState::Exited);
        unmonitored.labels = labels(&[(LABEL_MONITOR, "false")]);
        unmonitored.exit_code = 1;
        unmonitored.finished_at = Some(t(0));
        let out = tr.observe(&sweep(S, vec![ignored, unmonitored]), t(S));
        assert!(out.is_empty(), "{out:?}");
        let mut ev = ContainerEvent {
            container: cref("shop-web-1"),
            action: EventAction::Die { exit_code: Some(1) },
            labels: labels(&[(LABEL_IGNORE, "true")]),
            time_nano: 2_000_000_000,
        };
        assert!(
            tr.observe(&Observation::Event(ev.clone()), t(2 * S))
                .is_empty()
        );
        ev.labels = labels(&[]);
        ev.container = cref("shop-db-1");
        assert!(!tr.observe(&Observation::Event(ev), t(2 * S)).is_empty());

        // vigil.cpu_threshold=50 makes 60% high instead of nothing.
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-web-1", RunState::Running);
        d.labels = labels(&[(LABEL_CPU_THRESHOLD, "50"), (LABEL_MEMORY_THRESHOLD, "95")]);
        d.memory_limit = 1000;
        observe_stats(&mut tr, 0, &d, stats(0, 0, 0, 900, 1000), t(0));
        let out = observe_stats(
            &mut tr,
            15 * S,
            &d,
            stats(15 * S, 600, 1000, 900, 1000),
            t(15 * S),
        );
        let cpu = active(&out, SignalKind::ContainerCpuHigh);
        assert_eq!(cpu[0].severity, Severity::High);
        assert_eq!(cpu[0].detail, "CPU 60% (threshold 50%)");
        // Memory 90% with threshold 95: medium only (> 76%), not high.
        assert_eq!(
            active(&out, SignalKind::ContainerMemoryHigh)[0].severity,
            Severity::Medium
        );
    }

    #[test]
    fn scope_label_and_projects() {
        let settings = EvalSettings {
            scope_label: Some("team=core".into()),
            scope_projects: vec!["shop".into()],
            ..EvalSettings::default()
        };
        assert!(settings.watches(&labels(&[("team", "core")])));
        assert!(!settings.watches(&labels(&[("team", "other")])));
        assert!(!settings.watches(&labels(&[])));
        let mut other_project = BTreeMap::new();
        other_project.insert("team".to_string(), "core".to_string());
        other_project.insert(vigil_docker::LABEL_PROJECT.to_string(), "blog".to_string());
        assert!(!settings.watches(&other_project));
        let key_only = EvalSettings {
            scope_label: Some("watched".into()),
            ..EvalSettings::default()
        };
        assert!(key_only.watches(&labels(&[("watched", "")])));
    }

    #[test]
    fn container_missing_for_expected_services() {
        let settings = EvalSettings {
            expected_services: vec!["shop/web".into(), "shop/db".into()],
            ..EvalSettings::default()
        };
        let mut tr = Tracker::new(settings);
        let out = tr.observe(
            &sweep(0, vec![details("shop-web-1", RunState::Running)]),
            t(0),
        );
        let missing = active(&out, SignalKind::ContainerMissing);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].key, "container_missing/shop/db");
        assert!(
            out.iter()
                .any(|s| s.key == "container_missing/shop/web" && !s.active)
        );
    }

    #[test]
    fn docker_unreachable_is_debounced() {
        let mut tr = Tracker::new(EvalSettings::default());
        let fail = |at| Observation::Source {
            source: SourceId::DockerEvents,
            at: t(at),
            ok: false,
            detail: "connection refused".into(),
        };
        assert!(tr.observe(&fail(0), t(0)).is_empty());
        assert!(tr.tick(t(5 * S)).is_empty());
        assert!(tr.observe(&fail(9 * S), t(9 * S)).is_empty());
        let out = tr.tick(t(10 * S));
        let a = active(&out, SignalKind::DockerUnreachable);
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].detail,
            "Docker engine unreachable for 10s: connection refused"
        );
        assert!(
            tr.tick(t(11 * S)).is_empty(),
            "one active signal, not one per tick"
        );
        let ok = Observation::Source {
            source: SourceId::DockerEvents,
            at: t(12 * S),
            ok: true,
            detail: String::new(),
        };
        let out = tr.observe(&ok, t(12 * S));
        assert!(has_inactive(&out, SignalKind::DockerUnreachable));
        // A short blip never fires.
        tr.observe(&fail(20 * S), t(20 * S));
        let out = tr.observe(&ok, t(25 * S));
        assert!(!has_active(&out, SignalKind::DockerUnreachable));
        assert!(tr.tick(t(60 * S)).is_empty());
    }

    #[test]
    fn no_missing_storm_and_no_loop_expiry_while_docker_fails() {
        let settings = EvalSettings {
            expected_services: vec!["shop/web".into()],
            ..EvalSettings::default()
        };
        let mut tr = Tracker::new(settings);
        for i in 0..3 {
            let at = i * 10 * S;
            tr.observe(&die("shop-web-1", 1, at), t(at));
            tr.observe(&event("shop-web-1", EventAction::Start, at + S), t(at + S));
        }
        let fail = Observation::Source {
            source: SourceId::DockerSweep,
            at: t(MIN),
            ok: false,
            detail: "timeout".into(),
        };
        tr.observe(&fail, t(MIN));
        let out = tr.tick(t(30 * MIN));
        assert!(
            !has_inactive(&out, SignalKind::ContainerRestartLoop),
            "{out:?}"
        );
        let partial = Sweep {
            at: t(30 * MIN),
            containers: vec![],
        };
        // A sweep arriving proves the sweep source works, but the event source may still fail.
        let ev_fail = Observation::Source {
            source: SourceId::DockerEvents,
            at: t(30 * MIN),
            ok: false,
            detail: "eof".into(),
        };
        tr.observe(&ev_fail, t(30 * MIN));
        let out = tr.observe(&Observation::Sweep(partial), t(30 * MIN));
        assert!(!has_active(&out, SignalKind::ContainerMissing), "{out:?}");
    }

    #[test]
    fn stale_sweep_does_not_undo_newer_events() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(
            &event(
                "shop-web-1",
                EventAction::HealthStatus(Health::Healthy),
                10 * S,
            ),
            t(10 * S),
        );
        let mut d = details("shop-web-1", RunState::Running);
        d.health = Health::Unhealthy;
        let out = tr.observe(&sweep(9 * S, vec![d]), t(11 * S));
        assert!(!has_active(&out, SignalKind::ContainerUnhealthy), "{out:?}");
    }

    #[test]
    fn destroyed_containers_resolve_their_keys() {
        let mut tr = Tracker::new(EvalSettings::default());
        tr.observe(&die("shop-job-1", 3, 0), t(0));
        let out = tr.observe(&event("shop-job-1", EventAction::Destroy, S), t(S));
        assert!(has_inactive(&out, SignalKind::ContainerExited));
        assert!(has_inactive(&out, SignalKind::ContainerOomKilled));
        // Vanished from a sweep without a destroy event: forgotten too.
        tr.observe(
            &sweep(2 * S, vec![details("shop-web-1", RunState::Running)]),
            t(2 * S),
        );
        let out = tr.observe(&sweep(3 * S, vec![]), t(3 * S));
        assert!(has_inactive(&out, SignalKind::ContainerUnhealthy));
        assert_eq!(tr.tracked_containers(), 0);
    }

    #[test]
    fn host_memory_and_disk_tiers() {
        let mut tr = Tracker::new(EvalSettings::default());
        let gib = 1024 * 1024 * 1024;
        let h = HostSample {
            at: t(0),
            mem_total_bytes: 20 * gib,
            mem_available_bytes: gib,
            disks: vec![
                DiskUsage {
                    path: "/".into(),
                    total_bytes: 100 * gib,
                    available_bytes: 25 * gib,
                },
                DiskUsage {
                    path: "/data".into(),
                    total_bytes: 100 * gib,
                    available_bytes: 3 * gib,
                },
            ],
        };
        let out = tr.observe(&Observation::Host(h), t(0));
        let hm = active(&out, SignalKind::HostMemoryHigh);
        assert_eq!(hm[0].severity, Severity::High, "95% > 90% but not > 95%");
        assert_eq!(
            hm[0].detail,
            "host memory 95% used (1 GiB of 20 GiB available, threshold 90%)"
        );
        let disks = active(&out, SignalKind::DiskHigh);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].severity, Severity::Medium, "75% > 72%");
        assert_eq!(disks[1].severity, Severity::Critical, "97% > 95%");
        assert_eq!(disks[1].key, "disk_high//data");
    }

    #[test]
    fn dependency_down_per_probe() {
        let mut tr = Tracker::new(EvalSettings::default());
        let probe = |ok| {
            Observation::Dependency(DependencyProbe {
                at: t(0),
                name: "db".into(),
                ok,
                detail: if ok {
                    String::new()
                } else {
                    "connect timeout".into()
                },
            })
        };
        let out = tr.observe(&probe(false), t(0));
        assert_eq!(
            active(&out, SignalKind::DependencyDown)[0].key,
            "dependency_down/db"
        );
        assert!(has_inactive(
            &tr.observe(&probe(true), t(S)),
            SignalKind::DependencyDown
        ));
    }

    #[test]
    fn app_rules_fire_above_and_below_and_ignore_absent_metrics() {
        let settings = EvalSettings {
            app_rules: vec![
                crate::collect::config::AppRule {
                    metric: "queue_depth".into(),
                    above: Some(100.0),
                    below: None,
                },
                crate::collect::config::AppRule {
                    metric: "workers".into(),
                    above: None,
                    below: Some(1.0),
                },
                crate::collect::config::AppRule {
                    metric: "absent".into(),
                    above: Some(0.0),
                    below: None,
                },
            ],
            ..EvalSettings::default()
        };
        let mut tr = Tracker::new(settings);
        let probe = |depth: f64, workers: f64| {
            Observation::App(AppProbe {
                at: t(0),
                ok: true,
                detail: String::new(),
                samples: [
                    ("queue_depth".to_string(), depth),
                    ("workers".to_string(), workers),
                ]
                .into_iter()
                .collect(),
            })
        };
        let out = tr.observe(&probe(250.0, 0.0), t(0));
        let a = active(&out, SignalKind::AppMetric);
        assert_eq!(a.len(), 2, "{out:?}");
        assert!(
            a.iter().any(|s| s.key == "app_metric/queue_depth"
                && s.detail == "queue_depth = 250 (above 100)")
        );
        assert!(a.iter().any(|s| s.key == "app_metric/workers"));
        assert!(!out.iter().any(|s| s.key == "app_metric/absent"));
        let out = tr.observe(&probe(5.0, 3.0), t(S));
        assert!(active(&out, SignalKind::AppMetric).is_empty(), "{out:?}");
        assert!(has_inactive(&out, SignalKind::AppMetric));
    }

    #[test]
    fn app_down_after_consecutive_failures() {
        let mut tr = Tracker::new(EvalSettings::default());
        let probe = |ok| {
            Observation::App(AppProbe {
                at: t(0),
                ok,
                detail: "timeout".into(),
                samples: BTreeMap::new(),
            })
        };
        assert!(tr.observe(&probe(false), t(0)).is_empty());
        assert!(tr.observe(&probe(false), t(0)).is_empty());
        assert!(
            has_inactive(&tr.observe(&probe(true), t(0)), SignalKind::AppDown),
            "one hiccup resets"
        );
        tr.observe(&probe(false), t(0));
        tr.observe(&probe(false), t(0));
        let out = tr.observe(&probe(false), t(0));
        assert!(has_active(&out, SignalKind::AppDown));
    }

    #[test]
    fn two_ooms_far_apart_are_two_occurrences() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut out = tr.observe(&event("shop-web-1", EventAction::Oom, 0), t(0));
        out.extend(tr.observe(&event("shop-web-1", EventAction::Start, S), t(S)));
        out.extend(tr.observe(
            &event("shop-web-1", EventAction::Oom, 20 * MIN),
            t(20 * MIN),
        ));
        let occ: BTreeSet<Option<i64>> = active(&out, SignalKind::ContainerOomKilled)
            .iter()
            .map(|s| s.occurrence)
            .collect();
        assert_eq!(occ.len(), 2);
    }

    fn source(source: SourceId, ok: bool, at_ms: i64, detail: &str) -> Observation {
        Observation::Source {
            source,
            at: t(at_ms),
            ok,
            detail: detail.into(),
        }
    }

    #[test]
    fn redis_unreachable_has_its_own_window() {
        let mut tr = Tracker::new(EvalSettings {
            redis_unreachable_after: Duration::from_secs(30),
            ..EvalSettings::default()
        });
        tr.observe(&source(SourceId::Redis, false, 0, "refused"), t(0));
        assert!(
            !has_active(&tr.tick(t(10 * S)), SignalKind::RedisUnreachable),
            "the Docker window does not apply to Redis"
        );
        assert!(has_active(
            &tr.tick(t(30 * S)),
            SignalKind::RedisUnreachable
        ));
    }

    #[test]
    fn redis_unreachable_is_debounced_like_docker() {
        let mut tr = Tracker::new(EvalSettings::default());
        let fail = |at| source(SourceId::Redis, false, at, "connection refused");
        assert!(!has_active(
            &tr.observe(&fail(0), t(0)),
            SignalKind::RedisUnreachable
        ));
        assert!(tr.tick(t(5 * S)).is_empty());
        assert!(!has_active(
            &tr.observe(&fail(8 * S), t(8 * S)),
            SignalKind::RedisUnreachable
        ));
        let out = tr.tick(t(10 * S));
        let a = active(&out, SignalKind::RedisUnreachable);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "redis_unreachable/redis");
        assert_eq!(a[0].severity, Severity::Critical);
        assert!(
            a[0].detail
                .starts_with("Redis unreachable for 10s: connection refused"),
            "{}",
            a[0].detail
        );
        assert!(
            tr.tick(t(11 * S)).is_empty(),
            "one active signal per outage"
        );
        assert!(!has_active(
            &tr.observe(&fail(12 * S), t(12 * S)),
            SignalKind::RedisUnreachable
        ));
        let out = tr.observe(&source(SourceId::Redis, true, 13 * S, ""), t(13 * S));
        assert!(has_inactive(&out, SignalKind::RedisUnreachable));
        // A blip shorter than the debounce never fires, and the debounce restarts after it.
        tr.observe(&fail(20 * S), t(20 * S));
        tr.observe(&source(SourceId::Redis, true, 25 * S, ""), t(25 * S));
        tr.observe(&fail(26 * S), t(26 * S));
        assert!(!has_active(
            &tr.tick(t(35 * S)),
            SignalKind::RedisUnreachable
        ));
        assert!(has_active(
            &tr.tick(t(36 * S)),
            SignalKind::RedisUnreachable
        ));
        // Redis failing says nothing about Docker.
        assert!(!has_active(
            &tr.tick(t(60 * S)),
            SignalKind::DockerUnreachable
        ));
    }

    #[test]
    fn every_good_redis_probe_reports_inactive() {
        // After a restart the alert state may come back from Redis as firing: the first good
        // probe must be able to resolve it.
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(&source(SourceId::Redis, true, 0, ""), t(0));
        assert!(has_inactive(&out, SignalKind::RedisUnreachable));
        let out = tr.observe(&source(SourceId::Redis, true, S, ""), t(S));
        assert!(has_inactive(&out, SignalKind::RedisUnreachable));
    }

    #[test]
    fn executor_down_follows_the_heartbeat() {
        let mut tr = Tracker::new(EvalSettings::default());
        let out = tr.observe(
            &source(
                SourceId::Executor,
                false,
                0,
                "no heartbeat (vigil:heartbeat:executor missing)",
            ),
            t(0),
        );
        let a = active(&out, SignalKind::ExecutorDown);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "executor_down/executor");
        assert_eq!(
            a[0].detail,
            "no heartbeat (vigil:heartbeat:executor missing)"
        );
        let out = tr.observe(&source(SourceId::Executor, false, S, ""), t(S));
        assert_eq!(
            active(&out, SignalKind::ExecutorDown)[0].detail,
            "no executor heartbeat"
        );
        let out = tr.observe(&source(SourceId::Executor, true, 2 * S, ""), t(2 * S));
        assert!(has_inactive(&out, SignalKind::ExecutorDown));
        // The executor's state is not Redis's: neither implies the other.
        assert!(!has_active(&out, SignalKind::RedisUnreachable));
    }

    #[test]
    fn history_for_the_planner() {
        let mut tr = Tracker::new(EvalSettings::default());
        let mut d = details("shop-web-1", RunState::Running);
        d.labels = labels(&[(LABEL_REMEDIATE, "true")]);
        d.restart_policy = "unless-stopped".into();
        d.memory_limit = 1000;
        for i in 0..3 {
            let s = stats(i * 15 * S, 0, 0, 500 + i as u64 * 100, 1000);
            observe_stats(&mut tr, i * 15 * S, &d, s, t(i * 15 * S));
        }
        let h = tr.history_of("id-shop-web-1").unwrap();
        assert_eq!(h.restart_policy, "unless-stopped");
        assert_eq!(h.memory_limit, 1000);
        assert!(label_is_true(&h.labels, LABEL_REMEDIATE));
        assert!(!h.restart_loop_active && !h.stopped_by_operator);
        let bytes: Vec<u64> = h.memory_samples.iter().map(|(_, b)| *b).collect();
        assert_eq!(bytes.len(), 3);
        assert!(bytes.windows(2).all(|w| w[1] > w[0]), "{bytes:?}");
        assert_eq!(tr.history_of("id-unknown"), None);
        // A stop by the operator shows; the trend restarts when the container stops.
        tr.observe(
            &event("shop-web-1", EventAction::Kill { signal: Some(15) }, 50 * S),
            t(50 * S),
        );
        tr.observe(&die("shop-web-1", 143, 50 * S + 100), t(50 * S + 100));
        let h = tr.history_of("id-shop-web-1").unwrap();
        assert!(h.stopped_by_operator);
        assert!(h.memory_samples.is_empty());
    }
}
