//! What people read: one [`Notice`] per decision to tell them something, and the [`Message`] that
//! carries one notice or a project's group of them to the sinks.
//!
//! A message body is a list of [`Block`]s (see [`super::format`]); each sink renders it (plain
//! text, Telegram HTML, Slack mrkdwn) with its own escaping. Every message stays well below
//! Telegram's 4096-character limit: huge groups list the first lines and "... and M more".
//!
//! A single-notice alert says what a person on call needs to decide without a terminal: the
//! cause (signal detail, exit code meaning, OOM with the memory limit, the last healthcheck
//! output), restart count, image, how long it has been firing, and what Vigil did or will do.

use super::facts::ContainerFacts;
use super::format::{self, Block};
use super::text::truncate_chars;
use crate::signals::{Severity, Signal, SignalKind};
use std::time::Duration;
use vigil_docker::labels;
use vigil_shared::time::{Timestamp, human_duration};

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
/// The label people add to let Vigil act ([`labels::REMEDIATE`]), said in alert-only messages.
pub fn opt_in_hint() -> String {
    format!(
        "alert only: this container is not opted in; add the label {}=true to let Vigil restart it",
        labels::REMEDIATE
    )
}

/// Why a notice is sent; the engine maps decide's `Action` onto the first three, the notifier's
/// damping and silences add the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    Alert,
    /// Still firing after the repeat interval.
    Realert,
    /// No longer active; `lasted` is how long it fired.
    Recovery {
        lasted: Duration,
    },
    /// Changed state `transitions` times within `window`: one message, then quiet until it has
    /// been stable for `hold`.
    Flapping {
        transitions: u32,
        window: Duration,
        hold: Duration,
    },
    /// Stable again after flapping; `firing` says in which state it settled.
    Settled {
        transitions: u32,
        firing: bool,
    },
    /// A silence ended while the signal still fires.
    SilenceEnded,
}

impl Occasion {
    pub fn as_str(self) -> &'static str {
        match self {
            Occasion::Alert => "alert",
            Occasion::Realert => "realert",
            Occasion::Recovery { .. } => "recovery",
            Occasion::Flapping { .. } => "flapping",
            Occasion::Settled { .. } => "settled",
            Occasion::SilenceEnded => "silence_ended",
        }
    }

    /// True when the notice says things are fine again.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            Occasion::Recovery { .. } | Occasion::Settled { firing: false, .. }
        )
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
    /// When the signal started firing (for "firing for").
    pub since: Option<Timestamp>,
    /// The container's facts at alert time, when it is a container and inspect answered.
    pub facts: Option<ContainerFacts>,
    /// What Vigil did or will do, in words ("restart requested: ...", "alert only: ...").
    pub remedy: Option<String>,
}

impl Notice {
    pub fn new(occasion: Occasion, signal: Signal, host: impl Into<String>) -> Notice {
        Notice {
            occasion,
            signal,
            host: host.into(),
            since: None,
            facts: None,
            remedy: None,
        }
    }

    pub fn with_since(mut self, since: Option<Timestamp>) -> Notice {
        self.since = since;
        self
    }

    pub fn with_remedy(mut self, remedy: Option<String>) -> Notice {
        self.remedy = remedy;
        self
    }

    pub fn project(&self) -> Option<&str> {
        self.signal.subject.project.as_deref()
    }

