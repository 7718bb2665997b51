//! Executor configuration: the validated result of an optional TOML file plus the `EXECUTOR_*`
//! environment overlay (environment wins, `__` nests, `*_FILE` for secrets).
//!
//! [`load`] collects every problem at once, each naming its key; the caller exits with 78
//! (EX_CONFIG). The verify keys are loaded here too, so a missing or bad key directory is a
//! configuration error, reported by `check-config` as well.

use crate::policy::{PolicySettings, default_protected_names};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_docker::transport::docker_host;
use vigil_protocol::names::DEFAULT_PREFIX;
use vigil_protocol::signing::{VerifyKeys, load_verify_keys};
use vigil_protocol::wire::Action;
use vigil_shared::config::validate::{non_empty, positive, simple_name};
use vigil_shared::config::{
    ConfigErrors, ConfigReader, EnvSource, Secret, convert, format_duration, read_config_table,
};

/// Prefix of every executor variable.
pub const ENV_PREFIX: &str = "EXECUTOR";
/// The variable naming the TOML file when no path is given on the command line.
pub const CONFIG_PATH_VAR: &str = "EXECUTOR_CONFIG";
/// Default `/healthz` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9751";
/// Default audit log.
pub const DEFAULT_AUDIT_FILE: &str = "/var/lib/vigil/audit.jsonl";
/// Default consumer name: fixed, so a re-created container finds its pending entries again.
pub const DEFAULT_CONSUMER: &str = "executor";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the executor runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EXECUTOR_ENABLED` (default true). False: every request is audited as refused.
    pub enabled: bool,
    /// `EXECUTOR_DEPLOYMENT` (default "default"); must equal the watchdog's.
    pub deployment: String,
    /// `EXECUTOR_DRY_RUN` (default false): decide and audit, never act.
    pub dry_run: bool,
    /// `EXECUTOR_DOCKER_HOST` (default `unix:///var/run/docker.sock`).
    pub docker_host: String,
    /// `EXECUTOR_DOCKER_TIMEOUT`: per engine call (default 30 s; a restart waits for the stop).
    pub docker_timeout: Duration,
    /// `EXECUTOR_STOP_TIMEOUT`: overrides how long the engine waits before SIGKILL on
    /// restart/stop (the `t` parameter). Unset (the default): each container's own stop timeout
    /// (compose `stop_grace_period`), or the engine's 10 s when it has none.
    pub stop_timeout: Option<Duration>,
    /// `EXECUTOR_REDIS_URL[_FILE]` (required).
    pub redis_url: Secret,
    /// `EXECUTOR_PREFIX`: Redis key prefix (default `vigil:`).
    pub prefix: String,
    /// `EXECUTOR_VERIFY_KEYS`: directory of public keys (required).
    pub verify_keys_dir: PathBuf,
    /// The keys loaded from `verify_keys_dir`.
    pub verify_keys: VerifyKeys,
    /// `EXECUTOR_AUDIT_FILE` (default `/var/lib/vigil/audit.jsonl`).
    pub audit_file: PathBuf,
    /// `EXECUTOR_LISTEN` (default 127.0.0.1:9751); `off` disables.
    pub listen: Option<SocketAddr>,
    /// `EXECUTOR_CONSUMER`: consumer name in the group (default `executor`; fixed, so a
    /// re-created container finds its pending entries again). Give each executor its own.
    pub consumer: String,
    /// `EXECUTOR_LEASE_TTL`: lifetime of the lease on a request being handled, renewed every
    /// third of it while the action runs (default 30 s).
    pub lease_ttl: Duration,
    /// `EXECUTOR_AUDIT_SEGMENT_BYTES`: rotate the audit file at this size (default 64 MiB).
    /// `EXECUTOR_AUDIT_MIN_FREE_BYTES`: act only while this much space is free (default 64 KiB).
    pub audit_limits: crate::journal::LogLimits,
    /// `EXECUTOR_RECLAIM_IDLE`: pending entries idle this long are reclaimed (default 30 s).
    pub reclaim_idle: Duration,
    /// `EXECUTOR_MAX_DELIVERIES`: an entry delivered more often goes to the dead-letter stream
    /// (default 5).
    pub max_deliveries: u64,
    /// `EXECUTOR_CONCURRENCY`: requests acted on at once, each for another container (default
    /// 8; requests for one container always run one after the other).
    pub concurrency: usize,
    /// `EXECUTOR_SHUTDOWN_TIMEOUT`: drain deadline on SIGTERM (default 20 s).
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub policy: PolicySettings,
}

