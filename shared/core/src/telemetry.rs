//! The one tracing subscriber set-up both programs use.
//!
//! Logs go to stderr, as human text (default) or one JSON object per line. Field names are stable
//! and dotted (`container.name`, `request.id`, `policy.rule`); no secret is ever a field.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a tracing filter (`info`, `vigil_watchdog=debug`);
/// an invalid filter falls back to `info` and says so. Calling it twice is harmless.
pub fn init(json: bool, level: &str) {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = if json {
        builder.json().flatten_event(true).try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    if installed && let Some(e) = bad {
        tracing::warn!(log.level = level, error = %e, "Invalid log level filter; using info.");
    }
}

/// Stderr, but a line that cannot be written is dropped rather than reported as an error.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
