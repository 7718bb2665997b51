// `vigil-executor`: the binary around the `vigil_executor` library. Plain comments, not `//!`:
// the fault-injection binary includes this file.
//
// # Layout
// `main` parses the command line (`cli`): a tool command (`check-config`, `healthcheck`,
// `audit verify`, ...) runs and exits; `run` loads the config, starts logging and the runtime
// (`vigil_shared::runtime::run`), and `run()` builds the pipeline (Docker reader and writer,
// verifier, policy, audit log), checks the audit file against the audit stream, spawns the
// heartbeat and the request consumer, waits for SIGTERM/SIGINT and drains with the configured
// deadline.

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vigil_docker::DockerClient;
use vigil_executor::act::{DockerEngine, DockerWriter};
use vigil_executor::cli::{self, Cli};
use vigil_executor::config::{self, Config, LogFormat};
use vigil_executor::metrics::Metrics;
use vigil_executor::pipeline::{Pipeline, PipelineError, PipelineOptions};
use vigil_executor::serve::Health;
use vigil_executor::source::{self, RedisSource, SourceOptions};
use vigil_executor::verify::Verifier;
use vigil_executor::{consume, heartbeat, serve};
use vigil_protocol::names::Names;
use vigil_shared::backoff::Backoff;
use vigil_shared::config::ProcessEnv;

fn main() {
    let cli = Cli::parse();
    if let Some(code) = cli::run_tool(&cli) {
        std::process::exit(code);
    }
    let cfg = match config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(errors) => std::process::exit(cli::report_config_errors(&errors)),
    };
    let accept_audit_gap = matches!(
        cli.command(),
        cli::Command::Run {
            accept_audit_gap: true
        }
    );
    let json = cfg.log_format == LogFormat::Json;
    let level = cfg.log_level.clone();
    let code =
        vigil_shared::runtime::run("vigil-executor", json, &level, run(cfg, accept_audit_gap));
    std::process::exit(code);
}

async fn run(cfg: Config, accept_audit_gap: bool) -> anyhow::Result<()> {
    tracing::info!(summary = %cfg.summary(), "Starting the executor.");
    if !cfg.enabled {
        tracing::warn!("EXECUTOR_ENABLED=false: every request will be audited as refused.");
    }
    let cancel = CancellationToken::new();
    let mut signals = tokio::spawn(vigil_shared::shutdown::cancel_on_signal(
        cancel.clone(),
        cfg.shutdown_timeout,
    ));

    let reader = DockerClient::new(&cfg.docker_host, cfg.docker_timeout)
        .context("building the Docker client")?;
    let writer = DockerWriter::new(&cfg.docker_host, cfg.docker_timeout, cfg.stop_timeout)
        .context("building the Docker writer")?;
    let names = Names::new(&cfg.prefix);
    let health = Health::new(cfg.enabled, cfg.dry_run);
    let metrics = Metrics::new(health.clone());

    let mut tasks = Vec::new();
    if let Some(addr) = cfg.listen {
        let (bound, handle) =
            serve::serve(addr, health.clone(), metrics.clone(), cancel.clone()).await?;
        tracing::info!(listen = %bound, "Serving /healthz and /metrics.");
        tasks.push(handle);
    }

    let Some(conn) = source::connect(&cfg.redis_url, &cancel).await else {
        return Ok(());
    };
    // Blocking reads get a connection of their own: a read blocked for a second on the shared
    // connection would hold up every request in flight.
    let Some(read_conn) = source::connect(&cfg.redis_url, &cancel).await else {
        return Ok(());
    };
    let source = RedisSource::new(
        conn.clone(),
        SourceOptions {
            names: names.clone(),
            consumer: cfg.consumer.clone(),
            reclaim_idle: cfg.reclaim_idle,
            max_deliveries: cfg.max_deliveries,
            lease_ttl: cfg.lease_ttl,
        },
    )
    .with_reader(read_conn);
    let verifier = Verifier::new(cfg.verify_keys.clone(), cfg.deployment.clone())
        .with_limits(cfg.policy.max_skew, cfg.policy.max_ttl);
    let pipeline = Pipeline::open(
        PipelineOptions {
            verifier,
            policy: cfg.policy.clone(),
            enabled: cfg.enabled,
            dry_run: cfg.dry_run,
            limits: cfg.audit_limits,
        },
        &cfg.audit_file,
        Arc::new(DockerEngine::new(reader, writer)),
        Arc::new(source.clone()),
    )
    .with_context(|| {
        format!(
            "opening the audit log {} (a torn last line is repaired on its own; anything else needs an operator: `vigil-executor audit verify` names the record, restore the file from a backup)",
            cfg.audit_file.display()
        )
    })?
    .with_metrics(metrics);
    // The file must not be behind the audit stream (deleted, replaced, restored from a backup).
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(10),
    );
    loop {
        match pipeline.check_continuity(accept_audit_gap).await {
            Ok(()) => break,
            Err(PipelineError::Broker(e)) => {
                tracing::warn!(error = %e, "Cannot read the audit stream to check the file against it; retrying.");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => {
                return Err(anyhow::Error::from(e))
                    .context("checking the audit file against the audit stream");
            }
        }
    }
    tracing::info!(
        audit.seq = pipeline.audit_head().0,
        audit.file = %cfg.audit_file.display(),
        "Audit log verified; policy state rebuilt from it."
    );

    let mut heartbeat = tokio::spawn(heartbeat::run(conn, names, health.clone(), cancel.clone()));
    let mut consumer = tokio::spawn(consume::consume(
        source,
        pipeline,
        health,
        cfg.concurrency,
        cancel.clone(),
    ));

    // Nothing here is fire-and-forget: a task that ends before the signal (a panic) ends the
    // process with an error, so it is restarted rather than running on without it.
    // Biased: once the token is cancelled, tasks ending are the drain, not a failure.
    let early = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        r = &mut consumer => Some(("the request consumer", r)),
        r = &mut heartbeat => Some(("the heartbeat", r)),
        r = &mut signals => Some(("the signal handler", r)),
    };
    if let Some((what, r)) = early {
        cancel.cancel();
        let why = match r {
            Ok(()) => "it returned".to_string(),
            Err(e) => e.to_string(),
        };
        let drain = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(cfg.shutdown_timeout, drain).await;
        anyhow::bail!("{what} stopped before shutdown: {why}");
    }
    tracing::info!(
        deadline_ms = cfg.shutdown_timeout.as_millis() as u64,
        "Shutting down: finishing the requests in flight."
    );
    let drain = async {
        let _ = consumer.await;
        let _ = heartbeat.await;
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(cfg.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "Shutdown deadline passed; exiting with work in flight (it stays pending and is retried)."
        );
    }
    Ok(())
}
