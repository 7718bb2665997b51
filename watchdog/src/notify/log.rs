//! The log sink: always on, so every message is at least in the watchdog's own log. Alerts log at
//! WARN, recoveries and plain messages at INFO.

use super::message::Message;
use super::sink::{SendFuture, Sink};

/// Writes each message as one tracing event.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl Sink for LogSink {
    fn name(&self) -> &'static str {
        "log"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a> {
        let project = msg.project.as_deref().unwrap_or("-");
        if msg.is_quiet() {
            tracing::info!(
                notify.title = %msg.title,
                notify.severity = %msg.severity,
                notify.project = project,
                notify.notices = msg.notices.len(),
                notify.text = %msg.text,
                "Notification."
            );
        } else {
            tracing::warn!(
                notify.title = %msg.title,
                notify.severity = %msg.severity,
                notify.project = project,
                notify.notices = msg.notices.len(),
                notify.text = %msg.text,
                "Alert."
            );
        }
        Box::pin(async { Ok(()) })
    }
}