/// The documented variable of each nested key (`EXECUTOR_<SECTION>__<KEY>` works as well).
const ENV_ALIASES: &[(&str, &str)] = &[
    ("docker.host", "EXECUTOR_DOCKER_HOST"),
    ("docker.timeout", "EXECUTOR_DOCKER_TIMEOUT"),
    ("docker.stop_timeout", "EXECUTOR_STOP_TIMEOUT"),
    ("redis.url", "EXECUTOR_REDIS_URL"),
    ("redis.url_file", "EXECUTOR_REDIS_URL_FILE"),
    ("redis.prefix", "EXECUTOR_PREFIX"),
    ("redis.consumer", "EXECUTOR_CONSUMER"),
    ("redis.reclaim_idle", "EXECUTOR_RECLAIM_IDLE"),
    ("redis.max_deliveries", "EXECUTOR_MAX_DELIVERIES"),
    ("redis.lease_ttl", "EXECUTOR_LEASE_TTL"),
    ("verify.keys", "EXECUTOR_VERIFY_KEYS"),
    ("audit.file", "EXECUTOR_AUDIT_FILE"),
    ("audit.segment_bytes", "EXECUTOR_AUDIT_SEGMENT_BYTES"),
    ("audit.min_free_bytes", "EXECUTOR_AUDIT_MIN_FREE_BYTES"),
    ("log.format", "EXECUTOR_LOG_FORMAT"),
    ("log.level", "EXECUTOR_LOG_LEVEL"),
    ("self_id", "EXECUTOR_SELF_ID"),
];

/// Loads the file (`file`, else `EXECUTOR_CONFIG`, else none) and the environment overlay into
/// a [`Config`].
pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
    from_table(read_config_table(file, CONFIG_PATH_VAR, env)?, env)
}

/// [`load`] from TOML text (tests).
pub fn load_str(text: &str, env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
    from_table(ConfigReader::parse_toml("config file", text)?, env)
}

