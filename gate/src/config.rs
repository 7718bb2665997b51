//! The gate's settings: an optional TOML file (`--config FILE` or `GATE_CONFIG`) plus the
//! `GATE_*` environment, which wins, read with the same reader, key style and error collection as
//! the watchdog's and the executor's (`vigil_shared::config`). The `serve` flags win over both:
//! each counts as its variable (`--listen` as `GATE_LISTEN`).
//!
//! | variable | TOML key | default |
//! |---|---|---|
//! | `GATE_DOCKER_HOST` | `docker.host` | `unix:///var/run/docker.sock` |
//! | `GATE_LISTEN` (comma-separated) | `listen` (array) | `unix:///run/vigil-gate/docker.sock` |
//! | `GATE_SOCKET_MODE` | `socket_mode` (octal, a string) | `"660"` |
//! | `GATE_MAX_BODY` | `max_body` (bytes) | 16 MiB |
//! | `GATE_LOG_FORMAT`, `GATE_LOG_LEVEL` | `log.format`, `log.level` | `text`, `info` |
//!
//! [`load`] collects every problem at once, each naming its key (the TOML key when the value came
//! from the file, the variable when it came from the environment); an unknown key or `GATE_*`
//! variable is an error. The caller exits with 78 (EX_CONFIG).

use crate::{DEFAULT_MAX_BODY, GateConfig, ListenAddr};
use std::collections::BTreeMap;
use std::path::Path;
use vigil_docker::transport::docker_host;
use vigil_shared::config::{ConfigErrors, ConfigReader, EnvSource, convert, read_config_table};

/// Prefix of every gate variable.
pub const ENV_PREFIX: &str = "GATE";
/// The variable naming the TOML file when no path is given on the command line.
pub const CONFIG_PATH_VAR: &str = "GATE_CONFIG";
/// The engine the gate forwards to by default.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Where the gate listens by default (the `gate-socket` volume of the compose stack).
pub const DEFAULT_LISTEN: &str = "unix:///run/vigil-gate/docker.sock";

/// The documented variable of each nested key (`GATE_<SECTION>__<KEY>` works as well).
const ENV_ALIASES: &[(&str, &str)] = &[
    ("docker.host", "GATE_DOCKER_HOST"),
    ("log.format", "GATE_LOG_FORMAT"),
    ("log.level", "GATE_LOG_LEVEL"),
];

/// Everything `vigil-gate serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gate: GateConfig,
    /// `GATE_LOG_FORMAT=json`.
    pub log_json: bool,
    /// `GATE_LOG_LEVEL`: a tracing filter.
    pub log_level: String,
}

impl Settings {
    /// The effective values, one per line, for `check-config`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.gate.listen.iter().map(ToString::to_string).collect();
        format!(
            "docker: {}\nlisten: {}\nsocket mode: {:o}\nmax body: {} bytes\nlog: {} {}",
            self.gate.docker_host,
            listen.join(", "),
            self.gate.socket_mode,
            self.gate.max_body,
            if self.log_json { "json" } else { "text" },
            self.log_level
        )
    }
}

/// Loads the file (`file`, else `GATE_CONFIG`, else none) and the environment overlay.
pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Settings, ConfigErrors> {
    from_table(read_config_table(file, CONFIG_PATH_VAR, env)?, env)
}

/// [`load`] from TOML text (tests).
pub fn load_str(text: &str, env: &dyn EnvSource) -> Result<Settings, ConfigErrors> {
    from_table(ConfigReader::parse_toml("config file", text)?, env)
}

