//! What crosses the trust boundary between the watchdog and the executor: the signed request
//! (wire format v1, docs/protocol.md), its keys and verifier, and the Redis names, stream
//! functions and heartbeat both sides agree on. Only the watchdog and the executor use this
//! crate; the gate does not.
//!
//! # Layout
//! - [`wire`]: the signed request envelope and payload (wire format v1), strict parsing.
//! - [`signing`]: Ed25519 keys, PEM files, signing and strict verification.
//! - [`names`]: the Redis key and stream names the components, ACL file, docs and tests share.
//! - [`redis_functions`]: the Lua library every stream append goes through.
//! - [`heartbeat`]: the executor heartbeat's value, written by the executor, read by the
//!   watchdog.

pub mod heartbeat;
pub mod names;
pub mod redis_functions;
pub mod signing;
pub mod wire;
