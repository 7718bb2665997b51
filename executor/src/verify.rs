//! The executor's request check: the shared pure verifier with the executor's limits, plus what
//! the audit needs to know about a rejected request.
//!
//! Pure: `now` comes from the caller. Replay is checked after this, by reserving the nonce for
//! [`Verifier::nonce_ttl`] (which outlives every window this verifier accepts).

use std::time::Duration;
use vigil_protocol::signing::{VerifyKeys, authenticate, check_claims};
use vigil_protocol::wire::{Envelope, Rejection, parse_payload};
use vigil_shared::time::Timestamp;

pub use vigil_protocol::signing::Verified;

/// Largest accepted clock difference between watchdog and executor.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);
/// Longest accepted `expires_at - issued_at`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(5 * 60);

/// A rejected request and what could be learnt about it, for the audit record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{rejection}")]
pub struct Rejected {
    pub rejection: Rejection,
    /// The key id the envelope named, when it parsed (unauthenticated unless the signature
    /// verified).
    pub key_id: Option<String>,
    /// The request id, only once the signature verified and the payload parsed.
    pub request_id: Option<String>,
}

impl Rejected {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        self.rejection.reason()
    }
}

/// Keys, deployment and limits: everything the executor checks a request against.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: VerifyKeys,
    deployment: String,
    max_skew: Duration,
    max_ttl: Duration,
}

impl Verifier {
    /// A verifier with the default skew (30 s) and maximum lifetime (5 min).
    pub fn new(keys: VerifyKeys, deployment: impl Into<String>) -> Verifier {
        Verifier {
            keys,
            deployment: deployment.into(),
            max_skew: DEFAULT_MAX_SKEW,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }

    pub fn with_limits(mut self, max_skew: Duration, max_ttl: Duration) -> Verifier {
        self.max_skew = max_skew;
        self.max_ttl = max_ttl;
        self
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How long a nonce reservation must live so that no request it accepts can be replayed:
    /// a request is accepted until `expires_at + skew`, and `expires_at` is at most
    /// `max_ttl + skew` ahead of `now` (issued up to `skew` in the future).
    pub fn nonce_ttl(&self) -> Duration {
        self.max_ttl + self.max_skew * 2 + Duration::from_secs(60)
    }

    /// Runs every check of [`vigil_protocol::signing::verify_envelope`].
    pub fn verify(&self, raw: &[u8], now: Timestamp) -> Result<Verified, Rejected> {
        let claimed_key = || Envelope::parse(raw).ok().map(|e| e.key_id);
        let auth = authenticate(raw, &self.keys).map_err(|rejection| Rejected {
            rejection,
            key_id: claimed_key(),
            request_id: None,
        })?;
        let payload = parse_payload(&auth.payload_bytes).map_err(|rejection| Rejected {
            rejection,
            key_id: Some(auth.key_id.clone()),
            request_id: None,
        })?;
        check_claims(&payload, &self.deployment, now, self.max_skew, self.max_ttl).map_err(
            |rejection| Rejected {
                rejection,
                key_id: Some(auth.key_id.clone()),
                request_id: Some(payload.id.to_string()),
            },
        )?;
        Ok(Verified {
            key_id: auth.key_id,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::signing::{Signer, SigningKey};
    use vigil_protocol::wire::{Action, Payload, Reason, Target};

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn signer() -> Signer {
        Signer::new("wd1", SigningKey::from_bytes(&[3; 32])).expect("key id")
    }

    fn verifier() -> Verifier {
        let s = signer();
        Verifier::new(
            VerifyKeys::from([("wd1".to_string(), s.verifying_key())]),
            "prod",
        )
    }

    fn payload(deployment: &str, issued: Timestamp) -> Payload {
        Payload::new(
            deployment,
            Action::Start,
            Target {
                id: "c1".into(),
                name: "db-1".into(),
                project: None,
                service: None,
            },
            Reason::new("container_exited", "high", "exit 1", 0.7),
            issued,
        )
    }

    fn raw(p: &Payload) -> Vec<u8> {
        signer().sign(p).expect("signs").to_json().into_bytes()
    }

    #[test]
    fn accepts_a_good_request() {
        let p = payload("prod", NOW);
        let v = verifier().verify(&raw(&p), NOW).expect("accepted");
        assert_eq!((v.key_id.as_str(), v.payload), ("wd1", p));
    }

    #[test]
    fn rejections_carry_what_the_audit_needs() {
        let p = payload("staging", NOW);
        let r = verifier()
            .verify(&raw(&p), NOW)
            .expect_err("wrong deployment");
        assert_eq!(r.reason(), "wrong_deployment");
        assert_eq!(r.key_id.as_deref(), Some("wd1"));
        assert_eq!(r.request_id, Some(p.id.to_string()));

        let other = Signer::new("stranger", SigningKey::from_bytes(&[4; 32])).expect("id");
        let env = other.sign(&payload("prod", NOW)).expect("signs").to_json();
        let r = verifier()
            .verify(env.as_bytes(), NOW)
            .expect_err("unknown key");
        assert_eq!(r.reason(), "unknown_key");
        assert_eq!(
            (r.key_id.as_deref(), r.request_id),
            (Some("stranger"), None)
        );

        let r = verifier().verify(b"garbage", NOW).expect_err("not json");
        assert_eq!((r.reason(), r.key_id), ("not_json", None));
    }

    #[test]
    fn default_limits_are_30s_skew_and_5min_ttl() {
        let v = verifier();
        let issued_ahead = payload("prod", NOW.plus(Duration::from_secs(31)));
        assert_eq!(
            v.verify(&raw(&issued_ahead), NOW)
                .expect_err("future")
                .reason(),
            "from_future"
        );
        let long = payload("prod", NOW).with_ttl(Duration::from_secs(301));
        assert_eq!(
            v.verify(&raw(&long), NOW).expect_err("window").reason(),
            "bad_window"
        );
        let max = payload("prod", NOW).with_ttl(Duration::from_secs(300));
        v.verify(&raw(&max), NOW).expect("5 min is allowed");
        // The latest accepted request (issued skew ahead, max ttl) is still reserved at its end.
        assert!(v.nonce_ttl() > DEFAULT_MAX_TTL + DEFAULT_MAX_SKEW * 2);
    }
}
