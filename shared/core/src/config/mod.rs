//! Configuration helpers shared by both programs: the environment behind a trait, error
//! collection, value parsers, `*_FILE` secrets, and [`ConfigReader`], which reads typed values
//! from a TOML table with an environment overlay and reports unknown keys.
//!
//! Every error names its key: the TOML dotted key (`thresholds.cpu_percent`) when the value came
//! from the file, the variable name (`WATCHDOG_THRESHOLDS__CPU_PERCENT`) when it came from the
//! environment. Errors are collected, never returned early, so an operator sees all of them in
//! one run. Secret values never appear in an error message.
//!
//! # Layout
//! - [`env`](EnvSource): where variables come from ([`ProcessEnv`], [`MapEnv`] for tests) and
//!   the variable name of a dotted key ([`env_name`]).
//! - `error`: [`ConfigError`] and the collected [`ConfigErrors`].
//! - `parse`: durations and booleans as operators write them.
//! - `secret`: [`Secret`] and `*_FILE` reading.
//! - [`convert`]: converters from a raw value, used with [`ConfigReader::get`].
//! - `reader`: [`ConfigReader`] and [`read_config_table`].
//! - [`validate`]: the validators several programs share (names, addresses, durations).

pub mod convert;
mod env;
mod error;
mod parse;
mod reader;
mod secret;
pub mod validate;

pub use env::{EnvSource, MapEnv, ProcessEnv, env_name};
pub use error::{ConfigError, ConfigErrors};
pub use parse::{format_duration, parse_bool, parse_duration};
pub use reader::{ConfigReader, Found, Origin, RawValue, read_config_table};
pub use secret::{Secret, read_secret_file};

/// Exit code for a bad configuration (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

#[cfg(test)]
mod tests;
