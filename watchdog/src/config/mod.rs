//! Watchdog configuration: the validated result of a TOML file plus the environment overlay.
//!
//! Raw input (file text and an [`vigil_shared::config::EnvSource`]) becomes a [`Config`] in one
//! step, [`load`]; every problem is collected and reported at once with its key, and a bad config
//! exits with 78 (EX_CONFIG). Secrets are read from `*_FILE` paths and are never logged.
//!
//! Environment names: `WATCHDOG_<SECTION>__<KEY>` for any key (`__` nests), plus
//! the short names documented in `.env.watchdog.example` (`WATCHDOG_INTERVAL`,
//! `WATCHDOG_TELEGRAM_BOT_TOKEN_FILE`, ...).
//!
//! # Layout
//! Each component owns its section: the sources' `[host]`, `[[dependencies]]` and `[app]` in
//! [`crate::collect::config`], the sinks' `[notify]` in [`crate::notify::config`], `[redis]` and
//! `[signing]` in [`crate::redis::config`]. This file holds the top level, `[log]`, `[docker]`,
//! `[scope]`, `[thresholds]`, `[restart_loop]` and `[alerts]`, and [`load`], which composes the
//! sections and runs the cross-section checks; [`check`] holds the validators the sections
//! share. The components never import this file: it imports them (their config types, and
//! [`TimingOverride`] from `decide`) and derives the pure tracker's [`EvalSettings`].

pub mod check;

pub use crate::collect::config::{
    AppConfig, AppRule, DependencyConfig, DependencyTarget, HostConfig,
};
use crate::collect::config::{read_app, read_dependencies, read_host};
pub use crate::decide::TimingOverride;
use crate::evaluate::EvalSettings;
use crate::notify::config::read_notify;
pub use crate::notify::config::{NotifyConfig, SlackConfig, TelegramConfig, WebhookConfig};
pub use crate::redis::config::{RedisConfig, SigningConfig};
use crate::redis::config::{read_redis, read_signing};
use crate::signals::SignalKind;
use check::{at_least_one, docker_host, non_empty, percent, positive, simple_name};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use vigil_shared::config::{
    ConfigErrors, ConfigReader, EnvSource, Secret, convert, format_duration, read_config_table,
};

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
    /// `WATCHDOG_LISTEN_TOKEN_FILE`: required when `listen` is not loopback (see
    /// [`crate::status_page::access`]).
    pub listen_token: Option<Secret>,
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
    /// `WATCHDOG_DATA_DIR`: where alert-only mode keeps its alert state (`alerts.json`), so a
    /// restart does not page again. Unused with Redis (the state lives there). None: memory
    /// only.
    pub data_dir: Option<std::path::PathBuf>,
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
    /// At most this many stats requests in flight in a round of the stats task (default
    /// [`crate::collect::stats::DEFAULT_STATS_CONCURRENCY`], 55), for the containers whose cgroup
    /// files cannot be read (see `host.cgroup_root`). The engine answers them at its
    /// once-a-second collector tick, so a round of N such containers takes about N / this many
    /// seconds; the read-only gate serves 64 connections.
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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertsConfig {
    /// `[alerts.<kind>]` tables, e.g. `[alerts.container_cpu_high] for = "45s"`.
    pub overrides: BTreeMap<SignalKind, TimingOverride>,
    /// Kinds switched off entirely.
    pub disabled: Vec<SignalKind>,
}

// ---------------------------------------------------------------------------------------------
// Defaults

/// Default `listen` address for `/healthz` and `/metrics`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";
/// The variable naming the TOML file when no path is given on the command line.
pub const CONFIG_PATH_VAR: &str = "WATCHDOG_CONFIG";
/// Prefix of every watchdog variable.
pub const ENV_PREFIX: &str = "WATCHDOG";

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

impl Default for DockerConfig {
    fn default() -> DockerConfig {
        DockerConfig {
            host: "unix:///var/run/docker.sock".to_string(),
            timeout: Duration::from_secs(5),
            stats_concurrency: crate::collect::stats::DEFAULT_STATS_CONCURRENCY,
            unreachable_after: Duration::from_secs(10),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            cpu_percent: 85.0,
            memory_percent: 80.0,
            host_memory_percent: 90.0,
            disk_percent: 90.0,
        }
    }
}

