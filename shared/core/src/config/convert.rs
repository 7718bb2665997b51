//! Converters from [`RawValue`], used with [`ConfigReader::get`](super::ConfigReader::get).
//! Each returns a message without the key; the reader adds the key.

use super::parse::{parse_bool, parse_duration};
use std::time::Duration;

/// A raw value before conversion: a TOML value, or an environment string.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Toml(toml::Value),
    Env(String),
}

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
