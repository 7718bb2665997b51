//! The Telegram sink: `sendMessage` with `parse_mode = "HTML"` (every value escaped, see
//! [`super::format::html`]), one thread per incident (updates reply to the first message of their
//! signal), and an answer judged by what matters: a 2xx whose JSON says `"ok": true` is
//! delivered, whatever else the body holds or lacks, so a reply the client cannot fully parse
//! never causes a duplicate page.
//!
//! Error classes: flood control (429 with `parameters.retry_after`), 5xx and network trouble are
//! retried; other API errors (bad token, unknown chat, bot blocked) are permanent. The URL holds
//! the token: every error text is scrubbed. The API base URL is configurable (a local Bot API
//! server, or the test fake); the command side ([`crate::operators::bot`]) shares [`BotApi`].

use super::config::TelegramConfig;
use super::http::{self, Answer};
use super::message::Message;
use super::sink::{NotifyError, SendError, SendFuture, Sink};
use super::text::{scrub, truncate_chars};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use vigil_shared::config::Secret;

/// The public Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org/";
/// Threads remembered (signal key to first message id); the oldest are forgotten beyond this.
const MAX_THREADS: usize = 4096;

/// A minimal Bot API client for sending: JSON in, lenient JSON out.
#[derive(Clone)]
pub struct BotApi {
    agent: ureq::Agent,
    /// `<api>/bot<token>/` as a secret (it holds the token).
    base: Secret,
    token: Secret,
    pub chat_id: String,
}

impl BotApi {
    pub fn new(config: &TelegramConfig, timeout: Duration) -> Result<BotApi, NotifyError> {
        let api = config
            .api_url
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let api = if api.ends_with('/') {
            api
        } else {
            format!("{api}/")
        };
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            return Err(NotifyError::Setup {
                sink: "telegram",
                reason: "the API URL must be http(s)".into(),
            });
        }
        Ok(BotApi {
            agent: http::agent(timeout),
            base: Secret::new(format!("{api}bot{}/", config.bot_token.expose())),
            token: config.bot_token.clone(),
            chat_id: config.chat_id.trim().to_string(),
        })
    }

    /// Sends `html` to the configured chat, replying to `reply_to` when given. Returns the new
    /// message's id when the answer holds one.
    pub async fn send_html(
        &self,
        html: &str,
        reply_to: Option<i64>,
    ) -> Result<Option<i64>, SendError> {
        let chat: serde_json::Value = match self.chat_id.parse::<i64>() {
            Ok(id) => id.into(),
            Err(_) => self.chat_id.clone().into(),
        };
        let mut body = serde_json::json!({
            "chat_id": chat,
            "text": html,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        if let Some(id) = reply_to {
            body["reply_parameters"] =
                serde_json::json!({"message_id": id, "allow_sending_without_reply": true});
        }
        let url = Secret::new(format!("{}sendMessage", self.base.expose()));
        let answer = http::post_json(&self.agent, &url, body)
            .await
            .map_err(|e| self.scrub_error(e))?;
        judge(&answer, &[self.token.expose(), url.expose()])
    }

    fn scrub_error(&self, e: SendError) -> SendError {
        match e {
            SendError::Retryable { after, reason } => SendError::Retryable {
                after,
                reason: scrub_bot_path(&scrub(&reason, &[self.token.expose()])),
            },
            SendError::Permanent(r) => {
                SendError::Permanent(scrub_bot_path(&scrub(&r, &[self.token.expose()])))
            }
        }
    }
}

/// Judges a Bot API answer: a 2xx with `"ok": true` is delivered (the message id is read if
/// present); 429 waits `parameters.retry_after`; 5xx retries; anything else is permanent.
pub(crate) fn judge(answer: &Answer, secrets: &[&str]) -> Result<Option<i64>, SendError> {
    let json: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
    let ok = json
        .as_ref()
        .and_then(|j| j.get("ok"))
        .and_then(|v| v.as_bool());
    let describe = || {
        let d = json
            .as_ref()
            .and_then(|j| j.get("description"))
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| answer.body.trim().to_string());
        truncate_chars(&scrub(&d, secrets), 200)
    };
    match answer.status {
        200..=299 if ok != Some(false) => {
            if ok.is_none() {
                tracing::warn!(
                    http.status = answer.status,
                    "Telegram answered 2xx without a readable \"ok\"; counted as delivered (a \
                     duplicate page is worse than a lost receipt)."
                );
            }
            Ok(json
                .as_ref()
                .and_then(|j| j.pointer("/result/message_id"))
                .and_then(|v| v.as_i64()))
        }
        429 => {
            let after = json
                .as_ref()
                .and_then(|j| j.pointer("/parameters/retry_after"))
                .and_then(|v| v.as_u64())
                .map(Duration::from_secs)
                .or(answer.retry_after);
            Err(SendError::Retryable {
                after,
                reason: format!("rate limited: {}", describe()),
            })
        }
        408 | 500..=599 => Err(SendError::Retryable {
            after: answer.retry_after,
            reason: format!("HTTP {}: {}", answer.status, describe()),
        }),
        s => Err(SendError::Permanent(format!("HTTP {s}: {}", describe()))),
    }
}

