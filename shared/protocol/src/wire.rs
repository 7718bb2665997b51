//! The signed request: wire format v1 (docs/protocol.md).
//!
//! This module owns the shapes on the wire and their strict, pure parsing. The signature itself
//! (keys, signing, the full verifier) lives in [`crate::signing`].
//!
//! # Wire format v1
//! - Envelope: `{"v":1,"key_id":"<id>","payload":"<base64 standard, padded>","sig":"<base64 of 64 bytes>"}`.
//! - `sig` is Ed25519 over [`DOMAIN_TAG`] + one NUL byte + the payload bytes (see
//!   [`signed_message`]).
//! - Payload: `{"v":1,"id":"<uuid>","deployment":"..","issued_at":<ms>,"expires_at":<ms>,
//!   "nonce":"<32 lowercase hex>","action":"restart|start|stop",
//!   "target":{"id":"..","name":"..","project":"..","service":".."},
//!   "reason":{"signal":"..","severity":"..","detail":"..","confidence":0.9}}`.
//!
//! Parsing is strict at every level: an unknown field, a missing field, a wrong type, an unknown
//! action or version, and any over-long string is a [`Rejection`] with its own stable
//! [`Rejection::reason`]. Field names are checked by hand on a `serde_json::Value` before the
//! typed parse, so "unknown field" and "unknown action" never depend on serde's error texts.

use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;
use uuid::Uuid;
use vigil_shared::time::Timestamp;

/// The only wire version this code speaks, in both the envelope and the payload.
pub const WIRE_VERSION: u64 = 1;
/// Domain separation for request signatures; a NUL byte follows it in the signed message.
pub const DOMAIN_TAG: &[u8] = b"vigil/request/v1";
/// Largest envelope accepted, checked before anything is parsed.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;
/// Largest decoded payload accepted (its base64 form must still fit in the envelope).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024;
/// Longest `key_id` (key ids are file stems: `[A-Za-z0-9_.-]`, not starting with `.`).
pub const MAX_KEY_ID_LEN: usize = 64;
/// Longest short string in a payload: deployment, target fields, signal, severity (in chars).
pub const MAX_NAME_LEN: usize = 256;
/// Longest `reason.detail`, in chars.
pub const MAX_DETAIL_LEN: usize = 1024;
/// Length of a nonce: 16 random bytes as lowercase hex.
pub const NONCE_HEX_LEN: usize = 32;
/// Default lifetime of a request (`expires_at - issued_at`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Longest untrusted string echoed back inside a [`Rejection`] (so logs stay bounded).
const MAX_ECHO_LEN: usize = 64;

const ENVELOPE_FIELDS: Fields = Fields {
    path: "",
    required: &["v", "key_id", "payload", "sig"],
    optional: &[],
};
const PAYLOAD_FIELDS: Fields = Fields {
    path: "",
    required: &[
        "v",
        "id",
        "deployment",
        "issued_at",
        "expires_at",
        "nonce",
        "action",
        "target",
        "reason",
    ],
    optional: &[],
};
const TARGET_FIELDS: Fields = Fields {
    path: "target.",
    required: &["id", "name"],
    optional: &["project", "service"],
};
const REASON_FIELDS: Fields = Fields {
    path: "reason.",
    required: &["signal", "severity", "detail", "confidence"],
    optional: &[],
};

/// The outer, unauthenticated wrapper of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u64,
    pub key_id: String,
    /// Base64 (standard alphabet, padded) of the exact payload bytes that were signed.
    pub payload: String,
    /// Base64 of the 64-byte Ed25519 signature over [`signed_message`].
    pub sig: String,
}

/// What the watchdog asks the executor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Restart,
    Start,
    Stop,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Restart, Action::Start, Action::Stop];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Start => "start",
            Action::Stop => "stop",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The container a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Why the watchdog asks. Informational: the executor's policy never trusts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Signal kind, e.g. `container_unhealthy`.
    pub signal: String,
    pub severity: String,
    pub detail: String,
    /// 0.0 ..= 1.0.
    pub confidence: f64,
}