impl Default for RestartLoopConfig {
    fn default() -> RestartLoopConfig {
        RestartLoopConfig {
            restarts: 3,
            window: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    /// The embedded defaults: watch the local engine, alert-only, log sink only. The host name is
    /// read from the machine (see [`system_hostname`]).
    fn default() -> Config {
        Config::with_hostname(system_hostname())
    }
}

impl Config {
    /// The embedded defaults with a given host name (no file system access).
    pub fn with_hostname(hostname: impl Into<String>) -> Config {
        Config {
            enabled: true,
            hostname: hostname.into(),
            deployment: "default".to_string(),
            interval: Duration::from_secs(15),
            listen: DEFAULT_LISTEN.parse().ok(),
            listen_token: None,
            log: LogConfig::default(),
            docker: DockerConfig::default(),
            scope: ScopeConfig::default(),
            thresholds: Thresholds::default(),
            restart_loop: RestartLoopConfig::default(),
            alerts: AlertsConfig::default(),
            host: HostConfig::default(),
            dependencies: Vec::new(),
            app: None,
            notify: NotifyConfig::default(),
            redis: None,
            signing: None,
            data_dir: None,
        }
    }

    /// Whether remediation requests can be sent (Redis and a signing key are configured).
    pub fn requests_enabled(&self) -> bool {
        self.redis.is_some() && self.signing.is_some()
    }

    /// Names of the configured sinks, `log` first. Never includes a secret.
    pub fn sink_names(&self) -> Vec<&'static str> {
        let mut names = vec!["log"];
        if self.notify.telegram.is_some() {
            names.push("telegram");
        }
        if self.notify.slack.is_some() {
            names.push("slack");
        }
        if self.notify.webhook.is_some() {
            names.push("webhook");
        }
        names
    }

    /// A human summary for `check-config` and the start-up log: mode, sinks (names only), docker
    /// host, interval. Contains no secret.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        lines.push(format!(
            "watchdog: {} (deployment {:?}, host {:?})",
            if self.enabled {
                "enabled"
            } else {
                "DISABLED by WATCHDOG_ENABLED=false: idle, nothing is sent or requested"
            },
            self.deployment,
            self.hostname
        ));
        lines.push(format!(
            "docker: {}, sweep every {}",
            self.docker.host,
            format_duration(self.interval)
        ));
        lines.push(format!("sinks: {}", self.sink_names().join(", ")));
        let mode = match (&self.redis, &self.signing) {
            (Some(redis), Some(signing)) => format!(
                "remediation requests via Redis (prefix {:?}, key id {:?})",
                redis.prefix, signing.key_id
            ),
            _ => format!(
                "alert-only: no Redis configured, nothing will be requested; alert state {}",
                self.data_dir.as_ref().map_or_else(
                    || "in memory only (set WATCHDOG_DATA_DIR to keep it across restarts)".into(),
                    |d| format!("in {}", d.join(crate::alert_file::FILE_NAME).display())
                )
            ),
        };
        lines.push(format!("mode: {mode}"));
        lines.push(format!(
            "listen: {}",
            self.listen
                .map_or_else(|| "off".to_string(), |a| a.to_string())
        ));
        if !self.scope.projects.is_empty() || self.scope.label.is_some() {
            lines.push(format!(
                "scope: projects [{}], label {}",
                self.scope.projects.join(", "),
                self.scope.label.as_deref().unwrap_or("(any)")
            ));
        }
        if !self.dependencies.is_empty() {
            let names: Vec<&str> = self.dependencies.iter().map(|d| d.name.as_str()).collect();
            lines.push(format!("dependencies: {}", names.join(", ")));
        }
        if let Some(app) = &self.app {
            lines.push(format!(
                "app metrics: {} ({} rules)",
                redact_url(&app.url),
                app.rules.len()
            ));
        }
        if !self.alerts.disabled.is_empty() {
            let kinds: Vec<&str> = self.alerts.disabled.iter().map(|k| k.as_str()).collect();
            lines.push(format!("disabled signals: {}", kinds.join(", ")));
        }
        lines.join("\n")
    }
}

/// A URL without user info, query or fragment, for display.
fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    // Both setters only fail for URLs that cannot have credentials; nothing to hide then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The machine's host name from `/proc/sys/kernel/hostname`, else `/etc/hostname`, else
/// `unknown`.
pub fn system_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Documented variable names (`.env.watchdog.example`) besides the generic `WATCHDOG_<SECTION>__<KEY>`.
/// Top-level keys (`enabled`, `interval`, `deployment`, `listen`, `hostname`) need none: their
/// generic name is the documented one.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("docker.host", "WATCHDOG_DOCKER_HOST"),
    ("notify.telegram.bot_token", "WATCHDOG_TELEGRAM_BOT_TOKEN"),
    (
        "notify.telegram.bot_token_file",
        "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
    ),
    ("notify.telegram.chat_id", "WATCHDOG_TELEGRAM_CHAT_ID"),
    ("notify.telegram.api_url", "WATCHDOG_TELEGRAM_API_URL"),
    (
        "notify.telegram.allowed_users",
        "WATCHDOG_TELEGRAM_ALLOWED_USERS",
    ),
    ("notify.state_file", "WATCHDOG_STATE_FILE"),
    ("notify.slack.webhook_url", "WATCHDOG_SLACK_WEBHOOK_URL"),
    (
        "notify.slack.webhook_url_file",
        "WATCHDOG_SLACK_WEBHOOK_URL_FILE",
    ),
    ("notify.webhook.url", "WATCHDOG_WEBHOOK_URL"),
    ("notify.webhook.url_file", "WATCHDOG_WEBHOOK_URL_FILE"),
    ("redis.url", "WATCHDOG_REDIS_URL"),
    ("redis.url_file", "WATCHDOG_REDIS_URL_FILE"),
    ("signing.key_file", "WATCHDOG_SIGNING_KEY_FILE"),
    ("signing.key_id", "WATCHDOG_KEY_ID"),
    ("log.format", "WATCHDOG_LOG_FORMAT"),
    ("log.level", "WATCHDOG_LOG_LEVEL"),
    ("host.proc_root", "WATCHDOG_PROC_ROOT"),
    ("host.cgroup_root", "WATCHDOG_CGROUP_ROOT"),
    ("host.disk_paths", "WATCHDOG_DISK_PATHS"),
];

/// Loads the configuration: the TOML file (`file`, else `WATCHDOG_CONFIG`, else none: the
/// embedded defaults), then the environment overlay, which wins. Every problem is returned at
/// once, each naming its key; the caller exits with [`vigil_shared::config::EXIT_CONFIG`].
///
/// Secrets may be given as values (`bot_token = "..."`, discouraged: a file or variable value
/// can leak through `docker inspect` or a repository) or, preferably, as files
/// (`bot_token_file = "/run/secrets/telegram_bot_token"`, `WATCHDOG_TELEGRAM_BOT_TOKEN_FILE`).
pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
    let table = read_config_table(file, CONFIG_PATH_VAR, env)?;
    from_table(table, env, system_hostname)
}

/// [`load`] from TOML text instead of a file.
pub fn load_str(text: &str, env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
    let table = ConfigReader::parse_toml("config file", text)?;
    from_table(table, env, system_hostname)
}

