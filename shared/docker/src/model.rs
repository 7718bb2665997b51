//! Domain types for what Vigil reads from the engine. Engine API types (`api`) convert into
//! these at the boundary; nothing outside the `docker` module sees raw engine JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_shared::time::Timestamp;

/// Compose's project label.
pub const LABEL_PROJECT: &str = crate::labels::COMPOSE_PROJECT;
/// Compose's service label.
pub const LABEL_SERVICE: &str = crate::labels::COMPOSE_SERVICE;

/// Lifecycle state of a container (`State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

/// Health as the engine reports it. `Starting` is never unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No healthcheck configured.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// Who a container is: the identity every signal and message names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerRef {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub project: Option<String>,
    pub service: Option<String>,
}

/// One row of `GET /containers/json?all=true`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub container: ContainerRef,
    pub image: String,
    pub state: RunState,
    /// The engine's human status text (`Up 5 minutes (healthy)`, `Exited (1) 3 seconds ago`);
    /// empty when the engine sent none.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub created: Timestamp,
}

/// The parts of `GET /containers/{id}/json` Vigil uses (never `Config.Env`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDetails {
    pub container: ContainerRef,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    pub health: Health,
    /// Consecutive failing probes reported by the engine.
    pub health_failing_streak: u64,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub restart_count: u64,
    /// `HostConfig.RestartPolicy.Name`: "", "no", "always", "unless-stopped", "on-failure".
    pub restart_policy: String,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// `HostConfig.Memory` in bytes, 0 when unlimited.
    pub memory_limit: u64,
    /// `Config.StopTimeout` in seconds (compose `stop_grace_period`), `None` when the engine's
    /// default applies.
    pub stop_timeout: Option<u64>,
    /// The newest entry of `State.Health.Log`, its output trimmed and scrubbed of secrets.
    pub last_probe: Option<HealthProbe>,
}

/// One healthcheck run as the engine logged it. The output is already cut to
/// [`MAX_PROBE_OUTPUT_CHARS`] and passed through [`crate::redact::scrub_text`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthProbe {
    pub exit_code: i64,
    pub output: String,
}

/// Longest probe output kept (the tail, where the error usually is).
pub const MAX_PROBE_OUTPUT_CHARS: usize = 600;

/// What a container's exit code means, for people: `killed (137)`, `terminated (143)`,
/// `exited with error (1)`. Codes above 128 are "killed by signal N" per the shell convention.
pub fn exit_meaning(code: i64) -> String {
    let what = match code {
        0 => "exited normally".to_string(),
        126 => "command not executable".to_string(),
        127 => "command not found".to_string(),
        130 => "interrupted".to_string(),
        134 => "aborted".to_string(),
        137 => "killed".to_string(),
        139 => "crashed (segmentation fault)".to_string(),
        143 => "terminated".to_string(),
        129..=192 => format!("killed by signal {}", code - 128),
        _ => "exited with error".to_string(),
    };
    format!("{what} ({code})")
}

/// One-shot stats sample (`stream=false&one-shot=true`). CPU % needs the previous sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StatsSample {
    pub read_at: Timestamp,
    /// `cpu_stats.cpu_usage.total_usage` (ns).
    pub cpu_total: u64,
    /// `cpu_stats.system_cpu_usage` (ns).
    pub system_cpu: u64,
    pub online_cpus: u32,
    pub memory_usage: u64,
    /// Effective limit reported by stats (host memory when unlimited).
    pub memory_limit: u64,
    /// `inactive_file` (cgroup v2) or `total_inactive_file` (v1); excluded from usage.
    pub inactive_file: u64,
}

impl StatsSample {
    /// The inactive page cache to leave out of `usage`, as `docker stats` picks it: cgroup v1's
    /// hierarchical `total_inactive_file` when it is below the usage, else `inactive_file` (the
    /// only one cgroup v2 has) when that is, else nothing. Both stats sources (the engine's API
    /// and the cgroup files) choose with this.
    pub fn inactive_file_of(
        memory_usage: u64,
        total_inactive_file: Option<u64>,
        inactive_file: Option<u64>,
    ) -> u64 {
        total_inactive_file
            .filter(|&v| v < memory_usage)
            .or(inactive_file.filter(|&v| v < memory_usage))
            .unwrap_or(0)
    }

