//! Shutdown: SIGTERM and SIGINT handled in one place for every Vigil process. Each program owns
//! one cancellation token; the first signal cancels it, and the program drains with a deadline.
//!
//! # The guarantee
//! A daemon asked to stop exits, whatever state it is in (Redis killed or frozen, the audit log
//! unwritable, its log output gone):
//! 1. the first SIGTERM/SIGINT cancels the token at once (before anything is logged, so not even
//!    a failing log write can stand between the signal and the drain);
//! 2. the program drains its work in flight for at most its drain deadline
//!    ([`DRAIN_DEADLINE`], the executor's `shutdown_timeout`), then returns;
//! 3. the runtime is shut down with [`RUNTIME_SHUTDOWN`] to spare ([`crate::runtime::run`]): a
//!    blocking task that hangs (a disk that does not answer) cannot hold the exit;
//! 4. a plain thread armed by the first signal ends the process with [`FORCED_EXIT_CODE`] at
//!    [`hard_deadline`] should all of that not have happened, and a second signal ends it at
//!    once, also with [`FORCED_EXIT_CODE`].

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a process that was asked to stop waits for its work in flight (queued
/// notifications, sources, servers) before it exits anyway. The executor's is configurable
/// (`shutdown_timeout`), since a Docker action may take longer.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// How long the runtime may take to stop its tasks after the drain (blocking tasks still
/// running then are left behind).
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

/// Slack on top of the drain and the runtime shutdown before the process is ended by force.
const FORCE_SLACK: Duration = Duration::from_secs(3);

/// The exit code of a process that did not stop in time, or got a second signal.
pub const FORCED_EXIT_CODE: i32 = 1;

/// When, counted from the first signal, a process draining for `drain` is ended by force.
pub fn hard_deadline(drain: Duration) -> Duration {
    drain + RUNTIME_SHUTDOWN + FORCE_SLACK
}

/// Cancels `cancel` on the first SIGTERM or SIGINT and arms the hard deadline for a drain of
/// `drain` (see the module docs); a second signal ends the process at once. Spawn it once at
/// start-up and keep its handle: it only returns if it cannot listen for signals at all.
pub async fn cancel_on_signal(cancel: CancellationToken, drain: Duration) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            // SIGINT still works; an orchestrator's SIGTERM would then need SIGKILL.
            tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
            None
        }
    };
    let mut int = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGINT.");
            None
        }
    };
    if term.is_none() && int.is_none() {
        return;
    }
    let which = next_signal(&mut term, &mut int).await;
    // First: nothing (not a log write) may stand between the signal and the drain.
    cancel.cancel();
    arm_hard_deadline(hard_deadline(drain));
    tracing::info!("{which} received.");
    let again = next_signal(&mut term, &mut int).await;
    tracing::warn!("{again} received again while shutting down; exiting now.");
    std::process::exit(FORCED_EXIT_CODE);
}

async fn next_signal(
    term: &mut Option<tokio::signal::unix::Signal>,
    int: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                if s.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        () = recv(term) => "SIGTERM",
        () = recv(int) => "SIGINT",
    }
}

/// Ends the process with [`FORCED_EXIT_CODE`] after `after`, from a thread of its own (so a
/// runtime whose threads are all stuck cannot hold it).
fn arm_hard_deadline(after: Duration) {
    let armed = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            // Said from yet another thread, briefly waited for: a log write that blocks (a full
            // pipe nobody reads) must not hold the exit either.
            let said = std::thread::Builder::new().spawn(move || {
                tracing::error!(
                    deadline_ms = after.as_millis() as u64,
                    "Did not finish shutting down in time; exiting now."
                );
            });
            if said.is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::process::exit(FORCED_EXIT_CODE);
        });
    if let Err(e) = armed {
        tracing::error!(error = %e, "Cannot arm the shutdown deadline.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hard_deadline_comes_after_the_drain_and_the_runtime_shutdown() {
        for drain in [Duration::ZERO, DRAIN_DEADLINE, Duration::from_secs(120)] {
            assert!(hard_deadline(drain) > drain + RUNTIME_SHUTDOWN);
        }
    }
}