fn from_table(table: toml::Table, env: &dyn EnvSource) -> Result<Settings, ConfigErrors> {
    let mut r = ConfigReader::new(ENV_PREFIX, table, env, ENV_ALIASES);
    r.ignore_env(CONFIG_PATH_VAR);

    let docker_host = r
        .get_checked("docker.host", convert::string, |s| docker_host(s))
        .map_or_else(|| DEFAULT_DOCKER_HOST.to_string(), |f| f.value);
    let listen = match r.get_checked("listen", convert::string_list, |l: &Vec<String>| {
        if l.iter().all(|s| s.trim().is_empty()) {
            Err("must name at least one address".to_string())
        } else {
            Ok(())
        }
    }) {
        None => vec![DEFAULT_LISTEN.to_string()],
        Some(f) => {
            let key = f.key().to_string();
            for bad in f
                .value
                .iter()
                .filter_map(|s| ListenAddr::parse(s.trim()).err())
            {
                r.error(key.clone(), bad.to_string());
            }
            f.value
        }
    };
    let socket_mode = r
        .get_checked("socket_mode", convert::string, |s| {
            parse_mode(s)
                .map(drop)
                .ok_or_else(|| format!("{s:?}: expected permission bits in octal, like \"660\""))
        })
        .map_or(0o660, |f| parse_mode(&f.value).unwrap_or(0o660));
    let max_body = r
        .get_checked("max_body", convert::u64, |n| {
            if *n >= 1024 {
                Ok(())
            } else {
                Err("must be at least 1024 (bytes)".into())
            }
        })
        .map_or(DEFAULT_MAX_BODY, |f| {
            usize::try_from(f.value).unwrap_or(usize::MAX)
        });
    let log_json = match r.string("log.format") {
        None => false,
        Some(f) => match f.value.trim() {
            "text" => false,
            "json" => true,
            other => {
                r.error(
                    f.key().to_string(),
                    format!("{other:?}: expected \"text\" or \"json\""),
                );
                false
            }
        },
    };
    let log_level = r
        .string("log.level")
        .map_or_else(|| "info".to_string(), |f| f.value);

    let errors = r.finish();
    // Only reached without errors for these: each address parsed above.
    let listen = listen
        .iter()
        .filter_map(|s| ListenAddr::parse(s.trim()).ok())
        .collect();
    let mut gate = GateConfig::new(&docker_host, listen);
    gate.socket_mode = socket_mode;
    gate.max_body = max_body;
    errors.into_result(Settings {
        gate,
        log_json,
        log_level,
    })
}

/// `660` or `0660`: at most four octal digits, at most 0o777.
fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777)
}

/// The environment with the command line's flags on top: a flag counts as its variable.
pub struct WithFlags<'a> {
    flags: BTreeMap<String, String>,
    env: &'a dyn EnvSource,
}

impl<'a> WithFlags<'a> {
    pub fn new(env: &'a dyn EnvSource) -> WithFlags<'a> {
        WithFlags {
            flags: BTreeMap::new(),
            env,
        }
    }

    /// Sets `name` (a `GATE_*` variable) when the flag was given.
    pub fn flag(mut self, name: &str, value: Option<String>) -> WithFlags<'a> {
        if let Some(value) = value {
            self.flags.insert(name.to_string(), value);
        }
        self
    }
}

