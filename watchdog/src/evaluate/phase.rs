//! Where one container is in its life, as far as judging its exits goes: one enum, and the
//! transitions the lifecycle concern may make on it. Every change of a container's phase goes
//! through a method here; nothing else writes it.
//!
//! The phase answers three questions the rules ask: was the container stopped on purpose (its
//! exits are not failures), does its next `start` complete a die→start cycle (a failure die was
//! seen), and is a die with code 137 waiting for OOM evidence. The answers are not independent
//! of each other in every order of events (a start can come before the verdict on a held kill;
//! an operator stop can follow a failure die), so the variants carry what is left pending.

use vigil_shared::time::Timestamp;

/// A die with code 137 and no intent, waiting to learn whether it was an OOM kill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct HeldKill {
    pub(super) at: Timestamp,
    pub(super) time_nano: i64,
}

/// A container's phase. Removal is not a phase: a removed container is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) enum Phase {
    /// Running, or stopped without anything pending: no failure waits for a start, no kill
    /// waits for a verdict, no operator stop is in force.
    #[default]
    Running,
    /// A failure die was seen (or a die the sweep still has to judge) and the container has not
    /// started since: its next start completes a die→start cycle.
    Exited,
    /// A die with code 137 is held until an OOM kill explains it or the grace runs out.
    /// `exited`: not started since that die (the next start completes a cycle); a start can
    /// come before the verdict.
    OomPending { held: HeldKill, exited: bool },
    /// Stopped by an operator (or by Vigil) and not started since: none of its exits are
    /// failures. `after_failure`: a failure die came first, so the next start still completes a
    /// cycle. `held`: a 137 die from before the stop still waiting for its verdict.
    Stopped {
        after_failure: bool,
        held: Option<HeldKill>,
    },
}

impl Phase {
    /// The three answers, in the order `(stopped, awaiting start, held kill)`.
    fn parts(self) -> (bool, bool, Option<HeldKill>) {
        match self {
            Phase::Running => (false, false, None),
            Phase::Exited => (false, true, None),
            Phase::OomPending { held, exited } => (false, exited, Some(held)),
            Phase::Stopped {
                after_failure,
                held,
            } => (true, after_failure, held),
        }
    }

    fn from_parts(stopped: bool, awaiting_start: bool, held: Option<HeldKill>) -> Phase {
        match (stopped, held) {
            (true, held) => Phase::Stopped {
                after_failure: awaiting_start,
                held,
            },
            (false, Some(held)) => Phase::OomPending {
                held,
                exited: awaiting_start,
            },
            (false, None) if awaiting_start => Phase::Exited,
            (false, None) => Phase::Running,
        }
    }

    /// Stopped by an operator (a `docker stop`/`kill`) and not started since.
    pub(super) fn stopped_by_operator(self) -> bool {
        self.parts().0
    }

    /// The 137 die waiting for OOM evidence, if any.
    pub(super) fn held_kill(self) -> Option<HeldKill> {
        self.parts().2
    }

    /// A `kill`/`stop` right after a die confirms an operator stop: nothing of the die is a
    /// failure any more, a held kill included.
    pub(super) fn stop_confirmed(&mut self) {
        *self = Phase::Stopped {
            after_failure: false,
            held: None,
        };
    }

    /// A die the operator intended (or one after such a stop): stopped, no cycle pending. A kill
    /// held from before stays held.
    pub(super) fn intended_die(&mut self) {
        let (_, _, held) = self.parts();
        *self = Phase::from_parts(true, false, held);
    }

    /// A die that is not intended: the next start completes a die→start cycle.
    pub(super) fn failure_die(&mut self) {
        let (stopped, _, held) = self.parts();
        *self = Phase::from_parts(stopped, true, held);
    }

    /// Hold a 137 die for its OOM verdict.
    pub(super) fn hold_kill(&mut self, kill: HeldKill) {
        let (stopped, awaiting, _) = self.parts();
        *self = Phase::from_parts(stopped, awaiting, Some(kill));
    }

