//! The alert state machine: one [`AlertState`] per signal key, advanced by the pure [`decide`].
//!
//! `decide(signal, prev, now, timing)` takes the latest signal for a key, the state it left last
//! time and the caller's `now`, and returns what to say ([`Action`]) and the next state. It reads
//! no clock and does no I/O, so every transition is a table row in the tests below.
//!
//! # Who calls it, and when
//! The engine calls `decide` for every signal the tracker emits, and also on its periodic tick
//! with the *last known* signal of every key that is not `Inactive`. That second call is what
//! turns a held `Pending` into an `Alert`, sends `Realert`s, and ends `Resolving` with a
//! `Recovery` when no new observation arrives. Silences and mutes are applied after `decide`,
//! so the state keeps evolving while muted.
//!
//! # Level and edge kinds
//! Level kinds (unhealthy, CPU, disk, ...) describe a condition that holds for a while:
//! `Inactive -> Pending -> Firing -> Resolving -> Inactive`, with a recovery message at the end.
//! Edge kinds (`SignalKind::is_edge`: an exit, an OOM kill) are events: each new occurrence
//! (a different `Signal::occurrence`) is a fresh `Alert`, a repeat of the same occurrence does
//! nothing, and they are never re-alerted. When an edge signal goes inactive (the container runs
//! again) the state returns to `Inactive` *silently*: an exit is an event, not a level, so there
//! is no outage whose end we could honestly report; whether the container is healthy again is
//! told by the level signals that follow (unhealthy, restart loop).

use crate::signals::{Signal, SignalKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_shared::time::Timestamp;

/// Default cooldown before the first re-alert.
pub const DEFAULT_REPEAT: Duration = Duration::from_secs(3600);
/// Re-alert intervals double up to this.
pub const DEFAULT_REPEAT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Timing overrides for one kind (`[alerts.<kind>]` in the config); anything unset keeps the
/// per-kind default here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimingOverride {
    pub for_: Option<Duration>,
    pub repeat: Option<Duration>,
    pub repeat_max: Option<Duration>,
    pub keep_firing_for: Option<Duration>,
}

/// What to say about one key after one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// The signal started firing (or a new edge occurrence arrived).
    Alert,
    /// Still firing, and the re-alert interval has passed.
    Realert,
    /// Resolved; `lasted` runs from when the condition was first seen to when it cleared.
    Recovery {
        lasted: Duration,
    },
}

/// Per-key alert state. Serialisable because it is kept in Redis (`vigil:alert:<key>`) so a
/// watchdog restart does not re-page everyone. Durations are stored as milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    #[default]
    Inactive,
    /// Active since `since`, waiting for `for_` before alerting.
    Pending { since: Timestamp },
    Firing {
        /// When the condition was first seen (the start of `Pending`), so the recovery's
        /// duration is the outage, not the time since the message left.
        since: Timestamp,
        last_notified: Timestamp,
        /// Messages sent for this firing: the alert plus re-alerts.
        count: u32,
        /// The cooldown before the next re-alert.
        #[serde(with = "duration_ms")]
        interval: Duration,
        /// For edge kinds: the occurrence that was alerted.
        occurrence: Option<i64>,
    },
    /// Inactive since `since`, waiting for `keep_firing_for` before reporting recovery.
    Resolving {
        since: Timestamp,
        firing_since: Timestamp,
        last_notified: Timestamp,
        count: u32,
        #[serde(with = "duration_ms")]
        interval: Duration,
        occurrence: Option<i64>,
    },
}

impl AlertState {
    /// An alert has gone out and no recovery yet (`Firing` or `Resolving`).
    pub fn is_alerting(&self) -> bool {
        matches!(
            self,
            AlertState::Firing { .. } | AlertState::Resolving { .. }
        )
    }
}

/// How one kind is debounced and repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a signal must stay active before the alert (0: at once).
    pub for_: Duration,
    /// First re-alert interval; zero disables re-alerts.
    pub repeat: Duration,
    /// The re-alert interval doubles after each re-alert, up to this.
    pub repeat_max: Duration,
    /// How long a signal must stay inactive before the recovery (0: at once).
    pub keep_firing_for: Duration,
}

