//! The Slack incoming-webhook sink: the title as `text`, the body in one attachment coloured by
//! severity. Slack answers 200 `ok` on success, 429 with Retry-After when rate limited, and a
//! 4xx word (`invalid_payload`, `no_service`, ...) that retrying will not fix.

use super::http::{self, Answer};
use super::{Message, SendFuture, Sink};
use crate::config::SlackConfig;
use crate::signals::Severity;
use std::time::Duration;
use vigil_shared::config::Secret;

pub struct SlackSink {
    url: Secret,
    agent: ureq::Agent,
}

impl SlackSink {
    pub fn new(config: &SlackConfig, timeout: Duration) -> SlackSink {
        SlackSink {
            url: config.webhook_url.clone(),
            agent: http::agent(timeout),
        }
    }
}

/// The JSON Slack receives for `msg`.
pub fn payload(msg: &Message) -> serde_json::Value {
    serde_json::json!({
        "text": msg.title,
        "attachments": [{ "color": colour(msg), "text": msg.text }],
    })
}

fn colour(msg: &Message) -> &'static str {
    if !msg.notices.is_empty() && msg.is_quiet() {
        return "#2eb886"; // all recovered: green
    }
    match msg.severity {
        Severity::Info => "#439fe0",
        Severity::Medium => "#daa038",
        Severity::High => "#e8590c",
        Severity::Critical => "#a30200",
    }
}

impl Sink for SlackSink {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let answer: Answer = http::post_json(&self.agent, &self.url, payload(msg)).await?;
            http::classify(&answer, &self.url)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::Occasion;
    use crate::notify::message::tests::container_notice;

    #[test]
    fn payload_has_text_and_a_coloured_attachment() {
        let m = Message::single(container_notice("shop", 1, Occasion::Alert));
        let p = payload(&m);
        assert_eq!(p["text"], m.title.as_str());
        assert_eq!(p["attachments"][0]["text"], m.text.as_str());
        assert_eq!(p["attachments"][0]["color"], "#e8590c");
        let r = Message::single(container_notice(
            "shop",
            1,
            Occasion::Recovery {
                lasted: Duration::from_secs(1),
            },
        ));
        assert_eq!(payload(&r)["attachments"][0]["color"], "#2eb886");
    }
}
