//! What an incident tells people, one [`Story`] per step worth a message, and its words (the one
//! place the loop's message text lives).

use super::Incident;
use crate::notify::Message;
use crate::signals::Severity;
use std::time::Duration;
use vigil_protocol::wire::Action;
use vigil_shared::time::{Timestamp, human_duration};

#[derive(Debug, Clone, PartialEq)]
pub enum Story {
    /// The executor acted (`attempt` counts executed actions of this incident).
    Executed {
        action: Action,
        seq: u64,
        attempt: usize,
    },
    Failed {
        action: Action,
        seq: u64,
        detail: String,
    },
    /// Refused: `until` is when Vigil asks again (None: it will not).
    Refused {
        action: Action,
        seq: u64,
        reason: String,
        until: Option<Timestamp>,
    },
    DryRun {
        action: Action,
        seq: u64,
    },
    /// The breaker opened: manual action needed.
    Escalated {
        seq: u64,
        tried: String,
        since: Timestamp,
    },
    /// Healthy (or running) again, `after` counted from the first detection.
    Healed {
        after: Duration,
        executed: usize,
        last_seq: Option<u64>,
    },
}

fn past_tense(action: Action) -> &'static str {
    match action {
        Action::Restart => "restarted",
        Action::Start => "started",
        Action::Stop => "stopped",
    }
}

fn words(code: &str) -> String {
    code.trim().replace(['_', '-'], " ")
}

/// "restart ×3 executed (#4, #7, #9), 1 refused (backoff), 1 lost", for the escalation.
pub fn tried(inc: &Incident) -> String {
    let mut executed = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for a in &inc.attempts {
        match (a.outcome.as_deref(), a.seq) {
            (Some("executed"), Some(seq)) => executed.push(format!("#{seq}")),
            (Some(o), Some(seq)) => other.push(format!("{o} (#{seq})")),
            (Some(o), None) => other.push(o.to_string()),
            (None, _) => {}
        }
    }
    let mut parts = Vec::new();
    if !executed.is_empty() {
        parts.push(format!(
            "{} {}x (audit {})",
            inc.action,
            executed.len(),
            executed.join(", ")
        ));
    }
    parts.extend(other);
    if parts.is_empty() {
        "nothing was carried out".to_string()
    } else {
        parts.join("; ")
    }
}

fn at_utc(t: Timestamp) -> String {
    let secs = t.as_millis().div_euclid(1000);
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

impl Story {
    /// The message about `inc` (its container and key name it), at `now`.
    pub fn message(&self, inc: &Incident, project: Option<&str>, now: Timestamp) -> Message {
        let name = &inc.container;
        let (title, sentence, severity) = match self {
            Story::Executed {
                action,
                seq,
                attempt,
            } => (
                format!("Vigil: {} {name}", past_tense(*action)),
                format!(
                    "{} {name} (attempt {attempt}, {} after detection) (audit #{seq}); \
                     verifying it recovers",
                    past_tense(*action),
                    human_duration(now.since(inc.detected_at))
                ),
                Severity::Info,
            ),
            Story::Failed {
                action,
                seq,
                detail,
            } => (
                format!("Vigil: {action} of {name} failed"),
                format!("{action} of {name} failed: {detail} (audit #{seq}); will try again"),
                Severity::High,
            ),
            Story::Refused {
                action,
                seq,
                reason,
                until: Some(until),
            } => (
                format!("Vigil: {action} of {name} deferred"),
                format!(
                    "refused {action} of {name}: {} (audit #{seq}); asking again at {} (in {})",
                    words(reason),
                    at_utc(*until),
                    human_duration(until.since(now))
                ),
                Severity::Medium,
            ),
            Story::Refused {
                action,
                seq,
                reason,
                until: None,
            } => (
                format!("Vigil: refused {action} of {name}"),
                format!(
                    "refused {action} of {name}: {} (audit #{seq}); not asking again, manual \
                     action needed",
                    words(reason)
                ),
                Severity::High,
            ),
            Story::DryRun { action, seq } => (
                format!("Vigil (dry run): would have {} {name}", past_tense(*action)),
                format!(
                    "dry run: would have {} {name}; nothing was done (audit #{seq})",
                    past_tense(*action)
                ),
                Severity::Info,
            ),
            Story::Escalated { seq, tried, since } => (
                format!("Vigil: manual action needed for {name}"),
                format!(
                    "circuit breaker open for {name}: manual action needed (audit #{seq}). \
                     Failing for {}; tried: {tried}. No more requests for this incident.",
                    human_duration(now.since(*since))
                ),
                Severity::Critical,
            ),
            Story::Healed {
                after,
                executed,
                last_seq,
            } => (
                format!("Vigil: {name} healed"),
                match (executed, last_seq) {
                    (0, _) => format!("{name} healed after {} in all", human_duration(*after)),
                    (n, Some(seq)) => format!(
                        "{name} healed after {} in all, {} {n}x (last audit #{seq})",
                        human_duration(*after),
                        past_tense(inc.action)
                    ),
                    (n, None) => format!(
                        "{name} healed after {} in all, {} {n}x",
                        human_duration(*after),
                        past_tense(inc.action)
                    ),
                },
                Severity::Info,
            ),
        };
        let mut lines = vec![sentence, format!("signal: {}", inc.key)];
        if let Some(p) = project {
            lines.push(format!("project: {p}"));
        }
        let mut msg = Message::plain(title, lines.join("\n")).with_severity(severity);
        msg.project = project.map(str::to_string);
        msg
    }
}
