//! Vigil executor: the privileged, minimal process that is the only writer to Docker and to the
//! audit log. It reads signed requests from Redis, checks them, applies its own policy, acts, and
//! records every decision in a hash-chained log.
//!
//! # Layout
//! In data-flow order, `request -> verify -> policy -> act -> audit`:
//! - [`source`]: the request source: the Redis requests stream (consumer group, reclaim,
//!   dead-letter) and the Redis side of the pipeline (nonces, pause key, audit stream);
//!   [`stream_entry`] reads its entries as untrusted bytes and names malformed ones.
//! - [`consume`]: the consumer loop: batches of rejections decided together, verified requests
//!   run in [`lanes`] (different containers side by side, one container at a time).
//! - [`pipeline`]: one request end to end, over the [`broker::Broker`] and `Engine` traits; exactly-once
//!   handling of re-delivered entries; [`recover`]: continuity and dangling intents at start-up.
//! - [`verify`]: the pure request check (signature, deployment, time window) with executor limits.
//! - [`policy`]: the pure safety policy: `evaluate` returns a `Permit` or a `Denied` naming its
//!   rule; state rebuilt from the audit log.
//! - [`act`]: the writing Docker client (POST restart/start/stop), usable only with a `Permit`.
//! - [`audit`]: the hash-chained audit log (pure chain and records); [`journal`]: the file on
//!   disk (segments, fsync, free-space guard); [`commit`]: group commit (one sync for many
//!   records); [`lease`]: one execution per request across executors, one dead-letter copy per
//!   entry.
//!
//! Around them: [`config`] (the `EXECUTOR_*` settings), [`heartbeat`] (the liveness key in
//! Redis), [`health`] (the liveness facts), [`serve`] (`/healthz` and `/metrics`), [`metrics`] (the Prometheus metrics) and [`cli`]
//! (the tool commands), [`rejections`] (rejections logged a few per reason, the rest summarised), and [`fault`] (test-only fault points, empty in the shipped binary). The
//! read-only Docker gate the watchdog reads through is a crate of its
//! own, `vigil-gate`, that does not link this one.

pub mod act;
pub mod audit;
pub mod broker;
pub mod cli;
pub mod commit;
pub mod config;
pub mod consume;
pub mod fault;
pub mod health;
pub mod heartbeat;
pub mod journal;
pub mod lanes;
pub mod lease;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod recover;
pub mod rejections;
pub mod serve;
pub mod source;
pub mod stream_entry;
pub mod verify;
