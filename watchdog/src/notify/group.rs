//! Per-project grouping, pure: notices in, `now` in, messages out.
//!
//! The first notice of a compose project opens a group that closes `window` later; every notice
//! of that project arriving before then joins it, and the whole group goes out as one message.
//! Notices without a project (host, dependency and engine signals) are never held back: they are
//! due at once. The task driving a [`Grouper`] sleeps until [`Grouper::next_deadline`].

use super::message::{Message, Notice};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct OpenGroup {
    project: Option<String>,
    deadline: Instant,
    notices: Vec<Notice>,
}

/// Collects notices into per-project groups; see the module docs.
#[derive(Debug)]
pub struct Grouper {
    window: Duration,
    /// Ordered by deadline (groups are opened in time order and all share one window).
    open: Vec<OpenGroup>,
}

impl Grouper {
    pub fn new(window: Duration) -> Grouper {
        Grouper {
            window,
            open: Vec::new(),
        }
    }

    /// Adds a notice that arrived at `now`.
    pub fn push(&mut self, notice: Notice, now: Instant) {
        let project = notice.project().map(str::to_string);
        if project.is_some()
            && let Some(g) = self.open.iter_mut().find(|g| g.project == project)
        {
            g.notices.push(notice);
            return;
        }
        let deadline = if project.is_some() {
            now + self.window
        } else {
            now
        };
        // Keep deadline order: a project-less notice due now goes before groups still waiting.
        let at = self.open.partition_point(|g| g.deadline <= deadline);
        self.open.insert(
            at,
            OpenGroup {
                project,
                deadline,
                notices: vec![notice],
            },
        );
    }

    /// The messages whose window has closed by `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<Message> {
        let n = self.open.partition_point(|g| g.deadline <= now);
        self.open
            .drain(..n)
            .filter_map(|g| Message::group(g.project, g.notices))
            .collect()
    }

    /// Every message still held, regardless of windows (for shutdown).
    pub fn flush(&mut self) -> Vec<Message> {
        self.open
            .drain(..)
            .filter_map(|g| Message::group(g.project, g.notices))
            .collect()
    }

    /// When the next group closes, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.first().map(|g| g.deadline)
    }

    /// How many notices are held.
    pub fn held(&self) -> usize {
        self.open.iter().map(|g| g.notices.len()).sum()
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
    fn twenty_notices_of_one_project_in_the_window_are_one_message() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        for i in 0..20 {
            g.push(
                container_notice("shop", i, Occasion::Alert),
                t0 + ms(50 * i as u64),
            );
            assert!(
                g.due(t0 + ms(50 * i as u64)).is_empty(),
                "nothing before the window closes"
            );
        }
        assert_eq!(g.next_deadline(), Some(t0 + W));
        assert!(g.due(t0 + W - ms(1)).is_empty());
        let out = g.due(t0 + W);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].title, "shop: 20 problems");
        for i in 0..20 {
            assert!(
                out[0].text.contains(&format!("shop-svc{i}-1")),
                "{}",
                out[0].text
            );
        }
        assert_eq!(g.next_deadline(), None);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn two_projects_are_two_messages() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        g.push(container_notice("blog", 1, Occasion::Alert), t0 + ms(100));
        g.push(container_notice("shop", 2, Occasion::Alert), t0 + ms(200));
        g.push(container_notice("blog", 2, Occasion::Alert), t0 + ms(300));
        let first = g.due(t0 + W);
        assert_eq!(first.len(), 1, "only shop's window has closed");
        assert_eq!(first[0].project.as_deref(), Some("shop"));
        assert_eq!(first[0].notices.len(), 2);
        let second = g.due(t0 + W + ms(100));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].project.as_deref(), Some("blog"));
        assert_eq!(second[0].notices.len(), 2);
    }

    #[test]
    fn a_notice_after_the_window_is_a_separate_message() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        g.push(container_notice("shop", 2, Occasion::Alert), t0 + ms(1900));
        let a = g.due(t0 + W);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].notices.len(), 2);
        g.push(container_notice("shop", 3, Occasion::Alert), t0 + W + ms(1));
        assert!(g.due(t0 + W + ms(1)).is_empty());
        let b = g.due(t0 + W + W + ms(1));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].notices.len(), 1);
        assert!(
            b[0].title.starts_with("ALERT"),
            "a group of one reads like a single alert"
        );
    }

    #[test]
    fn project_less_notices_are_due_at_once() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
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
            "the shop group still waits"
        );
    }

    #[test]
    fn zero_window_sends_at_once() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::ZERO);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        assert_eq!(g.due(t0).len(), 1);
    }

    #[test]
    fn flush_returns_everything_held() {
        let t0 = Instant::now();
        let mut g = Grouper::new(W);
        g.push(container_notice("shop", 1, Occasion::Alert), t0);
        g.push(container_notice("blog", 1, Occasion::Alert), t0);
        assert_eq!(g.flush().len(), 2);
        assert_eq!(g.next_deadline(), None);
    }
}
