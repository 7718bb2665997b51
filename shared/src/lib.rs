//! The crate both Vigil programs share.
//!
//! # Layout
//! - [`backoff`]: the one exponential retry delay (capped, optionally jittered).
//! - [`time`]: the millisecond timestamp every pure core takes as `now`.
//! - [`docker`]: the GET-only Docker Engine client (engine API types, their conversion to domain
//!   types, the event stream). Nothing in this crate can send a method other than GET or HEAD.
//! - [`config`]: helpers for TOML plus environment overlay, `*_FILE` secrets and error collection.
//! - [`telemetry`]: the one tracing subscriber set-up.
//! - [`probe`]: the blocking GET of `/healthz` behind each daemon's `healthcheck` command.
//! - [`protocol`]: the signed request envelope and payload (wire format v1).
//! - [`signing`]: Ed25519 keys, PEM files, signing and strict verification.
//! - [`runtime`]: the one daemon start-up (logging, runtime, exit code).
//! - [`shutdown`]: SIGTERM/SIGINT to one cancellation token, and the drain deadline.
//! - [`status`]: the `/healthz` and `/metrics` HTTP endpoint both daemons serve.
//! - [`redact`]: the one rule set that scrubs secrets out of free text (probe output, bodies).
//! - [`names`]: the Redis key and stream names the components, ACL file, docs and tests share.
//! - [`redis_functions`]: the Lua library every stream append goes through.
//! - [`labels`]: the container labels Vigil reads, their fail-safe meaning, exit causes.
//! - [`heartbeat`]: the executor heartbeat's value, written by the executor, read by the
//!   watchdog.

pub mod backoff;
pub mod config;
pub mod docker;
pub mod heartbeat;
pub mod labels;
pub mod names;
pub mod probe;
pub mod protocol;
pub mod redact;
pub mod redis_functions;
pub mod runtime;
pub mod shutdown;
pub mod signing;
pub mod status;
pub mod telemetry;
pub mod time;
