//! Remediation as a closed loop: one [`Incident`] per firing signal of an opted-in container that
//! the planner has an action for, driven until it ends **healed** or **escalated**.
//!
//! [`step`] is pure like [`crate::decide::decide`]: an incident, an [`Input`] and `now` in; the
//! next incident (or `None` once it is over) and the [`Effect`]s out. No clock, no I/O.
//!
//! ```text
//! detected ─► requested ─► executed ─► verifying ─► healed
//!                 │  ▲                    │
//!                 │  └──── next attempt ◄─┘ (still failing after the window)
//!                 ├─► refused temporary ─► waiting until retry_at ─► requested
//!                 ├─► refused permanent  (no more requests; the alert keeps firing)
//!                 ├─► lost (no record by expiry) ─► requested again (new id and nonce)
//!                 └─► breaker open ─► escalated (one "manual action needed", no more requests
//!                                            until the breaker's window ends: then requested)
//! ```
//!
//! Inputs: the signal is still firing ([`Input::Tick`], the timer) or has recovered
//! ([`Input::Recovered`]); a request was issued ([`Input::Issued`]) or could not be published
//! ([`Input::SendFailed`]); an audit record about one of the incident's requests
//! ([`Input::Audit`]). Records about requests of other incidents, or of nobody, are not inputs.

pub mod driver;
pub mod runner;
pub mod story;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;

/// The loop's tunables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSettings {
    /// After an executed action, how long the container gets to become healthy before the next
    /// attempt, at most. Its own healthcheck usually ends verification sooner: reported
    /// unhealthy again (or a new exit) after the action is [`Input::FailingAgain`].
    pub verify_window: Duration,
    /// A request with no audit record this long after its expiry is lost and sent again.
    pub lost_grace: Duration,
    /// Wait before asking again after a publish failed (Redis down).
    pub send_retry: Duration,
    /// Wait before asking again after a temporary refusal that named no `retry_at` (an older
    /// executor, or `stale`: the container was mid-restart when the executor looked).
    pub default_retry: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            verify_window: Duration::from_secs(120),
            lost_grace: Duration::from_secs(5),
            send_retry: Duration::from_secs(5),
            default_retry: Duration::from_secs(30),
        }
    }
}

/// The verification window for a container whose healthcheck runs every `interval` with
/// `retries` and `start_period`: long enough for the engine to call it healthy (or unhealthy)
/// again, never less than `floor`.
pub fn verify_window(
    interval: Duration,
    retries: u32,
    start_period: Duration,
    floor: Duration,
) -> Duration {
    let checks = interval.saturating_mul(retries.max(1) + 1);
    (start_period + checks).max(floor)
}

/// Where an incident stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// A request is due: at open, after a lost request or a failed publish, or when a
    /// temporary refusal's `retry_at` (or a verification window) has passed.
    Due { at: Timestamp },
    /// A request is out; waiting for its audit record until `expires_at` (+ grace).
    Requested {
        request_id: String,
        expires_at: Timestamp,
    },
    /// The executor acted; the container has until `until` to recover.
    Verifying { seq: u64, until: Timestamp },
    /// Refused for now; ask again at `retry_at` if the signal still fires.
    Waiting { retry_at: Timestamp, reason: String },
    /// Refused for good (not opted in, protected, rejected): no more requests. The alert keeps
    /// its own re-alerts; the incident ends when the signal recovers.
    GaveUp { reason: String },
    /// The breaker opened: told once, no more requests for this incident.
    Escalated,
}

/// One thing tried, for the escalation message and the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub request_id: String,
    pub issued_at: Timestamp,
    /// `executed`, `failed`, `refused: backoff`, `lost`, ... (None while in flight).
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
}

/// An incident: what is being healed, since when, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The signal key (`container_unhealthy/<project>/<service>/<name>`).
    pub key: String,
    pub container_id: String,
    pub container: String,
    pub action: Action,
    /// The planner's reason and confidence, repeated on every request of the incident.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub confidence: f64,
    /// First detection: recovery durations count from here, across outages and restarts.
    pub detected_at: Timestamp,
    pub phase: Phase,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// When the executor last acted on this container for this incident: its own kill, die and
    /// start around then are not failures or recoveries.
    #[serde(default)]
    pub acted_at: Option<Timestamp>,
    /// While [`Phase::Escalated`]: when the breaker closes again (the `retry_at` of the breaker
    /// refusal). A signal still firing then gets a new round of requests; None: not before it
    /// recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_until: Option<Timestamp>,
}

/// What happened to a request, from its audit record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Executed,
    /// Dry-run: policy passed, nothing was done. Treated as permanent: asking again changes
    /// nothing until an operator turns dry-run off.
    DryRun,
    /// The engine call failed: counts as an attempt (the executor's backoff applies).
    Failed {
        detail: String,
    },
    /// Refused by policy. `retry_at` is set on temporary refusals.
    Refused {
        reason: String,
        retry_at: Option<Timestamp>,
    },
    /// Rejected before policy (expired, replay, bad signature, malformed).
    Rejected {
        reason: String,
    },
}

