//! Secrets: a value that is never printed, and reading one from a `*_FILE`.

use super::error::ConfigError;
use std::path::Path;

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
