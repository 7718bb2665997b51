//! What a message says about a container beyond its signal: image, restart count, memory limit,
//! exit code and its meaning, the last healthcheck output, and whether Vigil may act on it.
//!
//! Facts are read by one fresh inspect when an alert is about to be queued (through the
//! [`FactSource`] trait, so tests need no engine), because the sweep that produced the signal may
//! be older than the failing probe. An inspect that fails or is slow leaves the facts out; the
//! alert still goes.

use crate::evaluate::{LABEL_REMEDIATE, human_bytes, label_is_true};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use vigil_shared::docker::{ContainerDetails, DockerClient, HealthProbe, RunState, exit_meaning};

/// Longest an alert waits for its container's facts.
pub const FACTS_DEADLINE: Duration = Duration::from_secs(2);

/// The facts of one container at alert time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerFacts {
    pub image: String,
    pub restart_count: u64,
    /// Bytes; 0 when unlimited.
    pub memory_limit: u64,
    /// Set when the container is not running: its exit code.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub last_probe: Option<HealthProbe>,
    /// Labelled `vigil.remediate=true`.
    pub opted_in: bool,
}

impl ContainerFacts {
    pub fn from_details(d: &ContainerDetails) -> ContainerFacts {
        let stopped = matches!(d.state, RunState::Exited | RunState::Dead);
        ContainerFacts {
            image: d.image.clone(),
            restart_count: d.restart_count,
            memory_limit: d.memory_limit,
            exit_code: stopped.then_some(d.exit_code),
            oom_killed: d.oom_killed,
            last_probe: d.last_probe.clone(),
            opted_in: label_is_true(&d.labels, LABEL_REMEDIATE),
        }
    }

    /// `64 MiB`, or `none` when unlimited.
    pub fn memory_limit_text(&self) -> String {
        if self.memory_limit == 0 {
            "none (unlimited)".to_string()
        } else {
            human_bytes(self.memory_limit)
        }
    }

    pub fn exit_text(&self) -> Option<String> {
        self.exit_code.map(exit_meaning)
    }
}

pub type FactsFuture<'a> = Pin<Box<dyn Future<Output = Option<ContainerFacts>> + Send + 'a>>;

/// Where facts come from: the Docker engine in production.
pub trait FactSource: Send + Sync {
    fn facts<'a>(&'a self, container_id: &'a str) -> FactsFuture<'a>;
}

impl FactSource for DockerClient {
    fn facts<'a>(&'a self, container_id: &'a str) -> FactsFuture<'a> {
        Box::pin(async move {
            match self.inspect(container_id).await {
                Ok(d) => Some(ContainerFacts::from_details(&d)),
                Err(e) => {
                    tracing::debug!(container.id = container_id, error = %e, "No facts for the alert.");
                    None
                }
            }
        })
    }
}
