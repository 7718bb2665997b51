//! The audit feed: reads the executor's audit stream (`<prefix>audit`, one field `record` holding
//! the record's JSON) and tells people what was done, e.g. "restarted shop-web-1 after 45s
//! unhealthy (audit #12)".
//!
//! [`Feed`] is the pure part (a record in, at most one [`Message`] out, with the little memory
//! it needs to avoid repeating itself); [`run`] is the reader. It starts after the last entry it
//! handled (persisted at `<prefix>watchdog:audit_cursor`), or, the first time, after the newest
//! entry present at start-up, so history is not replayed to anyone. It uses a link of its own,
//! since `XREAD BLOCK` holds its connection while it waits.
//!
//! Records are read leniently (unknown fields ignored): the executor owns their format, and a
//! field it adds must not silence the feed.

use crate::collect;
use crate::notify::Message;
use crate::redis::link::{LinkError, RedisLink};
use crate::signals::{Severity, SignalKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::{Timestamp, human_duration};

pub use vigil_protocol::names::RECORD_FIELD;
/// How long one `XREAD` waits for new entries.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries per read.
const READ_COUNT: usize = 100;
/// Wait after a failed read.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// The circuit breaker opening for a container is told once per this period.
pub const CIRCUIT_QUIET: Duration = Duration::from_secs(3600);
/// At most one message about rejected requests per this period (a flood of forged requests must
/// not become a flood of messages).
pub const REJECTION_QUIET: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Redis(#[from] LinkError),
}

/// The target of an audited request, as far as the feed needs it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct TargetView {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
}

/// One audit record, read leniently.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AuditView {
    pub seq: u64,
    #[serde(default)]
    pub ts: Option<Timestamp>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub target: Option<TargetView>,
    pub decision: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// On temporary refusals: when the executor expects asking again to succeed.
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
}

impl AuditView {
    fn target_name(&self) -> String {
        self.target
            .as_ref()
            .and_then(|t| t.name.clone().or_else(|| t.id.clone()))
            .unwrap_or_else(|| "an unknown container".to_string())
    }

    fn action(&self) -> &str {
        self.action.as_deref().unwrap_or("action")
    }
}

/// A stable reason code in words: `not_opted_in` → "not opted in".
fn words(code: &str) -> String {
    code.trim().replace(['_', '-'], " ")
}

fn past_tense(action: &str) -> String {
    match action {
        "restart" => "restarted".to_string(),
        "start" => "started".to_string(),
        "stop" => "stopped".to_string(),
        other => format!("did {other} on"),
    }
}

/// "after 45s unhealthy", from what the watchdog knew when it asked.
fn cause(kind: SignalKind, since: Option<Timestamp>, done_at: Option<Timestamp>) -> String {
    let lasted = match (since, done_at) {
        (Some(s), Some(d)) => Some(human_duration(d.since(s))),
        _ => None,
    };
    match (kind, lasted) {
        (SignalKind::ContainerExited, _) => "after it exited".to_string(),
        (SignalKind::ContainerOomKilled, _) => "after an OOM kill".to_string(),
        (SignalKind::ContainerUnhealthy, Some(d)) => format!("after {d} unhealthy"),
        (SignalKind::ContainerCpuHigh, Some(d)) => format!("after {d} of high CPU"),
        (SignalKind::ContainerMemoryHigh, Some(d)) => format!("after {d} of rising memory"),
        (k, _) => format!("after {k}"),
    }
}

/// Turns audit records into messages, remembering just enough not to repeat itself.
#[derive(Debug, Default)]
pub struct Feed {
    /// When the circuit breaker opening was last told, per target.
    circuit_told: HashMap<String, Timestamp>,
    rejection_told_at: Option<Timestamp>,
    rejections_untold: u64,
}

