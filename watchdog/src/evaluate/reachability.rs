//! Docker and Redis reachability: a source must fail for a while before it is reported,
//! and one good answer clears it. Both use one [`Debounce`].

use super::*;

/// The debounce of one reachability signal: which sources fail, since when and why; reported
/// once the oldest failure has lasted long enough, and cleared when no source fails.
#[derive(Debug, Clone)]
pub(super) struct Debounce<K> {
    failing: BTreeMap<K, (Timestamp, String)>,
    reported: bool,
}

impl<K: Ord> Debounce<K> {
    pub(super) fn new() -> Self {
        Debounce {
            failing: BTreeMap::new(),
            reported: false,
        }
    }

    /// `source` failed at `at` with `error`; a failure already running keeps its start.
    pub(super) fn fail(&mut self, source: K, at: Timestamp, error: &str) {
        self.failing.entry(source).or_insert((at, String::new())).1 = error.to_string();
    }

    /// `source` answered. True when that ends the failure: no source fails any more, and one
    /// had failed or the failure had been reported.
    pub(super) fn ok(&mut self, source: &K) -> bool {
        let was_failing = self.failing.remove(source).is_some();
        if self.failing.is_empty() && (was_failing || self.reported) {
            self.reported = false;
            true
        } else {
            false
        }
    }

    /// Forgets every failure.
    pub(super) fn clear(&mut self) {
        self.failing.clear();
        self.reported = false;
    }

    /// No source fails.
    pub(super) fn is_clear(&self) -> bool {
        self.failing.is_empty()
    }

    /// Once per failure: its start and last error, when the oldest failing source has failed
    /// for `after` by `now`.
    pub(super) fn due(&mut self, now: Timestamp, after: Duration) -> Option<(Timestamp, String)> {
        if self.reported {
            return None;
        }
        let (since, error) = self.failing.values().min_by_key(|(since, _)| *since)?;
        if now.since(*since) < after {
            return None;
        }
        self.reported = true;
        Some((*since, error.clone()))
    }
}

impl Tracker {
    // ---- Docker reachability -------------------------------------------------------------

    pub(super) fn docker_source_ok(
        &mut self,
        source: SourceId,
        at: Timestamp,
        out: &mut Vec<Signal>,
    ) {
        if self.docker.ok(&source) {
            out.push(docker_signal(false, Severity::Info, String::new(), at));
        }
    }

    pub(super) fn check_docker_debounce(&mut self, now: Timestamp, out: &mut Vec<Signal>) {
        if let Some((since, error)) = self.docker.due(now, self.settings.docker_unreachable_after) {
            let detail = format!(
                "Docker engine unreachable for {}: {error}",
                human_duration(now.since(since))
            );
            out.push(docker_signal(true, Severity::Critical, detail, now));
        }
    }

    // ---- Redis reachability --------------------------------------------------------------

    pub(super) fn on_redis(
        &mut self,
        at: Timestamp,
        ok: bool,
        detail: &str,
        now: Timestamp,
        out: &mut Vec<Signal>,
    ) {
        if ok {
            self.redis.clear();
            // Every good probe says so: it also resolves an alert restored after a restart.
            out.push(redis_signal(false, Severity::Info, String::new(), at));
            return;
        }
        self.redis.fail((), at, detail);
        self.check_redis_debounce(now.max(at), out);
    }

    pub(super) fn check_redis_debounce(&mut self, now: Timestamp, out: &mut Vec<Signal>) {
        if let Some((since, error)) = self.redis.due(now, self.settings.redis_unreachable_after) {
            let detail = format!(
                "Redis unreachable for {}: {error}; no remediation can be requested",
                human_duration(now.since(since))
            );
            out.push(redis_signal(true, Severity::Critical, detail, now));
        }
    }
}

pub(super) fn docker_signal(
    active: bool,
    severity: Severity,
    detail: String,
    at: Timestamp,
) -> Signal {
    Signal::new(
        SignalKind::DockerUnreachable,
        active,
        severity,
        Subject::named("docker"),
        detail,
        at,
    )
}

pub(super) fn redis_signal(
    active: bool,
    severity: Severity,
    detail: String,
    at: Timestamp,
) -> Signal {
    Signal::new(
        SignalKind::RedisUnreachable,
        active,
        severity,
        Subject::named("redis"),
        detail,
        at,
    )
}
