//! The Telegram command loop: long polling with teloxide (`getUpdates` against the configured API
//! URL), one command at a time, every accepted command answered in the chat as a reply.
//!
//! Who may command: messages from the configured chat only, and when `allowed_users` is set only
//! from those user ids. Everything else is ignored (no answer: a stranger learns nothing, not
//! even that the bot is alive) and logged with the chat and user id.

use super::Operators;
use super::commands::{self, Command, HELP};
use crate::notify::config::TelegramConfig;
use crate::notify::format::Block;
use crate::notify::message::Message;
use crate::notify::sink::SendError;
use crate::notify::telegram::BotApi;
use crate::notify::text::truncate_chars;
use crate::redis::audit_feed::{AuditView, RECORD_FIELD};
use std::sync::Arc;
use std::time::Duration;
use teloxide::Bot;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::Requester;
use teloxide::types::{AllowedUpdate, UpdateKind};
use tokio_util::sync::CancellationToken;
use vigil_shared::time::{Timestamp, human_duration};

/// How long one `getUpdates` call waits for news.
const POLL_SECS: u32 = 25;
/// Wait after a failed poll.
const POLL_RETRY: Duration = Duration::from_secs(3);

/// Runs until `cancel` fires. Never returns an error: failures are logged and retried.
pub async fn run(
    config: TelegramConfig,
    timeout: Duration,
    ops: Arc<Operators>,
    cancel: CancellationToken,
) {
    let api = match BotApi::new(&config, timeout) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "Telegram commands disabled: the client cannot be set up.");
            return;
        }
    };
    let client = match teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(u64::from(POLL_SECS) + 10))
        .build()
    {
        Ok(c) => c,
        Err(_) => {
            tracing::error!("Telegram commands disabled: the HTTP client cannot be built.");
            return;
        }
    };
    let mut bot = Bot::with_client(config.bot_token.expose(), client);
    if let Some(url) = &config.api_url {
        bot = bot.set_api_url(url.clone());
    }
    let chat: Option<i64> = config.chat_id.trim().parse().ok();
    tracing::info!(
        telegram.allowed_users = config.allowed_users.len(),
        "Telegram commands enabled for the configured chat."
    );
    let mut offset: i32 = 0;
    loop {
        let poll = bot
            .get_updates()
            .offset(offset)
            .timeout(POLL_SECS)
            .allowed_updates(vec![AllowedUpdate::Message]);
        let updates = tokio::select! {
            _ = cancel.cancelled() => return,
            r = poll => r,
        };
        let updates = match updates {
            Ok(u) => u,
            Err(e) => {
                let text = e
                    .to_string()
                    .replace(config.bot_token.expose(), "<redacted>");
                tracing::warn!(error = %text, "Telegram getUpdates failed; retrying.");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(POLL_RETRY) => continue,
                }
            }
        };
        for update in updates {
            offset = offset.max(update.id.0 as i32 + 1);
            let UpdateKind::Message(msg) = update.kind else {
                continue;
            };
            let Some(text) = msg.text() else {
                continue;
            };
            let chat_id = msg.chat.id.0;
            let user_id = msg.from.as_ref().map(|u| u.id.0);
            let user_ok = config.allowed_users.is_empty()
                || user_id.is_some_and(|u| config.allowed_users.contains(&(u as i64)));
            if chat != Some(chat_id) || !user_ok {
                tracing::warn!(
                    telegram.chat_id = chat_id,
                    telegram.user_id = user_id,
                    "Telegram message from a chat or user not allowed; ignored."
                );
                continue;
            }
            let by = msg
                .from
                .as_ref()
                .map(|u| format!("{} ({})", u.full_name(), u.id.0))
                .unwrap_or_else(|| "unknown".into());
            let answer = match commands::parse(text) {
                Ok(None) => continue,
                Ok(Some(cmd)) => {
                    tracing::info!(telegram.user = %by, command = ?cmd, "Telegram command.");
                    execute(cmd, &ops, &by).await
                }
                Err(usage) => Message::plain("Vigil", usage),
            };
            if let Err(e) = send_answer(&api, &answer, i64::from(msg.id.0)).await {
                tracing::warn!(error = %e, "Answer to a Telegram command not delivered.");
            }
        }
    }
}