/// An audit record about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    pub request_id: String,
    pub seq: u64,
    pub at: Timestamp,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The timer; `firing` is whether the signal is still active.
    Tick {
        firing: bool,
    },
    /// The signal was observed active again after the executor acted (the container's own
    /// healthcheck, or a new exit): verification is over, it is still failing.
    FailingAgain,
    /// The signal recovered (healthy again, or running again for exits), or its container is
    /// gone.
    Recovered,
    /// A request for this incident was built and handed to the publisher.
    Issued {
        request_id: String,
        expires_at: Timestamp,
    },
    /// Publishing a request failed (Redis down).
    SendFailed {
        request_id: String,
        error: String,
    },
    Audit(AuditNote),
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Build, sign and publish a new request (new id and nonce), then feed [`Input::Issued`].
    Request,
    /// Tell people.
    Tell(story::Story),
}

/// Refusals that asking again later can change. Everything else is permanent.
pub fn is_temporary(reason: &str) -> bool {
    matches!(reason, "backoff" | "budget" | "paused" | "stale")
}

/// Refusals that mean the breaker is open: the escalation.
pub fn is_breaker(reason: &str) -> bool {
    matches!(reason, "breaker_opened" | "breaker")
}

/// Rejections that mean the request never reached policy in time (lost in transit, the
/// executor was down): ask again with a fresh one.
pub fn is_lost(reason: &str) -> bool {
    matches!(
        reason,
        "expired" | "replay" | "dead_letter" | "already_audited" | "not_yet_valid" | "future"
    )
}

impl Incident {
    /// A new incident for a firing signal: a request is due now.
    pub fn open(
        key: impl Into<String>,
        container_id: impl Into<String>,
        container: impl Into<String>,
        action: Action,
        now: Timestamp,
    ) -> (Incident, Vec<Effect>) {
        let inc = Incident {
            key: key.into(),
            container_id: container_id.into(),
            container: container.into(),
            action,
            reason: String::new(),
            confidence: 0.0,
            detected_at: now,
            phase: Phase::Due { at: now },
            attempts: Vec::new(),
            acted_at: None,
            breaker_until: None,
        };
        (inc, vec![Effect::Request])
    }

    /// Whether a request id belongs to this incident.
    pub fn owns(&self, request_id: &str) -> bool {
        self.attempts.iter().any(|a| a.request_id == request_id)
    }

    /// Whether requests are still being made (not given up, not escalated).
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::GaveUp { .. } | Phase::Escalated)
    }

    /// Whether an executed action is being verified: the container's own lifecycle events
    /// (kill, die, start, health `starting`) are Vigil's doing, not a failure or a recovery.
    pub fn is_verifying(&self) -> bool {
        matches!(self.phase, Phase::Verifying { .. })
    }

    /// Executed actions so far.
    pub fn executed(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("executed"))
            .count()
    }

    fn outcome(&mut self, request_id: &str, seq: Option<u64>, outcome: String) {
        if let Some(a) = self
            .attempts
            .iter_mut()
            .find(|a| a.request_id == request_id)
        {
            a.outcome = Some(outcome);
            if seq.is_some() {
                a.seq = seq;
            }
        }
    }

    fn is_current(&self, request_id: &str) -> bool {
        matches!(&self.phase, Phase::Requested { request_id: r, .. } if r == request_id)
    }
}

/// One transition. Returns the next incident (None: it is over) and what to do.
pub fn step(
    inc: &Incident,
    input: &Input,
    now: Timestamp,
    cfg: &LoopSettings,
) -> (Option<Incident>, Vec<Effect>) {
    let mut next = inc.clone();
    let mut fx = Vec::new();
    match input {
        Input::Recovered => {
            fx.push(Effect::Tell(story::Story::Healed {
                after: now.since(inc.detected_at),
                executed: inc.executed(),
                last_seq: inc.attempts.iter().rev().find_map(|a| a.seq),
            }));
            return (None, fx);
        }
        Input::Issued {
            request_id,
            expires_at,
        } => {
            next.attempts.push(Attempt {
                request_id: request_id.clone(),
                issued_at: now,
                outcome: None,
                seq: None,
            });
            if matches!(inc.phase, Phase::Due { .. }) {
                next.phase = Phase::Requested {
                    request_id: request_id.clone(),
                    expires_at: *expires_at,
                };
            }
        }
        Input::SendFailed { request_id, error } => {
            next.outcome(request_id, None, format!("not sent: {error}"));
            if inc.is_current(request_id) {
                next.phase = Phase::Due {
                    at: now.plus(cfg.send_retry),
                };
            }
        }
        Input::FailingAgain => {
            if matches!(inc.phase, Phase::Verifying { .. }) {
                next.phase = Phase::Due { at: now };
                fx.push(Effect::Request);
            }
        }
        Input::Tick { firing } => match &inc.phase {
            Phase::Due { at } if *firing && now >= *at => fx.push(Effect::Request),
            Phase::Requested {
                request_id,
                expires_at,
            } if now >= expires_at.plus(cfg.lost_grace) => {
                next.outcome(request_id, None, "lost".to_string());
                next.phase = Phase::Due { at: now };
                if *firing {
                    fx.push(Effect::Request);
                }
            }
            // The breaker closed and it still fails: ask again (the executor's policy decides).
            Phase::Escalated if *firing && inc.breaker_until.is_some_and(|b| now >= b) => {
                next.breaker_until = None;
                next.phase = Phase::Due { at: now };
                fx.push(Effect::Request);
            }
            Phase::Verifying { until, .. }
            | Phase::Waiting {
                retry_at: until, ..
            } if now >= *until => {
                next.phase = Phase::Due { at: now };
                if *firing {
                    fx.push(Effect::Request);
                }
            }
            _ => {}
        },
        Input::Audit(note) => {
            if !inc.owns(&note.request_id) {
                return (Some(next), fx);
            }
            audit(inc, &mut next, note, now, cfg, &mut fx);
        }
    }
    (Some(next), fx)
}

