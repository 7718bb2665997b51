//! What a message says about a container beyond its signal: image, restart count, memory limit,
//! exit code and its meaning, the last healthcheck output, and whether Vigil may act on it.
//!
//! Facts come from a [`FactSource`] (a trait, so tests need no engine). In production that is a
//! [`FactBook`]: what the watchdog already knows of each container (its last sweep's details,
//! updated by the events since: a `die` carries the exit code, an `oom` the kill), so an alert
//! takes its facts at once and never waits for the engine. Asking the engine right after a `die`
//! would wait while it tears the container down (tens to hundreds of milliseconds on a loaded
//! host). Only two cases read a fresh inspect, bounded by [`FACTS_DEADLINE`]: a container no
//! sweep has seen yet, and an unhealthy one (a running container answers in milliseconds, and
//! the failing probe's output is newer than the last sweep). An inspect that fails or is slow
//! leaves the known facts (or none); the alert still goes.

use crate::evaluate::{LABEL_REMEDIATE, human_bytes, label_is_true};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use vigil_docker::{
    ContainerDetails, ContainerEvent, DockerClient, EventAction, HealthProbe, RunState,
    exit_meaning,
};

/// Longest an alert waits for a fresh inspect (only when the known facts will not do).
pub const FACTS_DEADLINE: Duration = Duration::from_millis(150);

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

/// Where facts come from: a [`FactBook`] over the Docker engine in production.
pub trait FactSource: Send + Sync {
    /// A fresh read of the container's facts (may wait for the engine).
    fn facts<'a>(&'a self, container_id: &'a str) -> FactsFuture<'a>;

    /// The facts already known, without waiting for anything; `None` when nothing is known.
    fn known(&self, _container_id: &str) -> Option<ContainerFacts> {
        None
    }
}

/// The facts the watchdog already knows of each container in scope: the last sweep's details,
/// with what the events since then told (see the module docs). Cheap to share.
pub struct FactBook {
    docker: DockerClient,
    known: Mutex<HashMap<String, ContainerFacts>>,
}

impl FactBook {
    pub fn new(docker: DockerClient) -> FactBook {
        FactBook {
            docker,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// A sweep saw these containers (all of them in scope): they replace what was known.
    pub fn note_sweep(&self, containers: &[ContainerDetails]) {
        let fresh: HashMap<String, ContainerFacts> = containers
            .iter()
            .map(|d| (d.container.id.clone(), ContainerFacts::from_details(d)))
            .collect();
        *self.lock() = fresh;
    }

    /// An event changed a known container: a `die` gives its exit code, an `oom` the kill, a
    /// `start` clears both, a `destroy` forgets it. Call before the event is decided on, so the
    /// alert it raises finds the facts.
    pub fn note_event(&self, event: &ContainerEvent) {
        let mut known = self.lock();
        let id = &event.container.id;
        if matches!(event.action, EventAction::Destroy) {
            known.remove(id);
            return;
        }
        let Some(f) = known.get_mut(id) else { return };
        match &event.action {
            EventAction::Die { exit_code } => {
                f.exit_code = Some(exit_code.unwrap_or(f.exit_code.unwrap_or_default()));
            }
            EventAction::Oom => f.oom_killed = true,
            EventAction::Start => {
                f.exit_code = None;
                f.oom_killed = false;
            }
            _ => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerFacts>> {
        // A panic while holding the lock cannot leave the map half-written in a way that
        // matters: every entry is replaced whole.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FactSource for FactBook {
    fn facts<'a>(&'a self, container_id: &'a str) -> FactsFuture<'a> {
        self.docker.facts(container_id)
    }

    fn known(&self, container_id: &str) -> Option<ContainerFacts> {
        self.lock().get(container_id).cloned()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vigil_docker::{ContainerRef, Health};

    fn running(id: &str) -> ContainerDetails {
        ContainerDetails {
            container: ContainerRef {
                id: id.into(),
                name: format!("c-{id}"),
                project: None,
                service: None,
            },
            image: "redis:7".into(),
            labels: BTreeMap::from([(LABEL_REMEDIATE.to_string(), "true".to_string())]),
            state: RunState::Running,
            health: Health::None,
            health_failing_streak: 0,
            exit_code: 0,
            oom_killed: false,
            restart_count: 3,
            restart_policy: "no".into(),
            started_at: None,
            finished_at: None,
            memory_limit: 64 << 20,
            stop_timeout: None,
            last_probe: None,
        }
    }

    fn event(id: &str, action: EventAction) -> ContainerEvent {
        ContainerEvent {
            container: ContainerRef {
                id: id.into(),
                ..ContainerRef::default()
            },
            action,
            labels: BTreeMap::new(),
            time_nano: 1,
        }
    }

    fn book() -> FactBook {
        // Never asked: `known` does not touch the engine.
        FactBook::new(DockerClient::new("unix:///nonexistent.sock", FACTS_DEADLINE).unwrap())
    }

    #[test]
    fn a_die_after_the_sweep_gives_the_known_facts_its_exit_code() {
        let b = book();
        b.note_sweep(&[running("a"), running("b")]);
        b.note_event(&event(
            "a",
            EventAction::Die {
                exit_code: Some(137),
            },
        ));
        let a = b.known("a").expect("known");
        assert_eq!(a.exit_code, Some(137));
        assert_eq!(a.image, "redis:7");
        assert_eq!(a.restart_count, 3);
        assert_eq!(a.memory_limit, 64 << 20);
        assert!(a.opted_in);
        assert_eq!(b.known("b").unwrap().exit_code, None);
    }

    #[test]
    fn oom_start_and_destroy_update_what_is_known() {
        let b = book();
        b.note_sweep(&[running("a")]);
        b.note_event(&event("a", EventAction::Oom));
        b.note_event(&event("a", EventAction::Die { exit_code: None }));
        let a = b.known("a").unwrap();
        assert!(a.oom_killed);
        assert_eq!(a.exit_code, Some(0));
        b.note_event(&event("a", EventAction::Start));
        let a = b.known("a").unwrap();
        assert!(!a.oom_killed);
        assert_eq!(a.exit_code, None);
        b.note_event(&event("a", EventAction::Destroy));
        assert!(b.known("a").is_none());
        // An event about a container no sweep has seen adds nothing.
        b.note_event(&event("z", EventAction::Die { exit_code: Some(1) }));
        assert!(b.known("z").is_none());
    }

    #[test]
    fn a_sweep_replaces_what_was_known() {
        let b = book();
        b.note_sweep(&[running("a")]);
        b.note_sweep(&[running("b")]);
        assert!(b.known("a").is_none());
        assert!(b.known("b").is_some());
    }
}
