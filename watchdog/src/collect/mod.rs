//! Sources. Each one runs on its own task, sends [`Observation`]s down a channel, and fails on
//! its own: a failing source degrades its own signals (and reports itself), never the tick.
//!
//! # Layout
//! - `events`: the Docker event stream (the fast path), reconnecting with `since=`.
//! - `sweep`: periodic list + inspect of what changed (bounded concurrency), the repair path.
//! - `stats`: CPU and memory samples of the running containers the sweep found, in rounds of
//!   their own: from the host's cgroup files (`cgroup`), the engine's stats API for the rest.
//! - `status`: what the list's status text says changed, so the sweep inspects only that.
//! - `host`: `/proc/meminfo` and statvfs on configured paths.
//! - `deps`: HTTP GET (2xx) or TCP connect probes.
//! - `app`: the watched application's Prometheus text endpoint.

pub mod app;
pub mod cgroup;
pub mod config;
pub mod deps;
pub mod events;
pub mod host;
pub mod stats;
pub mod status;
pub mod sweep;

use std::collections::BTreeMap;
use vigil_docker::{ContainerDetails, ContainerEvent, StatsSample};
use vigil_shared::time::Timestamp;

/// Which source an observation or a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    DockerEvents,
    DockerSweep,
    Host,
    Dependencies,
    App,
    /// The Redis link (`redis_unreachable`, debounced like Docker).
    Redis,
    /// The executor's heartbeat, read through Redis (`executor_down`).
    Executor,
}

impl SourceId {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::DockerEvents => "docker_events",
            SourceId::DockerSweep => "docker_sweep",
            SourceId::Host => "host",
            SourceId::Dependencies => "dependencies",
            SourceId::App => "app",
            SourceId::Redis => "redis",
            SourceId::Executor => "executor",
        }
    }
}

/// A full sweep of the engine: details of every container in scope, running or not. Details
/// of a container whose list entry did not change since the last sweep are the ones inspected
/// then (see [`sweep`]); every state is at least as new as `at`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sweep {
    pub at: Timestamp,
    pub containers: Vec<ContainerDetails>,
}

/// One round of the stats task: a sample for each running container whose stats could be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsBatch {
    /// When the round started.
    pub at: Timestamp,
    /// Keyed by container id.
    pub samples: BTreeMap<String, StatsSample>,
    /// How many of the samples came from the host's cgroup files, and how many through the
    /// engine's stats API (see [`stats`]).
    pub from_cgroups: usize,
    pub from_engine: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiskUsage {
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSample {
    pub at: Timestamp,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub disks: Vec<DiskUsage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DependencyProbe {
    pub at: Timestamp,
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppProbe {
    pub at: Timestamp,
    pub ok: bool,
    pub detail: String,
    /// Parsed samples (`metric{labels}` text → value) when the endpoint answered.
    pub samples: BTreeMap<String, f64>,
}

/// Everything a source can report.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Event(ContainerEvent),
    Sweep(Sweep),
    Stats(StatsBatch),
    Host(HostSample),
    Dependency(DependencyProbe),
    App(AppProbe),
    /// A source's own health: `ok = false` with the error after a failure, `ok = true` once it
    /// works again. Docker sources failing is what `docker_unreachable` is made of.
    Source {
        source: SourceId,
        at: Timestamp,
        ok: bool,
        detail: String,
    },
}

/// Tracks one source's health so a failure is reported once per outage (not once per retry) and
/// a recovery once when it ends.
#[derive(Debug)]
pub(crate) struct SourceHealth {
    source: SourceId,
    failing: bool,
}

impl SourceHealth {
    pub(crate) fn new(source: SourceId) -> Self {
        SourceHealth {
            source,
            failing: false,
        }
    }

    /// The `ok = false` observation to send, only on the first failure of an outage.
    pub(crate) fn failed(&mut self, detail: impl Into<String>) -> Option<Observation> {
        if self.failing {
            return None;
        }
        self.failing = true;
        Some(Observation::Source {
            source: self.source,
            at: Timestamp::now(),
            ok: false,
            detail: detail.into(),
        })
    }

    /// The `ok = true` observation to send, only when an outage ends.
    pub(crate) fn recovered(&mut self) -> Option<Observation> {
        if !self.failing {
            return None;
        }
        self.failing = false;
        Some(Observation::Source {
            source: self.source,
            at: Timestamp::now(),
            ok: true,
            detail: String::new(),
        })
    }
}

/// Sends one observation unless shutdown comes first. Returns false when the source should stop
/// (cancelled, or the consumer is gone).
pub(crate) async fn emit(
    tx: &tokio::sync::mpsc::Sender<Observation>,
    cancel: &tokio_util::sync::CancellationToken,
    observation: Observation,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        sent = tx.send(observation) => sent.is_ok(),
    }
}

/// Sleeps for `period` unless shutdown comes first. Returns false when cancelled.
pub(crate) async fn pause(
    cancel: &tokio_util::sync::CancellationToken,
    period: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(period) => true,
    }
}