impl EnvSource for WithFlags<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.flags.get(name).cloned().or_else(|| self.env.var(name))
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars: BTreeMap<String, String> =
            self.env.vars_with_prefix(prefix).into_iter().collect();
        for (name, value) in &self.flags {
            if name.starts_with(prefix) {
                vars.insert(name.clone(), value.clone());
            }
        }
        vars.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::config::MapEnv;

    fn messages(errors: &ConfigErrors) -> String {
        errors.to_string()
    }

    #[test]
    fn nothing_given_is_the_documented_defaults() {
        let s = load_str("", &MapEnv::new()).expect("valid");
        assert_eq!(s.gate.docker_host, DEFAULT_DOCKER_HOST);
        assert_eq!(
            s.gate.listen,
            vec![ListenAddr::parse(DEFAULT_LISTEN).expect("default")]
        );
        assert_eq!(s.gate.socket_mode, 0o660);
        assert_eq!(s.gate.max_body, DEFAULT_MAX_BODY);
        assert!(!s.log_json);
        assert_eq!(s.log_level, "info");
    }

    #[test]
    fn the_file_nests_keys_and_the_documented_variables_win() {
        let file = r#"
            listen = ["unix:///tmp/g.sock", "tcp://127.0.0.1:2376"]
            socket_mode = "0640"
            max_body = 65536
            [docker]
            host = "tcp://engine:2375"
            [log]
            format = "json"
            level = "debug"
        "#;
        let s = load_str(file, &MapEnv::new()).expect("valid");
        assert_eq!(s.gate.docker_host, "tcp://engine:2375");
        assert_eq!(s.gate.listen.len(), 2);
        assert_eq!(s.gate.socket_mode, 0o640);
        assert_eq!(s.gate.max_body, 65536);
        assert!(s.log_json);
        assert_eq!(s.log_level, "debug");

        let env = MapEnv::new()
            .with("GATE_DOCKER_HOST", "unix:///var/run/other.sock")
            .with("GATE_LISTEN", "unix:///a.sock, unix:///b.sock")
            .with("GATE_SOCKET_MODE", "600")
            .with("GATE_MAX_BODY", "2048")
            .with("GATE_LOG_FORMAT", "text")
            .with("GATE_LOG_LEVEL", "warn");
        let s = load_str(file, &env).expect("valid");
        assert_eq!(s.gate.docker_host, "unix:///var/run/other.sock");
        assert_eq!(
            s.gate.listen,
            vec![
                ListenAddr::parse("unix:///a.sock").expect("a"),
                ListenAddr::parse("unix:///b.sock").expect("b")
            ]
        );
        assert_eq!(s.gate.socket_mode, 0o600);
        assert_eq!(s.gate.max_body, 2048);
        assert!(!s.log_json);
        assert_eq!(s.log_level, "warn");
    }

    #[test]
    fn the_generic_nested_variable_works_too() {
        let env = MapEnv::new().with("GATE_DOCKER__HOST", "tcp://gate-engine:2375");
        let s = load_str("", &env).expect("valid");
        assert_eq!(s.gate.docker_host, "tcp://gate-engine:2375");
    }

    #[test]
    fn every_error_is_reported_at_once_naming_its_key() {
        let file = r#"
            listen = []
            socket_mode = "999"
            max_body = 10
            colour = "blue"
            [docker]
            host = "http://localhost:2375"
            [log]
            format = "xml"
        "#;
        let errors = load_str(file, &MapEnv::new()).expect_err("invalid");
        let text = messages(&errors);
        for key in [
            "listen",
            "socket_mode",
            "max_body",
            "colour",
            "docker.host",
            "log.format",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "no error for {key} in:\n{text}"
            );
        }
        assert_eq!(errors.len(), 6, "{text}");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let env = MapEnv::new()
            .with("GATE_LISTEN", "unix://relative.sock")
            .with("GATE_SOCKET_MODE", "rw-rw----")
            .with("GATE_MAX_BODY", "lots")
            .with("GATE_UNKNOWN", "1");
        let text = messages(&load_str("", &env).expect_err("invalid"));
        for name in [
            "GATE_LISTEN",
            "GATE_SOCKET_MODE",
            "GATE_MAX_BODY",
            "GATE_UNKNOWN",
        ] {
            assert!(text.contains(name), "no error for {name} in:\n{text}");
        }
    }

    #[test]
    fn flags_win_over_the_environment_and_count_as_their_variable() {
        let env = MapEnv::new()
            .with("GATE_LISTEN", "unix:///from-env.sock")
            .with("GATE_LOG_LEVEL", "debug");
        let with = WithFlags::new(&env)
            .flag("GATE_LISTEN", Some("unix:///from-flag.sock".into()))
            .flag("GATE_DOCKER_HOST", None);
        let s = load_str("", &with).expect("valid");
        assert_eq!(
            s.gate.listen,
            vec![ListenAddr::parse("unix:///from-flag.sock").expect("flag")]
        );
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.gate.docker_host, DEFAULT_DOCKER_HOST);

        let bad = WithFlags::new(&env).flag("GATE_SOCKET_MODE", Some("8".into()));
        let text = messages(&load_str("", &bad).expect_err("invalid"));
        assert!(text.contains("GATE_SOCKET_MODE"), "{text}");
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_mode("660"), Some(0o660));
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("777"), Some(0o777));
        for bad in ["", "1777", "8", "66o", "00660", "-1"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }
}