    /// The held kill's verdict is in (an OOM, or the grace ran out): release it.
    pub(super) fn take_held_kill(&mut self) -> Option<HeldKill> {
        let (stopped, awaiting, held) = self.parts();
        *self = Phase::from_parts(stopped, awaiting, None);
        held
    }

    /// A `start` event: no longer stopped. Returns whether it completes a die→start cycle. A
    /// held kill keeps waiting for its verdict.
    pub(super) fn started(&mut self) -> bool {
        let (_, awaiting, held) = self.parts();
        *self = Phase::from_parts(false, false, held);
        awaiting
    }

    /// A sweep found the container running: whatever stopped it is over. A pending cycle stays
    /// pending until the `start` event.
    pub(super) fn seen_running(&mut self) {
        let (_, awaiting, held) = self.parts();
        *self = Phase::from_parts(false, awaiting, held);
    }

    /// A sweep found an exit only a signal from outside produces (137/143, no OOM): someone
    /// stopped it.
    pub(super) fn stop_signal_exit(&mut self) {
        let (_, awaiting, held) = self.parts();
        *self = Phase::from_parts(true, awaiting, held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: HeldKill = HeldKill {
        at: Timestamp(1_000),
        time_nano: 1_000_000_000,
    };

    type Step = fn(&mut Phase);

    #[test]
    fn parts_round_trip_for_every_state() {
        for stopped in [false, true] {
            for awaiting in [false, true] {
                for held in [None, Some(H)] {
                    let p = Phase::from_parts(stopped, awaiting, held);
                    assert_eq!(p.parts(), (stopped, awaiting, held), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn transitions() {
        use Phase::*;
        let stopped = |after_failure, held| Stopped {
            after_failure,
            held,
        };
        let pending = |exited| OomPending { held: H, exited };
        #[rustfmt::skip]
        let table: Vec<(&str, Phase, Step, Phase)> = vec![
            ("failure die from running", Running, Phase::failure_die, Exited),
            ("failure die keeps a held kill", pending(false), Phase::failure_die, pending(true)),
            ("137 die is held", Exited, |p| p.hold_kill(H), pending(true)),
            ("start completes the exit", Exited, |p| { assert!(p.started()); }, Running),
            ("start from running is no cycle", Running, |p| { assert!(!p.started()); }, Running),
            ("start before the verdict keeps the kill held", pending(true), |p| { assert!(p.started()); }, pending(false)),
            ("start ends an operator stop", stopped(false, None), |p| { assert!(!p.started()); }, Running),
            ("start after a stop that followed a failure", stopped(true, None), |p| { assert!(p.started()); }, Running),
            ("verdict releases the kill", pending(true), |p| { assert_eq!(p.take_held_kill(), Some(H)); }, Exited),
            ("verdict after a start", pending(false), |p| { assert_eq!(p.take_held_kill(), Some(H)); }, Running),
            ("no kill to release", Exited, |p| { assert_eq!(p.take_held_kill(), None); }, Exited),
            ("confirmed stop drops everything", pending(true), Phase::stop_confirmed, stopped(false, None)),
            ("intended die keeps a held kill", pending(false), Phase::intended_die, stopped(false, Some(H))),
            ("intended die ends a pending cycle", Exited, Phase::intended_die, stopped(false, None)),
            ("sweep sees it running again", stopped(true, Some(H)), Phase::seen_running, pending(true)),
            ("sweep running keeps the pending cycle", Exited, Phase::seen_running, Exited),
            ("stop-signal exit after a failure die", Exited, Phase::stop_signal_exit, stopped(true, None)),
            ("stop-signal exit from running", Running, Phase::stop_signal_exit, stopped(false, None)),
        ];
        for (name, from, step, to) in table {
            let mut p = from;
            step(&mut p);
            assert_eq!(p, to, "{name}");
            assert_eq!(
                p.stopped_by_operator(),
                matches!(to, Stopped { .. }),
                "{name}"
            );
            assert_eq!(p.held_kill().is_some(), to.parts().2.is_some(), "{name}");
        }
    }
}
