//! Shared helpers for Vigil's integration tests and benchmarks.
//!
//! The suite runs against real parts wherever a user has them: the
//! machine's Docker engine with an offline test image, and a real `redis-server`. Fakes stand in
//! only for internet services and for engine faults a real engine cannot be made to produce.
//! `bash scripts/test.sh` prepares the machine (packages, test image) and runs everything.
//!
//! Helpers panic with a message saying what to do when they cannot set up: a test whose
//! environment is missing fails loudly, it never skips.
//!
//! # Layout
//! - [`ports`]: free loopback ports.
//! - [`docker`]: the real engine: [`docker::require_engine`], the offline
//!   [`docker::TestImage`], and [`docker::Container`], a builder over the docker CLI whose
//!   containers carry `vigil.test=1` and are removed on drop.
//! - [`redis_server`]: [`redis_server::RedisServer`], a real `redis-server` on a free port.
//! - [`executor_rig`]: [`executor_rig::ExecutorRig`], the executor under test: Redis, a signing
//!   key pair, an audit file and the `vigil-executor` process configured for them.
//! - [`stack_rig`]: [`stack_rig::Stack`], the whole stack for end-to-end tests: Redis with the
//!   shipped ACL, the executor, the watchdog behind its gate and fake sinks, wired together.
//! - [`process`]: workspace binaries built on demand and [`process::ChildProcess`], which
//!   captures a child's output lines for assertions.
//! - [`fake_docker`]: [`fake_docker::FakeDocker`], a scriptable Engine API 1.41 on a unix
//!   socket, with fault modes and a log of every request.
//! - [`fakes`]: local fakes of the internet services (Telegram, Slack, webhooks).
//! - [`chromium`]: headless Chromium over the DevTools protocol (console errors, CSP reports,
//!   screenshots).

pub mod chromium;
pub mod docker;
pub mod executor_rig;
pub mod fake_docker;
pub mod fakes;
pub mod gate_proc;
pub mod ports;
pub mod process;
pub mod redis_server;
pub mod stack_rig;
pub mod watchdog_proc;

use std::path::PathBuf;

/// The workspace root (the directory holding the top-level `Cargo.toml` and `scripts/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .expect("the tests crate lives one level below the workspace root")
}
