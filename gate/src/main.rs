//! `vigil-gate`: the read-only gate as a process of its own, next to the executor, holding the
//! Docker socket (see the `vigil_gate` library).
//!
//! - `vigil-gate [serve]`: serve the gate until SIGTERM/SIGINT.
//! - `vigil-gate check-config`: validate the settings, print them, exit 0 or 78.
//! - `vigil-gate probe TARGET [PATH]`: one HTTP GET, exit 0 on a 2xx answer. The gate's image
//!   has no shell and no curl, so this is what its compose healthcheck runs against its socket.
//!
//! Settings come from an optional TOML file (`--config` or `GATE_CONFIG`) and the `GATE_*`
//! environment ([`vigil_gate::config`]); a `serve` flag counts as its variable.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_gate::BoundGate;
use vigil_gate::config::{self, Settings, WithFlags};
use vigil_shared::config::{ConfigErrors, EXIT_CONFIG, ProcessEnv};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-gate",
    version,
    about = "Vigil read-only gate: allowlisted GETs to the Docker engine, secrets redacted",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gate (the default).
    Serve(ServeArgs),
    /// Validate the settings (file and environment), print them, exit 0 or 78.
    CheckConfig {
        /// TOML config file (optional; the GATE_* environment is enough).
        #[arg(long, short, env = "GATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// GET PATH from TARGET (unix:///socket or tcp://host:port); exit 0 on 2xx, 1 otherwise.
    Probe {
        target: String,
        #[arg(default_value = "/_ping")]
        path: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// Send this method instead of GET (to check that the gate refuses it).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Print the status code, then the body, to stdout.
        #[arg(long)]
        print: bool,
    },
}

/// Each flag, when given, wins over its variable and the file (see [`vigil_gate::config`] for
/// the defaults).
#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// TOML config file (optional; the GATE_* environment is enough).
    #[arg(long, short, env = "GATE_CONFIG")]
    config: Option<PathBuf>,
    /// The Docker engine to forward to (GATE_DOCKER_HOST).
    #[arg(long)]
    docker_host: Option<String>,
    /// Where to listen (repeatable, or comma-separated): unix:///path or tcp://ip:port
    /// (GATE_LISTEN).
    #[arg(long, value_delimiter = ',')]
    listen: Vec<String>,
    /// Permission bits of a unix listening socket, in octal (GATE_SOCKET_MODE).
    #[arg(long)]
    socket_mode: Option<String>,
    /// Largest list or inspect answer buffered for redaction, in bytes (GATE_MAX_BODY).
    #[arg(long)]
    max_body: Option<String>,
    /// Log format: text or json (GATE_LOG_FORMAT).
    #[arg(long)]
    log_format: Option<String>,
    /// Tracing filter (GATE_LOG_LEVEL).
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => return serve(cli.serve),
        Some(Command::Serve(args)) => return serve(args),
        Some(Command::CheckConfig { config }) => {
            let args = ServeArgs {
                config,
                ..ServeArgs::default()
            };
            return match load(args) {
                Ok(settings) => {
                    println!("configuration ok\n{}", settings.summary());
                    ExitCode::SUCCESS
                }
                Err(errors) => report_config_errors(&errors),
            };
        }
        Some(Command::Probe {
            target,
            path,
            timeout,
            method,
            print,
        }) => probe(
            &target,
            &path,
            &method,
            Duration::from_secs(timeout.max(1)),
            print,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-gate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings from the file, the environment and the flags.
fn load(args: ServeArgs) -> Result<Settings, ConfigErrors> {
    let listen = (!args.listen.is_empty()).then(|| args.listen.join(","));
    let env = WithFlags::new(&ProcessEnv)
        .flag("GATE_DOCKER_HOST", args.docker_host)
        .flag("GATE_LISTEN", listen)
        .flag("GATE_SOCKET_MODE", args.socket_mode)
        .flag("GATE_MAX_BODY", args.max_body)
        .flag("GATE_LOG_FORMAT", args.log_format)
        .flag("GATE_LOG_LEVEL", args.log_level);
    config::load(args.config.as_deref(), &env)
}

/// Prints every configuration error, one per line; exit code 78.
fn report_config_errors(errors: &ConfigErrors) -> ExitCode {
    eprintln!(
        "vigil-gate: invalid configuration ({} error(s)):\n{errors}",
        errors.len()
    );
    ExitCode::from(EXIT_CONFIG as u8)
}

/// Serves until SIGTERM/SIGINT; a bad setting is exit code 78, a failed start 1.
fn serve(args: ServeArgs) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(errors) => return report_config_errors(&errors),
    };
    let config = settings.gate;
    let code = vigil_shared::runtime::run(
        "vigil-gate",
        settings.log_json,
        &settings.log_level,
        async move {
            let gate = BoundGate::bind(&config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(vigil_shared::shutdown::cancel_on_signal(
                shutdown.clone(),
                vigil_shared::shutdown::DRAIN_DEADLINE,
            ));
            tracing::info!(
                gate.docker_host = %config.docker_host,
                "Vigil gate starting."
            );
            gate.run(shutdown).await;
            tracing::info!("Vigil gate stopped.");
            anyhow::Ok(())
        },
    );
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A blocking HTTP/1.0 request: small enough to audit at a glance, no runtime needed.
fn probe(
    target: &str,
    path: &str,
    method: &str,
    timeout: Duration,
    print: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(path.starts_with('/'), "the path must start with '/'");
    anyhow::ensure!(
        !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()),
        "the method must be upper-case letters"
    );
    anyhow::ensure!(
        !path.contains([' ', '\r', '\n']),
        "the path may not hold spaces or line breaks"
    );
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: vigil-probe\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = if let Some(socket) = target.strip_prefix("unix://") {
        let stream = std::os::unix::net::UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {target}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        exchange(stream, &request)?
    } else if let Some(addr) = target.strip_prefix("tcp://") {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .with_context(|| format!("cannot resolve {target}"))?
            .next()
            .with_context(|| format!("{target} resolves to nothing"))?;
        let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("cannot connect to {target}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        exchange(stream, &request)?
    } else {
        anyhow::bail!("expected unix:///path or tcp://host:port, got {target:?}");
    };
    let (head, body) = match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&answer[..at], &answer[at + 4..]),
        None => (answer.as_slice(), &[][..]),
    };
    let status_line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {status_line:?}"))?;
    if print {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{status}")?;
        out.write_all(body)?;
        writeln!(out)?;
    }
    anyhow::ensure!(
        (200..300).contains(&status),
        "{method} {target}{path} answered {status}"
    );
    Ok(())
}

/// Writes the request, reads the answer until the server closes (at most 16 MiB).
fn exchange(mut stream: impl Read + Write, request: &str) -> anyhow::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut answer)?;
    Ok(answer)
}
