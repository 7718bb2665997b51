//! Which sinks the config turns on, and the `test-notify` command that tries each once.

use super::config::NotifyConfig;
use super::format;
use super::log;
use super::message::Message;
use super::sink::{NotifyError, SendError, Sink};
use super::{slack, telegram, webhook};
use std::sync::Arc;

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
