//! Ctrl-C and SIGTERM end the run cleanly: the first signal sets a flag that every wait in the
//! benchmark checks, so the run unwinds through its guards (containers, daemons, Redis removed);
//! a second signal exits at once.

use anyhow::{Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Watches SIGINT and SIGTERM on `runtime`.
pub fn install(runtime: &tokio::runtime::Runtime) {
    runtime.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            eprintln!(
                "bench: cannot watch SIGINT/SIGTERM; an interrupted run may leave containers"
            );
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("bench: second signal, exiting without clean-up");
                std::process::exit(130);
            }
            eprintln!("bench: interrupted; cleaning up (signal again to exit at once)");
        }
    });
}

/// Fails once a signal arrived.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d` in short slices, failing early when interrupted.
pub fn pause(d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Polls `done` every `every` until it holds (true) or `timeout` passes (false).
pub fn poll_until(
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        pause(every)?;
    }
}
