//! What the container list already says, so the sweep inspects only containers that changed.
//!
//! The list gives each container's state, labels and the engine's status text (`Up 5 minutes
//! (healthy)`, `Exited (1) 3 seconds ago`, `Restarting (1) 2 seconds ago`). The text is split
//! into a stable part (`Up (healthy)`, `Exited (1)`) and an age: time since the start for `Up`,
//! since the exit for `Exited`/`Restarting`. Between two sweeps `Δ` apart an unchanged container's
//! age grows by `Δ`; an age that grew less was reset, so the container started (or exited)
//! again, which is how a restart by the engine's own restart policy between two sweeps is seen
//! even when the state and the stable part read the same. Ages are rounded by the engine (`2
//! hours`), so each is read as a range and only a reset the ranges prove counts. Text that does
//! not parse is compared whole.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;
use vigil_docker::{ContainerSummary, RunState};

/// Engine and watchdog clocks and request latency: how much an age may lag without a reset.
const AGE_SLACK: Duration = Duration::from_secs(1);

/// What the list said about one container at one sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct ListMark {
    state: RunState,
    /// The status text without its age (or the whole text when it does not parse).
    stable: String,
    /// The age the text gives, as `[low, high)`.
    age: Option<(Duration, Duration)>,
    /// A hash of the labels: kept for every container between sweeps, so not the labels
    /// themselves (the kept details hold them once).
    labels: u64,
}

impl ListMark {
    pub fn of(summary: &ContainerSummary) -> ListMark {
        let (stable, age) = split_status(&summary.status);
        ListMark {
            state: summary.state,
            stable,
            age,
            labels: labels_hash(&summary.labels),
        }
    }

    /// Whether `self`, listed `elapsed` after `before`, shows a change worth an inspect.
    pub fn changed_since(&self, before: &ListMark, elapsed: Duration) -> bool {
        if self.state != before.state
            || self.stable != before.stable
            || self.labels != before.labels
        {
            return true;
        }
        match (self.age, before.age) {
            // Unchanged, the age now is at least the old lower bound plus the time between.
            (Some((_, high)), Some((low_before, _))) => high + AGE_SLACK <= low_before + elapsed,
            (None, None) => false,
            _ => true,
        }
    }
}

