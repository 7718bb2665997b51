//! How rejections are logged: a flood of forged, replayed or malformed stream entries must not
//! become a flood of log lines.
//!
//! In each window of [`WINDOW`] the first [`LOGGED_PER_REASON`] rejections of each reason are
//! logged one line each (warn); the rest are only counted, and once the window is over one line
//! says how many requests were rejected in it, for which reasons, and how many were not logged
//! one by one. A window starts with its first rejection and is closed by the first rejection
//! after it ends or by the consumer loop's next step ([`RejectionLog::tick`], at least once a
//! second), and at shutdown ([`RejectionLog::finish`]). Every rejection is still audited, one
//! record each, and counted in `vigil_executor_requests_total`: only the log is summarised.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one window of rejections lasts.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Rejections per reason per window logged one line each.
pub const LOGGED_PER_REASON: u64 = 5;

/// The rejections of the current window: per audit reason, how many, and how many of them were
/// logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    started: Option<Instant>,
    reasons: BTreeMap<&'static str, (u64, u64)>,
}

/// What a closed window has to say (only when some of its rejections were not logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rejected: u64,
    pub unlogged: u64,
    /// `reason=count`, by reason, comma-separated.
    pub reasons: String,
    /// How long the window lasted.
    pub window: Duration,
}

impl Window {
    /// Counts a rejection for `reason` at `now`. Returns whether it is to be logged one line of
    /// its own, and the summary of the previous window when `now` closed it.
    pub fn admit(&mut self, reason: &'static str, now: Instant) -> (bool, Option<Summary>) {
        let closed = self.close(now, false);
        if self.started.is_none() {
            self.started = Some(now);
        }
        let (seen, logged) = self.reasons.entry(reason).or_insert((0, 0));
        *seen += 1;
        let log = *logged < LOGGED_PER_REASON;
        if log {
            *logged += 1;
        }
        (log, closed)
    }

    /// Closes the window when it is over (or, with `always`, in any case). Its summary when some
    /// of its rejections were not logged.
    pub fn close(&mut self, now: Instant, always: bool) -> Option<Summary> {
        let started = self.started?;
        let window = now.saturating_duration_since(started);
        if window < WINDOW && !always {
            return None;
        }
        let reasons = std::mem::take(&mut self.reasons);
        self.started = None;
        let rejected: u64 = reasons.values().map(|(n, _)| n).sum();
        let logged: u64 = reasons.values().map(|(_, l)| l).sum();
        (rejected > logged).then(|| Summary {
            rejected,
            unlogged: rejected - logged,
            reasons: reasons
                .iter()
                .map(|(r, (n, _))| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(", "),
            window,
        })
    }
}

/// The executor's rejection log, shared by every request in flight.
#[derive(Debug, Default)]
pub struct RejectionLog {
    window: Mutex<Window>,
}

impl RejectionLog {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a rejection for `reason` (its audit reason); true when the caller is to log it in
    /// full.
    pub fn admit(&self, reason: &'static str) -> bool {
        let (log, closed) = self.window().admit(reason, Instant::now());
        if let Some(s) = closed {
            say(&s);
        }
        log
    }

    /// Logs the summary of a window that is over.
    pub fn tick(&self) {
        let closed = self.window().close(Instant::now(), false);
        if let Some(s) = closed {
            say(&s);
        }
    }

    /// Logs the summary of the current window, over or not (at shutdown).
    pub fn finish(&self) {
        let closed = self.window().close(Instant::now(), true);
        if let Some(s) = closed {
            say(&s);
        }
    }
}

fn say(s: &Summary) {
    tracing::warn!(
        rejected.count = s.rejected,
        rejected.unlogged = s.unlogged,
        rejected.reasons = %s.reasons,
        rejected.window_ms = u64::try_from(s.window.as_millis()).unwrap_or(u64::MAX),
        "{} requests rejected in the last {:.0} s ({}); {} of them not logged one by one (every one is in the audit log).",
        s.rejected,
        s.window.as_secs_f64(),
        s.reasons,
        s.unlogged,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_reason_are_logged_then_the_rest_summarised() {
        let t0 = Instant::now();
        let mut w = Window::default();
        let mut logged = 0;
        for _ in 0..100 {
            let (log, closed) = w.admit("bad_signature", t0);
            assert_eq!(closed, None);
            logged += u64::from(log);
        }
        // Another reason has its own allowance in the same window.
        assert_eq!(w.admit("malformed", t0), (true, None));
        assert_eq!(logged, LOGGED_PER_REASON);
        // Not over yet: nothing to say.
        assert_eq!(w.close(t0 + WINDOW / 2, false), None);
        let s = w.close(t0 + WINDOW, false).expect("a summary");
        assert_eq!(s.rejected, 101);
        assert_eq!(s.unlogged, 100 - LOGGED_PER_REASON);
        assert_eq!(s.reasons, "bad_signature=100, malformed=1");
        assert_eq!(s.window, WINDOW);
        // A new window logs again from the start.
        assert_eq!(w.admit("bad_signature", t0 + WINDOW), (true, None));
    }

    #[test]
    fn a_window_with_every_rejection_logged_needs_no_summary() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for _ in 0..LOGGED_PER_REASON {
            assert!(w.admit("replay", t0).0);
        }
        assert_eq!(w.close(t0 + WINDOW, false), None);
        assert_eq!(w, Window::default());
    }

    #[test]
    fn the_next_rejection_after_the_window_closes_it() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for _ in 0..LOGGED_PER_REASON + 3 {
            w.admit("bad_signature", t0);
        }
        let (log, closed) = w.admit("bad_signature", t0 + WINDOW + Duration::from_secs(1));
        assert!(log, "the first of a new window is logged");
        let s = closed.expect("the old window's summary");
        assert_eq!((s.rejected, s.unlogged), (LOGGED_PER_REASON + 3, 3));
    }

    #[test]
    fn finish_closes_a_window_that_is_not_over() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for _ in 0..LOGGED_PER_REASON + 1 {
            w.admit("expired", t0);
        }
        assert_eq!(w.close(t0, false), None);
        let s = w.close(t0, true).expect("a summary");
        assert_eq!((s.rejected, s.unlogged), (LOGGED_PER_REASON + 1, 1));
        assert_eq!(w.close(t0, true), None, "nothing left");
    }
}
