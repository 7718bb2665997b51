//! Command line: raw arguments become a command plus a validated config, then one `run` returns
//! the process exit code (ripgrep style). Bad config exits 78 (EX_CONFIG) everywhere.

use crate::config::{self, Config, LogFormat};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use vigil_docker::DockerClient;
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
    /// GET PATH from the configured Docker host (the gate, in a deployment) with the watchdog's
    /// own GET-only client, and print the status code, then the body: what the watchdog sees.
    /// Exit 0 on a 2xx answer, 1 otherwise.
    DockerGet {
        /// Path and query, sent as given (e.g. /_ping, /containers/json?all=1).
        #[arg(default_value = "/_ping")]
        path: String,
    },
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
        Command::DockerGet { path } => docker_get(&cfg, &path),
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

/// `docker-get`: one GET through the configured Docker host, no logging (stdout is the answer).
fn docker_get(cfg: &Config, path: &str) -> i32 {
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let client = DockerClient::new(&cfg.docker.host, cfg.docker.timeout)?;
            Ok(runtime.block_on(client.get_raw(path))?)
        });
    match answer {
        Ok((status, body)) => {
            let mut out = std::io::stdout().lock();
            let printed = writeln!(out, "{status}")
                .and_then(|()| out.write_all(&body))
                .and_then(|()| writeln!(out));
            if let Err(e) = printed {
                eprintln!("vigil-watchdog docker-get: {e}");
                return 1;
            }
            if (200..300).contains(&status) {
                0
            } else {
                eprintln!(
                    "vigil-watchdog docker-get: GET {}{path} answered {status}",
                    cfg.docker.host
                );
                1
            }
        }
        Err(e) => {
            eprintln!(
                "vigil-watchdog docker-get: GET {}{path}: {e:#}",
                cfg.docker.host
            );
            1
        }
    }
}
