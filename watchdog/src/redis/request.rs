//! Remediation requests: a planned [`Remediation`] for a firing signal becomes a signed envelope
//! on `<prefix>requests` (`XADD ... MAXLEN ~ 10000 * envelope <json>`).
//!
//! Detection never waits for this: [`Requester::request`] builds the payload (deployment, a 60 s
//! lifetime, a fresh id and nonce), puts it on a bounded channel and returns its id and expiry;
//! a publisher task signs it and adds it to the stream. A full channel or a failed `XADD` is
//! logged, counted and reported back ([`SendFailure`]) so the incident that asked can ask again
//! ([`crate::incident`]); a request that is lost later is caught by its expiry.
//!
//! The publisher remembers the last requests it sent ([`SentRequests`]) so the audit feed can say
//! what an outcome was about ("restarted web after 45s unhealthy").

use crate::plan::Remediation;
use crate::redis::link::RedisLink;
use crate::signals::{Signal, SignalKind};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_protocol::names::ENVELOPE_FIELD;
use vigil_protocol::signing::Signer;
use vigil_protocol::wire::{Action, Payload, Reason, Target};
use vigil_shared::time::Timestamp;

/// Requests waiting for the publisher; more than this at once means Redis is stuck.
pub const REQUEST_BUFFER: usize = 256;
/// `expires_at - issued_at` of every request.
pub const REQUEST_TTL: Duration = Duration::from_secs(60);
/// Sent requests remembered for the audit feed.
const SENT_REMEMBERED: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the signal names no container")]
    NoContainer,
    #[error("cannot sign the request: {0}")]
    Sign(#[from] vigil_protocol::signing::SigningError),
    #[error("cannot encode the envelope: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Redis(#[from] crate::redis::link::LinkError),
    #[error("the publisher is not keeping up")]
    Busy,
}

/// One thing to ask the executor for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestJob {
    pub remediation: Remediation,
    pub signal: Signal,
    /// When the condition started (the alert state's `since`), for the outcome message.
    pub since: Option<Timestamp>,
}

/// The request payload for a job, issued at `now`. Only the nonce and id are random.
pub fn build_payload(
    deployment: &str,
    job: &RequestJob,
    now: Timestamp,
) -> Result<Payload, RequestError> {
    let s = &job.signal.subject;
    let (Some(id), Some(name)) = (&s.container_id, &s.container) else {
        return Err(RequestError::NoContainer);
    };
    let target = Target {
        id: id.clone(),
        name: name.clone(),
        project: s.project.clone(),
        service: s.service.clone(),
    };
    let reason = Reason::new(
        job.signal.kind.as_str(),
        job.signal.severity.as_str(),
        job.remediation.reason.clone(),
        job.remediation.confidence,
    );
    Ok(Payload::new(deployment, job.remediation.action, target, reason, now).with_ttl(REQUEST_TTL))
}

/// What the audit feed needs to know about a request the watchdog sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SentNote {
    pub request_id: String,
    pub action: Action,
    pub kind: SignalKind,
    pub since: Option<Timestamp>,
}

/// The last [`SENT_REMEMBERED`] requests sent, shared by the publisher and the audit feed.
#[derive(Debug, Default)]
pub struct SentRequests {
    notes: Mutex<VecDeque<SentNote>>,
}

impl SentRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SentNote>> {
        // Plain data: a panic elsewhere cannot leave it half-written in a harmful way.
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn remember(&self, note: SentNote) {
        let mut notes = self.lock();
        if notes.len() >= SENT_REMEMBERED {
            notes.pop_front();
        }
        notes.push_back(note);
    }

    pub fn find(&self, request_id: &str) -> Option<SentNote> {
        self.lock()
            .iter()
            .rev()
            .find(|n| n.request_id == request_id)
            .cloned()
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Requests added to the stream.
    pub sent: AtomicU64,
    /// Requests that could not be signed or added.
    pub failed: AtomicU64,
    /// Requests dropped because the publisher's channel was full.
    pub dropped: AtomicU64,
}

/// A request handed to the publisher: what the incident needs to follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub request_id: String,
    pub expires_at: Timestamp,
}

/// A request the publisher could not add to the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    pub request_id: String,
    pub error: String,
}

/// The handle the engine asks through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Requester {
    tx: mpsc::Sender<(RequestJob, Payload)>,
    deployment: String,
    stats: Arc<RequestStats>,
}

impl Requester {
    /// Starts the publisher task. It ends when `cancel` fires (after the request in hand).
    pub fn start(
        link: Arc<RedisLink>,
        signer: Signer,
        deployment: String,
        sent: Arc<SentRequests>,
        failures: mpsc::Sender<SendFailure>,
        cancel: CancellationToken,
    ) -> (Requester, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
        let stats = Arc::new(RequestStats::default());
        let publisher = Publisher {
            link,
            signer,
            sent,
            failures,
            stats: stats.clone(),
        };
        let handle = tokio::spawn(publisher.run(rx, cancel));
        (
            Requester {
                tx,
                deployment,
                stats,
            },
            handle,
        )
    }

