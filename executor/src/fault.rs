//! Test-only fault points. They exist only in a build with the `fault-injection` cargo feature
//! (the `vigil-executor-faults` binary the integration tests use); in the shipped binary
//! [`point`] is an empty function and no environment variable can reach it.

/// Aborts the process when this build has fault injection and `VIGIL_FAULT` names `name`.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if std::env::var("VIGIL_FAULT").is_ok_and(|v| v == name) {
        tracing::error!(
            fault = name,
            "Fault point reached: aborting (test build only)."
        );
        std::process::abort();
    }
}

/// No fault injection in this build.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
