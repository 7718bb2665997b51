//! Engine API types as the engine sends them, and their conversion to [`crate::model`].
//!
//! Mirrors the Engine API (1.41 and later, bollard style): field names renamed to the API's,
//! every field `Option` (engines omit or `null` fields across versions), enums with an unknown
//! fallback. Only the fields Vigil uses are declared: everything else, `Config.Env` above all,
//! is skipped by serde without being stored, so a container's secrets never reach a Vigil value.

use crate::error::DockerError;
use crate::model::{
    ContainerDetails, ContainerEvent, ContainerRef, ContainerSummary, EngineVersion, EventAction,
    Health, HealthProbe, MAX_PROBE_OUTPUT_CHARS, RunState, StatsSample, compose_identity,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_shared::time::Timestamp;

/// The newest API version this crate is written against; negotiation never goes above it.
pub const PINNED_API_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 47,
};
/// The oldest API version accepted (`one-shot` stats need 1.41).
pub const MIN_API_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 41,
};

/// An Engine API version such as `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// Parses `1.41`; `None` for anything else.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.trim().split_once('.')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

fn decode_error(what: &'static str, error: impl Into<String>) -> DockerError {
    DockerError::Decode {
        what,
        error: error.into(),
    }
}

fn labels(map: Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default()
}

fn container_ref(id: String, name: &str, labels: &BTreeMap<String, String>) -> ContainerRef {
    let (project, service) = compose_identity(labels);
    ContainerRef {
        id,
        name: name.trim_start_matches('/').to_string(),
        project,
        service,
    }
}

fn non_negative(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

// ---------------------------------------------------------------------------------------------
// GET /version

/// `GET /version`.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemVersion {
    #[serde(rename = "Version")]
    pub version: Option<String>,
    #[serde(rename = "ApiVersion")]
    pub api_version: Option<String>,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: Option<String>,
    #[serde(rename = "Os")]
    pub os: Option<String>,
    #[serde(rename = "Arch")]
    pub arch: Option<String>,
}

impl TryFrom<SystemVersion> for EngineVersion {
    type Error = DockerError;

    fn try_from(v: SystemVersion) -> Result<Self, DockerError> {
        let api_version = v
            .api_version
            .filter(|s| !s.is_empty())
            .ok_or_else(|| decode_error("version", "no ApiVersion"))?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version,
            min_api_version: v.min_api_version,
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Enums shared by list and inspect

/// `State` of a list row, `State.Status` of inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStateStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    #[serde(other)]
    Unknown,
}

impl From<ContainerStateStatus> for RunState {
    fn from(s: ContainerStateStatus) -> RunState {
        match s {
            ContainerStateStatus::Created => RunState::Created,
            ContainerStateStatus::Running => RunState::Running,
            ContainerStateStatus::Paused => RunState::Paused,
            ContainerStateStatus::Restarting => RunState::Restarting,
            ContainerStateStatus::Removing => RunState::Removing,
            ContainerStateStatus::Exited => RunState::Exited,
            ContainerStateStatus::Dead => RunState::Dead,
            ContainerStateStatus::Unknown => RunState::Unknown,
        }
    }
}

/// `State.Health.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    None,
    Starting,
    Healthy,
    Unhealthy,
    #[serde(other)]
    Unknown,
}