impl Reason {
    /// Builds a reason that always fits the caps: `detail` is cut to [`MAX_DETAIL_LEN`] chars,
    /// the short strings to [`MAX_NAME_LEN`], `confidence` clamped to 0..=1 (NaN becomes 0).
    pub fn new(
        signal: impl Into<String>,
        severity: impl Into<String>,
        detail: impl Into<String>,
        confidence: f64,
    ) -> Reason {
        let confidence = if confidence.is_nan() {
            0.0
        } else {
            confidence.clamp(0.0, 1.0)
        };
        Reason {
            signal: truncate_chars(signal.into(), MAX_NAME_LEN),
            severity: truncate_chars(severity.into(), MAX_NAME_LEN),
            detail: truncate_chars(detail.into(), MAX_DETAIL_LEN),
            confidence,
        }
    }
}

/// The signed content of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub v: u64,
    pub id: Uuid,
    pub deployment: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// 32 lowercase hex chars (128 random bits). Replay protection is the executor's job: it
    /// reserves each nonce in Redis; [`crate::signing::verify_envelope`] does not.
    pub nonce: String,
    pub action: Action,
    pub target: Target,
    pub reason: Reason,
}

impl Payload {
    /// A fresh request issued at `now`, expiring after [`DEFAULT_TTL`], with a random v4 id and a
    /// 128-bit nonce from the OS generator.
    pub fn new(
        deployment: impl Into<String>,
        action: Action,
        target: Target,
        reason: Reason,
        now: Timestamp,
    ) -> Payload {
        Payload {
            v: WIRE_VERSION,
            id: Uuid::new_v4(),
            deployment: deployment.into(),
            issued_at: now,
            expires_at: now.plus(DEFAULT_TTL),
            nonce: new_nonce(),
            action,
            target,
            reason,
        }
    }

    /// The same request with `expires_at = issued_at + ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Payload {
        self.expires_at = self.issued_at.plus(ttl);
        self
    }

    /// Checks every value-level rule of the wire format (version, nonce shape, confidence range,
    /// string lengths, non-empty identifiers). Time and deployment are checked by the verifier.
    pub fn validate(&self) -> Result<(), Rejection> {
        if self.v != WIRE_VERSION {
            return Err(Rejection::UnsupportedVersion { version: self.v });
        }
        if !is_nonce(&self.nonce) {
            return Err(Rejection::BadPayload(
                "nonce must be 32 lowercase hex chars".into(),
            ));
        }
        let c = self.reason.confidence;
        if !(c.is_finite() && (0.0..=1.0).contains(&c)) {
            return Err(Rejection::BadPayload(
                "reason.confidence must be within 0..=1".into(),
            ));
        }
        non_empty_capped("deployment", &self.deployment, MAX_NAME_LEN)?;
        non_empty_capped("target.id", &self.target.id, MAX_NAME_LEN)?;
        non_empty_capped("target.name", &self.target.name, MAX_NAME_LEN)?;
        capped(
            "target.project",
            self.target.project.as_deref(),
            MAX_NAME_LEN,
        )?;
        capped(
            "target.service",
            self.target.service.as_deref(),
            MAX_NAME_LEN,
        )?;
        non_empty_capped("reason.signal", &self.reason.signal, MAX_NAME_LEN)?;
        capped("reason.severity", Some(&self.reason.severity), MAX_NAME_LEN)?;
        capped("reason.detail", Some(&self.reason.detail), MAX_DETAIL_LEN)?;
        Ok(())
    }
}