fn from_table(
    table: toml::Table,
    env: &dyn EnvSource,
    default_hostname: fn() -> String,
) -> Result<Config, ConfigErrors> {
    let mut r = ConfigReader::new(ENV_PREFIX, table, env, ENV_ALIASES);
    r.ignore_env(CONFIG_PATH_VAR);
    let mut c = Config::with_hostname(String::new());

    read_top(&mut r, &mut c);
    c.listen_token = crate::status_page::access::read_token(&mut r, c.listen);
    if c.hostname.is_empty() {
        c.hostname = default_hostname();
    }
    read_log(&mut r, &mut c.log);
    read_docker(&mut r, &mut c.docker);
    read_scope(&mut r, &mut c.scope);
    read_thresholds(&mut r, &mut c.thresholds);
    read_restart_loop(&mut r, &mut c.restart_loop);
    read_alerts(&mut r, &mut c.alerts);
    read_host(&mut r, &mut c.host);
    c.dependencies = read_dependencies(&mut r);
    c.app = read_app(&mut r);
    read_notify(&mut r, &mut c.notify);
    let redis = read_redis(&mut r);
    // Errors that reading [signing] itself reported already name its keys: a missing key is
    // only worth reporting when the section said nothing at all.
    let errors_before_signing = r.errors().len();
    let signing = read_signing(&mut r);
    let signing_reported = r.errors().len() > errors_before_signing;
    if let Some(redis) = &redis
        && signing.is_none()
        && !signing_reported
    {
        let key = r.key_for("signing.key_file", redis.origin.is_env());
        r.error(
            key,
            format!(
                "required when Redis is configured ({} is set): a watchdog with Redis sends \
                 signed remediation requests (set WATCHDOG_SIGNING_KEY_FILE or signing.key_file)",
                redis.key()
            ),
        );
    }
    c.redis = redis.map(|f| f.value);
    c.signing = signing;

    let errors = r.finish();
    errors.into_result(c)
}

fn read_top(r: &mut ConfigReader<'_>, c: &mut Config) {
    if let Some(v) = r.bool("enabled") {
        c.enabled = v.value;
    }
    if let Some(v) = r.get_checked("hostname", convert::string, |s| non_empty(s)) {
        c.hostname = v.value.trim().to_string();
    }
    if let Some(v) = r.get_checked("deployment", convert::string, simple_name) {
        c.deployment = v.value;
    }
    if let Some(v) = r.get_checked("interval", convert::duration, positive) {
        c.interval = v.value;
    }
    if let Some(v) = r.get_checked("data_dir", convert::string, |s| non_empty(s)) {
        c.data_dir = Some(std::path::PathBuf::from(v.value.trim()));
    }
    if let Some(v) = r.string("listen") {
        let text = v.value.trim();
        if text.is_empty() || matches!(text.to_ascii_lowercase().as_str(), "off" | "none") {
            c.listen = None;
        } else {
            match text.parse::<SocketAddr>() {
                Ok(addr) => c.listen = Some(addr),
                Err(_) => r.error(
                    v.key().to_string(),
                    format!("{text:?} is not a socket address (e.g. 127.0.0.1:9750), or \"off\""),
                ),
            }
        }
    }
}

fn read_log(r: &mut ConfigReader<'_>, log: &mut LogConfig) {
    if let Some(v) = r.string("log.format") {
        match v.value.trim().to_ascii_lowercase().as_str() {
            "text" => log.format = LogFormat::Text,
            "json" => log.format = LogFormat::Json,
            other => r.error(
                v.key().to_string(),
                format!("{other:?}: expected \"text\" or \"json\""),
            ),
        }
    }
    if let Some(v) = r.get_checked("log.level", convert::string, |s| non_empty(s)) {
        log.level = v.value.trim().to_string();
    }
}

fn read_docker(r: &mut ConfigReader<'_>, docker: &mut DockerConfig) {
    if let Some(v) = r.get_checked("docker.host", convert::string, |s| docker_host(s)) {
        docker.host = v.value;
    }
    if let Some(v) = r.get_checked("docker.timeout", convert::duration, positive) {
        docker.timeout = v.value;
    }
    if let Some(v) = r.get_checked("docker.stats_concurrency", convert::usize, at_least_one) {
        docker.stats_concurrency = v.value;
    }
    if let Some(v) = r.duration("docker.unreachable_after") {
        docker.unreachable_after = v.value;
    }
}

fn read_scope(r: &mut ConfigReader<'_>, scope: &mut ScopeConfig) {
    if let Some(v) = r.get_checked("scope.label", convert::string, |s| non_empty(s)) {
        scope.label = Some(v.value.trim().to_string());
    }
    if let Some(v) = r.string_list("scope.projects") {
        scope.projects = v.value;
    }
    let expected = r.get_checked("scope.expected", convert::string_list, |items| {
        for item in items {
            match item.split_once('/') {
                Some((p, s)) if !p.is_empty() && !s.is_empty() && !s.contains('/') => {}
                _ => return Err(format!("{item:?}: expected \"project/service\"")),
            }
        }
        Ok(())
    });
    if let Some(v) = expected {
        scope.expected = v.value;
    }
}

fn read_thresholds(r: &mut ConfigReader<'_>, t: &mut Thresholds) {
    for (key, slot) in [
        ("thresholds.cpu_percent", &mut t.cpu_percent),
        ("thresholds.memory_percent", &mut t.memory_percent),
        ("thresholds.host_memory_percent", &mut t.host_memory_percent),
        ("thresholds.disk_percent", &mut t.disk_percent),
    ] {
        if let Some(v) = r.get_checked(key, convert::f64, percent) {
            *slot = v.value;
        }
    }
}

fn read_restart_loop(r: &mut ConfigReader<'_>, rl: &mut RestartLoopConfig) {
    if let Some(v) = r.get_checked("restart_loop.restarts", convert::u32, at_least_one) {
        rl.restarts = v.value;
    }
    if let Some(v) = r.get_checked("restart_loop.window", convert::duration, positive) {
        rl.window = v.value;
    }
}

