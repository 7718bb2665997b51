//! What people read: one [`Notice`] per decision to tell them something, and the [`Message`] that
//! carries one notice or a project's group of them to the sinks.
//!
//! Text is plain (no markup), so no sink has an escaping bug to have. Every message stays well
//! below Telegram's 4096-character limit: huge groups list the first lines and "... and M more".

use super::truncate_chars;
use crate::signals::{Severity, Signal};
use std::time::Duration;
use vigil_shared::time::human_duration;

/// Longest message text we produce (Telegram's limit is 4096 characters).
pub const MAX_MESSAGE_CHARS: usize = 3500;
/// A group message lists at most this many notices, then "... and M more".
pub const MAX_GROUP_LINES: usize = 25;
/// Longest detail in a single-notice message.
const MAX_DETAIL_CHARS: usize = 1500;
/// Longest detail on one line of a group message.
const MAX_LINE_DETAIL_CHARS: usize = 160;
/// Longest line of a group message (long names included).
const MAX_LINE_CHARS: usize = 300;

/// Why a notice is sent; the engine maps decide's `Action` onto this (`None` sends nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    Alert,
    /// Still firing after the repeat interval.
    Realert,
    /// No longer active; `lasted` is how long it fired.
    Recovery {
        lasted: Duration,
    },
}

impl Occasion {
    pub fn as_str(self) -> &'static str {
        match self {
            Occasion::Alert => "alert",
            Occasion::Realert => "realert",
            Occasion::Recovery { .. } => "recovery",
        }
    }

    pub fn is_recovery(self) -> bool {
        matches!(self, Occasion::Recovery { .. })
    }

    /// What to tell people for a decision; None for `Action::None`.
    pub fn from_action(action: &crate::decide::Action) -> Option<Occasion> {
        use crate::decide::Action;
        match action {
            Action::None => None,
            Action::Alert => Some(Occasion::Alert),
            Action::Realert => Some(Occasion::Realert),
            Action::Recovery { lasted } => Some(Occasion::Recovery { lasted: *lasted }),
        }
    }
}

/// One thing to tell people about one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub occasion: Occasion,
    pub signal: Signal,
    pub host: String,
}

impl Notice {
    pub fn new(occasion: Occasion, signal: Signal, host: impl Into<String>) -> Notice {
        Notice {
            occasion,
            signal,
            host: host.into(),
        }
    }

    pub fn project(&self) -> Option<&str> {
        self.signal.subject.project.as_deref()
    }

    /// What the notice is about, briefly: `shop/web (shop-web-1)`, `web (shop-web-1)` inside a
    /// project group, or the subject name (`/`, `postgres`).
    fn subject_label(&self, in_project_group: bool) -> String {
        let s = &self.signal.subject;
        match (&s.container, &s.service) {
            (Some(c), Some(svc)) if in_project_group => format!("{svc} ({c})"),
            (Some(c), Some(svc)) => match &s.project {
                Some(p) => format!("{p}/{svc} ({c})"),
                None => format!("{svc} ({c})"),
            },
            (Some(c), None) => c.clone(),
            (None, _) => s.name.clone().unwrap_or_else(|| "-".to_string()),
        }
    }

    fn tag(&self) -> String {
        match self.occasion {
            Occasion::Alert => format!("[{}]", self.signal.severity),
            Occasion::Realert => format!("[{}, still firing]", self.signal.severity),
            Occasion::Recovery { .. } => "[recovered]".to_string(),
        }
    }

    /// One line of a group message.
    fn line(&self) -> String {
        truncate_chars(&self.full_line(), MAX_LINE_CHARS)
    }

    fn full_line(&self) -> String {
        let head = format!(
            "- {} {} {}",
            self.tag(),
            self.signal.kind,
            self.subject_label(true)
        );
        match self.occasion {
            Occasion::Recovery { lasted } => format!("{head} after {}", human_duration(lasted)),
            Occasion::Alert | Occasion::Realert if self.signal.detail.is_empty() => head,
            Occasion::Alert | Occasion::Realert => format!(
                "{head}: {}",
                truncate_chars(&one_line(&self.signal.detail), MAX_LINE_DETAIL_CHARS)
            ),
        }
    }
}

