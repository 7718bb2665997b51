//! The Slack incoming-webhook sink, Block Kit: the title as the notification `text` (what the
//! phone shows), and one attachment coloured by severity holding a header and an mrkdwn section
//! (values escaped, healthcheck output in a code block). Slack answers 200 `ok` on success, 429
//! with Retry-After when rate limited, and a 4xx word (`invalid_payload`, `no_service`, ...) that
//! retrying will not fix.

use super::config::SlackConfig;
use super::format::mrkdwn;
use super::http::{self, Answer};
use super::message::Message;
use super::sink::{SendFuture, Sink};
use super::text::truncate_chars;
use crate::signals::Severity;
use std::time::Duration;
use vigil_shared::config::Secret;

/// Slack's limit on one section's text.
const MAX_SECTION_CHARS: usize = 2900;
/// Slack's limit on a header's text.
const MAX_HEADER_CHARS: usize = 150;

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
    let body = truncate_chars(&mrkdwn::render(&msg.blocks), MAX_SECTION_CHARS);
    serde_json::json!({
        "text": mrkdwn::escape(&msg.title),
        "attachments": [{
            "color": colour(msg),
            "fallback": msg.render(),
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": truncate_chars(&msg.title, MAX_HEADER_CHARS)},
                },
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": body},
                },
            ],
        }],
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
    fn payload_is_block_kit_with_a_coloured_attachment() {
        let mut n = container_notice("shop", 1, Occasion::Alert);
        n.signal.subject.container = Some("<b>&_".into());
        let m = Message::single(n);
        let p = payload(&m);
        assert_eq!(p["attachments"][0]["color"], "#e8590c");
        assert_eq!(p["attachments"][0]["blocks"][0]["type"], "header");
        let section = p["attachments"][0]["blocks"][1]["text"]["text"]
            .as_str()
            .expect("section text");
        assert!(
            section.contains("*container:* &lt;b&gt;&amp;_"),
            "{section}"
        );
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
