//! The host source: memory from `<proc_root>/meminfo` and disk use via statvfs on the configured
//! paths (host paths are mounted read-only into the watchdog's container; the proc root is
//! configurable). Parsing is a pure function apart from the file reads.

use super::config::HostConfig;
use super::{DiskUsage, HostSample, Observation, SourceHealth, SourceId, emit};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("meminfo: {0}")]
    Meminfo(String),
    #[error("statvfs {path}: {source}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host sampling task failed: {0}")]
    Task(String),
}

/// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo` text (the file counts in kB).
pub fn parse_meminfo(text: &str) -> Result<(u64, u64), HostError> {
    let mut total = None;
    let mut available = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        let mut parts = rest.split_whitespace();
        let value = parts
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                HostError::Meminfo(format!("bad value for {}: {:?}", key.trim(), rest.trim()))
            })?;
        let multiplier = match parts.next() {
            Some("kB") => 1024,
            None => 1,
            Some(unit) => {
                return Err(HostError::Meminfo(format!(
                    "unknown unit {unit:?} for {}",
                    key.trim()
                )));
            }
        };
        *slot = Some(value.saturating_mul(multiplier));
    }
    match (total, available) {
        (Some(t), Some(a)) if t > 0 => Ok((t, a.min(t))),
        (Some(_), Some(_)) => Err(HostError::Meminfo("MemTotal is zero".into())),
        (None, _) => Err(HostError::Meminfo("MemTotal missing".into())),
        (_, None) => Err(HostError::Meminfo("MemAvailable missing".into())),
    }
}

/// Reads `<proc_root>/meminfo`: `(total, available)` bytes.
pub fn read_meminfo(proc_root: &Path) -> Result<(u64, u64), HostError> {
    let path = proc_root.join("meminfo");
    let text = std::fs::read_to_string(&path).map_err(|source| HostError::Read { path, source })?;
    parse_meminfo(&text)
}

/// Total and available (to unprivileged users) bytes of the file system holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage, HostError> {
    let st = rustix::fs::statvfs(path).map_err(|e| HostError::Statvfs {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(DiskUsage {
        path: path.display().to_string(),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

/// One host sample. Memory must be readable; a disk path that fails is left out of the sample
/// and its error returned alongside, so one bad mount does not hide memory or the other disks.
pub fn sample(config: &HostConfig) -> Result<(HostSample, Vec<HostError>), HostError> {
    let (mem_total_bytes, mem_available_bytes) = read_meminfo(&config.proc_root)?;
    let mut disks = Vec::with_capacity(config.disk_paths.len());
    let mut errors = Vec::new();
    for path in &config.disk_paths {
        match disk_usage(path) {
            Ok(d) => disks.push(d),
            Err(e) => errors.push(e),
        }
    }
    let sample = HostSample {
        at: Timestamp::now(),
        mem_total_bytes,
        mem_available_bytes,
        disks,
    };
    Ok((sample, errors))
}

/// Samples the host every `interval` (first sample at once) until `cancel`.
pub async fn run(
    config: HostConfig,
    interval: Duration,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut health = SourceHealth::new(SourceId::Host);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // statvfs on a hung network mount can block: keep it off the runtime's workers.
        let cfg = config.clone();
        let result = tokio::task::spawn_blocking(move || sample(&cfg))
            .await
            .unwrap_or_else(|e| Err(HostError::Task(e.to_string())));
        let (obs, failure) = match result {
            Ok((sample, errors)) => {
                let failure = (!errors.is_empty()).then(|| {
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                (Some(Observation::Host(sample)), failure)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let status = match failure {
            Some(detail) => {
                tracing::warn!(source = SourceId::Host.as_str(), error = %detail, "Host sample failed");
                health.failed(detail)
            }
            None => health.recovered(),
        };
        for o in [status, obs].into_iter().flatten() {
            if !emit(&tx, &cancel, o).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MemTotal:        8049360 kB\nMemFree:          361872 kB\n\
MemAvailable:    4237400 kB\nBuffers:          123456 kB\nHugePages_Total:       0\n";

    #[test]
    fn parses_kilobytes_into_bytes() {
        let (total, available) = parse_meminfo(SAMPLE).unwrap();
        assert_eq!(total, 8_049_360 * 1024);
        assert_eq!(available, 4_237_400 * 1024);
    }

    #[test]
    fn missing_fields_are_errors() {
        let err = parse_meminfo("MemTotal: 100 kB\n").unwrap_err();
        assert!(err.to_string().contains("MemAvailable missing"), "{err}");
        let err = parse_meminfo("MemAvailable: 100 kB\n").unwrap_err();
        assert!(err.to_string().contains("MemTotal missing"), "{err}");
        assert!(parse_meminfo("").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB").is_err());
        assert!(parse_meminfo("MemTotal: 10 MB\nMemAvailable: 1 kB").is_err());
        assert!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB").is_err());
        assert!(parse_meminfo("\u{0}\u{1}binary:::\n:\n::::").is_err());
        // Unrelated garbage lines around valid ones are ignored.
        let (t, a) = parse_meminfo("junk\nMemTotal: 2 kB\n???\nMemAvailable: 1 kB\n").unwrap();
        assert_eq!((t, a), (2048, 1024));
    }

    #[test]
    fn reads_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), SAMPLE).unwrap();
        assert_eq!(read_meminfo(dir.path()).unwrap().0, 8_049_360 * 1024);
        let missing = read_meminfo(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, HostError::Read { .. }), "{missing}");
    }

    #[test]
    fn statvfs_of_root_is_plausible() {
        let d = disk_usage(Path::new("/")).unwrap();
        assert!(d.total_bytes > 0);
        assert!(d.available_bytes <= d.total_bytes);
        assert!(disk_usage(Path::new("/definitely/not/here")).is_err());
    }

    #[tokio::test]
    async fn task_reports_a_bad_disk_path_once_and_still_samples_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), SAMPLE).unwrap();
        let config = HostConfig {
            proc_root: dir.path().to_path_buf(),
            disk_paths: vec![PathBuf::from("/"), PathBuf::from("/definitely/not/here")],
            ..HostConfig::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(config, Duration::from_millis(10), tx, cancel.clone()));
        let mut failures = 0;
        let mut samples = 0;
        while samples < 3 {
            match rx.recv().await.unwrap() {
                Observation::Source {
                    source: SourceId::Host,
                    ok: false,
                    detail,
                    ..
                } => {
                    assert!(detail.contains("/definitely/not/here"), "{detail}");
                    failures += 1;
                }
                Observation::Host(s) => {
                    assert_eq!(s.mem_total_bytes, 8_049_360 * 1024);
                    assert_eq!(s.disks.len(), 1);
                    samples += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(failures, 1, "a persistent failure is reported once");
        cancel.cancel();
        task.await.unwrap();
    }
}
