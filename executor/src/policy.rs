//! The executor's own safety policy: a plain function from a verified request, the re-inspected
//! target and the recent history to a [`Permit`] or a [`Denied`] naming its rule.
//!
//! Pure (sans-IO): `now` comes from the caller; no clock, no socket, no task. Nothing in the
//! request is trusted beyond what it asks for: the opt-in label, protection and freshness come
//! from the engine's answer ([`TargetFacts`]), the history from [`PolicyState`], which is rebuilt
//! from the audit log at start-up ([`PolicyState::rebuild`]).
//!
//! # Rules, in order (each with its stable [`Denied::rule`] name)
//! 1. `disabled` (kill switch `EXECUTOR_ENABLED=false`), `paused` (the runtime pause key exists).
//! 2. `action_not_allowed`: the action is not in the allowlist.
//! 3. `target_missing` (no such container), `target_mismatch` (the id names another container
//!    than the request's name), `not_opted_in` (`vigil.remediate` is not true, as
//!    [`vigil_docker::labels::remediates`] reads it).
//! 4. `protected`: label `vigil.protected` with any value but a false one
//!    ([`vigil_docker::labels::is_protected`]), a configured protected name (the executor, the
//!    watchdog, Redis, the gate), or this executor's own container.
//! 5. `stale`: the re-inspected state makes the request pointless or harmful (already healthy
//!    again, already restarting, started after the request was issued, stopped by an operator,
//!    already running, not running).
//! 6. `backoff`: per container, `backoff_initial` doubling per action up to `backoff_max`; the
//!    streak resets after `backoff_reset` without actions.
//! 7. `breaker_opened` / `breaker`: at least `breaker_max_actions` actions on the container within
//!    `breaker_window`. `breaker_opened` is said once per opening (so one alert goes out),
//!    `breaker` afterwards.
//! 8. `budget`: at most `budget_per_minute` actions per rolling minute across all containers.
//!
//! Dry-run evaluates every rule; a request that would be permitted gets a dry-run [`Permit`],
//! which [`crate::act`] never carries out.
//!
//! Both executed and failed attempts count as actions for backoff, breaker and budget: an
//! attempt that failed still touched the engine.

use crate::audit::{AuditRecord, Decision};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use vigil_docker::labels::{self, ExitCause};
use vigil_docker::{ContainerDetails, Health, RunState};
use vigil_protocol::wire::{Action, Payload};
use vigil_shared::time::Timestamp;

// Label names and their fail-safe meaning live in the shared crate (the watchdog reads them too).
pub use vigil_docker::labels::{PROTECTED as LABEL_PROTECTED, REMEDIATE as LABEL_REMEDIATE};

/// Every stable rule name, for metrics label sets and docs.
pub const ALL_RULES: [&str; 13] = [
    "disabled",
    "paused",
    "action_not_allowed",
    "target_missing",
    "target_mismatch",
    "not_opted_in",
    "protected",
    "stale",
    "backoff",
    "breaker_opened",
    "breaker",
    "budget",
    "dry_run",
];

/// How many past actions per container are kept: the backoff is capped after a few doublings
/// and the breaker needs only `breaker_max_actions`.
const MAX_KEPT_PER_CONTAINER: usize = 32;

/// The policy's tunables (`EXECUTOR_POLICY__*`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// Largest accepted clock difference to the watchdog (default 30 s).
    pub max_skew: Duration,
    /// Longest accepted request lifetime (default 5 min).
    pub max_ttl: Duration,
    /// Actions the executor may carry out (default `restart` and `start`; `stop` only when
    /// configured).
    pub allowed_actions: Vec<Action>,
    /// Host-wide: at most this many actions per rolling minute (default 5).
    pub budget_per_minute: u32,
    /// Per container: this many actions within `breaker_window` open the breaker (default 3).
    pub breaker_max_actions: u32,
    /// Default 1 h.
    pub breaker_window: Duration,
    /// Wait after the first action of a streak (default 10 s); doubles per action.
    pub backoff_initial: Duration,
    /// Longest wait (default 5 min).
    pub backoff_max: Duration,
    /// A streak ends after this long without actions (default 10 min).
    pub backoff_reset: Duration,
    /// Container names that are never touched (exact, or a compose replica `<name>-<n>`), and
    /// container id prefixes (at least 12 hex chars).
    pub protected_names: Vec<String>,
    /// This executor's own container id, when known; never touched.
    pub self_container_id: Option<String>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            max_skew: Duration::from_secs(30),
            max_ttl: Duration::from_secs(5 * 60),
            allowed_actions: vec![Action::Restart, Action::Start],
            budget_per_minute: 5,
            breaker_max_actions: 3,
            breaker_window: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(5 * 60),
            backoff_reset: Duration::from_secs(10 * 60),
            protected_names: default_protected_names(),
            self_container_id: None,
        }
    }
}

/// The names of Vigil's own services in the shipped compose stack.
pub fn default_protected_names() -> Vec<String> {
    [
        "vigil-executor",
        "vigil-watchdog",
        "vigil-redis",
        "vigil-gate",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Run-time switches, read per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// `EXECUTOR_ENABLED`.
    pub enabled: bool,
    /// The runtime pause key exists.
    pub paused: bool,
    /// `EXECUTOR_DRY_RUN`.
    pub dry_run: bool,
}

/// What a fresh inspect of the target said (never the request's word).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetFacts {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub project: Option<String>,
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    pub health: Health,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// The container's own stop timeout in seconds (`Config.StopTimeout`), when it set one.
    pub stop_timeout: Option<u64>,
}

