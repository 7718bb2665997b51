//! The audit log on disk: the active file plus rotated segments, verified by streaming, appended
//! with `fdatasync`, and guarded so the executor never acts when it cannot record.
//!
//! # Files
//! The active segment is the configured path (`audit.jsonl`). When an append would take it past
//! the segment size, it is closed and renamed `audit.jsonl.000001` (then `.000002`, ...) and a
//! new active file is started; the chain simply continues: the new file's first record links to
//! the previous segment's last one. Verification reads the rotated segments in number order,
//! then the active file, one line at a time, so memory stays bounded whatever the log's size.
//!
//! # Fail closed
//! [`AuditLog::check_writable`] answers whether an append can succeed right now: the file at the
//! path is still the one opened (not deleted or replaced), the file system has room, and no
//! earlier failed append is left half-written. A failed append truncates the file back to the
//! last complete record before anything else is written.
//!
//! # Torn tail
//! A crash mid-append leaves a last line without its newline. [`AuditLog::open`] cuts it off and
//! appends a `recovered` record naming the bytes dropped and their SHA-256; any other
//! verification failure refuses to open.

use crate::audit::{
    AuditChain, AuditEntry, AuditError, AuditRecord, ChainVerifier, Decision, VerifySummary,
};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use vigil_shared::time::Timestamp;

/// Longest line accepted when reading (a record is well under 8 KiB).
pub const MAX_LINE: usize = 1 << 20;
/// Default size at which the active segment is rotated.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Free space the audit file system must keep before the executor acts.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 10;

/// Sizes that govern the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub segment_bytes: u64,
    pub min_free_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// What was cut from a torn last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The audit log file set.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// `(dev, ino)` of the active file as opened.
    identity: (u64, u64),
    /// Bytes of complete records in the active file.
    len: u64,
    chain: AuditChain,
    limits: LogLimits,
    /// Set when a failed append could not be rolled back; cleared once it is.
    dirty: bool,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn in_file(path: &Path, e: AuditError) -> AuditError {
    match e {
        AuditError::Io { .. } => e,
        other => AuditError::InFile {
            path: path.to_path_buf(),
            source: Box::new(other),
        },
    }
}

/// Rotated segments of `active`, oldest first.
pub fn segments(active: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let dir = match active.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = active.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name.strip_prefix(&prefix)
            && !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = num.parse::<u64>()
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Streams one file through the verifier. Returns the length of its complete lines and, when
/// the file ends without a newline, what follows the last one.
fn scan(
    path: &Path,
    file: &mut File,
    v: &mut ChainVerifier,
    visit: &mut dyn FnMut(&AuditRecord),
) -> Result<(u64, Option<TornTail>), AuditError> {
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut buf = Vec::with_capacity(4096);
    let mut complete = 0u64;
    v.start_file();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path))?;
        if n == 0 {
            return Ok((complete, None));
        }
        if buf.last() != Some(&b'\n') {
            if n > MAX_LINE {
                return Err(in_file(
                    path,
                    AuditError::Malformed {
                        line: v.lines() + 1,
                        detail: format!("line longer than {MAX_LINE} bytes"),
                    },
                ));
            }
            // End of file without a newline: a torn last line. Hash it (it is < MAX_LINE).
            let mut h = Sha256::new();
            h.update(&buf);
            return Ok((
                complete,
                Some(TornTail {
                    offset: complete,
                    bytes: n as u64,
                    sha256: hex::encode(h.finalize()),
                }),
            ));
        }
        let rec = v
            .check(&buf[..buf.len() - 1])
            .map_err(|e| in_file(path, e))?;
        visit(&rec);
        complete += n as u64;
    }
}

fn open_active(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(io_err(path))
}

/// Verifies every segment and the active file. A torn tail in the active file is reported as
/// [`AuditError::TornTail`] unless `torn` is given, which then receives it.
fn verify_all(
    path: &Path,
    expected_head: Option<(u64, &str)>,
    visit: &mut dyn FnMut(&AuditRecord),
    torn: Option<&mut Option<TornTail>>,
) -> Result<(VerifySummary, u64), AuditError> {
    let mut v = ChainVerifier::new(expected_head);
    for (_, seg) in segments(path)? {
        let mut f = File::open(&seg).map_err(io_err(&seg))?;
        let (_, t) = scan(&seg, &mut f, &mut v, visit)?;
        if t.is_some() {
            return Err(in_file(
                &seg,
                AuditError::TornTail {
                    line: v.lines() + 1,
                },
            ));
        }
    }
    let mut f = File::open(path).map_err(io_err(path))?;
    let (len, t) = scan(path, &mut f, &mut v, visit)?;
    if let Some(t) = t {
        match torn {
            Some(slot) => *slot = Some(t),
            None => {
                return Err(in_file(
                    path,
                    AuditError::TornTail {
                        line: v.lines() + 1,
                    },
                ));
            }
        }
    }
    Ok((v.finish()?, len))
}

