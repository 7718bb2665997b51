//! The remediation planner: a firing container signal plus what the tracker remembers about the
//! container in, at most one proposed action out. Pure: no clock, no I/O.
//!
//! # Rules, in this order
//! 0. Only containers labelled `vigil.remediate=true` ([`LABEL_REMEDIATE`]) are ever planned.
//! 1. Stopped by an operator: nothing (their intent wins).
//! 2. Restart loop: nothing. Restarting a crash loop again only feeds it; the alert says that
//!    manual action is needed.
//! 3. Unhealthy (decide already held it past its threshold): restart, confidence 0.9.
//! 4. OOM-killed: restart, confidence 0.8; the reason says the memory limit is too low.
//! 5. Exited non-zero and no restart policy would bring it back: start, confidence 0.8.
//! 6. Memory growing steadily toward its limit: restart before the OOM, only where labelled
//!    [`LABEL_REMEDIATE_MEMORY`].
//! 7. High CPU: nothing unless labelled [`LABEL_REMEDIATE_CPU`], then restart.
//!
//! The executor applies its own policy to whatever is asked; the planner only avoids asking for
//! what would obviously be wrong.

use crate::evaluate::{LABEL_REMEDIATE, label_is_true};
use crate::signals::{Signal, SignalKind};
use std::time::Duration;
use vigil_protocol::wire::Action;
use vigil_shared::time::{Timestamp, human_duration};

pub use vigil_docker::labels::{
    REMEDIATE_CPU as LABEL_REMEDIATE_CPU, REMEDIATE_MEMORY as LABEL_REMEDIATE_MEMORY,
};

pub const CONFIDENCE_UNHEALTHY: f64 = 0.9;
pub const CONFIDENCE_OOM: f64 = 0.8;
pub const CONFIDENCE_EXITED: f64 = 0.8;
pub const CONFIDENCE_MEMORY_TREND: f64 = 0.7;
pub const CONFIDENCE_CPU: f64 = 0.5;

/// A memory trend needs at least this many samples.
pub const MEMORY_TREND_MIN_SAMPLES: usize = 4;
/// A steady rise reaching the limit within this horizon is worth a restart now.
pub const MEMORY_TREND_HORIZON: Duration = Duration::from_secs(15 * 60);

/// What the tracker knows about a container (defined next to the tracker, which fills it in).
pub use crate::evaluate::ContainerHistory;

impl ContainerHistory {
    fn label(&self, key: &str) -> bool {
        label_is_true(&self.labels, key)
    }

    /// Whether Docker itself brings the container back after a failure exit.
    fn restarts_itself(&self) -> bool {
        matches!(
            self.restart_policy.trim(),
            "always" | "unless-stopped" | "on-failure"
        ) || self.restart_policy.trim().starts_with("on-failure:")
    }
}

/// One proposed action and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation {
    pub action: Action,
    /// 0..=1: how sure the rule is that the action helps.
    pub confidence: f64,
    pub reason: String,
}

impl Remediation {
    fn new(action: Action, confidence: f64, reason: impl Into<String>) -> Remediation {
        Remediation {
            action,
            confidence,
            reason: reason.into(),
        }
    }
}

/// The planner (see the module docs for the rules and their order). `signal` must be firing;
/// inactive and non-container signals plan nothing.
pub fn plan(signal: &Signal, history: &ContainerHistory) -> Option<Remediation> {
    if !signal.active || !signal.kind.is_container() || !history.label(LABEL_REMEDIATE) {
        return None;
    }
    if history.stopped_by_operator {
        return None;
    }
    if history.restart_loop_active || signal.kind == SignalKind::ContainerRestartLoop {
        return None;
    }
    match signal.kind {
        SignalKind::ContainerUnhealthy => Some(Remediation::new(
            Action::Restart,
            CONFIDENCE_UNHEALTHY,
            with_detail("unhealthy", &signal.detail),
        )),
        SignalKind::ContainerOomKilled => Some(Remediation::new(
            Action::Restart,
            CONFIDENCE_OOM,
            format!(
                "{}; the memory limit is too low for its workload: raise it",
                if signal.detail.is_empty() {
                    "OOM-killed"
                } else {
                    signal.detail.as_str()
                }
            ),
        )),
        SignalKind::ContainerExited if !history.restarts_itself() => Some(Remediation::new(
            Action::Start,
            CONFIDENCE_EXITED,
            format!(
                "{} and no restart policy brings it back",
                if signal.detail.is_empty() {
                    "exited with a non-zero code"
                } else {
                    signal.detail.as_str()
                }
            ),
        )),
        SignalKind::ContainerMemoryHigh if history.label(LABEL_REMEDIATE_MEMORY) => {
            let eta = memory_time_to_limit(history)?;
            Some(Remediation::new(
                Action::Restart,
                CONFIDENCE_MEMORY_TREND,
                format!(
                    "memory growing steadily, at this rate the limit is reached in about {}: \
                     restarting before the OOM kill",
                    human_duration(eta)
                ),
            ))
        }
        SignalKind::ContainerCpuHigh if history.label(LABEL_REMEDIATE_CPU) => {
            Some(Remediation::new(
                Action::Restart,
                CONFIDENCE_CPU,
                with_detail("high CPU", &signal.detail),
            ))
        }
        _ => None,
    }
}

