//! Configuration helpers shared by both programs: the environment behind a trait, error
//! collection, value parsers, `*_FILE` secrets, and [`ConfigReader`], which reads typed values
//! from a TOML table with an environment overlay and reports unknown keys.
//!
//! Every error names its key: the TOML dotted key (`thresholds.cpu_percent`) when the value came
//! from the file, the variable name (`WATCHDOG_THRESHOLDS__CPU_PERCENT`) when it came from the
//! environment. Errors are collected, never returned early, so an operator sees all of them in
//! one run. Secret values never appear in an error message.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Exit code for a bad configuration (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// A secret value read from a file or the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------------
// Environment

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

// ---------------------------------------------------------------------------------------------
// Errors

/// One configuration problem, naming the key it is about (TOML dotted key or variable name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one load, in the order found. Display prints one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub fn new() -> ConfigErrors {
        ConfigErrors::default()
    }

    /// Adds an error unless the identical one is already recorded.
    pub fn push(&mut self, error: ConfigError) {
        if !self.0.contains(&error) {
            self.0.push(error);
        }
    }

    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.push(ConfigError::new(key, message));
    }

    pub fn extend(&mut self, other: ConfigErrors) {
        for e in other.0 {
            self.push(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// Whether some error names exactly this key.
    pub fn has_key(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }

    /// The errors about exactly this key.
    pub fn for_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ConfigError> + 'a {
        self.0.iter().filter(move |e| e.key == key)
    }

    /// `Ok(value)` when nothing was recorded, else all the errors.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------------------------
// Value parsers

/// Parses a duration such as `15s`, `500ms`, `2m`, `1h`, `1h30m`, `1d` or `0`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`; integers only; parts may be separated by spaces. A bare `0`
/// is zero; any other bare number is rejected, because a missing unit is usually a mistake.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let bad = || format!("invalid duration {input:?}: expected e.g. \"15s\", \"500ms\", \"1h30m\"");
    if text.is_empty() {
        return Err(bad());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("duration {input:?} is too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `15s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let mut out = String::new();
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    let millis = d.subsec_millis();
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    if out.is_empty() {
        // Below one millisecond: rare, but never print an empty string.
        out = format!("{}us", d.as_micros());
    }
    out
}

/// Parses `true/false/1/0/yes/no/on/off` (case-insensitive).
pub fn parse_bool(input: &str) -> Result<bool, String> {
    match input.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "invalid boolean {input:?}: expected true/false, 1/0 or yes/no"
        )),
    }
}

/// Reads a secret from `path`, trimming one trailing newline (`\n` or `\r\n`), as written by
/// `echo` or an editor. `key` names the setting (e.g. `WATCHDOG_TELEGRAM_BOT_TOKEN_FILE`) for the
/// error. A missing or unreadable file, or an empty secret, is an error; the value never is
/// quoted in one.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            key,
            format!("cannot read secret file {}: {e}", path.display()),
        )
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            format!("secret file {} is empty", path.display()),
        ));
    }
    Ok(Secret::new(value))
}

/// The environment variable name for a dotted key under `prefix`:
/// `("WATCHDOG", "notify.group_window")` gives `WATCHDOG_NOTIFY__GROUP_WINDOW`.
pub fn env_name(prefix: &str, dotted: &str) -> String {
    format!(
        "{prefix}_{}",
        dotted.replace('.', "__").to_ascii_uppercase()
    )
}

// ---------------------------------------------------------------------------------------------
// Reading typed values from TOML plus environment

/// Where a value came from; [`Origin::key`] is what an error about it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// TOML dotted key, e.g. `thresholds.cpu_percent` or `dependencies[1].url`.
    File(String),
    /// Environment variable name.
    Env(String),
}

impl Origin {
    pub fn key(&self) -> &str {
        match self {
            Origin::File(k) | Origin::Env(k) => k,
        }
    }

    pub fn is_env(&self) -> bool {
        matches!(self, Origin::Env(_))
    }
}

/// A raw value before conversion: a TOML value, or an environment string.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Toml(toml::Value),
    Env(String),
}

/// A converted value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Found<T> {
    pub fn key(&self) -> &str {
        self.origin.key()
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Found<U> {
        Found {
            value: f(self.value),
            origin: self.origin,
        }
    }
}

