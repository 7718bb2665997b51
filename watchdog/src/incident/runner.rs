//! The loop's I/O edge, called from the engine's run loop: turns [`Todo`]s into signed requests
//! and messages, and feeds decisions, audit records, publish failures and the timer to
//! [`Incidents`]. Everything here is synchronous and non-blocking (requests and messages go to
//! bounded queues), so it never holds up detection.

use super::LoopSettings;
use super::driver::{Incidents, Todo};
use crate::change::StateChange;
use crate::decide::Action as Decided;
use crate::engine::core::{Core, Decision};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::redis::audit_feed::{AuditView, Feed};
use crate::redis::request::{RequestJob, Requester, SendFailure, SentRequests};
use std::collections::BTreeSet;
use std::sync::Arc;
use vigil_shared::time::Timestamp;

pub struct Runner {
    incidents: Incidents,
    /// None in alert-only mode or without a signing key: nothing is requested, no incidents.
    requester: Option<Requester>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    /// Records about requests no incident owns are told the generic way.
    feed: Feed,
    sent: Arc<SentRequests>,
    /// Alerts waiting for their container's restart policy (an inspect) before planning.
    awaiting_policy: Vec<(Decision, String)>,
    /// Containers to inspect, taken by the engine.
    inspections: Vec<String>,
    /// Audit records already handled (request id, decision, seq), newest last: an executor
    /// that finds Redis empty again re-appends its log to the stream, and those records must
    /// not be told twice.
    handled: HandledRecords,
}

/// How many handled audit records are remembered for [`Runner::on_audit`]'s repeat check.
const HANDLED_KEPT: usize = 4096;

