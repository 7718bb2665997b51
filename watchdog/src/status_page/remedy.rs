//! Where a firing incident's remediation stands, in one place for every reader: the status page
//! (`/`, `/api/status`) and the Telegram `/status` command show the same state in the same
//! words.
//!
//! The source of truth is the incident machine ([`crate::incident::Incident`] and its
//! [`Phase`]); this module only reads it. For a container with no open incident (a request
//! another watchdog sent, or one whose incident already ended) the page falls back to the last
//! audit record it read about the container (see `board.rs`).

use super::model::RemediationView;
use super::time::clock;
use crate::incident::{Incident, Phase};
use vigil_protocol::wire::Action;

/// The incident's remediation as `/api/status` serves it.
pub fn from_incident(inc: &Incident) -> RemediationView {
    let last = inc.attempts.last();
    let last_seq = inc.attempts.iter().rev().find_map(|a| a.seq);
    let issued_at = last.map_or(inc.detected_at, |a| a.issued_at).as_millis();
    let last_outcome = last.and_then(|a| a.outcome.clone()).unwrap_or_default();
    let mut v = RemediationView {
        state: String::new(),
        action: Some(inc.action.as_str().to_string()),
        at: issued_at,
        audit_seq: None,
        retry_at: None,
        detail: String::new(),
        phase: Some(phase_name(&inc.phase).to_string()),
        attempts: Some(inc.attempts.len()),
        executed: Some(inc.executed()),
        verify_until: None,
    };
    match &inc.phase {
        Phase::Due { at } => {
            v.state = "due".into();
            v.at = at.as_millis();
            v.detail = if last_outcome.is_empty() {
                "a request is about to be sent".into()
            } else {
                format!("asking again: the last request was {last_outcome}")
            };
        }
        Phase::Requested { request_id, .. } => {
            v.state = "requested".into();
            v.detail = format!("waiting for the executor (request {request_id})");
        }
        Phase::Verifying { seq, until } => {
            v.state = "executed".into();
            v.at = inc.acted_at.unwrap_or(*until).as_millis();
            v.audit_seq = Some(*seq);
            v.verify_until = Some(until.as_millis());
            v.detail = "waiting for the container to recover".into();
        }
        Phase::Waiting { retry_at, reason } => {
            v.state = if reason == "failed" {
                "failed"
            } else {
                "refused"
            }
            .into();
            v.audit_seq = last_seq;
            v.retry_at = Some(retry_at.as_millis());
            v.detail = if reason == "failed" {
                last_outcome
            } else {
                words(reason)
            };
        }
        Phase::GaveUp { reason } => {
            v.state = if reason == "dry_run" {
                "dry_run"
            } else {
                "refused"
            }
            .into();
            v.audit_seq = last_seq;
            v.detail = words(reason);
        }
        Phase::Escalated => {
            v.state = "escalated".into();
            v.audit_seq = last_seq;
            v.detail = "the executor's breaker is open: manual action needed".into();
        }
    }
    v
}

/// The incident machine's phase, as named in `/api/status` (`remediation.phase`).
pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Due { .. } => "due",
        Phase::Requested { .. } => "requested",
        Phase::Verifying { .. } => "verifying",
        Phase::Waiting { .. } => "waiting",
        Phase::GaveUp { .. } => "gave_up",
        Phase::Escalated => "escalated",
    }
}

/// One line for people: "restarted at 2026-12-02 07:40:00 UTC (audit #7), verifying until ...".
pub fn text(r: &RemediationView) -> String {
    let action = r.action.as_deref().unwrap_or("action");
    let audit = r
        .audit_seq
        .map(|s| format!(" (audit #{s})"))
        .unwrap_or_default();
    let tries = match r.attempts {
        Some(n) if n > 1 => format!("; {n} requests so far"),
        _ => String::new(),
    };
    let line = match r.state.as_str() {
        "due" => format!("{action} due at {}: {}", clock(r.at), r.detail),
        "requested" => format!("{action} requested at {}", clock(r.at)),
        "executed" => {
            let done = Action::parse(action)
                .map_or_else(|| format!("{action} done"), |a| past_tense(a).to_string());
            match r.verify_until {
                Some(u) => format!(
                    "{done} at {}{audit}, verifying until {}",
                    clock(r.at),
                    clock(u)
                ),
                None => format!("{done} at {}{audit}", clock(r.at)),
            }
        }
        "dry_run" => format!("dry run: would {action}{audit}"),
        "refused" => match r.retry_at {
            Some(t) => format!("{action} refused until {}: {}{audit}", clock(t), r.detail),
            None => format!("{action} refused: {}{audit}", r.detail),
        },
        "failed" => match r.retry_at {
            Some(t) => format!(
                "{action} failed{audit}: {}; asking again at {}",
                r.detail,
                clock(t)
            ),
            None => format!("{action} failed{audit}: {}", r.detail),
        },
        "escalated" => format!("escalated: manual action needed{audit}"),
        other => format!("{action} {}: {}{audit}", words(other), r.detail),
    };
    format!("{line}{tries}")
}

/// The badge colour for a state.
pub fn class(state: &str) -> &'static str {
    match state {
        "executed" => "ok",
        "due" | "requested" | "dry_run" | "refused" => "warn",
        _ => "bad",
    }
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