impl Feed {
    /// The message for one record, or None when there is nothing new to tell. `note` is what the
    /// watchdog remembers about the request, if it sent it.
    pub fn describe(
        &mut self,
        rec: &AuditView,
        note: Option<&crate::redis::request::SentNote>,
        now: Timestamp,
    ) -> Option<Message> {
        let name = rec.target_name();
        let action = rec.action();
        let audit = format!("(audit #{})", rec.seq);
        let (title, sentence, severity) = match rec.decision.as_str() {
            "executed" => {
                let why = note
                    .map(|n| format!(" {}", cause(n.kind, n.since, rec.ts)))
                    .unwrap_or_default();
                (
                    format!("Vigil: {} {name}", past_tense(action)),
                    format!("{} {name}{why} {audit}", past_tense(action)),
                    Severity::Info,
                )
            }
            "dry_run" => (
                format!("Vigil (dry run): would have {} {name}", past_tense(action)),
                format!(
                    "dry run: would have {} {name}; nothing was done {audit}",
                    past_tense(action)
                ),
                Severity::Info,
            ),
            "failed" => {
                let what = rec
                    .result
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| words(&rec.reason));
                (
                    format!("Vigil: {action} of {name} failed"),
                    format!("{action} of {name} failed: {what} {audit}"),
                    Severity::High,
                )
            }
            // The executor refuses with `breaker_opened` the first time and `breaker` after.
            "refused" if rec.reason == "breaker_opened" || rec.reason == "breaker" => {
                let key = rec
                    .target
                    .as_ref()
                    .and_then(|t| t.id.clone())
                    .unwrap_or_else(|| name.clone());
                if let Some(told) = self.circuit_told.get(&key)
                    && now.since(*told) < CIRCUIT_QUIET
                {
                    return None;
                }
                self.circuit_told.insert(key, now);
                self.circuit_told
                    .retain(|_, told| now.since(*told) < CIRCUIT_QUIET);
                (
                    format!("Vigil: circuit breaker open for {name}"),
                    format!(
                        "executor circuit breaker opened for {name}: manual action needed {audit}"
                    ),
                    Severity::High,
                )
            }
            "refused" => (
                format!("Vigil: refused {action} of {name}"),
                format!("refused {action} of {name}: {} {audit}", words(&rec.reason)),
                Severity::Medium,
            ),
            // The outcome record that follows tells; an intent alone says nothing new.
            "intent" => return None,
            "rejected" => {
                if let Some(told) = self.rejection_told_at
                    && now.since(told) < REJECTION_QUIET
                {
                    self.rejections_untold += 1;
                    return None;
                }
                let more = match std::mem::take(&mut self.rejections_untold) {
                    0 => String::new(),
                    n => format!(" ({n} more rejected since the last message)"),
                };
                self.rejection_told_at = Some(now);
                (
                    "Vigil: executor rejected a request".to_string(),
                    format!(
                        "executor rejected a request: {}{more} {audit}",
                        words(&rec.reason)
                    ),
                    Severity::High,
                )
            }
            other => (
                format!("Vigil: executor {}", words(other)),
                format!(
                    "executor {} {action} of {name}: {} {audit}",
                    words(other),
                    words(&rec.reason)
                ),
                Severity::Medium,
            ),
        };
        let mut lines = vec![sentence];
        if let Some(t) = &rec.target {
            if let Some(p) = &t.project {
                lines.push(format!("project: {p}"));
            }
            if let Some(s) = &t.service {
                lines.push(format!("service: {s}"));
            }
        }
        if let Some(id) = &rec.request_id {
            lines.push(format!("request: {id}"));
        }
        lines.push(format!("decision: {} ({})", rec.decision, rec.reason));
        if let Some(result) = rec.result.as_ref().filter(|r| !r.is_empty()) {
            lines.push(format!("result: {result}"));
        }
        if let Some(ms) = rec.duration_ms.filter(|ms| *ms > 0) {
            lines.push(format!("took: {ms} ms"));
        }
        let mut msg = Message::plain(title, lines.join("\n")).with_severity(severity);
        msg.project = rec.target.as_ref().and_then(|t| t.project.clone());
        Some(msg)
    }
}

/// The Redis key holding the last audit entry id the feed handled.
pub fn cursor_key(link: &RedisLink) -> String {
    link.names().watchdog_audit_cursor()
}

