//! Bounded per-container history for the timeline strips: state changes and executor actions of
//! the last 24 hours, in fixed-size rings.
//!
//! # Memory cost
//! A container costs at most [`BYTES_PER_CONTAINER`] (7 KiB): [`MAX_POINTS`] state changes of 16
//! bytes (4 KiB), [`MAX_MARKS`] action marks of 24 bytes (1.5 KiB), its id, name, project and
//! service (each cut to [`MAX_TEXT`] bytes), and the map entry. The rings never grow past their
//! limit: the oldest entry leaves before a new one enters, and both limits are powers of two, so
//! the allocation never doubles past them. At most [`MAX_CONTAINERS`] containers are kept, so the
//! whole history stays under `MAX_CONTAINERS * BYTES_PER_CONTAINER` (35 MiB); a 1,000-container
//! deployment needs under 7 MiB. [`History::bytes`] reports what one container actually holds.

use std::collections::VecDeque;
use std::time::Duration;
use vigil_docker::{ContainerDetails, Health, RunState};

/// How far back the strips reach.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// State changes kept per container (a power of two, see the module docs).
pub const MAX_POINTS: usize = 256;
/// Action marks kept per container (a power of two).
pub const MAX_MARKS: usize = 64;
/// Longest name, project or service kept, in bytes (cut on a character boundary).
pub const MAX_TEXT: usize = 128;
/// Containers kept at most; containers beyond it are shown without history.
pub const MAX_CONTAINERS: usize = 5000;
/// The documented worst case for one container, in bytes.
pub const BYTES_PER_CONTAINER: usize = 7 * 1024;
/// What a hash map entry costs beyond its key and value (control bytes, spare capacity).
const MAP_ENTRY_OVERHEAD: usize = 64;

/// A container's state as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shown {
    Unhealthy,
    Exited,
    Down,
    Restarting,
    Starting,
    Paused,
    Healthy,
    Running,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Healthy => "healthy",
            Shown::Running => "running",
            Shown::Starting => "starting",
            Shown::Unhealthy => "unhealthy",
            Shown::Exited => "exited",
            Shown::Restarting => "restarting",
            Shown::Paused => "paused",
            Shown::Down => "down",
        }
    }

    /// Whether the page counts this as a problem (listed first, drawn red or amber).
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            Shown::Unhealthy | Shown::Exited | Shown::Down | Shown::Restarting
        )
    }

    pub fn of(details: &ContainerDetails) -> Shown {
        Shown::from_parts(details.state, details.health)
    }

    pub fn from_parts(state: RunState, health: Health) -> Shown {
        match state {
            RunState::Running => match health {
                Health::Healthy => Shown::Healthy,
                Health::Unhealthy => Shown::Unhealthy,
                Health::Starting => Shown::Starting,
                Health::None => Shown::Running,
            },
            RunState::Exited => Shown::Exited,
            RunState::Restarting => Shown::Restarting,
            RunState::Paused => Shown::Paused,
            RunState::Created | RunState::Removing | RunState::Dead | RunState::Unknown => {
                Shown::Down
            }
        }
    }
}

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub at: i64,
    pub state: Shown,
}

/// One executor action (or request) on the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRec {
    pub at: i64,
    /// 0 while only requested (audit sequence numbers start at 1).
    pub seq: u64,
    pub decision: Decision,
}

/// The executor's decisions, as small values (a mark must stay 24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Requested,
    Executed,
    DryRun,
    Refused,
    Failed,
    Rejected,
    Other,
}

impl Decision {
    pub fn parse(s: &str) -> Decision {
        match s {
            "requested" => Decision::Requested,
            "executed" => Decision::Executed,
            "dry_run" => Decision::DryRun,
            "refused" => Decision::Refused,
            "failed" => Decision::Failed,
            "rejected" => Decision::Rejected,
            _ => Decision::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Requested => "requested",
            Decision::Executed => "executed",
            Decision::DryRun => "dry_run",
            Decision::Refused => "refused",
            Decision::Failed => "failed",
            Decision::Rejected => "rejected",
            Decision::Other => "other",
        }
    }
}

