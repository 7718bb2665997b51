//! Docker and Redis reachability: a source must fail for a while before it is reported,
//! and one good answer clears it.

use super::*;

impl Tracker {
    // ---- Docker reachability -------------------------------------------------------------

    pub(super) fn docker_source_ok(
        &mut self,
        source: SourceId,
        at: Timestamp,
        out: &mut Vec<Signal>,
    ) {
        let was_failing = self.docker_failing.remove(&source).is_some();
        if self.docker_failing.is_empty() && (was_failing || self.docker_unreachable) {
            self.docker_unreachable = false;
            out.push(docker_signal(false, Severity::Info, String::new(), at));
        }
    }

    pub(super) fn check_docker_debounce(&mut self, now: Timestamp, out: &mut Vec<Signal>) {
        if self.docker_unreachable {
            return;
        }
        let oldest = self.docker_failing.values().min_by_key(|(since, _)| *since);
        if let Some((since, error)) = oldest
            && now.since(*since) >= self.settings.docker_unreachable_after
        {
            self.docker_unreachable = true;
            let detail = format!(
                "Docker engine unreachable for {}: {error}",
                human_duration(now.since(*since))
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
            self.redis_failing = None;
            self.redis_unreachable = false;
            // Every good probe says so: it also resolves an alert restored after a restart.
            out.push(redis_signal(false, Severity::Info, String::new(), at));
            return;
        }
        self.redis_failing
            .get_or_insert_with(|| (at, String::new()))
            .1 = detail.to_string();
        self.check_redis_debounce(now.max(at), out);
    }

    pub(super) fn check_redis_debounce(&mut self, now: Timestamp, out: &mut Vec<Signal>) {
        if self.redis_unreachable {
            return;
        }
        if let Some((since, error)) = &self.redis_failing
            && now.since(*since) >= self.settings.docker_unreachable_after
        {
            self.redis_unreachable = true;
            let detail = format!(
                "Redis unreachable for {}: {error}; no remediation can be requested",
                human_duration(now.since(*since))
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
