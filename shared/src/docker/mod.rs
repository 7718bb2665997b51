//! The GET-only Docker Engine client.
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
//! - `error`: [`DockerError`], the one error type of this module (every file above uses it).

pub mod api;
pub mod client;
pub mod error;
pub mod events;
pub mod model;
pub mod transport;

pub use client::{DockerClient, EventStream};
pub use error::DockerError;
pub use model::*;