/// `s` cut to at most [`MAX_TEXT`] bytes on a character boundary, allocated to fit.
pub fn bounded(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// One container's rings.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<Point>,
    marks: VecDeque<MarkRec>,
}

impl History {
    /// Records `state` from `at` on, if it differs from the current one. Out-of-order changes
    /// (older than the newest) are ignored: the newest word wins.
    pub fn set(&mut self, state: Shown, at: i64) -> bool {
        if let Some(last) = self.points.back()
            && (last.state == state || at < last.at)
        {
            return false;
        }
        if self.points.len() == MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(Point { at, state });
        true
    }

    pub fn current(&self) -> Option<Point> {
        self.points.back().copied()
    }

    pub fn mark(&mut self, mark: MarkRec) {
        if self.marks.iter().any(|m| m.seq != 0 && m.seq == mark.seq) {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        // Audit records may be read after a request mark made later: keep time order.
        let pos = self.marks.partition_point(|m| m.at <= mark.at);
        self.marks.insert(pos, mark);
    }

    /// Drops what fell out of the window, keeping the one point the window starts in.
    pub fn prune(&mut self, now: i64) {
        let start = now - window_ms();
        while self.points.len() > 1 && self.points.get(1).is_some_and(|p| p.at <= start) {
            self.points.pop_front();
        }
        while self.marks.front().is_some_and(|m| m.at < start) {
            self.marks.pop_front();
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    pub fn marks(&self) -> impl Iterator<Item = &MarkRec> {
        self.marks.iter()
    }

    /// Heap bytes held by the rings (their capacity, not their length).
    pub fn bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
            + self.marks.capacity() * std::mem::size_of::<MarkRec>()
    }
}

pub fn window_ms() -> i64 {
    i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// The map-entry overhead counted per container by [`crate::status_page::Board`].
pub const fn entry_overhead() -> usize {
    MAP_ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_documented_cost() {
        assert_eq!(std::mem::size_of::<Point>(), 16);
        assert_eq!(std::mem::size_of::<MarkRec>(), 24);
        assert!(MAX_POINTS.is_power_of_two() && MAX_MARKS.is_power_of_two());
    }

    #[test]
    fn rings_never_grow_past_their_limits() {
        let mut h = History::default();
        for i in 0..10_000i64 {
            let s = if i % 2 == 0 {
                Shown::Healthy
            } else {
                Shown::Unhealthy
            };
            assert!(h.set(s, i));
            h.mark(MarkRec {
                at: i,
                seq: u64::try_from(i).unwrap_or(0) + 1,
                decision: Decision::Executed,
            });
        }
        assert_eq!(h.points().count(), MAX_POINTS);
        assert_eq!(h.marks().count(), MAX_MARKS);
        assert!(
            h.bytes() <= MAX_POINTS * 16 + MAX_MARKS * 24,
            "{}",
            h.bytes()
        );
        assert_eq!(h.current().map(|p| p.at), Some(9_999));
    }

    #[test]
    fn same_state_and_older_changes_are_not_recorded() {
        let mut h = History::default();
        assert!(h.set(Shown::Healthy, 10));
        assert!(!h.set(Shown::Healthy, 20));
        assert!(!h.set(Shown::Exited, 5));
        assert!(h.set(Shown::Exited, 30));
        assert_eq!(h.points().count(), 2);
    }

    #[test]
    fn pruning_keeps_the_state_the_window_starts_in() {
        let mut h = History::default();
        let day = window_ms();
        h.set(Shown::Healthy, 0);
        h.set(Shown::Unhealthy, 10);
        h.set(Shown::Healthy, day + 100);
        h.mark(MarkRec {
            at: 5,
            seq: 1,
            decision: Decision::Executed,
        });
        h.prune(day + 50);
        let states: Vec<Shown> = h.points().map(|p| p.state).collect();
        assert_eq!(states, vec![Shown::Unhealthy, Shown::Healthy]);
        assert_eq!(h.marks().count(), 0);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = "é".repeat(200);
        let b = bounded(&s);
        assert!(b.len() <= MAX_TEXT && b.chars().all(|c| c == 'é'));
        assert_eq!(bounded("short"), "short");
    }
}
