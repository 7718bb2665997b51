//! `vigil-gate`: the read-only gate as a process of its own, next to the executor, holding the
//! Docker socket (see the `vigil_gate` library).
//!
//! - `vigil-gate [serve]`: serve the gate until SIGTERM/SIGINT.
//! - `vigil-gate probe TARGET [PATH]`: one HTTP GET, exit 0 on a 2xx answer. The images have no
//!   shell and no curl, so this is what the compose healthchecks run (against the gate's own
//!   socket, or a component's `/healthz`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_gate::{BoundGate, DEFAULT_MAX_BODY, GateConfig, ListenAddr};

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
    /// GET PATH from TARGET (unix:///socket or tcp://host:port); exit 0 on 2xx, 1 otherwise.
    Probe {
        target: String,
        #[arg(default_value = "/_ping")]
        path: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// Send this method instead of GET (to check, from inside a container, that the gate
        /// refuses it).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Print the status code, then the body, to stdout.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The Docker engine to forward to.
    #[arg(
        long,
        env = "GATE_DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// Where to listen (repeatable, or comma-separated): unix:///path or tcp://ip:port.
    #[arg(
        long,
        env = "GATE_LISTEN",
        value_delimiter = ',',
        default_value = "unix:///run/vigil-gate/docker.sock"
    )]
    listen: Vec<String>,
    /// Permission bits of a unix listening socket, in octal.
    #[arg(long, env = "GATE_SOCKET_MODE", default_value = "660")]
    socket_mode: String,
    /// Largest list or inspect answer buffered for redaction, in bytes.
    #[arg(long, env = "GATE_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Log format: text or json.
    #[arg(long, env = "GATE_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Tracing filter.
    #[arg(long, env = "GATE_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => return serve(cli.serve),
        Some(Command::Serve(args)) => return serve(args),
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

/// Serves until SIGTERM/SIGINT; a bad argument or a failed start is exit code 1.
fn serve(args: ServeArgs) -> ExitCode {
    let config = match gate_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vigil-gate: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let code = vigil_shared::runtime::run(
        "vigil-gate",
        args.log_format == "json",
        &args.log_level,
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

fn gate_config(args: &ServeArgs) -> anyhow::Result<GateConfig> {
    let listen = args
        .listen
        .iter()
        .map(|s| ListenAddr::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let socket_mode = u32::from_str_radix(&args.socket_mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .with_context(|| format!("invalid --socket-mode {:?}", args.socket_mode))?;
    let mut config = GateConfig::new(&args.docker_host, listen);
    config.socket_mode = socket_mode;
    config.max_body = args.max_body;
    Ok(config)
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
