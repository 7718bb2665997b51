//! Ed25519 keys, PEM key files, request signing and the strict, pure request verifier.
//!
//! Key files are PEM: PKCS#8 for a private key, SPKI for a public key, so keys made by
//! `openssl genpkey -algorithm ed25519` (and `openssl pkey -pubout`) work as well as those
//! [`write_keypair`] makes. The executor holds only public keys, by `key_id` (a file's stem), so
//! keys can rotate.
//!
//! # Verification order
//! [`verify_envelope`] is pure (`now` comes from the caller) and checks, in this order: size cap,
//! envelope JSON and shape, version, known `key_id`, base64, signature length, the signature
//! (`verify_strict`) over [`signed_message`] — all *before* the payload is parsed — then the strict
//! payload parse, the deployment, and the time window.
//!
//! **Not checked here: replay.** Each nonce must be reserved atomically (Redis `SET NX` with a TTL
//! that outlives `expires_at + max_skew`) by the executor after this returns `Ok`.

use crate::wire::{
    Envelope, MAX_PAYLOAD_BYTES, Payload, Rejection, is_key_id, parse_payload, signed_message,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SIGNATURE_LENGTH, Signature, Signer as _};
use rand::rngs::OsRng;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_shared::time::Timestamp;

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Public keys by `key_id`.
pub type VerifyKeys = BTreeMap<String, VerifyingKey>;

/// Key file and signing failures. Messages name the file and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite a key file")]
    Exists { path: PathBuf },
    #[error("{path}: not a PKCS#8 PEM Ed25519 private key: {detail}")]
    BadPrivateKey { path: PathBuf, detail: String },
    #[error("{path}: not an SPKI PEM Ed25519 public key: {detail}")]
    BadPublicKey { path: PathBuf, detail: String },
    #[error(
        "{path}: the file stem is the key id and must be 1-64 chars of [A-Za-z0-9_.-], not starting with '.'"
    )]
    BadKeyFileName { path: PathBuf },
    #[error("{dir}: more than one file for key id {key_id:?}")]
    DuplicateKeyId { dir: PathBuf, key_id: String },
    #[error("{dir}: no public keys (*.pem or *.pub files)")]
    NoKeys { dir: PathBuf },
    #[error("invalid key id {0:?}: must be 1-64 chars of [A-Za-z0-9_.-], not starting with '.'")]
    BadKeyId(String),
    #[error("cannot encode the key as PEM: {0}")]
    Encode(String),
    #[error("the payload would be rejected: {0}")]
    InvalidPayload(Rejection),
}

/// A private key and the id the executor knows its public half by.
pub struct Signer {
    key_id: String,
    signing_key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key_id: impl Into<String>, signing_key: SigningKey) -> Result<Signer, SigningError> {
        let key_id = key_id.into();
        if !is_key_id(&key_id) {
            return Err(SigningError::BadKeyId(key_id));
        }
        Ok(Signer {
            key_id,
            signing_key,
        })
    }

    /// Loads the PKCS#8 PEM private key at `path`.
    pub fn from_key_file(key_id: impl Into<String>, path: &Path) -> Result<Signer, SigningError> {
        Signer::new(key_id, load_signing_key(path)?)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// Validates the payload, serialises it once and signs exactly those bytes.
    pub fn sign(&self, payload: &Payload) -> Result<Envelope, SigningError> {
        payload.validate().map_err(SigningError::InvalidPayload)?;
        // Strings, integers, a UUID and a finite f64 always serialise.
        let bytes = serde_json::to_vec(payload).expect("a payload always serialises");
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(SigningError::InvalidPayload(Rejection::BadPayload(
                format!(
                    "payload is {} bytes, over the {MAX_PAYLOAD_BYTES}-byte cap",
                    bytes.len()
                ),
            )));
        }
        Ok(self.sign_raw_payload(&bytes))
    }

    /// Wraps arbitrary payload bytes in a signed envelope, unchecked. For tests, fuzzing and
    /// interoperability tools; programs use [`Signer::sign`].
    pub fn sign_raw_payload(&self, payload_bytes: &[u8]) -> Envelope {
        let sig = self.signing_key.sign(&signed_message(payload_bytes));
        Envelope {
            v: crate::wire::WIRE_VERSION,
            key_id: self.key_id.clone(),
            payload: BASE64.encode(payload_bytes),
            sig: BASE64.encode(sig.to_bytes()),
        }
    }
}

/// A request that passed every check of [`verify_envelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The key that signed it.
    pub key_id: String,
    pub payload: Payload,
}

