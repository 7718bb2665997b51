//! Shutdown: SIGTERM and SIGINT handled in one place for every Vigil process. Each program owns
//! one cancellation token; the first signal cancels it, and the program drains with a deadline.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a process that was asked to stop waits for its work in flight (queued
/// notifications, sources, servers) before it exits anyway. The executor's is configurable
/// (`shutdown_timeout`), since a Docker action may take longer.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Cancels `cancel` on the first SIGTERM or SIGINT. Spawn it once at start-up.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                // SIGINT still works; an orchestrator's SIGTERM would then need SIGKILL.
                tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received."),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received."),
    }
    // A second signal during the drain is not special: the drain deadline bounds it.
    cancel.cancel();
}