impl From<&ContainerDetails> for TargetFacts {
    fn from(d: &ContainerDetails) -> Self {
        TargetFacts {
            id: d.container.id.clone(),
            name: d.container.name.clone(),
            project: d.container.project.clone(),
            service: d.container.service.clone(),
            labels: d.labels.clone(),
            state: d.state,
            health: d.health,
            exit_code: d.exit_code,
            oom_killed: d.oom_killed,
            started_at: d.started_at,
            finished_at: d.finished_at,
            stop_timeout: d.stop_timeout,
        }
    }
}

/// Policy's permission to carry out one action on one container. Its fields are private and
/// only [`evaluate`] makes one, so an action without a permit does not compile.
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    action: Action,
    container_id: String,
    container_name: String,
    dry_run: bool,
    /// The container's own stop timeout (seconds), from the fresh inspect.
    stop_timeout: Option<u64>,
}

impl Permit {
    /// The container's own stop timeout in seconds (`Config.StopTimeout`), when it set one.
    pub fn container_stop_timeout(&self) -> Option<u64> {
        self.stop_timeout
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The full id of the inspected container.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn container_name(&self) -> &str {
        &self.container_name
    }

    /// Dry-run: everything passed, nothing may be done.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}

/// A refusal: the rule that refused (stable, see the module docs) and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct Denied {
    pub rule: &'static str,
    pub detail: String,
    /// Temporary refusals only: when asking again may succeed (backoff end, breaker window,
    /// budget minute, pause re-check). Audited as `retry_at`.
    pub retry_at: Option<Timestamp>,
}

impl Denied {
    fn new(rule: &'static str, detail: impl Into<String>) -> Denied {
        Denied {
            rule,
            detail: detail.into(),
            retry_at: None,
        }
    }

