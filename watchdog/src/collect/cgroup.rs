//! Container CPU and memory read straight from the host's cgroup files, as cAdvisor does, so a
//! round of 1,000 containers takes milliseconds and costs the engine nothing. The stats task
//! ([`super::stats`]) uses this first and asks the engine's stats API only for the containers
//! whose files it cannot find or read.
//!
//! The files are world-readable: the watchdog reads them unprivileged, from the host's
//! `/sys/fs/cgroup` mounted read-only (the root is `host.cgroup_root`). The hierarchy is probed,
//! not asked of the engine (the read-only gate does not forward `/info`):
//! - cgroup v2 when `<root>/cgroup.controllers` exists: `memory.current`, `memory.max`,
//!   `memory.stat` (`inactive_file`) and `cpu.stat` (`usage_usec`) in the container's directory;
//! - cgroup v1 when `<root>/memory` and `<root>/cpuacct` are directories:
//!   `memory/<dir>/memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`
//!   (`total_inactive_file`, `inactive_file`) and `cpuacct/<dir>/cpuacct.usage` (ns).
//!
//! The container's directory is `docker/<id>` (the engine's cgroupfs driver) or
//! `system.slice/docker-<id>.scope` (the systemd driver); the driver found for one container is
//! tried first for the next. A container started with its own `--cgroup-parent` is found by
//! neither and read through the engine.
//!
//! The numbers become the same [`StatsSample`] the engine's API gives, computed as the engine
//! computes it: `cpu_total` is the cgroup's CPU time in ns, `system_cpu` and `online_cpus` come
//! from `/proc/stat` (the engine's own method), and the memory limit of an unlimited container is
//! the host's memory (`MemTotal`), as the engine reports it. So CPU % and memory % are computed
//! once, by [`StatsSample`], whichever source a sample came from.

use super::host::read_meminfo;
use std::fmt;
use std::path::{Path, PathBuf};
use vigil_docker::StatsSample;
use vigil_shared::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup hierarchy at {}: neither cgroup v2 (cgroup.controllers) nor v1 (memory/ and \
         cpuacct/)",
        root.display()
    )]
    NoHierarchy { root: PathBuf },
    #[error("{id:?} is not a full container id")]
    BadId { id: String },
    #[error("no cgroup directory for container {id} under {} ({version})", root.display())]
    NotFound {
        id: String,
        root: PathBuf,
        version: CgroupVersion,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// The engine's cgroup driver, as seen in where it puts a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// `docker/<id>`.
    Cgroupfs,
    /// `system.slice/docker-<id>.scope`.
    Systemd,
}

impl CgroupDriver {
    const ALL: [CgroupDriver; 2] = [CgroupDriver::Cgroupfs, CgroupDriver::Systemd];

    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }

    /// The container's directory below a controller's root.
    fn leaf(self, id: &str) -> PathBuf {
        match self {
            CgroupDriver::Cgroupfs => Path::new("docker").join(id),
            CgroupDriver::Systemd => Path::new("system.slice").join(format!("docker-{id}.scope")),
        }
    }
}

/// A container's counters as the cgroup files give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupCounters {
    /// CPU time used, ns.
    pub cpu_ns: u64,
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    pub memory_usage: u64,
    /// `memory.limit_in_bytes` (v1) or `memory.max` (v2; `max` is `u64::MAX`).
    pub memory_limit: u64,
    /// v1's hierarchical `total_inactive_file` (absent on v2).
    pub total_inactive_file: Option<u64>,
    pub inactive_file: Option<u64>,
}

/// The host-wide numbers a sample is computed against, read once a round from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    /// `/proc/stat`'s first seven `cpu` fields in ns, as the engine's `system_cpu_usage`.
    pub system_cpu: u64,
    /// `cpuN` lines in `/proc/stat`: the online CPUs.
    pub online_cpus: u32,
    /// `MemTotal`: the limit reported for a container without one.
    pub mem_total: u64,
}

