//! The wire-format v1 test vector in `tests/vectors/request_v1.json`: other implementations can
//! check their signing and verification against it.
//!
//! The vector's key is derived (seed = SHA-256 of the ASCII text in `private_key_seed`), and
//! Ed25519 is deterministic, so this test rebuilds the whole file and compares it byte for byte.
//! After a deliberate format change, `VIGIL_REGENERATE_VECTORS=1 cargo test -p vigil-protocol
//! --test request_vectors -- --test-threads=1` rewrites the file (the comparison still runs).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;
use vigil_protocol::signing::{
    Signer, SigningKey, VerifyKeys, VerifyingKey, public_key_pem, verify_envelope,
};
use vigil_protocol::wire::{Action, Payload, Reason, Target, WIRE_VERSION, signed_message};
use vigil_shared::time::Timestamp;

const SEED_TEXT: &str = "vigil/request/v1 test vector key";
const KEY_ID: &str = "test-vector";
const DEPLOYMENT: &str = "prod";
const ISSUED_AT: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const SKEW: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(300);

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/request_v1.json")
}

fn signer() -> Signer {
    let seed: [u8; 32] = Sha256::digest(SEED_TEXT.as_bytes()).into();
    Signer::new(KEY_ID, SigningKey::from_bytes(&seed)).expect("valid key id")
}

fn payload() -> Payload {
    Payload {
        v: WIRE_VERSION,
        id: Uuid::parse_str("6f1c2d7e-8a4b-4c3d-9e2f-0a1b2c3d4e5f").expect("uuid"),
        deployment: DEPLOYMENT.into(),
        issued_at: Timestamp(ISSUED_AT),
        expires_at: Timestamp(ISSUED_AT + 60_000),
        nonce: "00112233445566778899aabbccddeeff".into(),
        action: Action::Restart,
        target: Target {
            id: "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99".into(),
            name: "shop-web-1".into(),
            project: Some("shop".into()),
            service: Some("web".into()),
        },
        reason: Reason::new(
            "container_unhealthy",
            "high",
            "health check failing for 45s",
            0.9,
        ),
    }
}

fn build_vector() -> Value {
    let s = signer();
    let p = payload();
    let env = s.sign(&p).expect("signs");
    let payload_bytes = BASE64.decode(&env.payload).expect("base64");

    let mut flipped = payload_bytes.clone();
    flipped[20] ^= 0x01;
    let mut flipped_env = env.clone();
    flipped_env.payload = BASE64.encode(&flipped);

    let mut other = p.clone();
    other.deployment = "staging".into();

    let mut unknown_action = serde_json::to_value(&p).expect("value");
    unknown_action["action"] = "exec".into();
    let unknown_action = serde_json::to_vec(&unknown_action).expect("bytes");

    let mut unknown_field = serde_json::to_value(&p).expect("value");
    unknown_field["privileged"] = true.into();
    let unknown_field = serde_json::to_vec(&unknown_field).expect("bytes");

    json!({
        "description": "Vigil signed request, wire format v1. Verify `envelope` with `public_key_pem` (key id `key_id`) for deployment `deployment` at time `now` (Unix ms), with max_skew_ms and max_ttl_ms; each entry of `rejections` must be rejected with its reason.",
        "private_key_seed": format!("SHA-256 of the ASCII text '{SEED_TEXT}' (test key, never use it)"),
        "key_id": KEY_ID,
        "public_key_pem": public_key_pem(&s.verifying_key()).expect("pem"),
        "deployment": DEPLOYMENT,
        "now": ISSUED_AT + 10_000,
        "max_skew_ms": 30_000,
        "max_ttl_ms": 300_000,
        "envelope": env.to_json(),
        "payload_json": String::from_utf8(payload_bytes.clone()).expect("utf8"),
        "signed_message_hex": hex::encode(signed_message(&payload_bytes)),
        "rejections": [
            { "reason": "bad_signature", "envelope": flipped_env.to_json() },
            { "reason": "wrong_deployment", "envelope": s.sign(&other).expect("signs").to_json() },
            { "reason": "unknown_action", "envelope": s.sign_raw_payload(&unknown_action).to_json() },
            { "reason": "unknown_field", "envelope": s.sign_raw_payload(&unknown_field).to_json() },
            { "reason": "expired", "envelope": env.to_json(), "now": ISSUED_AT + 60_000 + 30_001 },
        ],
    })
}

#[test]
fn vector_file_is_reproducible() {
    let built = serde_json::to_string_pretty(&build_vector()).expect("json") + "\n";
    if std::env::var_os("VIGIL_REGENERATE_VECTORS").is_some() {
        std::fs::write(vector_path(), &built).expect("write vector");
    }
    let stored = std::fs::read_to_string(vector_path()).expect("vector file exists");
    assert_eq!(
        stored, built,
        "the vector file differs from what the code produces"
    );
}

#[test]
fn vector_verifies_from_the_file_alone() {
    let text = std::fs::read_to_string(vector_path()).expect("vector file exists");
    let v: Value = serde_json::from_str(&text).expect("vector JSON");
    let pem = v["public_key_pem"].as_str().expect("pem");
    let key = <VerifyingKey as ed25519_dalek::pkcs8::DecodePublicKey>::from_public_key_pem(pem)
        .expect("SPKI PEM");
    let key_id = v["key_id"].as_str().expect("key id");
    let keys = VerifyKeys::from([(key_id.to_string(), key)]);
    let deployment = v["deployment"].as_str().expect("deployment");
    let now = Timestamp(v["now"].as_i64().expect("now"));
    let skew = Duration::from_millis(v["max_skew_ms"].as_u64().expect("skew"));
    let ttl = Duration::from_millis(v["max_ttl_ms"].as_u64().expect("ttl"));
    assert_eq!((skew, ttl), (SKEW, MAX_TTL));

    let envelope = v["envelope"].as_str().expect("envelope");
    let verified =
        verify_envelope(envelope.as_bytes(), &keys, deployment, now, skew, ttl).expect("verifies");
    assert_eq!(verified.key_id, key_id);
    assert_eq!(verified.payload, payload());
    let payload_json = v["payload_json"].as_str().expect("payload json");
    let env: Value = serde_json::from_str(envelope).expect("envelope JSON");
    let signed = BASE64
        .decode(env["payload"].as_str().expect("payload"))
        .expect("base64");
    assert_eq!(signed, payload_json.as_bytes());
    let mut msg = b"vigil/request/v1\0".to_vec();
    msg.extend_from_slice(&signed);
    assert_eq!(
        hex::encode(msg),
        v["signed_message_hex"].as_str().expect("hex")
    );

    let rejections = v["rejections"].as_array().expect("rejections");
    assert_eq!(rejections.len(), 5);
    for case in rejections {
        let reason = case["reason"].as_str().expect("reason");
        let at = case["now"].as_i64().map(Timestamp).unwrap_or(now);
        let raw = case["envelope"].as_str().expect("envelope");
        let got = verify_envelope(raw.as_bytes(), &keys, deployment, at, skew, ttl)
            .expect_err("must be rejected");
        assert_eq!(got.reason(), reason, "{got}");
    }
}
