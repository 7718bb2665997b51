//! One request, start to finish: verify -> reserve the nonce -> switches -> inspect -> policy
//! -> act -> audit. The caller acknowledges the stream entry once [`Pipeline::handle`] returns
//! `Ok` (the record is durable by then).
//!
//! I/O sits behind two narrow traits so the whole flow runs in unit tests with doubles:
//! [`Broker`] (nonce reservations, the pause key, the audit stream: Redis in production) and
//! [`Engine`] (inspect and act: Docker). Records go to the audit file through group commit
//! ([`crate::commit`]): durable (`fdatasync`) before anything is acknowledged.
//!
//! # Concurrency
//! The pipeline is shared (`&self`): the consumer runs requests for different containers side by
//! side. What makes that safe:
//! - one container at a time: a lock per resolved container id ([`TargetLocks`]) is held from
//!   the inspect through the policy, the intent, the Docker call and the outcome record; a
//!   request that had to wait inspects again, so it sees what the one before it did;
//! - the host budget, the breaker and the backoff are decided and reserved in one step: the
//!   policy is evaluated and the action recorded in [`PolicyState`] under one lock, before the
//!   intent is written (and given back if the intent cannot be written);
//! - one chain: only group commit seals records, one batch at a time.
//!
//! # Exactly once
//! The nonce reservation stores the stream entry id (`SET nonce <entry-id> NX`). When the
//! reservation already exists:
//! - held by *another* entry: a replay, rejected and audited as `replay`;
//! - held by *this* entry and this request already has a final record: the executor crashed
//!   after auditing and before acknowledging; it only acknowledges (no second action, no second
//!   record);
//! - held by this entry without a record: the crash happened mid-flight; the request goes on
//!   through a fresh inspect and policy, whose fresh-state rule refuses a second restart or start
//!   if the first one happened (the container started after the request was issued).
//!
//! Every rejection and refusal is audited with its reason and makes no Docker write; rejections
//! and the kill switch, pause and allowlist rules make no Docker call at all.

use crate::act::{ActError, Engine};
use crate::audit::{AuditEntry, AuditError, AuditRecord, Decision};
pub use crate::broker::{Broker, BrokerError, Reservation};
use crate::commit::{CommitError, Journal};
use crate::journal::{AuditLog, LogLimits};
use crate::lanes::TargetLocks;
use crate::metrics::Metrics;
use crate::policy::{self, Denied, PolicySettings, PolicyState, Switches, TargetFacts};
use crate::rejections::RejectionLog;
use crate::verify::{Rejected, Verifier};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vigil_protocol::wire::{Payload, Target};
use vigil_shared::time::Timestamp;

/// How long the executor remembers which requests it audited (for re-deliveries): longer than
/// any nonce reservation.
const AUDITED_MEMORY: Duration = Duration::from_secs(2 * 3600);

/// Why a request could not be finished; the entry stays pending and is retried.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot write the audit log: {0}")]
    Audit(#[from] AuditError),
    /// The write or sync of a batch failed (rolled back; nothing of it is in the file).
    #[error("cannot write the audit log: {0}")]
    Write(String),
    /// The audit log cannot be written right now (checked before anything is done).
    #[error("cannot audit: {0}")]
    CannotAudit(String),
    /// An interrupted action could not be resolved yet (the engine did not answer).
    #[error("cannot resolve an interrupted action: {0}")]
    Resolve(String),
    /// The file is behind the audit stream (replaced, restored, deleted).
    #[error("{0}")]
    Continuity(String),
}

impl From<CommitError> for PipelineError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::CannotAudit(why) => PipelineError::CannotAudit(why),
            CommitError::Write(why) => PipelineError::Write(why),
        }
    }
}

/// How one entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when the entry had been audited before (re-delivery after a crash): nothing new
    /// was recorded.
    pub decision: Option<Decision>,
    /// Rejection reason, policy rule, `ok`, or `already_audited`.
    pub reason: String,
    pub request_id: Option<String>,
    /// The audit record's `seq`, when one was written.
    pub seq: Option<u64>,
}

impl From<AuditRecord> for Outcome {
    fn from(rec: AuditRecord) -> Self {
        Outcome {
            decision: Some(rec.decision),
            reason: rec.reason,
            request_id: rec.request_id,
            seq: Some(rec.seq),
        }
    }
}

/// Static settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub verifier: Verifier,
    pub policy: PolicySettings,
    pub enabled: bool,
    pub dry_run: bool,
    /// Rotation size and free-space floor of the audit files.
    pub limits: LogLimits,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request pipeline and the state it carries between requests. Shared by every request in
/// flight (`&self` throughout).
pub struct Pipeline {
    pub(crate) opts: PipelineOptions,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) journal: Journal,
    pub(crate) state: Mutex<PolicyState>,
    /// Requests with a final (non-rejected) record, by id, with the record's time.
    audited: Mutex<HashMap<String, Timestamp>>,
    /// Intent records with no outcome (a crash, or an outcome that could not be written), by
    /// request id; resolved before anything else. Intents of requests in flight are not here.
    pub(crate) intents: Mutex<HashMap<String, AuditRecord>>,
    /// One resolution of dangling intents at a time.
    pub(crate) resolving: tokio::sync::Mutex<()>,
    /// One action per container at a time.
    pub(crate) targets: TargetLocks,
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// Rejections are logged a few per reason, the rest summarised.
    rejections: RejectionLog,
}