/// Reads and verifies the log at `path` and all its rotated segments (`audit verify`).
pub fn verify_file(
    path: &Path,
    expected_head: Option<(u64, &str)>,
) -> Result<VerifySummary, AuditError> {
    verify_all(path, expected_head, &mut |_| {}, None).map(|(s, _)| s)
}

/// Cuts a torn last line off the active file and records it (`audit repair`). Refuses anything
/// but a torn tail: returns `Ok(None)` when there was nothing to repair.
pub fn repair_file(path: &Path) -> Result<Option<(TornTail, AuditRecord)>, AuditError> {
    std::fs::metadata(path).map_err(io_err(path))?;
    let (_log, torn, rec) = AuditLog::open_with(path, LogLimits::default(), None, |_| {})?;
    Ok(torn.zip(rec))
}

impl AuditLog {
    /// Opens (or creates, mode 0640) the log with default limits.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, LogLimits::default(), None, |_| {}).map(|(log, _, _)| log)
    }

    /// Opens the log, verifying every segment by streaming and handing each record to `visit`.
    /// A torn last line is cut off and a `recovered` record appended (returned with the cut).
    /// Any other verification failure refuses to open.
    pub fn open_with(
        path: &Path,
        limits: LogLimits,
        expected_head: Option<(u64, &str)>,
        mut visit: impl FnMut(&AuditRecord),
    ) -> Result<(AuditLog, Option<TornTail>, Option<AuditRecord>), AuditError> {
        let file = open_active(path)?;
        let mut torn = None;
        let (summary, len) = verify_all(path, expected_head, &mut visit, Some(&mut torn))?;
        let meta = file.metadata().map_err(io_err(path))?;
        let mut log = AuditLog {
            path: path.to_path_buf(),
            file,
            identity: (meta.dev(), meta.ino()),
            len,
            chain: AuditChain::resume(&summary),
            limits,
            dirty: false,
        };
        let mut recovered = None;
        if let Some(t) = &torn {
            log.file.set_len(len).map_err(io_err(path))?;
            log.file.sync_all().map_err(io_err(path))?;
            tracing::warn!(
                audit.file = %path.display(),
                audit.dropped_bytes = t.bytes,
                audit.dropped_sha256 = %t.sha256,
                "Cut a torn last line off the audit log (a crash mid-append); recording it."
            );
            let rec = log.append(AuditEntry {
                ts: Timestamp::now(),
                request_id: None,
                key_id: None,
                action: None,
                target: None,
                decision: Decision::Recovered,
                reason: "torn_tail".into(),
                result: Some(format!(
                    "cut {} bytes at offset {} (sha256 {}) after record #{}",
                    t.bytes, t.offset, t.sha256, summary.head_seq
                )),
                duration_ms: 0,
                retry_at: None,
            })?;
            visit(&rec);
            recovered = Some(rec);
        }
        Ok((log, torn, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(seq, hash)` of the last record; `(0, GENESIS_HASH)` when empty.
    pub fn head(&self) -> (u64, &str) {
        (self.chain.head_seq(), self.chain.head_hash())
    }

    /// Why an append cannot succeed right now, or `Ok` when it can.
    pub fn check_writable(&mut self) -> Result<(), String> {
        if self.dirty {
            self.rollback()
                .map_err(|e| format!("a failed append could not be rolled back: {e}"))?;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => {}
            Ok(_) => {
                return Err(format!(
                    "the audit file {} was replaced by another file",
                    self.path.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "the audit file {} was deleted",
                    self.path.display()
                ));
            }
            Err(e) => return Err(format!("cannot stat {}: {e}", self.path.display())),
        }
        let fs =
            rustix::fs::fstatvfs(&self.file).map_err(|e| format!("cannot read free space: {e}"))?;
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < self.limits.min_free_bytes {
            return Err(format!(
                "no space left for the audit log ({free} bytes free, {} needed)",
                self.limits.min_free_bytes
            ));
        }
        Ok(())
    }

    fn rollback(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_all()?;
        self.dirty = false;
        Ok(())
    }

    /// Seals the entry, writes its line and syncs it to disk. The chain only advances once the
    /// line is durable; a failed write is cut off again before anything else is written.
    pub fn append(&mut self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        self.append_batch(vec![entry])
            .map(|mut v| v.pop().expect("one record"))
    }

    /// Appends several entries with one sync: all are durable when this returns `Ok`.
    pub fn append_batch(
        &mut self,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        if self.dirty {
            self.rollback().map_err(io_err(&self.path))?;
        }
        let mut next = self.chain.clone();
        let mut bytes = Vec::new();
        let mut recs = Vec::with_capacity(entries.len());
        for entry in entries {
            let (rec, line) = next.seal(entry);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            recs.push(rec);
        }
        if self.len > 0 && self.len + bytes.len() as u64 > self.limits.segment_bytes {
            self.rotate()?;
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.dirty = true;
            if let Err(re) = self.rollback() {
                tracing::error!(error = %re, "Cannot cut a failed audit append back; nothing is written until it can be.");
            }
            return Err(io_err(&self.path)(e));
        }
        self.len += bytes.len() as u64;
        self.chain = next;
        Ok(recs)
    }

    /// Records that records `head+1 ..= through_seq` are missing from the file (they are on the
    /// audit stream) because an operator accepted it; the chain goes on from `through_seq + 1`.
    pub fn append_gap(
        &mut self,
        through_seq: u64,
        detail: &str,
    ) -> Result<AuditRecord, AuditError> {
        let saved = self.chain.clone();
        let from = self.chain.head_seq() + 1;
        self.chain.skip_to(through_seq);
        let rec = self.append(AuditEntry {
            ts: Timestamp::now(),
            request_id: None,
            key_id: None,
            action: None,
            target: None,
            decision: Decision::Gap,
            reason: "audit_gap".into(),
            result: Some(format!(
                "records #{from}..#{through_seq} are not in this file (operator accepted): {detail}"
            )),
            duration_ms: 0,
            retry_at: None,
        });
        if rec.is_err() {
            self.chain = saved;
        }
        rec
    }

    /// Renames the active file to the next segment number and starts a new one.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let next = segments(&self.path)?.last().map_or(1, |(n, _)| n + 1);
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{next:06}"));
        let seg = PathBuf::from(name);
        self.file.sync_all().map_err(io_err(&self.path))?;
        std::fs::rename(&self.path, &seg).map_err(io_err(&seg))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o640)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        let meta = file.metadata().map_err(io_err(&self.path))?;
        self.identity = (meta.dev(), meta.ino());
        self.file = file;
        self.len = 0;
        tracing::info!(audit.segment = %seg.display(), audit.seq = self.chain.head_seq(), "Rotated the audit log.");
        Ok(())
    }

    /// The hash of record `seq` in the files, `None` when no record has that number.
    pub fn hash_of(&self, seq: u64) -> Result<Option<String>, AuditError> {
        let mut found = None;
        self.each_line(|line| {
            if let Ok(rec) = serde_json::from_slice::<SeqOnly>(line)
                && rec.seq == seq
            {
                found = rec.hash;
                return false;
            }
            true
        })?;
        Ok(found)
    }

    /// Calls `f` with each complete line of every file, oldest first, until it returns false.
    fn each_line(&self, mut f: impl FnMut(&[u8]) -> bool) -> Result<(), AuditError> {
        let mut files: Vec<PathBuf> = segments(&self.path)?.into_iter().map(|(_, p)| p).collect();
        files.push(self.path.clone());
        for p in files {
            let file = File::open(&p).map_err(io_err(&p))?;
            let mut reader = BufReader::with_capacity(64 << 10, file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = (&mut reader)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut buf)
                    .map_err(io_err(&p))?;
                if n == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                if !f(&buf[..n - 1]) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every record after `after_seq`, read from the files (to re-publish what the stream lacks),
    /// at most `limit` of them.
    pub fn lines_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<std::collections::VecDeque<String>, AuditError> {
        let mut out = std::collections::VecDeque::new();
        self.each_line(|line| {
            if let Ok(rec) = serde_json::from_slice::<SeqOnly>(line)
                && rec.seq > after_seq
            {
                out.push_back(String::from_utf8_lossy(line).into_owned());
                if out.len() > limit {
                    out.pop_front();
                }
            }
            true
        })?;
        Ok(out)
    }
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: u64,
    hash: Option<String>,
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
