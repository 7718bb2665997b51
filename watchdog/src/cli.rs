//! Command line: raw arguments become a command plus a validated config, then one `run` returns
//! the process exit code (ripgrep style). Bad config exits 78 (EX_CONFIG) everywhere.

use crate::config::{self, Config, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vigil_shared::config::{ConfigErrors, EXIT_CONFIG, ProcessEnv};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-watchdog",
    version,
    about = "Vigil watchdog: watches Docker read-only, alerts, plans remediation"
)]
struct Cli {
    /// TOML config file (optional; embedded defaults otherwise).
    #[arg(long, short, env = "WATCHDOG_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the engine and alert (the default).
    Run,
    /// Validate the configuration, print a summary, exit 0 or 78.
    CheckConfig,
    /// Send one test message to every configured sink.
    TestNotify,
    /// Exit 0 when this watchdog's `/healthz` (on its `listen` address) answers 2xx, else 1:
    /// the image's healthcheck.
    Healthcheck,
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    let cfg = match config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(errors) => return report_config_errors(&errors),
    };
    match command {
        Command::CheckConfig => {
            println!("configuration ok\n{}", cfg.summary());
            0
        }
        Command::TestNotify => runtime_then(&cfg, test_notify),
        Command::Healthcheck => vigil_shared::probe::healthcheck("vigil-watchdog", cfg.listen),
        Command::Run => runtime_then(&cfg, |cfg| async move { crate::engine::run(cfg).await }),
    }
}

fn report_config_errors(errors: &ConfigErrors) -> i32 {
    eprintln!(
        "vigil-watchdog: invalid configuration ({} error(s)):\n{errors}",
        errors.len()
    );
    EXIT_CONFIG
}

fn runtime_then<F, Fut>(cfg: &Config, f: F) -> i32
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    vigil_shared::runtime::run(
        "vigil-watchdog",
        cfg.log.format == LogFormat::Json,
        &cfg.log.level,
        f(cfg.clone()),
    )
}

async fn test_notify(cfg: Config) -> anyhow::Result<()> {
    let results = crate::notify::test_notify(&cfg.notify, &cfg.hostname).await;
    let mut failed = 0;
    for (sink, result) in &results {
        match result {
            Ok(()) => println!("{sink}: sent"),
            Err(e) => {
                failed += 1;
                println!("{sink}: FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} sink(s) failed", results.len());
    }
    Ok(())
}