/// An envelope whose signature verified; its payload is not parsed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub key_id: String,
    pub payload_bytes: Vec<u8>,
}

/// First stage of [`verify_envelope`]: size cap, envelope, key, base64, signature.
pub fn authenticate(raw: &[u8], keys: &VerifyKeys) -> Result<Authenticated, Rejection> {
    let env = Envelope::parse(raw)?;
    let Some(key) = keys.get(&env.key_id) else {
        return Err(Rejection::UnknownKey { key_id: env.key_id });
    };
    let payload_bytes = BASE64
        .decode(env.payload.as_bytes())
        .map_err(|_| Rejection::BadEncoding { field: "payload" })?;
    let sig_bytes = BASE64
        .decode(env.sig.as_bytes())
        .map_err(|_| Rejection::BadEncoding { field: "sig" })?;
    let sig_array: [u8; SIGNATURE_LENGTH] =
        sig_bytes
            .as_slice()
            .try_into()
            .map_err(|_| Rejection::BadSignatureLength {
                len: sig_bytes.len(),
            })?;
    let sig = Signature::from_bytes(&sig_array);
    key.verify_strict(&signed_message(&payload_bytes), &sig)
        .map_err(|_| Rejection::BadSignature)?;
    Ok(Authenticated {
        key_id: env.key_id,
        payload_bytes,
    })
}

/// Last stage of [`verify_envelope`]: deployment, then the time window. A request expired less
/// than `max_skew` ago, or issued less than `max_skew` ahead, is still accepted; its window must
/// be positive and at most `max_ttl`.
pub fn check_claims(
    payload: &Payload,
    expected_deployment: &str,
    now: Timestamp,
    max_skew: Duration,
    max_ttl: Duration,
) -> Result<(), Rejection> {
    if payload.deployment != expected_deployment {
        return Err(Rejection::WrongDeployment {
            got: payload.deployment.chars().take(64).collect(),
        });
    }
    if payload.expires_at < now.minus(max_skew) {
        return Err(Rejection::Expired {
            expires_at: payload.expires_at,
            now,
        });
    }
    if payload.issued_at > now.plus(max_skew) {
        return Err(Rejection::FromFuture {
            issued_at: payload.issued_at,
            now,
        });
    }
    let window = payload.expires_at.0.saturating_sub(payload.issued_at.0);
    let max_ttl_ms = i64::try_from(max_ttl.as_millis()).unwrap_or(i64::MAX);
    if window <= 0 || window > max_ttl_ms {
        return Err(Rejection::BadWindow {
            issued_at: payload.issued_at,
            expires_at: payload.expires_at,
        });
    }
    Ok(())
}

/// The full, pure request check (see the module docs for the order). Replay is the caller's
/// job: reserve `payload.nonce` after this succeeds.
pub fn verify_envelope(
    raw: &[u8],
    keys: &VerifyKeys,
    expected_deployment: &str,
    now: Timestamp,
    max_skew: Duration,
    max_ttl: Duration,
) -> Result<Verified, Rejection> {
    let auth = authenticate(raw, keys)?;
    let payload = parse_payload(&auth.payload_bytes)?;
    check_claims(&payload, expected_deployment, now, max_skew, max_ttl)?;
    Ok(Verified {
        key_id: auth.key_id,
        payload,
    })
}

/// A new private key from the OS generator.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

/// Reads a PKCS#8 PEM Ed25519 private key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, SigningError> {
    let text = read(path)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| SigningError::BadPrivateKey {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Reads an SPKI PEM Ed25519 public key.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, SigningError> {
    let text = read(path)?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| {
        let hint = if text.contains("PRIVATE KEY") {
            " (this is a private key; only public keys belong here)"
        } else {
            ""
        };
        SigningError::BadPublicKey {
            path: path.to_path_buf(),
            detail: format!("{e}{hint}"),
        }
    })
}

/// Loads every `*.pem` and `*.pub` file in `dir` as a public key named by its file stem. Other
/// files and subdirectories are ignored; any bad key file, bad stem or duplicate stem is an
/// error naming the file, and so is a directory without keys.
pub fn load_verify_keys(dir: &Path) -> Result<VerifyKeys, SigningError> {
    let read_err = |source| SigningError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let is_key_file = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pem") | Some("pub")
        );
        // `metadata` follows symlinks, as mounted secrets and config maps use them.
        if is_key_file && fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut keys = VerifyKeys::new();
    for path in paths {
        let key_id = match path.file_stem().and_then(|s| s.to_str()) {
            Some(stem) if is_key_id(stem) => stem.to_string(),
            _ => return Err(SigningError::BadKeyFileName { path }),
        };
        let key = load_verifying_key(&path)?;
        if keys.insert(key_id.clone(), key).is_some() {
            return Err(SigningError::DuplicateKeyId {
                dir: dir.to_path_buf(),
                key_id,
            });
        }
    }
    if keys.is_empty() {
        return Err(SigningError::NoKeys {
            dir: dir.to_path_buf(),
        });
    }
    Ok(keys)
}