fn read_alerts(r: &mut ConfigReader<'_>, alerts: &mut AlertsConfig) {
    for key in r.table_keys("alerts") {
        if key != "disabled" && SignalKind::parse(&key).is_none() {
            let known: Vec<&str> = SignalKind::ALL.iter().map(|k| k.as_str()).collect();
            r.error(
                format!("alerts.{key}"),
                format!("unknown signal kind; known kinds: {}", known.join(", ")),
            );
            r.mark_handled(&format!("alerts.{key}"));
        }
    }
    if let Some(v) = r.string_list("alerts.disabled") {
        for name in &v.value {
            match SignalKind::parse(name.trim()) {
                Some(kind) if !alerts.disabled.contains(&kind) => alerts.disabled.push(kind),
                Some(_) => {}
                None => r.error(v.key().to_string(), format!("unknown signal kind {name:?}")),
            }
        }
    }
    for kind in SignalKind::ALL {
        let base = format!("alerts.{}", kind.as_str());
        let for_ = r.duration(&format!("{base}.for")).map(|f| f.value);
        let repeat = r.get_checked(&format!("{base}.repeat"), convert::duration, positive);
        let repeat_max = r.get_checked(&format!("{base}.repeat_max"), convert::duration, positive);
        let keep_firing_for = r
            .duration(&format!("{base}.keep_firing_for"))
            .map(|f| f.value);
        if let (Some(rep), Some(max)) = (&repeat, &repeat_max)
            && max.value < rep.value
        {
            r.error(
                max.key().to_string(),
                format!(
                    "must not be less than {} ({})",
                    rep.key(),
                    format_duration(rep.value)
                ),
            );
        }
        let o = TimingOverride {
            for_,
            repeat: repeat.map(|f| f.value),
            repeat_max: repeat_max.map(|f| f.value),
            keep_firing_for,
        };
        if o != TimingOverride::default() {
            alerts.overrides.insert(kind, o);
        }
    }
}

/// The pure tracker's settings from the config (defaults where a section is absent).
impl EvalSettings {
    pub fn from_config(config: &Config) -> EvalSettings {
        let defaults = EvalSettings::default();
        EvalSettings {
            cpu_percent: config.thresholds.cpu_percent,
            memory_percent: config.thresholds.memory_percent,
            host_memory_percent: config.thresholds.host_memory_percent,
            disk_percent: config.thresholds.disk_percent,
            restart_loop_restarts: config.restart_loop.restarts,
            restart_loop_window: config.restart_loop.window,
            docker_unreachable_after: config.docker.unreachable_after,
            redis_unreachable_after: config
                .redis
                .as_ref()
                .map_or(defaults.redis_unreachable_after, |r| r.unreachable_after),
            app_down_after: config
                .app
                .as_ref()
                .map_or(defaults.app_down_after, |a| a.down_after),
            app_rules: config
                .app
                .as_ref()
                .map(|a| a.rules.clone())
                .unwrap_or_default(),
            expected_services: config.scope.expected.clone(),
            scope_label: config.scope.label.clone(),
            scope_projects: config.scope.projects.clone(),
            ..defaults
        }
    }
}