/// Per-kind defaults. Docker's own health retries already debounce `unhealthy`, and exits, OOM
/// kills and restart loops are facts, so those alert at once. Sampled thresholds wait for about
/// three samples at the default 15 s interval, and keep firing for 30 s so that one good sample
/// does not resolve them. `docker_unreachable` and `redis_unreachable` are debounced by the
/// tracker (`docker.unreachable_after`), so `for_` is 0 here.
pub fn default_timing(kind: SignalKind) -> Timing {
    let secs = Duration::from_secs;
    let (for_, keep_firing_for) = match kind {
        SignalKind::ContainerUnhealthy
        | SignalKind::ContainerExited
        | SignalKind::ContainerOomKilled
        | SignalKind::ContainerRestartLoop
        | SignalKind::DockerUnreachable
        | SignalKind::RedisUnreachable => (Duration::ZERO, Duration::ZERO),
        SignalKind::ContainerCpuHigh
        | SignalKind::ContainerMemoryHigh
        | SignalKind::HostMemoryHigh
        | SignalKind::DiskHigh => (secs(45), secs(30)),
        // Probes are samples too: one good probe in a bad minute is not a recovery.
        SignalKind::DependencyDown | SignalKind::AppDown | SignalKind::AppMetric => {
            (secs(30), secs(30))
        }
        SignalKind::ExecutorDown | SignalKind::ContainerMissing => (secs(30), Duration::ZERO),
    };
    Timing {
        for_,
        repeat: DEFAULT_REPEAT,
        repeat_max: DEFAULT_REPEAT_MAX,
        keep_firing_for,
    }
}

/// `base` with every field the override sets replaced.
pub fn apply_override(base: Timing, o: &TimingOverride) -> Timing {
    Timing {
        for_: o.for_.unwrap_or(base.for_),
        repeat: o.repeat.unwrap_or(base.repeat),
        repeat_max: o.repeat_max.unwrap_or(base.repeat_max),
        keep_firing_for: o.keep_firing_for.unwrap_or(base.keep_firing_for),
    }
}

/// Advances the alert state of `signal.key` from `prev` at `now`. Pure; see the module docs.
pub fn decide(
    signal: &Signal,
    prev: &AlertState,
    now: Timestamp,
    timing: &Timing,
) -> (Action, AlertState) {
    if signal.kind.is_edge() {
        decide_edge(signal, prev, now, timing)
    } else {
        decide_level(signal.active, signal.occurrence, prev, now, timing)
    }
}

fn firing(
    since: Timestamp,
    now: Timestamp,
    timing: &Timing,
    occurrence: Option<i64>,
) -> AlertState {
    AlertState::Firing {
        since,
        last_notified: now,
        count: 1,
        interval: timing.repeat,
        occurrence,
    }
}

/// `Inactive` or `Pending` seeing an active signal: wait for `for_`, then alert.
fn start_or_hold(
    since: Option<Timestamp>,
    occurrence: Option<i64>,
    now: Timestamp,
    timing: &Timing,
) -> (Action, AlertState) {
    let since = since.unwrap_or(now);
    if now.since(since) >= timing.for_ {
        (Action::Alert, firing(since, now, timing, occurrence))
    } else {
        (Action::None, AlertState::Pending { since })
    }
}

fn decide_level(
    active: bool,
    occurrence: Option<i64>,
    prev: &AlertState,
    now: Timestamp,
    timing: &Timing,
) -> (Action, AlertState) {
    match (*prev, active) {
        (AlertState::Inactive, false) | (AlertState::Pending { .. }, false) => {
            // A pending signal that clears was never announced: nothing to take back.
            (Action::None, AlertState::Inactive)
        }
        (AlertState::Inactive, true) => start_or_hold(None, occurrence, now, timing),
        (AlertState::Pending { since }, true) => {
            start_or_hold(Some(since), occurrence, now, timing)
        }
        (
            AlertState::Firing {
                since,
                last_notified,
                count,
                interval,
                occurrence,
            },
            true,
        ) => {
            if !interval.is_zero() && now.since(last_notified) >= interval {
                let cap = timing.repeat_max.max(timing.repeat);
                let next = AlertState::Firing {
                    since,
                    last_notified: now,
                    count: count.saturating_add(1),
                    interval: interval.saturating_mul(2).min(cap),
                    occurrence,
                };
                (Action::Realert, next)
            } else {
                (Action::None, *prev)
            }
        }
        (
            AlertState::Firing {
                since,
                last_notified,
                count,
                interval,
                occurrence,
            },
            false,
        ) => {
            if timing.keep_firing_for.is_zero() {
                (
                    Action::Recovery {
                        lasted: now.since(since),
                    },
                    AlertState::Inactive,
                )
            } else {
                let next = AlertState::Resolving {
                    since: now,
                    firing_since: since,
                    last_notified,
                    count,
                    interval,
                    occurrence,
                };
                (Action::None, next)
            }
        }
        (
            AlertState::Resolving {
                firing_since,
                last_notified,
                count,
                interval,
                occurrence,
                ..
            },
            true,
        ) => {
            // Back before keep_firing_for ran out: the same outage, nothing new to say.
            let next = AlertState::Firing {
                since: firing_since,
                last_notified,
                count,
                interval,
                occurrence,
            };
            (Action::None, next)
        }
        (
            AlertState::Resolving {
                since,
                firing_since,
                ..
            },
            false,
        ) => {
            if now.since(since) >= timing.keep_firing_for {
                (
                    Action::Recovery {
                        lasted: since.since(firing_since),
                    },
                    AlertState::Inactive,
                )
            } else {
                (Action::None, *prev)
            }
        }
    }
}

