//! The sinks' configuration: `[notify]` with `[notify.telegram]`, `[notify.slack]` and
//! `[notify.webhook]`, their schema, defaults and validation. [`crate::config`] composes them.

use crate::config::check::*;
use std::path::PathBuf;
use std::time::Duration;
use vigil_shared::config::{ConfigReader, Secret, convert};

#[derive(Debug, Clone, PartialEq)]
pub struct TelegramConfig {
    /// `WATCHDOG_TELEGRAM_BOT_TOKEN[_FILE]`.
    pub bot_token: Secret,
    /// `WATCHDOG_TELEGRAM_CHAT_ID`.
    pub chat_id: String,
    /// `WATCHDOG_TELEGRAM_API_URL` (default the public Bot API).
    pub api_url: Option<url::Url>,
    /// `WATCHDOG_TELEGRAM_ALLOWED_USERS`: user ids whose commands are accepted (comma
    /// separated). Empty: anyone in the configured chat.
    pub allowed_users: Vec<i64>,
    /// `notify.telegram.commands` (default true): answer commands from the configured chat.
    pub commands: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    /// `WATCHDOG_SLACK_WEBHOOK_URL[_FILE]`: a secret (the URL is the credential).
    pub webhook_url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `WATCHDOG_WEBHOOK_URL[_FILE]`.
    pub url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Signals of one compose project starting within this window go out as one message
    /// (default 2 s).
    pub group_window: Duration,
    /// Bounded delivery queue; when full the oldest message is dropped and counted (default 1024).
    pub queue_capacity: usize,
    /// Per-send timeout (default 10 s).
    pub timeout: Duration,
    /// Attempts per message per sink before giving up (default 5).
    pub max_attempts: u32,
    pub telegram: Option<TelegramConfig>,
    pub slack: Option<SlackConfig>,
    pub webhook: Option<WebhookConfig>,
    /// `notify.flap_transitions` (default 3), `notify.flap_window` (10m), `notify.flap_hold`
    /// (5m): see `notify::flap`.
    pub flap: crate::notify::flap::FlapSettings,
    /// `WATCHDOG_STATE_FILE`: where silences and acks persist when Redis is not configured.
    pub state_file: Option<PathBuf>,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            group_window: Duration::from_secs(2),
            queue_capacity: 1024,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            telegram: None,
            slack: None,
            webhook: None,
            flap: crate::notify::flap::FlapSettings::default(),
            state_file: None,
        }
    }
}

pub(crate) fn read_notify(r: &mut ConfigReader<'_>, n: &mut NotifyConfig) {
    if let Some(v) = r.duration("notify.group_window") {
        n.group_window = v.value;
    }
    if let Some(v) = r.get_checked("notify.queue_capacity", convert::usize, at_least_one) {
        n.queue_capacity = v.value;
    }
    if let Some(v) = r.get_checked("notify.timeout", convert::duration, positive) {
        n.timeout = v.value;
    }
    if let Some(v) = r.get_checked("notify.max_attempts", convert::u32, at_least_one) {
        n.max_attempts = v.value;
    }
    if let Some(v) = r.get("notify.flap_transitions", convert::u32) {
        n.flap.transitions = v.value;
    }
    if let Some(v) = r.get_checked("notify.flap_window", convert::duration, positive) {
        n.flap.window = v.value;
    }
    if let Some(v) = r.get_checked("notify.flap_hold", convert::duration, positive) {
        n.flap.hold = v.value;
    }
    if let Some(v) = r.string("notify.state_file")
        && !v.value.trim().is_empty()
    {
        n.state_file = Some(PathBuf::from(v.value.trim()));
    }
    n.telegram = read_telegram(r);
    n.slack = r
        .secret("notify.slack.webhook_url", "notify.slack.webhook_url_file")
        .and_then(|s| match secret_http_url(&s.value) {
            Ok(()) => Some(SlackConfig {
                webhook_url: s.value,
            }),
            Err(message) => {
                r.error(s.key().to_string(), message);
                None
            }
        });
    n.webhook = r
        .secret("notify.webhook.url", "notify.webhook.url_file")
        .and_then(|s| match secret_http_url(&s.value) {
            Ok(()) => Some(WebhookConfig { url: s.value }),
            Err(message) => {
                r.error(s.key().to_string(), message);
                None
            }
        });
}

pub(crate) fn chat_id(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.parse::<i64>().is_ok() || (s.len() > 1 && s.starts_with('@')) {
        Ok(())
    } else {
        Err(format!("{s:?}: expected a numeric chat id or @channelname"))
    }
}

pub(crate) fn read_telegram(r: &mut ConfigReader<'_>) -> Option<TelegramConfig> {
    let errors_before = r.errors().len();
    let token = r.secret(
        "notify.telegram.bot_token",
        "notify.telegram.bot_token_file",
    );
    let chat = r.get_checked("notify.telegram.chat_id", convert::string, |s| chat_id(s));
    let api_url = r.get("notify.telegram.api_url", |raw| {
        convert::string(raw).and_then(|s| http_url(&s))
    });
    let allowed_users = r.get("notify.telegram.allowed_users", |raw| {
        convert::string_list(raw).and_then(|items| {
            items
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("{s:?} is not a numeric Telegram user id"))
                })
                .collect::<Result<Vec<i64>, String>>()
        })
    });
    let commands = r.bool("notify.telegram.commands");
    if r.errors().len() > errors_before {
        return None; // something given was bad; a "missing partner" error would only add noise
    }
    match (token, chat) {
        (Some(token), Some(chat)) => Some(TelegramConfig {
            bot_token: token.value,
            chat_id: chat.value.trim().to_string(),
            api_url: api_url.map(|f| f.value),
            allowed_users: allowed_users.map(|f| f.value).unwrap_or_default(),
            commands: commands.is_none_or(|f| f.value),
        }),
        (Some(token), None) => {
            let key = r.key_for("notify.telegram.chat_id", token.origin.is_env());
            r.error(key, format!("required when {} is set", token.key()));
            None
        }
        (None, Some(chat)) => {
            let key = r.key_for("notify.telegram.bot_token_file", chat.origin.is_env());
            r.error(
                key,
                format!("a bot token is required when {} is set", chat.key()),
            );
            None
        }
        (None, None) => {
            if let Some(api) = api_url {
                r.error(
                    api.key().to_string(),
                    "set, but no Telegram bot token and chat id are configured",
                );
            }
            None
        }
    }
}
