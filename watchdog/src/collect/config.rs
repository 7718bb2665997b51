//! The sources' configuration: `[host]`, `[[dependencies]]` and `[app]`, their schema, defaults
//! and validation. [`crate::config`] composes them.

use crate::config::check::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_shared::config::{ConfigReader, convert};

/// Where the host's cgroup hierarchy is mounted unless configured (`host.cgroup_root`).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Where `/proc` is (default "/proc"; "/host/proc" in the container).
    pub proc_root: PathBuf,
    /// Where the host's cgroup hierarchy is (default "/sys/fs/cgroup"; "/host/sys/fs/cgroup" in
    /// the container): containers' CPU and memory are read there, through the engine when not.
    pub cgroup_root: PathBuf,
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

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            disk_paths: vec![PathBuf::from("/")],
        }
    }
}

pub(crate) fn absolute_path(s: &String) -> Result<(), String> {
    if Path::new(s.trim()).is_absolute() {
        Ok(())
    } else {
        Err(format!("{s:?} must be an absolute path"))
    }
}

pub(crate) fn read_host(r: &mut ConfigReader<'_>, host: &mut HostConfig) {
    if let Some(v) = r.get_checked("host.proc_root", convert::string, absolute_path) {
        host.proc_root = PathBuf::from(v.value.trim());
    }
    if let Some(v) = r.get_checked("host.cgroup_root", convert::string, absolute_path) {
        host.cgroup_root = PathBuf::from(v.value.trim());
    }
    let paths = r.get_checked("host.disk_paths", convert::string_list, |items| {
        items.iter().try_for_each(absolute_path)
    });
    if let Some(v) = paths {
        host.disk_paths = v.value.iter().map(|p| PathBuf::from(p.trim())).collect();
    }
}

pub(crate) fn dependency_target(s: &String) -> Result<DependencyTarget, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => http_url(s).map(DependencyTarget::Http),
        "tcp" => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) if !host.is_empty() => {
                Ok(DependencyTarget::Tcp(format!("{host}:{port}")))
            }
            _ => Err(format!("{s:?}: expected tcp://host:port")),
        },
        _ => Err(format!(
            "{s:?}: expected http://, https:// or tcp://host:port"
        )),
    }
}

pub(crate) fn read_dependencies(r: &mut ConfigReader<'_>) -> Vec<DependencyConfig> {
    let mut deps: Vec<DependencyConfig> = Vec::new();
    for i in 0..r.array_len("dependencies") {
        let base = format!("dependencies[{i}]");
        let name = r.get_checked(&format!("{base}.name"), convert::string, simple_name);
        let target = r.get(&format!("{base}.url"), |raw| {
            convert::string(raw).and_then(|s| dependency_target(&s))
        });
        let timeout = r
            .get_checked(&format!("{base}.timeout"), convert::duration, positive)
            .map_or(Duration::from_secs(3), |f| f.value);
        let name_unreported = !r.errors().has_key(&format!("{base}.name"));
        let url_unreported = !r.errors().has_key(&format!("{base}.url"));
        match (name, target) {
            (Some(name), Some(target)) => {
                if deps.iter().any(|d| d.name == name.value) {
                    r.error(
                        name.key().to_string(),
                        format!("duplicate dependency name {:?}", name.value),
                    );
                } else {
                    deps.push(DependencyConfig {
                        name: name.value,
                        target: target.value,
                        timeout,
                    });
                }
            }
            (name, target) => {
                if name.is_none() && name_unreported {
                    r.error(format!("{base}.name"), "required");
                }
                if target.is_none() && url_unreported {
                    r.error(format!("{base}.url"), "required");
                }
            }
        }
    }
    deps
}

pub(crate) fn read_app(r: &mut ConfigReader<'_>) -> Option<AppConfig> {
    let present = r.section_present("app");
    let url = r.get("app.url", |raw| {
        convert::string(raw).and_then(|s| http_url(&s))
    });
    let timeout = r.get_checked("app.timeout", convert::duration, positive);
    let down_after = r.get_checked("app.down_after", convert::u32, at_least_one);
    let mut rules = Vec::new();
    for i in 0..r.array_len("app.rules") {
        let base = format!("app.rules[{i}]");
        let metric = r.get_checked(&format!("{base}.metric"), convert::string, |s| non_empty(s));
        let above = r
            .get(&format!("{base}.above"), convert::f64)
            .map(|f| f.value);
        let below = r
            .get(&format!("{base}.below"), convert::f64)
            .map(|f| f.value);
        match metric {
            Some(metric) if above.is_some() || below.is_some() => rules.push(AppRule {
                metric: metric.value.trim().to_string(),
                above,
                below,
            }),
            Some(_) => r.error(base, "needs `above` or `below`"),
            None => {
                let key = format!("{base}.metric");
                if !r.errors().has_key(&key) {
                    r.error(key, "required");
                }
            }
        }
    }
    let url = match url {
        Some(url) => url,
        None => {
            // Already reported under its file key or one of its variable names?
            let bad = r.errors().has_key("app.url")
                || r.env_names("app.url")
                    .iter()
                    .any(|name| r.errors().has_key(name));
            if present && !bad {
                let key = r.key_for("app.url", !r.section_in_file("app"));
                r.error(key, "required when the [app] section is set");
            }
            return None;
        }
    };
    Some(AppConfig {
        url: url.value,
        timeout: timeout.map_or(Duration::from_secs(3), |f| f.value),
        down_after: down_after.map_or(3, |f| f.value),
        rules,
    })
}