impl CgroupCounters {
    /// The sample the engine's stats API would give for these counters.
    pub fn to_sample(self, host: &HostCpu, read_at: Timestamp) -> StatsSample {
        // As the engine does: an unlimited container reports the machine's memory.
        let memory_limit = if host.mem_total > 0 && self.memory_limit > host.mem_total {
            host.mem_total
        } else {
            self.memory_limit
        };
        StatsSample {
            read_at,
            cpu_total: self.cpu_ns,
            system_cpu: host.system_cpu,
            online_cpus: host.online_cpus,
            memory_usage: self.memory_usage,
            memory_limit,
            inactive_file: StatsSample::inactive_file_of(
                self.memory_usage,
                self.total_inactive_file,
                self.inactive_file,
            ),
        }
    }
}

/// The cgroup hierarchy at a root: which version, and so which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    root: PathBuf,
    version: CgroupVersion,
}

/// A container's cgroup directories: memory, and CPU (the same directory on v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDirs {
    pub driver: CgroupDriver,
    pub memory: PathBuf,
    pub cpu: PathBuf,
}

impl Hierarchy {
    /// Probes `root` for a v2 (unified) or v1 hierarchy. A hybrid host (v1 controllers and an
    /// empty v2 `unified/` beside them) is v1: the controllers are there.
    pub fn probe(root: &Path) -> Result<Hierarchy, CgroupError> {
        let version = if root.join("cgroup.controllers").is_file() {
            CgroupVersion::V2
        } else if root.join("memory").is_dir() && root.join("cpuacct").is_dir() {
            CgroupVersion::V1
        } else {
            return Err(CgroupError::NoHierarchy {
                root: root.to_path_buf(),
            });
        };
        Ok(Hierarchy {
            root: root.to_path_buf(),
            version,
        })
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dirs(&self, driver: CgroupDriver, id: &str) -> ContainerDirs {
        let leaf = driver.leaf(id);
        let (memory, cpu) = match self.version {
            CgroupVersion::V1 => (
                self.root.join("memory").join(&leaf),
                self.root.join("cpuacct").join(&leaf),
            ),
            CgroupVersion::V2 => (self.root.join(&leaf), self.root.join(&leaf)),
        };
        ContainerDirs {
            driver,
            memory,
            cpu,
        }
    }

    /// The directories of container `id` (a full 64-hex id: nothing else reaches a path),
    /// trying `preferred`'s layout first.
    pub fn find(
        &self,
        id: &str,
        preferred: Option<CgroupDriver>,
    ) -> Result<ContainerDirs, CgroupError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CgroupError::BadId { id: id.to_owned() });
        }
        let order = preferred.into_iter().chain(
            CgroupDriver::ALL
                .into_iter()
                .filter(|d| Some(*d) != preferred),
        );
        for driver in order {
            let dirs = self.dirs(driver, id);
            if dirs.memory.is_dir() {
                return Ok(dirs);
            }
        }
        Err(CgroupError::NotFound {
            id: id.to_owned(),
            root: self.root.clone(),
            version: self.version,
        })
    }

    /// Reads a container's counters from its directories.
    pub fn read(&self, dirs: &ContainerDirs) -> Result<CgroupCounters, CgroupError> {
        match self.version {
            CgroupVersion::V1 => {
                let memory_usage = read_value(&dirs.memory.join("memory.usage_in_bytes"))?;
                let memory_limit = read_value(&dirs.memory.join("memory.limit_in_bytes"))?;
                let stat = dirs.memory.join("memory.stat");
                let text = read_text(&stat)?;
                let cpu_ns = read_value(&dirs.cpu.join("cpuacct.usage"))?;
                Ok(CgroupCounters {
                    cpu_ns,
                    memory_usage,
                    memory_limit,
                    total_inactive_file: flat_key(&stat, &text, "total_inactive_file")?,
                    inactive_file: flat_key(&stat, &text, "inactive_file")?,
                })
            }
            CgroupVersion::V2 => {
                let memory_usage = read_value(&dirs.memory.join("memory.current"))?;
                let memory_limit = read_value(&dirs.memory.join("memory.max"))?;
                let stat = dirs.memory.join("memory.stat");
                let text = read_text(&stat)?;
                let cpu_stat = dirs.cpu.join("cpu.stat");
                let usage_usec = flat_key(&cpu_stat, &read_text(&cpu_stat)?, "usage_usec")?
                    .ok_or_else(|| CgroupError::Parse {
                        path: cpu_stat.clone(),
                        detail: "no usage_usec".into(),
                    })?;
                Ok(CgroupCounters {
                    cpu_ns: usage_usec.saturating_mul(1000),
                    memory_usage,
                    memory_limit,
                    total_inactive_file: None,
                    inactive_file: flat_key(&stat, &text, "inactive_file")?,
                })
            }
        }
    }
}