fn audit(
    inc: &Incident,
    next: &mut Incident,
    note: &AuditNote,
    now: Timestamp,
    cfg: &LoopSettings,
    fx: &mut Vec<Effect>,
) {
    let current = inc.is_current(&note.request_id);
    let seq = Some(note.seq);
    match &note.outcome {
        // An action on the container counts whichever attempt it answers: it happened.
        Outcome::Executed => {
            next.outcome(&note.request_id, seq, "executed".to_string());
            next.acted_at = Some(note.at);
            next.phase = Phase::Verifying {
                seq: note.seq,
                until: note.at.max(now).plus(cfg.verify_window),
            };
            fx.push(Effect::Tell(story::Story::Executed {
                action: inc.action,
                seq: note.seq,
                attempt: next.executed(),
            }));
        }
        Outcome::Failed { detail } if current => {
            next.outcome(&note.request_id, seq, format!("failed: {detail}"));
            next.acted_at = Some(note.at);
            next.phase = Phase::Waiting {
                retry_at: now.plus(cfg.default_retry),
                reason: "failed".to_string(),
            };
            fx.push(Effect::Tell(story::Story::Failed {
                action: inc.action,
                seq: note.seq,
                detail: detail.clone(),
            }));
        }
        Outcome::Refused { reason, retry_at } if is_breaker(reason) && inc.is_active() => {
            next.outcome(&note.request_id, seq, format!("refused: {reason}"));
            next.phase = Phase::Escalated;
            next.breaker_until = *retry_at;
            fx.push(Effect::Tell(story::Story::Escalated {
                seq: note.seq,
                tried: story::tried(next),
                since: inc.detected_at,
            }));
        }
        Outcome::Refused { reason, retry_at } if current && is_temporary(reason) => {
            next.outcome(&note.request_id, seq, format!("refused: {reason}"));
            let until = retry_at.unwrap_or(now.plus(cfg.default_retry)).max(now);
            next.phase = Phase::Waiting {
                retry_at: until,
                reason: reason.clone(),
            };
            // `stale` is the executor seeing the container mid-recovery: nothing to tell yet.
            if reason != "stale" {
                fx.push(Effect::Tell(story::Story::Refused {
                    action: inc.action,
                    seq: note.seq,
                    reason: reason.clone(),
                    until: Some(until),
                }));
            }
        }
        Outcome::Rejected { reason } if current && is_lost(reason) => {
            next.outcome(&note.request_id, seq, format!("lost: {reason}"));
            next.phase = Phase::Due { at: now };
            fx.push(Effect::Request);
        }
        Outcome::Refused { reason, .. } | Outcome::Rejected { reason } if current => {
            next.outcome(&note.request_id, seq, format!("refused: {reason}"));
            next.phase = Phase::GaveUp {
                reason: reason.clone(),
            };
            fx.push(Effect::Tell(story::Story::Refused {
                action: inc.action,
                seq: note.seq,
                reason: reason.clone(),
                until: None,
            }));
        }
        Outcome::DryRun if current => {
            next.outcome(&note.request_id, seq, "dry run".to_string());
            next.phase = Phase::GaveUp {
                reason: "dry_run".to_string(),
            };
            fx.push(Effect::Tell(story::Story::DryRun {
                action: inc.action,
                seq: note.seq,
            }));
        }
        // About an older attempt that is no longer current (e.g. the expired request a
        // returning executor finally reads): on the record, no change of course.
        Outcome::Failed { .. }
        | Outcome::Refused { .. }
        | Outcome::Rejected { .. }
        | Outcome::DryRun => {
            let what = match &note.outcome {
                Outcome::Refused { reason, .. } | Outcome::Rejected { reason } => {
                    format!("refused: {reason}")
                }
                Outcome::Failed { detail } => format!("failed: {detail}"),
                _ => "dry run".to_string(),
            };
            next.outcome(&note.request_id, seq, what);
        }
    }
}
