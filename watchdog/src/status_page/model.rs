//! The `/api/status` document, version 1. `docs/status-api.schema.json` describes the same shape;
//! a field is only ever added (with `#[serde(default)]` on the reading side), never renamed or
//! retyped, without raising [`SCHEMA_VERSION`].
//!
//! Every instant is Unix milliseconds (UTC). Strings that come from Docker (names, labels) or
//! from the executor's audit records are data: the HTML page escapes them, scripts must too.

use serde::{Deserialize, Serialize};

/// Raised on any incompatible change of this document.
pub const SCHEMA_VERSION: u32 = 1;
/// The value of [`StatusDoc::schema`].
pub const SCHEMA_NAME: &str = "vigil.status/v1";

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub schema: String,
    pub version: u32,
    pub generated_at: i64,
    pub host: String,
    pub deployment: String,
    pub watchdog: WatchdogView,
    pub executor: ExecutorView,
    /// Firing (and resolving) alerts, most severe and oldest first.
    pub incidents: Vec<Incident>,
    /// Every watched container, failing ones first, then by name.
    pub containers: Vec<ContainerView>,
    /// Recent executor decisions from the audit stream, newest first.
    pub actions: Vec<ActionView>,
    /// Active silences (empty while none are set or silences are unavailable).
    pub silences: Vec<SilenceView>,
    pub host_signals: HostView,
    pub history: HistoryView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchdogView {
    pub enabled: bool,
    pub started_at: i64,
    /// False while the Docker engine does not answer.
    pub docker_ok: bool,
    /// When the last full sweep of the engine finished; null before the first.
    pub last_sweep_at: Option<i64>,
    /// Whether Redis is configured (otherwise: alert-only mode, no executor).
    pub remediation_configured: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutorView {
    /// True: heartbeat fresh; false: missing or stale; null: not known (no Redis, not read yet).
    pub heartbeat_ok: Option<bool>,
    /// The heartbeat's own time, when the executor wrote one.
    pub heartbeat_at: Option<i64>,
    /// Remediation paused (the pause key is set); null when not known.
    pub paused: Option<bool>,
    /// The executor's latest decision was a dry run; null before any decision was read.
    pub dry_run: Option<bool>,
    /// When the watchdog last read these facts; null before the first read.
    pub checked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub project: Option<String>,
    pub service: Option<String>,
    /// For host, dependency and engine signals: the disk path, dependency name, "docker"...
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The alert key (`<kind>/<subject>`).
    pub key: String,
    pub kind: String,
    /// `info`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `firing` or `resolving` (recovered, waiting to be sure).
    pub state: String,
    /// When the condition was first seen.
    pub since: i64,
    pub subject: Subject,
    /// What the watchdog saw (the signal's detail).
    pub cause: String,
    pub remediation: Option<RemediationView>,
    pub silence: Option<SilenceView>,
    pub acked: bool,
    /// Who acknowledged it, when `acked`. Added in v1.
    #[serde(default)]
    pub acked_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationView {
    /// `requested`, `executed`, `dry_run`, `refused`, `failed`, `rejected` or `escalated`.
    pub state: String,
    /// The action asked for or taken (`restart`, `start`, ...).
    pub action: Option<String>,
    pub at: i64,
    /// The audit record that says so; null while only requested.
    pub audit_seq: Option<u64>,
    /// For a temporary refusal: when the executor would accept again.
    pub retry_at: Option<i64>,
    /// The executor's reason code or result, in words.
    pub detail: String,
    /// The incident machine's phase (`due`, `requested`, `verifying`, `waiting`, `gave_up`,
    /// `escalated`); null when the state comes from the last audit record alone (no incident
    /// of this watchdog is open for it). Added in v1.
    #[serde(default)]
    pub phase: Option<String>,
    /// Requests sent for this incident so far; null without an incident. Added in v1.
    #[serde(default)]
    pub attempts: Option<usize>,
    /// Actions the executor carried out for this incident; null without an incident. Added in
    /// v1.
    #[serde(default)]
    pub executed: Option<usize>,
    /// While verifying an executed action: when the container must have recovered by, or the
    /// next attempt is made. Added in v1.
    #[serde(default)]
    pub verify_until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub project: Option<String>,
    pub service: Option<String>,
    /// `healthy`, `running` (no healthcheck), `starting`, `unhealthy`, `exited`, `restarting`,
    /// `paused` or `down` (created, dead, removed, or unknown).
    pub state: String,
    pub exit_code: Option<i64>,
    pub restart_count: u64,
    /// When the current state began, as far as this watchdog saw it.
    pub since: i64,
    /// State changes in the last 24 hours, oldest first; the first may be older than the window
    /// (the state the window starts in).
    pub timeline: Vec<TimelinePoint>,
    /// Executor actions on this container in the last 24 hours, oldest first.
    pub marks: Vec<Mark>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at: i64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub at: i64,
    /// The executor's decision (`executed`, `refused`, ...) or `requested`.
    pub decision: String,
    pub audit_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionView {
    pub audit_seq: u64,
    pub at: Option<i64>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub project: Option<String>,
    pub decision: String,
    pub reason: String,
    pub result: Option<String>,
    pub retry_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceView {
    pub id: String,
    /// The container or project it covers.
    pub target: String,
    pub until: i64,
    pub reason: Option<String>,
    pub by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    /// When the host was last sampled; null before the first sample.
    pub sampled_at: Option<i64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub disks: Vec<DiskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskView {
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// What the history costs and keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    pub window_ms: i64,
    pub max_points_per_container: usize,
    pub max_marks_per_container: usize,
    pub max_containers: usize,
    /// The documented worst case per container, in bytes.
    pub bytes_per_container_bound: usize,
    /// What the history holds now, in bytes (capacity, not just length).
    pub bytes_now: usize,
}
