//! Vigil executor.
//!
//! # Layout
//! - [`verify`]: the pure request check (signature, deployment, time window) with executor limits.
//! - [`audit`]: the hash-chained audit log (pure chain plus the append-only file).

pub mod audit;
pub mod verify;