fn decide_edge(
    signal: &Signal,
    prev: &AlertState,
    now: Timestamp,
    timing: &Timing,
) -> (Action, AlertState) {
    if !signal.active {
        // The container runs again: an exit is an event, not a level, so resolve silently.
        return (Action::None, AlertState::Inactive);
    }
    match *prev {
        AlertState::Inactive => start_or_hold(None, signal.occurrence, now, timing),
        AlertState::Pending { since } => start_or_hold(Some(since), signal.occurrence, now, timing),
        AlertState::Firing { occurrence, .. } | AlertState::Resolving { occurrence, .. }
            if occurrence != signal.occurrence =>
        {
            (Action::Alert, firing(now, now, timing, signal.occurrence))
        }
        AlertState::Firing { .. } => (Action::None, *prev),
        AlertState::Resolving {
            firing_since,
            last_notified,
            count,
            interval,
            occurrence,
            ..
        } => {
            let next = AlertState::Firing {
                since: firing_since,
                last_notified,
                count,
                interval,
                occurrence,
            };
            (Action::None, next)
        }
    }
}

/// Durations as integer milliseconds in the persisted state.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{Severity, Subject};

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    fn sig(kind: SignalKind, active: bool) -> Signal {
        Signal::new(
            kind,
            active,
            Severity::High,
            Subject::named("x"),
            "detail",
            Timestamp(0),
        )
    }

    fn edge(active: bool, occurrence: i64) -> Signal {
        sig(SignalKind::ContainerOomKilled, active).with_occurrence(occurrence)
    }

    fn timing(for_s: i64, keep_s: i64) -> Timing {
        Timing {
            for_: Duration::from_secs(for_s as u64),
            repeat: Duration::from_secs(3600),
            repeat_max: Duration::from_secs(4 * 3600),
            keep_firing_for: Duration::from_secs(keep_s as u64),
        }
    }

    fn fire(since: i64, last: i64, count: u32, interval_h: u64, occ: Option<i64>) -> AlertState {
        AlertState::Firing {
            since: t(since),
            last_notified: t(last),
            count,
            interval: Duration::from_secs(interval_h * 3600),
            occurrence: occ,
        }
    }

    fn resolving(since: i64, firing_since: i64, occ: Option<i64>) -> AlertState {
        AlertState::Resolving {
            since: t(since),
            firing_since: t(firing_since),
            last_notified: t(firing_since),
            count: 1,
            interval: Duration::from_secs(3600),
            occurrence: occ,
        }
    }

    fn lasted(ms: i64) -> Action {
        Action::Recovery {
            lasted: Duration::from_millis(ms as u64),
        }
    }

    #[test]
    fn every_transition() {
        use AlertState::{Inactive, Pending};
        let cpu = SignalKind::ContainerCpuHigh;
        let unhealthy = SignalKind::ContainerUnhealthy;
        // (name, signal, prev, now, timing, expected action, expected next state)
        #[rustfmt::skip]
        let rows: Vec<(&str, Signal, AlertState, i64, Timing, Action, AlertState)> = vec![
            ("inactive stays inactive", sig(cpu, false), Inactive, 0, timing(45, 30), Action::None, Inactive),
            ("inactive+active waits", sig(cpu, true), Inactive, 10 * S, timing(45, 30), Action::None, Pending { since: t(10 * S) }),
            ("for 0 fires at once", sig(unhealthy, true), Inactive, 10 * S, timing(0, 0), Action::Alert, fire(10 * S, 10 * S, 1, 1, None)),
            ("pending not yet held", sig(cpu, true), Pending { since: t(0) }, 44 * S, timing(45, 30), Action::None, Pending { since: t(0) }),
            ("pending held for for_", sig(cpu, true), Pending { since: t(0) }, 45 * S, timing(45, 30), Action::Alert, fire(0, 45 * S, 1, 1, None)),
            ("pending clears silently", sig(cpu, false), Pending { since: t(0) }, 20 * S, timing(45, 30), Action::None, Inactive),
            ("firing within cooldown", sig(cpu, true), fire(0, 0, 1, 1, None), H - 1, timing(45, 30), Action::None, fire(0, 0, 1, 1, None)),
            ("firing past cooldown realerts and doubles", sig(cpu, true), fire(0, 0, 1, 1, None), H, timing(45, 30), Action::Realert, fire(0, H, 2, 2, None)),
            ("interval capped at repeat_max", sig(cpu, true), fire(0, 0, 3, 4, None), 4 * H, timing(45, 30), Action::Realert, fire(0, 4 * H, 4, 4, None)),
            ("firing clears into resolving", sig(cpu, false), fire(0, 0, 1, 1, None), 90 * S, timing(45, 30), Action::None, resolving(90 * S, 0, None)),
            ("firing clears with keep 0 recovers", sig(unhealthy, false), fire(5 * S, 5 * S, 1, 1, None), 65 * S, timing(0, 0), lasted(60 * S), Inactive),
            ("resolving not yet long enough", sig(cpu, false), resolving(90 * S, 0, None), 119 * S, timing(45, 30), Action::None, resolving(90 * S, 0, None)),
            ("resolving held recovers", sig(cpu, false), resolving(90 * S, 0, None), 120 * S, timing(45, 30), lasted(90 * S), Inactive),
            ("active again while resolving", sig(cpu, true), resolving(90 * S, 0, None), 100 * S, timing(45, 30), Action::None, fire(0, 0, 1, 1, None)),
            ("edge new occurrence alerts", edge(true, 7), Inactive, 3 * S, timing(0, 0), Action::Alert, fire(3 * S, 3 * S, 1, 1, Some(7))),
            ("edge same occurrence is quiet", edge(true, 7), fire(3 * S, 3 * S, 1, 1, Some(7)), 2 * H, timing(0, 0), Action::None, fire(3 * S, 3 * S, 1, 1, Some(7))),
            ("edge another occurrence alerts again", edge(true, 8), fire(3 * S, 3 * S, 1, 1, Some(7)), 9 * S, timing(0, 0), Action::Alert, fire(9 * S, 9 * S, 1, 1, Some(8))),
            ("edge new occurrence while resolving", edge(true, 8), resolving(5 * S, 3 * S, Some(7)), 9 * S, timing(0, 30), Action::Alert, fire(9 * S, 9 * S, 1, 1, Some(8))),
            ("edge same occurrence while resolving", edge(true, 7), resolving(5 * S, 3 * S, Some(7)), 9 * S, timing(0, 30), Action::None, fire(3 * S, 3 * S, 1, 1, Some(7))),
            ("edge pending held alerts", edge(true, 7), Pending { since: t(0) }, 30 * S, timing(30, 0), Action::Alert, fire(0, 30 * S, 1, 1, Some(7))),
            ("edge inactive resolves silently", edge(false, 7), fire(3 * S, 3 * S, 1, 1, Some(7)), 9 * S, timing(0, 0), Action::None, Inactive),
            ("edge inactive from pending", edge(false, 7), Pending { since: t(0) }, 9 * S, timing(30, 0), Action::None, Inactive),
        ];
        for (name, signal, prev, now, timing, action, next) in rows {
            let got = decide(&signal, &prev, t(now), &timing);
            assert_eq!(got, (action, next), "{name}");
        }
    }

    /// Drives one key through a sequence of (time, active) observations, ticking every `step`
    /// in between with the last known signal, as the engine does. Returns the non-None actions.
    fn run(
        kind: SignalKind,
        timing: &Timing,
        changes: &[(i64, bool)],
        until: i64,
        step: i64,
    ) -> Vec<(i64, Action)> {
        let mut state = AlertState::Inactive;
        let mut out = Vec::new();
        let mut current = sig(kind, false);
        let mut changes = changes.iter().peekable();
        let mut now = 0;
        while now <= until {
            while let Some(&&(at, active)) = changes.peek() {
                if at > now {
                    break;
                }
                current = sig(kind, active);
                changes.next();
            }
            let (action, next) = decide(&current, &state, t(now), timing);
            state = next;
            if action != Action::None {
                out.push((now, action));
            }
            now += step;
        }
        out
    }

    #[test]
    fn flapping_faster_than_for_never_alerts() {
        let timing = default_timing(SignalKind::ContainerCpuHigh);
        // Active for 30 s, fine for 15 s, for an hour: never 45 s in a row.
        let mut changes = Vec::new();
        let mut at = 0;
        while at < H {
            changes.push((at, true));
            changes.push((at + 30 * S, false));
            at += 45 * S;
        }
        let actions = run(SignalKind::ContainerCpuHigh, &timing, &changes, H, 5 * S);
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn long_outage_realerts_with_doubling_then_recovers_with_its_duration() {
        let timing = default_timing(SignalKind::DependencyDown);
        // Down from 0 for 8 h, then up. for_ 30 s, keep_firing_for 30 s.
        let changes = [(0, true), (8 * H, false)];
        let actions = run(SignalKind::DependencyDown, &timing, &changes, 9 * H, 10 * S);
        let alert_at = 30 * S;
        assert_eq!(
            actions,
            vec![
                (alert_at, Action::Alert),
                (alert_at + H, Action::Realert),
                (alert_at + 3 * H, Action::Realert),
                (alert_at + 7 * H, Action::Realert),
                (8 * H + 30 * S, lasted(8 * H)),
            ]
        );
    }

    #[test]
    fn one_good_sample_does_not_resolve_a_sampled_threshold() {
        let timing = default_timing(SignalKind::DiskHigh);
        let changes = [
            (0, true),
            (2 * MIN, false),
            (2 * MIN + 15 * S, true),
            (10 * MIN, false),
        ];
        let actions = run(SignalKind::DiskHigh, &timing, &changes, 20 * MIN, 5 * S);
        assert_eq!(
            actions,
            vec![
                (45 * S, Action::Alert),
                (10 * MIN + 30 * S, lasted(10 * MIN))
            ]
        );
    }

    #[test]
    fn edge_occurrences_alert_once_each() {
        let timing = default_timing(SignalKind::ContainerOomKilled);
        let mut state = AlertState::Inactive;
        let mut actions = Vec::new();
        for (now, signal) in [
            (0, edge(true, 100)),
            (S, edge(true, 100)),
            (2 * H, edge(true, 100)),
            (3 * H, edge(true, 200)),
            (3 * H + S, edge(true, 200)),
        ] {
            let (action, next) = decide(&signal, &state, t(now), &timing);
            state = next;
            actions.push(action);
        }
        let alerts = actions.iter().filter(|a| **a == Action::Alert).count();
        assert_eq!(alerts, 2, "{actions:?}");
        assert!(
            !actions.contains(&Action::Realert),
            "edge kinds never re-alert: {actions:?}"
        );
    }

    #[test]
    fn defaults_per_kind() {
        for k in SignalKind::ALL {
            let tm = default_timing(k);
            assert_eq!(tm.repeat, Duration::from_secs(3600), "{k}");
            assert_eq!(tm.repeat_max, Duration::from_secs(86400), "{k}");
        }
        assert_eq!(
            default_timing(SignalKind::ContainerUnhealthy).for_,
            Duration::ZERO
        );
        assert_eq!(
            default_timing(SignalKind::ContainerOomKilled).for_,
            Duration::ZERO
        );
        assert_eq!(
            default_timing(SignalKind::ContainerCpuHigh).for_,
            Duration::from_secs(45)
        );
        assert_eq!(
            default_timing(SignalKind::ContainerMemoryHigh).keep_firing_for,
            Duration::from_secs(30)
        );
        assert_eq!(
            default_timing(SignalKind::ContainerMissing).for_,
            Duration::from_secs(30)
        );
        assert_eq!(
            default_timing(SignalKind::DockerUnreachable).for_,
            Duration::ZERO
        );
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let base = default_timing(SignalKind::ContainerCpuHigh);
        let o = TimingOverride {
            for_: Some(Duration::from_secs(5)),
            ..TimingOverride::default()
        };
        let got = apply_override(base, &o);
        assert_eq!(got.for_, Duration::from_secs(5));
        assert_eq!(got.repeat, base.repeat);
        assert_eq!(got.keep_firing_for, base.keep_firing_for);
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = fire(1, 2, 3, 2, Some(9));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"state\":\"firing\""), "{json}");
        assert!(json.contains("\"interval\":7200000"), "{json}");
        let back: AlertState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(AlertState::default(), AlertState::Inactive);
    }

    #[test]
    fn zero_repeat_disables_realerts() {
        let tm = Timing {
            repeat: Duration::ZERO,
            ..timing(0, 0)
        };
        let (_, state) = decide(
            &sig(SignalKind::ContainerUnhealthy, true),
            &AlertState::Inactive,
            t(0),
            &tm,
        );
        let (action, _) = decide(
            &sig(SignalKind::ContainerUnhealthy, true),
            &state,
            t(48 * H),
            &tm,
        );
        assert_eq!(action, Action::None);
    }
}