impl Pipeline {
    /// Opens (and verifies) the audit log at `audit_path` and rebuilds policy state from it.
    pub fn open(
        opts: PipelineOptions,
        audit_path: &Path,
        engine: Arc<dyn Engine>,
        broker: Arc<dyn Broker>,
    ) -> Result<Pipeline, AuditError> {
        let mut state = PolicyState::new();
        let mut audited = HashMap::new();
        let mut intents: HashMap<String, AuditRecord> = HashMap::new();
        let mut n = 0u64;
        let (audit, _, _) = AuditLog::open_with(audit_path, opts.limits, None, |rec| {
            let outcome_of_intent = matches!(rec.decision, Decision::Executed | Decision::Failed)
                && rec
                    .request_id
                    .as_ref()
                    .is_some_and(|id| intents.remove(id).is_some());
            if rec.decision == Decision::Intent
                && let Some(id) = &rec.request_id
            {
                intents.insert(id.clone(), rec.clone());
            }
            // The intent counted the action; its outcome must not count it again.
            if outcome_of_intent {
                state.observe_outcome(rec);
            } else {
                state.observe(rec);
            }
            remember(&mut audited, rec);
            n += 1;
            if n.is_multiple_of(4096) {
                let horizon = rec.ts.minus(AUDITED_MEMORY);
                audited.retain(|_, t| *t >= horizon);
                state.prune(&opts.policy, rec.ts);
            }
        })?;
        if !intents.is_empty() {
            tracing::warn!(
                audit.intents = intents.len(),
                "The audit log ends with actions whose outcome was never recorded (a crash mid-action); resolving them from the containers' state."
            );
        }
        Ok(Pipeline {
            opts,
            engine,
            broker,
            journal: Journal::new(audit),
            state: Mutex::new(state),
            audited: Mutex::new(audited),
            intents: Mutex::new(intents),
            resolving: tokio::sync::Mutex::new(()),
            targets: TargetLocks::default(),
            metrics: None,
            rejections: RejectionLog::default(),
        })
    }