impl From<HealthStatus> for Health {
    fn from(s: HealthStatus) -> Health {
        match s {
            HealthStatus::Starting => Health::Starting,
            HealthStatus::Healthy => Health::Healthy,
            HealthStatus::Unhealthy => Health::Unhealthy,
            // An unknown status is not evidence of ill health.
            HealthStatus::None | HealthStatus::Unknown => Health::None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GET /containers/json

/// One row of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerListItem {
    #[serde(rename = "Id")]
    pub id: Option<String>,
    #[serde(rename = "Names")]
    pub names: Option<Vec<String>>,
    #[serde(rename = "Image")]
    pub image: Option<String>,
    /// Unix seconds.
    #[serde(rename = "Created")]
    pub created: Option<i64>,
    #[serde(rename = "Labels")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "State")]
    pub state: Option<ContainerStateStatus>,
    /// The engine's human text: `Up 5 minutes (healthy)`, `Exited (1) 3 seconds ago`.
    #[serde(rename = "Status")]
    pub status: Option<String>,
}

impl TryFrom<ContainerListItem> for ContainerSummary {
    type Error = DockerError;

    fn try_from(c: ContainerListItem) -> Result<Self, DockerError> {
        let id =
            c.id.filter(|s| !s.is_empty())
                .ok_or_else(|| decode_error("container list", "a container without Id"))?;
        let labels = labels(c.labels);
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(String::as_str)
            .unwrap_or("");
        Ok(ContainerSummary {
            container: container_ref(id, name, &labels),
            image: c.image.unwrap_or_default(),
            state: c.state.map_or(RunState::Unknown, RunState::from),
            status: c.status.unwrap_or_default(),
            labels,
            created: Timestamp(c.created.unwrap_or(0).saturating_mul(1000)),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// GET /containers/{id}/json

/// `GET /containers/{id}/json`, the parts Vigil reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerInspect {
    #[serde(rename = "Id")]
    pub id: Option<String>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    /// The image id (`sha256:...`); `Config.Image` holds the name the user gave.
    #[serde(rename = "Image")]
    pub image: Option<String>,
    #[serde(rename = "RestartCount")]
    pub restart_count: Option<i64>,
    #[serde(rename = "State")]
    pub state: Option<ContainerState>,
    #[serde(rename = "HostConfig")]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "Config")]
    pub config: Option<ContainerConfig>,
}

/// `State` of inspect.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    #[serde(rename = "Status")]
    pub status: Option<ContainerStateStatus>,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: Option<bool>,
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i64>,
    #[serde(rename = "StartedAt")]
    pub started_at: Option<String>,
    #[serde(rename = "FinishedAt")]
    pub finished_at: Option<String>,
    #[serde(rename = "Health")]
    pub health: Option<ContainerHealth>,
}

/// `State.Health`. Probe output may print anything: only the newest entry of `Log` is kept, and
/// only after [`crate::redact::scrub_text`] (see [`last_probe`]).
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerHealth {
    #[serde(rename = "Status")]
    pub status: Option<HealthStatus>,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: Option<i64>,
    #[serde(rename = "Log", default)]
    pub log: Option<Vec<HealthLogEntry>>,
}

/// One entry of `State.Health.Log`.
#[derive(Debug, Clone, Deserialize)]
pub struct HealthLogEntry {
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i64>,
    /// Scrubbed as it is read, so no Vigil value ever holds the raw probe output.
    #[serde(rename = "Output", default, deserialize_with = "scrubbed")]
    pub output: Option<String>,
}

fn scrubbed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.map(|s| crate::redact::scrub_text(&s)))
}

/// The newest probe, its output trimmed to its tail and scrubbed of secrets.
fn last_probe(health: Option<&ContainerHealth>) -> Option<HealthProbe> {
    let entry = health?.log.as_ref()?.last()?;
    let output = crate::redact::scrub_text(entry.output.as_deref().unwrap_or("").trim());
    let count = output.chars().count();
    let output = if count > MAX_PROBE_OUTPUT_CHARS {
        let tail: String = output
            .chars()
            .skip(count - MAX_PROBE_OUTPUT_CHARS)
            .collect();
        format!("...{tail}")
    } else {
        output
    };
    Some(HealthProbe {
        exit_code: entry.exit_code.unwrap_or(-1),
        output,
    })
}

/// `HostConfig`, the parts Vigil reads.
#[derive(Debug, Clone, Deserialize)]
pub struct HostConfig {
    /// Bytes; 0 when unlimited.
    #[serde(rename = "Memory")]
    pub memory: Option<i64>,
    #[serde(rename = "RestartPolicy")]
    pub restart_policy: Option<RestartPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestartPolicy {
    #[serde(rename = "Name")]
    pub name: Option<String>,
}

/// `Config`, the parts Vigil reads. There is deliberately no `Env` field.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Image")]
    pub image: Option<String>,
    #[serde(rename = "Labels")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Seconds the engine waits after the stop signal before SIGKILL (compose
    /// `stop_grace_period`); absent means the engine's default.
    #[serde(rename = "StopTimeout")]
    pub stop_timeout: Option<i64>,
}

impl TryFrom<ContainerInspect> for ContainerDetails {
    type Error = DockerError;

    fn try_from(c: ContainerInspect) -> Result<Self, DockerError> {
        let id =
            c.id.filter(|s| !s.is_empty())
                .ok_or_else(|| decode_error("container inspect", "no Id"))?;
        let (config_image, config_labels, stop_timeout) = match c.config {
            Some(cfg) => (cfg.image, cfg.labels, cfg.stop_timeout),
            None => (None, None, None),
        };
        let labels = labels(config_labels);
        let state = c.state;
        let health = state.as_ref().and_then(|s| s.health.as_ref());
        let (memory_limit, restart_policy) = match c.host_config {
            Some(h) => (
                non_negative(h.memory),
                h.restart_policy.and_then(|p| p.name).unwrap_or_default(),
            ),
            None => (0, String::new()),
        };
        Ok(ContainerDetails {
            container: container_ref(id, c.name.as_deref().unwrap_or(""), &labels),
            image: config_image.or(c.image).unwrap_or_default(),
            state: state
                .as_ref()
                .and_then(|s| s.status)
                .map_or(RunState::Unknown, RunState::from),
            health: health
                .and_then(|h| h.status)
                .map_or(Health::None, Health::from),
            health_failing_streak: non_negative(health.and_then(|h| h.failing_streak)),
            last_probe: last_probe(health),
            exit_code: state.as_ref().and_then(|s| s.exit_code).unwrap_or(0),
            oom_killed: state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false),
            restart_count: non_negative(c.restart_count),
            restart_policy,
            started_at: state
                .as_ref()
                .and_then(|s| s.started_at.as_deref())
                .and_then(parse_docker_time),
            finished_at: state
                .as_ref()
                .and_then(|s| s.finished_at.as_deref())
                .and_then(parse_docker_time),
            labels,
            memory_limit,
            stop_timeout: stop_timeout.and_then(|t| u64::try_from(t).ok()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// GET /containers/{id}/stats?stream=false&one-shot=true

/// One stats sample. `precpu_stats` is not read: one-shot samples leave it empty.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerStats {
    pub read: Option<String>,
    pub cpu_stats: Option<CpuStats>,
    pub memory_stats: Option<MemoryStats>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CpuStats {
    pub cpu_usage: Option<CpuUsage>,
    pub system_cpu_usage: Option<u64>,
    pub online_cpus: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CpuUsage {
    pub total_usage: Option<u64>,
    /// Only on cgroup v1; used for the CPU count when `online_cpus` is missing.
    pub percpu_usage: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MemoryStats {
    pub usage: Option<u64>,
    pub limit: Option<u64>,
    pub stats: Option<MemoryStatsDetail>,
}

/// `memory_stats.stats`: cgroup v1 has both `total_inactive_file` and `inactive_file`, cgroup v2
/// only `inactive_file`.
#[derive(Debug, Clone, Deserialize)]
pub struct MemoryStatsDetail {
    pub total_inactive_file: Option<u64>,
    pub inactive_file: Option<u64>,
}

impl ContainerStats {
    /// Converts to the domain sample; `fallback_read_at` stands in for a missing `read` time.
    pub fn into_sample(self, fallback_read_at: Timestamp) -> StatsSample {
        let cpu = self.cpu_stats;
        let usage = cpu.as_ref().and_then(|c| c.cpu_usage.as_ref());
        let online_cpus = cpu
            .as_ref()
            .and_then(|c| c.online_cpus)
            .filter(|&n| n > 0)
            .or_else(|| {
                usage
                    .and_then(|u| u.percpu_usage.as_ref())
                    .map(|p| u32::try_from(p.len()).unwrap_or(u32::MAX))
            })
            .unwrap_or(0);
        let memory = self.memory_stats;
        let memory_usage = memory.as_ref().and_then(|m| m.usage).unwrap_or(0);
        // As `docker stats` does: the v1 total when it makes sense, else the v2 figure.
        let detail = memory.as_ref().and_then(|m| m.stats.as_ref());
        let inactive_file = StatsSample::inactive_file_of(
            memory_usage,
            detail.and_then(|s| s.total_inactive_file),
            detail.and_then(|s| s.inactive_file),
        );
        StatsSample {
            read_at: self
                .read
                .as_deref()
                .and_then(parse_docker_time)
                .unwrap_or(fallback_read_at),
            cpu_total: usage.and_then(|u| u.total_usage).unwrap_or(0),
            system_cpu: cpu.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0),
            online_cpus,
            memory_usage,
            memory_limit: memory.as_ref().and_then(|m| m.limit).unwrap_or(0),
            inactive_file,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GET /events

/// One message of the `/events` stream.
#[derive(Debug, Clone, Deserialize)]
pub struct EventMessage {
    #[serde(rename = "Type")]
    pub typ: Option<String>,
    #[serde(rename = "Action")]
    pub action: Option<String>,
    /// Pre-1.22 name of `Action`, still sent.
    pub status: Option<String>,
    /// Pre-1.22 name of `Actor.ID`, still sent.
    pub id: Option<String>,
    #[serde(rename = "Actor")]
    pub actor: Option<EventActor>,
    pub time: Option<i64>,
    #[serde(rename = "timeNano")]
    pub time_nano: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: Option<String>,
    #[serde(rename = "Attributes")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// Attributes the engine adds next to the container's labels in `Actor.Attributes`.
const NON_LABEL_ATTRIBUTES: [&str; 5] = ["name", "image", "exitCode", "signal", "execDuration"];

/// Parses an event `Action` (plus the attributes that qualify it).
pub fn parse_action(action: &str, attributes: &BTreeMap<String, String>) -> EventAction {
    let attr_num = |key: &str| attributes.get(key).and_then(|v| v.trim().parse().ok());
    match action {
        "start" => EventAction::Start,
        "die" => EventAction::Die {
            exit_code: attr_num("exitCode"),
        },
        "oom" => EventAction::Oom,
        "kill" => EventAction::Kill {
            signal: attributes.get("signal").and_then(|v| v.trim().parse().ok()),
        },
        "stop" => EventAction::Stop,
        "destroy" => EventAction::Destroy,
        "restart" => EventAction::Restart,
        other => match other.strip_prefix("health_status:").map(str::trim) {
            Some("healthy") => EventAction::HealthStatus(Health::Healthy),
            Some("unhealthy") => EventAction::HealthStatus(Health::Unhealthy),
            Some("starting") => EventAction::HealthStatus(Health::Starting),
            _ => EventAction::Other(other.to_string()),
        },
    }
}

impl EventMessage {
    /// `Ok(None)` for events about something other than a container.
    pub fn into_container_event(self) -> Result<Option<ContainerEvent>, DockerError> {
        if self.typ.as_deref().is_some_and(|t| t != "container") {
            return Ok(None);
        }
        let (actor_id, attributes) = match self.actor {
            Some(a) => (a.id, a.attributes.unwrap_or_default()),
            None => (None, BTreeMap::new()),
        };
        let id = actor_id
            .or(self.id)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| decode_error("event", "a container event without an id"))?;
        let action_text = self
            .action
            .or(self.status)
            .ok_or_else(|| decode_error("event", "an event without Action"))?;
        let action = parse_action(&action_text, &attributes);
        let time_nano = self
            .time_nano
            .or_else(|| self.time.map(|s| s.saturating_mul(1_000_000_000)))
            .unwrap_or(0);
        let name = attributes.get("name").cloned().unwrap_or_default();
        let labels: BTreeMap<String, String> = attributes
            .into_iter()
            .filter(|(k, _)| !NON_LABEL_ATTRIBUTES.contains(&k.as_str()))
            .collect();
        Ok(Some(ContainerEvent {
            container: container_ref(id, &name, &labels),
            action,
            labels,
            time_nano,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/// Parses an engine timestamp (RFC 3339, up to nanoseconds, `Z` or a numeric offset).
/// Go's zero time `0001-01-01T00:00:00Z` (never started, never finished), anything before
/// 1970 and anything malformed are `None`: a bad time must not hide the rest of a container.
pub fn parse_docker_time(s: &str) -> Option<Timestamp> {
    parse_rfc3339_millis(s).filter(|&ms| ms > 0).map(Timestamp)
}

/// Milliseconds since the epoch of an RFC 3339 date-time; `None` when malformed.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 64 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures follow what Engine 20.10 (API 1.41) sends, trimmed of fields Vigil skips.
    const VERSION: &str = r#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1","Details":{"ApiVersion":"1.41","MinAPIVersion":"1.12"}}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"5d6db84","GoVersion":"go1.19.8","Os":"linux","Arch":"amd64","KernelVersion":"6.1.0","BuildTime":"2026-05-07T21:09:36.000000000+00:00"}"#;

    const LIST: &str = r#"[{"Id":"0fde985c5da5cf4168b4827be072be1de458263ef606dfd93fe49a1c3b9ceaba","Names":["/demo-web-1"],"Image":"vigil-test/busybox:latest","ImageID":"sha256:8cf065ccd1aa","Command":"sleep 300","Created":1795473045,"Ports":[],"Labels":{"com.docker.compose.project":"demo","com.docker.compose.service":"web","org.example.test":"1"},"State":"running","Status":"Up 2 seconds (healthy)","HostConfig":{"NetworkMode":"default"},"NetworkSettings":{"Networks":{"bridge":{"IPAMConfig":null,"Gateway":"172.17.0.1","IPAddress":"172.17.0.3"}}},"Mounts":[]},
        {"Id":"bb3c01902ece","Names":null,"Image":"x","Created":1795473044,"Labels":null,"State":"frozen-in-time","Status":"?"}]"#;

    const INSPECT: &str = r#"{"Id":"0fde985c5da5cf4168b4827be072be1de458263ef606dfd93fe49a1c3b9ceaba","Created":"2026-11-23T22:30:45.263874182Z","Path":"sleep","Args":["300"],"State":{"Status":"exited","Running":false,"Paused":false,"Restarting":false,"OOMKilled":true,"Dead":false,"Pid":0,"ExitCode":137,"Error":"","StartedAt":"2026-11-23T22:30:45.651951138Z","FinishedAt":"2026-11-23T22:31:02.5Z","Health":{"Status":"unhealthy","FailingStreak":4,"Log":[{"Start":"2026-11-23T22:30:46.65268033Z","End":"2026-11-23T22:30:46.74318566Z","ExitCode":1,"Output":"token=hunter2"}]}},"Image":"sha256:8cf065ccd1aa","Name":"/demo-web-1","RestartCount":3,"Driver":"overlay2","HostConfig":{"Binds":null,"NetworkMode":"default","RestartPolicy":{"Name":"on-failure","MaximumRetryCount":5},"Memory":67108864,"MemorySwap":-1},"Config":{"Hostname":"0fde985c5da5","Env":["SECRET=hunter2","PATH=/bin"],"Cmd":["sleep","300"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000},"Image":"vigil-test/busybox:latest","Labels":{"com.docker.compose.project":"demo","com.docker.compose.service":"web"}},"NetworkSettings":{"Networks":{}}}"#;

    const STATS_V1: &str = r#"{"read":"2026-11-23T22:30:47.751134412Z","preread":"0001-01-01T00:00:00Z","pids_stats":{"current":1},"num_procs":0,"cpu_stats":{"cpu_usage":{"total_usage":65628125,"percpu_usage":[21995216,43632909],"usage_in_kernelmode":10000000,"usage_in_usermode":40000000},"system_cpu_usage":1566800000000,"online_cpus":2,"throttling_data":{"periods":0}},"precpu_stats":{"cpu_usage":{"total_usage":0},"throttling_data":{}},"memory_stats":{"usage":2265088,"max_usage":3792896,"stats":{"cache":1703936,"inactive_file":1695744,"total_inactive_file":1695000,"hierarchical_memory_limit":9223372036854771712},"limit":25276510208},"name":"/demo-web-1","id":"0fde985c5da5"}"#;

    const STATS_V2: &str = r#"{"read":"2026-11-23T22:30:47Z","preread":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":5000,"usage_in_kernelmode":1,"usage_in_usermode":2},"system_cpu_usage":900000,"online_cpus":4},"memory_stats":{"usage":10000,"stats":{"anon":4096,"file":6000,"inactive_file":3000,"active_file":100},"limit":67108864}}"#;

    #[test]
    fn version_converts() {
        let v: SystemVersion = serde_json::from_str(VERSION).unwrap();
        let v = EngineVersion::try_from(v).unwrap();
        assert_eq!(v.api_version, "1.41");
        assert_eq!(v.min_api_version.as_deref(), Some("1.12"));
        assert_eq!(v.version, "20.10.24+dfsg1");
        assert_eq!((v.os.as_str(), v.arch.as_str()), ("linux", "amd64"));
        let missing: SystemVersion = serde_json::from_str(r#"{"Version":"1"}"#).unwrap();
        assert!(matches!(
            EngineVersion::try_from(missing),
            Err(DockerError::Decode { .. })
        ));
    }

    #[test]
    fn api_versions_parse_and_order() {
        assert_eq!(
            ApiVersion::parse("1.41"),
            Some(ApiVersion {
                major: 1,
                minor: 41
            })
        );
        assert!(ApiVersion::parse("1.9").unwrap() < MIN_API_VERSION);
        assert!(ApiVersion::parse("1.100").unwrap() > PINNED_API_VERSION);
        for bad in [
            "",
            "1",
            "1.",
            ".4",
            "v1.41",
            "1.41.2",
            "1.-4",
            "99999999999.1",
        ] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert_eq!(PINNED_API_VERSION.to_string(), "1.47");
    }

    #[test]
    fn list_converts_with_compose_identity_and_unknown_state() {
        let rows: Vec<ContainerListItem> = serde_json::from_str(LIST).unwrap();
        let rows: Vec<ContainerSummary> = rows
            .into_iter()
            .map(ContainerSummary::try_from)
            .collect::<Result<_, _>>()
            .unwrap();
        let web = &rows[0];
        assert_eq!(web.container.name, "demo-web-1");
        assert_eq!(web.container.project.as_deref(), Some("demo"));
        assert_eq!(web.container.service.as_deref(), Some("web"));
        assert_eq!(web.state, RunState::Running);
        assert_eq!(web.status, "Up 2 seconds (healthy)");
        assert_eq!(web.created, Timestamp(1_795_473_045_000));
        assert_eq!(
            web.labels.get("org.example.test").map(String::as_str),
            Some("1")
        );
        let odd = &rows[1];
        assert_eq!(odd.state, RunState::Unknown, "unknown states fall back");
        assert_eq!(odd.container.name, "");
        assert!(odd.labels.is_empty());
        assert_eq!(odd.container.project, None);
    }

    #[test]
    fn list_row_without_id_is_a_decode_error() {
        let rows: Vec<ContainerListItem> = serde_json::from_str(r#"[{"Names":["/x"]}]"#).unwrap();
        let err = rows
            .into_iter()
            .map(ContainerSummary::try_from)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(matches!(err, DockerError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn inspect_converts_and_never_holds_env() {
        let raw: ContainerInspect = serde_json::from_str(INSPECT).unwrap();
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("hunter2"),
            "env or probe output kept: {debug}"
        );
        let d = ContainerDetails::try_from(raw).unwrap();
        assert!(!format!("{d:?}").contains("hunter2"));
        assert_eq!(d.container.name, "demo-web-1");
        assert_eq!(d.container.service.as_deref(), Some("web"));
        assert_eq!(d.image, "vigil-test/busybox:latest");
        assert_eq!(
            d.last_probe,
            Some(HealthProbe {
                exit_code: 1,
                output: "token=<redacted>".into()
            }),
            "probe output is kept, scrubbed"
        );
        assert_eq!(d.state, RunState::Exited);
        assert_eq!(d.health, Health::Unhealthy);
        assert_eq!(d.health_failing_streak, 4);
        assert_eq!(d.exit_code, 137);
        assert!(d.oom_killed);
        assert_eq!(d.restart_count, 3);
        assert_eq!(d.restart_policy, "on-failure");
        assert_eq!(d.memory_limit, 64 << 20);
        assert_eq!(d.started_at, Some(Timestamp(1_795_473_045_651)));
        assert_eq!(d.finished_at, Some(Timestamp(1_795_473_062_500)));
    }

    #[test]
    fn inspect_of_a_never_started_container_without_health() {
        let json = r#"{"Id":"abc","Name":"/fresh","State":{"Status":"created","ExitCode":0,"StartedAt":"0001-01-01T00:00:00Z","FinishedAt":"0001-01-01T00:00:00Z"},"HostConfig":{"Memory":0},"Config":{"Image":"img","Labels":null}}"#;
        let d = ContainerDetails::try_from(serde_json::from_str::<ContainerInspect>(json).unwrap())
            .unwrap();
        assert_eq!(d.state, RunState::Created);
        assert_eq!(d.health, Health::None);
        assert_eq!(d.started_at, None);
        assert_eq!(d.finished_at, None);
        assert_eq!(d.memory_limit, 0);
        assert_eq!(d.restart_policy, "");
    }

    #[test]
    fn health_starting_is_kept_apart_from_unhealthy() {
        let json = r#"{"Id":"a","State":{"Status":"running","Health":{"Status":"starting","FailingStreak":1}}}"#;
        let d = ContainerDetails::try_from(serde_json::from_str::<ContainerInspect>(json).unwrap())
            .unwrap();
        assert_eq!(d.health, Health::Starting);
        let json = r#"{"Id":"a","State":{"Status":"running","Health":{"Status":"degraded"}}}"#;
        let d = ContainerDetails::try_from(serde_json::from_str::<ContainerInspect>(json).unwrap())
            .unwrap();
        assert_eq!(d.health, Health::None, "unknown health is not unhealthy");
    }

    #[test]
    fn garbage_inspect_is_an_error_not_a_panic() {
        for bad in [
            "",
            "null",
            "[]",
            "{",
            r#"{"Id":5}"#,
            r#"{"Id":"a","State":{"ExitCode":"zero"}}"#,
            r#"{"Id":"a","Config":{"Labels":{"a":1}}}"#,
            "\u{0}\u{1}garbage",
        ] {
            let parsed = serde_json::from_str::<ContainerInspect>(bad)
                .map_err(|e| decode_error("container inspect", e.to_string()))
                .and_then(ContainerDetails::try_from);
            assert!(parsed.is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn stats_cgroup_v1_uses_total_inactive_file() {
        let s: ContainerStats = serde_json::from_str(STATS_V1).unwrap();
        let s = s.into_sample(Timestamp(1));
        assert_eq!(s.read_at, Timestamp(1_795_473_047_751));
        assert_eq!(s.cpu_total, 65_628_125);
        assert_eq!(s.system_cpu, 1_566_800_000_000);
        assert_eq!(s.online_cpus, 2);
        assert_eq!(s.memory_usage, 2_265_088);
        assert_eq!(s.inactive_file, 1_695_000);
        assert_eq!(s.memory_limit, 25_276_510_208);
    }

    #[test]
    fn stats_cgroup_v2_uses_inactive_file() {
        let s: ContainerStats = serde_json::from_str(STATS_V2).unwrap();
        let s = s.into_sample(Timestamp(1));
        assert_eq!(s.inactive_file, 3000);
        assert_eq!(s.working_set(), 7000);
        assert_eq!(s.online_cpus, 4);
    }

    #[test]
    fn stats_of_a_stopped_container_are_zero_and_cpus_fall_back_to_percpu() {
        let json = r#"{"read":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":7,"percpu_usage":[1,2,3]},"online_cpus":0},"memory_stats":{}}"#;
        let s = serde_json::from_str::<ContainerStats>(json)
            .unwrap()
            .into_sample(Timestamp(42));
        assert_eq!(s.read_at, Timestamp(42));
        assert_eq!(s.online_cpus, 3);
        assert_eq!(s.memory_usage, 0);
        assert_eq!(s.inactive_file, 0);
    }

    #[test]
    fn event_actions() {
        let mut attrs = BTreeMap::new();
        assert_eq!(
            parse_action("health_status: healthy", &attrs),
            EventAction::HealthStatus(Health::Healthy)
        );
        assert_eq!(
            parse_action("health_status: starting", &attrs),
            EventAction::HealthStatus(Health::Starting)
        );
        assert_eq!(
            parse_action("health_status: weird", &attrs),
            EventAction::Other("health_status: weird".into())
        );
        assert_eq!(
            parse_action("die", &attrs),
            EventAction::Die { exit_code: None }
        );
        attrs.insert("exitCode".into(), "3".into());
        attrs.insert("signal".into(), "15".into());
        assert_eq!(
            parse_action("die", &attrs),
            EventAction::Die { exit_code: Some(3) }
        );
        assert_eq!(
            parse_action("kill", &attrs),
            EventAction::Kill { signal: Some(15) }
        );
        attrs.insert("exitCode".into(), "x".into());
        assert_eq!(
            parse_action("die", &attrs),
            EventAction::Die { exit_code: None }
        );
        for (text, action) in [
            ("start", EventAction::Start),
            ("oom", EventAction::Oom),
            ("stop", EventAction::Stop),
            ("destroy", EventAction::Destroy),
            ("restart", EventAction::Restart),
            (
                "exec_start: sh",
                EventAction::Other("exec_start: sh".into()),
            ),
        ] {
            assert_eq!(parse_action(text, &attrs), action, "{text}");
        }
    }

    #[test]
    fn event_converts_name_labels_and_identity() {
        let json = r#"{"status":"die","id":"c1","from":"img","Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"com.docker.compose.project":"shop","com.docker.compose.service":"api","exitCode":"3","image":"img","name":"shop-api-1","team":"core"}},"scope":"local","time":1795473053,"timeNano":1795473053922620017}"#;
        let ev = serde_json::from_str::<EventMessage>(json)
            .unwrap()
            .into_container_event()
            .unwrap()
            .unwrap();
        assert_eq!(ev.container.id, "c1");
        assert_eq!(ev.container.name, "shop-api-1");
        assert_eq!(ev.container.project.as_deref(), Some("shop"));
        assert_eq!(ev.container.service.as_deref(), Some("api"));
        assert_eq!(ev.action, EventAction::Die { exit_code: Some(3) });
        assert_eq!(ev.time_nano, 1_795_473_053_922_620_017);
        assert_eq!(ev.at(), Timestamp(1_795_473_053_922));
        let keys: Vec<&str> = ev.labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "com.docker.compose.project",
                "com.docker.compose.service",
                "team"
            ]
        );
    }

    #[test]
    fn old_style_event_without_actor_or_time_nano() {
        let json = r#"{"status":"start","id":"c2","from":"img","time":1795473053}"#;
        let ev = serde_json::from_str::<EventMessage>(json)
            .unwrap()
            .into_container_event()
            .unwrap()
            .unwrap();
        assert_eq!(ev.action, EventAction::Start);
        assert_eq!(ev.container.id, "c2");
        assert_eq!(ev.time_nano, 1_795_473_053_000_000_000);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2026-11-23T22:19:02.123456789Z"),
            Some(1_795_472_342_123)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-05-07T21:09:36.000000000+00:00"),
            parse_rfc3339_millis("2026-05-07T21:09:36Z")
        );
        assert_eq!(
            parse_rfc3339_millis("2026-05-07T23:09:36.5+02:00"),
            Some(parse_rfc3339_millis("2026-05-07T21:09:36Z").unwrap() + 500)
        );
        assert_eq!(
            parse_rfc3339_millis("2024-02-29T00:00:00-01:30"),
            Some(1_709_170_200_000)
        );
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_docker_time("2026-11-23T22:19:02.1Z"),
            Some(Timestamp(1_795_472_342_100))
        );
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T22:19:02",
            "2026-11-23T22:19:02.Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T22:19:02+0100",
            "2026-11-23T22:19:02Zjunk",
            "２026-11-23T22:19:02Z",
            "2026-11-23T22:19:02.123456789123456789123456789123456789123456789Z",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }
}
