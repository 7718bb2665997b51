//! Reads what the page shows about the executor through Redis: the audit stream (the last 24
//! hours at start-up, so the strips' action marks and the recent actions survive a restart, then
//! new entries as they come), the heartbeat and the pause key. Read-only: it never writes, and it
//! keeps its own cursor in memory, apart from the audit feed that tells people.

use super::board::{AuditView, Board};
use super::history::window_ms;
use crate::collect;
use crate::redis::audit_feed::RECORD_FIELD;
use crate::redis::link::{RedisLink, judge_heartbeat};
use ::redis::streams::{StreamRangeReply, StreamReadReply};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::Timestamp;

/// How often the reader looks for new audit entries and the executor's state.
pub const POLL: Duration = Duration::from_secs(1);
/// Audit entries read back at start-up at most.
const REBUILD_COUNT: usize = 1000;
/// Entries per read afterwards.
const READ_COUNT: usize = 200;

/// Runs until `cancel`; Redis failures are retried quietly (the probe reports Redis itself).
pub async fn run(link: Arc<RedisLink>, board: Arc<Board>, cancel: CancellationToken) {
    let mut cursor: Option<String> = None;
    loop {
        let now = Timestamp::now();
        if cursor.is_none() {
            match rebuild(&link, &board, now).await {
                Ok(c) => cursor = Some(c),
                Err(e) => tracing::debug!(error = %e, "Status page: audit history not read yet."),
            }
        }
        if let Some(c) = cursor.as_mut()
            && let Err(e) = follow(&link, &board, c).await
        {
            tracing::debug!(error = %e, "Status page: cannot read the audit stream.");
        }
        if let Err(e) = executor_state(&link, &board).await {
            tracing::debug!(error = %e, "Status page: cannot read the executor's state.");
        }
        if !collect::pause(&cancel, POLL).await {
            return;
        }
    }
}

/// Reads back the last 24 hours of the audit stream; returns the cursor to follow from.
async fn rebuild(
    link: &RedisLink,
    board: &Board,
    now: Timestamp,
) -> Result<String, crate::redis::link::LinkError> {
    let start = now.as_millis() - window_ms();
    let mut cmd = ::redis::cmd("XREVRANGE");
    cmd.arg(link.names().audit())
        .arg("+")
        .arg(format!("{start}-0"))
        .arg("COUNT")
        .arg(REBUILD_COUNT);
    let reply: StreamRangeReply = link.query(&cmd).await?;
    let cursor = reply
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    let mut n = 0usize;
    for entry in reply.ids.iter().rev() {
        if let Some(rec) = parse(entry) {
            board.record_audit(rec, now);
            n += 1;
        }
    }
    tracing::info!(
        audit.records = n,
        "Status page history rebuilt from the audit stream."
    );
    Ok(cursor)
}

async fn follow(
    link: &RedisLink,
    board: &Board,
    cursor: &mut String,
) -> Result<(), crate::redis::link::LinkError> {
    loop {
        // XREAD without BLOCK answers at once: entries after the cursor, or none.
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(link.names().audit())
            .arg(&*cursor);
        let reply: Option<StreamReadReply> = link.query(&cmd).await?;
        let ids: Vec<::redis::streams::StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        let now = Timestamp::now();
        let full = ids.len() == READ_COUNT;
        for entry in &ids {
            *cursor = entry.id.clone();
            if let Some(rec) = parse(entry) {
                board.record_audit(rec, now);
            }
        }
        if !full {
            return Ok(());
        }
    }
}

async fn executor_state(
    link: &RedisLink,
    board: &Board,
) -> Result<(), crate::redis::link::LinkError> {
    let key = link.names().executor_heartbeat();
    let mut pipe = ::redis::pipe();
    pipe.cmd("GET")
        .arg(&key)
        .cmd("EXISTS")
        .arg(link.names().pause());
    let (beat, paused): (Option<String>, bool) = link.pipeline(&pipe).await?;
    let now = Timestamp::now();
    let (ok, _) = judge_heartbeat(&key, beat.as_deref(), now);
    let at = beat.and_then(|v| v.trim().parse::<i64>().ok());
    board.set_executor(ok, at, paused, now);
    Ok(())
}

fn parse(entry: &::redis::streams::StreamId) -> Option<AuditView> {
    let json = entry.get::<String>(RECORD_FIELD)?;
    match serde_json::from_str(&json) {
        Ok(rec) => Some(rec),
        Err(e) => {
            tracing::debug!(audit.entry = %entry.id, error = %e, "Status page: unreadable audit record.");
            None
        }
    }
}