/// Why a request was refused by the verifier. [`Rejection::reason`] is the stable code that
/// audit records, metrics and tests use; `Display` adds the detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("envelope is {size} bytes, over the {max}-byte cap")]
    TooLarge { size: usize, max: usize },
    #[error("envelope is not JSON")]
    NotJson,
    #[error("malformed envelope: {0}")]
    BadEnvelope(String),
    #[error("unsupported wire version {version}")]
    UnsupportedVersion { version: u64 },
    #[error("unknown key_id {key_id:?}")]
    UnknownKey { key_id: String },
    #[error("{field} is not valid padded standard base64")]
    BadEncoding { field: &'static str },
    #[error("signature is {len} bytes, not 64")]
    BadSignatureLength { len: usize },
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed payload: {0}")]
    BadPayload(String),
    #[error("unknown field {field:?}")]
    UnknownField { field: String },
    #[error("missing field {field:?}")]
    MissingField { field: String },
    #[error("unknown action {action:?}")]
    UnknownAction { action: String },
    #[error("request is for deployment {got:?}")]
    WrongDeployment { got: String },
    #[error("request expired at {expires_at} (now {now})", expires_at = expires_at.0, now = now.0)]
    Expired {
        expires_at: Timestamp,
        now: Timestamp,
    },
    #[error("request issued at {issued_at}, in the future (now {now})", issued_at = issued_at.0, now = now.0)]
    FromFuture {
        issued_at: Timestamp,
        now: Timestamp,
    },
    #[error("validity window {issued_at}..{expires_at} is empty or too long", issued_at = issued_at.0, expires_at = expires_at.0)]
    BadWindow {
        issued_at: Timestamp,
        expires_at: Timestamp,
    },
}

impl Rejection {
    /// The stable machine-readable code of this rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NotJson => "not_json",
            Rejection::BadEnvelope(_) => "bad_envelope",
            Rejection::UnsupportedVersion { .. } => "unsupported_version",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::BadEncoding { .. } => "bad_encoding",
            Rejection::BadSignatureLength { .. } => "bad_signature_length",
            Rejection::BadSignature => "bad_signature",
            Rejection::BadPayload(_) => "bad_payload",
            Rejection::UnknownField { .. } => "unknown_field",
            Rejection::MissingField { .. } => "missing_field",
            Rejection::UnknownAction { .. } => "unknown_action",
            Rejection::WrongDeployment { .. } => "wrong_deployment",
            Rejection::Expired { .. } => "expired",
            Rejection::FromFuture { .. } => "from_future",
            Rejection::BadWindow { .. } => "bad_window",
        }
    }

    /// Every stable reason code, for metrics label sets and docs.
    pub const ALL_REASONS: [&'static str; 16] = [
        "too_large",
        "not_json",
        "bad_envelope",
        "unsupported_version",
        "unknown_key",
        "bad_encoding",
        "bad_signature_length",
        "bad_signature",
        "bad_payload",
        "unknown_field",
        "missing_field",
        "unknown_action",
        "wrong_deployment",
        "expired",
        "from_future",
        "bad_window",
    ];
}

