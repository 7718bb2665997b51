//! Vigil watchdog: the unprivileged half. It observes the Docker engine (GET only), the host and
//! the services' endpoints, decides once per signal, alerts people, and plans remediation.
//!
//! # Layout (data-flow order)
//! - [`config`]: TOML file plus environment overlay, validated into [`config::Config`].
//! - [`collect`]: the sources: Docker events and sweeps, host, dependencies, app metrics. Each
//!   emits [`collect::Observation`]s and fails on its own.
//! - [`signals`]: signal types; [`evaluate`]: the pure tracker turning observations into signals.
//! - [`decide`]: the pure alert state machine `decide(signal, prev, now, timing)`; [`change`]:
//!   a key whose alert state changed, handed from the core to the alert store.
//! - [`notify`]: message formatting, per-project grouping, the bounded delivery queue, sinks.
//! - [`operators`]: operators talk back: Telegram commands, silences, acks, pause and resume.
//! - [`plan`]: the pure remediation planner (a firing container signal and its history in, at
//!   most one action out); [`incident`]: the pure machine that follows each planned action
//!   until the container heals or the incident is escalated.
//! - [`redis`]: everything that talks to Redis: the connection and the Redis/executor-heartbeat
//!   probe (`link`), signing and publishing requests to the executor (`request`), alert states
//!   kept across restarts (`alert_store`), and the executor's audit stream told to people
//!   (`audit_feed`).
//! - [`alert_file`]: alert states kept in a local file in alert-only mode (no Redis).
//! - [`engine`]: `core` (pure: evaluate, decide, plan and incidents for one observation) and
//!   `daemon` (the async shell that wires sources, core, notifier and Redis together).
//! - [`serve`]: `/healthz` and `/metrics` on `WATCHDOG_LISTEN`, with [`metrics`] the Prometheus
//!   registry; [`status_page`]: the read-only status page and `/api/status` beside them.
//! - [`cli`]: commands (`run`, `check-config`, `test-notify`).

pub mod alert_file;
pub mod change;
pub mod cli;
pub mod collect;
pub mod config;
pub mod decide;
pub mod engine;
pub mod evaluate;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod operators;
pub mod plan;
pub mod redis;
pub mod serve;
pub mod signals;
pub mod status_page;
