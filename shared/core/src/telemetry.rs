//! The one tracing subscriber set-up both programs use.
//!
//! Logs go to stderr, as human text (default) or one JSON object per line. Field names are stable
//! and dotted (`container.name`, `request.id`, `policy.rule`); no secret is ever a field.

use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `level` is a level (`info`) or a comma-separated list of
/// `target=level` and a default level (`vigil_watchdog=debug,info`); an invalid filter falls back
/// to `info` and says so. Calling it twice is harmless.
pub fn init(json: bool, level: &str) {
    let (filter, bad) = match level.trim().parse::<Targets>() {
        Ok(f) => (f, None),
        Err(e) => (
            Targets::new().with_default(tracing::Level::INFO),
            Some(e.to_string()),
        ),
    };
    // The builder's own level cap is opened up: `filter` decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init()
            .is_ok()
    } else {
        builder.finish().with(filter).try_init().is_ok()
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

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;

    #[test]
    fn level_filters_parse_as_documented() {
        let info: Targets = "info".parse().expect("a level");
        assert!(info.would_enable("vigil_executor::pipeline", &Level::INFO));
        assert!(!info.would_enable("vigil_executor::pipeline", &Level::DEBUG));
        let mixed: Targets = "vigil_watchdog=debug,warn".parse().expect("a list");
        assert!(mixed.would_enable("vigil_watchdog::collect", &Level::DEBUG));
        assert!(!mixed.would_enable("redis", &Level::INFO));
        assert!(mixed.would_enable("redis", &Level::WARN));
        assert!("vigil_watchdog=loud".parse::<Targets>().is_err());
    }
}
