//! The Telegram sink (teloxide): one plain-text `sendMessage` per message, no parse mode, so no
//! text can break Markdown or HTML escaping. The API base URL is configurable (a local Bot API
//! server, or the test fake).
//!
//! Error classes: flood control (`retry_after`) and network trouble are retried; an API error
//! (bad token, unknown chat, bot blocked) is permanent. teloxide's network errors quote the
//! request URL, which holds the token: every error text is scrubbed.

use super::{Message, NotifyError, SendError, SendFuture, Sink, scrub};
use crate::config::TelegramConfig;
use std::time::Duration;
use teloxide::requests::Requester;
use teloxide::types::{ChatId, Recipient};
use teloxide::{Bot, RequestError};
use vigil_shared::config::Secret;

pub struct TelegramSink {
    bot: Bot,
    chat: Recipient,
    token: Secret,
}

impl TelegramSink {
    pub fn new(config: &TelegramConfig, timeout: Duration) -> Result<TelegramSink, NotifyError> {
        let client = teloxide::net::default_reqwest_settings()
            .timeout(timeout)
            .build()
            .map_err(|e| NotifyError::Setup {
                sink: "telegram",
                reason: scrub(&e.to_string(), &[config.bot_token.expose()]),
            })?;
        let mut bot = Bot::with_client(config.bot_token.expose(), client);
        if let Some(url) = &config.api_url {
            bot = bot.set_api_url(url.clone());
        }
        Ok(TelegramSink {
            bot,
            chat: recipient(&config.chat_id),
            token: config.bot_token.clone(),
        })
    }

    fn scrub(&self, text: &str) -> String {
        scrub_bot_path(&scrub(text, &[self.token.expose()]))
    }

    fn classify(&self, e: RequestError) -> SendError {
        match e {
            RequestError::RetryAfter(secs) => SendError::Retryable {
                after: Some(secs.duration()),
                reason: format!("rate limited, retry after {}s", secs.seconds()),
            },
            RequestError::Api(api) => SendError::Permanent(self.scrub(&api.to_string())),
            RequestError::MigrateToChatId(id) => SendError::Permanent(format!(
                "the group became a supergroup with chat id {id}; set WATCHDOG_TELEGRAM_CHAT_ID to it"
            )),
            // Unparseable answers are typically a proxy's or gateway's error page: transient.
            RequestError::InvalidJson { .. } => {
                SendError::retryable("the Bot API answered with something that is not its JSON")
            }
            other @ (RequestError::Network(_) | RequestError::Io(_)) => {
                SendError::retryable(self.scrub(&other.to_string()))
            }
        }
    }
}

/// A numeric chat id, or a channel username (`@channel`).
fn recipient(chat_id: &str) -> Recipient {
    match chat_id.trim().parse::<i64>() {
        Ok(id) => Recipient::Id(ChatId(id)),
        Err(_) => Recipient::ChannelUsername(chat_id.trim().to_string()),
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
            match self.bot.send_message(self.chat.clone(), msg.render()).await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.classify(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_and_channels() {
        assert_eq!(recipient("-100123"), Recipient::Id(ChatId(-100123)));
        assert_eq!(
            recipient("@alerts"),
            Recipient::ChannelUsername("@alerts".into())
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