    fn until(mut self, at: Timestamp) -> Denied {
        self.retry_at = Some(at);
        self
    }
}

/// A paused executor has no end time: the watchdog is told to ask again after this long.
pub const PAUSED_RETRY: Duration = Duration::from_secs(30);

/// The rules that need no engine answer (switches and allowlist). [`evaluate`] applies them
/// first too; the pipeline calls this before it inspects, so a paused executor makes no
/// Docker call at all.
pub fn precheck(req: &Payload, cfg: &PolicySettings, switches: Switches) -> Result<(), Denied> {
    if !switches.enabled {
        return Err(Denied::new(
            "disabled",
            "the executor is disabled (EXECUTOR_ENABLED=false)",
        ));
    }
    if switches.paused {
        // The caller adds `retry_at` (this check has no clock): see [`PAUSED_RETRY`].
        return Err(Denied::new(
            "paused",
            "the executor is paused by an operator (pause key set)",
        ));
    }
    if !cfg.allowed_actions.contains(&req.action) {
        return Err(Denied::new(
            "action_not_allowed",
            format!("action {} is not in the allowlist", req.action),
        ));
    }
    Ok(())
}

/// The whole policy (see the module docs for the rules and their order).
pub fn evaluate(
    req: &Payload,
    facts: Option<&TargetFacts>,
    state: &PolicyState,
    cfg: &PolicySettings,
    switches: Switches,
    now: Timestamp,
) -> Result<Permit, Denied> {
    precheck(req, cfg, switches)?;
    let Some(facts) = facts else {
        return Err(Denied::new(
            "target_missing",
            format!("no container {}", req.target.id),
        ));
    };
    if facts.name != req.target.name {
        return Err(Denied::new(
            "target_mismatch",
            format!(
                "container {} is named {:?}, the request names {:?}",
                short_id(&facts.id),
                facts.name,
                req.target.name
            ),
        ));
    }
    if !labels::remediates(&facts.labels) {
        return Err(Denied::new(
            "not_opted_in",
            format!("{} does not carry {LABEL_REMEDIATE}=true", facts.name),
        ));
    }
    check_protected(facts, cfg)?;
    check_fresh(req, facts, state)?;
    check_history(&facts.id, state, cfg, now)?;
    Ok(Permit {
        action: req.action,
        container_id: facts.id.clone(),
        container_name: facts.name.clone(),
        dry_run: switches.dry_run,
        stop_timeout: facts.stop_timeout,
    })
}

fn check_protected(facts: &TargetFacts, cfg: &PolicySettings) -> Result<(), Denied> {
    if labels::is_protected(&facts.labels) {
        return Err(Denied::new(
            "protected",
            format!(
                "{} carries {LABEL_PROTECTED} (any value but false protects)",
                facts.name
            ),
        ));
    }
    if let Some(own) = cfg.self_container_id.as_deref()
        && same_container(own, &facts.id)
    {
        return Err(Denied::new(
            "protected",
            format!("{} is this executor's own container", facts.name),
        ));
    }
    if let Some(entry) = cfg
        .protected_names
        .iter()
        .find(|entry| name_matches(entry, facts))
    {
        return Err(Denied::new(
            "protected",
            format!("{} is protected by name ({entry})", facts.name),
        ));
    }
    Ok(())
}

/// `entry` names the container exactly, as a compose replica (`<entry>-<n>` or `<entry>_<n>`),
/// or is a prefix (12+ chars) of its id.
fn name_matches(entry: &str, facts: &TargetFacts) -> bool {
    let entry = entry.trim();
    if entry.is_empty() {
        return false;
    }
    if facts.name == entry || (entry.len() >= 12 && facts.id.starts_with(entry)) {
        return true;
    }
    [format!("{entry}-"), format!("{entry}_")]
        .iter()
        .filter_map(|prefix| facts.name.strip_prefix(prefix.as_str()))
        .any(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Two container ids name the same container when one is a prefix (12+ chars) of the other.
fn same_container(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n >= 12 && a[..n] == b[..n]
}

fn check_fresh(req: &Payload, facts: &TargetFacts, state: &PolicyState) -> Result<(), Denied> {
    let stale = |why: String| Err(Denied::new("stale", format!("{}: {why}", facts.name)));
    let started_since_request = facts.started_at.is_some_and(|t| t > req.issued_at);
    match req.action {
        Action::Restart => match facts.state {
            RunState::Restarting => stale("already restarting".into()),
            RunState::Paused | RunState::Removing | RunState::Dead => {
                stale(format!("is {:?}", facts.state).to_lowercase())
            }
            _ if facts.health == Health::Healthy => stale("healthy again".into()),
            _ if started_since_request => stale("(re)started after the request was issued".into()),
            _ => Ok(()),
        },
        Action::Start => match facts.state {
            RunState::Running | RunState::Restarting | RunState::Paused => {
                stale("already running".into())
            }
            RunState::Removing | RunState::Dead => {
                stale(format!("is {:?}", facts.state).to_lowercase())
            }
            RunState::Exited if stopped_by_operator(facts, state) => stale(format!(
                "stopped by an operator or exited cleanly (exit {})",
                facts.exit_code
            )),
            _ if started_since_request => stale("started after the request was issued".into()),
            _ => Ok(()),
        },
        Action::Stop => match facts.state {
            RunState::Running | RunState::Restarting | RunState::Paused => Ok(()),
            other => stale(format!("not running ({other:?})").to_lowercase()),
        },
    }
}

/// Exit 0, or a stop signal from outside ([`ExitCause::Stopped`]), unless the exit was this
/// executor's own `stop` (a process that exits 0 on SIGTERM looks the same): intent, not
/// failure. Vigil's own stop is recognised by the audit: the exit
/// happened while an executed `stop` of this container was under way.
fn stopped_by_operator(facts: &TargetFacts, state: &PolicyState) -> bool {
    if state.stopped_by_vigil(&facts.id, facts.started_at, facts.finished_at) {
        return false;
    }
    match labels::classify_exit(facts.exit_code, facts.oom_killed) {
        ExitCause::Clean | ExitCause::Stopped => true,
        ExitCause::OomKilled | ExitCause::Failed => false,
    }
}

fn check_history(
    container_id: &str,
    state: &PolicyState,
    cfg: &PolicySettings,
    now: Timestamp,
) -> Result<(), Denied> {
    let actions = state.actions_for(container_id);
    if let Some(&last) = actions.last() {
        let wait = state.backoff_wait(container_id, cfg);
        let since = now.since(last);
        if since < wait {
            return Err(Denied::new(
                "backoff",
                format!(
                    "last action {} ago; next allowed after {}",
                    fmt_ms(since),
                    fmt_ms(wait)
                ),
            )
            .until(last.plus(wait)));
        }
    }
    let window_start = now.minus(cfg.breaker_window);
    let in_window = actions.iter().filter(|t| **t > window_start).count();
    if in_window >= cfg.breaker_max_actions as usize {
        let last = actions.last().copied().unwrap_or(now);
        let announced = state
            .breaker_announced
            .get(container_id)
            .is_some_and(|t| *t >= last);
        let rule = if announced {
            "breaker"
        } else {
            "breaker_opened"
        };
        return Err(Denied::new(
            rule,
            format!(
                "{in_window} actions within {}: circuit open, manual action needed",
                fmt_ms(cfg.breaker_window)
            ),
        )
        .until(
            actions
                .iter()
                .rev()
                .nth(cfg.breaker_max_actions.saturating_sub(1) as usize)
                .copied()
                .unwrap_or(last)
                .plus(cfg.breaker_window),
        ));
    }
    let minute_ago = now.minus(Duration::from_secs(60));
    let host_recent = state.recent.iter().filter(|t| **t > minute_ago).count();
    if host_recent >= cfg.budget_per_minute as usize {
        return Err(Denied::new(
            "budget",
            format!(
                "{host_recent} actions on this host within the last minute (budget {})",
                cfg.budget_per_minute
            ),
        )
        .until(
            state
                .recent
                .iter()
                .rev()
                .nth(cfg.budget_per_minute.saturating_sub(1) as usize)
                .copied()
                .unwrap_or(now)
                .plus(Duration::from_secs(60)),
        ));
    }
    Ok(())
}

fn fmt_ms(d: Duration) -> String {
    vigil_shared::config::format_duration(d)
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What policy remembers: recent actions per container and host-wide, and when each
/// container's breaker opening was announced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyState {
    /// Action times per full container id, oldest first.
    actions: BTreeMap<String, Vec<Timestamp>>,
    /// Every action time on the host within the last minute or so, oldest first.
    recent: VecDeque<Timestamp>,
    /// When `breaker_opened` was last said per container.
    breaker_announced: BTreeMap<String, Timestamp>,
    /// This executor's own executed `stop`s per container: `(started, finished)` of the call.
    own_stops: BTreeMap<String, (Timestamp, Timestamp)>,
}

/// Slack around an own stop's call when matching the container's `FinishedAt` to it.
const OWN_STOP_SLACK: Duration = Duration::from_secs(2);
/// How long an own stop is remembered (a stopped container may wait days for its `start`).
const OWN_STOP_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most own stops remembered.
const MAX_OWN_STOPS: usize = 10_000;

impl PolicyState {
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// Replays the audit log: executed and failed actions, and breaker announcements.
    pub fn rebuild<'a>(records: impl Iterator<Item = &'a AuditRecord>) -> PolicyState {
        let mut state = PolicyState::new();
        for rec in records {
            state.observe(rec);
        }
        state
    }

    /// Applies one audit record (see [`PolicyState::rebuild`]).
    pub fn observe(&mut self, rec: &AuditRecord) {
        let Some(target) = &rec.target else { return };
        match rec.decision {
            // An action counts from its intent; records written before intents existed count
            // from their outcome (the pipeline skips an outcome that follows an intent).
            Decision::Intent | Decision::Executed | Decision::Failed if rec.action.is_some() => {
                self.record(&target.id, rec.ts);
                if rec.decision == Decision::Executed && rec.action == Some(Action::Stop) {
                    let done = rec.ts.plus(Duration::from_millis(rec.duration_ms));
                    self.record_own_stop(&target.id, rec.ts, done);
                }
            }
            Decision::Refused if rec.reason == "breaker_opened" => {
                self.breaker_announced.insert(target.id.clone(), rec.ts);
            }
            _ => {}
        }
    }

    /// An action was carried out (or attempted) on `container_id` at `now`.
    pub fn record(&mut self, container_id: &str, now: Timestamp) {
        let list = self.actions.entry(container_id.to_string()).or_default();
        list.push(now);
        list.sort();
        if list.len() > MAX_KEPT_PER_CONTAINER {
            let excess = list.len() - MAX_KEPT_PER_CONTAINER;
            list.drain(..excess);
        }
        self.recent.push_back(now);
        self.recent.make_contiguous().sort();
        let minute_ago = now.minus(Duration::from_secs(120));
        while self.recent.front().is_some_and(|t| *t < minute_ago) {
            self.recent.pop_front();
        }
    }

    /// Takes back an action [`PolicyState::record`]ed at `at` that never happened (its intent
    /// could not be written).
    pub fn forget(&mut self, container_id: &str, at: Timestamp) {
        if let Some(list) = self.actions.get_mut(container_id)
            && let Some(i) = list.iter().rposition(|t| *t == at)
        {
            list.remove(i);
        }
        if let Some(i) = self.recent.iter().rposition(|t| *t == at) {
            self.recent.remove(i);
        }
    }

    /// This executor stopped `container_id` with a call that ran from `started` to `finished`.
    pub fn record_own_stop(&mut self, container_id: &str, started: Timestamp, finished: Timestamp) {
        if self.own_stops.len() >= MAX_OWN_STOPS
            && let Some(oldest) = self
                .own_stops
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone())
        {
            self.own_stops.remove(&oldest);
        }
        self.own_stops
            .insert(container_id.to_string(), (started, finished));
    }

    /// Whether the container's last exit (`finished_at`) was this executor's own stop: it
    /// happened during an executed `stop` call, and the container has not been started since
    /// that call began (a start and a later exit, e.g. an operator's stop, is not Vigil's).
    pub fn stopped_by_vigil(
        &self,
        container_id: &str,
        started_at: Option<Timestamp>,
        finished_at: Option<Timestamp>,
    ) -> bool {
        let (Some(&(started, finished)), Some(at)) =
            (self.own_stops.get(container_id), finished_at)
        else {
            return false;
        };
        let not_started_since = started_at.is_none_or(|s| s <= started);
        not_started_since
            && at >= started.minus(OWN_STOP_SLACK)
            && at <= finished.plus(OWN_STOP_SLACK)
    }

    /// A refusal was audited; remembers breaker announcements.
    /// The outcome of an action whose `intent` was already counted: only what the outcome
    /// adds (Vigil's own stop).
    pub fn observe_outcome(&mut self, rec: &AuditRecord) {
        if let Some(target) = &rec.target
            && rec.decision == Decision::Executed
            && rec.action == Some(Action::Stop)
        {
            let done = rec.ts.plus(Duration::from_millis(rec.duration_ms));
            self.record_own_stop(&target.id, rec.ts, done);
        }
    }

    pub fn observe_denial(&mut self, container_id: &str, denied: &Denied, now: Timestamp) {
        if denied.rule == "breaker_opened" {
            self.breaker_announced.insert(container_id.to_string(), now);
        }
    }

    /// Forgets containers with no action within the longest window that still matters.
    pub fn prune(&mut self, cfg: &PolicySettings, now: Timestamp) {
        let keep = cfg
            .breaker_window
            .max(cfg.backoff_reset)
            .max(Duration::from_secs(60));
        let horizon = now.minus(keep);
        self.actions
            .retain(|_, list| list.last().is_some_and(|t| *t >= horizon));
        self.breaker_announced.retain(|_, t| *t >= horizon);
        let own_horizon = now.minus(OWN_STOP_MEMORY);
        self.own_stops.retain(|_, (_, done)| *done >= own_horizon);
        let minute_ago = now.minus(Duration::from_secs(120));
        while self.recent.front().is_some_and(|t| *t < minute_ago) {
            self.recent.pop_front();
        }
    }

    pub fn actions_for(&self, container_id: &str) -> &[Timestamp] {
        self.actions
            .get(container_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The wait required after the latest action: `backoff_initial * 2^(n-1)` capped at
    /// `backoff_max`, where `n` counts the actions of the current streak (consecutive actions
    /// less than `backoff_reset` apart).
    fn backoff_wait(&self, container_id: &str, cfg: &PolicySettings) -> Duration {
        let actions = self.actions_for(container_id);
        let mut streak = 0u32;
        let mut later: Option<Timestamp> = None;
        for t in actions.iter().rev() {
            if let Some(l) = later
                && l.since(*t) >= cfg.backoff_reset
            {
                break;
            }
            streak += 1;
            later = Some(*t);
        }
        if streak == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(streak - 1).unwrap_or(u32::MAX);
        cfg.backoff_initial
            .checked_mul(factor)
            .unwrap_or(cfg.backoff_max)
            .min(cfg.backoff_max)
    }

    /// Containers whose breaker is open at `now`: the count the breaker rule would refuse (for
    /// metrics, which never name containers).
    pub fn open_breakers(&self, cfg: &PolicySettings, now: Timestamp) -> usize {
        let window_start = now.minus(cfg.breaker_window);
        self.actions
            .values()
            .filter(|list| {
                list.iter().filter(|t| **t > window_start).count()
                    >= cfg.breaker_max_actions as usize
            })
            .count()
    }

    /// Actions on the host within the minute before `now` (for `/healthz`).
    pub fn actions_last_minute(&self, now: Timestamp) -> usize {
        let minute_ago = now.minus(Duration::from_secs(60));
        self.recent.iter().filter(|t| **t > minute_ago).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::wire::{Reason, Target};

    const T0: Timestamp = Timestamp(1_700_000_000_000);
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn on() -> Switches {
        Switches {
            enabled: true,
            paused: false,
            dry_run: false,
        }
    }

    fn req(action: Action, id: &str, name: &str, issued: Timestamp) -> Payload {
        Payload::new(
            "prod",
            action,
            Target {
                id: id.into(),
                name: name.into(),
                project: None,
                service: None,
            },
            Reason::new("container_unhealthy", "high", "x", 0.9),
            issued,
        )
    }

    fn facts(id: &str, name: &str) -> TargetFacts {
        TargetFacts {
            id: id.into(),
            name: name.into(),
            project: Some("shop".into()),
            service: Some("web".into()),
            labels: BTreeMap::from([(LABEL_REMEDIATE.to_string(), "true".to_string())]),
            state: RunState::Running,
            health: Health::Unhealthy,
            exit_code: 0,
            oom_killed: false,
            started_at: Some(T0.minus(secs(3600))),
            finished_at: None,
            stop_timeout: None,
        }
    }

    fn eval(
        r: &Payload,
        f: Option<&TargetFacts>,
        s: &PolicyState,
        sw: Switches,
        now: Timestamp,
    ) -> Result<Permit, &'static str> {
        let cfg = PolicySettings {
            allowed_actions: Action::ALL.to_vec(),
            ..PolicySettings::default()
        };
        evaluate(r, f, s, &cfg, sw, now).map_err(|d| d.rule)
    }

    #[test]
    fn stop_is_not_allowed_by_default() {
        let r = req(Action::Stop, ID, "web-1", T0);
        let f = facts(ID, "web-1");
        let d = evaluate(
            &r,
            Some(&f),
            &PolicyState::new(),
            &PolicySettings::default(),
            on(),
            T0,
        )
        .expect_err("stop needs configuration");
        assert_eq!(d.rule, "action_not_allowed");
    }

    #[test]
    fn own_stop_may_be_started_again_an_operators_stop_not() {
        let mut s = PolicyState::new();
        s.record_own_stop(ID, T0, T0.plus(secs(2)));
        let mut f = facts(ID, "web-1");
        f.state = RunState::Exited;
        f.exit_code = 143;
        f.finished_at = Some(T0.plus(secs(1)));
        let later = T0.plus(secs(3600));
        let r = req(Action::Start, ID, "web-1", later);
        assert_eq!(eval(&r, Some(&f), &s, on(), later).map(drop), Ok(()));
        // Started by a person afterwards, then `docker stop` by a person: an operator's stop.
        f.started_at = Some(T0.plus(secs(60)));
        f.finished_at = Some(T0.plus(secs(120)));
        assert_eq!(eval(&r, Some(&f), &s, on(), later).map(drop), Err("stale"));
        // And with no own stop on record at all.
        f.finished_at = Some(T0.plus(secs(1)));
        assert_eq!(
            eval(&r, Some(&f), &PolicyState::new(), on(), later).map(drop),
            Err("stale")
        );
    }

    #[test]
    fn labels_mean_what_the_shared_parser_says() {
        for value in ["1", "yes", "TRUE", " on ", "garbage"] {
            let mut f = facts(ID, "web-1");
            f.labels.insert(LABEL_PROTECTED.into(), value.into());
            let r = req(Action::Restart, ID, "web-1", T0);
            assert_eq!(
                eval(&r, Some(&f), &PolicyState::new(), on(), T0).map(drop),
                Err("protected"),
                "{LABEL_PROTECTED}={value:?}"
            );
        }
        for value in ["yes", "1", "On"] {
            let mut f = facts(ID, "web-1");
            f.labels.insert(LABEL_REMEDIATE.into(), value.into());
            let r = req(Action::Restart, ID, "web-1", T0);
            assert_eq!(
                eval(&r, Some(&f), &PolicyState::new(), on(), T0).map(drop),
                Ok(()),
                "{LABEL_REMEDIATE}={value:?}"
            );
        }
    }

    #[test]
    fn rule_table() {
        type Case = (
            &'static str,
            Action,
            fn(&mut TargetFacts),
            Switches,
            Result<(), &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("permitted", Action::Restart, |_| {}, on(), Ok(())),
            (
                "kill switch",
                Action::Restart,
                |_| {},
                Switches {
                    enabled: false,
                    ..on()
                },
                Err("disabled"),
            ),
            (
                "paused",
                Action::Restart,
                |_| {},
                Switches {
                    paused: true,
                    ..on()
                },
                Err("paused"),
            ),
            (
                "no opt-in",
                Action::Restart,
                |f| {
                    f.labels.clear();
                },
                on(),
                Err("not_opted_in"),
            ),
            (
                "opt-in false",
                Action::Restart,
                |f| {
                    f.labels.insert(LABEL_REMEDIATE.into(), "false".into());
                },
                on(),
                Err("not_opted_in"),
            ),
            (
                "protected label",
                Action::Restart,
                |f| {
                    f.labels.insert(LABEL_PROTECTED.into(), "true".into());
                },
                on(),
                Err("protected"),
            ),
            (
                "renamed since the request",
                Action::Restart,
                |f| {
                    f.name = "vigil-redis".into();
                },
                on(),
                Err("target_mismatch"),
            ),
            (
                "restarting",
                Action::Restart,
                |f| {
                    f.state = RunState::Restarting;
                },
                on(),
                Err("stale"),
            ),
            (
                "healthy again",
                Action::Restart,
                |f| {
                    f.health = Health::Healthy;
                },
                on(),
                Err("stale"),
            ),
            (
                "restarted since",
                Action::Restart,
                |f| {
                    f.started_at = Some(T0.plus(secs(1)));
                },
                on(),
                Err("stale"),
            ),
            (
                "starting is not healthy",
                Action::Restart,
                |f| {
                    f.health = Health::Starting;
                },
                on(),
                Ok(()),
            ),
            (
                "exited restart ok",
                Action::Restart,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 1;
                },
                on(),
                Ok(()),
            ),
            (
                "start while running",
                Action::Start,
                |_| {},
                on(),
                Err("stale"),
            ),
            (
                "start after docker stop (143)",
                Action::Start,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 143;
                },
                on(),
                Err("stale"),
            ),
            (
                "start after docker kill (137)",
                Action::Start,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 137;
                },
                on(),
                Err("stale"),
            ),
            (
                "start after clean exit",
                Action::Start,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 0;
                },
                on(),
                Err("stale"),
            ),
            (
                "start after OOM kill",
                Action::Start,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 137;
                    f.oom_killed = true;
                },
                on(),
                Ok(()),
            ),
            (
                "start after crash",
                Action::Start,
                |f| {
                    f.state = RunState::Exited;
                    f.exit_code = 1;
                },
                on(),
                Ok(()),
            ),
            ("stop running", Action::Stop, |_| {}, on(), Ok(())),
            (
                "stop exited",
                Action::Stop,
                |f| {
                    f.state = RunState::Exited;
                },
                on(),
                Err("stale"),
            ),
            (
                "kill switch beats everything",
                Action::Start,
                |f| {
                    f.labels.clear();
                },
                Switches {
                    enabled: false,
                    ..on()
                },
                Err("disabled"),
            ),
        ];
        for (what, action, tweak, sw, want) in cases {
            let mut f = facts(ID, "web-1");
            tweak(&mut f);
            let r = req(action, ID, "web-1", T0);
            let got = eval(&r, Some(&f), &PolicyState::new(), sw, T0).map(drop);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn protected_names_ids_and_self() {
        let cfg = PolicySettings {
            self_container_id: Some(ID[..12].to_string()),
            ..PolicySettings::default()
        };
        let s = PolicyState::new();
        for name in ["vigil-redis", "vigil-executor-1", "vigil-gate_2"] {
            let f = facts("ffffffffffff0000", name);
            let r = req(Action::Restart, &f.id, name, T0);
            let d = evaluate(&r, Some(&f), &s, &cfg, on(), T0).expect_err(name);
            assert_eq!(d.rule, "protected", "{name}");
        }
        let f = facts("ffffffffffff0000", "vigil-redis-cache");
        let r = req(Action::Restart, &f.id, &f.name, T0);
        assert!(evaluate(&r, Some(&f), &s, &cfg, on(), T0).is_ok());
        let own = facts(ID, "anything");
        let r = req(Action::Restart, ID, "anything", T0);
        let d = evaluate(&r, Some(&own), &s, &cfg, on(), T0).expect_err("self");
        assert_eq!(d.rule, "protected");
        let by_id = PolicySettings {
            protected_names: vec![ID[..16].to_string()],
            ..PolicySettings::default()
        };
        let d = evaluate(&r, Some(&own), &s, &by_id, on(), T0).expect_err("by id");
        assert_eq!(d.rule, "protected");
    }

    #[test]
    fn missing_mismatch_and_allowlist() {
        let r = req(Action::Restart, ID, "web-1", T0);
        let s = PolicyState::new();
        assert_eq!(
            eval(&r, None, &s, on(), T0).map(drop),
            Err("target_missing")
        );
        let f = facts(ID, "db-1");
        assert_eq!(
            eval(&r, Some(&f), &s, on(), T0).map(drop),
            Err("target_mismatch")
        );
        let cfg = PolicySettings {
            allowed_actions: vec![Action::Start],
            ..PolicySettings::default()
        };
        let f = facts(ID, "web-1");
        let d = evaluate(&r, Some(&f), &s, &cfg, on(), T0).expect_err("allowlist");
        assert_eq!(d.rule, "action_not_allowed");
        assert_eq!(
            precheck(&r, &cfg, on()).map_err(|d| d.rule),
            Err("action_not_allowed")
        );
    }

    #[test]
    fn dry_run_passes_rules_but_marks_the_permit() {
        let r = req(Action::Restart, ID, "web-1", T0);
        let f = facts(ID, "web-1");
        let sw = Switches {
            dry_run: true,
            ..on()
        };
        let p = eval(&r, Some(&f), &PolicyState::new(), sw, T0).expect("permit");
        assert!(p.is_dry_run());
        assert_eq!(
            (p.action(), p.container_id(), p.container_name()),
            (Action::Restart, ID, "web-1")
        );
        let mut unlabelled = f.clone();
        unlabelled.labels.clear();
        assert_eq!(
            eval(&r, Some(&unlabelled), &PolicyState::new(), sw, T0).map(drop),
            Err("not_opted_in"),
            "dry-run still reports what would be refused"
        );
    }

    /// Requests at `offsets` seconds after T0 for one container, recording every permitted
    /// one as executed; returns each decision's rule ("ok" when permitted).
    fn timeline(cfg: &PolicySettings, offsets: &[u64]) -> Vec<&'static str> {
        let mut state = PolicyState::new();
        let f = facts(ID, "web-1");
        offsets
            .iter()
            .map(|&off| {
                let now = T0.plus(secs(off));
                let r = req(Action::Restart, ID, "web-1", now);
                match evaluate(&r, Some(&f), &state, cfg, on(), now) {
                    Ok(_) => {
                        state.record(ID, now);
                        "ok"
                    }
                    Err(d) => {
                        state.observe_denial(ID, &d, now);
                        d.rule
                    }
                }
            })
            .collect()
    }

    #[test]
    fn backoff_doubles_then_resets() {
        let cfg = PolicySettings {
            breaker_max_actions: 100,
            budget_per_minute: 100,
            ..PolicySettings::default()
        };
        // 10 s after the first, 20 s after the second, 40 s after the third.
        assert_eq!(
            timeline(&cfg, &[0, 9, 10, 29, 30, 69, 70]),
            ["ok", "backoff", "ok", "backoff", "ok", "backoff", "ok"]
        );
        // Capped at 5 min: after many actions the wait stays 300 s.
        let mut state = PolicyState::new();
        for i in 0..8 {
            state.record(ID, T0.plus(secs(i * 301)));
        }
        assert_eq!(state.backoff_wait(ID, &cfg), secs(300));
        // 10 min without actions resets the streak: back to 10 s.
        let mut state = PolicyState::new();
        for t in [0, 10, 30] {
            state.record(ID, T0.plus(secs(t)));
        }
        assert_eq!(state.backoff_wait(ID, &cfg), secs(40));
        state.record(ID, T0.plus(secs(30 + 600)));
        assert_eq!(state.backoff_wait(ID, &cfg), secs(10));
        let f = facts(ID, "web-1");
        let later = T0.plus(secs(630 + 10));
        let r = req(Action::Restart, ID, "web-1", later);
        assert!(evaluate(&r, Some(&f), &state, &cfg, on(), later).is_ok());
    }

    #[test]
    fn breaker_opens_after_three_per_hour_and_announces_once() {
        let cfg = PolicySettings {
            backoff_initial: Duration::from_millis(1),
            budget_per_minute: 100,
            ..PolicySettings::default()
        };
        assert_eq!(
            timeline(&cfg, &[0, 60, 120, 180, 240, 3599, 3601]),
            [
                "ok",
                "ok",
                "ok",
                "breaker_opened",
                "breaker",
                "breaker",
                "ok"
            ]
        );
    }

    #[test]
    fn open_breakers_counts_containers_at_the_limit_within_the_window() {
        let cfg = PolicySettings::default();
        let other = "f".repeat(64);
        let mut state = PolicyState::new();
        for t in [0, 60, 120] {
            state.record(ID, T0.plus(secs(t)));
        }
        state.record(&other, T0);
        assert_eq!(state.open_breakers(&cfg, T0.plus(secs(180))), 1);
        // An hour after the first action only two remain in the window: closed again.
        assert_eq!(state.open_breakers(&cfg, T0.plus(secs(3600))), 0);
    }

    #[test]
    fn budget_limits_host_wide_actions_per_minute() {
        let cfg = PolicySettings::default();
        let mut state = PolicyState::new();
        let mut permitted = 0;
        for i in 0..30 {
            let id = format!("{i:064x}");
            let name = format!("app-{i}");
            let f = facts(&id, &name);
            let now = T0.plus(Duration::from_millis(i * 100));
            let r = req(Action::Restart, &id, &name, now);
            match evaluate(&r, Some(&f), &state, &cfg, on(), now) {
                Ok(p) => {
                    state.record(p.container_id(), now);
                    permitted += 1;
                }
                Err(d) => assert_eq!(d.rule, "budget", "container {i}"),
            }
        }
        assert_eq!(permitted, 5);
        assert_eq!(state.actions_last_minute(T0.plus(secs(3))), 5);
        // A minute after the first action, room opens again.
        let id = format!("{:064x}", 99);
        let f = facts(&id, "late");
        let now = T0.plus(secs(61));
        let r = req(Action::Restart, &id, "late", now);
        assert!(evaluate(&r, Some(&f), &state, &cfg, on(), now).is_ok());
    }

    #[test]
    fn temporary_refusals_say_when_to_ask_again_and_asking_then_passes() {
        let cfg = PolicySettings::default();
        let f = facts(ID, "web-1");
        let ask = |state: &PolicyState, at: Timestamp| {
            let r = req(Action::Restart, ID, "web-1", at);
            evaluate(&r, Some(&f), state, &cfg, on(), at)
        };
        // Backoff: 10 s after the first action.
        let mut state = PolicyState::new();
        state.record(ID, T0);
        let d = ask(&state, T0.plus(secs(3))).expect_err("backoff");
        assert_eq!((d.rule, d.retry_at), ("backoff", Some(T0.plus(secs(10)))));
        assert!(ask(&state, T0.plus(secs(10))).is_ok());
        // Breaker: three within the hour; it closes an hour after the oldest of the three.
        let mut state = PolicyState::new();
        for t in [0, 100, 400] {
            state.record(ID, T0.plus(secs(t)));
        }
        let d = ask(&state, T0.plus(secs(1000))).expect_err("breaker");
        assert_eq!(d.rule, "breaker_opened");
        let at = d.retry_at.expect("retry_at");
        assert_eq!(at, T0.plus(secs(3600)));
        assert!(ask(&state, at).is_ok());
        // Budget: the fifth action back leaves the minute.
        let mut state = PolicyState::new();
        for i in 0..5 {
            state.record(&format!("{i:064x}"), T0.plus(secs(i)));
        }
        let d = ask(&state, T0.plus(secs(30))).expect_err("budget");
        assert_eq!((d.rule, d.retry_at), ("budget", Some(T0.plus(secs(60)))));
        assert!(ask(&state, T0.plus(secs(60))).is_ok());
        // Permanent refusals carry none.
        let mut bare = f.clone();
        bare.labels.clear();
        let r = req(Action::Restart, ID, "web-1", T0);
        let d = evaluate(&r, Some(&bare), &PolicyState::new(), &cfg, on(), T0).expect_err("x");
        assert_eq!((d.rule, d.retry_at), ("not_opted_in", None));
    }

    fn record(seq: u64, ts: Timestamp, decision: Decision, reason: &str) -> AuditRecord {
        AuditRecord {
            seq,
            ts,
            request_id: Some(format!("r{seq}")),
            key_id: Some("wd".into()),
            action: Some(Action::Restart),
            target: Some(Target {
                id: ID.into(),
                name: "web-1".into(),
                project: None,
                service: None,
            }),
            decision,
            reason: reason.into(),
            result: None,
            duration_ms: 1,
            retry_at: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn state_is_rebuilt_from_the_audit_log() {
        let cfg = PolicySettings {
            backoff_initial: Duration::from_millis(1),
            ..PolicySettings::default()
        };
        let records = [
            record(1, T0, Decision::Executed, "ok"),
            record(2, T0.plus(secs(1)), Decision::Rejected, "replay"),
            record(3, T0.plus(secs(60)), Decision::Failed, "engine_error"),
            record(4, T0.plus(secs(120)), Decision::Executed, "ok"),
            record(5, T0.plus(secs(130)), Decision::Refused, "breaker_opened"),
            record(6, T0.plus(secs(140)), Decision::DryRun, "dry_run"),
        ];
        let state = PolicyState::rebuild(records.iter());
        assert_eq!(state.actions_for(ID).len(), 3);
        let f = facts(ID, "web-1");
        let now = T0.plus(secs(200));
        let r = req(Action::Restart, ID, "web-1", now);
        assert_eq!(
            evaluate(&r, Some(&f), &state, &cfg, on(), now).map_err(|d| d.rule),
            Err("breaker"),
            "the opening was already announced before the restart"
        );
        let fresh = PolicyState::rebuild(records[..4].iter());
        assert_eq!(
            evaluate(&r, Some(&f), &fresh, &cfg, on(), now).map_err(|d| d.rule),
            Err("breaker_opened")
        );
    }

    #[test]
    fn prune_forgets_old_containers_only() {
        let cfg = PolicySettings::default();
        let mut state = PolicyState::new();
        state.record("old", T0);
        state.record("new", T0.plus(secs(3000)));
        state.prune(&cfg, T0.plus(secs(3700)));
        assert!(state.actions_for("old").is_empty());
        assert_eq!(state.actions_for("new").len(), 1);
    }
}
