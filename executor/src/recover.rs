//! The pipeline's start-up and recovery steps: the file checked against the audit stream
//! (continuity), and intents without an outcome resolved from the containers' state.

use crate::audit::{AuditEntry, AuditRecord, Decision};
use crate::pipeline::{Pipeline, PipelineError, elapsed_ms, lock};
use std::time::Instant;
use vigil_docker::RunState;
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;

impl Pipeline {
    /// Compares the file's head with this executor's last record on the audit stream. A file
    /// behind the stream is refused unless `accept_gap`, which records the gap and goes on.
    pub async fn check_continuity(&self, accept_gap: bool) -> Result<(), PipelineError> {
        let Some((stream_seq, stream_hash)) = self.broker.audit_stream_head().await? else {
            return Ok(());
        };
        let path = self.journal.path().display().to_string();
        let (file_seq, _) = self.journal.head();
        if stream_seq <= file_seq {
            return match self.journal.with_log(|log| log.hash_of(stream_seq)).await? {
                Some(h) if h == stream_hash => Ok(()),
                Some(_) => Err(PipelineError::Continuity(format!(
                    "audit record #{stream_seq} in {path} differs from the one on the audit stream: the file was replaced or rewritten"
                ))),
                // The stream's record fell inside an accepted gap.
                None => Ok(()),
            };
        }
        let detail = format!(
            "the audit file {path} ends at record #{file_seq} but the audit stream holds record #{stream_seq} from this executor"
        );
        if !accept_gap {
            return Err(PipelineError::Continuity(format!(
                "{detail}: the file was deleted, replaced or restored from an older backup. Put the right file back, or start once with `vigil-executor run --accept-audit-gap` to record the gap and go on"
            )));
        }
        let rec = self
            .journal
            .with_log(|log| log.append_gap(stream_seq, &detail))
            .await?;
        tracing::warn!(
            audit.seq = rec.seq,
            "{detail}; the operator accepted the gap and it is recorded."
        );
        self.journal.queue_line(&rec);
        if let Err(e) = self.flush_audit_stream().await {
            tracing::warn!(error = %e, "Cannot publish the gap record yet; it is in the file.");
        }
        Ok(())
    }

    /// Records the outcome of every intent that has none, from the container's state now: an
    /// action that happened (a start after the intent) is `executed`, anything else `failed`.
    /// Each is resolved under its container's lock, so never beside a new action on it.
    pub async fn resolve_intents(&self) -> Result<usize, PipelineError> {
        let _one = self.resolving.lock().await;
        let mut pending: Vec<AuditRecord> = lock(&self.intents).values().cloned().collect();
        pending.sort_by_key(|r| r.seq);
        for intent in &pending {
            let started = Instant::now();
            let (Some(target), Some(action)) = (&intent.target, intent.action) else {
                lock(&self.intents).remove(intent.request_id.as_deref().unwrap_or(""));
                continue;
            };
            let _held = self.targets.lock(&target.id).await;
            let facts = self
                .engine
                .inspect(&target.id)
                .await
                .map_err(|e| PipelineError::Resolve(e.to_string()))?;
            let (done, why) = match (&facts, action) {
                (None, _) => (false, "the container no longer exists".to_string()),
                (Some(f), Action::Stop) => (
                    !matches!(f.state, RunState::Running),
                    format!("the container is {:?}", f.state),
                ),
                (Some(f), _) => match f.started_at {
                    Some(t) if t > intent.ts => (
                        true,
                        format!("the container started at {} ms, after the intent", t.0),
                    ),
                    _ => (
                        false,
                        "the container has not started since the intent".to_string(),
                    ),
                },
            };
            tracing::warn!(
                request.id = intent.request_id.as_deref().unwrap_or("-"),
                audit.intent_seq = intent.seq,
                done,
                detail = %why,
                "Resolved an action whose outcome was not recorded."
            );
            let entry = AuditEntry {
                ts: Timestamp::now(),
                request_id: intent.request_id.clone(),
                key_id: intent.key_id.clone(),
                action: intent.action,
                target: intent.target.clone(),
                decision: if done {
                    Decision::Executed
                } else {
                    Decision::Failed
                },
                reason: if done {
                    "resolved_after_crash"
                } else {
                    "interrupted"
                }
                .into(),
                result: Some(format!(
                    "outcome of intent #{} not recorded; resolved at {}: {why}",
                    intent.seq,
                    if done { "confirmed" } else { "not confirmed" }
                )),
                duration_ms: elapsed_ms(started),
                retry_at: None,
            };
            if done && action == Action::Stop {
                lock(&self.state).record_own_stop(&target.id, intent.ts, Timestamp::now());
            }
            self.record(entry).await?;
            if let Some(id) = &intent.request_id {
                lock(&self.intents).remove(id);
            }
        }
        Ok(pending.len())
    }
}
