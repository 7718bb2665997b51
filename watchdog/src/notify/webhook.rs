//! The generic JSON webhook sink: one POST per message carrying the structured notices, for
//! receivers that route or store alerts themselves. 2xx is success; 429, 408 and 5xx are retried.

use super::config::WebhookConfig;
use super::http;
use super::message::{Message, Notice};
use super::sink::{SendFuture, Sink};
use std::time::Duration;
use vigil_shared::config::Secret;

pub struct WebhookSink {
    url: Secret,
    agent: ureq::Agent,
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig, timeout: Duration) -> WebhookSink {
        WebhookSink {
            url: config.url.clone(),
            agent: http::agent(timeout),
        }
    }
}

/// The schema version in every document (`v`). Fields are only ever added within a version;
/// renaming or removing one makes a new version. Documented in `docs/webhook.md`.
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON document a webhook receives for `msg`.
pub fn payload(msg: &Message) -> serde_json::Value {
    serde_json::json!({
        "v": SCHEMA_VERSION,
        "schema": "vigil.notification",
        "source": "vigil-watchdog",
        "title": msg.title,
        "text": msg.text,
        "severity": msg.severity,
        "host": msg.host,
        "project": msg.project,
        "notices": msg.notices.iter().map(notice_json).collect::<Vec<_>>(),
    })
}

fn notice_json(n: &Notice) -> serde_json::Value {
    let lasted_secs = match n.occasion {
        super::message::Occasion::Recovery { lasted } => Some(lasted.as_secs()),
        _ => None,
    };
    serde_json::json!({
        "occasion": n.occasion.as_str(),
        "kind": n.signal.kind,
        "key": n.signal.key,
        "severity": n.signal.severity,
        "active": n.signal.active,
        "subject": n.signal.subject,
        "detail": n.signal.detail,
        "observed_at": n.signal.observed_at,
        "host": n.host,
        "lasted_secs": lasted_secs,
        "since": n.since,
        "remedy": n.remedy,
        "facts": n.facts.as_ref().map(|f| serde_json::json!({
            "image": f.image,
            "restart_count": f.restart_count,
            "memory_limit_bytes": f.memory_limit,
            "exit_code": f.exit_code,
            "exit_meaning": f.exit_text(),
            "oom_killed": f.oom_killed,
            "healthcheck": f.last_probe.as_ref().map(|p| serde_json::json!({
                "exit_code": p.exit_code,
                "output": p.output,
            })),
            "opted_in": f.opted_in,
        })),
    })
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let answer = http::post_json(&self.agent, &self.url, payload(msg)).await?;
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
    fn payload_carries_structured_notices() {
        let m = Message::group(
            Some("shop".into()),
            vec![
                container_notice("shop", 1, Occasion::Alert),
                container_notice(
                    "shop",
                    2,
                    Occasion::Recovery {
                        lasted: Duration::from_secs(192),
                    },
                ),
            ],
        )
        .expect("non-empty");
        let p = payload(&m);
        assert_eq!(p["project"], "shop");
        assert_eq!(p["host"], "host-a");
        assert_eq!(p["severity"], "high");
        let n = p["notices"].as_array().expect("array");
        assert_eq!(n.len(), 2);
        assert_eq!(n[0]["kind"], "container_unhealthy");
        assert_eq!(n[0]["occasion"], "alert");
        assert_eq!(n[0]["key"], "container_unhealthy/shop/svc1/shop-svc1-1");
        assert_eq!(n[0]["subject"]["container"], "shop-svc1-1");
        assert!(n[0]["lasted_secs"].is_null());
        assert_eq!(n[1]["occasion"], "recovery");
        assert_eq!(n[1]["lasted_secs"], 192);
    }
}