fn from_table(table: toml::Table, env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
    let mut r = ConfigReader::new(ENV_PREFIX, table, env, ENV_ALIASES);
    r.ignore_env(CONFIG_PATH_VAR);

    let enabled = r.bool("enabled").is_none_or(|f| f.value);
    let deployment = r
        .get_checked("deployment", convert::string, simple_name)
        .map_or_else(|| "default".to_string(), |f| f.value);
    let dry_run = r.bool("dry_run").is_some_and(|f| f.value);
    let docker_host = r
        .get_checked("docker.host", convert::string, |s| docker_host(s))
        .map_or_else(|| "unix:///var/run/docker.sock".to_string(), |f| f.value);
    let docker_timeout = r
        .get_checked("docker.timeout", convert::duration, positive)
        .map_or(Duration::from_secs(30), |f| f.value);
    let stop_timeout = r
        .get_checked("docker.stop_timeout", convert::duration, |d| {
            if d.as_secs() > 600 {
                Err("must be at most 10m".into())
            } else {
                Ok(())
            }
        })
        .map(|f| f.value);
    // Whether the Redis URL was given but wrong (then "required" would only add noise).
    let errors_before = r.errors().len();
    let redis_url = r.secret("redis.url", "redis.url_file");
    if let Some(url) = &redis_url
        && let Err(msg) = redis_url_ok(&url.value)
    {
        r.error(url.key().to_string(), msg);
    }
    let redis_url_given_wrong = r.errors().len() > errors_before;
    let prefix = r
        .get_checked("redis.prefix", convert::string, |s| {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                Err("must be non-empty without whitespace".into())
            } else {
                Ok(())
            }
        })
        .map_or_else(|| DEFAULT_PREFIX.to_string(), |f| f.value);
    let keys_dir = r.get("verify.keys", convert::string);
    let audit_file = r
        .get_checked("audit.file", convert::string, |s| non_empty(s))
        .map_or_else(
            || PathBuf::from(DEFAULT_AUDIT_FILE),
            |f| PathBuf::from(f.value),
        );
    let listen = match r.string("listen") {
        None => DEFAULT_LISTEN.parse().ok(),
        Some(f) if f.value.trim().eq_ignore_ascii_case("off") => None,
        Some(f) => match f.value.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.error(
                    f.key().to_string(),
                    format!(
                        "{:?} is not an address like 127.0.0.1:9751 (or \"off\")",
                        f.value
                    ),
                );
                None
            }
        },
    };
    let consumer = r
        .get_checked("redis.consumer", convert::string, simple_name)
        .map_or_else(|| DEFAULT_CONSUMER.to_string(), |f| f.value);
    let lease_ttl = r
        .get_checked("redis.lease_ttl", convert::duration, |d| {
            if *d >= Duration::from_secs(1) {
                Ok(())
            } else {
                Err("must be at least 1s".into())
            }
        })
        .map_or(Duration::from_secs(30), |f| f.value);
    let defaults = crate::journal::LogLimits::default();
    let audit_limits = crate::journal::LogLimits {
        segment_bytes: r
            .get_checked("audit.segment_bytes", convert::u64, |n| {
                if *n >= 4096 {
                    Ok(())
                } else {
                    Err("must be at least 4096".into())
                }
            })
            .map_or(defaults.segment_bytes, |f| f.value),
        min_free_bytes: r
            .get("audit.min_free_bytes", convert::u64)
            .map_or(defaults.min_free_bytes, |f| f.value),
    };
    let reclaim_idle = r
        .get_checked("redis.reclaim_idle", convert::duration, positive)
        .map_or(Duration::from_secs(30), |f| f.value);
    let max_deliveries = r
        .get_checked("redis.max_deliveries", convert::u64, |n| {
            if *n >= 1 {
                Ok(())
            } else {
                Err("must be at least 1".into())
            }
        })
        .map_or(5, |f| f.value);
    let concurrency = r
        .get_checked("concurrency", convert::u64, |n| {
            if (1..=64).contains(n) {
                Ok(())
            } else {
                Err("must be between 1 and 64".into())
            }
        })
        .map_or(crate::lanes::DEFAULT_CONCURRENCY, |f| f.value as usize);
    let shutdown_timeout = r
        .get_checked("shutdown_timeout", convert::duration, positive)
        .map_or(Duration::from_secs(20), |f| f.value);
    let log_format = match r.string("log.format") {
        None => LogFormat::Text,
        Some(f) => match f.value.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                r.error(
                    f.key().to_string(),
                    format!("{other:?}: expected \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        },
    };
    let log_level = r
        .string("log.level")
        .map_or_else(|| "info".to_string(), |f| f.value);
    let self_id = r.get_checked("self_id", convert::string, |s| {
        if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err("expected a container id (at least 12 hex chars)".into())
        }
    });
    let policy = read_policy(&mut r, self_id.map(|f| f.value));

    let redis_url = match redis_url {
        Some(f) => Some(f.value),
        None => {
            if !redis_url_given_wrong {
                r.error(
                    "EXECUTOR_REDIS_URL",
                    "required: set EXECUTOR_REDIS_URL_FILE (preferred) or EXECUTOR_REDIS_URL",
                );
            }
            None
        }
    };
    let (verify_keys_dir, verify_keys) = match keys_dir {
        None => {
            r.error(
                "EXECUTOR_VERIFY_KEYS",
                "required: a directory of public keys (<key_id>.pub or .pem)",
            );
            (PathBuf::new(), VerifyKeys::new())
        }
        Some(f) => {
            let dir = PathBuf::from(f.value.trim());
            match load_verify_keys(&dir) {
                Ok(keys) => (dir, keys),
                Err(e) => {
                    r.error(f.key().to_string(), e.to_string());
                    (dir, VerifyKeys::new())
                }
            }
        }
    };

    let errors = r.finish();
    let Some(redis_url) = redis_url else {
        return Err(errors);
    };
    errors.into_result(Config {
        enabled,
        deployment,
        dry_run,
        docker_host,
        docker_timeout,
        stop_timeout,
        redis_url,
        prefix,
        verify_keys_dir,
        verify_keys,
        audit_file,
        listen,
        consumer,
        lease_ttl,
        audit_limits,
        reclaim_idle,
        max_deliveries,
        concurrency,
        shutdown_timeout,
        log_format,
        log_level,
        policy,
    })
}

