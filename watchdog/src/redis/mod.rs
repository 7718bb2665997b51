//! The watchdog's Redis side. Everything here is optional: without Redis configured the watchdog
//! alerts only, and none of these modules runs.
//!
//! # Layout
//! - [`link`]: the connection ([`link::RedisLink`]) and the probe that reports Redis and the
//!   executor's heartbeat as observations;
//! - [`request`]: signing and publishing remediation requests to the executor's stream;
//! - [`alert_store`]: alert states saved in Redis so a restart does not re-page;
//! - [`audit_feed`]: the executor's audit stream, told to people.
//!
//! The direction is one-way: `link` knows nothing of the others; `request`, `alert_store` and
//! `audit_feed` use `link`; `audit_feed` also reads what `request` sent.

pub mod alert_store;
pub mod audit_feed;
pub mod config;
pub mod link;
pub mod request;