    /// Builds the request (issued `now`) and queues it. Never blocks: a full channel is an
    /// error (logged and counted), and so is a job that names no container.
    pub fn request(&self, job: RequestJob, now: Timestamp) -> Result<Ticket, RequestError> {
        let payload = build_payload(&self.deployment, &job, now)?;
        let ticket = Ticket {
            request_id: payload.id.to_string(),
            expires_at: payload.expires_at,
        };
        if let Err(e) = self.tx.try_send((job, payload)) {
            let (job, _) = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                signal.key = %job.signal.key,
                request.action = %job.remediation.action,
                "Request dropped: the publisher is not keeping up (is Redis stuck?)."
            );
            return Err(RequestError::Busy);
        }
        Ok(ticket)
    }

    pub fn stats(&self) -> &Arc<RequestStats> {
        &self.stats
    }
}

struct Publisher {
    link: Arc<RedisLink>,
    signer: Signer,
    sent: Arc<SentRequests>,
    failures: mpsc::Sender<SendFailure>,
    stats: Arc<RequestStats>,
}

impl Publisher {
    async fn run(self, mut rx: mpsc::Receiver<(RequestJob, Payload)>, cancel: CancellationToken) {
        loop {
            let (job, payload) = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            match self.publish(&payload).await {
                Ok(entry_id) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        request.id = %payload.id,
                        request.action = %payload.action,
                        container.name = %payload.target.name,
                        signal.key = %job.signal.key,
                        request.confidence = payload.reason.confidence,
                        stream.entry = %entry_id,
                        "Remediation requested."
                    );
                    self.sent.remember(SentNote {
                        request_id: payload.id.to_string(),
                        action: payload.action,
                        kind: job.signal.kind,
                        since: job.since,
                    });
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        signal.key = %job.signal.key,
                        request.id = %payload.id,
                        request.action = %job.remediation.action,
                        error = %e,
                        "Remediation request not sent; it will be asked again."
                    );
                    // A full channel leaves the incident to find the request lost at expiry.
                    let _ = self.failures.try_send(SendFailure {
                        request_id: payload.id.to_string(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }

    async fn publish(&self, payload: &Payload) -> Result<String, RequestError> {
        let envelope = self.signer.sign(payload)?;
        let json = serde_json::to_string(&envelope)?;
        // Through the executor's append function: capped size, auto id, capped length.
        let mut xadd = redis::cmd("FCALL");
        xadd.arg(vigil_protocol::redis_functions::REQUEST_APPEND)
            .arg(1)
            .arg(self.link.names().requests())
            .arg(ENVELOPE_FIELD)
            .arg(json);
        let entry_id: String = self.link.query(&xadd).await?;
        Ok(entry_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{Severity, Subject};
    use vigil_docker::ContainerRef;

    fn job(subject: Subject) -> RequestJob {
        RequestJob {
            remediation: Remediation {
                action: Action::Restart,
                confidence: 0.9,
                reason: "unhealthy: health check failing".into(),
            },
            signal: Signal::new(
                SignalKind::ContainerUnhealthy,
                true,
                Severity::High,
                subject,
                "health check failing",
                Timestamp(0),
            ),
            since: Some(Timestamp(0)),
        }
    }

    #[test]
    fn payload_names_the_container_and_lives_60s() {
        let c = ContainerRef {
            id: "abc123".into(),
            name: "shop-web-1".into(),
            project: Some("shop".into()),
            service: Some("web".into()),
        };
        let p = build_payload("prod", &job(Subject::container(&c)), Timestamp(1_000)).unwrap();
        assert_eq!(p.deployment, "prod");
        assert_eq!(p.action, Action::Restart);
        assert_eq!(p.target.id, "abc123");
        assert_eq!(p.target.name, "shop-web-1");
        assert_eq!(p.target.service.as_deref(), Some("web"));
        assert_eq!(p.reason.signal, "container_unhealthy");
        assert_eq!(p.reason.severity, "high");
        assert_eq!(p.reason.confidence, 0.9);
        assert_eq!(p.issued_at, Timestamp(1_000));
        assert_eq!(p.expires_at, Timestamp(61_000));
        p.validate().unwrap();
    }

    #[test]
    fn no_container_no_payload() {
        assert!(matches!(
            build_payload("prod", &job(Subject::named("disk")), Timestamp(0)),
            Err(RequestError::NoContainer)
        ));
    }

    #[test]
    fn sent_requests_are_bounded_and_found_newest_first() {
        let sent = SentRequests::default();
        for i in 0..(SENT_REMEMBERED + 5) {
            sent.remember(SentNote {
                request_id: format!("r{i}"),
                action: Action::Restart,
                kind: SignalKind::ContainerUnhealthy,
                since: None,
            });
        }
        assert!(sent.find("r0").is_none(), "the oldest were forgotten");
        assert!(sent.find(&format!("r{}", SENT_REMEMBERED + 4)).is_some());
        assert_eq!(sent.lock().len(), SENT_REMEMBERED);
    }
}