/// Sends an answer, retrying a rate limit or a network failure a few times.
async fn send_answer(api: &BotApi, answer: &Message, reply_to: i64) -> Result<(), SendError> {
    let html = answer.render_html();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api.send_html(&html, Some(reply_to)).await {
            Ok(_) => return Ok(()),
            Err(SendError::Retryable { after, .. }) if attempt < 3 => {
                tokio::time::sleep(
                    after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(30)),
                )
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one accepted command; the answer says what was done or why not.
pub async fn execute(cmd: Command, ops: &Operators, by: &str) -> Message {
    let now = Timestamp::now();
    match cmd {
        Command::Help => Message::plain("Vigil", HELP),
        Command::Silence {
            target,
            length,
            reason,
        } => match ops.silence(&target, length, &reason, by, now).await {
            Ok(s) => Message::from_blocks(
                format!("Silenced {} for {}", s.target, human_duration(length)),
                vec![
                    Block::field("id", &s.id),
                    Block::field("ends", format!("in {}", human_duration(length))),
                    Block::field("reason", if reason.is_empty() { "-" } else { &reason }),
                    Block::Line(format!("end it early with /unsilence {}", s.id)),
                ],
            ),
            Err(e) => Message::plain("Silence not set", e),
        },
        Command::Unsilence { id } => match ops.unsilence(&id).await {
            Ok(s) => Message::plain(
                format!("Silence {} ended", s.id),
                format!(
                    "{} is no longer silenced; what still fires is alerted now.",
                    s.target
                ),
            ),
            Err(e) => Message::plain("Nothing ended", e),
        },
        Command::Silences => {
            let list = super::SilenceView::active_silences(ops, now);
            if list.is_empty() {
                return Message::plain("No silences", "Nothing is silenced.");
            }
            let blocks = list
                .iter()
                .map(|s| {
                    Block::Item(format!(
                        "{} {}: {} left{}, by {}",
                        s.id,
                        s.target,
                        human_duration(s.until.since(now)),
                        if s.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", s.reason)
                        },
                        s.by
                    ))
                })
                .collect();
            Message::from_blocks(format!("{} silence(s)", list.len()), blocks)
        }
        Command::Ack { container } => match ops.ack(&container, by, now).await {
            Ok(_) => Message::plain(
                format!("Acknowledged {container}"),
                "No more re-alerts for its current incident; a recovery ends the acknowledgement.",
            ),
            Err(e) => Message::plain("Not acknowledged", e),
        },
        Command::Pause => match ops.set_pause(true).await {
            Ok(()) => Message::plain(
                "Remediation paused",
                "The executor refuses every action until /resume. Alerts continue.",
            ),
            Err(e) => Message::plain("Not paused", e),
        },
        Command::Resume => match ops.set_pause(false).await {
            Ok(()) => Message::plain("Remediation resumed", "The executor acts again."),
            Err(e) => Message::plain("Not resumed", e),
        },
        Command::Status => status(ops, now).await,
    }
}

/// What fires, for how long and what Vigil does about it; the executor's state; last actions.
async fn status(ops: &Operators, now: Timestamp) -> Message {
    let firing = ops.status.firing();
    let mut b = Vec::new();
    if firing.is_empty() {
        b.push(Block::Line("Nothing fires.".into()));
    } else {
        b.push(Block::Line(format!("{} firing:", firing.len())));
        for f in &firing {
            let remedy = f.remedy.clone().unwrap_or_else(|| "alert only".into());
            let phase = ops
                .status
                .phase_text(&f.key)
                .map(|p| format!("; now: {p}"))
                .unwrap_or_default();
            b.push(Block::Item(truncate_chars(
                &format!(
                    "[{}] {} {} for {}; remediation: {}{}",
                    f.severity,
                    f.kind,
                    f.label,
                    human_duration(now.since(f.since)),
                    remedy,
                    phase
                ),
                400,
            )));
        }
    }
    let silences = super::SilenceView::active_silences(ops, now);
    b.push(Block::field("silences", silences.len().to_string()));
    match ops.paused().await {
        None => b.push(Block::field(
            "remediation",
            "alert-only mode (no Redis): nothing is requested",
        )),
        Some(Ok(p)) => b.push(Block::field(
            "remediation",
            if p {
                "PAUSED (/resume to enable)"
            } else {
                "enabled"
            },
        )),
        Some(Err(e)) => b.push(Block::field("remediation", format!("unknown ({e})"))),
    }
    if let Some(link) = ops.redis() {
        executor_lines(link, now, &mut b).await;
    }
    Message::from_blocks("Vigil status", b)
}

async fn executor_lines(link: &crate::redis::link::RedisLink, now: Timestamp, b: &mut Vec<Block>) {
    let names = link.names();
    let beat: Result<Option<String>, _> = link
        .query(redis::cmd("GET").arg(names.executor_heartbeat()))
        .await;
    match beat {
        Ok(v) => {
            let (ok, detail) =
                crate::redis::link::judge_heartbeat(&names.executor_heartbeat(), v.as_deref(), now);
            b.push(Block::field(
                "executor",
                if ok { "alive".to_string() } else { detail },
            ));
        }
        Err(e) => b.push(Block::field("executor", format!("unknown ({e})"))),
    }
    let recent: Result<redis::streams::StreamRangeReply, _> = link
        .query(
            redis::cmd("XREVRANGE")
                .arg(names.audit())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(200),
        )
        .await;
    let Ok(recent) = recent else {
        return;
    };
    let records: Vec<AuditView> = recent
        .ids
        .iter()
        .filter_map(|e| e.get::<String>(RECORD_FIELD))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect();
    let hour_ago = now.minus(Duration::from_secs(3600));
    let in_hour = |r: &&AuditView| r.ts.is_some_and(|t| t >= hour_ago);
    let executed = records
        .iter()
        .filter(in_hour)
        .filter(|r| r.decision == "executed")
        .count();
    let dry = records
        .iter()
        .filter(in_hour)
        .filter(|r| r.decision == "dry_run")
        .count();
    let budget = records
        .iter()
        .filter(in_hour)
        .filter(|r| r.reason.contains("budget"))
        .count();
    b.push(Block::field(
        "actions (last hour)",
        format!("{executed} executed, {dry} dry-run, {budget} refused by budget"),
    ));
    if let Some(last) = records
        .iter()
        .find(|r| r.decision == "executed" || r.decision == "dry_run")
    {
        b.push(Block::field(
            "dry-run",
            if last.decision == "dry_run" {
                "yes (last action was a dry run)"
            } else {
                "no"
            },
        ));
    }
    for r in records.iter().take(3) {
        b.push(Block::Item(format!(
            "audit #{}: {} {} {} ({})",
            r.seq,
            r.decision,
            r.action.as_deref().unwrap_or("-"),
            r.target
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_else(|| "-".into()),
            r.reason
        )));
    }
}