fn read_text(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A one-value file: a decimal number, or `max` (v2's "no limit", as `u64::MAX`).
fn read_value(path: &Path) -> Result<u64, CgroupError> {
    parse_value(&read_text(path)?).map_err(|detail| CgroupError::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

pub fn parse_value(text: &str) -> Result<u64, String> {
    match text.trim() {
        "max" => Ok(u64::MAX),
        v => v
            .parse::<u64>()
            .map_err(|_| format!("expected a number, found {:?}", truncated(v))),
    }
}

/// `key`'s value in a flat keyed file (`memory.stat`, `cpu.stat`: `key value` lines); `None`
/// when the key is absent, an error when its value is not a number.
pub fn parse_flat_key(text: &str, key: &str) -> Result<Option<u64>, String> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some(key) {
            continue;
        }
        let value = parts.next().unwrap_or("");
        return value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key}: expected a number, found {:?}", truncated(value)));
    }
    Ok(None)
}

fn flat_key(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    parse_flat_key(text, key).map_err(|detail| CgroupError::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

fn truncated(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `(system_cpu ns, online CPUs)` from `/proc/stat` text, as the engine computes them: the sum of
/// the `cpu` line's first seven fields (user to softirq) in clock ticks, and the `cpuN` lines.
pub fn parse_proc_stat(text: &str, ticks_per_second: u64) -> Result<(u64, u32), String> {
    let mut total = None;
    let mut cpus: u32 = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("cpu") => {
                let fields: Vec<u64> = parts
                    .take(7)
                    .map(|v| v.parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("bad cpu line {:?}", truncated(line)))?;
                if fields.len() < 7 {
                    return Err(format!("short cpu line {:?}", truncated(line)));
                }
                let ticks = fields.iter().fold(0u64, |a, &v| a.saturating_add(v));
                let ns = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
                total = Some(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            Some(name)
                if name.len() > 3
                    && name.starts_with("cpu")
                    && name[3..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                cpus = cpus.saturating_add(1);
            }
            _ => {}
        }
    }
    match total {
        Some(t) if cpus > 0 => Ok((t, cpus)),
        Some(_) => Err("no cpuN lines".into()),
        None => Err("no cpu line".into()),
    }
}

/// Reads `<proc_root>/stat` and `<proc_root>/meminfo`.
pub fn read_host(proc_root: &Path) -> Result<HostCpu, CgroupError> {
    let path = proc_root.join("stat");
    let text = read_text(&path)?;
    let (system_cpu, online_cpus) = parse_proc_stat(&text, rustix::param::clock_ticks_per_second())
        .map_err(|detail| CgroupError::Parse { path, detail })?;
    let (mem_total, _) = read_meminfo(proc_root).map_err(|e| CgroupError::Parse {
        path: proc_root.join("meminfo"),
        detail: e.to_string(),
    })?;
    Ok(HostCpu {
        system_cpu,
        online_cpus,
        mem_total,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    pub(crate) const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    pub(crate) const PROC_STAT: &str = "cpu  100 0 50 800 10 0 5 7 0 0\n\
        cpu0 50 0 25 400 5 0 2 3 0 0\ncpu1 50 0 25 400 5 0 3 4 0 0\nintr 1 2 3\nctxt 9\n";
    pub(crate) const MEMINFO: &str = "MemTotal: 16384000 kB\nMemAvailable: 500 kB\n";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A v1 hierarchy with container `ID` under `driver`'s layout.
    pub(crate) fn v1_fixture(root: &Path, driver: CgroupDriver, limit: &str) {
        let leaf = driver.leaf(ID);
        fs::create_dir_all(root.join("unified")).unwrap();
        let mem = root.join("memory").join(&leaf);
        write(&mem.join("memory.usage_in_bytes"), "10000\n");
        write(&mem.join("memory.limit_in_bytes"), limit);
        write(
            &mem.join("memory.stat"),
            "cache 4000\ninactive_file 2000\ntotal_cache 4000\ntotal_inactive_file 3000\n",
        );
        write(
            &root.join("cpuacct").join(&leaf).join("cpuacct.usage"),
            "123456789\n",
        );
    }

    pub(crate) fn v2_fixture(root: &Path, driver: CgroupDriver, max: &str) {
        write(&root.join("cgroup.controllers"), "cpu memory io pids\n");
        let dir = root.join(driver.leaf(ID));
        write(&dir.join("memory.current"), "10000\n");
        write(&dir.join("memory.max"), max);
        write(
            &dir.join("memory.stat"),
            "anon 5000\nfile 4000\ninactive_file 2500\n",
        );
        write(
            &dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
    }

    fn read(root: &Path) -> Result<(ContainerDirs, CgroupCounters), CgroupError> {
        let h = Hierarchy::probe(root)?;
        let dirs = h.find(ID, None)?;
        let counters = h.read(&dirs)?;
        Ok((dirs, counters))
    }

    #[test]
    fn v1_cgroupfs_layout() {
        let dir = tempfile::tempdir().unwrap();
        v1_fixture(dir.path(), CgroupDriver::Cgroupfs, "67108864\n");
        let h = Hierarchy::probe(dir.path()).unwrap();
        assert_eq!(h.version(), CgroupVersion::V1);
        let (dirs, c) = read(dir.path()).unwrap();
        assert_eq!(dirs.driver, CgroupDriver::Cgroupfs);
        assert_eq!(
            c,
            CgroupCounters {
                cpu_ns: 123_456_789,
                memory_usage: 10_000,
                memory_limit: 67_108_864,
                total_inactive_file: Some(3000),
                inactive_file: Some(2000),
            }
        );
        let host = HostCpu {
            system_cpu: 9,
            online_cpus: 2,
            mem_total: 1 << 30,
        };
        let s = c.to_sample(&host, Timestamp::from_nanos(5));
        // v1: the hierarchical total is what is left out, as `docker stats` does.
        assert_eq!(s.working_set(), 7000);
        assert_eq!(s.memory_limit, 67_108_864);
        assert_eq!(
            (s.cpu_total, s.system_cpu, s.online_cpus),
            (123_456_789, 9, 2)
        );
    }

    #[test]
    fn v1_systemd_layout_and_an_unlimited_container_reports_host_memory() {
        let dir = tempfile::tempdir().unwrap();
        v1_fixture(dir.path(), CgroupDriver::Systemd, "9223372036854771712\n");
        let (dirs, c) = read(dir.path()).unwrap();
        assert_eq!(dirs.driver, CgroupDriver::Systemd);
        assert!(
            dirs.memory
                .ends_with(format!("memory/system.slice/docker-{ID}.scope"))
        );
        let host = HostCpu {
            system_cpu: 0,
            online_cpus: 1,
            mem_total: 1 << 30,
        };
        assert_eq!(
            c.to_sample(&host, Timestamp::from_nanos(0)).memory_limit,
            1 << 30
        );
    }

    #[test]
    fn v2_both_layouts() {
        for driver in CgroupDriver::ALL {
            let dir = tempfile::tempdir().unwrap();
            v2_fixture(dir.path(), driver, "max\n");
            let h = Hierarchy::probe(dir.path()).unwrap();
            assert_eq!(h.version(), CgroupVersion::V2);
            // The other layout is tried after the preferred one fails.
            let other = CgroupDriver::ALL.into_iter().find(|d| *d != driver);
            let dirs = h.find(ID, other).unwrap();
            assert_eq!(dirs.driver, driver);
            assert_eq!(dirs.memory, dirs.cpu);
            let c = h.read(&dirs).unwrap();
            assert_eq!(c.cpu_ns, 1_500_000);
            assert_eq!(c.memory_limit, u64::MAX);
            assert_eq!((c.total_inactive_file, c.inactive_file), (None, Some(2500)));
            let host = HostCpu {
                system_cpu: 0,
                online_cpus: 1,
                mem_total: 4096,
            };
            let s = c.to_sample(&host, Timestamp::from_nanos(0));
            assert_eq!((s.working_set(), s.memory_limit), (7500, 4096));
        }
    }

    #[test]
    fn no_hierarchy_and_no_container_are_clear_errors() {
        let empty = tempfile::tempdir().unwrap();
        let e = Hierarchy::probe(empty.path()).unwrap_err();
        assert!(matches!(e, CgroupError::NoHierarchy { .. }), "{e}");
        assert!(e.to_string().contains("no cgroup hierarchy"), "{e}");
        let missing = Hierarchy::probe(&empty.path().join("nope")).unwrap_err();
        assert!(matches!(missing, CgroupError::NoHierarchy { .. }));

        let dir = tempfile::tempdir().unwrap();
        v1_fixture(dir.path(), CgroupDriver::Cgroupfs, "1\n");
        let h = Hierarchy::probe(dir.path()).unwrap();
        let other = ID.replace('0', "f");
        let e = h.find(&other, None).unwrap_err();
        assert!(matches!(e, CgroupError::NotFound { .. }), "{e}");
        for bad in ["../../etc", "abc", &format!("{}/..", &ID[..61])] {
            assert!(
                matches!(h.find(bad, None), Err(CgroupError::BadId { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn garbage_and_missing_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        v1_fixture(dir.path(), CgroupDriver::Cgroupfs, "1\n");
        let mem = dir.path().join("memory/docker").join(ID);
        fs::write(mem.join("memory.usage_in_bytes"), "lots\n").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, CgroupError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("memory.usage_in_bytes"), "{e}");

        fs::write(mem.join("memory.usage_in_bytes"), "5\n").unwrap();
        fs::write(mem.join("memory.stat"), "total_inactive_file -3\n").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("total_inactive_file"), "{e}");

        fs::write(mem.join("memory.stat"), "\u{0}\u{1}binary\n").unwrap();
        let (_, c) = read(dir.path()).unwrap();
        assert_eq!((c.total_inactive_file, c.inactive_file), (None, None));

        fs::remove_file(
            dir.path()
                .join("cpuacct/docker")
                .join(ID)
                .join("cpuacct.usage"),
        )
        .unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, CgroupError::Read { .. }), "{e}");
        assert!(e.to_string().contains("cpuacct.usage"), "{e}");

        let v2 = tempfile::tempdir().unwrap();
        v2_fixture(v2.path(), CgroupDriver::Cgroupfs, "max\n");
        fs::write(
            v2.path().join("docker").join(ID).join("cpu.stat"),
            "user_usec 1\n",
        )
        .unwrap();
        let e = read(v2.path()).unwrap_err();
        assert!(e.to_string().contains("no usage_usec"), "{e}");
        fs::write(v2.path().join("docker").join(ID).join("memory.max"), "").unwrap();
        let e = read(v2.path()).unwrap_err();
        assert!(e.to_string().contains("memory.max"), "{e}");
    }

    #[test]
    fn proc_stat_gives_the_engines_system_cpu_and_cpu_count() {
        // (100+0+50+800+10+0+5) ticks at 100/s; steal (7) is not counted, as in the engine.
        assert_eq!(parse_proc_stat(PROC_STAT, 100), Ok((9_650_000_000, 2)));
        assert!(parse_proc_stat("cpu 1 2 3\ncpu0 1 2 3\n", 100).is_err());
        assert!(parse_proc_stat("cpu0 1 2 3 4 5 6 7\n", 100).is_err());
        assert!(parse_proc_stat("cpu a b c d e f g\ncpu0 1\n", 100).is_err());
        assert!(parse_proc_stat("", 100).is_err());

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stat"), PROC_STAT).unwrap();
        fs::write(dir.path().join("meminfo"), MEMINFO).unwrap();
        let host = read_host(dir.path()).unwrap();
        assert_eq!(host.online_cpus, 2);
        assert_eq!(host.mem_total, 16_384_000 * 1024);
        fs::write(dir.path().join("meminfo"), "nothing").unwrap();
        assert!(
            read_host(dir.path())
                .unwrap_err()
                .to_string()
                .contains("meminfo")
        );
    }

    #[test]
    fn values_parse_max_and_reject_garbage() {
        assert_eq!(parse_value("42\n"), Ok(42));
        assert_eq!(parse_value("max\n"), Ok(u64::MAX));
        assert!(parse_value("").is_err());
        assert!(parse_value("-1").is_err());
        assert!(parse_value(&"9".repeat(100)).unwrap_err().len() < 100);
        assert_eq!(parse_flat_key("a 1\nb 2\n", "b"), Ok(Some(2)));
        assert_eq!(parse_flat_key("a 1\n", "b"), Ok(None));
        assert!(parse_flat_key("b\n", "b").is_err());
    }
}