    /// Counts decisions, action durations and open breakers into `metrics` from now on.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Pipeline {
        metrics
            .set_circuit_open(lock(&self.state).open_breakers(&self.opts.policy, Timestamp::now()));
        self.metrics = Some(metrics);
        self
    }

    /// The request check (signature, deployment, time window), for callers that sort entries
    /// before handling them.
    pub fn verifier(&self) -> &Verifier {
        &self.opts.verifier
    }

    /// How rejections are logged (a few per reason, the rest summarised).
    pub fn rejections(&self) -> &RejectionLog {
        &self.rejections
    }

    /// `(seq, hash)` of the audit log's last durable record.
    pub fn audit_head(&self) -> (u64, String) {
        self.journal.head()
    }

    /// A copy of the policy state.
    #[cfg(test)]
    pub fn policy_state(&self) -> PolicyState {
        lock(&self.state).clone()
    }

    /// Why the audit log cannot be written now, or `Ok` when it can.
    pub async fn check_audit(&self) -> Result<(), String> {
        self.journal.check_writable().await
    }

    /// Handles one stream entry. `raw` is its `envelope` field (`None` when the entry has none).
    pub async fn handle(
        &self,
        entry_id: &str,
        raw: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Outcome, PipelineError> {
        let started = Instant::now();
        self.check_audit()
            .await
            .map_err(PipelineError::CannotAudit)?;
        if !lock(&self.intents).is_empty() {
            self.resolve_intents().await?;
        }
        let verified = match raw {
            None => Err(Rejected {
                rejection: vigil_protocol::wire::Rejection::BadEnvelope(
                    "the stream entry has no envelope field".into(),
                ),
                key_id: None,
                request_id: None,
            }),
            Some(raw) => self.opts.verifier.verify(raw, now),
        };
        let verified = match verified {
            Ok(v) => v,
            Err(rejected) => {
                let entry = rejection_entry(
                    &self.rejections,
                    entry_id,
                    &rejected,
                    now,
                    elapsed_ms(started),
                );
                return self.record(entry).await;
            }
        };
        let key_id = verified.key_id;
        let req = verified.payload;
        let request_id = req.id.to_string();
        let ttl = nonce_ttl(&req, now, self.opts.policy.max_skew);

        match self.broker.reserve_nonce(&req.nonce, entry_id, ttl).await? {
            Reservation::Reserved => crate::fault::point("after_reserve"),
            Reservation::HeldBy(holder) if holder == entry_id => {
                if lock(&self.audited).contains_key(&request_id) {
                    tracing::info!(
                        stream.entry_id = entry_id,
                        request.id = %request_id,
                        "Re-delivered request was already audited; acknowledging only."
                    );
                    if let Some(m) = &self.metrics {
                        m.request("redelivered", "already_audited");
                    }
                    return Ok(Outcome {
                        decision: None,
                        reason: "already_audited".into(),
                        request_id: Some(request_id),
                        seq: None,
                    });
                }
                tracing::warn!(
                    stream.entry_id = entry_id,
                    request.id = %request_id,
                    "Re-delivered request was reserved but never audited (crash mid-flight); re-checking it."
                );
            }
            Reservation::HeldBy(holder) => {
                if self.rejections.admit("replay") {
                    tracing::warn!(
                        stream.entry_id = entry_id,
                        request.id = %request_id,
                        request.key_id = %key_id,
                        replay.first_entry = %holder,
                        "Rejected a replayed request."
                    );
                }
                let entry = AuditEntry {
                    ts: now,
                    request_id: Some(request_id),
                    key_id: Some(key_id),
                    action: Some(req.action),
                    target: Some(req.target.clone()),
                    decision: Decision::Rejected,
                    reason: "replay".into(),
                    result: Some(format!("nonce already used by stream entry {holder}")),
                    duration_ms: elapsed_ms(started),
                    retry_at: None,
                };
                return self.record(entry).await;
            }
        }

        let switches = Switches {
            enabled: self.opts.enabled,
            paused: self.broker.paused().await?,
            dry_run: self.opts.dry_run,
        };
        let base = AuditEntry {
            ts: now,
            request_id: Some(request_id.clone()),
            key_id: Some(key_id.clone()),
            action: Some(req.action),
            target: Some(req.target.clone()),
            decision: Decision::Refused,
            reason: String::new(),
            result: None,
            duration_ms: 0,
            retry_at: None,
        };
        if let Err(denied) = policy::precheck(&req, &self.opts.policy, switches) {
            return self.refuse(base, &req, None, denied, started).await;
        }
        // One container at a time: held through the outcome record. A request that names it
        // by a short id or a name also holds its full id, and inspects again if it waited.
        let _named = self.targets.lock(&req.target.id).await;
        let inspect = || self.engine.inspect(&req.target.id);
        let mut facts = match inspect().await {
            Ok(facts) => facts,
            Err(e) => return self.failed(base, None, "inspect_failed", &e, started).await,
        };
        let full_id = facts.as_ref().map(|f| f.id.clone());
        let mut _resolved = None;
        if let Some(id) = full_id.filter(|id| *id != req.target.id) {
            let (guard, free) = self.targets.lock(&id).await;
            _resolved = Some(guard);
            if !free {
                facts = match inspect().await {
                    Ok(facts) => facts,
                    Err(e) => {
                        return self.failed(base, None, "inspect_failed", &e, started).await;
                    }
                };
            }
        }
        // Time moved on while this request waited for the container.
        let now = now.plus(started.elapsed());
        let base = AuditEntry { ts: now, ..base };
        let decided = {
            let mut state = lock(&self.state);
            let decided = policy::evaluate(
                &req,
                facts.as_ref(),
                &state,
                &self.opts.policy,
                switches,
                now,
            );
            // The budget, breaker and backoff are reserved in the same step as the decision.
            if let Ok(permit) = &decided
                && !permit.is_dry_run()
            {
                state.record(permit.container_id(), now);
            }
            decided
        };
        let permit = match decided {
            Ok(permit) => permit,
            Err(denied) => {
                return self
                    .refuse(base, &req, facts.as_ref(), denied, started)
                    .await;
            }
        };
        let target = resolved_target(&req, facts.as_ref());
        if permit.is_dry_run() {
            tracing::info!(
                request.id = %request_id,
                request.action = %req.action,
                container.name = permit.container_name(),
                "Dry-run: policy permits this request; nothing done."
            );
            let entry = AuditEntry {
                target,
                decision: Decision::DryRun,
                reason: "dry_run".into(),
                result: Some("permitted; dry-run, nothing done".into()),
                duration_ms: elapsed_ms(started),
                ..base
            };
            return self.record(entry).await;
        }
        // Write-ahead: the intent is durable before the Docker call, and counts as an action.
        let intent = self
            .record_rec(AuditEntry {
                target: target.clone(),
                decision: Decision::Intent,
                reason: "ok".into(),
                result: Some(format!(
                    "about to {} {}",
                    req.action,
                    permit.container_name()
                )),
                duration_ms: elapsed_ms(started),
                ..base.clone()
            })
            .await;
        let intent = match intent {
            Ok(intent) => intent,
            Err(e) => {
                // Not acted on: give the reserved action back.
                lock(&self.state).forget(permit.container_id(), now);
                return Err(e);
            }
        };
        crate::fault::point("after_intent");
        let act_started = Instant::now();
        let result = self.engine.act(&permit).await;
        crate::fault::point("after_act");
        if let Some(m) = &self.metrics {
            m.action_duration(permit.action(), act_started.elapsed());
        }
        let out = match result {
            Ok(what) => {
                if permit.action() == vigil_protocol::wire::Action::Stop {
                    let done = now.plus(act_started.elapsed());
                    lock(&self.state).record_own_stop(permit.container_id(), now, done);
                }
                tracing::info!(
                    request.id = %request_id,
                    request.key_id = %key_id,
                    request.action = %req.action,
                    container.id = permit.container_id(),
                    container.name = permit.container_name(),
                    result = %what,
                    "Executed a request."
                );
                let entry = AuditEntry {
                    target,
                    decision: Decision::Executed,
                    reason: "ok".into(),
                    result: Some(what),
                    duration_ms: elapsed_ms(started),
                    ..base
                };
                self.record(entry).await
            }
            Err(e) => self.failed(base, target, "engine_error", &e, started).await,
        };
        // If the outcome could not be written, the intent is left dangling: it is resolved from
        // the container's state before anything else is done.
        if out.is_err() {
            lock(&self.intents).insert(request_id, intent);
        }
        out
    }

    /// Audits a stream entry that is not a request at all (not UTF-8, no envelope, over the
    /// cap, an id from the future). The record names its id and size, never its content.
    pub async fn malformed(
        &self,
        entry_id: &str,
        size: usize,
        why: &str,
        now: Timestamp,
    ) -> Result<Outcome, PipelineError> {
        self.record(malformed_entry(&self.rejections, entry_id, size, why, now))
            .await
    }

    /// Audits entries decided without a Docker call (rejections, malformed entries) with one
    /// commit: all durable when this returns `Ok`.
    pub async fn record_batch(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<AuditRecord>, PipelineError> {
        let recs = self.journal.commit(entries).await?;
        for rec in &recs {
            self.counted(rec);
        }
        Ok(recs)
    }

    /// Audits an entry moved to the dead-letter stream after `deliveries` deliveries.
    pub async fn dead_letter(
        &self,
        entry_id: &str,
        deliveries: u64,
        now: Timestamp,
    ) -> Result<Outcome, PipelineError> {
        self.check_audit()
            .await
            .map_err(PipelineError::CannotAudit)?;
        tracing::warn!(
            stream.entry_id = entry_id,
            stream.deliveries = deliveries,
            "Moved a request to the dead-letter stream."
        );
        let entry = AuditEntry {
            ts: now,
            request_id: None,
            key_id: None,
            action: None,
            target: None,
            decision: Decision::Rejected,
            reason: "dead_letter".into(),
            result: Some(format!(
                "stream entry {entry_id} delivered {deliveries} times; moved to the dead-letter stream"
            )),
            duration_ms: 0,
            retry_at: None,
        };
        self.record(entry).await
    }

    /// Pushes audit lines the stream lacks (after a Redis outage or a crash between the file
    /// and the stream). Returns how many were published.
    pub async fn flush_audit_stream(&self) -> Result<usize, BrokerError> {
        self.journal.flush(self.broker.as_ref()).await
    }

    /// Queues every file record newer than the stream's last one (start-up, after connecting).
    pub async fn resync_audit_stream(&self) -> Result<usize, PipelineError> {
        let stream_head = self.broker.audit_stream_head().await?.map_or(0, |(s, _)| s);
        let file_head = self.journal.head().0;
        if stream_head >= file_head {
            return Ok(self.flush_audit_stream().await?);
        }
        tracing::info!(
            audit.stream_head = stream_head,
            audit.file_head = file_head,
            "Re-publishing audit records the stream lacks."
        );
        self.journal
            .resync(self.broker.as_ref(), stream_head)
            .await
            .map_err(|e| match e {
                crate::commit::ResyncError::Audit(e) => PipelineError::Audit(e),
                crate::commit::ResyncError::Broker(e) => PipelineError::Broker(e),
            })
    }

    /// Forgets old policy history and audited ids.
    pub fn prune(&self, now: Timestamp) {
        let open = {
            let mut state = lock(&self.state);
            state.prune(&self.opts.policy, now);
            state.open_breakers(&self.opts.policy, now)
        };
        let horizon = now.minus(AUDITED_MEMORY);
        lock(&self.audited).retain(|_, t| *t >= horizon);
        if let Some(m) = &self.metrics {
            m.set_circuit_open(open);
        }
    }

    async fn refuse(
        &self,
        base: AuditEntry,
        req: &Payload,
        facts: Option<&TargetFacts>,
        denied: Denied,
        started: Instant,
    ) -> Result<Outcome, PipelineError> {
        tracing::warn!(
            request.id = base.request_id.as_deref().unwrap_or("-"),
            request.key_id = base.key_id.as_deref().unwrap_or("-"),
            request.action = %req.action,
            container.name = %req.target.name,
            policy.rule = denied.rule,
            policy.detail = %denied.detail,
            "Refused a request."
        );
        if let Some(f) = facts {
            lock(&self.state).observe_denial(&f.id, &denied, base.ts);
        }
        let retry_at = match denied.rule {
            "paused" => Some(base.ts.plus(policy::PAUSED_RETRY)),
            _ => denied.retry_at,
        };
        let entry = AuditEntry {
            target: resolved_target(req, facts),
            decision: Decision::Refused,
            reason: denied.rule.to_string(),
            result: Some(denied.detail),
            retry_at,
            duration_ms: elapsed_ms(started),
            ..base
        };
        self.record(entry).await
    }

    async fn failed(
        &self,
        base: AuditEntry,
        target: Option<Target>,
        reason: &str,
        error: &ActError,
        started: Instant,
    ) -> Result<Outcome, PipelineError> {
        tracing::error!(
            request.id = base.request_id.as_deref().unwrap_or("-"),
            reason,
            error = %error,
            "A request failed at the Docker engine."
        );
        let entry = AuditEntry {
            target: target.or(base.target.clone()),
            decision: Decision::Failed,
            reason: reason.to_string(),
            result: Some(error.to_string()),
            duration_ms: elapsed_ms(started),
            ..base
        };
        self.record(entry).await
    }

    /// Appends to the file (group commit, durable on return), then queues it for the stream
    /// and tries to publish (a stream failure is logged and retried later, never fatal).
    pub(crate) async fn record(&self, entry: AuditEntry) -> Result<Outcome, PipelineError> {
        self.record_rec(entry).await.map(Outcome::from)
    }

    async fn record_rec(&self, entry: AuditEntry) -> Result<AuditRecord, PipelineError> {
        let rec = self
            .journal
            .commit(vec![entry])
            .await?
            .pop()
            .ok_or_else(|| PipelineError::Write("the commit returned no record".into()))?;
        self.counted(&rec);
        if let Err(e) = self.flush_audit_stream().await {
            tracing::warn!(
                error = %e,
                audit.backlog = self.journal.backlog_len(),
                "Cannot publish to the audit stream; the record is in the file and will be published later."
            );
        }
        Ok(rec)
    }

    /// Remembers a durable record (re-deliveries) and counts it in the metrics.
    fn counted(&self, rec: &AuditRecord) {
        remember(&mut lock(&self.audited), rec);
        if let Some(m) = &self.metrics {
            // An intent is the write-ahead half of one decision, not a request of its own: the
            // outcome record that follows counts it.
            if rec.decision != Decision::Intent {
                m.request(rec.decision.as_str(), &rec.reason);
            }
            if matches!(rec.decision, Decision::Intent | Decision::Refused) {
                m.set_circuit_open(lock(&self.state).open_breakers(&self.opts.policy, rec.ts));
            }
        }
    }
}

/// The audit entry of a request that did not verify (logged here, once, through `log`).
pub fn rejection_entry(
    log: &RejectionLog,
    entry_id: &str,
    rejected: &Rejected,
    now: Timestamp,
    duration_ms: u64,
) -> AuditEntry {
    if log.admit(rejected.reason()) {
        tracing::warn!(
            stream.entry_id = entry_id,
            request.id = rejected.request_id.as_deref().unwrap_or("-"),
            request.key_id = rejected.key_id.as_deref().unwrap_or("-"),
            verify.reason = rejected.reason(),
            verify.detail = %rejected.rejection,
            "Rejected a request."
        );
    }
    AuditEntry {
        ts: now,
        request_id: rejected.request_id.clone(),
        key_id: rejected.key_id.clone(),
        action: None,
        target: None,
        decision: Decision::Rejected,
        reason: rejected.reason().to_string(),
        result: Some(rejected.rejection.to_string()),
        duration_ms,
        retry_at: None,
    }
}

/// The audit entry of a stream entry that is not a request at all (logged here, once, through
/// `log`).
pub fn malformed_entry(
    log: &RejectionLog,
    entry_id: &str,
    size: usize,
    why: &str,
    now: Timestamp,
) -> AuditEntry {
    if log.admit("malformed") {
        tracing::warn!(
            stream.entry_id = entry_id,
            stream.entry_bytes = size,
            stream.malformed = why,
            "Acknowledged a malformed stream entry without reading it as a request."
        );
    }
    AuditEntry {
        ts: now,
        request_id: None,
        key_id: None,
        action: None,
        target: None,
        decision: Decision::Rejected,
        reason: "malformed".into(),
        result: Some(format!("stream entry {entry_id} ({size} bytes): {why}")),
        duration_ms: 0,
        retry_at: None,
    }
}

/// Requests with a final record: anything but a rejection (a replay record carries the
/// original's id, and must not make the original look finished).
fn remember(audited: &mut HashMap<String, Timestamp>, rec: &AuditRecord) {
    if !matches!(rec.decision, Decision::Rejected | Decision::Intent)
        && let Some(id) = &rec.request_id
    {
        audited.insert(id.clone(), rec.ts);
    }
}

/// The audit's target: the inspected container's full id and name when known.
fn resolved_target(req: &Payload, facts: Option<&TargetFacts>) -> Option<Target> {
    Some(match facts {
        Some(f) => Target {
            id: f.id.clone(),
            name: f.name.clone(),
            project: f.project.clone().or_else(|| req.target.project.clone()),
            service: f.service.clone().or_else(|| req.target.service.clone()),
        },
        None => req.target.clone(),
    })
}

/// Outlives the request's acceptance window by a wide margin: `expires_at - now + 2 x skew +
/// 1 h`.
pub fn nonce_ttl(req: &Payload, now: Timestamp, max_skew: Duration) -> Duration {
    let remaining = Duration::from_millis(req.expires_at.0.saturating_sub(now.0).max(0) as u64);
    remaining + max_skew * 2 + Duration::from_secs(3600)
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{LABEL_REMEDIATE, Permit};
    use futures_util::future::BoxFuture;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use vigil_docker::{Health, RunState};
    use vigil_protocol::signing::{Signer, SigningKey, VerifyKeys};
    use vigil_protocol::wire::{Action, Reason};

    const NOW: Timestamp = Timestamp(1_700_000_000_000);
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    struct FakeBroker {
        nonces: Mutex<HashMap<String, String>>,
        paused: Mutex<bool>,
        down: Mutex<bool>,
        stream: Mutex<Vec<String>>,
    }

    impl Broker for FakeBroker {
        fn reserve_nonce<'a>(
            &'a self,
            nonce: &'a str,
            entry_id: &'a str,
            _ttl: Duration,
        ) -> BoxFuture<'a, Result<Reservation, BrokerError>> {
            Box::pin(async move {
                if *self.down.lock().expect("lock") {
                    return Err(BrokerError("down".into()));
                }
                let mut n = self.nonces.lock().expect("lock");
                Ok(match n.get(nonce) {
                    Some(holder) => Reservation::HeldBy(holder.clone()),
                    None => {
                        n.insert(nonce.into(), entry_id.into());
                        Reservation::Reserved
                    }
                })
            })
        }
        fn paused(&self) -> BoxFuture<'_, Result<bool, BrokerError>> {
            Box::pin(async move { Ok(*self.paused.lock().expect("lock")) })
        }
        fn publish_audit<'a>(&'a self, line: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
            Box::pin(async move {
                if *self.down.lock().expect("lock") {
                    return Err(BrokerError("down".into()));
                }
                self.stream.lock().expect("lock").push(line.into());
                Ok(())
            })
        }
        fn audit_stream_head(&self) -> BoxFuture<'_, Result<Option<(u64, String)>, BrokerError>> {
            Box::pin(async move {
                let s = self.stream.lock().expect("lock");
                Ok(s.last()
                    .and_then(|l| serde_json::from_str::<AuditRecord>(l).ok())
                    .map(|r| (r.seq, r.hash)))
            })
        }
    }

    struct FakeEngine {
        facts: Mutex<Option<TargetFacts>>,
        calls: Mutex<Vec<String>>,
    }

    impl FakeEngine {
        fn new(facts: Option<TargetFacts>) -> FakeEngine {
            FakeEngine {
                facts: Mutex::new(facts),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("lock").clone()
        }
    }

    impl Engine for FakeEngine {
        fn inspect<'a>(
            &'a self,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<TargetFacts>, ActError>> {
            Box::pin(async move {
                self.calls
                    .lock()
                    .expect("lock")
                    .push(format!("inspect {id}"));
                Ok(self.facts.lock().expect("lock").clone())
            })
        }
        fn act<'a>(&'a self, permit: &'a Permit) -> BoxFuture<'a, Result<String, ActError>> {
            Box::pin(async move {
                self.calls.lock().expect("lock").push(format!(
                    "{} {}",
                    permit.action(),
                    permit.container_id()
                ));
                if let Some(f) = self.facts.lock().expect("lock").as_mut() {
                    f.started_at = Some(Timestamp(i64::MAX / 2));
                }
                Ok("restarted".into())
            })
        }
    }

    fn signer() -> Signer {
        Signer::new("wd1", SigningKey::from_bytes(&[7; 32])).expect("key id")
    }

    fn facts() -> TargetFacts {
        TargetFacts {
            id: ID.into(),
            name: "web-1".into(),
            project: None,
            service: None,
            labels: BTreeMap::from([(LABEL_REMEDIATE.to_string(), "true".to_string())]),
            state: RunState::Running,
            health: Health::Unhealthy,
            exit_code: 0,
            oom_killed: false,
            started_at: Some(NOW.minus(Duration::from_secs(600))),
            finished_at: None,
            stop_timeout: None,
        }
    }

    fn request(issued: Timestamp) -> Vec<u8> {
        let p = Payload::new(
            "prod",
            Action::Restart,
            Target {
                id: ID.into(),
                name: "web-1".into(),
                project: None,
                service: None,
            },
            Reason::new("container_unhealthy", "high", "x", 0.9),
            issued,
        );
        signer().sign(&p).expect("signs").to_json().into_bytes()
    }

    struct Rig {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        broker: Arc<FakeBroker>,
        engine: Arc<FakeEngine>,
    }

    impl Rig {
        fn new(facts: Option<TargetFacts>) -> Rig {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("audit.jsonl");
            Rig {
                _dir: dir,
                path,
                broker: Arc::new(FakeBroker::default()),
                engine: Arc::new(FakeEngine::new(facts)),
            }
        }
        fn pipeline(&self, enabled: bool, dry_run: bool) -> Pipeline {
            let keys = VerifyKeys::from([("wd1".to_string(), signer().verifying_key())]);
            let opts = PipelineOptions {
                verifier: Verifier::new(keys, "prod"),
                policy: PolicySettings::default(),
                enabled,
                dry_run,
                limits: LogLimits::default(),
            };
            Pipeline::open(opts, &self.path, self.engine.clone(), self.broker.clone())
                .expect("opens")
        }
        /// Reasons of the decision records (write-ahead intents left out).
        fn reasons(&self) -> Vec<String> {
            self.all()
                .into_iter()
                .filter(|r| r.decision != Decision::Intent)
                .map(|r| r.reason)
                .collect()
        }
        fn all(&self) -> Vec<AuditRecord> {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            text.lines()
                .map(|l| serde_json::from_str::<AuditRecord>(l).expect("record"))
                .collect()
        }
    }

    #[tokio::test]
    async fn valid_request_is_executed_and_audited_in_file_and_stream() {
        let rig = Rig::new(Some(facts()));
        let p = rig.pipeline(true, false);
        let out = p
            .handle("1-0", Some(&request(NOW)), NOW)
            .await
            .expect("handled");
        assert_eq!(out.decision, Some(Decision::Executed));
        assert_eq!(
            rig.engine.calls(),
            [format!("inspect {ID}"), format!("restart {ID}")]
        );
        assert_eq!(rig.reasons(), ["ok"]);
        let decisions: Vec<Decision> = rig.all().iter().map(|r| r.decision).collect();
        assert_eq!(decisions, [Decision::Intent, Decision::Executed]);
        assert_eq!(rig.broker.stream.lock().expect("lock").len(), 2);
        crate::journal::verify_file(&rig.path, None).expect("valid chain");
    }

    #[tokio::test]
    async fn decisions_and_actions_are_counted_without_container_ids() {
        let rig = Rig::new(Some(facts()));
        let metrics = Metrics::new(crate::serve::Health::new(true, false));
        let p = rig.pipeline(true, false).with_metrics(metrics.clone());
        let raw = request(NOW);
        p.handle("1-0", Some(&raw), NOW).await.expect("executed");
        p.handle("1-0", Some(&raw), NOW)
            .await
            .expect("re-delivered");
        p.handle("2-0", Some(b"nope"), NOW).await.expect("rejected");
        let text = metrics.render();
        for series in [
            "vigil_executor_requests_total{decision=\"executed\",reason=\"ok\"} 1",
            "vigil_executor_requests_total{decision=\"rejected\",reason=\"not_json\"} 1",
            "vigil_executor_requests_total{decision=\"redelivered\",reason=\"already_audited\"} 1",
            "vigil_executor_action_duration_seconds_count{action=\"restart\"} 1",
            "vigil_executor_circuit_open 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        assert!(
            !text.contains(&ID[..12]),
            "no container id in labels: {text}"
        );
    }

    #[tokio::test]
    async fn rejections_make_no_docker_call() {
        let rig = Rig::new(Some(facts()));
        let p = rig.pipeline(true, false);
        let old = request(NOW.minus(Duration::from_secs(3600)));
        let out = p.handle("1-0", Some(&old), NOW).await.expect("handled");
        assert_eq!(
            (out.decision, out.reason.as_str()),
            (Some(Decision::Rejected), "expired")
        );
        let out = p.handle("2-0", Some(b"nope"), NOW).await.expect("handled");
        assert_eq!(out.reason, "not_json");
        let out = p.handle("3-0", None, NOW).await.expect("handled");
        assert_eq!(out.reason, "bad_envelope");
        assert!(rig.engine.calls().is_empty());
    }

    #[tokio::test]
    async fn replay_and_redelivery() {
        let rig = Rig::new(Some(facts()));
        let p = rig.pipeline(true, false);
        let raw = request(NOW);
        p.handle("1-0", Some(&raw), NOW).await.expect("first");
        // The same envelope in another entry: a replay.
        let out = p.handle("2-0", Some(&raw), NOW).await.expect("replay");
        assert_eq!(
            (out.decision, out.reason.as_str()),
            (Some(Decision::Rejected), "replay")
        );
        // The same entry again (crash after audit, before ack): acknowledged only.
        let out = p.handle("1-0", Some(&raw), NOW).await.expect("redelivery");
        assert_eq!(
            (out.decision, out.reason.as_str()),
            (None, "already_audited")
        );
        // After a restart the audited set is rebuilt from the file.
        drop(p);
        let p = rig.pipeline(true, false);
        let out = p.handle("1-0", Some(&raw), NOW).await.expect("redelivery");
        assert_eq!(out.reason, "already_audited");
        assert_eq!(rig.reasons(), ["ok", "replay"]);
        assert_eq!(
            rig.engine
                .calls()
                .iter()
                .filter(|c| c.starts_with("restart"))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn crash_mid_flight_continues_through_policy() {
        let rig = Rig::new(Some(facts()));
        let raw = request(NOW);
        // The nonce was reserved by entry 1-0 before a crash; nothing was audited.
        rig.broker
            .nonces
            .lock()
            .expect("lock")
            .insert(signed_nonce(&raw), "1-0".into());
        let p = rig.pipeline(true, false);
        let out = p.handle("1-0", Some(&raw), NOW).await.expect("handled");
        assert_eq!(out.decision, Some(Decision::Executed));
    }

    /// An intent left without an outcome (a crash mid-action) is resolved from the container.
    async fn resolve_after(started: Timestamp) -> (Vec<String>, usize) {
        let mut f = facts();
        f.started_at = Some(started);
        let rig = Rig::new(Some(f));
        let mut log = AuditLog::open(&rig.path).expect("log");
        log.append(AuditEntry {
            ts: NOW,
            request_id: Some("req-1".into()),
            key_id: Some("wd1".into()),
            action: Some(Action::Restart),
            target: Some(Target {
                id: ID.into(),
                name: "web-1".into(),
                project: None,
                service: None,
            }),
            decision: Decision::Intent,
            reason: "ok".into(),
            result: None,
            duration_ms: 0,
            retry_at: None,
        })
        .expect("intent");
        drop(log);
        let p = rig.pipeline(true, false);
        // The intent counts as an action at once (backoff applies).
        assert_eq!(p.policy_state().actions_for(ID).len(), 1);
        assert_eq!(p.resolve_intents().await.expect("resolved"), 1);
        assert_eq!(p.resolve_intents().await.expect("nothing left"), 0);
        drop(p);
        let p = rig.pipeline(true, false);
        assert_eq!(p.policy_state().actions_for(ID).len(), 1, "counted once");
        let restarts = rig
            .engine
            .calls()
            .iter()
            .filter(|c| c.starts_with("restart"))
            .count();
        (rig.reasons(), restarts)
    }

    #[tokio::test]
    async fn dangling_intent_is_resolved_from_the_container_and_never_repeated() {
        let (reasons, restarts) = resolve_after(NOW.plus(Duration::from_secs(1))).await;
        assert_eq!(
            (reasons, restarts),
            (vec!["resolved_after_crash".to_string()], 0)
        );
        let (reasons, restarts) = resolve_after(NOW.minus(Duration::from_secs(1))).await;
        assert_eq!((reasons, restarts), (vec!["interrupted".to_string()], 0));
    }

    fn signed_nonce(raw: &[u8]) -> String {
        let keys = VerifyKeys::from([("wd1".to_string(), signer().verifying_key())]);
        Verifier::new(keys, "prod")
            .verify(raw, NOW)
            .expect("valid")
            .payload
            .nonce
    }

    #[tokio::test]
    async fn switches_refuse_without_inspecting() {
        let rig = Rig::new(Some(facts()));
        let p = rig.pipeline(false, false);
        let out = p
            .handle("1-0", Some(&request(NOW)), NOW)
            .await
            .expect("handled");
        assert_eq!(
            (out.decision, out.reason.as_str()),
            (Some(Decision::Refused), "disabled")
        );
        let p = rig.pipeline(true, false);
        *rig.broker.paused.lock().expect("lock") = true;
        let out = p
            .handle("2-0", Some(&request(NOW)), NOW)
            .await
            .expect("handled");
        assert_eq!(out.reason, "paused");
        assert!(rig.engine.calls().is_empty());
        *rig.broker.paused.lock().expect("lock") = false;
        let p = rig.pipeline(true, true);
        let out = p
            .handle("3-0", Some(&request(NOW)), NOW)
            .await
            .expect("handled");
        assert_eq!(
            (out.decision, out.reason.as_str()),
            (Some(Decision::DryRun), "dry_run")
        );
        assert_eq!(rig.engine.calls(), [format!("inspect {ID}")]);
    }

    #[tokio::test]
    async fn missing_target_is_refused() {
        let rig = Rig::new(None);
        let p = rig.pipeline(true, false);
        let out = p
            .handle("1-0", Some(&request(NOW)), NOW)
            .await
            .expect("handled");
        assert_eq!(out.reason, "target_missing");
    }

    #[tokio::test]
    async fn broker_outage_leaves_the_entry_pending_and_stream_catches_up() {
        let rig = Rig::new(Some(facts()));
        let p = rig.pipeline(true, false);
        *rig.broker.down.lock().expect("lock") = true;
        assert!(p.handle("1-0", Some(&request(NOW)), NOW).await.is_err());
        // A rejection is still audited to the file while Redis is down, and queued.
        let out = p.handle("2-0", Some(b"x"), NOW).await.expect("file works");
        assert_eq!(out.seq, Some(1));
        assert!(rig.broker.stream.lock().expect("lock").is_empty());
        *rig.broker.down.lock().expect("lock") = false;
        assert_eq!(p.flush_audit_stream().await.expect("flushed"), 1);
        // A fresh process re-publishes whatever the stream lacks.
        rig.broker.stream.lock().expect("lock").clear();
        let p = rig.pipeline(true, false);
        assert_eq!(p.resync_audit_stream().await.expect("resync"), 1);
        assert_eq!(p.resync_audit_stream().await.expect("resync"), 0);
    }

    #[test]
    fn nonce_ttl_outlives_the_window() {
        let target = Target {
            id: ID.into(),
            name: "web-1".into(),
            project: None,
            service: None,
        };
        let p = Payload::new(
            "prod",
            Action::Restart,
            target,
            Reason::new("s", "h", "d", 1.0),
            NOW,
        );
        let ttl = nonce_ttl(&p, NOW, Duration::from_secs(30));
        assert_eq!(ttl, Duration::from_secs(60 + 60 + 3600));
        let late = nonce_ttl(
            &p,
            NOW.plus(Duration::from_secs(600)),
            Duration::from_secs(30),
        );
        assert_eq!(late, Duration::from_secs(60 + 3600));
    }

    /// An engine with one opted-in, unhealthy container per id; each act takes a while, and
    /// the engine counts how many run at once, overall and per container.
    #[derive(Default)]
    struct SlowEngine {
        started: Mutex<HashMap<String, Timestamp>>,
        running: Mutex<HashMap<String, usize>>,
        most_overall: std::sync::atomic::AtomicUsize,
        most_per_container: std::sync::atomic::AtomicUsize,
        acts: std::sync::atomic::AtomicUsize,
    }

    impl Engine for SlowEngine {
        fn inspect<'a>(
            &'a self,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<TargetFacts>, ActError>> {
            Box::pin(async move {
                let mut f = facts();
                f.id = id.to_string();
                f.name = format!("c-{}", &id[..4]);
                if let Some(t) = self.started.lock().expect("lock").get(id) {
                    f.started_at = Some(*t);
                    f.health = Health::Starting;
                }
                Ok(Some(f))
            })
        }
        fn act<'a>(&'a self, permit: &'a Permit) -> BoxFuture<'a, Result<String, ActError>> {
            use std::sync::atomic::Ordering::SeqCst;
            Box::pin(async move {
                let id = permit.container_id().to_string();
                let (overall, mine) = {
                    let mut r = self.running.lock().expect("lock");
                    *r.entry(id.clone()).or_default() += 1;
                    (r.values().sum::<usize>(), r[&id])
                };
                self.most_overall.fetch_max(overall, SeqCst);
                self.most_per_container.fetch_max(mine, SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                *self
                    .running
                    .lock()
                    .expect("lock")
                    .get_mut(&id)
                    .expect("running") -= 1;
                self.started
                    .lock()
                    .expect("lock")
                    .insert(id, Timestamp(i64::MAX / 2));
                self.acts.fetch_add(1, SeqCst);
                Ok("restarted".into())
            })
        }
    }

    fn request_for(id: &str) -> Vec<u8> {
        let p = Payload::new(
            "prod",
            Action::Restart,
            Target {
                id: id.into(),
                name: format!("c-{}", &id[..4]),
                project: None,
                service: None,
            },
            Reason::new("container_unhealthy", "high", "x", 0.9),
            NOW,
        );
        signer().sign(&p).expect("signs").to_json().into_bytes()
    }

    fn slow_pipeline(dir: &tempfile::TempDir, budget: u32) -> (Pipeline, Arc<SlowEngine>) {
        let engine = Arc::new(SlowEngine::default());
        let keys = VerifyKeys::from([("wd1".to_string(), signer().verifying_key())]);
        let opts = PipelineOptions {
            verifier: Verifier::new(keys, "prod"),
            policy: PolicySettings {
                budget_per_minute: budget,
                ..PolicySettings::default()
            },
            enabled: true,
            dry_run: false,
            limits: LogLimits::default(),
        };
        let p = Pipeline::open(
            opts,
            &dir.path().join("audit.jsonl"),
            engine.clone(),
            Arc::new(FakeBroker::default()),
        )
        .expect("opens");
        (p, engine)
    }

    #[tokio::test]
    async fn different_containers_act_together_within_the_budget_reserved_up_front() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, engine) = slow_pipeline(&dir, 5);
        let ids: Vec<String> = (0..8).map(|i| format!("{i:04}{}", &ID[4..])).collect();
        let raws: Vec<Vec<u8>> = ids.iter().map(|id| request_for(id)).collect();
        let runs = raws.iter().enumerate().map(|(i, raw)| {
            let entry = format!("{i}-0");
            let p = &p;
            async move { p.handle(&entry, Some(raw), NOW).await }
        });
        let outs = futures_util::future::join_all(runs).await;
        let reasons: Vec<String> = outs
            .into_iter()
            .map(|o| o.expect("handled").reason)
            .collect();
        assert_eq!(
            reasons.iter().filter(|r| *r == "ok").count(),
            5,
            "{reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| *r == "budget").count(),
            3,
            "{reasons:?}"
        );
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(engine.acts.load(SeqCst), 5);
        assert!(engine.most_overall.load(SeqCst) > 1, "acted side by side");
        let summary = crate::journal::verify_file(&dir.path().join("audit.jsonl"), None)
            .expect("one valid chain");
        assert_eq!(summary.head_seq, 5 * 2 + 3);
    }

    #[tokio::test]
    async fn requests_for_one_container_run_one_after_the_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, engine) = slow_pipeline(&dir, 100);
        let raws: Vec<Vec<u8>> = (0..3).map(|_| request_for(ID)).collect();
        let runs = raws.iter().enumerate().map(|(i, raw)| {
            let entry = format!("{i}-0");
            let p = &p;
            async move { p.handle(&entry, Some(raw), NOW).await }
        });
        let reasons: Vec<String> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .map(|o| o.expect("handled").reason)
            .collect();
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(
            engine.most_per_container.load(SeqCst),
            1,
            "never two at once"
        );
        // The later ones inspected after the first had acted: the container had restarted
        // since they were issued.
        assert_eq!(
            reasons.iter().filter(|r| *r == "ok").count(),
            1,
            "{reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| *r == "stale").count(),
            2,
            "{reasons:?}"
        );
        let recs: Vec<AuditRecord> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect();
        let decisions: Vec<Decision> = recs.iter().map(|r| r.decision).collect();
        assert_eq!(
            decisions,
            [
                Decision::Intent,
                Decision::Executed,
                Decision::Refused,
                Decision::Refused
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_share_syncs_and_form_one_chain() {
        let rig = Rig::new(Some(facts()));
        let p = Arc::new(rig.pipeline(true, false));
        let mut tasks = Vec::new();
        for i in 0..400 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                p.handle(&format!("{i}-0"), Some(b"forged"), NOW).await
            }));
        }
        for t in tasks {
            let out = t.await.expect("task").expect("audited");
            assert_eq!(out.reason, "not_json");
        }
        let batches = p.journal.batches();
        assert!(batches < 400, "{batches} syncs for 400 records");
        let summary = crate::journal::verify_file(&rig.path, None).expect("one valid chain");
        assert_eq!(summary.head_seq, 400);
        assert_eq!(rig.broker.stream.lock().expect("lock").len(), 400);
    }
}
