//! The [`Sink`] trait every delivery channel implements, and its errors.

use super::message::Message;
use std::future::Future;
use std::pin::Pin;
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
