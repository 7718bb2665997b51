//! The one start-up of every Vigil daemon: logging first, then a small multi-thread runtime,
//! then the daemon's main future to its end, turned into an exit code; then the runtime is shut
//! down with a time limit ([`crate::shutdown::RUNTIME_SHUTDOWN`]).

use std::fmt::Display;
use std::future::Future;

/// Worker threads of every daemon's runtime: the work is I/O-bound and small, and the
/// programs share a host with the containers they watch.
pub const WORKER_THREADS: usize = 2;

/// Installs the tracing subscriber ([`crate::telemetry::init`]), builds the runtime and runs
/// `main` on it. Returns 0 when `main` returns `Ok`, else 1 after logging the error with its
/// causes (`{e:#}`). A runtime that cannot start is said on stderr, also with 1.
pub fn run<E: Display>(
    program: &str,
    log_json: bool,
    log_level: &str,
    main: impl Future<Output = Result<(), E>>,
) -> i32 {
    crate::telemetry::init(log_json, log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = match runtime.block_on(main) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(program, error = format!("{e:#}"), "Stopped with an error.");
            1
        }
    };
    // Dropping a runtime waits for every blocking task for ever (a write to a disk that hangs,
    // a name lookup): bounded instead, see `crate::shutdown`.
    runtime.shutdown_timeout(crate::shutdown::RUNTIME_SHUTDOWN);
    code
}
