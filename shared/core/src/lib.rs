//! The process basics both Vigil programs (and the gate) share: nothing here speaks to Docker or
//! knows the signed wire format; those are `vigil-docker` and `vigil-protocol`.
//!
//! # Layout
//! - [`backoff`]: the one exponential retry delay (capped, optionally jittered).
//! - [`time`]: the millisecond timestamp every pure core takes as `now`.
//! - [`config`]: helpers for TOML plus environment overlay, `*_FILE` secrets and error collection.
//! - [`telemetry`]: the one tracing subscriber set-up.
//! - [`runtime`]: the one daemon start-up (logging, runtime, exit code).
//! - [`shutdown`]: SIGTERM/SIGINT to one cancellation token, and the drain deadline.
//! - [`status`]: the `/healthz` and `/metrics` HTTP endpoint both daemons serve.
//! - [`probe`]: the blocking GET of `/healthz` behind each daemon's `healthcheck` command.

pub mod backoff;
pub mod config;
pub mod probe;
pub mod runtime;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod time;