/// Converters from [`RawValue`], used with [`ConfigReader::get`]. Each returns a message without
/// the key; the reader adds the key.
pub mod convert {
    use super::{RawValue, parse_bool, parse_duration};
    use std::time::Duration;

    fn type_name(v: &toml::Value) -> &'static str {
        v.type_str()
    }

    pub fn string(raw: &RawValue) -> Result<String, String> {
        match raw {
            RawValue::Toml(toml::Value::String(s)) => Ok(s.clone()),
            RawValue::Toml(v) => Err(format!("expected a string, found {}", type_name(v))),
            RawValue::Env(s) => Ok(s.clone()),
        }
    }

    pub fn bool(raw: &RawValue) -> Result<bool, String> {
        match raw {
            RawValue::Toml(toml::Value::Boolean(b)) => Ok(*b),
            RawValue::Toml(v) => Err(format!("expected a boolean, found {}", type_name(v))),
            RawValue::Env(s) => parse_bool(s),
        }
    }

    pub fn f64(raw: &RawValue) -> Result<f64, String> {
        let n = match raw {
            RawValue::Toml(toml::Value::Float(f)) => *f,
            // Integers convert exactly for any realistic threshold.
            #[allow(clippy::cast_precision_loss)]
            RawValue::Toml(toml::Value::Integer(i)) => *i as f64,
            RawValue::Toml(v) => return Err(format!("expected a number, found {}", type_name(v))),
            RawValue::Env(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("invalid number {s:?}"))?,
        };
        if n.is_finite() {
            Ok(n)
        } else {
            Err("expected a finite number".to_string())
        }
    }

    pub fn u64(raw: &RawValue) -> Result<u64, String> {
        match raw {
            RawValue::Toml(toml::Value::Integer(i)) => {
                u64::try_from(*i).map_err(|_| format!("expected a non-negative integer, found {i}"))
            }
            RawValue::Toml(v) => Err(format!("expected an integer, found {}", type_name(v))),
            RawValue::Env(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid non-negative integer {s:?}")),
        }
    }

    pub fn u32(raw: &RawValue) -> Result<u32, String> {
        let n = u64(raw)?;
        u32::try_from(n).map_err(|_| format!("{n} is too large"))
    }

    pub fn usize(raw: &RawValue) -> Result<usize, String> {
        let n = u64(raw)?;
        usize::try_from(n).map_err(|_| format!("{n} is too large"))
    }

    pub fn duration(raw: &RawValue) -> Result<Duration, String> {
        match raw {
            RawValue::Toml(toml::Value::String(s)) => parse_duration(s),
            RawValue::Toml(v) => Err(format!(
                "expected a duration string like \"15s\", found {}",
                type_name(v)
            )),
            RawValue::Env(s) => parse_duration(s),
        }
    }

    /// A TOML array of strings, or a comma-separated environment value (blank items skipped).
    pub fn string_list(raw: &RawValue) -> Result<Vec<String>, String> {
        match raw {
            RawValue::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    v => Err(format!(
                        "expected an array of strings, found {} in it",
                        type_name(v)
                    )),
                })
                .collect(),
            RawValue::Toml(v) => Err(format!(
                "expected an array of strings, found {}",
                type_name(v)
            )),
            RawValue::Env(s) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
        }
    }
}

/// Reads typed values from a TOML table with an environment overlay (environment wins), and
/// collects every error.
///
/// Each lookup names a dotted key; the reader consults the generic variable
/// (`<PREFIX>_<SECTION>__<KEY>`) and any documented alias for it. A variable set to an empty
/// (or blank) value counts as unset. Because the program looks up
/// every key it knows, the set of keys looked up *is* the schema: [`ConfigReader::finish`]
/// reports every file key and every `<PREFIX>_*` variable that no lookup asked for.
pub struct ConfigReader<'a> {
    prefix: String,
    file: toml::Table,
    env: &'a dyn EnvSource,
    aliases: BTreeMap<String, Vec<String>>,
    /// Dotted keys looked up (the schema), including `name[i]` elements of arrays of tables.
    schema: BTreeSet<String>,
    /// Sections (tables, arrays of tables) looked up as a whole.
    sections: BTreeSet<String>,
    /// Subtrees whose unknown keys the caller reports itself.
    handled: BTreeSet<String>,
    env_consulted: BTreeSet<String>,
    env_ignored: BTreeSet<String>,
    errors: ConfigErrors,
}