fn read_policy(r: &mut ConfigReader<'_>, self_id: Option<String>) -> PolicySettings {
    let d = PolicySettings::default();
    let dur = |r: &mut ConfigReader<'_>, key: &str, default: Duration| {
        r.get_checked(key, convert::duration, positive)
            .map_or(default, |f| f.value)
    };
    let count = |r: &mut ConfigReader<'_>, key: &str, default: u32| {
        r.get_checked(key, convert::u32, |n| {
            if *n >= 1 {
                Ok(())
            } else {
                Err("must be at least 1".into())
            }
        })
        .map_or(default, |f| f.value)
    };
    let max_skew = dur(r, "policy.max_skew", d.max_skew);
    let max_ttl = dur(r, "policy.max_ttl", d.max_ttl);
    let allowed_actions = match r.string_list("policy.allowed_actions") {
        None => d.allowed_actions.clone(),
        Some(f) => {
            let mut actions = Vec::new();
            for name in &f.value {
                match Action::parse(name.trim()) {
                    Some(a) => actions.push(a),
                    None => r.error(
                        f.key().to_string(),
                        format!("unknown action {name:?}: expected restart, start or stop"),
                    ),
                }
            }
            actions
        }
    };
    let budget_per_minute = count(r, "policy.budget_per_minute", d.budget_per_minute);
    let breaker_max_actions = count(r, "policy.breaker_max_actions", d.breaker_max_actions);
    let breaker_window = dur(r, "policy.breaker_window", d.breaker_window);
    let backoff_initial = dur(r, "policy.backoff_initial", d.backoff_initial);
    let backoff_max = dur(r, "policy.backoff_max", d.backoff_max);
    let backoff_reset = dur(r, "policy.backoff_reset", d.backoff_reset);
    if backoff_max < backoff_initial {
        let key = r.key_for("policy.backoff_max", true);
        r.error(key, "must not be shorter than policy.backoff_initial");
    }
    let protected_names = r
        .string_list("policy.protected_names")
        .map_or_else(default_protected_names, |f| f.value);
    PolicySettings {
        max_skew,
        max_ttl,
        allowed_actions,
        budget_per_minute,
        breaker_max_actions,
        breaker_window,
        backoff_initial,
        backoff_max,
        backoff_reset,
        protected_names,
        self_container_id: self_id.or_else(detect_own_container_id),
    }
}

impl Config {
    /// A summary for `check-config` and the start-up log. Contains no secret.
    pub fn summary(&self) -> String {
        let p = &self.policy;
        let mut lines = vec![
            format!(
                "executor: {}{} (deployment {:?})",
                if self.enabled {
                    "enabled"
                } else {
                    "DISABLED by EXECUTOR_ENABLED=false: every request is refused"
                },
                if self.dry_run { ", DRY-RUN" } else { "" },
                self.deployment
            ),
            format!("docker: {}", self.docker_host),
            format!(
                "redis: prefix {:?}, consumer {:?}, reclaim after {}, dead-letter after {} deliveries",
                self.prefix,
                self.consumer,
                format_duration(self.reclaim_idle),
                self.max_deliveries
            ),
            format!(
                "concurrency: {} requests at once (one per container)",
                self.concurrency
            ),
        ];
        let key_ids: Vec<&str> = self.verify_keys.keys().map(String::as_str).collect();
        lines.push(format!(
            "verify keys: {} ({})",
            self.verify_keys_dir.display(),
            key_ids.join(", ")
        ));
        lines.push(format!("audit file: {}", self.audit_file.display()));
        lines.push(format!(
            "listen: {}",
            self.listen.map_or_else(|| "off".into(), |a| a.to_string())
        ));
        let actions: Vec<&str> = p.allowed_actions.iter().map(|a| a.as_str()).collect();
        lines.push(format!(
            "policy: actions [{}], budget {}/min, breaker {} per {}, backoff {}..{} (reset {}), skew {}",
            actions.join(", "),
            p.budget_per_minute,
            p.breaker_max_actions,
            format_duration(p.breaker_window),
            format_duration(p.backoff_initial),
            format_duration(p.backoff_max),
            format_duration(p.backoff_reset),
            format_duration(p.max_skew),
        ));
        lines.push(format!("protected: {}", p.protected_names.join(", ")));
        lines.join("\n")
    }
}

/// This process's container id when it runs in Docker: the engine bind-mounts
/// `/var/lib/docker/containers/<id>/hostname` (and `resolv.conf`, `hosts`), which shows in
/// `/proc/self/mountinfo`.
fn detect_own_container_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&text)
}

/// Finds `/containers/<64 hex>/` in a mountinfo text.
pub fn container_id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id = rest.get(..64)?;
        let after = rest.get(64..65)?;
        (after == "/" && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| id.to_string())
    })
}