    /// Memory use excluding inactive page cache, as `docker stats` shows it.
    pub fn working_set(&self) -> u64 {
        self.memory_usage.saturating_sub(self.inactive_file)
    }

    /// Memory use as a percentage of the limit; `None` without a limit.
    pub fn memory_percent(&self) -> Option<f64> {
        (self.memory_limit > 0)
            .then(|| self.working_set() as f64 * 100.0 / self.memory_limit as f64)
    }

    /// CPU % between `prev` and `self`, scaled like `docker stats` (100 % = one CPU fully busy
    /// times online CPUs). `None` when the counters did not advance or went backwards.
    pub fn cpu_percent_since(&self, prev: &StatsSample) -> Option<f64> {
        let cpu_delta = self.cpu_total.checked_sub(prev.cpu_total)?;
        let sys_delta = self.system_cpu.checked_sub(prev.system_cpu)?;
        if sys_delta == 0 {
            return None;
        }
        let cpus = self.online_cpus.max(1) as f64;
        Some(cpu_delta as f64 / sys_delta as f64 * cpus * 100.0)
    }
}

/// What happened, from a container event. Unknown actions keep their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    Start,
    /// `die`, with `exitCode` when the engine sent one.
    Die {
        exit_code: Option<i64>,
    },
    Oom,
    /// `kill`, with the signal number when present (operator or engine intent).
    Kill {
        signal: Option<i32>,
    },
    Stop,
    Destroy,
    Restart,
    /// `health_status: <status>`.
    HealthStatus(Health),
    Other(String),
}

/// One container event from `GET /events`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    pub container: ContainerRef,
    pub action: EventAction,
    pub labels: BTreeMap<String, String>,
    /// Engine time (`timeNano`), kept for `since=` on reconnect and latency measurement.
    pub time_nano: i64,
}

impl ContainerEvent {
    pub fn at(&self) -> Timestamp {
        Timestamp::from_nanos(self.time_nano)
    }
}

/// `GET /version`, the parts Vigil uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    pub version: String,
    pub api_version: String,
    pub min_api_version: Option<String>,
    pub os: String,
    pub arch: String,
}

/// Labels → (project, service) from compose's labels.
pub fn compose_identity(labels: &BTreeMap<String, String>) -> (Option<String>, Option<String>) {
    (
        labels.get(LABEL_PROJECT).cloned(),
        labels.get(LABEL_SERVICE).cloned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_scales_by_online_cpus() {
        let prev = StatsSample {
            cpu_total: 1_000,
            system_cpu: 10_000,
            online_cpus: 2,
            ..Default::default()
        };
        let now = StatsSample {
            cpu_total: 2_000,
            system_cpu: 20_000,
            online_cpus: 2,
            ..Default::default()
        };
        let pct = now.cpu_percent_since(&prev).unwrap();
        assert!((pct - 20.0).abs() < 1e-9, "{pct}");
        assert_eq!(
            prev.cpu_percent_since(&now),
            None,
            "counters going backwards give no value"
        );
    }

    #[test]
    fn inactive_file_prefers_the_v1_total_below_usage() {
        assert_eq!(
            StatsSample::inactive_file_of(1000, Some(300), Some(200)),
            300
        );
        assert_eq!(StatsSample::inactive_file_of(1000, None, Some(200)), 200);
        assert_eq!(
            StatsSample::inactive_file_of(1000, Some(1000), Some(200)),
            200
        );
        assert_eq!(StatsSample::inactive_file_of(100, Some(300), Some(200)), 0);
        assert_eq!(StatsSample::inactive_file_of(100, None, None), 0);
    }

    #[test]
    fn memory_excludes_inactive_file() {
        let s = StatsSample {
            memory_usage: 900,
            inactive_file: 100,
            memory_limit: 1000,
            ..Default::default()
        };
        assert_eq!(s.working_set(), 800);
        assert_eq!(s.memory_percent(), Some(80.0));
        let unlimited = StatsSample {
            memory_limit: 0,
            ..s
        };
        assert_eq!(unlimited.memory_percent(), None);
    }
}