impl<'a> ConfigReader<'a> {
    /// `prefix` is e.g. `WATCHDOG`; `aliases` maps dotted keys to documented variable names
    /// (`("docker.host", "WATCHDOG_DOCKER_HOST")`), which are accepted besides the generic name.
    pub fn new(
        prefix: &str,
        file: toml::Table,
        env: &'a dyn EnvSource,
        aliases: &[(&str, &str)],
    ) -> ConfigReader<'a> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (dotted, name) in aliases {
            map.entry((*dotted).to_string())
                .or_default()
                .push((*name).to_string());
        }
        ConfigReader {
            prefix: prefix.to_string(),
            file,
            env,
            aliases: map,
            schema: BTreeSet::new(),
            sections: BTreeSet::new(),
            handled: BTreeSet::new(),
            env_consulted: BTreeSet::new(),
            env_ignored: BTreeSet::new(),
            errors: ConfigErrors::new(),
        }
    }

    /// Parses `text` as a TOML table; a syntax error is returned naming `key` (e.g. the path).
    ///
    /// The message carries line and column but not the offending text, which may be a secret.
    pub fn parse_toml(key: &str, text: &str) -> Result<toml::Table, ConfigError> {
        text.parse::<toml::Table>().map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            ConfigError::new(key, format!("invalid TOML{at}: {}", e.message().trim()))
        })
    }

    /// A variable with the prefix that is not a setting (e.g. `WATCHDOG_CONFIG`).
    pub fn ignore_env(&mut self, name: &str) {
        self.env_ignored.insert(name.to_string());
    }

    /// The caller validates the keys under `dotted` itself; `finish` will not report them.
    pub fn mark_handled(&mut self, dotted: &str) {
        self.handled.insert(dotted.to_string());
    }

    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.add(key, message);
    }

    pub fn push_error(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// The variable names that set `dotted`, documented alias first.
    pub fn env_names(&self, dotted: &str) -> Vec<String> {
        if dotted.contains('[') {
            return Vec::new(); // arrays of tables come from the file only
        }
        let mut names = self.aliases.get(dotted).cloned().unwrap_or_default();
        let generic = env_name(&self.prefix, dotted);
        if !names.contains(&generic) {
            names.push(generic);
        }
        names
    }

    /// The name an error about `dotted` should use when the value is absent: the documented
    /// variable if there is one and `prefer_env`, else the dotted key.
    pub fn key_for(&self, dotted: &str, prefer_env: bool) -> String {
        if prefer_env {
            if let Some(name) = self.aliases.get(dotted).and_then(|v| v.first()) {
                return name.clone();
            }
            return env_name(&self.prefix, dotted);
        }
        dotted.to_string()
    }

    fn env_lookup(&mut self, dotted: &str) -> Option<(String, String)> {
        let names = self.env_names(dotted);
        let mut set: Vec<(String, String)> = Vec::new();
        for name in names {
            self.env_consulted.insert(name.clone());
            // An empty value counts as unset: compose interpolation (`${X:-}`) produces them.
            if let Some(v) = self.env.var(&name).filter(|v| !v.trim().is_empty()) {
                set.push((name, v));
            }
        }
        if set.len() > 1 {
            let all: Vec<&str> = set.iter().map(|(n, _)| n.as_str()).collect();
            let first = set[0].0.clone();
            self.errors.add(
                first,
                format!("set more than once ({}); set only one", all.join(", ")),
            );
        }
        set.into_iter().next()
    }

    fn file_lookup(&mut self, dotted: &str) -> Option<toml::Value> {
        self.schema.insert(dotted.to_string());
        self.file_value(dotted)
    }

    fn section_lookup(&mut self, dotted: &str) -> Option<toml::Value> {
        self.sections.insert(dotted.to_string());
        self.file_value(dotted)
    }

    fn file_value(&mut self, dotted: &str) -> Option<toml::Value> {
        let parts = split_dotted(dotted);
        let mut table = &self.file;
        let mut path = String::new();
        for (i, part) in parts.iter().enumerate() {
            let (name, index) = part;
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            let mut value = table.get(*name)?;
            if let Some(idx) = index {
                match value {
                    toml::Value::Array(items) => {
                        path.push_str(&format!("[{idx}]"));
                        value = items.get(*idx)?;
                    }
                    other => {
                        let found = other.type_str();
                        self.errors
                            .add(path, format!("expected an array of tables, found {found}"));
                        return None;
                    }
                }
            }
            if i + 1 == parts.len() {
                return Some(value.clone());
            }
            match value {
                toml::Value::Table(t) => table = t,
                other => {
                    let found = other.type_str();
                    self.errors
                        .add(path, format!("expected a table, found {found}"));
                    return None;
                }
            }
        }
        None
    }

    /// The raw value for `dotted`, from the environment if set there, else from the file.
    pub fn raw(&mut self, dotted: &str) -> Option<Found<RawValue>> {
        let from_file = self.file_lookup(dotted);
        if let Some((name, v)) = self.env_lookup(dotted) {
            return Some(Found {
                value: RawValue::Env(v),
                origin: Origin::Env(name),
            });
        }
        from_file.map(|v| Found {
            value: RawValue::Toml(v),
            origin: Origin::File(dotted.to_string()),
        })
    }

    /// Looks up and converts `dotted`; a conversion error is recorded under the origin's key
    /// and the value treated as absent.
    pub fn get<T>(
        &mut self,
        dotted: &str,
        convert: impl FnOnce(&RawValue) -> Result<T, String>,
    ) -> Option<Found<T>> {
        let raw = self.raw(dotted)?;
        match convert(&raw.value) {
            Ok(value) => Some(Found {
                value,
                origin: raw.origin,
            }),
            Err(message) => {
                self.errors.add(raw.origin.key(), message);
                None
            }
        }
    }

    /// Like [`get`](Self::get), then `check`s the value; a failed check is recorded and the
    /// value treated as absent.
    pub fn get_checked<T>(
        &mut self,
        dotted: &str,
        convert: impl FnOnce(&RawValue) -> Result<T, String>,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Option<Found<T>> {
        let found = self.get(dotted, convert)?;
        match check(&found.value) {
            Ok(()) => Some(found),
            Err(message) => {
                self.errors.add(found.key(), message);
                None
            }
        }
    }

    pub fn string(&mut self, dotted: &str) -> Option<Found<String>> {
        self.get(dotted, convert::string)
    }

    pub fn bool(&mut self, dotted: &str) -> Option<Found<bool>> {
        self.get(dotted, convert::bool)
    }

    pub fn duration(&mut self, dotted: &str) -> Option<Found<Duration>> {
        self.get(dotted, convert::duration)
    }

    pub fn string_list(&mut self, dotted: &str) -> Option<Found<Vec<String>>> {
        self.get(dotted, convert::string_list)
    }

    /// A secret given either as a value (`value_key`, e.g. `notify.telegram.bot_token`) or as a
    /// file path (`file_key`, e.g. `notify.telegram.bot_token_file`). The environment layer wins
    /// as a whole over the file layer; setting both forms in one layer is an error.
    pub fn secret(&mut self, value_key: &str, file_key: &str) -> Option<Found<Secret>> {
        let file_value = self.file_lookup(value_key);
        let file_path = self.file_lookup(file_key);
        let env_value = self.env_lookup(value_key);
        let env_path = self.env_lookup(file_key);

        let (value, path): (Given, Given) = if env_value.is_some() || env_path.is_some() {
            (
                env_value.map(|(n, v)| (Origin::Env(n), v)),
                env_path.map(|(n, v)| (Origin::Env(n), v)),
            )
        } else {
            let as_string = |this: &mut Self, key: &str, v: Option<toml::Value>| match v {
                None => None,
                Some(toml::Value::String(s)) => Some((Origin::File(key.to_string()), s)),
                Some(other) => {
                    let found = other.type_str();
                    this.errors
                        .add(key, format!("expected a string, found {found}"));
                    None
                }
            };
            (
                as_string(self, value_key, file_value),
                as_string(self, file_key, file_path),
            )
        };

        match (value, path) {
            (None, None) => None,
            (Some((vo, _)), Some((po, _))) => {
                self.errors.add(
                    vo.key(),
                    format!("both {} and {} are set; set only one", vo.key(), po.key()),
                );
                None
            }
            (Some((origin, v)), None) => {
                if v.trim().is_empty() {
                    self.errors.add(origin.key(), "is empty");
                    return None;
                }
                Some(Found {
                    value: Secret::new(v),
                    origin,
                })
            }
            (None, Some((origin, p))) => {
                if p.trim().is_empty() {
                    self.errors
                        .add(origin.key(), "is empty: expected a file path");
                    return None;
                }
                match read_secret_file(origin.key(), Path::new(&p)) {
                    Ok(secret) => Some(Found {
                        value: secret,
                        origin,
                    }),
                    Err(e) => {
                        self.errors.push(e);
                        None
                    }
                }
            }
        }
    }

    /// How many elements the array of tables at `dotted` has in the file (0 if absent). A
    /// value of another type is an error.
    pub fn array_len(&mut self, dotted: &str) -> usize {
        match self.section_lookup(dotted) {
            None => 0,
            Some(toml::Value::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    if !item.is_table() {
                        self.errors.add(
                            format!("{dotted}[{i}]"),
                            format!("expected a table, found {}", item.type_str()),
                        );
                        ok = false;
                    }
                }
                if ok { items.len() } else { 0 }
            }
            Some(other) => {
                self.errors.add(
                    dotted,
                    format!("expected an array of tables, found {}", other.type_str()),
                );
                0
            }
        }
    }

    /// The keys of the table at `dotted` in the file (empty if absent or not a table).
    pub fn table_keys(&mut self, dotted: &str) -> Vec<String> {
        match self.section_lookup(dotted) {
            Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
            Some(other) => {
                self.errors.add(
                    dotted,
                    format!("expected a table, found {}", other.type_str()),
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Whether any file key or environment variable under the section `dotted` was set.
    pub fn section_present(&self, dotted: &str) -> bool {
        let env_prefix = format!("{}__", env_name(&self.prefix, dotted));
        self.section_in_file(dotted) || !self.env.vars_with_prefix(&env_prefix).is_empty()
    }

    /// Whether the file has a table at `dotted`.
    pub fn section_in_file(&self, dotted: &str) -> bool {
        let mut table = Some(&self.file);
        for (name, _) in split_dotted(dotted) {
            table = table.and_then(|t| t.get(name)).and_then(|v| v.as_table());
        }
        table.is_some()
    }

    /// Reports every file key and every `<PREFIX>_*` variable that was never looked up, and
    /// returns all errors collected.
    pub fn finish(mut self) -> ConfigErrors {
        let mut unknown = Vec::new();
        let known = Known {
            schema: &self.schema,
            sections: &self.sections,
            handled: &self.handled,
        };
        walk_unknown(&self.file, "", &known, &mut unknown);
        for key in unknown {
            self.errors.add(key, "unknown key");
        }
        let env_prefix = format!("{}_", self.prefix);
        for (name, _) in self.env.vars_with_prefix(&env_prefix) {
            if !self.env_consulted.contains(&name) && !self.env_ignored.contains(&name) {
                self.errors.add(name, "unknown variable");
            }
        }
        self.errors
    }

    /// Errors so far (the caller may finish its own validation after reading).
    pub fn errors(&self) -> &ConfigErrors {
        &self.errors
    }
}

/// A setting given as text, with where it came from.
type Given = Option<(Origin, String)>;

/// `a.b[2].c` into `[("a", None), ("b", Some(2)), ("c", None)]`.
fn split_dotted(dotted: &str) -> Vec<(&str, Option<usize>)> {
    dotted
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        })
        .collect()
}

struct Known<'k> {
    schema: &'k BTreeSet<String>,
    sections: &'k BTreeSet<String>,
    handled: &'k BTreeSet<String>,
}

impl Known<'_> {
    /// Whether `path` is a section: looked up as one, or a strict prefix of some schema key.
    fn is_section(&self, path: &str) -> bool {
        let dot = format!("{path}.");
        let bracket = format!("{path}[");
        self.sections.contains(path)
            || self
                .schema
                .iter()
                .any(|k| k.starts_with(&dot) || k.starts_with(&bracket))
    }
}