fn redis_url_ok(url: &Secret) -> Result<(), String> {
    let parsed = url::Url::parse(url.expose().trim())
        .map_err(|e| format!("not a URL (value not shown): {e}"))?;
    match parsed.scheme() {
        "redis" | "rediss" | "redis+unix" | "unix" => Ok(()),
        other => Err(format!(
            "scheme {other:?} is not redis://, rediss:// or unix:// (value not shown)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::config::MapEnv;

    fn keys_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        vigil_protocol::signing::write_keypair(dir.path(), "wd1").expect("keygen");
        dir
    }

    fn base(dir: &Path) -> MapEnv {
        MapEnv::new()
            .with("EXECUTOR_REDIS_URL", "redis://127.0.0.1:6379/")
            .with("EXECUTOR_VERIFY_KEYS", dir.display().to_string())
    }

    #[test]
    fn defaults_with_the_required_settings() {
        let dir = keys_dir();
        let c = load_str("", &base(dir.path())).expect("valid");
        assert!(c.enabled && !c.dry_run);
        assert_eq!(c.deployment, "default");
        assert_eq!(c.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(c.audit_file, PathBuf::from(DEFAULT_AUDIT_FILE));
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().ok());
        assert_eq!(c.prefix, "vigil:");
        assert_eq!(
            (c.reclaim_idle, c.max_deliveries),
            (Duration::from_secs(30), 5)
        );
        assert_eq!(c.stop_timeout, None);
        assert_eq!(c.verify_keys.keys().collect::<Vec<_>>(), ["wd1"]);
        let p = &c.policy;
        assert_eq!(p.max_skew, Duration::from_secs(30));
        assert_eq!((p.budget_per_minute, p.breaker_max_actions), (5, 3));
        assert_eq!(p.backoff_initial, Duration::from_secs(10));
        assert_eq!(p.backoff_max, Duration::from_secs(300));
        assert_eq!(p.backoff_reset, Duration::from_secs(600));
        assert!(c.summary().contains("executor: enabled"));
        assert!(!c.summary().contains("6379"), "the Redis URL is a secret");
    }

    #[test]
    fn environment_sets_everything() {
        let dir = keys_dir();
        let env = base(dir.path())
            .with("EXECUTOR_ENABLED", "false")
            .with("EXECUTOR_DRY_RUN", "yes")
            .with("EXECUTOR_DEPLOYMENT", "prod")
            .with("EXECUTOR_AUDIT_FILE", "/tmp/a.jsonl")
            .with("EXECUTOR_LISTEN", "off")
            .with("EXECUTOR_CONSUMER", "exec-a")
            .with("EXECUTOR_RECLAIM_IDLE", "2s")
            .with("EXECUTOR_MAX_DELIVERIES", "3")
            .with("EXECUTOR_POLICY__BUDGET_PER_MINUTE", "7")
            .with("EXECUTOR_POLICY__BACKOFF_INITIAL", "10ms")
            .with("EXECUTOR_POLICY__BACKOFF_MAX", "20ms")
            .with("EXECUTOR_POLICY__PROTECTED_NAMES", "a, b")
            .with("EXECUTOR_POLICY__ALLOWED_ACTIONS", "restart")
            .with("EXECUTOR_SELF_ID", "abcdef0123456789")
            .with("EXECUTOR_LEASE_TTL", "45s")
            .with("EXECUTOR_AUDIT_SEGMENT_BYTES", "1048576");
        let c = load_str("", &env).expect("valid");
        assert!(!c.enabled && c.dry_run);
        assert_eq!(c.deployment, "prod");
        assert_eq!(c.listen, None);
        assert_eq!(c.consumer, "exec-a");
        assert_eq!(
            (c.reclaim_idle, c.max_deliveries),
            (Duration::from_secs(2), 3)
        );
        assert_eq!(c.policy.budget_per_minute, 7);
        assert_eq!(c.policy.backoff_initial, Duration::from_millis(10));
        assert_eq!(c.policy.protected_names, ["a", "b"]);
        assert_eq!(c.policy.allowed_actions, [Action::Restart]);
        assert_eq!(
            c.policy.self_container_id.as_deref(),
            Some("abcdef0123456789")
        );
        assert_eq!(c.lease_ttl, Duration::from_secs(45));
        assert_eq!(c.audit_limits.segment_bytes, 1 << 20);
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_key() {
        let env = MapEnv::new()
            .with("EXECUTOR_ENABLED", "maybe")
            .with("EXECUTOR_LISTEN", "nowhere")
            .with("EXECUTOR_POLICY__BUDGET_PER_MINUTE", "0")
            .with("EXECUTOR_POLICY__BACKOFF_INITIAL", "soon")
            .with("EXECUTOR_VERIFY_KEYS", "/nonexistent/keys")
            .with("EXECUTOR_BOGUS", "1");
        let errors = load_str("", &env).expect_err("invalid");
        for key in [
            "EXECUTOR_ENABLED",
            "EXECUTOR_LISTEN",
            "EXECUTOR_POLICY__BUDGET_PER_MINUTE",
            "EXECUTOR_POLICY__BACKOFF_INITIAL",
            "EXECUTOR_VERIFY_KEYS",
            "EXECUTOR_REDIS_URL",
            "EXECUTOR_BOGUS",
        ] {
            assert!(errors.has_key(key), "{key} missing from:\n{errors}");
        }
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_rejected() {
        let dir = keys_dir();
        let text = "deployment = \"staging\"\n[policy]\nbreaker_max_actions = 4\nnope = 1\n";
        let errors = load_str(text, &base(dir.path())).expect_err("unknown key");
        assert!(errors.has_key("policy.nope"), "{errors}");
        let text = "deployment = \"staging\"\n[policy]\nbreaker_max_actions = 4\n";
        let c = load_str(text, &base(dir.path())).expect("valid");
        assert_eq!(
            (c.deployment.as_str(), c.policy.breaker_max_actions),
            ("staging", 4)
        );
    }

    #[test]
    fn nested_sections_and_both_variable_names() {
        let dir = keys_dir();
        let text = format!(
            r#"
            [docker]
            host = "tcp://gate:2375"
            timeout = "5s"
            stop_timeout = "7s"
            [redis]
            url = "redis://127.0.0.1:6379/"
            prefix = "v2:"
            consumer = "exec-b"
            reclaim_idle = "4s"
            max_deliveries = 2
            lease_ttl = "9s"
            [verify]
            keys = "{}"
            [audit]
            file = "/tmp/b.jsonl"
            segment_bytes = 8192
            min_free_bytes = 1
            "#,
            dir.path().display()
        );
        let c = load_str(&text, &MapEnv::new()).expect("valid");
        assert_eq!(c.docker_host, "tcp://gate:2375");
        assert_eq!(c.docker_timeout, Duration::from_secs(5));
        assert_eq!(c.stop_timeout, Some(Duration::from_secs(7)));
        assert_eq!((c.prefix.as_str(), c.consumer.as_str()), ("v2:", "exec-b"));
        assert_eq!(
            (c.reclaim_idle, c.max_deliveries, c.lease_ttl),
            (Duration::from_secs(4), 2, Duration::from_secs(9))
        );
        assert_eq!(c.audit_file, PathBuf::from("/tmp/b.jsonl"));
        assert_eq!(
            (c.audit_limits.segment_bytes, c.audit_limits.min_free_bytes),
            (8192, 1)
        );
        // The documented name and the generic one both set a nested key; the old flat file
        // keys are unknown.
        let env = base(dir.path()).with("EXECUTOR_DOCKER_HOST", "tcp://a:1");
        assert_eq!(load_str("", &env).expect("valid").docker_host, "tcp://a:1");
        let env = base(dir.path()).with("EXECUTOR_DOCKER__HOST", "tcp://b:2");
        assert_eq!(load_str("", &env).expect("valid").docker_host, "tcp://b:2");
        let errors =
            load_str("docker_host = \"tcp://c:3\"\n", &base(dir.path())).expect_err("flat key");
        assert!(errors.has_key("docker_host"), "{errors}");
    }

    #[test]
    fn redis_url_from_file_and_bad_scheme() {
        let dir = keys_dir();
        let secret = dir.path().join("redis_url");
        std::fs::write(&secret, "redis://u:p@redis:6379/\n").expect("write");
        let env = MapEnv::new()
            .with("EXECUTOR_REDIS_URL_FILE", secret.display().to_string())
            .with("EXECUTOR_VERIFY_KEYS", dir.path().display().to_string());
        let c = load_str("", &env).expect("valid");
        assert_eq!(c.redis_url.expose(), "redis://u:p@redis:6379/");
        let env = base(dir.path()).with("EXECUTOR_REDIS_URL", "http://x/");
        let errors = load_str("", &env).expect_err("scheme");
        assert!(errors.has_key("EXECUTOR_REDIS_URL"), "{errors}");
    }

    #[test]
    fn own_container_id_from_mountinfo() {
        let id = "a".repeat(64);
        let text = format!(
            "1 2 0:1 / / rw - overlay overlay rw\n\
             3 4 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&text), Some(id));
        assert_eq!(container_id_from_mountinfo("1 2 0:1 / / rw\n"), None);
    }
}