impl Envelope {
    /// Size cap, then strict parse: JSON object, version, exact field set, field types, key_id
    /// shape. Nothing here is authenticated yet.
    pub fn parse(raw: &[u8]) -> Result<Envelope, Rejection> {
        if raw.len() > MAX_ENVELOPE_BYTES {
            return Err(Rejection::TooLarge {
                size: raw.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let value: Value = serde_json::from_slice(raw).map_err(|e| {
            if e.is_data() {
                Rejection::BadEnvelope(e.to_string())
            } else {
                Rejection::NotJson
            }
        })?;
        let Value::Object(obj) = value else {
            return Err(Rejection::BadEnvelope("not a JSON object".into()));
        };
        check_version(&obj, Rejection::BadEnvelope)?;
        ENVELOPE_FIELDS.check(&obj)?;
        // Typed parse of the bytes (not the `Value`), so duplicate keys are rejected too.
        let env: Envelope =
            serde_json::from_slice(raw).map_err(|e| Rejection::BadEnvelope(e.to_string()))?;
        if !is_key_id(&env.key_id) {
            return Err(Rejection::BadEnvelope(
                "key_id must be 1-64 chars of [A-Za-z0-9_.-], not starting with '.'".into(),
            ));
        }
        Ok(env)
    }

    /// The envelope as compact JSON (what goes into the requests stream).
    pub fn to_json(&self) -> String {
        // A struct of four strings and an integer always serialises.
        serde_json::to_string(self).expect("an envelope always serialises")
    }
}

/// Strictly parses authenticated payload bytes: exact field sets at every level, version, known
/// action, types, then [`Payload::validate`].
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, Rejection> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::BadPayload(format!(
            "payload is {} bytes, over the {MAX_PAYLOAD_BYTES}-byte cap",
            bytes.len()
        )));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::BadPayload(format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::BadPayload("not a JSON object".into()));
    };
    check_version(&obj, Rejection::BadPayload)?;
    PAYLOAD_FIELDS.check(&obj)?;
    for (key, fields) in [("target", &TARGET_FIELDS), ("reason", &REASON_FIELDS)] {
        match obj.get(key) {
            Some(Value::Object(inner)) => fields.check(inner)?,
            _ => return Err(Rejection::BadPayload(format!("{key} must be an object"))),
        }
    }
    match obj.get("action") {
        Some(Value::String(a)) if Action::parse(a).is_some() => {}
        Some(Value::String(a)) => {
            return Err(Rejection::UnknownAction { action: echo(a) });
        }
        _ => return Err(Rejection::BadPayload("action must be a string".into())),
    }
    // Only the hyphenated form (36 chars, as every UUID library writes it) is accepted.
    match obj.get("id") {
        Some(Value::String(id)) if id.len() == 36 => {}
        _ => {
            return Err(Rejection::BadPayload(
                "id must be a hyphenated UUID string".into(),
            ));
        }
    }
    // Typed parse of the bytes (not the `Value`), so duplicate keys are rejected too.
    let payload: Payload =
        serde_json::from_slice(bytes).map_err(|e| Rejection::BadPayload(e.to_string()))?;
    payload.validate()?;
    Ok(payload)
}

/// The exact bytes a request signature covers: tag, NUL, payload bytes.
pub fn signed_message(payload_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN_TAG.len() + 1 + payload_bytes.len());
    msg.extend_from_slice(DOMAIN_TAG);
    msg.push(0);
    msg.extend_from_slice(payload_bytes);
    msg
}

/// 16 bytes from the OS generator as 32 lowercase hex chars.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_HEX_LEN / 2];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Exactly [`NONCE_HEX_LEN`] lowercase hex chars.
pub fn is_nonce(s: &str) -> bool {
    s.len() == NONCE_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A key id usable as a file stem: 1..=64 chars of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn is_key_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY_ID_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// [`is_key_id`] as a configuration validator (for `ConfigReader::get_checked`): the message
/// names the rule, the reader adds the key.
pub fn key_id(s: &String) -> Result<(), String> {
    if is_key_id(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be 1 to {MAX_KEY_ID_LEN} letters, digits, '.', '_' or '-', not starting with '.'"
        ))
    }
}

/// The allowed field set of one JSON object level.
struct Fields {
    /// Prefix for field names in rejections (`target.`).
    path: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

impl Fields {
    fn check(&self, obj: &Map<String, Value>) -> Result<(), Rejection> {
        if let Some(unknown) = obj
            .keys()
            .find(|k| !self.required.contains(&k.as_str()) && !self.optional.contains(&k.as_str()))
        {
            return Err(Rejection::UnknownField {
                field: format!("{}{}", self.path, echo(unknown)),
            });
        }
        if let Some(missing) = self.required.iter().find(|k| !obj.contains_key(**k)) {
            return Err(Rejection::MissingField {
                field: format!("{}{missing}", self.path),
            });
        }
        Ok(())
    }
}

/// A present `v` other than 1 is an unsupported version (checked before the field set, since a
/// later version may well add fields).
fn check_version(
    obj: &Map<String, Value>,
    malformed: fn(String) -> Rejection,
) -> Result<(), Rejection> {
    match obj.get("v") {
        None => Ok(()),
        Some(v) => match v.as_u64() {
            Some(WIRE_VERSION) => Ok(()),
            Some(version) => Err(Rejection::UnsupportedVersion { version }),
            None => Err(malformed("v must be a non-negative integer".into())),
        },
    }
}

fn non_empty_capped(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::BadPayload(format!("{field} is empty")));
    }
    capped(field, Some(value), max)
}