fn walk_unknown(table: &toml::Table, base: &str, known: &Known<'_>, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if base.is_empty() {
            k.clone()
        } else {
            format!("{base}.{k}")
        };
        if known.handled.contains(&path) || known.schema.contains(&path) {
            continue;
        }
        if !known.is_section(&path) {
            out.push(path);
            continue;
        }
        match v {
            toml::Value::Table(t) => walk_unknown(t, &path, known, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        walk_unknown(t, &format!("{path}[{i}]"), known, out);
                    }
                }
            }
            // A section given as a scalar: its lookups already reported the type error.
            _ => {}
        }
    }
}

/// Reads the program's TOML file into a table: `file` (from the command line) if given, else the
/// path in the environment variable `path_var` if set and not empty, else an empty table (the
/// embedded defaults). Errors name where the path came from: `config file` or `path_var`.
pub fn read_config_table(
    file: Option<&Path>,
    path_var: &str,
    env: &dyn EnvSource,
) -> Result<toml::Table, ConfigErrors> {
    let (key, path) = match file {
        Some(path) => ("config file", path.to_path_buf()),
        None => match env.var(path_var).filter(|p| !p.trim().is_empty()) {
            Some(path) => (path_var, std::path::PathBuf::from(path)),
            None => return Ok(toml::Table::new()),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            key,
            format!("cannot read config file {}: {e}", path.display()),
        ))
    })?;
    Ok(ConfigReader::parse_toml(
        &format!("{key} {}", path.display()),
        &text,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_table_comes_from_the_flag_then_the_variable_and_errors_name_the_source() {
        let env = MapEnv::new();
        assert!(
            read_config_table(None, "X_CONFIG", &env)
                .unwrap()
                .is_empty()
        );
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "interval = \"5s\"\n").unwrap();
        let env = MapEnv::new().with("X_CONFIG", good.to_str().unwrap());
        let t = read_config_table(None, "X_CONFIG", &env).unwrap();
        assert_eq!(t["interval"].as_str(), Some("5s"));
        let missing = dir.path().join("missing.toml");
        let errs = read_config_table(Some(&missing), "X_CONFIG", &env).unwrap_err();
        assert!(errs.has_key("config file"), "{errs}");
        let env = MapEnv::new().with("X_CONFIG", missing.to_str().unwrap());
        let errs = read_config_table(None, "X_CONFIG", &env).unwrap_err();
        assert!(errs.has_key("X_CONFIG"), "{errs}");
    }

    #[test]
    fn durations_parse() {
        let cases = [
            ("15s", Duration::from_secs(15)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m 5s", Duration::from_secs(5405)),
            ("1d", Duration::from_secs(86_400)),
            ("1s500ms", Duration::from_millis(1500)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            (" 10s ", Duration::from_secs(10)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in [
            "",
            "15",
            "s",
            "1.5s",
            "10 sec",
            "-1s",
            "1y",
            "ms5",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["15s", "500ms", "2m", "1h30m", "1d2h", "1s250ms", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn bools_parse() {
        for t in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "0", "no", "off"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = Secret::new("hunter2-token");
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc:def\n").unwrap();
        let s = read_secret_file("X_FILE", &path).unwrap();
        assert_eq!(s.expose(), "abc:def");
        std::fs::write(&path, "abc\r\n").unwrap();
        assert_eq!(read_secret_file("X_FILE", &path).unwrap().expose(), "abc");
    }

    #[test]
    fn missing_or_empty_secret_file_names_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = read_secret_file("X_FILE", &missing).unwrap_err();
        assert_eq!(e.key, "X_FILE");
        assert!(
            e.message.contains(&missing.display().to_string()),
            "{}",
            e.message
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_secret_file("X_FILE", &empty).unwrap_err();
        assert_eq!(e.key, "X_FILE");
        assert!(e.message.contains("empty"), "{}", e.message);
    }

    #[test]
    fn errors_display_one_per_line() {
        let mut errs = ConfigErrors::new();
        errs.add("a.b", "unknown key");
        errs.add("A_C", "bad");
        errs.add("a.b", "unknown key"); // duplicate is dropped
        assert_eq!(errs.len(), 2);
        assert_eq!(errs.to_string(), "a.b: unknown key\nA_C: bad");
    }

    #[test]
    fn env_names_follow_the_nesting_rule() {
        assert_eq!(
            env_name("WATCHDOG", "notify.group_window"),
            "WATCHDOG_NOTIFY__GROUP_WINDOW"
        );
        assert_eq!(env_name("WATCHDOG", "interval"), "WATCHDOG_INTERVAL");
    }

    #[test]
    fn map_env_filters_by_prefix() {
        let env = MapEnv::new()
            .with("A_X", "1")
            .with("B_Y", "2")
            .with("A_Z", "3");
        assert_eq!(env.var("B_Y").as_deref(), Some("2"));
        assert_eq!(
            env.vars_with_prefix("A_"),
            vec![("A_X".into(), "1".into()), ("A_Z".into(), "3".into())]
        );
    }

    fn table(text: &str) -> toml::Table {
        ConfigReader::parse_toml("test", text).unwrap()
    }

    #[test]
    fn reader_prefers_env_and_names_origins() {
        let env = MapEnv::new().with("APP_S__N", "7");
        let mut r = ConfigReader::new("APP", table("[s]\nn = 3\nm = 4\n"), &env, &[]);
        let n = r.get("s.n", convert::u32).unwrap();
        assert_eq!(n.value, 7);
        assert_eq!(n.key(), "APP_S__N");
        let m = r.get("s.m", convert::u32).unwrap();
        assert_eq!(m.value, 4);
        assert_eq!(m.key(), "s.m");
        assert!(r.finish().is_empty());
    }

    #[test]
    fn reader_reports_unknown_keys_and_variables_together() {
        let env = MapEnv::new().with("APP_NOPE", "1").with("APP_S__N", "x");
        let mut r = ConfigReader::new(
            "APP",
            table("top = 1\n[s]\nn = 3\nextra = 1\n[[list]]\na = 1\nb = 2\n[other]\n"),
            &env,
            &[],
        );
        assert!(r.get("s.n", convert::u32).is_none());
        for i in 0..r.array_len("list") {
            r.get(&format!("list[{i}].a"), convert::u32);
        }
        let errs = r.finish();
        for key in [
            "top",
            "s.extra",
            "list[0].b",
            "other",
            "APP_NOPE",
            "APP_S__N",
        ] {
            assert!(errs.has_key(key), "missing {key} in:\n{errs}");
        }
        assert_eq!(errs.len(), 6, "{errs}");
    }

    #[test]
    fn reader_secret_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.display().to_string();

        // File form through the documented alias.
        let env = MapEnv::new().with("APP_TOKEN_FILE", p.as_str());
        let aliases = [("x.token", "APP_TOKEN"), ("x.token_file", "APP_TOKEN_FILE")];
        let mut r = ConfigReader::new("APP", toml::Table::new(), &env, &aliases);
        let s = r.secret("x.token", "x.token_file").unwrap();
        assert_eq!(s.value.expose(), "s3cret");
        assert_eq!(s.key(), "APP_TOKEN_FILE");
        assert!(r.finish().is_empty());

        // Both forms in the environment.
        let env = MapEnv::new()
            .with("APP_TOKEN_FILE", p.as_str())
            .with("APP_TOKEN", "inline");
        let mut r = ConfigReader::new("APP", toml::Table::new(), &env, &aliases);
        assert!(r.secret("x.token", "x.token_file").is_none());
        let errs = r.finish();
        assert!(errs.has_key("APP_TOKEN"), "{errs}");
        assert!(
            !errs.to_string().contains("inline"),
            "secret leaked: {errs}"
        );

        // The environment wins over the file as a whole.
        let env = MapEnv::new().with("APP_TOKEN", "from-env");
        let mut r = ConfigReader::new(
            "APP",
            table("[x]\ntoken_file = \"/nonexistent/x\"\n"),
            &env,
            &aliases,
        );
        let s = r.secret("x.token", "x.token_file").unwrap();
        assert_eq!(s.value.expose(), "from-env");
        assert!(r.finish().is_empty());
    }

    #[test]
    fn reader_reports_type_errors_with_dotted_key() {
        let env = MapEnv::new();
        let mut r = ConfigReader::new("APP", table("s = 5\n[t]\nd = 15\n"), &env, &[]);
        assert!(r.get("s.n", convert::u32).is_none());
        assert!(r.duration("t.d").is_none());
        let errs = r.finish();
        assert!(errs.has_key("s"), "{errs}");
        assert!(errs.has_key("t.d"), "{errs}");
    }
}