/// A hash of `labels` (keys and values, in order), equal for equal labels within the process.
fn labels_hash(labels: &BTreeMap<String, String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

/// Splits the engine's status text into its stable part and its age range.
pub fn split_status(status: &str) -> (String, Option<(Duration, Duration)>) {
    let whole = || (status.to_string(), None);
    if let Some(rest) = status.strip_prefix("Up ") {
        // `Up <age>` with an optional ` (healthy)`, ` (Paused)`, ` (health: starting)`.
        let (age_text, suffix) = match rest.find(" (") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        return match parse_age(age_text) {
            Some(age) => (format!("Up{suffix}"), Some(age)),
            None => whole(),
        };
    }
    for prefix in ["Exited (", "Restarting ("] {
        if let Some(rest) = status.strip_prefix(prefix)
            && let Some(close) = rest.find(") ")
            && let Some(age_text) = rest[close + 2..].strip_suffix(" ago")
        {
            return match parse_age(age_text) {
                Some(age) => (format!("{prefix}{})", &rest[..close]), Some(age)),
                None => whole(),
            };
        }
    }
    whole()
}

/// The engine's human duration (`Less than a second`, `5 seconds`, `About a minute`,
/// `3 hours`, `2 days`, `3 weeks`, `4 months`, `2 years`) as the range it stands for.
fn parse_age(text: &str) -> Option<(Duration, Duration)> {
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    let secs = |low: u64, high: u64| Some((Duration::from_secs(low), Duration::from_secs(high)));
    match text {
        "Less than a second" => return secs(0, 1),
        "About a minute" => return secs(MIN, 2 * MIN),
        // Hours are rounded to the nearest: "About an hour" is 60 to 90 minutes.
        "About an hour" => return secs(HOUR, HOUR + HOUR / 2),
        _ => {}
    }
    let (n, unit) = text.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    // Rounded hours: N hours is [N - 0.5, N + 0.5) hours; days, weeks and months are whole
    // divisions of rounded hours.
    let rounded_hours = |from: u64, to: u64| {
        Some((
            Duration::from_secs((from * HOUR).saturating_sub(HOUR / 2)),
            Duration::from_secs(to * HOUR - HOUR / 2),
        ))
    };
    match unit {
        "second" | "seconds" => secs(n, n + 1),
        "minutes" => secs(n * MIN, (n + 1) * MIN),
        "hours" => rounded_hours(n, n + 1),
        "days" => rounded_hours(n * 24, (n + 1) * 24),
        "weeks" => rounded_hours(n * 24 * 7, (n + 1) * 24 * 7),
        "months" => rounded_hours(n * 24 * 30, (n + 1) * 24 * 30),
        "years" => secs(n * 24 * 365 * HOUR, (n + 1) * 24 * 365 * HOUR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_docker::ContainerRef;
    use vigil_shared::time::Timestamp;

    fn summary(state: RunState, status: &str) -> ContainerSummary {
        ContainerSummary {
            container: ContainerRef {
                id: "a".into(),
                name: "web-1".into(),
                project: None,
                service: None,
            },
            image: "img".into(),
            state,
            status: status.into(),
            labels: BTreeMap::new(),
            created: Timestamp(0),
        }
    }

    fn mark(state: RunState, status: &str) -> ListMark {
        ListMark::of(&summary(state, status))
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn splits_the_engine_status_texts() {
        assert_eq!(
            split_status("Up 5 seconds"),
            ("Up".into(), Some((s(5), s(6))))
        );
        assert_eq!(
            split_status("Up 2 minutes (healthy)"),
            ("Up (healthy)".into(), Some((s(120), s(180))))
        );
        assert_eq!(
            split_status("Up About an hour (health: starting)").0,
            "Up (health: starting)"
        );
        assert_eq!(
            split_status("Exited (137) 3 hours ago"),
            ("Exited (137)".into(), Some((s(9000), s(12600))))
        );
        assert_eq!(
            split_status("Restarting (1) Less than a second ago"),
            ("Restarting (1)".into(), Some((s(0), s(1))))
        );
        assert_eq!(split_status("Created"), ("Created".into(), None));
        assert_eq!(split_status("Up for ever"), ("Up for ever".into(), None));
        assert_eq!(split_status(""), (String::new(), None));
    }

    #[test]
    fn an_age_that_grew_by_the_time_between_is_no_change() {
        let a = mark(RunState::Running, "Up 5 seconds");
        let b = mark(RunState::Running, "Up 20 seconds");
        assert!(!b.changed_since(&a, s(15)));
        let a = mark(RunState::Running, "Up 3 hours (healthy)");
        assert!(!a.changed_since(&a, s(15)), "coarse text, same range");
        let a = mark(RunState::Exited, "Exited (1) 2 minutes ago");
        let b = mark(RunState::Exited, "Exited (1) 2 minutes ago");
        assert!(!b.changed_since(&a, s(15)));
    }

    #[test]
    fn a_restart_between_two_sweeps_resets_the_age() {
        // Restarted by its restart policy 3 s before the second sweep: same state, same text
        // but for the age.
        let a = mark(RunState::Running, "Up 10 seconds");
        let b = mark(RunState::Running, "Up 3 seconds");
        assert!(b.changed_since(&a, s(15)));
        let a = mark(RunState::Running, "Up 2 days (healthy)");
        let b = mark(RunState::Running, "Up 14 seconds (healthy)");
        assert!(b.changed_since(&a, s(15)));
        // Exited again after a restart: the time since the exit went back.
        let a = mark(RunState::Exited, "Exited (1) 40 seconds ago");
        let b = mark(RunState::Exited, "Exited (1) 2 seconds ago");
        assert!(b.changed_since(&a, s(15)));
    }

    #[test]
    fn state_text_and_label_changes_are_changes() {
        let a = mark(RunState::Running, "Up 5 minutes (healthy)");
        assert!(mark(RunState::Running, "Up 5 minutes (unhealthy)").changed_since(&a, s(1)));
        assert!(mark(RunState::Exited, "Exited (0) 1 second ago").changed_since(&a, s(1)));
        let mut relabelled = summary(RunState::Running, "Up 5 minutes (healthy)");
        relabelled
            .labels
            .insert("com.example.team".into(), "payments".into());
        assert!(ListMark::of(&relabelled).changed_since(&a, s(1)));
        let odd = mark(RunState::Running, "Up for ever");
        assert!(
            !odd.changed_since(&odd, s(15)),
            "unparsed text compares whole"
        );
        assert!(mark(RunState::Running, "Up 1 second").changed_since(&odd, s(15)));
    }
}