fn with_detail(what: &str, detail: &str) -> String {
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

/// How long until the working set reaches the limit if it keeps rising at its recent rate, when
/// the samples show a steady rise that gets there within [`MEMORY_TREND_HORIZON`].
///
/// Steady: at least [`MEMORY_TREND_MIN_SAMPLES`] samples, no sample below its predecessor, and
/// overall growth. The rate is the least-squares slope over the samples.
pub fn memory_time_to_limit(history: &ContainerHistory) -> Option<Duration> {
    let samples = &history.memory_samples;
    if history.memory_limit == 0 || samples.len() < MEMORY_TREND_MIN_SAMPLES {
        return None;
    }
    let rising = samples
        .windows(2)
        .all(|w| w[1].1 >= w[0].1 && w[1].0 > w[0].0);
    let (first, last) = (samples.first()?, samples.last()?);
    if !rising || last.1 <= first.1 {
        return None;
    }
    let slope = slope_bytes_per_ms(samples)?;
    if slope <= 0.0 {
        return None;
    }
    let remaining = history.memory_limit.saturating_sub(last.1) as f64;
    let eta_ms = remaining / slope;
    if !eta_ms.is_finite() {
        return None;
    }
    let eta = Duration::from_millis(eta_ms.max(0.0) as u64);
    (eta <= MEMORY_TREND_HORIZON).then_some(eta)
}

fn slope_bytes_per_ms(samples: &[(Timestamp, u64)]) -> Option<f64> {
    let t0 = samples.first()?.0.as_millis();
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples
        .iter()
        .map(|(t, _)| (t.as_millis() - t0) as f64)
        .collect();
    let ys: Vec<f64> = samples.iter().map(|(_, b)| *b as f64).collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = ys.iter().sum::<f64>() / n;
    let mut num = 0.0;
    let mut den = 0.0;
    for (x, y) in xs.iter().zip(&ys) {
        num += (x - mean_x) * (y - mean_y);
        den += (x - mean_x) * (x - mean_x);
    }
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{Severity, Subject};
    use std::collections::BTreeMap;
    use vigil_docker::ContainerRef;

    const MIB: u64 = 1024 * 1024;

    fn sig(kind: SignalKind, detail: &str) -> Signal {
        let c = ContainerRef {
            id: "abc".into(),
            name: "shop-web-1".into(),
            project: Some("shop".into()),
            service: Some("web".into()),
        };
        Signal::new(
            kind,
            true,
            Severity::High,
            Subject::container(&c),
            detail,
            Timestamp(0),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn opted_in() -> ContainerHistory {
        ContainerHistory {
            labels: labels(&[(LABEL_REMEDIATE, "true")]),
            ..ContainerHistory::default()
        }
    }

    fn with(f: impl FnOnce(&mut ContainerHistory)) -> ContainerHistory {
        let mut h = opted_in();
        f(&mut h);
        h
    }

    /// Samples every 15 s from `start` MiB growing by `step` MiB, against a `limit` MiB limit.
    fn growing(start: u64, step: u64, n: usize, limit: u64) -> ContainerHistory {
        with(|h| {
            h.labels
                .insert(LABEL_REMEDIATE_MEMORY.into(), "true".into());
            h.memory_limit = limit * MIB;
            h.memory_samples = (0..n)
                .map(|i| {
                    (
                        Timestamp(i as i64 * 15_000),
                        (start + step * i as u64) * MIB,
                    )
                })
                .collect();
        })
    }

    #[test]
    fn rules_in_order() {
        use SignalKind::*;
        let restart = Some(Action::Restart);
        let start = Some(Action::Start);
        // (name, signal kind, history, expected action)
        #[rustfmt::skip]
        let rows: Vec<(&str, SignalKind, ContainerHistory, Option<Action>)> = vec![
            ("not opted in: nothing", ContainerUnhealthy, ContainerHistory::default(), None),
            ("opt-in label false: nothing", ContainerUnhealthy, ContainerHistory { labels: labels(&[(LABEL_REMEDIATE, "false")]), ..ContainerHistory::default() }, None),
            ("unhealthy: restart", ContainerUnhealthy, opted_in(), restart),
            ("operator stop wins over unhealthy", ContainerUnhealthy, with(|h| h.stopped_by_operator = true), None),
            ("operator stop wins over exit", ContainerExited, with(|h| h.stopped_by_operator = true), None),
            ("restart loop wins over unhealthy", ContainerUnhealthy, with(|h| h.restart_loop_active = true), None),
            ("restart loop wins over OOM", ContainerOomKilled, with(|h| h.restart_loop_active = true), None),
            ("restart loop signal itself: nothing", ContainerRestartLoop, opted_in(), None),
            ("operator stop before restart loop", ContainerRestartLoop, with(|h| { h.stopped_by_operator = true; h.restart_loop_active = true }), None),
            ("OOM-killed: restart", ContainerOomKilled, opted_in(), restart),
            ("exited, no policy: start", ContainerExited, opted_in(), start),
            ("exited, policy no: start", ContainerExited, with(|h| h.restart_policy = "no".into()), start),
            ("exited, policy always: nothing", ContainerExited, with(|h| h.restart_policy = "always".into()), None),
            ("exited, policy unless-stopped: nothing", ContainerExited, with(|h| h.restart_policy = "unless-stopped".into()), None),
            ("exited, policy on-failure:3: nothing", ContainerExited, with(|h| h.restart_policy = "on-failure:3".into()), None),
            ("memory trend without label: nothing", ContainerMemoryHigh, with(|h| { *h = growing(500, 40, 6, 1024); h.labels.remove(LABEL_REMEDIATE_MEMORY); }), None),
            ("memory trend with label: restart", ContainerMemoryHigh, growing(500, 40, 6, 1024), restart),
            ("memory flat with label: nothing", ContainerMemoryHigh, growing(900, 0, 6, 1024), None),
            ("memory too few samples: nothing", ContainerMemoryHigh, growing(500, 40, 3, 1024), None),
            ("memory rising too slowly: nothing", ContainerMemoryHigh, growing(500, 1, 6, 1024), None),
            ("memory label without opt-in: nothing", ContainerMemoryHigh, with(|h| { *h = growing(500, 40, 6, 1024); h.labels.remove(LABEL_REMEDIATE); }), None),
            ("cpu without label: nothing", ContainerCpuHigh, opted_in(), None),
            ("cpu with label: restart", ContainerCpuHigh, with(|h| { h.labels.insert(LABEL_REMEDIATE_CPU.into(), "true".into()); }), restart),
            ("missing service: nothing", ContainerMissing, opted_in(), None),
            ("host memory: nothing", HostMemoryHigh, opted_in(), None),
        ];
        for (name, kind, history, expected) in rows {
            let got = plan(&sig(kind, "detail"), &history).map(|r| r.action);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn confidence_and_reasons() {
        let r = plan(
            &sig(SignalKind::ContainerUnhealthy, "health check failing"),
            &opted_in(),
        )
        .unwrap();
        assert_eq!(r.confidence, CONFIDENCE_UNHEALTHY);
        assert_eq!(r.reason, "unhealthy: health check failing");

        let r = plan(
            &sig(
                SignalKind::ContainerOomKilled,
                "OOM-killed (memory limit 64 MiB)",
            ),
            &opted_in(),
        )
        .unwrap();
        assert_eq!(r.confidence, CONFIDENCE_OOM);
        assert!(r.reason.contains("memory limit is too low"), "{}", r.reason);
        assert!(r.reason.contains("64 MiB"), "{}", r.reason);

        let r = plan(
            &sig(SignalKind::ContainerExited, "exited with code 3"),
            &opted_in(),
        )
        .unwrap();
        assert_eq!((r.action, r.confidence), (Action::Start, CONFIDENCE_EXITED));
        assert!(r.reason.starts_with("exited with code 3"), "{}", r.reason);

        let r = plan(
            &sig(SignalKind::ContainerMemoryHigh, ""),
            &growing(500, 40, 6, 1024),
        )
        .unwrap();
        assert_eq!(r.confidence, CONFIDENCE_MEMORY_TREND);
        assert!(r.reason.contains("before the OOM"), "{}", r.reason);
    }

    #[test]
    fn inactive_signals_plan_nothing() {
        let mut s = sig(SignalKind::ContainerUnhealthy, "");
        s.active = false;
        assert_eq!(plan(&s, &opted_in()), None);
    }

    #[test]
    fn memory_eta_from_the_slope() {
        // 40 MiB per 15 s from 500 MiB, 6 samples: last 700 MiB, 324 MiB left, ~121.5 s.
        let eta = memory_time_to_limit(&growing(500, 40, 6, 1024)).unwrap();
        assert_eq!(eta.as_secs(), 121);
        // A dip breaks "steadily".
        let mut h = growing(500, 40, 6, 1024);
        h.memory_samples[3].1 = 100 * MIB;
        assert_eq!(memory_time_to_limit(&h), None);
        // No limit: nothing to reach.
        let mut h = growing(500, 40, 6, 1024);
        h.memory_limit = 0;
        assert_eq!(memory_time_to_limit(&h), None);
    }
}