impl From<&Config> for EvalSettings {
    fn from(config: &Config) -> Self {
        EvalSettings::from_config(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use vigil_shared::config::MapEnv;

    fn load_with(toml_text: &str, env: &MapEnv) -> Result<Config, ConfigErrors> {
        let table = ConfigReader::parse_toml("test", toml_text)?;
        from_table(table, env, || "testhost".to_string())
    }

    fn errors(toml_text: &str, env: &MapEnv) -> ConfigErrors {
        match load_with(toml_text, env) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(e) => e,
        }
    }

    fn message_for(errs: &ConfigErrors, key: &str) -> String {
        let found: Vec<String> = errs.for_key(key).map(|e| e.message.clone()).collect();
        assert!(!found.is_empty(), "no error for {key} in:\n{errs}");
        found.join("; ")
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    #[test]
    fn defaults_with_empty_env_and_no_file() {
        let c = load_with("", &MapEnv::new()).unwrap();
        assert_eq!(c, Config::with_hostname("testhost"));
        // The documented defaults, spelled out so a drift in `with_hostname` fails here.
        assert!(c.enabled);
        assert_eq!(c.deployment, "default");
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.listen, Some("127.0.0.1:9750".parse().unwrap()));
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.docker.host, "unix:///var/run/docker.sock");
        assert_eq!(c.docker.timeout, Duration::from_secs(5));
        assert_eq!(c.docker.stats_concurrency, 55);
        assert_eq!(c.docker.unreachable_after, Duration::from_secs(10));
        assert_eq!(c.thresholds.cpu_percent, 85.0);
        assert_eq!(c.thresholds.memory_percent, 80.0);
        assert_eq!(c.thresholds.host_memory_percent, 90.0);
        assert_eq!(c.thresholds.disk_percent, 90.0);
        assert_eq!(c.restart_loop.restarts, 3);
        assert_eq!(c.restart_loop.window, Duration::from_secs(600));
        assert_eq!(c.host.proc_root, PathBuf::from("/proc"));
        assert_eq!(c.host.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(c.host.disk_paths, vec![PathBuf::from("/")]);
        assert_eq!(c.notify.group_window, Duration::from_secs(2));
        assert_eq!(c.notify.queue_capacity, 1024);
        assert_eq!(c.notify.timeout, Duration::from_secs(10));
        assert_eq!(c.notify.max_attempts, 5);
        assert!(c.dependencies.is_empty() && c.app.is_none());
        assert!(c.redis.is_none() && c.signing.is_none());
        assert_eq!(c.sink_names(), vec!["log"]);
        assert!(!c.requests_enabled());
        let summary = c.summary();
        assert!(
            summary.contains("alert-only: no Redis configured, nothing will be requested"),
            "{summary}"
        );
        assert!(summary.contains("unix:///var/run/docker.sock"), "{summary}");
        assert!(summary.contains("15s"), "{summary}");
    }

    #[test]
    fn public_load_without_file_uses_the_machine_hostname() {
        let c = load(None, &MapEnv::new()).unwrap();
        assert_eq!(c.hostname, system_hostname());
        assert!(!c.hostname.is_empty());
    }

    #[test]
    fn env_overrides_file() {
        let toml_text = r#"
            interval = "30s"
            deployment = "from-file"
            [thresholds]
            cpu_percent = 70
            memory_percent = 75.5
            [notify]
            group_window = "5s"
            [log]
            format = "json"
        "#;
        let env = MapEnv::new()
            .with("WATCHDOG_INTERVAL", "1h30m")
            .with("WATCHDOG_THRESHOLDS__CPU_PERCENT", "90")
            .with("WATCHDOG_NOTIFY__GROUP_WINDOW", "1s")
            .with("WATCHDOG_DEPLOYMENT", "prod")
            .with("WATCHDOG_LOG_FORMAT", "text")
            .with("WATCHDOG_DOCKER_HOST", "tcp://127.0.0.1:2375")
            .with("WATCHDOG_DISK_PATHS", "/, /host/var ,")
            .with("WATCHDOG_PROC_ROOT", "/host/proc")
            .with("WATCHDOG_CGROUP_ROOT", "/host/sys/fs/cgroup")
            .with("WATCHDOG_HOSTNAME", "box1")
            .with("WATCHDOG_LISTEN", "0.0.0.0:9000")
            .with("WATCHDOG_LISTEN_TOKEN", "a-token-of-16-or-more");
        let c = load_with(toml_text, &env).unwrap();
        assert_eq!(c.interval, Duration::from_secs(5400));
        assert_eq!(c.thresholds.cpu_percent, 90.0);
        assert_eq!(c.thresholds.memory_percent, 75.5); // file value kept
        assert_eq!(c.notify.group_window, Duration::from_secs(1));
        assert_eq!(c.deployment, "prod");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.docker.host, "tcp://127.0.0.1:2375");
        assert_eq!(
            c.host.disk_paths,
            vec![PathBuf::from("/"), PathBuf::from("/host/var")]
        );
        assert_eq!(c.host.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(c.host.cgroup_root, PathBuf::from("/host/sys/fs/cgroup"));
        assert_eq!(c.hostname, "box1");
        assert_eq!(c.listen, Some("0.0.0.0:9000".parse().unwrap()));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let env = MapEnv::new()
            .with("WATCHDOG_INTERVAL", "")
            .with("WATCHDOG_TELEGRAM_BOT_TOKEN", "")
            .with("WATCHDOG_TELEGRAM_CHAT_ID", " ");
        assert_eq!(
            load_with("", &env).unwrap(),
            Config::with_hostname("testhost")
        );
    }

    #[test]
    fn listen_can_be_switched_off() {
        let env = MapEnv::new().with("WATCHDOG_LISTEN", "off");
        assert_eq!(load_with("", &env).unwrap().listen, None);
    }

    #[test]
    fn enabled_false_is_parsed() {
        for value in ["false", "0", "no", "FALSE"] {
            let env = MapEnv::new().with("WATCHDOG_ENABLED", value);
            let c = load_with("", &env).unwrap();
            assert!(!c.enabled, "{value}");
            assert!(c.summary().contains("DISABLED"), "{}", c.summary());
        }
        let c = load_with("enabled = false", &MapEnv::new()).unwrap();
        assert!(!c.enabled);
        let errs = errors("", &MapEnv::new().with("WATCHDOG_ENABLED", "nope"));
        assert!(errs.has_key("WATCHDOG_ENABLED"), "{errs}");
    }

    #[test]
    fn unknown_toml_key_names_the_dotted_key() {
        let errs = errors("[thresholds]\ncpu_percnt = 50\n", &MapEnv::new());
        assert_eq!(message_for(&errs, "thresholds.cpu_percnt"), "unknown key");
        assert_eq!(errs.len(), 1, "{errs}");
    }

    #[test]
    fn unknown_watchdog_variable_is_named() {
        let env = MapEnv::new()
            .with("WATCHDOG_FOO", "1")
            .with("WATCHDOG_CONFIG", "") // the file variable is not a setting
            .with("OTHER_VAR", "x");
        let errs = errors("", &env);
        assert_eq!(message_for(&errs, "WATCHDOG_FOO"), "unknown variable");
        assert_eq!(errs.len(), 1, "{errs}");
    }

    #[test]
    fn bad_url_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", "123:abc\n");
        let env = MapEnv::new()
            .with("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE", token.as_str())
            .with("WATCHDOG_TELEGRAM_CHAT_ID", "-100123")
            .with("WATCHDOG_TELEGRAM_API_URL", "not a url");
        let errs = errors("", &env);
        let msg = message_for(&errs, "WATCHDOG_TELEGRAM_API_URL");
        assert!(msg.contains("invalid URL"), "{msg}");
        assert_eq!(errs.len(), 1, "{errs}");

        let errs = errors("[app]\nurl = \"ftp://x/metrics\"\n", &MapEnv::new());
        assert!(errs.has_key("app.url"), "{errs}");
    }

    #[test]
    fn missing_secret_file_names_variable_and_path() {
        let env = MapEnv::new()
            .with(
                "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
                "/nonexistent/vigil/token",
            )
            .with("WATCHDOG_TELEGRAM_CHAT_ID", "42");
        let errs = errors("", &env);
        let msg = message_for(&errs, "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE");
        assert!(msg.contains("/nonexistent/vigil/token"), "{msg}");
        assert_eq!(errs.len(), 1, "{errs}");
    }