/// What a sink sends: a title, a plain-text body, and the notices it was made from (the webhook
/// sink sends those structured; a plain message has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub text: String,
    /// The highest severity among the alerting notices; `Info` for recoveries and plain messages.
    pub severity: Severity,
    pub project: Option<String>,
    /// The host the notices came from, when known.
    pub host: Option<String>,
    pub notices: Vec<Notice>,
}

impl Message {
    /// A free-form message (test-notify, executor outcomes).
    pub fn plain(title: impl Into<String>, text: impl Into<String>) -> Message {
        Message {
            title: title.into(),
            text: truncate_chars(&text.into(), MAX_MESSAGE_CHARS),
            severity: Severity::Info,
            project: None,
            host: None,
            notices: Vec::new(),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Message {
        self.severity = severity;
        self
    }

    pub fn with_host(mut self, host: impl Into<String>) -> Message {
        self.host = Some(host.into());
        self
    }

    /// The message for one notice.
    pub fn single(notice: Notice) -> Message {
        let sig = &notice.signal;
        let s = &sig.subject;
        let title = match notice.occasion {
            Occasion::Alert => {
                format!(
                    "ALERT [{}] {}: {}",
                    sig.severity,
                    sig.kind,
                    notice.subject_label(false)
                )
            }
            Occasion::Realert => format!(
                "STILL FIRING [{}] {}: {}",
                sig.severity,
                sig.kind,
                notice.subject_label(false)
            ),
            Occasion::Recovery { .. } => {
                format!("RECOVERED {}: {}", sig.kind, notice.subject_label(false))
            }
        };
        let mut lines = vec![format!("host: {}", notice.host)];
        if let Some(p) = &s.project {
            lines.push(format!("project: {p}"));
        }
        if let Some(svc) = &s.service {
            lines.push(format!("service: {svc}"));
        }
        if let Some(c) = &s.container {
            lines.push(format!("container: {c}"));
        }
        if let Some(n) = &s.name {
            lines.push(format!("subject: {n}"));
        }
        lines.push(format!("signal: {}", sig.kind));
        lines.push(format!("severity: {}", sig.severity));
        if !sig.detail.is_empty() {
            lines.push(format!(
                "detail: {}",
                truncate_chars(&sig.detail, MAX_DETAIL_CHARS)
            ));
        }
        if let Occasion::Recovery { lasted } = notice.occasion {
            lines.push(format!("recovered after {}", human_duration(lasted)));
        }
        Message {
            title,
            text: truncate_chars(&lines.join("\n"), MAX_MESSAGE_CHARS),
            severity: message_severity(std::slice::from_ref(&notice)),
            project: s.project.clone(),
            host: Some(notice.host.clone()),
            notices: vec![notice],
        }
    }

    /// The message for a group of notices (one project, one window). A group of one is
    /// [`Message::single`]. Returns None for an empty group.
    pub fn group(project: Option<String>, notices: Vec<Notice>) -> Option<Message> {
        if notices.len() <= 1 {
            return notices.into_iter().next().map(Message::single);
        }
        let host = notices[0].host.clone();
        let problems = notices.iter().filter(|n| !n.occasion.is_recovery()).count();
        let recovered = notices.len() - problems;
        let label = project.clone().unwrap_or_else(|| host.clone());
        let counts = match (problems, recovered) {
            (p, 0) => plural(p, "problem", "problems"),
            (0, r) => format!("{r} recovered"),
            (p, r) => format!("{}, {r} recovered", plural(p, "problem", "problems")),
        };
        let title = format!("{label}: {counts}");

        let mut text = format!("host: {host}");
        if let Some(p) = &project {
            text.push_str(&format!("\nproject: {p}"));
        }
        // Reserve room for the "... and M more" line so the cut never overflows.
        let budget = MAX_MESSAGE_CHARS - 40;
        let mut listed = 0;
        for n in &notices {
            let line = n.line();
            if listed >= MAX_GROUP_LINES || text.chars().count() + 1 + line.chars().count() > budget
            {
                break;
            }
            text.push('\n');
            text.push_str(&line);
            listed += 1;
        }
        if listed < notices.len() {
            text.push_str(&format!("\n... and {} more", notices.len() - listed));
        }
        Some(Message {
            title,
            text,
            severity: message_severity(&notices),
            project,
            host: Some(host),
            notices,
        })
    }

    /// True when nothing in the message is an alert (recoveries and plain messages).
    pub fn is_quiet(&self) -> bool {
        self.notices.iter().all(|n| n.occasion.is_recovery())
            && (!self.notices.is_empty() || self.severity <= Severity::Info)
    }

    /// Title and body as one plain text, for sinks that take a single string.
    pub fn render(&self) -> String {
        truncate_chars(
            &format!("{}\n\n{}", self.title, self.text),
            MAX_MESSAGE_CHARS + 200,
        )
    }
}

fn message_severity(notices: &[Notice]) -> Severity {
    notices
        .iter()
        .filter(|n| !n.occasion.is_recovery())
        .map(|n| n.signal.severity)
        .max()
        .unwrap_or(Severity::Info)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signals::{SignalKind, Subject};
    use vigil_shared::docker::ContainerRef;
    use vigil_shared::time::Timestamp;

    pub(crate) fn container_notice(project: &str, n: usize, occasion: Occasion) -> Notice {
        let c = ContainerRef {
            id: format!("id{n}"),
            name: format!("{project}-svc{n}-1"),
            project: Some(project.to_string()),
            service: Some(format!("svc{n}")),
        };
        let sig = Signal::new(
            SignalKind::ContainerUnhealthy,
            !occasion.is_recovery(),
            Severity::High,
            Subject::container(&c),
            format!("health check failed 3 times (probe {n})"),
            Timestamp(1_000),
        );
        Notice::new(occasion, sig, "host-a")
    }

    #[test]
    fn single_alert_names_everything() {
        let m = Message::single(container_notice("shop", 1, Occasion::Alert));
        let all = m.render();
        for want in [
            "host: host-a",
            "project: shop",
            "service: svc1",
            "container: shop-svc1-1",
            "signal: container_unhealthy",
            "severity: high",
            "detail: health check failed 3 times (probe 1)",
        ] {
            assert!(all.contains(want), "missing {want:?} in {all}");
        }
        assert!(
            m.title
                .starts_with("ALERT [high] container_unhealthy: shop/svc1"),
            "{}",
            m.title
        );
        assert_eq!(m.severity, Severity::High);
        assert_eq!(m.project.as_deref(), Some("shop"));
        assert!(!m.is_quiet());
    }

    #[test]
    fn recovery_says_how_long_it_lasted() {
        let m = Message::single(container_notice(
            "shop",
            1,
            Occasion::Recovery {
                lasted: Duration::from_secs(192),
            },
        ));
        assert!(m.text.contains("recovered after 3m 12s"), "{}", m.text);
        assert!(m.title.starts_with("RECOVERED"), "{}", m.title);
        assert_eq!(m.severity, Severity::Info);
        assert!(m.is_quiet());
    }

    #[test]
    fn actions_map_to_occasions() {
        use crate::decide::Action;
        assert_eq!(Occasion::from_action(&Action::None), None);
        assert_eq!(Occasion::from_action(&Action::Alert), Some(Occasion::Alert));
        assert_eq!(
            Occasion::from_action(&Action::Realert),
            Some(Occasion::Realert)
        );
        let lasted = Duration::from_secs(9);
        assert_eq!(
            Occasion::from_action(&Action::Recovery { lasted }),
            Some(Occasion::Recovery { lasted })
        );
    }

    #[test]
    fn realert_is_marked_still_firing() {
        let m = Message::single(container_notice("shop", 1, Occasion::Realert));
        assert!(m.title.starts_with("STILL FIRING"), "{}", m.title);
    }

    #[test]
    fn host_signal_names_its_subject() {
        let sig = Signal::new(
            SignalKind::DiskHigh,
            true,
            Severity::Critical,
            Subject::named("/var"),
            "97% used",
            Timestamp(0),
        );
        let m = Message::single(Notice::new(Occasion::Alert, sig, "h"));
        assert!(m.text.contains("subject: /var"), "{}", m.text);
        assert!(m.title.contains("disk_high: /var"), "{}", m.title);
        assert_eq!(m.project, None);
    }

    #[test]
    fn group_lists_one_line_per_container() {
        let notices: Vec<Notice> = (0..20)
            .map(|i| container_notice("shop", i, Occasion::Alert))
            .collect();
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        assert_eq!(m.title, "shop: 20 problems");
        for i in 0..20 {
            assert!(
                m.text.contains(&format!("svc{i} (shop-svc{i}-1)")),
                "missing {i}: {}",
                m.text
            );
        }
        assert!(!m.text.contains("more"), "{}", m.text);
        assert_eq!(m.notices.len(), 20);
    }

    #[test]
    fn mixed_group_counts_both() {
        let notices = vec![
            container_notice("shop", 1, Occasion::Alert),
            container_notice(
                "shop",
                2,
                Occasion::Recovery {
                    lasted: Duration::from_secs(5),
                },
            ),
        ];
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        assert_eq!(m.title, "shop: 1 problem, 1 recovered");
        assert!(
            m.text
                .contains("[recovered] container_unhealthy svc2 (shop-svc2-1) after 5s"),
            "{}",
            m.text
        );
    }

    #[test]
    fn huge_group_is_cut_below_telegram_limit() {
        let notices: Vec<Notice> = (0..1000)
            .map(|i| container_notice("shop", i, Occasion::Alert))
            .collect();
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        let rendered = m.render();
        assert!(
            rendered.chars().count() < 4096,
            "{}",
            rendered.chars().count()
        );
        assert!(
            m.text
                .contains(&format!("... and {} more", 1000 - MAX_GROUP_LINES)),
            "{}",
            m.text
        );
        assert_eq!(m.notices.len(), 1000);

        // Long details: the character budget cuts before the line limit.
        let notices: Vec<Notice> = (0..1000)
            .map(|i| {
                let mut n = container_notice("shop", i, Occasion::Alert);
                n.signal.detail = "x".repeat(5000);
                n
            })
            .collect();
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        assert!(
            m.render().chars().count() < 4096,
            "{}",
            m.render().chars().count()
        );
        let listed = m.text.lines().filter(|l| l.starts_with("- ")).count();
        assert!(listed >= 5, "still lists several: {listed}");
        assert!(
            m.text.ends_with(&format!("... and {} more", 1000 - listed)),
            "{}",
            m.text
        );
    }

    #[test]
    fn long_lines_are_cut_by_characters_too() {
        let notices: Vec<Notice> = (0..200)
            .map(|i| {
                let mut n = container_notice("shop", i, Occasion::Alert);
                n.signal.subject.container = Some("c".repeat(400));
                n
            })
            .collect();
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        assert!(m.render().chars().count() < 4096);
        assert!(m.text.contains("more"));
    }

    #[test]
    fn single_with_huge_detail_stays_below_limit() {
        let mut n = container_notice("shop", 1, Occasion::Alert);
        n.signal.detail = "é".repeat(10_000);
        assert!(Message::single(n).render().chars().count() < 4096);
        let p = Message::plain("t", "y".repeat(10_000));
        assert!(p.render().chars().count() < 4096);
    }

    #[test]
    fn empty_group_is_no_message() {
        assert!(Message::group(None, Vec::new()).is_none());
    }
}
