//! The incidents of one watchdog, by signal key: the engine's view of the loop. Pure like
//! [`super::step`] (no I/O, no clock); the engine turns its [`Todo`]s into requests and
//! messages and feeds the results back.

use super::{AuditNote, Effect, Incident, Input, LoopSettings, Outcome, step};
use crate::plan::Remediation;
use crate::redis::audit_feed::AuditView;
use crate::signals::Signal;
use std::collections::{BTreeMap, BTreeSet};
use vigil_shared::time::Timestamp;

/// What the engine must do for one incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Todo {
    /// Send a new request for the incident of this key.
    Request { key: String },
    /// Tell people: the message is rendered from the incident as it was after the step.
    Tell {
        incident: Box<Incident>,
        story: super::story::Story,
    },
}

/// The audit record as the loop reads it, or None for records that are not about a request's
/// outcome (intents, recoveries of the executor's own log).
pub fn note_of(rec: &AuditView) -> Option<AuditNote> {
    let request_id = rec.request_id.clone()?;
    let outcome = match rec.decision.as_str() {
        "executed" => Outcome::Executed,
        "dry_run" => Outcome::DryRun,
        "failed" => Outcome::Failed {
            detail: rec
                .result
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| rec.reason.clone()),
        },
        "refused" => Outcome::Refused {
            reason: rec.reason.clone(),
            retry_at: rec.retry_at,
        },
        "rejected" => Outcome::Rejected {
            reason: rec.reason.clone(),
        },
        _ => return None,
    };
    // The end of the action: the container's lifecycle before it is the action itself.
    let took = std::time::Duration::from_millis(rec.duration_ms.unwrap_or(0));
    Some(AuditNote {
        request_id,
        seq: rec.seq,
        at: rec.ts.unwrap_or(Timestamp(0)).plus(took),
        outcome,
    })
}

#[derive(Debug, Default)]
pub struct Incidents {
    open: BTreeMap<String, Incident>,
    changed: BTreeSet<String>,
    settings: LoopSettings,
}

impl Incidents {
    pub fn new(settings: LoopSettings) -> Incidents {
        Incidents {
            open: BTreeMap::new(),
            changed: BTreeSet::new(),
            settings,
        }
    }