    #[test]
    fn several_errors_are_reported_together() {
        let toml_text = r#"
            intervall = "15s"
            [docker]
            hots = "unix:///x"
            [thresholds]
            disk_percent = 150
        "#;
        let env = MapEnv::new()
            .with("WATCHDOG_FOO", "1")
            .with("WATCHDOG_INTERVAL", "0s")
            .with("WATCHDOG_DOCKER_HOST", "http://localhost:2375")
            .with("WATCHDOG_LISTEN", "localhost")
            .with("WATCHDOG_THRESHOLDS__CPU_PERCENT", "0");
        let errs = errors(toml_text, &env);
        for key in [
            "intervall",
            "docker.hots",
            "thresholds.disk_percent",
            "WATCHDOG_FOO",
            "WATCHDOG_INTERVAL",
            "WATCHDOG_DOCKER_HOST",
            "WATCHDOG_LISTEN",
            "WATCHDOG_THRESHOLDS__CPU_PERCENT",
        ] {
            assert!(errs.has_key(key), "missing {key} in:\n{errs}");
        }
        assert_eq!(errs.len(), 8, "{errs}");
        // Display: one error per line, each starting with its key.
        let text = errs.to_string();
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("docker.hots: ")),
            "{text}"
        );
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", "123:abc\n");
        let slack = secret_file(&dir, "slack", "https://hooks.example.test/T/B/x\n");
        let hook = secret_file(&dir, "hook", "http://127.0.0.1:9/hook");
        let redis = secret_file(&dir, "redis", "redis://watchdog:pw@127.0.0.1:6379/0\n");
        let key = secret_file(&dir, "wd-2025.pem", "not parsed here\n");
        let env = MapEnv::new()
            .with("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE", token.as_str())
            .with("WATCHDOG_TELEGRAM_CHAT_ID", "@alerts")
            .with("WATCHDOG_TELEGRAM_API_URL", "http://127.0.0.1:8081")
            .with("WATCHDOG_SLACK_WEBHOOK_URL_FILE", slack.as_str())
            .with("WATCHDOG_WEBHOOK_URL_FILE", hook.as_str())
            .with("WATCHDOG_REDIS_URL_FILE", redis.as_str())
            .with("WATCHDOG_SIGNING_KEY_FILE", key.as_str());
        let c = load_with("", &env).unwrap();
        let tg = c.notify.telegram.as_ref().unwrap();
        assert_eq!(tg.bot_token.expose(), "123:abc");
        assert_eq!(tg.chat_id, "@alerts");
        assert_eq!(
            tg.api_url.as_ref().unwrap().as_str(),
            "http://127.0.0.1:8081/"
        );
        assert_eq!(
            c.notify.slack.as_ref().unwrap().webhook_url.expose(),
            "https://hooks.example.test/T/B/x"
        );
        assert_eq!(
            c.notify.webhook.as_ref().unwrap().url.expose(),
            "http://127.0.0.1:9/hook"
        );
        let r = c.redis.as_ref().unwrap();
        assert_eq!(r.url.expose(), "redis://watchdog:pw@127.0.0.1:6379/0");
        assert_eq!(r.prefix, "vigil:");
        assert_eq!(r.unreachable_after, Duration::from_secs(10));
        let s = c.signing.as_ref().unwrap();
        assert_eq!(s.key_id, "wd-2025");
        assert_eq!(c.sink_names(), vec!["log", "telegram", "slack", "webhook"]);
        assert!(c.requests_enabled());

        // Neither Debug nor the summary shows a secret.
        let shown = format!("{c:?}\n{}", c.summary());
        for secret in ["123:abc", "hooks.example.test", "127.0.0.1:9/hook", "pw@"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(
            c.summary().contains("remediation requests via Redis"),
            "{}",
            c.summary()
        );
        assert!(
            c.summary().contains("telegram, slack, webhook"),
            "{}",
            c.summary()
        );
    }

    #[test]
    fn secrets_from_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", "777:xyz\n");
        let toml_text = format!(
            "[notify.telegram]\nbot_token_file = {token:?}\nchat_id = \"5\"\n\
             [notify.slack]\nwebhook_url = \"https://hooks.example.test/a\"\n"
        );
        let c = load_with(&toml_text, &MapEnv::new()).unwrap();
        assert_eq!(c.notify.telegram.unwrap().bot_token.expose(), "777:xyz");
        assert!(c.notify.slack.is_some());
    }

    #[test]
    fn value_and_file_forms_together_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", "1:a\n");
        let env = MapEnv::new()
            .with("WATCHDOG_TELEGRAM_BOT_TOKEN", "1:inline")
            .with("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE", token.as_str())
            .with("WATCHDOG_TELEGRAM_CHAT_ID", "5");
        let errs = errors("", &env);
        let msg = message_for(&errs, "WATCHDOG_TELEGRAM_BOT_TOKEN");
        assert!(msg.contains("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE"), "{msg}");
        assert!(
            !errs.to_string().contains("1:inline"),
            "secret leaked: {errs}"
        );

        let toml_text = "[redis]\nurl = \"redis://x\"\nurl_file = \"/run/secrets/r\"\n";
        let errs = errors(toml_text, &MapEnv::new());
        assert!(errs.has_key("redis.url"), "{errs}");
    }

    #[test]
    fn telegram_needs_token_and_chat_id() {
        let errs = errors(
            "",
            &MapEnv::new().with("WATCHDOG_TELEGRAM_BOT_TOKEN", "1:a"),
        );
        assert!(errs.has_key("WATCHDOG_TELEGRAM_CHAT_ID"), "{errs}");
        assert_eq!(errs.len(), 1, "{errs}");

        let errs = errors("", &MapEnv::new().with("WATCHDOG_TELEGRAM_CHAT_ID", "5"));
        assert!(errs.has_key("WATCHDOG_TELEGRAM_BOT_TOKEN_FILE"), "{errs}");
        assert_eq!(errs.len(), 1, "{errs}");

        let errs = errors("[notify.telegram]\nchat_id = \"5\"\n", &MapEnv::new());
        assert!(errs.has_key("notify.telegram.bot_token_file"), "{errs}");
    }

    #[test]
    fn redis_without_signing_key_is_an_error() {
        let env = MapEnv::new().with("WATCHDOG_REDIS_URL", "redis://127.0.0.1:6379");
        let errs = errors("", &env);
        let msg = message_for(&errs, "WATCHDOG_SIGNING_KEY_FILE");
        assert!(msg.contains("WATCHDOG_REDIS_URL"), "{msg}");
        assert_eq!(errs.len(), 1, "{errs}");

        let errs = errors("", &MapEnv::new().with("WATCHDOG_REDIS_URL", "http://x"));
        assert!(errs.has_key("WATCHDOG_REDIS_URL"), "{errs}");
    }

    #[test]
    fn missing_signing_key_file_is_reported_once() {
        let env = MapEnv::new()
            .with("WATCHDOG_REDIS_URL", "redis://127.0.0.1:6379")
            .with("WATCHDOG_SIGNING_KEY_FILE", "/nonexistent/key.pem");
        let errs = errors("", &env);
        let msg = message_for(&errs, "WATCHDOG_SIGNING_KEY_FILE");
        assert!(msg.contains("/nonexistent/key.pem"), "{msg}");
        assert_eq!(errs.len(), 1, "{errs}");
    }

    #[test]
    fn alerts_overrides_and_disabled_kinds() {
        let toml_text = r#"
            [alerts]
            disabled = ["disk_high", "app_down"]
            [alerts.container_cpu_high]
            for = "45s"
            repeat = "30m"
            repeat_max = "4h"
        "#;
        let env = MapEnv::new().with(
            "WATCHDOG_ALERTS__CONTAINER_OOM_KILLED__KEEP_FIRING_FOR",
            "0",
        );
        let c = load_with(toml_text, &env).unwrap();
        assert_eq!(
            c.alerts.disabled,
            vec![SignalKind::DiskHigh, SignalKind::AppDown]
        );
        let cpu = &c.alerts.overrides[&SignalKind::ContainerCpuHigh];
        assert_eq!(cpu.for_, Some(Duration::from_secs(45)));
        assert_eq!(cpu.repeat, Some(Duration::from_secs(1800)));
        assert_eq!(cpu.repeat_max, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(cpu.keep_firing_for, None);
        let oom = &c.alerts.overrides[&SignalKind::ContainerOomKilled];
        assert_eq!(oom.keep_firing_for, Some(Duration::ZERO));
        assert_eq!(c.alerts.overrides.len(), 2);

        let bad = r#"
            [alerts]
            disabled = ["disk_hi"]
            [alerts.cpu_high]
            for = "1s"
            [alerts.app_down]
            fore = "1s"
            repeat = "1h"
            repeat_max = "1m"
        "#;
        let errs = errors(bad, &MapEnv::new());
        assert!(errs.has_key("alerts.disabled"), "{errs}");
        assert!(errs.has_key("alerts.cpu_high"), "{errs}");
        assert!(errs.has_key("alerts.app_down.fore"), "{errs}");
        assert!(errs.has_key("alerts.app_down.repeat_max"), "{errs}");
        assert_eq!(errs.len(), 4, "{errs}");
    }

    #[test]
    fn dependencies_app_and_scope() {
        let toml_text = r#"
            [scope]
            label = "app.watch"
            projects = ["shop"]
            expected = ["shop/web", "shop/db"]

            [[dependencies]]
            name = "api"
            url = "https://api.example.test/health"

            [[dependencies]]
            name = "db"
            url = "tcp://db:5432"
            timeout = "1s"

            [app]
            url = "http://web:8080/metrics"
            down_after = 2
            [[app.rules]]
            metric = "queue_depth"
            above = 1000
        "#;
        let c = load_with(
            toml_text,
            &MapEnv::new().with("WATCHDOG_APP__TIMEOUT", "2s"),
        )
        .unwrap();
        assert_eq!(c.scope.label.as_deref(), Some("app.watch"));
        assert_eq!(c.scope.expected, vec!["shop/web", "shop/db"]);
        assert_eq!(c.dependencies.len(), 2);
        assert!(
            matches!(&c.dependencies[0].target, DependencyTarget::Http(u) if u.path() == "/health")
        );
        assert_eq!(c.dependencies[0].timeout, Duration::from_secs(3));
        assert_eq!(
            c.dependencies[1].target,
            DependencyTarget::Tcp("db:5432".into())
        );
        assert_eq!(c.dependencies[1].timeout, Duration::from_secs(1));
        let app = c.app.as_ref().unwrap();
        assert_eq!(app.timeout, Duration::from_secs(2));
        assert_eq!(app.down_after, 2);
        assert_eq!(
            app.rules,
            vec![AppRule {
                metric: "queue_depth".into(),
                above: Some(1000.0),
                below: None
            }]
        );

        let bad = r#"
            [scope]
            expected = ["web"]
            [[dependencies]]
            name = "db"
            url = "postgres://db:5432"
            [[dependencies]]
            url = "tcp://db"
            colour = "red"
            [app]
            down_after = 2
        "#;
        let errs = errors(bad, &MapEnv::new());
        for key in [
            "scope.expected",
            "dependencies[0].url",
            "dependencies[1].url",
            "dependencies[1].name",
            "dependencies[1].colour",
            "app.url",
        ] {
            assert!(errs.has_key(key), "missing {key} in:\n{errs}");
        }
        assert_eq!(errs.len(), 6, "{errs}");
    }

    #[test]
    fn config_file_from_path_and_from_watchdog_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog.toml");
        std::fs::write(
            &path,
            "interval = \"20s\"\n[thresholds]\ncpu_percent = 60\n",
        )
        .unwrap();
        let c = load(Some(&path), &MapEnv::new()).unwrap();
        assert_eq!(c.interval, Duration::from_secs(20));

        let env = MapEnv::new().with("WATCHDOG_CONFIG", path.display().to_string());
        let c = load(None, &env).unwrap();
        assert_eq!(c.thresholds.cpu_percent, 60.0);

        let env = MapEnv::new().with("WATCHDOG_CONFIG", "/nonexistent/watchdog.toml");
        let errs = load(None, &env).unwrap_err();
        let msg = message_for(&errs, "WATCHDOG_CONFIG");
        assert!(msg.contains("/nonexistent/watchdog.toml"), "{msg}");
    }

    #[test]
    fn toml_syntax_error_does_not_quote_the_text() {
        let errs = load_str(
            "[notify.slack]\nwebhook_url = \"https://secret-hook\n",
            &MapEnv::new(),
        )
        .unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains("secret-hook"), "{text}");
    }

    #[test]
    fn wrong_types_name_their_keys() {
        let toml_text = r#"
            interval = 15
            enabled = "yes"
            thresholds = 5
            [docker]
            stats_concurrency = -1
        "#;
        let errs = errors(toml_text, &MapEnv::new());
        for key in [
            "interval",
            "enabled",
            "thresholds",
            "docker.stats_concurrency",
        ] {
            assert!(errs.has_key(key), "missing {key} in:\n{errs}");
        }
        assert_eq!(errs.len(), 4, "{errs}");
    }

    #[test]
    fn data_dir_from_the_environment_or_the_file() {
        let env = MapEnv::new().with("WATCHDOG_DATA_DIR", "/var/lib/vigil-watchdog");
        let c = load_with("", &env).expect("valid");
        assert_eq!(
            c.data_dir.as_deref(),
            Some(Path::new("/var/lib/vigil-watchdog"))
        );
        assert!(c.summary().contains("/var/lib/vigil-watchdog/alerts.json"));
        let c = load_with("data_dir = \"/srv/wd\"\n", &MapEnv::new()).expect("valid");
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/srv/wd")));
        let c = load_with("", &MapEnv::new()).expect("valid");
        assert_eq!(c.data_dir, None);
        assert!(c.summary().contains("in memory only"));
    }

    /// `.env.watchdog.example` documents real variables: each `# WATCHDOG_X=value` line names a
    /// known variable, and the lines that show a default really are the default.
    #[test]
    fn env_example_documents_known_variables_with_their_defaults() {
        let example = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.env.watchdog.example"
        ));
        let defaults = Config::with_hostname("testhost");
        let mut seen = Vec::new();
        for line in example.lines() {
            let Some((name, value)) = line.strip_prefix("# ").and_then(|l| l.split_once('='))
            else {
                continue;
            };
            if !name.starts_with("WATCHDOG_") || name.contains(' ') {
                continue;
            }
            seen.push(name.to_string());
            if name == CONFIG_PATH_VAR {
                continue;
            }
            let env = MapEnv::new().with(name, value);
            match load_with("", &env) {
                Ok(c) if name.starts_with("WATCHDOG_ALERTS__") && !value.is_empty() => {
                    assert_ne!(c, defaults, "{name}");
                }
                Ok(c) => assert_eq!(c, defaults, "{name}={value} is not the default"),
                // Example secret paths do not exist here; the name must still be known.
                Err(errs) => assert!(
                    !errs.iter().any(|e| e.message == "unknown variable"),
                    "{name} is unknown:\n{errs}"
                ),
            }
        }
        for documented in [
            "WATCHDOG_ENABLED",
            "WATCHDOG_DOCKER_HOST",
            "WATCHDOG_INTERVAL",
            "WATCHDOG_TELEGRAM_BOT_TOKEN",
            "WATCHDOG_TELEGRAM_BOT_TOKEN_FILE",
            "WATCHDOG_TELEGRAM_CHAT_ID",
            "WATCHDOG_TELEGRAM_API_URL",
            "WATCHDOG_SLACK_WEBHOOK_URL",
            "WATCHDOG_SLACK_WEBHOOK_URL_FILE",
            "WATCHDOG_WEBHOOK_URL",
            "WATCHDOG_WEBHOOK_URL_FILE",
            "WATCHDOG_REDIS_URL",
            "WATCHDOG_REDIS_URL_FILE",
            "WATCHDOG_SIGNING_KEY_FILE",
            "WATCHDOG_KEY_ID",
            "WATCHDOG_DEPLOYMENT",
            "WATCHDOG_LISTEN",
            "WATCHDOG_HOSTNAME",
            "WATCHDOG_LOG_FORMAT",
            "WATCHDOG_LOG_LEVEL",
            "WATCHDOG_PROC_ROOT",
            "WATCHDOG_CGROUP_ROOT",
            "WATCHDOG_DISK_PATHS",
            "WATCHDOG_CONFIG",
        ] {
            assert!(
                seen.iter().any(|n| n == documented),
                "{documented} not documented"
            );
        }
        for executor in [
            "EXECUTOR_ENABLED",
            "EXECUTOR_DEPLOYMENT",
            "EXECUTOR_DRY_RUN",
            "EXECUTOR_DOCKER_HOST",
            "EXECUTOR_REDIS_URL",
            "EXECUTOR_VERIFY_KEYS",
            "EXECUTOR_AUDIT_FILE",
            "EXECUTOR_LISTEN",
        ] {
            assert!(
                example.contains(&format!("# {executor}=")),
                "{executor} not documented"
            );
        }
        // Copying the file changes nothing: no uncommented assignment.
        assert!(
            example
                .lines()
                .all(|l| l.trim().is_empty() || l.starts_with('#')),
            "every line must be a comment"
        );
    }
}
