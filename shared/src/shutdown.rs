//! Shutdown: SIGTERM and SIGINT handled in one place for every Vigil process. Each program owns
//! one cancellation token; the first signal cancels it, and the program drains with a deadline.

use tokio_util::sync::CancellationToken;

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