fn capped(field: &str, value: Option<&str>, max: usize) -> Result<(), Rejection> {
    match value {
        Some(v) if v.chars().count() > max => Err(Rejection::BadPayload(format!(
            "{field} is longer than {max} chars"
        ))),
        _ => Ok(()),
    }
}

/// An untrusted string, cut short for echoing in a rejection.
fn echo(s: &str) -> String {
    truncate_chars(s.to_string(), MAX_ECHO_LEN)
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        Payload::new(
            "prod",
            Action::Restart,
            Target {
                id: "abc123".into(),
                name: "web-1".into(),
                project: Some("shop".into()),
                service: Some("web".into()),
            },
            Reason::new("container_unhealthy", "high", "unhealthy for 45s", 0.9),
            Timestamp(1_700_000_000_000),
        )
    }

    #[test]
    fn new_payload_has_fresh_nonce_id_and_default_window() {
        let a = sample();
        let b = sample();
        assert!(is_nonce(&a.nonce), "{}", a.nonce);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.id, b.id);
        assert_eq!(a.expires_at.0 - a.issued_at.0, 60_000);
        assert_eq!(
            a.clone().with_ttl(Duration::from_secs(5)).expires_at.0 - a.issued_at.0,
            5_000
        );
        a.validate().expect("a fresh payload is valid");
    }

    #[test]
    fn payload_round_trips_through_strict_parse() {
        let p = sample();
        let bytes = serde_json::to_vec(&p).expect("serialises");
        assert_eq!(parse_payload(&bytes), Ok(p));
    }

    #[test]
    fn optional_target_fields_may_be_absent() {
        let mut p = sample();
        p.target.project = None;
        p.target.service = None;
        let bytes = serde_json::to_vec(&p).expect("serialises");
        assert!(!String::from_utf8_lossy(&bytes).contains("project"));
        assert_eq!(parse_payload(&bytes), Ok(p));
    }

    fn reject(p: Value) -> Rejection {
        parse_payload(&serde_json::to_vec(&p).expect("serialises")).expect_err("must reject")
    }

    fn sample_value() -> Value {
        serde_json::to_value(sample()).expect("serialises")
    }

    #[test]
    fn payload_rejections_have_distinct_reasons() {
        let mut v = sample_value();
        v["extra"] = Value::Bool(true);
        assert_eq!(
            reject(v),
            Rejection::UnknownField {
                field: "extra".into()
            }
        );

        let mut v = sample_value();
        v["target"]["image"] = "x".into();
        assert_eq!(
            reject(v),
            Rejection::UnknownField {
                field: "target.image".into()
            }
        );

        let mut v = sample_value();
        v.as_object_mut().expect("object").remove("nonce");
        assert_eq!(
            reject(v),
            Rejection::MissingField {
                field: "nonce".into()
            }
        );

        let mut v = sample_value();
        v["reason"]
            .as_object_mut()
            .expect("object")
            .remove("confidence");
        assert_eq!(
            reject(v),
            Rejection::MissingField {
                field: "reason.confidence".into()
            }
        );

        let mut v = sample_value();
        v["action"] = "remove".into();
        assert_eq!(
            reject(v),
            Rejection::UnknownAction {
                action: "remove".into()
            }
        );

        let mut v = sample_value();
        v["v"] = 2.into();
        assert_eq!(reject(v), Rejection::UnsupportedVersion { version: 2 });

        for (field, bad) in [
            ("nonce", Value::from("ABCDEF0123456789abcdef0123456789")),
            ("nonce", Value::from("abc")),
            ("id", Value::from("not-a-uuid")),
            ("id", Value::from("6f1c2d7e8a4b4c3d9e2f0a1b2c3d4e5f")),
            ("id", Value::from("6f1c2d7e-8a4b-4c3d-9e2f-0a1b2c3d4e5g")),
            ("issued_at", Value::from("now")),
            ("deployment", Value::from("")),
        ] {
            let mut v = sample_value();
            v[field] = bad.clone();
            assert_eq!(reject(v).reason(), "bad_payload", "{field} = {bad}");
        }
        for bad in [-0.1, 1.5] {
            let mut v = sample_value();
            v["reason"]["confidence"] = bad.into();
            assert_eq!(reject(v).reason(), "bad_payload", "confidence {bad}");
        }
        let mut v = sample_value();
        v["reason"]["detail"] = "x".repeat(MAX_DETAIL_LEN + 1).into();
        assert_eq!(reject(v).reason(), "bad_payload");
        let mut v = sample_value();
        v["target"] = "web".into();
        assert_eq!(reject(v).reason(), "bad_payload");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let p = serde_json::to_string(&sample()).expect("serialises");
        let dup = p.replacen(
            r#""action":"restart""#,
            r#""action":"stop","action":"restart""#,
            1,
        );
        assert_ne!(dup, p);
        assert_eq!(
            parse_payload(dup.as_bytes()).map_err(|r| r.reason()),
            Err("bad_payload")
        );
        assert_eq!(
            Envelope::parse(br#"{"v":1,"key_id":"a","key_id":"b","payload":"","sig":""}"#)
                .map_err(|r| r.reason()),
            Err("bad_envelope")
        );
    }

    #[test]
    fn envelope_parse_distinguishes_not_json_from_bad_shape() {
        assert_eq!(Envelope::parse(b"{not json"), Err(Rejection::NotJson));
        assert_eq!(Envelope::parse(b"\xff\xfe"), Err(Rejection::NotJson));
        assert_eq!(
            Envelope::parse(b"[1,2]").map_err(|r| r.reason()),
            Err("bad_envelope")
        );
        assert_eq!(
            Envelope::parse(br#"{"v":1,"key_id":"k","payload":"","sig":"","x":1}"#),
            Err(Rejection::UnknownField { field: "x".into() })
        );
        assert_eq!(
            Envelope::parse(br#"{"v":2,"key_id":"k","payload":"","sig":""}"#),
            Err(Rejection::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            Envelope::parse(br#"{"v":1,"key_id":"../k","payload":"","sig":""}"#)
                .map_err(|r| r.reason()),
            Err("bad_envelope")
        );
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            Envelope::parse(&big).map_err(|r| r.reason()),
            Err("too_large")
        );
    }

    #[test]
    fn reason_new_fits_the_caps() {
        let r = Reason::new("s", "high", "é".repeat(MAX_DETAIL_LEN + 10), f64::NAN);
        assert_eq!(r.detail.chars().count(), MAX_DETAIL_LEN);
        assert_eq!(r.confidence, 0.0);
        assert_eq!(Reason::new("s", "h", "d", 7.0).confidence, 1.0);
    }

    #[test]
    fn reason_codes_are_listed() {
        let samples = [
            Rejection::TooLarge { size: 1, max: 0 },
            Rejection::NotJson,
            Rejection::BadSignature,
            Rejection::Expired {
                expires_at: Timestamp(0),
                now: Timestamp(1),
            },
        ];
        for r in samples {
            assert!(
                Rejection::ALL_REASONS.contains(&r.reason()),
                "{}",
                r.reason()
            );
        }
    }

    #[test]
    fn key_id_validator_explains_the_rule() {
        assert!(key_id(&"wd-1.a_b".to_string()).is_ok());
        for bad in ["", ".hidden", "a/b", &"k".repeat(MAX_KEY_ID_LEN + 1)] {
            let message = key_id(&bad.to_string()).expect_err(bad);
            assert!(message.contains("not starting with '.'"), "{message}");
        }
    }

    #[test]
    fn key_ids() {
        assert!(is_key_id("watchdog-2024.01_a"));
        for bad in ["", ".hidden", "a/b", "a b", &"k".repeat(65)] {
            assert!(!is_key_id(bad), "{bad:?}");
        }
    }
}