    /// What the notice is about, briefly: `shop/web (shop-web-1)`, `web (shop-web-1)` inside a
    /// project group, or the subject name (`/`, `postgres`).
    pub fn subject_label(&self, in_project_group: bool) -> String {
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
            Occasion::Flapping { .. } => format!("[{}, flapping]", self.signal.severity),
            Occasion::Settled { firing: true, .. } => "[stopped flapping, firing]".to_string(),
            Occasion::Settled { firing: false, .. } => "[stopped flapping, ok]".to_string(),
            Occasion::SilenceEnded => {
                format!("[{}, silence ended, still firing]", self.signal.severity)
            }
        }
    }

    /// One line of a group message.
    fn line(&self) -> String {
        truncate_chars(&self.full_line(), MAX_LINE_CHARS)
    }

    fn full_line(&self) -> String {
        let head = format!(
            "{} {} {}",
            self.tag(),
            self.signal.kind,
            self.subject_label(true)
        );
        match self.occasion {
            Occasion::Recovery { lasted } => format!("{head} after {}", human_duration(lasted)),
            _ if self.signal.detail.is_empty() || self.occasion.is_recovery() => head,
            _ => format!(
                "{head}: {}",
                truncate_chars(&one_line(&self.signal.detail), MAX_LINE_DETAIL_CHARS)
            ),
        }
    }

    /// The title of a message about this notice alone.
    fn title(&self) -> String {
        let sig = &self.signal;
        let who = self.subject_label(false);
        match self.occasion {
            Occasion::Alert => format!("ALERT [{}] {}: {who}", sig.severity, sig.kind),
            Occasion::Realert => format!("STILL FIRING [{}] {}: {who}", sig.severity, sig.kind),
            Occasion::Recovery { .. } => format!("RECOVERED {}: {who}", sig.kind),
            Occasion::Flapping { .. } => {
                format!("FLAPPING [{}] {}: {who}", sig.severity, sig.kind)
            }
            Occasion::Settled { firing: true, .. } => {
                format!("STOPPED FLAPPING, STILL FIRING {}: {who}", sig.kind)
            }
            Occasion::Settled { firing: false, .. } => {
                format!("STOPPED FLAPPING, RECOVERED {}: {who}", sig.kind)
            }
            Occasion::SilenceEnded => format!(
                "STILL FIRING after silence [{}] {}: {who}",
                sig.severity, sig.kind
            ),
        }
    }

    /// The body of a message about this notice alone.
    fn blocks(&self) -> Vec<Block> {
        let sig = &self.signal;
        let s = &sig.subject;
        let mut b = vec![Block::field("host", &self.host)];
        if let Some(p) = &s.project {
            b.push(Block::field("project", p));
        }
        if let Some(svc) = &s.service {
            b.push(Block::field("service", svc));
        }
        if let Some(c) = &s.container {
            b.push(Block::field("container", c));
        }
        if let Some(n) = &s.name {
            b.push(Block::field("subject", n));
        }
        b.push(Block::field("signal", sig.kind.as_str()));
        b.push(Block::field("severity", sig.severity.as_str()));
        if !sig.detail.is_empty() {
            b.push(Block::field(
                "detail",
                truncate_chars(&sig.detail, MAX_DETAIL_CHARS),
            ));
        }
        let firing = !self.occasion.is_recovery();
        if firing && let Some(f) = &self.facts {
            self.fact_blocks(f, &mut b);
        }
        match self.occasion {
            Occasion::Recovery { lasted } => {
                b.push(Block::Line(format!(
                    "recovered after {}",
                    human_duration(lasted)
                )));
            }
            Occasion::Flapping {
                transitions,
                window,
                hold,
            } => b.push(Block::Line(format!(
                "changed state {transitions} times within {}; further changes are held until \
                 it has been stable for {}, then one summary follows",
                human_duration(window),
                human_duration(hold)
            ))),
            Occasion::Settled {
                transitions,
                firing,
            } => b.push(Block::Line(format!(
                "stable again after {transitions} state changes; now {}",
                if firing { "still firing" } else { "ok" }
            ))),
            Occasion::SilenceEnded => {
                b.push(Block::Line("the silence ended and this still fires".into()))
            }
            Occasion::Alert | Occasion::Realert => {}
        }
        if firing && let Some(since) = self.since {
            let for_how_long = sig.observed_at.since(since);
            if for_how_long >= Duration::from_secs(1) {
                b.push(Block::field("firing for", human_duration(for_how_long)));
            }
        }
        match (&self.remedy, &self.facts) {
            (Some(r), _) if firing => b.push(Block::field("vigil", r)),
            (None, Some(f)) if firing && !f.opted_in && sig.kind.is_container() => {
                b.push(Block::field("vigil", opt_in_hint()))
            }
            _ => {}
        }
        b
    }

    fn fact_blocks(&self, f: &ContainerFacts, b: &mut Vec<Block>) {
        let kind = self.signal.kind;
        if let Some(exit) = f.exit_text()
            && matches!(
                kind,
                SignalKind::ContainerExited
                    | SignalKind::ContainerOomKilled
                    | SignalKind::ContainerRestartLoop
            )
        {
            b.push(Block::field("exit", exit));
        }
        if f.oom_killed
            || matches!(
                kind,
                SignalKind::ContainerOomKilled | SignalKind::ContainerMemoryHigh
            )
        {
            b.push(Block::field("memory limit", f.memory_limit_text()));
        }
        b.push(Block::field("restarts", f.restart_count.to_string()));
        if !f.image.is_empty() {
            b.push(Block::field("image", &f.image));
        }
        if let Some(p) = &f.last_probe
            && (kind == SignalKind::ContainerUnhealthy || p.exit_code != 0)
        {
            let text = if p.output.is_empty() {
                "(no output)".to_string()
            } else {
                p.output.clone()
            };
            b.push(Block::Code {
                label: format!("last healthcheck output (exit {})", p.exit_code),
                text,
            });
        }
    }
}