    /// Incidents saved before a restart.
    pub fn restore(&mut self, saved: impl IntoIterator<Item = Incident>) {
        for inc in saved {
            self.open.insert(inc.key.clone(), inc);
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.open.keys().cloned().collect()
    }

    pub fn get(&self, key: &str) -> Option<&Incident> {
        self.open.get(key)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Keys whose incident changed (opened, stepped, closed) since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// An alert the planner has `action` for: opens the incident unless one is open.
    pub fn open(&mut self, signal: &Signal, plan: &Remediation, since: Timestamp) -> Vec<Todo> {
        if self.open.contains_key(&signal.key) {
            return Vec::new();
        }
        let s = &signal.subject;
        let (Some(id), Some(name)) = (&s.container_id, &s.container) else {
            return Vec::new();
        };
        let (mut inc, fx) = Incident::open(
            signal.key.clone(),
            id.clone(),
            name.clone(),
            plan.action,
            since,
        );
        inc.reason.clone_from(&plan.reason);
        inc.confidence = plan.confidence;
        self.open.insert(signal.key.clone(), inc);
        self.changed.insert(signal.key.clone());
        self.todos(&signal.key, fx)
    }

    fn apply(&mut self, key: &str, input: &Input, now: Timestamp) -> Vec<Todo> {
        let Some(inc) = self.open.get(key) else {
            return Vec::new();
        };
        let (next, fx) = step(inc, input, now, &self.settings);
        let before = inc.clone();
        let tells_from = match &next {
            Some(n) => n.clone(),
            None => before.clone(),
        };
        match next {
            Some(n) => {
                if n != before {
                    self.changed.insert(key.to_string());
                }
                self.open.insert(key.to_string(), n);
            }
            None => {
                self.open.remove(key);
                self.changed.insert(key.to_string());
            }
        }
        fx.into_iter()
            .map(|e| match e {
                Effect::Request => Todo::Request {
                    key: key.to_string(),
                },
                Effect::Tell(story) => Todo::Tell {
                    incident: Box::new(tells_from.clone()),
                    story,
                },
            })
            .collect()
    }

    fn todos(&self, key: &str, fx: Vec<Effect>) -> Vec<Todo> {
        let inc = self.open.get(key);
        fx.into_iter()
            .filter_map(|e| match e {
                Effect::Request => Some(Todo::Request {
                    key: key.to_string(),
                }),
                Effect::Tell(story) => inc.map(|i| Todo::Tell {
                    incident: Box::new(i.clone()),
                    story,
                }),
            })
            .collect()
    }

    /// The signal recovered (a `Recovery` decision) or its container is gone.
    pub fn recovered(&mut self, key: &str, now: Timestamp) -> Vec<Todo> {
        self.apply(key, &Input::Recovered, now)
    }

    pub fn issued(
        &mut self,
        key: &str,
        request_id: String,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Vec<Todo> {
        self.apply(
            key,
            &Input::Issued {
                request_id,
                expires_at,
            },
            now,
        )
    }

    /// A request could not be published (by id: the engine does not know its key).
    pub fn send_failed(&mut self, request_id: &str, error: String, now: Timestamp) -> Vec<Todo> {
        let Some(key) = self.owner_of(request_id) else {
            return Vec::new();
        };
        self.apply(
            &key,
            &Input::SendFailed {
                request_id: request_id.to_string(),
                error,
            },
            now,
        )
    }

    /// An audit record. None when no incident owns its request (the caller tells it the
    /// generic way).
    pub fn audit(&mut self, rec: &AuditView, now: Timestamp) -> Option<Vec<Todo>> {
        let id = rec.request_id.as_deref()?;
        let key = self.owner_of(id)?;
        let Some(note) = note_of(rec) else {
            return Some(Vec::new());
        };
        Some(self.apply(&key, &Input::Audit(note), now))
    }

    /// The timer: `firing(key)` says whether the key's signal still fires, and when it was
    /// last seen active (a sighting after the executor acted ends verification).
    pub fn tick(
        &mut self,
        firing: impl Fn(&str) -> (bool, Option<Timestamp>),
        now: Timestamp,
    ) -> Vec<Todo> {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let (f, seen) = firing(&key);
            let again = self.open.get(&key).is_some_and(|i| {
                i.is_verifying() && matches!((seen, i.acted_at), (Some(s), Some(a)) if s > a)
            });
            if f && again {
                out.extend(self.apply(&key, &Input::FailingAgain, now));
            }
            out.extend(self.apply(&key, &Input::Tick { firing: f }, now));
        }
        out
    }

    /// Whether the key's container is being acted on and verified: its inactive
    /// `container_unhealthy` signals (health `starting` after the restart) are not recoveries.
    pub fn holds(&self, key: &str, now: Timestamp) -> bool {
        let window = self.settings.verify_window;
        self.open.get(key).is_some_and(|i| {
            i.is_verifying()
                || matches!(i.phase, super::Phase::Requested { .. })
                || i.acted_at.is_some_and(|t| now.since(t) < window)
        })
    }

    /// Keys held at `now` (see [`Incidents::holds`]).
    pub fn held(&self, now: Timestamp) -> BTreeSet<String> {
        self.open
            .keys()
            .filter(|k| self.holds(k, now))
            .cloned()
            .collect()
    }

    fn owner_of(&self, request_id: &str) -> Option<String> {
        self.open
            .values()
            .find(|i| i.owns(request_id))
            .map(|i| i.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::audit_feed::TargetView;
    use crate::signals::{Severity, SignalKind, Subject};
    use vigil_docker::ContainerRef;
    use vigil_protocol::wire::Action;

    fn signal() -> Signal {
        let c = ContainerRef {
            id: "id1".into(),
            name: "web-1".into(),
            project: Some("shop".into()),
            service: Some("web".into()),
        };
        Signal::new(
            SignalKind::ContainerUnhealthy,
            true,
            Severity::High,
            Subject::container(&c),
            "failing",
            Timestamp(0),
        )
    }

    fn rec(seq: u64, id: &str, decision: &str, reason: &str) -> AuditView {
        AuditView {
            seq,
            ts: Some(Timestamp(5_000)),
            request_id: Some(id.into()),
            action: Some("restart".into()),
            target: Some(TargetView::default()),
            decision: decision.into(),
            reason: reason.into(),
            result: None,
            duration_ms: None,
            retry_at: Some(Timestamp(30_000)),
        }
    }

    #[test]
    fn records_reach_the_incident_that_sent_the_request() {
        let mut inc = Incidents::new(LoopSettings::default());
        let s = signal();
        let plan = Remediation {
            action: Action::Restart,
            confidence: 0.9,
            reason: "unhealthy".into(),
        };
        let todos = inc.open(&s, &plan, Timestamp(0));
        assert_eq!(todos, vec![Todo::Request { key: s.key.clone() }]);
        assert!(inc.open(&s, &plan, Timestamp(1)).is_empty(), "one per key");
        assert_eq!(inc.get(&s.key).map(|i| i.confidence), Some(0.9));
        inc.issued(&s.key, "r1".into(), Timestamp(60_000), Timestamp(0));
        assert!(inc.holds(&s.key, Timestamp(1)));
        assert_eq!(
            inc.audit(&rec(1, "other", "executed", "ok"), Timestamp(5)),
            None
        );
        let todos = inc
            .audit(&rec(2, "r1", "refused", "budget"), Timestamp(5_000))
            .expect("owned");
        assert!(matches!(todos.as_slice(), [Todo::Tell { .. }]), "{todos:?}");
        assert!(!inc.holds(&s.key, Timestamp(5_000)));
        assert!(inc.tick(|_| (true, None), Timestamp(29_999)).is_empty());
        assert_eq!(
            inc.tick(|_| (true, None), Timestamp(30_000)),
            vec![Todo::Request { key: s.key.clone() }]
        );
        assert!(inc.take_changed().contains(&s.key));
        let todos = inc.recovered(&s.key, Timestamp(40_000));
        assert!(matches!(todos.as_slice(), [Todo::Tell { .. }]));
        assert!(inc.is_empty());
    }
}
