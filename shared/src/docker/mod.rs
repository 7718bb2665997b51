//! The GET-only Docker Engine client.
//!
//! # Layout
//! - `transport`: one HTTP/1 client over a unix socket (hyperlocal) or TCP. Its only request
//!   builder takes a path and produces a GET (or HEAD) with an empty body: there is no way to
//!   name another method through this crate.
//! - `api`: Engine API types as the engine sends them (`Option` fields, serde renames, unknown
//!   enum fallbacks), API version pinned and negotiated (minimum 1.41).
//! - `model`: the domain types the rest of Vigil sees, converted at the boundary.
//! - `client`: [`DockerClient`]: ping, version, list, inspect, one-shot stats, events.
//! - `events`: incremental parsing of the `/events` JSON stream.

pub mod model;

pub use model::*;
