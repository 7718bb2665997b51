//! Signals: what the watchdog has concluded about one subject, and the pure evaluation that turns
//! observations into them.
//!
//! A signal is `{key, kind, active, severity, subject, detail, observed_at}`. `key` is stable per
//! subject and kind (`container_unhealthy/<project>/<service>/<name>`), so `decide` can keep one
//! alert state per key.

use serde::{Deserialize, Serialize};
use vigil_shared::time::Timestamp;

/// Every kind of signal. `as_str` is the name used in keys, messages, metrics and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    ContainerUnhealthy,
    ContainerExited,
    ContainerOomKilled,
    ContainerRestartLoop,
    ContainerCpuHigh,
    ContainerMemoryHigh,
    ContainerMissing,
    HostMemoryHigh,
    DiskHigh,
    DependencyDown,
    AppDown,
    AppMetric,
    DockerUnreachable,
    RedisUnreachable,
    ExecutorDown,
}

impl SignalKind {
    pub const ALL: [SignalKind; 15] = [
        SignalKind::ContainerUnhealthy,
        SignalKind::ContainerExited,
        SignalKind::ContainerOomKilled,
        SignalKind::ContainerRestartLoop,
        SignalKind::ContainerCpuHigh,
        SignalKind::ContainerMemoryHigh,
        SignalKind::ContainerMissing,
        SignalKind::HostMemoryHigh,
        SignalKind::DiskHigh,
        SignalKind::DependencyDown,
        SignalKind::AppDown,
        SignalKind::AppMetric,
        SignalKind::DockerUnreachable,
        SignalKind::RedisUnreachable,
        SignalKind::ExecutorDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::ContainerUnhealthy => "container_unhealthy",
            SignalKind::ContainerExited => "container_exited",
            SignalKind::ContainerOomKilled => "container_oom_killed",
            SignalKind::ContainerRestartLoop => "container_restart_loop",
            SignalKind::ContainerCpuHigh => "container_cpu_high",
            SignalKind::ContainerMemoryHigh => "container_memory_high",
            SignalKind::ContainerMissing => "container_missing",
            SignalKind::HostMemoryHigh => "host_memory_high",
            SignalKind::DiskHigh => "disk_high",
            SignalKind::DependencyDown => "dependency_down",
            SignalKind::AppDown => "app_down",
            SignalKind::AppMetric => "app_metric",
            SignalKind::DockerUnreachable => "docker_unreachable",
            SignalKind::RedisUnreachable => "redis_unreachable",
            SignalKind::ExecutorDown => "executor_down",
        }
    }

    pub fn parse(s: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Edge kinds fire on each new occurrence (an exit, an OOM kill) rather than on a held level.
    pub fn is_edge(self) -> bool {
        matches!(
            self,
            SignalKind::ContainerExited | SignalKind::ContainerOomKilled
        )
    }

    /// Kinds about one container (they carry a container in their subject).
    pub fn is_container(self) -> bool {
        matches!(
            self,
            SignalKind::ContainerUnhealthy
                | SignalKind::ContainerExited
                | SignalKind::ContainerOomKilled
                | SignalKind::ContainerRestartLoop
                | SignalKind::ContainerCpuHigh
                | SignalKind::ContainerMemoryHigh
                | SignalKind::ContainerMissing
        )
    }
}

impl std::fmt::Display for SignalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a signal is about. Container signals fill the container fields; host, dependency and
/// engine signals use `name` (a disk path, a dependency name, "docker").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subject {
    pub project: Option<String>,
    pub service: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub name: Option<String>,
}

impl Subject {
    pub fn container(c: &vigil_docker::ContainerRef) -> Subject {
        Subject {
            project: c.project.clone(),
            service: c.service.clone(),
            container: Some(c.name.clone()),
            container_id: Some(c.id.clone()),
            name: None,
        }
    }

    pub fn named(name: impl Into<String>) -> Subject {
        Subject {
            name: Some(name.into()),
            ..Subject::default()
        }
    }

    /// The key part after the kind: `<project>/<service>/<name>` for containers (`-` for a
    /// missing part), the name otherwise.
    pub fn key_part(&self) -> String {
        match &self.container {
            Some(c) => format!(
                "{}/{}/{}",
                self.project.as_deref().unwrap_or("-"),
                self.service.as_deref().unwrap_or("-"),
                c
            ),
            None => self.name.clone().unwrap_or_else(|| "-".to_string()),
        }
    }
}

/// One conclusion about one subject at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub key: String,
    pub kind: SignalKind,
    pub active: bool,
    pub severity: Severity,
    pub subject: Subject,
    pub detail: String,
    pub observed_at: Timestamp,
    /// For edge kinds: identifies one occurrence (e.g. the engine's event time), so a new
    /// occurrence fires again while an old one repeated does not.
    pub occurrence: Option<i64>,
}

impl Signal {
    pub fn new(
        kind: SignalKind,
        active: bool,
        severity: Severity,
        subject: Subject,
        detail: impl Into<String>,
        observed_at: Timestamp,
    ) -> Signal {
        let key = format!("{}/{}", kind.as_str(), subject.key_part());
        Signal {
            key,
            kind,
            active,
            severity,
            subject,
            detail: detail.into(),
            observed_at,
            occurrence: None,
        }
    }

    pub fn with_occurrence(mut self, occurrence: i64) -> Signal {
        self.occurrence = Some(occurrence);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_subject_and_kind() {
        let c = vigil_docker::ContainerRef {
            id: "abc".into(),
            name: "shop-web-1".into(),
            project: Some("shop".into()),
            service: Some("web".into()),
        };
        let s = Signal::new(
            SignalKind::ContainerUnhealthy,
            true,
            Severity::High,
            Subject::container(&c),
            "x",
            Timestamp(0),
        );
        assert_eq!(s.key, "container_unhealthy/shop/web/shop-web-1");
        let d = Signal::new(
            SignalKind::DiskHigh,
            true,
            Severity::High,
            Subject::named("/"),
            "",
            Timestamp(0),
        );
        assert_eq!(d.key, "disk_high//");
    }

    #[test]
    fn kind_names_round_trip() {
        for k in SignalKind::ALL {
            assert_eq!(SignalKind::parse(k.as_str()), Some(k));
        }
    }
}
