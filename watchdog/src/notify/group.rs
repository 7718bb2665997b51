//! Per-project grouping, pure: notices in, `now` in, messages out. Leading edge: the first
//! notice of a compose project is never held.
//!
//! A notice of a project that has no open window goes out at once, as its own message, and
//! opens a window of `window` for that project. Notices of the project arriving while the
//! window is open are held; when it closes they go out together as one follow-up message, and
//! a new window opens then, so a storm that outlasts the window gives one follow-up per window.
//! A window that closes with nothing held ends, and the project's next notice goes at once
//! again. Twenty containers of one project failing together are therefore two messages: the
//! first failure at once, the other nineteen one window later. Notices without a project (host,
//! dependency and engine signals) are never held back. The task driving a [`Grouper`] sleeps
//! until [`Grouper::next_deadline`].

use super::message::{Message, Notice};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Due {
    project: Option<String>,
    at: Instant,
    notice: Notice,
}

#[derive(Debug)]
struct Window {
    project: String,
    closes: Instant,
    held: Vec<Notice>,
}

/// Collects notices into per-project groups; see the module docs.
#[derive(Debug)]
pub struct Grouper {
    window: Duration,
    /// Notices to send as they are, in arrival order.
    due: Vec<Due>,
    /// Open windows, ordered by closing time (all share one length, and a window reopened at
    /// `now` closes after every other).
    windows: Vec<Window>,
}

impl Grouper {
    pub fn new(window: Duration) -> Grouper {
        Grouper {
            window,
            due: Vec::new(),
            windows: Vec::new(),
        }
    }

    /// Adds a notice that arrived at `now`.
    pub fn push(&mut self, notice: Notice, now: Instant) {
        let Some(project) = notice.project().map(str::to_string) else {
            self.due.push(Due {
                project: None,
                at: now,
                notice,
            });
            return;
        };
        if let Some(i) = self.windows.iter().position(|w| w.project == project) {
            let w = &mut self.windows[i];
            // A window that closed with nothing held is over; one holding notices still sends
            // them (with this one) at the next `due`.
            if w.closes > now || !w.held.is_empty() {
                w.held.push(notice);
                return;
            }
            self.windows.remove(i);
        }
        self.due.push(Due {
            project: Some(project.clone()),
            at: now,
            notice,
        });
        self.open_window(project, now);
    }

    fn open_window(&mut self, project: String, now: Instant) {
        let closes = now + self.window;
        let at = self.windows.partition_point(|w| w.closes <= closes);
        self.windows.insert(
            at,
            Window {
                project,
                closes,
                held: Vec::new(),
            },
        );
    }

