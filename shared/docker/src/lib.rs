//! The GET-only Docker Engine client, and what Vigil reads from containers through it: the
//! watchdog, the executor (for its reads) and the gate use this crate. Nothing in it can send a
//! method other than GET or HEAD; it knows nothing of the signed wire format.
//!
//! # Layout
//! - `transport`: one HTTP/1 client over a unix socket (hyperlocal) or TCP. Its only request
//!   builders are `get(path)` and `head(path)`, producing a request with an empty body: there is
//!   no way to name another method through this crate.
//! - `api`: Engine API types as the engine sends them (`Option` fields, serde renames, unknown
//!   enum fallbacks), API version pinned and negotiated (minimum 1.41), converted to `model`.
//! - `model`: the domain types the rest of Vigil sees, converted at the boundary.
//! - `events`: incremental, pure parsing of the `/events` newline-delimited JSON stream.
//! - `client`: [`DockerClient`]: ping, version, list, inspect, one-shot stats, events.
//! - `error`: [`DockerError`], the one error type of this crate (every file above uses it).
//! - [`labels`]: the container labels Vigil reads, their fail-safe meaning, exit causes.
//! - [`redact`]: the one rule set that scrubs secrets out of free text (probe output, bodies).

pub mod api;
pub mod client;
pub mod error;
pub mod events;
pub mod labels;
pub mod model;
pub mod redact;
pub mod transport;

pub use client::{DockerClient, EventStream};
pub use error::DockerError;
pub use model::*;
