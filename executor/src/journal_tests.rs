use super::*;
use crate::audit::GENESIS_HASH;
use vigil_protocol::wire::{Action, Target};

fn entry(i: u64, decision: Decision) -> AuditEntry {
    AuditEntry {
        ts: Timestamp(1_700_000_000_000 + i as i64 * 1000),
        request_id: Some(format!("req-{i}")),
        key_id: Some("wd1".into()),
        action: Some(Action::Restart),
        target: Some(Target {
            id: format!("c{i}"),
            name: format!("web-{i}"),
            project: Some("shop".into()),
            service: None,
        }),
        decision,
        reason: "ok".into(),
        result: Some("restarted".into()),
        duration_ms: 120 + i,
        retry_at: None,
    }
}

fn small(segment_bytes: u64) -> LogLimits {
    LogLimits {
        segment_bytes,
        min_free_bytes: 0,
    }
}

#[test]
fn appends_durably_and_continues_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("creates");
    assert_eq!(log.head(), (0, GENESIS_HASH));
    let r1 = log.append(entry(1, Decision::Executed)).expect("append");
    let r2 = log.append(entry(2, Decision::DryRun)).expect("append");
    assert_eq!((r1.seq, r2.seq), (1, 2));
    assert_eq!(r2.prev_hash, r1.hash);
    drop(log);

    let mut seen = Vec::new();
    let (mut log, torn, _) = AuditLog::open_with(
        &path,
        LogLimits::default(),
        Some((2, r2.hash.as_str())),
        |r| seen.push(r.decision),
    )
    .expect("reopens");
    assert!(torn.is_none());
    assert_eq!(seen, [Decision::Executed, Decision::DryRun]);
    let r3 = log.append(entry(3, Decision::Failed)).expect("append");
    assert_eq!((r3.seq, r3.prev_hash.as_str()), (3, r2.hash.as_str()));
    assert_eq!(verify_file(&path, None).expect("valid").head_hash, r3.hash);

    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("req-2", "req-7", 1)).expect("write");
    let err = AuditLog::open(&path).expect_err("refuses a tampered log");
    assert!(err.to_string().contains("record #2"), "{err}");
}

#[test]
fn torn_tail_is_cut_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("creates");
    log.append(entry(1, Decision::Executed)).expect("append");
    drop(log);
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(br#"{"seq":2,"ts":17000"#).expect("write");
    drop(f);
    assert!(verify_file(&path, None).is_err(), "torn before repair");
    let (log, torn, rec) =
        AuditLog::open_with(&path, LogLimits::default(), None, |_| {}).expect("repairs");
    let torn = torn.expect("torn tail found");
    assert_eq!(torn.bytes, 19);
    let rec = rec.expect("recovered record");
    assert_eq!((rec.seq, rec.decision), (2, Decision::Recovered));
    assert!(rec.result.as_deref().unwrap_or("").contains(&torn.sha256));
    assert_eq!(log.head().0, 2);
    assert_eq!(verify_file(&path, None).expect("valid").head_seq, 2);
    assert!(repair_file(&path).expect("nothing to do").is_none());
}

#[test]
fn rotation_continues_the_chain_and_old_segments_are_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (mut log, _, _) = AuditLog::open_with(&path, small(1000), None, |_| {}).expect("creates");
    for i in 1..=20 {
        log.append(entry(i, Decision::Executed)).expect("append");
    }
    drop(log);
    let segs = segments(&path).expect("list");
    assert!(segs.len() >= 5, "{segs:?}");
    let summary = verify_file(&path, None).expect("valid");
    assert_eq!(summary.head_seq, 20);
    let (_, _, _) = AuditLog::open_with(&path, small(1000), None, |_| {}).expect("reopens");
    assert_eq!(
        log_lines_after(&path, 18),
        2,
        "records after #18 are found across segments"
    );
    // An edit in the oldest segment is caught.
    let first = &segs[0].1;
    let text = std::fs::read_to_string(first).expect("read");
    std::fs::write(first, text.replacen("web-1\"", "web-9\"", 1)).expect("write");
    let err = verify_file(&path, None).expect_err("edit detected");
    assert!(err.to_string().contains("record #1"), "{err}");
    assert!(err.to_string().contains(".000001"), "{err}");
}

fn log_lines_after(path: &Path, seq: u64) -> usize {
    let (log, _, _) = AuditLog::open_with(path, small(1000), None, |_| {}).expect("opens");
    log.lines_after(seq, 100).expect("reads").len()
}

#[test]
fn deleted_or_replaced_file_is_not_writable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("creates");
    log.check_writable().expect("fresh file is writable");
    std::fs::remove_file(&path).expect("rm");
    let why = log.check_writable().expect_err("deleted");
    assert!(why.contains("deleted"), "{why}");
    std::fs::write(&path, b"").expect("new file");
    let why = log.check_writable().expect_err("replaced");
    assert!(why.contains("replaced"), "{why}");
}

#[test]
fn gap_records_may_skip_ahead_and_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("creates");
    log.append(entry(1, Decision::Executed)).expect("append");
    log.append_gap(7, "test").expect("gap");
    log.append(entry(2, Decision::Executed)).expect("append");
    let summary = verify_file(&path, None).expect("valid");
    assert_eq!(summary.head_seq, 9);
    assert_eq!(summary.gaps, vec![(2, 7)]);
    // Only a gap record may jump.
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(r#""decision":"gap""#));
}
