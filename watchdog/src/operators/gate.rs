//! The notifier's operator filter, run on every notice before damping and grouping:
//!
//! 1. An alert (or re-alert) about a silenced subject is held, not sent. Its recovery while still
//!    held drops both: nothing was said, nothing needs taking back.
//! 2. When the silence ends (expired or `/unsilence`) and the held signal still fires, one
//!    "still firing after silence" notice goes out then.
//! 3. A re-alert about an acknowledged container is dropped; a recovery ends the ack.

use super::Operators;
use crate::notify::message::{Notice, Occasion};
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_shared::time::Timestamp;

pub struct Gate {
    ops: Arc<Operators>,
    /// Held alerts by signal key, with the id of the silence that holds them.
    held: BTreeMap<String, (Notice, String)>,
}

impl Gate {
    pub fn new(ops: Arc<Operators>) -> Gate {
        Gate {
            ops,
            held: BTreeMap::new(),
        }
    }

    pub fn admit(&mut self, notice: Notice, now: Timestamp) -> Option<Notice> {
        let key = notice.signal.key.clone();
        if notice.occasion.is_recovery() {
            if let Some(c) = notice.signal.subject.container.clone() {
                let ops = self.ops.clone();
                tokio::spawn(async move { ops.end_ack(&c).await });
            }
            if self.held.remove(&key).is_some() {
                tracing::info!(signal.key = %key, "Silenced signal recovered; nothing to send.");
                return None;
            }
            return Some(notice);
        }
        let book = self.ops.book();
        if let Some(s) = book.silence_for(&notice.signal.subject, now) {
            tracing::info!(
                signal.key = %key,
                silence.id = %s.id,
                silence.target = %s.target,
                "Alert silenced."
            );
            let id = s.id.clone();
            drop(book);
            self.held.insert(key, (notice, id));
            return None;
        }
        if notice.occasion == Occasion::Realert && book.is_acked(&notice.signal.subject, now) {
            tracing::debug!(signal.key = %key, "Re-alert of an acknowledged container dropped.");
            return None;
        }
        Some(notice)
    }

    /// Held alerts whose silence is over: they still fire (their recovery would have removed
    /// them), so they go out now.
    pub fn released(&mut self, now: Timestamp) -> Vec<Notice> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let book = self.ops.book();
        let mut out = Vec::new();
        self.held.retain(
            |_, (notice, id)| match book.silence_for(&notice.signal.subject, now) {
                Some(s) => {
                    *id = s.id.clone();
                    true
                }
                None => {
                    let mut n = notice.clone();
                    n.occasion = Occasion::SilenceEnded;
                    out.push(n);
                    false
                }
            },
        );
        out
    }

    /// When the soonest holding silence ends.
    pub fn next_deadline(&self, _now: Timestamp) -> Option<Timestamp> {
        let book = self.ops.book();
        self.held
            .values()
            .filter_map(|(_, id)| book.silences.get(id).map(|s| s.until))
            .min()
    }
}