pub struct TelegramSink {
    api: BotApi,
    /// Signal key to the id of the first message about its incident.
    threads: Mutex<HashMap<String, i64>>,
}

impl TelegramSink {
    pub fn new(config: &TelegramConfig, timeout: Duration) -> Result<TelegramSink, NotifyError> {
        Ok(TelegramSink {
            api: BotApi::new(config, timeout)?,
            threads: Mutex::new(HashMap::new()),
        })
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The message an update of `msg` replies to: the first thread root among its keys.
    fn root_of(&self, msg: &Message) -> Option<i64> {
        let threads = self.threads();
        msg.thread_keys()
            .into_iter()
            .find_map(|k| threads.get(k).copied())
    }

    /// After a send: alerts open threads for their keys; recoveries close them.
    fn remember(&self, msg: &Message, sent: Option<i64>) {
        let mut threads = self.threads();
        for n in &msg.notices {
            let key = &n.signal.key;
            if n.occasion.is_recovery() {
                threads.remove(key);
            } else if let Some(id) = sent
                && !threads.contains_key(key)
            {
                if threads.len() >= MAX_THREADS {
                    threads.clear();
                }
                threads.insert(key.clone(), id);
            }
        }
    }
}

/// Redacts the path segment after `/bot` (the token, possibly percent-encoded) in a URL quoted by
/// an error text.
fn scrub_bot_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("/bot") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == ')' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl Sink for TelegramSink {
    fn name(&self) -> &'static str {
        "telegram"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let reply_to = self.root_of(msg);
            let sent = self.api.send_html(&msg.render_html(), reply_to).await?;
            self.remember(msg, sent);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    #[test]
    fn ok_is_delivered_whatever_else_the_body_holds() {
        assert_eq!(
            judge(
                &answer(200, r#"{"ok":true,"result":{"message_id":1}}"#),
                &[]
            ),
            Ok(Some(1))
        );
        assert_eq!(
            judge(&answer(200, r#"{"ok":true,"result":"??"}"#), &[]),
            Ok(None)
        );
        assert_eq!(judge(&answer(200, "<html>proxy</html>"), &[]), Ok(None));
        assert!(judge(&answer(200, r#"{"ok":false}"#), &[]).is_err());
    }

    #[test]
    fn error_classes() {
        let limited = judge(
            &answer(429, r#"{"ok":false,"parameters":{"retry_after":7}}"#),
            &[],
        );
        assert!(
            matches!(limited, Err(SendError::Retryable { after: Some(d), .. }) if d == Duration::from_secs(7))
        );
        assert!(judge(&answer(502, "bad gateway"), &[]).is_err_and(|e| e.is_retryable()));
        let perm = judge(
            &answer(400, r#"{"ok":false,"description":"chat not found tok123"}"#),
            &["tok123"],
        );
        assert!(
            matches!(perm, Err(SendError::Permanent(r)) if r.contains("chat not found") && !r.contains("tok123"))
        );
    }

    #[test]
    fn bot_paths_are_redacted() {
        assert_eq!(
            scrub_bot_path("error sending request for url (http://h:1/bot12%3Aab/sendMessage)"),
            "error sending request for url (http://h:1/bot<redacted>/sendMessage)"
        );
        assert_eq!(scrub_bot_path("no url here"), "no url here");
    }

    #[tokio::test]
    async fn network_errors_are_retryable_and_hold_no_token() {
        let cfg = TelegramConfig {
            bot_token: Secret::new("123456:SECRET-token"),
            chat_id: "42".into(),
            api_url: Some(url::Url::parse("http://127.0.0.1:9/").expect("valid url")),
            allowed_users: Vec::new(),
            commands: true,
        };
        let sink = TelegramSink::new(&cfg, Duration::from_secs(2)).expect("client builds");
        let e = sink
            .send(&Message::plain("t", "x"))
            .await
            .expect_err("nothing listens");
        assert!(e.is_retryable(), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
