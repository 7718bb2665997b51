//! Where environment variables come from, and the variable name of a dotted key.

use std::collections::BTreeMap;

/// Where environment variables come from. Config code reads the environment only through this,
/// so tests use [`MapEnv`] and never touch the process environment.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `prefix`, sorted by name.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The real process environment. Variables that are not valid UTF-8 are treated as unset by
/// `var` and skipped by `vars_with_prefix`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        vars.sort();
        vars
    }
}

/// An environment held in a map, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl MapEnv {
    pub fn new() -> MapEnv {
        MapEnv::default()
    }

    /// Builder-style set, for terse tests.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> MapEnv {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> MapEnv {
        MapEnv(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl EnvSource for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The environment variable name for a dotted key under `prefix`:
/// `("WATCHDOG", "notify.group_window")` gives `WATCHDOG_NOTIFY__GROUP_WINDOW`.
pub fn env_name(prefix: &str, dotted: &str) -> String {
    format!(
        "{prefix}_{}",
        dotted.replace('.', "__").to_ascii_uppercase()
    )
}
