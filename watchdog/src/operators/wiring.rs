//! How the engine sets the operators up and feeds them: the store chosen from the configuration,
//! the command loop started when Telegram commands are on, the firing list published for
//! `/status`, and the words for what Vigil will do.

use super::Operators;
use super::status::Firing;
use super::store::Store;
use crate::config::Config;
use crate::plan::Remediation;
use crate::redis::link::RedisLink;
use crate::signals::Signal;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::Timestamp;

/// Builds the operators' state, loads what was stored and starts the command loop.
pub async fn start(cfg: &Config, cancel: &CancellationToken) -> anyhow::Result<Arc<Operators>> {
    let redis = match &cfg.redis {
        Some(r) => Some(Arc::new(RedisLink::new(r)?)),
        None => None,
    };
    let store = match (&redis, &cfg.notify.state_file) {
        (Some(link), _) => Store::Redis(link.clone()),
        (None, Some(path)) => Store::File(path.clone()),
        (None, None) => {
            tracing::info!(
                "Silences and acks are kept in memory only (no Redis, no WATCHDOG_STATE_FILE): \
                 a restart forgets them."
            );
            Store::Memory
        }
    };
    let ops = Operators::new(store, redis);
    ops.load().await;
    if let Some(tg) = cfg.notify.telegram.clone().filter(|t| t.commands) {
        tokio::spawn(super::bot::run(
            tg,
            cfg.notify.timeout,
            ops.clone(),
            cancel.child_token(),
        ));
    }
    Ok(ops)
}

/// Publishes what fires for `/status`.
pub fn publish_firing(ops: &Operators, firing: Vec<(Signal, Timestamp)>) {
    let list = firing
        .into_iter()
        .map(|(s, since)| {
            let n = crate::notify::Notice::new(crate::notify::Occasion::Alert, s, "");
            Firing {
                label: n.subject_label(false),
                key: n.signal.key.clone(),
                kind: n.signal.kind,
                severity: n.signal.severity,
                since,
                remedy: None,
            }
        })
        .collect();
    ops.status.set_firing(list);
}

/// What an alert says Vigil does about it.
pub fn remedy_text(r: &Remediation, requested: bool) -> String {
    if requested {
        format!("{} requested from the executor: {}", r.action, r.reason)
    } else {
        format!(
            "would {} ({}), but this watchdog is alert-only (no Redis or signing key): nothing \
             was requested",
            r.action, r.reason
        )
    }
}

/// The incident machine's incidents after a step (None: ended), for `/status` and the status
/// page: both show the phase, not only the planned action.
pub fn publish_incidents<'a>(
    ops: &Operators,
    board: &crate::status_page::Board,
    incidents: impl IntoIterator<Item = (&'a str, Option<&'a crate::incident::Incident>)>,
) {
    for (key, inc) in incidents {
        ops.status.note_incident(key, inc);
        board.note_incident(key, inc);
    }
}