#[derive(Debug, Default)]
struct HandledRecords {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

impl HandledRecords {
    /// False when the record was handled before.
    fn first_time(&mut self, rec: &AuditView) -> bool {
        let Some(id) = rec.request_id.as_deref() else {
            return true;
        };
        let key = format!("{id}/{}/{}", rec.decision, rec.seq);
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > HANDLED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

impl Runner {
    pub fn new(
        settings: LoopSettings,
        requester: Option<Requester>,
        notifier: Notifier,
        metrics: Arc<Metrics>,
        sent: Arc<SentRequests>,
    ) -> Runner {
        Runner {
            incidents: Incidents::new(settings),
            requester,
            notifier,
            metrics,
            feed: Feed::default(),
            sent,
            awaiting_policy: Vec::new(),
            inspections: Vec::new(),
            handled: HandledRecords::default(),
        }
    }

    /// Incidents saved with the alert states before a restart.
    pub fn restore(&mut self, saved: impl IntoIterator<Item = super::Incident>) {
        self.incidents.restore(saved);
    }

    pub fn open_incidents(&self) -> usize {
        self.incidents.len()
    }

    /// A decision of the core. Returns false when its message is replaced by the incident's
    /// story (a recovery of a key with an incident becomes "healed").
    pub fn on_decision(&mut self, core: &mut Core, d: &Decision, now: Timestamp) -> bool {
        match &d.action {
            Decided::Alert => {
                if self.requester.is_none() {
                    if let Some(plan) = core.remediation_for(d) {
                        tracing::info!(
                            signal.key = %d.signal.key,
                            plan.action = %plan.action,
                            plan.reason = %plan.reason,
                            "Remediation planned; alert-only mode, nothing is requested."
                        );
                    }
                    return true;
                }
                if let Some(id) = core.awaits_policy(d) {
                    tracing::info!(
                        signal.key = %d.signal.key,
                        container.id = %id,
                        "Reading the container's restart policy before planning a start."
                    );
                    self.inspections.push(id.clone());
                    self.awaiting_policy.push((d.clone(), id));
                    return true;
                }
                if let Some(plan) = core.remediation_for(d) {
                    tracing::info!(
                        signal.key = %d.signal.key,
                        plan.action = %plan.action,
                        plan.confidence = plan.confidence,
                        plan.reason = %plan.reason,
                        "Remediation planned; opening an incident."
                    );
                    let since = core.since_of(&d.signal.key).unwrap_or(now);
                    let todos = self.incidents.open(&d.signal, &plan, since);
                    self.run(core, todos, now);
                }
                true
            }
            Decided::Recovery { .. } if self.incidents.get(&d.signal.key).is_some() => {
                let todos = self.incidents.recovered(&d.signal.key, now);
                self.run(core, todos, now);
                false
            }
            _ => true,
        }
    }

    /// Containers whose restart policy the engine must read (see [`Runner::on_policy`]).
    pub fn take_inspections(&mut self) -> Vec<String> {
        std::mem::take(&mut self.inspections)
    }

    /// The restart policy an inspect read (or why it could not): alerts waiting for it are
    /// planned now. A failed inspect leaves them waiting for the next sweep, which reads the
    /// policy too; an alert that stops firing meanwhile is dropped.
    pub fn on_policy(
        &mut self,
        core: &mut Core,
        container_id: &str,
        policy: Result<String, String>,
        now: Timestamp,
    ) {
        match policy {
            Ok(p) => core.learn_restart_policy(container_id, &p),
            Err(e) => tracing::warn!(
                container.id = %container_id,
                error = %e,
                "Cannot read the container's restart policy; planning waits for the next sweep."
            ),
        }
        self.plan_awaiting(core, now);
    }

    fn plan_awaiting(&mut self, core: &mut Core, now: Timestamp) {
        if self.awaiting_policy.is_empty() {
            return;
        }
        let mut todos = Vec::new();
        for (d, id) in std::mem::take(&mut self.awaiting_policy) {
            if !core.is_firing(&d.signal.key) {
                continue;
            }
            if !core.knows_policy(&id) {
                self.awaiting_policy.push((d, id));
                continue;
            }
            match core.remediation_for(&d) {
                Some(plan) => {
                    tracing::info!(
                        signal.key = %d.signal.key,
                        plan.action = %plan.action,
                        plan.reason = %plan.reason,
                        "Remediation planned after reading the restart policy; opening an incident."
                    );
                    let since = core.since_of(&d.signal.key).unwrap_or(now);
                    todos.extend(self.incidents.open(&d.signal, &plan, since));
                }
                None => tracing::info!(
                    signal.key = %d.signal.key,
                    "Docker's restart policy brings the container back: no start requested."
                ),
            }
        }
        self.run(core, todos, now);
    }

    /// A record from the audit feed.
    pub fn on_audit(&mut self, core: &mut Core, rec: AuditView, now: Timestamp) {
        if !self.handled.first_time(&rec) {
            tracing::debug!(
                audit.seq = rec.seq,
                "Audit record seen before; not told again."
            );
            return;
        }
        match self.incidents.audit(&rec, now) {
            Some(todos) => self.run(core, todos, now),
            None => {
                let note = rec.request_id.as_deref().and_then(|id| self.sent.find(id));
                if let Some(msg) = self.feed.describe(&rec, note.as_ref(), now) {
                    self.notifier
                        .enqueue_message(msg.with_host(self.notifier.host()));
                }
            }
        }
    }

    pub fn on_send_failure(&mut self, core: &mut Core, f: SendFailure, now: Timestamp) {
        let todos = self.incidents.send_failed(&f.request_id, f.error, now);
        self.run(core, todos, now);
    }

    /// The timer: recovered keys heal (edge kinds such as exits resolve without a recovery
    /// message), due requests go out, lost ones are sent again.
    pub fn tick(&mut self, core: &mut Core, now: Timestamp) {
        self.plan_awaiting(core, now);
        let mut todos = Vec::new();
        for key in self.incidents.keys() {
            if !core.is_open(&key) {
                todos.extend(self.incidents.recovered(&key, now));
            }
        }
        todos.extend(self.incidents.tick(
            |k| {
                let seen = core
                    .stored(k)
                    .filter(|(s, _)| s.active)
                    .map(|(s, _)| s.observed_at);
                (core.is_firing(k), seen)
            },
            now,
        ));
        self.run(core, todos, now);
        core.set_held(self.incidents.held(now));
    }

    /// The core's state changes with each key's incident attached, plus keys whose incident
    /// alone changed.
    pub fn changes(&mut self, core: &mut Core) -> Vec<StateChange> {
        let mut changes = core.take_changes();
        let mut seen = BTreeSet::new();
        for ch in changes.iter_mut() {
            if let StateChange::Put {
                signal, incident, ..
            } = ch
            {
                seen.insert(signal.key.clone());
                *incident = self.incidents.get(&signal.key).cloned().map(Box::new);
            }
        }
        for key in self.incidents.take_changed() {
            if seen.contains(&key) {
                continue;
            }
            if let Some((signal, state)) = core.stored(&key) {
                changes.push(StateChange::Put {
                    signal: Box::new(signal),
                    state,
                    incident: self.incidents.get(&key).cloned().map(Box::new),
                });
            }
        }
        changes
    }

    fn run(&mut self, core: &mut Core, todos: Vec<Todo>, now: Timestamp) {
        let mut queue: std::collections::VecDeque<Todo> = todos.into();
        while let Some(todo) = queue.pop_front() {
            match todo {
                Todo::Request { key } => queue.extend(self.request(core, &key, now)),
                Todo::Tell { incident, story } => {
                    let project = core
                        .stored(&incident.key)
                        .and_then(|(s, _)| s.subject.project);
                    let msg = story.message(&incident, project.as_deref(), now);
                    tracing::info!(
                        signal.key = %incident.key,
                        incident.phase = ?incident.phase,
                        "{}",
                        msg.text.lines().next().unwrap_or_default()
                    );
                    self.notifier
                        .enqueue_message(msg.with_host(self.notifier.host()));
                }
            }
        }
        core.set_held(self.incidents.held(now));
    }

    fn request(&mut self, core: &Core, key: &str, now: Timestamp) -> Vec<Todo> {
        let (Some(requester), Some(inc), Some((signal, _))) = (
            self.requester.as_ref(),
            self.incidents.get(key),
            core.stored(key),
        ) else {
            return Vec::new();
        };
        let job = RequestJob {
            remediation: crate::plan::Remediation {
                action: inc.action,
                confidence: inc.confidence,
                reason: inc.reason.clone(),
            },
            signal,
            since: Some(inc.detected_at),
        };
        self.metrics.request("queued");
        match requester.request(job, now) {
            Ok(ticket) => self
                .incidents
                .issued(key, ticket.request_id, ticket.expires_at, now),
            Err(e) => {
                // Followed like a sent one, then failed at once: asked again after a while.
                let id = format!("unsent-{}-{}", now.as_millis(), inc.attempts.len());
                let mut todos = self.incidents.issued(key, id.clone(), now, now);
                todos.extend(self.incidents.send_failed(&id, e.to_string(), now));
                todos
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, id: Option<&str>, decision: &str) -> AuditView {
        AuditView {
            seq,
            ts: Some(Timestamp(5_000)),
            request_id: id.map(str::to_string),
            action: Some("restart".into()),
            target: None,
            decision: decision.into(),
            reason: "ok".into(),
            result: None,
            duration_ms: None,
            retry_at: None,
        }
    }

    #[test]
    fn a_record_re_appended_to_the_stream_is_handled_once() {
        let mut h = HandledRecords::default();
        assert!(h.first_time(&rec(1, Some("r1"), "executed")));
        assert!(
            !h.first_time(&rec(1, Some("r1"), "executed")),
            "the same record again"
        );
        assert!(
            h.first_time(&rec(2, Some("r1"), "rejected")),
            "another record, same request"
        );
        assert!(h.first_time(&rec(3, None, "recovered")));
        assert!(
            h.first_time(&rec(3, None, "recovered")),
            "no request id: not tracked"
        );
        for seq in 10..(10 + HANDLED_KEPT as u64) {
            h.first_time(&rec(seq, Some("r"), "executed"));
        }
        assert!(h.set.len() <= HANDLED_KEPT && h.order.len() == h.set.len());
        assert!(
            h.first_time(&rec(1, Some("r1"), "executed")),
            "forgotten past the bound"
        );
    }
}
