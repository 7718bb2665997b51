//! Flap damping, pure: notices in, `now` in, notices out.
//!
//! Every alert and recovery of one signal key is a state change. When a key changes state
//! [`FlapSettings::transitions`] times within [`FlapSettings::window`], the change that crossed
//! the line goes out as one "flapping" notice and every later notice of that key is held. Once
//! the key has not changed for [`FlapSettings::hold`], one "settled" notice says how many changes
//! there were and which state it ended in. A container flapping forever therefore costs at most
//! `transitions` messages, however long it flaps.
//!
//! Defaults: 3 changes within 10 minutes; settled after 5 minutes without a change.

use super::message::{Notice, Occasion};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapSettings {
    /// State changes within `window` that make a signal flapping (0 turns damping off).
    pub transitions: u32,
    pub window: Duration,
    /// How long a flapping signal must stay unchanged to count as settled.
    pub hold: Duration,
}

impl Default for FlapSettings {
    fn default() -> Self {
        FlapSettings {
            transitions: 3,
            window: Duration::from_secs(600),
            hold: Duration::from_secs(300),
        }
    }
}

#[derive(Debug)]
struct Flapping {
    last_change: Instant,
    transitions: u32,
    /// The newest notice held back: it decides the state the summary reports.
    last: Notice,
}

#[derive(Debug, Default)]
struct KeyState {
    changes: VecDeque<Instant>,
    flapping: Option<Flapping>,
}

/// See the module docs.
#[derive(Debug)]
pub struct FlapDamper {
    settings: FlapSettings,
    keys: HashMap<String, KeyState>,
}

impl FlapDamper {
    pub fn new(settings: FlapSettings) -> FlapDamper {
        FlapDamper {
            settings,
            keys: HashMap::new(),
        }
    }

    /// Passes `notice` on, turns it into the "flapping" notice, or holds it (None).
    pub fn admit(&mut self, notice: Notice, now: Instant) -> Option<Notice> {
        let is_change = matches!(notice.occasion, Occasion::Alert | Occasion::Recovery { .. });
        if self.settings.transitions == 0 {
            return Some(notice);
        }
        let window = self.settings.window;
        let state = self.keys.entry(notice.signal.key.clone()).or_default();
        if let Some(f) = state.flapping.as_mut() {
            if is_change {
                f.last_change = now;
                f.transitions += 1;
                f.last = notice;
            } else if !notice.occasion.is_recovery() {
                // A re-alert while flapping says nothing new.
                f.last.signal = notice.signal;
            }
            return None;
        }
        if !is_change {
            return Some(notice);
        }
        state.changes.push_back(now);
        while state
            .changes
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            state.changes.pop_front();
        }
        let count = state.changes.len() as u32;
        if count < self.settings.transitions {
            if notice.occasion.is_recovery() && state.changes.is_empty() {
                self.keys.remove(&notice.signal.key);
            }
            return Some(notice);
        }
        state.changes.clear();
        state.flapping = Some(Flapping {
            last_change: now,
            transitions: count,
            last: notice.clone(),
        });
        tracing::info!(
            signal.key = %notice.signal.key,
            flap.transitions = count,
            "Signal is flapping; holding its updates until it is stable."
        );
        let mut flapping = notice;
        flapping.occasion = Occasion::Flapping {
            transitions: count,
            window,
            hold: self.settings.hold,
        };
        Some(flapping)
    }

    /// The "settled" notices of keys that have been stable for the hold time.
    pub fn due(&mut self, now: Instant) -> Vec<Notice> {
        let hold = self.settings.hold;
        let mut out = Vec::new();
        self.keys.retain(|_, state| {
            if let Some(f) = &state.flapping
                && now.duration_since(f.last_change) >= hold
            {
                let mut n = f.last.clone();
                n.occasion = Occasion::Settled {
                    transitions: f.transitions,
                    firing: !f.last.occasion.is_recovery(),
                };
                out.push(n);
                return false;
            }
            // Forget keys whose changes are all older than the window.
            state.flapping.is_some()
                || state
                    .changes
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= hold.max(Duration::from_secs(600)))
        });
        out
    }

    /// When the next "settled" notice may be due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.keys
            .values()
            .filter_map(|s| s.flapping.as_ref())
            .map(|f| f.last_change + self.settings.hold)
            .min()
    }

    /// Keys currently held as flapping.
    pub fn flapping(&self) -> usize {
        self.keys.values().filter(|s| s.flapping.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::container_notice;

    fn recovery() -> Occasion {
        Occasion::Recovery {
            lasted: Duration::from_secs(10),
        }
    }

    #[test]
    fn flapping_costs_at_most_three_notices_then_one_summary() {
        let mut d = FlapDamper::new(FlapSettings::default());
        let t0 = Instant::now();
        let mut out = Vec::new();
        // 10 minutes of a change every 20 s.
        for i in 0..30u64 {
            let occ = if i % 2 == 0 {
                Occasion::Alert
            } else {
                recovery()
            };
            let now = t0 + Duration::from_secs(20 * i);
            out.extend(d.admit(container_notice("shop", 1, occ), now));
            out.extend(d.due(now));
        }
        let kinds: Vec<&str> = out.iter().map(|n| n.occasion.as_str()).collect();
        assert_eq!(kinds, ["alert", "recovery", "flapping"]);
        assert_eq!(d.flapping(), 1);
        let last = t0 + Duration::from_secs(20 * 29);
        assert!(d.due(last + Duration::from_secs(299)).is_empty());
        let settled = d.due(last + Duration::from_secs(300));
        assert_eq!(settled.len(), 1);
        assert_eq!(
            settled[0].occasion,
            Occasion::Settled {
                transitions: 30,
                firing: false
            }
        );
        assert_eq!(d.flapping(), 0);
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn slow_changes_are_not_flapping() {
        let mut d = FlapDamper::new(FlapSettings::default());
        let t0 = Instant::now();
        for i in 0..6u64 {
            let occ = if i % 2 == 0 {
                Occasion::Alert
            } else {
                recovery()
            };
            let n = d.admit(
                container_notice("shop", 1, occ),
                t0 + Duration::from_secs(400 * i),
            );
            assert_eq!(n.map(|n| n.occasion), Some(occ), "change {i}");
        }
    }

    #[test]
    fn realerts_pass_unless_flapping_and_other_keys_are_independent() {
        let mut d = FlapDamper::new(FlapSettings::default());
        let t0 = Instant::now();
        assert!(
            d.admit(container_notice("shop", 1, Occasion::Realert), t0)
                .is_some()
        );
        d.admit(container_notice("shop", 1, Occasion::Alert), t0);
        d.admit(container_notice("shop", 1, recovery()), t0);
        d.admit(container_notice("shop", 1, Occasion::Alert), t0);
        assert!(
            d.admit(container_notice("shop", 1, Occasion::Realert), t0)
                .is_none()
        );
        assert!(
            d.admit(container_notice("shop", 2, Occasion::Alert), t0)
                .is_some()
        );
    }
}
