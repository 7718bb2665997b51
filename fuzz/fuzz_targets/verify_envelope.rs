//! Fuzzes envelope parsing and verification (`vigil_protocol::signing::verify_envelope`).
//!
//! The first input byte picks the mode:
//! - even: the rest is the raw envelope, as anyone who can XADD to the stream could send it;
//! - odd: the rest is payload bytes, wrapped in an envelope signed with the trusted key, so the
//!   fuzzer gets past the signature into the strict payload parser and the claim checks.
//!
//! Invariants: no panic; every rejection has a listed reason; anything accepted is a valid
//! payload for the expected deployment, signed by the trusted key, and re-signs and re-verifies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::Duration;
use vigil_protocol::signing::{Signer, SigningKey, VerifyKeys, verify_envelope};
use vigil_protocol::wire::Rejection;
use vigil_shared::time::Timestamp;

const DEPLOYMENT: &str = "prod";
const NOW: Timestamp = Timestamp(1_000_000);
const SKEW: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(300);

static SIGNER: LazyLock<Signer> =
    LazyLock::new(|| Signer::new("fuzz", SigningKey::from_bytes(&[42; 32])).expect("valid key id"));
static KEYS: LazyLock<VerifyKeys> =
    LazyLock::new(|| VerifyKeys::from([("fuzz".to_string(), SIGNER.verifying_key())]));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let raw = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        SIGNER.sign_raw_payload(rest).to_json().into_bytes()
    };
    match verify_envelope(&raw, &KEYS, DEPLOYMENT, NOW, SKEW, TTL) {
        Ok(verified) => {
            assert_eq!(verified.key_id, "fuzz");
            assert_eq!(verified.payload.deployment, DEPLOYMENT);
            verified
                .payload
                .validate()
                .expect("accepted payloads are valid");
            // Re-serialising may grow a payload by a few bytes (`0` becomes `0.0`), so one at
            // the size cap may not re-sign; anything else must.
            match SIGNER.sign(&verified.payload) {
                Ok(again) => {
                    let again = again.to_json();
                    let back = verify_envelope(again.as_bytes(), &KEYS, DEPLOYMENT, NOW, SKEW, TTL)
                        .expect("a re-signed accepted payload verifies");
                    assert_eq!(back.payload, verified.payload);
                }
                Err(e) => assert!(e.to_string().contains("byte cap"), "{e}"),
            }
        }
        Err(rejection) => {
            assert!(Rejection::ALL_REASONS.contains(&rejection.reason()));
            let _ = rejection.to_string();
        }
    }
});