/// Where to start: the persisted cursor, else the newest entry now (`0-0` for an empty stream).
async fn start_cursor(link: &RedisLink) -> Result<String, FeedError> {
    let mut get = redis::cmd("GET");
    get.arg(cursor_key(link));
    if let Some(saved) = link.query::<Option<String>>(&get).await? {
        return Ok(saved);
    }
    let mut last = redis::cmd("XREVRANGE");
    last.arg(link.names().audit())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1);
    let newest: redis::streams::StreamRangeReply = link.query(&last).await?;
    Ok(newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |e| e.id.clone()))
}

/// Reads the audit stream until cancelled and hands every record to the engine (`out`), which
/// steps the incident that sent the request or tells the record the generic way ([`Feed`]).
/// `link` should be a [`RedisLink::dedicated`] one (the read blocks).
pub async fn run(link: RedisLink, out: mpsc::Sender<AuditView>, cancel: CancellationToken) {
    let mut failing = false;
    let mut cursor = loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            c = start_cursor(&link) => c,
        };
        match attempt {
            Ok(c) => break c,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "Cannot read the audit stream yet; will retry.");
                    failing = true;
                }
                if !collect::pause(&cancel, RETRY_AFTER).await {
                    return;
                }
            }
        }
    };
    tracing::info!(audit.cursor = %cursor, "Following the executor's audit stream.");
    let stream = link.names().audit();
    loop {
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5000))
            .arg("STREAMS")
            .arg(&stream)
            .arg(&cursor);
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = link.query::<Option<redis::streams::StreamReadReply>>(&xread) => r,
        };
        let reply = match read {
            Ok(reply) => {
                if failing {
                    tracing::info!("Reading the audit stream again.");
                    failing = false;
                }
                reply
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "Cannot read the audit stream; will retry.");
                    failing = true;
                }
                if !collect::pause(&cancel, RETRY_AFTER).await {
                    return;
                }
                continue;
            }
        };
        let Some(reply) = reply else { continue };
        let before = cursor.clone();
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            cursor = entry.id.clone();
            let Some(json) = entry.get::<String>(RECORD_FIELD) else {
                tracing::warn!(audit.entry = %entry.id, "Audit entry without a record field; skipped.");
                continue;
            };
            let rec: AuditView = match serde_json::from_str(&json) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(audit.entry = %entry.id, error = %e, "Unreadable audit record; skipped.");
                    continue;
                }
            };
            tracing::info!(
                audit.seq = rec.seq,
                audit.decision = %rec.decision,
                audit.reason = %rec.reason,
                request.id = rec.request_id.as_deref().unwrap_or("-"),
                "Executor decision read from the audit stream."
            );
            tokio::select! {
                _ = cancel.cancelled() => return,
                sent = out.send(rec) => if sent.is_err() { return },
            }
        }
        if cursor != before {
            let mut set = redis::cmd("SET");
            set.arg(cursor_key(&link)).arg(&cursor);
            if let Err(e) = link.query::<()>(&set).await {
                tracing::warn!(error = %e, "Cannot save the audit cursor; a restart may repeat messages.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::request::SentNote;
    use vigil_protocol::wire::Action;

    const S: i64 = 1000;

    fn rec(seq: u64, decision: &str, reason: &str) -> AuditView {
        AuditView {
            seq,
            ts: Some(Timestamp(45 * S)),
            request_id: Some("r1".into()),
            action: Some("restart".into()),
            target: Some(TargetView {
                id: Some("abc".into()),
                name: Some("shop-web-1".into()),
                project: Some("shop".into()),
                service: Some("web".into()),
            }),
            decision: decision.into(),
            reason: reason.into(),
            result: None,
            duration_ms: Some(420),
            retry_at: None,
        }
    }

    fn first_line(m: &Message) -> &str {
        m.text.lines().next().unwrap_or_default()
    }

    #[test]
    fn executed_says_what_and_why() {
        let note = SentNote {
            request_id: "r1".into(),
            action: Action::Restart,
            kind: SignalKind::ContainerUnhealthy,
            since: Some(Timestamp(0)),
        };
        let mut feed = Feed::default();
        let m = feed
            .describe(&rec(12, "executed", "ok"), Some(&note), Timestamp(0))
            .unwrap();
        assert_eq!(
            first_line(&m),
            "restarted shop-web-1 after 45s unhealthy (audit #12)"
        );
        assert_eq!(m.title, "Vigil: restarted shop-web-1");
        assert!(m.text.contains("request: r1"), "{}", m.text);
        assert_eq!(m.project.as_deref(), Some("shop"));
        // Without a note (another watchdog sent it, or this one restarted): no cause.
        let m = feed
            .describe(&rec(13, "executed", "ok"), None, Timestamp(0))
            .unwrap();
        assert_eq!(first_line(&m), "restarted shop-web-1 (audit #13)");
    }

    #[test]
    fn refusals_failures_and_dry_runs() {
        let mut feed = Feed::default();
        let m = feed
            .describe(&rec(13, "refused", "backoff"), None, Timestamp(0))
            .unwrap();
        assert_eq!(
            first_line(&m),
            "refused restart of shop-web-1: backoff (audit #13)"
        );
        assert_eq!(m.severity, Severity::Medium);
        let mut failed = rec(14, "failed", "engine_error");
        failed.result = Some("no such container".into());
        let m = feed.describe(&failed, None, Timestamp(0)).unwrap();
        assert_eq!(
            first_line(&m),
            "restart of shop-web-1 failed: no such container (audit #14)"
        );
        assert_eq!(m.severity, Severity::High);
        let m = feed
            .describe(&rec(15, "dry_run", "ok"), None, Timestamp(0))
            .unwrap();
        assert!(first_line(&m).starts_with("dry run: would have restarted shop-web-1"));
    }

    #[test]
    fn circuit_breaker_is_told_once_per_container() {
        let mut feed = Feed::default();
        let m = feed
            .describe(&rec(20, "refused", "breaker_opened"), None, Timestamp(0))
            .unwrap();
        assert_eq!(
            first_line(&m),
            "executor circuit breaker opened for shop-web-1: manual action needed (audit #20)"
        );
        assert!(
            feed.describe(
                &rec(21, "refused", "breaker_opened"),
                None,
                Timestamp(60 * S)
            )
            .is_none()
        );
        let mut other = rec(22, "refused", "breaker_opened");
        other.target = Some(TargetView {
            id: Some("def".into()),
            name: Some("db-1".into()),
            ..TargetView::default()
        });
        assert!(feed.describe(&other, None, Timestamp(60 * S)).is_some());
        assert!(
            feed.describe(
                &rec(23, "refused", "breaker_opened"),
                None,
                Timestamp(3601 * S)
            )
            .is_some()
        );
    }

    #[test]
    fn rejections_are_throttled_and_counted() {
        let mut feed = Feed::default();
        let m = feed
            .describe(&rec(1, "rejected", "bad_signature"), None, Timestamp(0))
            .unwrap();
        assert_eq!(
            first_line(&m),
            "executor rejected a request: bad signature (audit #1)"
        );
        for i in 0..5 {
            assert!(
                feed.describe(&rec(2 + i, "rejected", "expired"), None, Timestamp(S))
                    .is_none()
            );
        }
        let m = feed
            .describe(&rec(9, "rejected", "replayed"), None, Timestamp(61 * S))
            .unwrap();
        assert_eq!(
            first_line(&m),
            "executor rejected a request: replayed (5 more rejected since the last message) (audit #9)"
        );
    }

    #[test]
    fn records_are_read_leniently() {
        let json = r#"{"seq":3,"ts":1,"request_id":null,"key_id":"k","action":"stop",
            "target":{"id":"x","name":"n"},"decision":"executed","reason":"ok","result":"stopped",
            "duration_ms":5,"prev_hash":"00","hash":"11","added_later":true}"#;
        let r: AuditView = serde_json::from_str(json).unwrap();
        assert_eq!(r.seq, 3);
        assert_eq!(r.target_name(), "n");
        let mut feed = Feed::default();
        let m = feed.describe(&r, None, Timestamp(0)).unwrap();
        assert_eq!(first_line(&m), "stopped n (audit #3)");
    }
}
