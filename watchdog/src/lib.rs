//! Vigil watchdog: the unprivileged half. It observes the Docker engine (GET only), the host and
//! the services' endpoints, decides once per signal, alerts people, and plans remediation.
//!
//! # Layout (data-flow order)
//! - [`config`]: TOML file plus environment overlay, validated into [`config::Config`].
//! - [`collect`]: the sources: Docker events and sweeps, host, dependencies, app metrics. Each
//!   emits [`collect::Observation`]s and fails on its own.
//! - [`signals`]: signal types; [`evaluate`]: the pure tracker turning observations into signals.
//! - [`decide`]: the pure alert state machine `decide(signal, prev, now, timing)`.
//! - [`notify`]: message formatting, per-project grouping, the bounded delivery queue, sinks.
//! - [`plan`]: the pure remediation planner (a firing container signal and its history in, at
//!   most one action out); [`request`]: signing and publishing requests to the executor.
//! - [`redis_link`]: the Redis connection and the Redis/executor-heartbeat probe;
//!   [`alert_store`]: alert states kept in Redis across restarts; [`audit_feed`]: the executor's
//!   audit stream told to people.
//! - [`engine`]: the runtime that wires sources, evaluation, decide and notify together.
//! - [`serve`]: `/healthz` (and later `/metrics`) on `WATCHDOG_LISTEN`.
//! - [`cli`]: commands (`run`, `check-config`, `test-notify`).

pub mod alert_store;
pub mod audit_feed;
pub mod cli;
pub mod collect;
pub mod config;
pub mod decide;
pub mod engine;
pub mod evaluate;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod redis_link;
pub mod request;
pub mod serve;
pub mod signals;
