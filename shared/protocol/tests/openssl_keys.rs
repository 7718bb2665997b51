//! Key files interoperate with the `openssl` CLI in both directions: keys openssl makes load and
//! sign requests we verify, and openssl verifies signatures made with keys `keygen` writes.
//! Requires `openssl` (1.1.1 or later) on PATH; the tests fail, never skip, without it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_protocol::signing::{Signer, load_verify_keys, verify_envelope, write_keypair};
use vigil_protocol::wire::{Action, Payload, Reason, Target, signed_message};
use vigil_shared::time::Timestamp;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI must be installed for this test");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn payload(now: Timestamp) -> Payload {
    Payload::new(
        "prod",
        Action::Stop,
        Target {
            id: "abc".into(),
            name: "worker-1".into(),
            project: None,
            service: None,
        },
        Reason::new("container_memory_high", "critical", "97% of limit", 0.8),
        now,
    )
}

#[test]
fn openssl_generated_keys_sign_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = dir.path().join("ops.key");
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).expect("mkdir");
    let public = keys_dir.join("ops-2025.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&private)]);
    openssl(&[
        "pkey",
        "-in",
        path(&private),
        "-pubout",
        "-out",
        path(&public),
    ]);

    let signer = Signer::from_key_file("ops-2025", &private).expect("openssl PKCS#8 key loads");
    let keys = load_verify_keys(&keys_dir).expect("openssl SPKI key loads");
    assert_eq!(keys.get("ops-2025"), Some(&signer.verifying_key()));

    let now = Timestamp(1_700_000_000_000);
    let p = payload(now);
    let env = signer.sign(&p).expect("signs");
    let skew = Duration::from_secs(30);
    let ttl = Duration::from_secs(300);
    let got =
        verify_envelope(env.to_json().as_bytes(), &keys, "prod", now, skew, ttl).expect("verifies");
    assert_eq!(got.payload, p);
}

#[test]
fn openssl_verifies_signatures_from_keygen_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_keypair(dir.path(), "wd").expect("keygen");

    // openssl derives the same public key from our private key file.
    let derived = dir.path().join("derived.pub");
    openssl(&[
        "pkey",
        "-in",
        path(&files.private),
        "-pubout",
        "-out",
        path(&derived),
    ]);
    assert_eq!(
        std::fs::read_to_string(&derived).expect("read"),
        std::fs::read_to_string(&files.public).expect("read")
    );

    // And it accepts our signature over tag || NUL || payload with our public key file.
    let signer = Signer::from_key_file("wd", &files.private).expect("loads");
    let env = signer
        .sign(&payload(Timestamp(1_700_000_000_000)))
        .expect("signs");
    let payload_bytes = BASE64.decode(&env.payload).expect("base64");
    let msg = dir.path().join("msg.bin");
    let sig = dir.path().join("sig.bin");
    std::fs::write(&msg, signed_message(&payload_bytes)).expect("write");
    std::fs::write(&sig, BASE64.decode(&env.sig).expect("base64")).expect("write");
    openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path(&files.public),
        "-rawin",
        "-in",
        path(&msg),
        "-sigfile",
        path(&sig),
    ]);

    // A flipped message byte makes openssl refuse it, so the check above is real.
    let mut tampered = signed_message(&payload_bytes);
    tampered[30] ^= 1;
    std::fs::write(&msg, tampered).expect("write");
    let status = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            path(&files.public),
            "-rawin",
            "-in",
            path(&msg),
            "-sigfile",
            path(&sig),
        ])
        .output()
        .expect("openssl runs")
        .status;
    assert!(!status.success(), "openssl accepted a tampered message");
}
