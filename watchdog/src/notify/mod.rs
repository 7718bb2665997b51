//! Notifications: what people are told, grouped per compose project, delivered through a bounded
//! queue to every configured sink.
//!
//! # Layout (data-flow order)
//! - [`message`]: a [`Notice`] (decide said "tell people") becomes a [`Message`] with a title and a
//!   plain-text body naming host, project, service, container, signal, severity and detail.
//! - [`group`]: the pure [`Grouper`]: the first notice of a compose project goes out at once;
//!   the project's notices arriving within the group window after it go out together as one
//!   follow-up. It takes `now`; it reads no clock.
//! - [`queue`]: the [`Notifier`]: a non-blocking, drop-oldest queue feeding a worker that groups
//!   and hands each message to one task per sink, so a slow sink never delays the others. Retries
//!   with backoff, honouring the sink's "retry after".
//! - [`facts`]: the container facts an alert carries (image, restarts, memory limit, exit
//!   meaning, last healthcheck output), read by one inspect at alert time.
//! - [`flap`]: the pure [`flap::FlapDamper`]: a signal changing state too often becomes one
//!   "flapping" notice, then one summary when it settles.
//! - [`format`]: one body, rendered as plain text, Telegram HTML or Slack mrkdwn, each escaped.
//! - sinks, each behind the [`Sink`] trait: [`log`] (always on), [`telegram`], [`slack`],
//!   [`webhook`]; [`http`] holds what the two ureq-based sinks share.
//!
//! Secrets (the bot token, the webhook URLs) never appear in a log line or an error text: every
//! error from an HTTP client is scrubbed before it leaves its sink.

pub mod config;
pub mod facts;
pub mod flap;
pub mod format;
pub mod group;
pub mod http;
pub mod log;
pub mod message;
pub mod queue;
pub mod slack;
pub mod telegram;
pub mod webhook;

pub use group::Grouper;
pub use message::{Message, Notice, Occasion};
pub use queue::{Extras, Notifier, NotifyStats, SinkStats};

use crate::config::NotifyConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Why one message could not be delivered to one sink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: rate limits (with the server's wait, if it gave one), 5xx, network.
    #[error("temporary failure: {reason}")]
    Retryable {
        after: Option<Duration>,
        reason: String,
    },
    /// Trying again will not help: a bad token, an unknown chat, a rejected payload.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn retryable(reason: impl Into<String>) -> SendError {
        SendError::Retryable {
            after: None,
            reason: reason.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }
}

/// Setting a sink up failed (its configuration cannot make a working client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot set up the {sink} sink: {reason}")]
    Setup { sink: &'static str, reason: String },
}

/// The future a sink returns from [`Sink::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Somewhere messages go. Implementations must not log or return their secrets.
pub trait Sink: Send + Sync {
    /// A short stable name for logs and metrics: `log`, `telegram`, `slack`, `webhook`.
    fn name(&self) -> &'static str;

    /// Delivers one message once. Retrying is the caller's business.
    fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a>;
}

/// Every sink the configuration asks for, the log sink first. A sink that cannot be set up is an
/// `Err` in its place, so callers can report it and carry on with the others.
pub fn configured_sinks(config: &NotifyConfig) -> Vec<Result<Arc<dyn Sink>, NotifyError>> {
    let mut sinks: Vec<Result<Arc<dyn Sink>, NotifyError>> = vec![Ok(Arc::new(log::LogSink))];
    if let Some(t) = &config.telegram {
        sinks.push(
            telegram::TelegramSink::new(t, config.timeout).map(|s| Arc::new(s) as Arc<dyn Sink>),
        );
    }
    if let Some(s) = &config.slack {
        sinks.push(Ok(Arc::new(slack::SlackSink::new(s, config.timeout))));
    }
    if let Some(w) = &config.webhook {
        sinks.push(Ok(Arc::new(webhook::WebhookSink::new(w, config.timeout))));
    }
    sinks
}

/// Sends one plain test message to every configured sink directly (no queue, no retries), for the
/// `test-notify` command. Returns each sink's name and outcome, the log sink first.
pub async fn test_notify(
    config: &NotifyConfig,
    host: &str,
) -> Vec<(String, Result<(), SendError>)> {
    let msg = Message::from_blocks(
        format!("Vigil test notification from {host}"),
        vec![
            format::Block::field("host", host),
            format::Block::Line(
                "This is a test message from the Vigil watchdog. If you can read it, this \
                 channel works, formatting included."
                    .into(),
            ),
            format::Block::Code {
                label: "sample healthcheck output".into(),
                text: "<ok> & done".into(),
            },
        ],
    )
    .with_host(host);
    let mut results = Vec::new();
    for sink in configured_sinks(config) {
        match sink {
            Ok(sink) => {
                let outcome = match tokio::time::timeout(config.timeout, sink.send(&msg)).await {
                    Ok(r) => r,
                    Err(_) => Err(SendError::retryable(format!(
                        "no answer within {}s",
                        config.timeout.as_secs_f64()
                    ))),
                };
                results.push((sink.name().to_string(), outcome));
            }
            Err(NotifyError::Setup { sink, reason }) => {
                results.push((sink.to_string(), Err(SendError::Permanent(reason))));
            }
        }
    }
    results
}

/// Replaces every occurrence of each non-empty secret in `text`. Used on every error text that
/// came from an HTTP client, since those often quote the URL (which holds the token).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

/// Cuts `s` to at most `max` characters (not bytes), marking the cut with `...`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret() {
        let t = scrub(
            "error for url (http://h/bot123:abc/sendMessage) bot123:abc",
            &["bot123:abc", ""],
        );
        assert!(!t.contains("123:abc"), "{t}");
        assert_eq!(t.matches("<redacted>").count(), 2);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo wörld", 6), "hél...");
        assert_eq!(truncate_chars("héllo wörld", 6).chars().count(), 6);
    }
}
