//! [`ConfigReader`]: typed values from a TOML table with an environment overlay, and the
//! unknown keys nobody asked for.

use super::convert;
pub use super::convert::RawValue;
use super::env::{EnvSource, env_name};
use super::error::{ConfigError, ConfigErrors};
use super::secret::{Secret, read_secret_file};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

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