/// What a sink sends: a title, a body (rendered per sink), the same body as plain text, and the
/// notices it was made from (the webhook sink sends those structured; a plain message has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub blocks: Vec<Block>,
    /// The highest severity among the alerting notices; `Info` for recoveries and plain messages.
    pub severity: Severity,
    pub project: Option<String>,
    /// The host the notices came from, when known.
    pub host: Option<String>,
    pub notices: Vec<Notice>,
    /// Signal keys this message continues (replies in a thread where the sink has threads), for
    /// messages without notices, such as executor outcomes.
    pub thread: Vec<String>,
}

impl Message {
    /// A free-form message (test-notify, executor outcomes, command answers): one line per line.
    pub fn plain(title: impl Into<String>, text: impl Into<String>) -> Message {
        let text = truncate_chars(&text.into(), MAX_MESSAGE_CHARS);
        let blocks = text.lines().map(|l| Block::Line(l.to_string())).collect();
        Message::from_blocks(title, blocks)
    }

    /// A message from ready blocks (kept below the size limit).
    pub fn from_blocks(title: impl Into<String>, blocks: Vec<Block>) -> Message {
        let text = truncate_chars(&format::plain(&blocks), MAX_MESSAGE_CHARS);
        Message {
            title: title.into(),
            text,
            blocks,
            severity: Severity::Info,
            project: None,
            host: None,
            notices: Vec::new(),
            thread: Vec::new(),
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
        let blocks = fit(notice.blocks());
        Message {
            title: notice.title(),
            text: truncate_chars(&format::plain(&blocks), MAX_MESSAGE_CHARS),
            blocks,
            severity: message_severity(std::slice::from_ref(&notice)),
            project: notice.signal.subject.project.clone(),
            host: Some(notice.host.clone()),
            notices: vec![notice],
            thread: Vec::new(),
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

        let mut blocks = vec![Block::field("host", &host)];
        if let Some(p) = &project {
            blocks.push(Block::field("project", p));
        }
        // Reserve room for the "... and M more" line so the cut never overflows.
        let budget = MAX_MESSAGE_CHARS - 40;
        let mut used = format::plain(&blocks).chars().count();
        let mut listed = 0;
        for n in &notices {
            let line = n.line();
            let cost = 3 + line.chars().count();
            if listed >= MAX_GROUP_LINES || used + cost > budget {
                break;
            }
            used += cost;
            blocks.push(Block::Item(line));
            listed += 1;
        }
        if listed < notices.len() {
            blocks.push(Block::Line(format!(
                "... and {} more",
                notices.len() - listed
            )));
        }
        let text = format::plain(&blocks);
        Some(Message {
            title,
            text,
            blocks,
            severity: message_severity(&notices),
            project,
            host: Some(host),
            notices,
            thread: Vec::new(),
        })
    }

    /// True when nothing in the message is an alert (recoveries and plain messages).
    pub fn is_quiet(&self) -> bool {
        self.notices.iter().all(|n| n.occasion.is_recovery())
            && (!self.notices.is_empty() || self.severity <= Severity::Info)
    }

    /// The signal keys this message belongs to (its notices', then its explicit thread keys).
    pub fn thread_keys(&self) -> Vec<&str> {
        self.notices
            .iter()
            .map(|n| n.signal.key.as_str())
            .chain(self.thread.iter().map(String::as_str))
            .collect()
    }

    /// Title and body as one plain text, for sinks that take a single string.
    pub fn render(&self) -> String {
        truncate_chars(
            &format!("{}\n\n{}", self.title, self.text),
            MAX_MESSAGE_CHARS + 200,
        )
    }

    /// Title and body as Telegram HTML, below Telegram's limit even when escaping made it grow:
    /// trailing blocks give way to a "cut" line.
    pub fn render_html(&self) -> String {
        let title = truncate_chars(&self.title, 300);
        let mut blocks = self.blocks.clone();
        let cut = Block::Line("... (cut)".into());
        loop {
            let html = format::html::render(&title, &blocks);
            if html.chars().count() <= MAX_MESSAGE_CHARS + 500 || blocks.len() <= 1 {
                return html;
            }
            if blocks.last() == Some(&cut) {
                blocks.pop();
            }
            blocks.pop();
            blocks.push(cut.clone());
        }
    }
}

/// Drops the largest blocks' excess so the plain rendering stays below the limit. Escaping can
/// at most quintuple a character (`&` to `&amp;`), so values are cut well below the limit.
fn fit(mut blocks: Vec<Block>) -> Vec<Block> {
    for b in &mut blocks {
        match b {
            Block::Field { value, .. } => *value = truncate_chars(value, MAX_DETAIL_CHARS),
            Block::Code { text, .. } => *text = truncate_chars(text, 700),
            Block::Item(t) | Block::Line(t) => *t = truncate_chars(t, MAX_DETAIL_CHARS),
        }
    }
    while format::html::render("", &blocks).chars().count() > MAX_MESSAGE_CHARS {
        let Some((i, _)) = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (i, format::plain(std::slice::from_ref(b)).chars().count()))
            .max_by_key(|(_, n)| *n)
        else {
            break;
        };
        match &mut blocks[i] {
            Block::Field { value: t, .. } | Block::Code { text: t, .. } => {
                let keep = t.chars().count() / 2;
                *t = truncate_chars(t, keep.max(10));
                if keep <= 10 {
                    break;
                }
            }
            Block::Item(t) | Block::Line(t) => {
                let keep = t.chars().count() / 2;
                *t = truncate_chars(t, keep.max(10));
                if keep <= 10 {
                    break;
                }
            }
        }
    }
    blocks
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
    use vigil_docker::ContainerRef;
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
                .contains("- [recovered] container_unhealthy svc2 (shop-svc2-1) after 5s"),
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

    fn facts() -> ContainerFacts {
        ContainerFacts {
            image: "shop/api:1.2".into(),
            restart_count: 4,
            memory_limit: 64 << 20,
            exit_code: Some(137),
            oom_killed: true,
            last_probe: Some(vigil_docker::HealthProbe {
                exit_code: 1,
                output: "db connection refused on 5432".into(),
            }),
            opted_in: false,
        }
    }

    #[test]
    fn alerts_carry_the_cause() {
        let mut n = container_notice("shop", 1, Occasion::Alert);
        n.facts = Some(facts());
        n.since = Some(Timestamp(1_000 - 125_000));
        n.remedy = Some(opt_in_hint());
        let m = Message::single(n.clone());
        for want in [
            "restarts: 4",
            "image: shop/api:1.2",
            "memory limit: 64 MiB",
            "last healthcheck output (exit 1):\n  db connection refused on 5432",
            "firing for: 2m 5s",
            "vigil: alert only",
        ] {
            assert!(m.text.contains(want), "missing {want:?} in {}", m.text);
        }
        let mut exited = n;
        exited.signal.kind = SignalKind::ContainerExited;
        let m = Message::single(exited);
        assert!(m.text.contains("exit: killed (137)"), "{}", m.text);
        let recovered = container_notice(
            "shop",
            1,
            Occasion::Recovery {
                lasted: Duration::from_secs(3),
            },
        );
        assert!(!Message::single(recovered).text.contains("vigil:"));
    }

    #[test]
    fn html_renders_hostile_names_literally() {
        let mut n = container_notice("shop", 1, Occasion::Alert);
        n.signal.subject.container = Some("<b>&_".into());
        n.facts = Some(facts());
        let html = Message::single(n).render_html();
        assert!(html.contains("<b>container:</b> &lt;b&gt;&amp;_"), "{html}");
        assert!(!html.contains("<b>&_"), "{html}");
    }

    #[test]
    fn html_stays_below_the_limit_when_escaping_grows_it() {
        let mut n = container_notice("shop", 1, Occasion::Alert);
        n.signal.detail = "<&>".repeat(3000);
        let html = Message::single(n).render_html();
        assert!(html.chars().count() < 4096, "{}", html.chars().count());
        let notices: Vec<Notice> = (0..1000)
            .map(|i| {
                let mut n = container_notice("shop", i, Occasion::Alert);
                n.signal.detail = "&".repeat(500);
                n
            })
            .collect();
        let m = Message::group(Some("shop".into()), notices).expect("non-empty");
        assert!(m.render_html().chars().count() < 4096);
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
