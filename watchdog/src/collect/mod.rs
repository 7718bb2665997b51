//! Sources. Each one runs on its own task, sends [`Observation`]s down a channel, and fails on
//! its own: a failing source degrades its own signals (and reports itself), never the tick.
//!
//! # Layout
//! - `events`: the Docker event stream (the fast path), reconnecting with `since=`.
//! - `sweep`: periodic list + inspect + one-shot stats (bounded concurrency), the repair path.
//! - `host`: `/proc/meminfo` and statvfs on configured paths.
//! - `deps`: HTTP GET (2xx) or TCP connect probes.
//! - `app`: the watched application's Prometheus text endpoint.

use std::collections::BTreeMap;
use vigil_shared::docker::{ContainerDetails, ContainerEvent, StatsSample};
use vigil_shared::time::Timestamp;

/// Which source an observation or a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    DockerEvents,
    DockerSweep,
    Host,
    Dependencies,
    App,
}

impl SourceId {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::DockerEvents => "docker_events",
            SourceId::DockerSweep => "docker_sweep",
            SourceId::Host => "host",
            SourceId::Dependencies => "dependencies",
            SourceId::App => "app",
        }
    }
}

/// A full sweep of the engine: details of every container (running or not) and a one-shot
/// stats sample for each running container whose stats could be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sweep {
    pub at: Timestamp,
    pub containers: Vec<ContainerDetails>,
    /// Keyed by container id.
    pub stats: BTreeMap<String, StatsSample>,
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
    Host(HostSample),
    Dependency(DependencyProbe),
    App(AppProbe),
    /// A source's own health: `ok = false` with the error after a failure, `ok = true` once it
    /// works again. Docker sources failing is what `docker_unreachable` is made of.
    Source { source: SourceId, at: Timestamp, ok: bool, detail: String },
}