    /// The messages due by `now`: first notices at once, then the follow-ups of windows that
    /// closed, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .due
            .drain(..)
            .filter_map(|d| Message::group(d.project, vec![d.notice]))
            .collect();
        let n = self.windows.partition_point(|w| w.closes <= now);
        let closed: Vec<Window> = self.windows.drain(..n).collect();
        for w in closed {
            if w.held.is_empty() {
                continue;
            }
            let project = w.project.clone();
            out.extend(Message::group(Some(w.project), w.held));
            // Still busy: the next notices wait for the next window.
            self.open_window(project, now);
        }
        out
    }

    /// Every message still held, regardless of windows (for shutdown).
    pub fn flush(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .due
            .drain(..)
            .filter_map(|d| Message::group(d.project, vec![d.notice]))
            .collect();
        out.extend(
            self.windows
                .drain(..)
                .filter(|w| !w.held.is_empty())
                .filter_map(|w| Message::group(Some(w.project), w.held)),
        );
        out
    }

    /// When something is next due: at once for a notice not yet taken, else when the next
    /// window closes (an empty one closing only ends it).
    pub fn next_deadline(&self) -> Option<Instant> {
        let first_due = self.due.first().map(|d| d.at);
        let first_window = self.windows.first().map(|w| w.closes);
        first_due.into_iter().chain(first_window).min()
    }

    /// How many notices are held.
    pub fn held(&self) -> usize {
        self.due.len() + self.windows.iter().map(|w| w.held.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::Occasion;
    use crate::notify::message::tests::container_notice;
    use crate::signals::{Severity, Signal, SignalKind, Subject};
    use vigil_shared::time::Timestamp;

    const W: Duration = Duration::from_secs(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn twenty_notices_of_one_project_are_the_first_at_once_and_one_follow_up() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 0, Occasion::Alert), t0);
        assert_eq!(
            g.next_deadline(),
            Some(t0),
            "the first notice is due at once"
        );
        let first = g.due(t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].notices.len(), 1);
        assert!(first[0].title.starts_with("ALERT"), "{}", first[0].title);
        for i in 1..20 {
            g.push(
                container_notice("shop", i, Occasion::Alert),
                t0 + ms(50 * i as u64),
            );
            assert!(
                g.due(t0 + ms(50 * i as u64)).is_empty(),
                "later notices wait for the window"
            );
        }
        assert_eq!(g.next_deadline(), Some(t0 + W));
        assert!(g.due(t0 + W - ms(1)).is_empty());
        let out = g.due(t0 + W);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].title, "shop: 19 problems");
        for i in 1..20 {
            assert!(
                out[0].text.contains(&format!("shop-svc{i}-1")),
                "{}",
                out[0].text
            );
        }
        // The follow-up opened another window; it closes empty and ends.
        assert_eq!(g.next_deadline(), Some(t0 + W + W));
        assert!(g.due(t0 + W + W).is_empty());
        assert_eq!(g.next_deadline(), None);
        assert_eq!(g.held(), 0);
        g.push(
            container_notice("shop", 30, Occasion::Alert),
            t0 + W + W + ms(1),
        );
        assert_eq!(g.due(t0 + W + W + ms(1)).len(), 1, "quiet again: at once");
    }

    #[test]
    fn a_storm_longer_than_the_window_gives_one_follow_up_per_window() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        let mut messages = 0;
        // A notice every 100 ms for 5 windows.
        for i in 0..100u64 {
            let now = t0 + ms(100 * i);
            g.push(container_notice("shop", i as usize, Occasion::Alert), now);
            messages += g.due(now).len();
        }
        messages += g.flush().len();
        assert!((5..=7).contains(&messages), "{messages} messages");
    }

    #[test]
    fn two_projects_each_lead_then_follow_up() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        g.push(container_notice("blog", 1, Occasion::Alert), t0 + ms(100));
        let lead = g.due(t0 + ms(100));
        assert_eq!(lead.len(), 2, "each project's first notice at once");
        g.push(container_notice("shop", 2, Occasion::Alert), t0 + ms(200));
        g.push(container_notice("blog", 2, Occasion::Alert), t0 + ms(300));
        g.push(container_notice("shop", 3, Occasion::Alert), t0 + ms(400));
        let first = g.due(t0 + W);
        assert_eq!(first.len(), 1, "only shop's window has closed");
        assert_eq!(first[0].project.as_deref(), Some("shop"));
        assert_eq!(first[0].notices.len(), 2);
        let second = g.due(t0 + W + ms(100));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].project.as_deref(), Some("blog"));
        assert_eq!(second[0].notices.len(), 1);
    }

    #[test]
    fn project_less_notices_are_due_at_once() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        assert_eq!(g.due(t0).len(), 1);
        g.push(container_notice("shop", 2, Occasion::Alert), t0 + ms(5));
        let disk = Signal::new(
            SignalKind::DiskHigh,
            true,
            Severity::High,
            Subject::named("/"),
            "91% used",
            Timestamp(0),
        );
        g.push(Notice::new(Occasion::Alert, disk, "host-a"), t0 + ms(10));
        assert_eq!(g.next_deadline(), Some(t0 + ms(10)));
        let out = g.due(t0 + ms(10));
        assert_eq!(out.len(), 1);
        assert!(out[0].text.contains("subject: /"), "{}", out[0].text);
        assert_eq!(
            g.next_deadline(),
            Some(t0 + W),
            "the shop follow-up still waits"
        );
    }

    #[test]
    fn zero_window_sends_at_once() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::ZERO);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        assert_eq!(g.due(t0).len(), 1);
        g.push(container_notice("shop", 2, Occasion::Alert), t0);
        assert_eq!(g.due(t0).len(), 1);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn flush_returns_everything_held() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        g.push(container_notice("shop", 2, Occasion::Alert), t0);
        g.push(container_notice("blog", 1, Occasion::Alert), t0);
        assert_eq!(g.held(), 3);
        assert_eq!(g.flush().len(), 3, "two first notices and shop's follow-up");
        assert_eq!(g.next_deadline(), None);
    }
}
