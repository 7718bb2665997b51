//! Watchdog configuration: the validated result of a TOML file plus the environment overlay.
//!
//! Raw input (file text and an [`vigil_shared::config::EnvSource`]) becomes a [`Config`] in one
//! step, [`load`]; every problem is collected and reported at once with its key, and a bad config
//! exits with 78 (EX_CONFIG). Secrets are read from `*_FILE` paths and are never logged.
//!
//! Environment names: `WATCHDOG_<SECTION>__<KEY>` for any key (`__` nests), plus the documented
//! short names in DESIGN.md section 5 (`WATCHDOG_INTERVAL`, `WATCHDOG_TELEGRAM_BOT_TOKEN_FILE`, ...).

use crate::signals::SignalKind;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vigil_shared::config::Secret;

/// Everything the watchdog runs with. Field defaults are listed on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `WATCHDOG_ENABLED` (default true). False: idle, serve `/healthz`, send nothing.
    pub enabled: bool,
    /// Host name shown in messages (default: the machine's host name).
    pub hostname: String,
    /// `WATCHDOG_DEPLOYMENT` (default "default"); must equal the executor's.
    pub deployment: String,
    /// `WATCHDOG_INTERVAL` (default 15 s): sweep, host, dependency and app probe period.
    pub interval: Duration,
    /// `WATCHDOG_LISTEN` (default 127.0.0.1:9750): `/healthz` and `/metrics`. None disables.
    pub listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub docker: DockerConfig,
    pub scope: ScopeConfig,
    pub thresholds: Thresholds,
    pub restart_loop: RestartLoopConfig,
    pub alerts: AlertsConfig,
    pub host: HostConfig,
    pub dependencies: Vec<DependencyConfig>,
    pub app: Option<AppConfig>,
    pub notify: NotifyConfig,
    /// `WATCHDOG_REDIS_URL[_FILE]`; None means alert-only mode (nothing is requested).
    pub redis: Option<RedisConfig>,
    /// `WATCHDOG_SIGNING_KEY_FILE` and `WATCHDOG_KEY_ID`; required to send requests.
    pub signing: Option<SigningConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `WATCHDOG_LOG__FORMAT`: "text" (default) or "json".
    pub format: LogFormat,
    /// `WATCHDOG_LOG__LEVEL`: a tracing filter (default "info").
    pub level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// `WATCHDOG_DOCKER_HOST`: `unix:///path` or `tcp://host:port`
    /// (default `unix:///var/run/docker.sock`).
    pub host: String,
    /// Per-request timeout for non-streaming calls (default 5 s).
    pub timeout: Duration,
    /// At most this many stats requests at once during a sweep (default 16).
    pub stats_concurrency: usize,
    /// Debounce for `docker_unreachable`: the engine must fail this long (default 10 s).
    pub unreachable_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeConfig {
    /// Only watch containers carrying this label (`key` or `key=value`); default: all.
    pub label: Option<String>,
    /// Only watch these compose projects; empty means all.
    pub projects: Vec<String>,
    /// Services that must be running, as `project/service`: `container_missing` otherwise.
    pub expected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Container CPU % (100 = one core), default 85.
    pub cpu_percent: f64,
    /// Container memory % of its limit (excluding inactive_file), default 80.
    pub memory_percent: f64,
    /// Host memory used %, default 90.
    pub host_memory_percent: f64,
    /// Disk used % on each configured path, default 90.
    pub disk_percent: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartLoopConfig {
    /// Die/start cycles (or RestartCount growth) within `window` that make a loop (default 3).
    pub restarts: u32,
    /// Default 10 min.
    pub window: Duration,
}

/// Timing overrides for decide(); anything unset keeps the per-kind default in `decide`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimingOverride {
    pub for_: Option<Duration>,
    pub repeat: Option<Duration>,
    pub repeat_max: Option<Duration>,
    pub keep_firing_for: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertsConfig {
    /// `[alerts.<kind>]` tables, e.g. `[alerts.container_cpu_high] for = "45s"`.
    pub overrides: BTreeMap<SignalKind, TimingOverride>,
    /// Kinds switched off entirely.
    pub disabled: Vec<SignalKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Where `/proc` is (default "/proc"; "/host/proc" in the container).
    pub proc_root: PathBuf,
    /// Paths to statvfs (default ["/"]).
    pub disk_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DependencyTarget {
    /// GET, expecting 2xx.
    Http(url::Url),
    /// TCP connect to `host:port`.
    Tcp(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DependencyConfig {
    pub name: String,
    pub target: DependencyTarget,
    /// Default 3 s.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// Prometheus text endpoint of the watched app.
    pub url: url::Url,
    /// Default 3 s.
    pub timeout: Duration,
    /// `app_down` after this many consecutive failed probes (default 3).
    pub down_after: u32,
    /// Simple threshold rules on samples.
    pub rules: Vec<AppRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRule {
    /// Exact sample name as exposed, e.g. `queue_depth` or `errors_total{kind="db"}`.
    pub metric: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelegramConfig {
    /// `WATCHDOG_TELEGRAM_BOT_TOKEN[_FILE]`.
    pub bot_token: Secret,
    /// `WATCHDOG_TELEGRAM_CHAT_ID`.
    pub chat_id: String,
    /// `WATCHDOG_TELEGRAM_API_URL` (default the public Bot API).
    pub api_url: Option<url::Url>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    /// `WATCHDOG_SLACK_WEBHOOK_URL[_FILE]`: a secret (the URL is the credential).
    pub webhook_url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `WATCHDOG_WEBHOOK_URL[_FILE]`.
    pub url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Signals of one compose project starting within this window go out as one message
    /// (default 2 s).
    pub group_window: Duration,
    /// Bounded delivery queue; when full the oldest message is dropped and counted (default 1024).
    pub queue_capacity: usize,
    /// Per-send timeout (default 10 s).
    pub timeout: Duration,
    /// Attempts per message per sink before giving up (default 5).
    pub max_attempts: u32,
    pub telegram: Option<TelegramConfig>,
    pub slack: Option<SlackConfig>,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: Secret,
    /// Key prefix (default `vigil:`).
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigningConfig {
    pub key_file: PathBuf,
    pub key_id: String,
}