/// Where [`write_keypair`] put a new key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairFiles {
    pub key_id: String,
    /// PKCS#8 PEM, mode 0600.
    pub private: PathBuf,
    /// SPKI PEM, mode 0644; copy it into the executor's key directory.
    pub public: PathBuf,
}

/// The `keygen` command: writes `<dir>/<key_id>.key` (private, 0600) and `<dir>/<key_id>.pub`
/// (public), creating `dir` if needed and never overwriting a file. The private key's extension
/// keeps it out of [`load_verify_keys`].
pub fn write_keypair(dir: &Path, key_id: &str) -> Result<KeyPairFiles, SigningError> {
    if !is_key_id(key_id) {
        return Err(SigningError::BadKeyId(key_id.to_string()));
    }
    fs::create_dir_all(dir).map_err(|source| SigningError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let private = dir.join(format!("{key_id}.key"));
    let public = dir.join(format!("{key_id}.pub"));
    write_keypair_files(&private, &public)?;
    Ok(KeyPairFiles {
        key_id: key_id.to_string(),
        private,
        public,
    })
}

/// Writes a new key pair to exactly these paths (private 0600, public 0644), refusing to
/// overwrite either. Returns the public key.
pub fn write_keypair_files(private: &Path, public: &Path) -> Result<VerifyingKey, SigningError> {
    for path in [private, public] {
        if path.exists() {
            return Err(SigningError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    let key = generate_signing_key();
    let line_ending = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
    // PKCS#8 v1 (RFC 8410, no embedded public key): OpenSSL 3.0 cannot read the v2 form that
    // `SigningKey::to_pkcs8_pem` writes.
    let private_pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(line_ending)
    .map_err(|e| SigningError::Encode(e.to_string()))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(line_ending)
        .map_err(|e| SigningError::Encode(e.to_string()))?;
    write_new(private, private_pem.as_bytes(), 0o600)?;
    write_new(public, public_pem.as_bytes(), 0o644)?;
    Ok(key.verifying_key())
}

/// The SPKI PEM form of a public key.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, SigningError> {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| SigningError::Encode(e.to_string()))
}

fn read(path: &Path) -> Result<String, SigningError> {
    fs::read_to_string(path).map_err(|source| SigningError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    let write_err = |source| SigningError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Action, MAX_ENVELOPE_BYTES, Reason, Target};
    use serde_json::Value;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);
    const SKEW: Duration = Duration::from_secs(30);
    const TTL: Duration = Duration::from_secs(300);

    fn signer(key_id: &str, seed: u8) -> Signer {
        Signer::new(key_id, SigningKey::from_bytes(&[seed; 32])).expect("valid key id")
    }

    fn keys() -> VerifyKeys {
        let s = signer("wd1", 1);
        VerifyKeys::from([(s.key_id().to_string(), s.verifying_key())])
    }

    fn payload_at(issued: Timestamp) -> Payload {
        Payload::new(
            "prod",
            Action::Restart,
            Target {
                id: "c0ffee".into(),
                name: "web-1".into(),
                project: Some("shop".into()),
                service: Some("web".into()),
            },
            Reason::new("container_unhealthy", "high", "unhealthy for 45s", 0.9),
            issued,
        )
    }

    fn check(raw: &[u8]) -> Result<Verified, Rejection> {
        verify_envelope(raw, &keys(), "prod", NOW, SKEW, TTL)
    }

    fn signed(p: &Payload) -> Vec<u8> {
        signer("wd1", 1)
            .sign(p)
            .expect("signs")
            .to_json()
            .into_bytes()
    }

    /// Signs arbitrary payload JSON with the trusted key.
    fn signed_value(v: &Value) -> Vec<u8> {
        let bytes = serde_json::to_vec(v).expect("serialises");
        signer("wd1", 1)
            .sign_raw_payload(&bytes)
            .to_json()
            .into_bytes()
    }

    fn envelope_value(raw: &[u8]) -> Value {
        serde_json::from_slice(raw).expect("envelope JSON")
    }

    fn reason(raw: &[u8]) -> &'static str {
        check(raw).expect_err("must be rejected").reason()
    }

    #[test]
    fn round_trip() {
        let p = payload_at(NOW);
        let got = check(&signed(&p)).expect("accepted");
        assert_eq!(got.key_id, "wd1");
        assert_eq!(got.payload, p);
    }

    #[test]
    fn signature_covers_tag_nul_and_exact_payload_bytes() {
        let s = signer("wd1", 1);
        let env = s.sign(&payload_at(NOW)).expect("signs");
        let bytes = BASE64.decode(&env.payload).expect("base64");
        let sig = BASE64.decode(&env.sig).expect("base64");
        let sig = Signature::from_slice(&sig).expect("64 bytes");
        let mut msg = b"vigil/request/v1\0".to_vec();
        msg.extend_from_slice(&bytes);
        s.verifying_key()
            .verify_strict(&msg, &sig)
            .expect("tagged message verifies");
        assert!(
            s.verifying_key().verify_strict(&bytes, &sig).is_err(),
            "untagged must not"
        );
    }

    #[test]
    fn bad_input_matrix() {
        let good = signed(&payload_at(NOW));

        // Wrong signature: another key under the trusted id.
        let forged = signer("wd1", 2).sign(&payload_at(NOW)).expect("signs");
        assert_eq!(reason(forged.to_json().as_bytes()), "bad_signature");

        // Unknown key id.
        let other = signer("wd9", 1).sign(&payload_at(NOW)).expect("signs");
        assert_eq!(reason(other.to_json().as_bytes()), "unknown_key");

        // One flipped payload byte.
        let mut env = envelope_value(&good);
        let mut bytes = BASE64
            .decode(env["payload"].as_str().expect("str"))
            .expect("b64");
        bytes[10] ^= 0x01;
        env["payload"] = BASE64.encode(&bytes).into();
        assert_eq!(reason(env.to_string().as_bytes()), "bad_signature");

        // Another deployment.
        let mut p = payload_at(NOW);
        p.deployment = "staging".into();
        assert_eq!(reason(&signed(&p)), "wrong_deployment");

        // Expired beyond the skew; expired within the skew is still fine.
        let old = payload_at(NOW.minus(Duration::from_secs(60 + 31)));
        assert_eq!(reason(&signed(&old)), "expired");
        let recent = payload_at(NOW.minus(Duration::from_secs(60 + 29)));
        assert!(check(&signed(&recent)).is_ok());

        // Issued in the future beyond the skew; within it is fine.
        let future = payload_at(NOW.plus(Duration::from_secs(31)));
        assert_eq!(reason(&signed(&future)), "from_future");
        let near = payload_at(NOW.plus(Duration::from_secs(29)));
        assert!(check(&signed(&near)).is_ok());

        // Window too long, empty, and inverted.
        let long = payload_at(NOW).with_ttl(Duration::from_secs(301));
        assert_eq!(reason(&signed(&long)), "bad_window");
        for ttl_ms in [0, -1000] {
            let mut p = payload_at(NOW);
            p.expires_at = Timestamp(p.issued_at.0 + ttl_ms);
            assert_eq!(reason(&signed(&p)), "bad_window", "ttl {ttl_ms}");
        }

        // Oversized, checked before parsing.
        let mut big = good.clone();
        big.resize(MAX_ENVELOPE_BYTES + 1, b' ');
        assert_eq!(reason(&big), "too_large");

        // Not JSON.
        assert_eq!(reason(b"restart web please"), "not_json");

        // Unknown action, signed.
        let mut v = serde_json::to_value(payload_at(NOW)).expect("value");
        v["action"] = "exec".into();
        assert_eq!(reason(&signed_value(&v)), "unknown_action");

        // Unknown field, signed.
        let mut v = serde_json::to_value(payload_at(NOW)).expect("value");
        v["privileged"] = true.into();
        assert_eq!(reason(&signed_value(&v)), "unknown_field");

        // Missing field, signed.
        let mut v = serde_json::to_value(payload_at(NOW)).expect("value");
        v.as_object_mut().expect("object").remove("expires_at");
        assert_eq!(reason(&signed_value(&v)), "missing_field");

        // Base64 garbage in the payload and in the signature.
        let mut env = envelope_value(&good);
        env["payload"] = "%%% not base64 %%%".into();
        assert_eq!(reason(env.to_string().as_bytes()), "bad_encoding");
        let mut env = envelope_value(&good);
        env["sig"] = "c2ln*".into();
        assert_eq!(reason(env.to_string().as_bytes()), "bad_encoding");

        // Signature of the wrong length.
        let mut env = envelope_value(&good);
        env["sig"] = BASE64.encode([7u8; 63]).into();
        assert_eq!(reason(env.to_string().as_bytes()), "bad_signature_length");

        // v = 2, in the envelope and (signed) in the payload.
        let mut env = envelope_value(&good);
        env["v"] = 2.into();
        assert_eq!(reason(env.to_string().as_bytes()), "unsupported_version");
        let mut v = serde_json::to_value(payload_at(NOW)).expect("value");
        v["v"] = 2.into();
        assert_eq!(reason(&signed_value(&v)), "unsupported_version");

        // Envelope shape: unknown field, wrong type.
        let mut env = envelope_value(&good);
        env["note"] = "hi".into();
        assert_eq!(reason(env.to_string().as_bytes()), "unknown_field");
        let mut env = envelope_value(&good);
        env["sig"] = 5.into();
        assert_eq!(reason(env.to_string().as_bytes()), "bad_envelope");

        // Signed garbage that is not a payload.
        let garbage = signer("wd1", 1).sign_raw_payload(b"\x00\x01 not json");
        assert_eq!(reason(garbage.to_json().as_bytes()), "bad_payload");
    }

    #[test]
    fn unsigned_bytes_are_never_parsed_as_payload() {
        // A forged envelope carrying an unknown action must fail on the signature, not on the
        // action: the payload is only parsed after the signature verified.
        let mut v = serde_json::to_value(payload_at(NOW)).expect("value");
        v["action"] = "exec".into();
        let bytes = serde_json::to_vec(&v).expect("bytes");
        let forged = signer("wd1", 2).sign_raw_payload(&bytes);
        assert_eq!(reason(forged.to_json().as_bytes()), "bad_signature");
    }

    #[test]
    fn sign_refuses_payloads_the_verifier_would_reject() {
        let mut p = payload_at(NOW);
        p.nonce = "short".into();
        assert!(matches!(
            signer("wd1", 1).sign(&p),
            Err(SigningError::InvalidPayload(Rejection::BadPayload(_)))
        ));
        assert!(matches!(
            Signer::new("../etc", SigningKey::from_bytes(&[1; 32])),
            Err(SigningError::BadKeyId(_))
        ));
    }

    #[test]
    fn keygen_writes_loadable_pair_with_private_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_keypair(dir.path(), "wd-2024").expect("keygen");
        let mode = fs::metadata(&files.private)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            write_keypair(dir.path(), "wd-2024"),
            Err(SigningError::Exists { .. })
        ));

        let s = Signer::from_key_file("wd-2024", &files.private).expect("private key loads");
        // The private key file is not picked up as a verify key.
        let keys = load_verify_keys(dir.path()).expect("public keys load");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["wd-2024"]);
        let env = s.sign(&payload_at(NOW)).expect("signs");
        verify_envelope(env.to_json().as_bytes(), &keys, "prod", NOW, SKEW, TTL)
            .expect("verifies with the written public key");
    }

    #[test]
    fn load_verify_keys_names_the_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_keypair(dir.path(), "good").expect("keygen");
        fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        fs::create_dir(dir.path().join("sub.pem")).expect("mkdir");
        assert_eq!(load_verify_keys(dir.path()).expect("loads").len(), 1);

        fs::write(
            dir.path().join("broken.pem"),
            "-----BEGIN PUBLIC KEY-----\nxx\n",
        )
        .expect("write");
        let err = load_verify_keys(dir.path()).expect_err("bad file");
        assert!(err.to_string().contains("broken.pem"), "{err}");
        fs::remove_file(dir.path().join("broken.pem")).expect("rm");

        fs::copy(&files.private, dir.path().join("oops.pem")).expect("copy");
        let err = load_verify_keys(dir.path()).expect_err("private key in key dir");
        assert!(err.to_string().contains("oops.pem"), "{err}");
        assert!(err.to_string().contains("private key"), "{err}");
        fs::remove_file(dir.path().join("oops.pem")).expect("rm");

        fs::copy(&files.public, dir.path().join("good.pem")).expect("copy");
        assert!(matches!(
            load_verify_keys(dir.path()),
            Err(SigningError::DuplicateKeyId { key_id, .. }) if key_id == "good"
        ));

        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_verify_keys(empty.path()),
            Err(SigningError::NoKeys { .. })
        ));
    }
}
