//! The runtime: wires sources, evaluation, `decide` and notification together.
//!
//! [`Core`] is the synchronous heart (observation or tick in, decisions out; it never reads a
//! clock). [`run`] is the async shell around it: it starts the sources, feeds the core from one
//! channel, hands decisions to the notifier, and shuts everything down on SIGTERM/SIGINT.
//!
//! With Redis configured, `run` also restores the alert states saved before a restart, saves
//! every state change ([`crate::redis::alert_store`]), sends a signed request for each alert the
//! planner has a remediation for ([`crate::plan`], [`crate::redis::request`]), probes Redis and the
//! executor's heartbeat ([`crate::redis::link`]) and tells people what the executor did
//! ([`crate::redis::audit_feed`]). All of that hangs off bounded channels: none of it can hold up
//! detection.
//!
//! # Layout
//! - `core`: [`Core`], the pure, synchronous heart (no clock, no I/O);
//! - `daemon`: [`run`], the async shell: sources, channels, Redis, notifier, shutdown.

pub(crate) mod core;
mod daemon;

pub use self::core::{Core, Decision};
pub use crate::change::StateChange;
pub use daemon::run;
