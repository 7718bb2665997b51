//! Container lifecycle: events and sweeps into health, exit, OOM-kill, restart-loop and
//! missing-service signals.

use super::load::forget_stats;
use super::*;

impl Tracker {
    // ---- Events --------------------------------------------------------------------------

    pub(super) fn on_event(&mut self, ev: &ContainerEvent, out: &mut Vec<Signal>) {
        let id = ev.container.id.clone();
        if matches!(ev.action, EventAction::Destroy) {
            if let Some(mem) = self.containers.remove(&id) {
                for kind in SignalKind::ALL.into_iter().filter(|k| k.is_container()) {
                    if kind != SignalKind::ContainerMissing {
                        out.push(mem.inactive(kind, ev.at()));
                    }
                }
            }
            return;
        }
        let labels = match self.containers.get(&id) {
            Some(mem) if !mem.labels.is_empty() => mem.labels.clone(),
            _ => ev.labels.clone(),
        };
        if !self.settings.watches(&labels) {
            return;
        }
        let settings = &self.settings;
        let mem = self.containers.entry(id).or_default();
        mem.container = ev.container.clone();
        mem.labels = labels;
        let at = ev.at();
        mem.last_event_at = Some(mem.last_event_at.map_or(at, |t| t.max(at)));
        match &ev.action {
            // A probe that runs into a container an operator is stopping fails; the engine can
            // report that `unhealthy` between the stop's `kill` and `die`. It is not a failure.
            EventAction::HealthStatus(Health::Unhealthy)
                if mem
                    .intent_at
                    .is_some_and(|i| at.since(i) <= settings.operator_intent_window) => {}
            EventAction::HealthStatus(Health::Unhealthy) => {
                let detail = health_detail(mem.health_streak);
                out.push(mem.signal(
                    SignalKind::ContainerUnhealthy,
                    true,
                    Severity::High,
                    detail,
                    at,
                ));
            }
            EventAction::HealthStatus(h) => {
                mem.health_streak = 0;
                out.push(healthy_again(mem, *h, at));
            }
            EventAction::Kill { .. } | EventAction::Stop => {
                mem.intent_at = Some(at);
                // `docker stop` sends kill, die, stop: a stop right after a die confirms it.
                if mem
                    .last_die_at
                    .is_some_and(|d| at.since(d) <= settings.operator_intent_window)
                {
                    mem.phase.stop_confirmed();
                }
            }
            EventAction::Die { exit_code } => {
                mem.last_die_seen = Some(at);
                on_die(mem, settings, ev, *exit_code, out);
            }
            EventAction::Oom => {
                mem.last_oom_at = Some(at);
                let (at, occurrence) = match mem.phase.take_held_kill() {
                    Some(held) => (held.at, held.time_nano),
                    None => (at, ev.time_nano),
                };
                signal_oom(mem, settings, at, occurrence, out);
            }
            EventAction::Start => {
                mem.intent_at = None;
                if mem.phase.started() {
                    mem.cycles.push_back(at);
                }
                let window = settings.restart_loop_window;
                while mem.cycles.front().is_some_and(|t| at.since(*t) >= window) {
                    mem.cycles.pop_front();
                }
                // Running again: the exit and the OOM kill are over (edge kinds resolve
                // silently in decide).
                clear_edges(mem, at, out);
                out.extend(evaluate_loop(mem, settings, at));
            }
            EventAction::Destroy | EventAction::Restart | EventAction::Other(_) => {}
        }
    }

    // ---- Sweeps --------------------------------------------------------------------------

    pub(super) fn on_sweep(&mut self, sweep: &Sweep, out: &mut Vec<Signal>) {
        let at = sweep.at;
        let mut running: BTreeSet<(String, String)> = BTreeSet::new();
        let mut present: BTreeSet<&str> = BTreeSet::new();
        for c in &sweep.containers {
            present.insert(c.container.id.as_str());
            if c.state == RunState::Running
                && let (Some(p), Some(s)) = (&c.container.project, &c.container.service)
            {
                running.insert((p.clone(), s.clone()));
            }
            if !self.settings.watches(&c.labels) {
                continue;
            }
            let settings = &self.settings;
            let mem = self.containers.entry(c.container.id.clone()).or_default();
            mem.container = c.container.clone();
            mem.labels = c.labels.clone();
            mem.memory_limit = c.memory_limit;
            mem.restart_policy.clone_from(&c.restart_policy);
            mem.policy_known = true;
            missed_restart(mem, settings, c, at, out);
            note_restart_count(mem, settings, at, c.restart_count);
            let stale = mem.last_event_at.is_some_and(|t| t > at);
            if !stale {
                sweep_lifecycle(mem, settings, c, at, out);
            }
            if c.state != RunState::Running {
                forget_stats(mem);
            }
            if !stale {
                out.extend(evaluate_loop(mem, settings, at));
            }
        }
        // Gone without a destroy event we saw: forget them (unless an event is newer than the
        // sweep, i.e. the container was created after the snapshot).
        let gone: Vec<String> = self
            .containers
            .iter()
            .filter(|(id, mem)| {
                !present.contains(id.as_str()) && mem.last_event_at.is_none_or(|t| t <= at)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(mem) = self.containers.remove(&id) {
                for kind in SignalKind::ALL.into_iter().filter(|k| k.is_container()) {
                    if kind != SignalKind::ContainerMissing {
                        out.push(mem.inactive(kind, at));
                    }
                }
            }
        }
        if self.docker.is_clear() {
            for expected in &self.settings.expected_services {
                out.push(missing_signal(expected, &running, at));
            }
        }
    }
}

pub(super) fn missing_signal(
    expected: &str,
    running: &BTreeSet<(String, String)>,
    at: Timestamp,
) -> Signal {
    let (project, service) = expected.split_once('/').unwrap_or(("", expected));
    let subject = Subject {
        project: Some(project.to_string()),
        service: Some(service.to_string()),
        name: Some(expected.to_string()),
        ..Subject::default()
    };
    if running.contains(&(project.to_string(), service.to_string())) {
        Signal::new(
            SignalKind::ContainerMissing,
            false,
            Severity::Info,
            subject,
            "",
            at,
        )
    } else {
        let detail = format!("no running container for service {expected}");
        Signal::new(
            SignalKind::ContainerMissing,
            true,
            Severity::High,
            subject,
            detail,
            at,
        )
    }
}

pub(super) fn health_detail(streak: u64) -> String {
    if streak > 0 {
        format!("health check failing ({streak} consecutive failures)")
    } else {
        "health check failing".to_string()
    }
}

fn healthy_again(mem: &ContainerMemory, health: Health, at: Timestamp) -> Signal {
    let detail = if health == Health::Healthy {
        HEALTHY_AGAIN
    } else {
        ""
    };
    mem.signal(
        SignalKind::ContainerUnhealthy,
        false,
        Severity::Info,
        detail,
        at,
    )
}

/// The container is not running any more: health and load no longer apply.
pub(super) fn clear_running_levels(
    mem: &mut ContainerMemory,
    at: Timestamp,
    out: &mut Vec<Signal>,
) {
    mem.prev_stats = None;
    mem.memory_samples.clear();
    mem.health_streak = 0;
    for kind in [
        SignalKind::ContainerUnhealthy,
        SignalKind::ContainerCpuHigh,
        SignalKind::ContainerMemoryHigh,
    ] {
        out.push(mem.inactive(kind, at));
    }
}

/// The container runs: its exit and OOM kill are over.
pub(super) fn clear_edges(mem: &mut ContainerMemory, at: Timestamp, out: &mut Vec<Signal>) {
    mem.exit_active = None;
    mem.oom_active = None;
    out.push(mem.inactive(SignalKind::ContainerExited, at));
    out.push(mem.inactive(SignalKind::ContainerOomKilled, at));
}

pub(super) fn on_die(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    ev: &ContainerEvent,
    exit_code: Option<i64>,
    out: &mut Vec<Signal>,
) {
    let at = ev.at();
    clear_running_levels(mem, at, out);
    if mem.intended(at, settings.operator_intent_window) || mem.phase.stopped_by_operator() {
        mem.phase.intended_die();
        mem.last_die_at = Some(at);
        return;
    }
    let Some(code) = exit_code else {
        // No code: leave the exit for the sweep to judge from the container's state.
        mem.phase.failure_die();
        mem.last_failure_at = Some(at);
        return;
    };
    mem.last_die_at = Some(at);
    mem.phase.failure_die();
    mem.last_failure_at = Some(at);
    let oom_explains_it = mem.last_oom_at.is_some_and(|o| {
        o <= at.plus(SAME_EXIT_TOLERANCE)
            && at.since(o) <= settings.oom_grace.max(SAME_EXIT_TOLERANCE)
    });
    if oom_explains_it || code == 0 {
        return;
    }
    if code == 137 {
        mem.phase.hold_kill(HeldKill {
            at,
            time_nano: ev.time_nano,
        });
        return;
    }
    signal_exit(mem, settings, at, ev.time_nano, code, at, out);
}

/// Whether a new exit/OOM at `at` is folded into the restart loop.
pub(super) fn folded(
    mem: &ContainerMemory,
    last_signalled: Option<Timestamp>,
    at: Timestamp,
    window: Duration,
) -> bool {
    mem.loop_active || last_signalled.is_some_and(|t| at.since(t) < window)
}

pub(super) fn signal_exit(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    exited_at: Timestamp,
    occurrence: i64,
    code: i64,
    observed_at: Timestamp,
    out: &mut Vec<Signal>,
) {
    if let Some(last) = mem.exit_signalled_at
        && close(last, exited_at)
    {
        // The same exit seen twice (event and sweep): repeat it only while it is active.
        if let Some((occ, detail)) = mem.exit_active.clone() {
            out.push(
                mem.signal(
                    SignalKind::ContainerExited,
                    true,
                    Severity::High,
                    detail,
                    observed_at,
                )
                .with_occurrence(occ),
            );
        }
        return;
    }
    signal_exit_detail(
        mem,
        settings,
        exited_at,
        occurrence,
        vigil_docker::exit_meaning(code),
        observed_at,
        out,
    );
}

/// A new exit (unless it is the one already signalled, or folded into a restart loop).
pub(super) fn signal_exit_detail(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    exited_at: Timestamp,
    occurrence: i64,
    detail: String,
    observed_at: Timestamp,
    out: &mut Vec<Signal>,
) {
    if let Some(last) = mem.exit_signalled_at
        && close(last, exited_at)
    {
        return;
    }
    if folded(
        mem,
        mem.exit_signalled_at,
        exited_at,
        settings.restart_loop_window,
    ) {
        return;
    }
    mem.exit_signalled_at = Some(exited_at);
    mem.exit_active = Some((occurrence, detail.clone()));
    out.push(
        mem.signal(
            SignalKind::ContainerExited,
            true,
            Severity::High,
            detail,
            observed_at,
        )
        .with_occurrence(occurrence),
    );
}

pub(super) fn signal_oom(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    killed_at: Timestamp,
    occurrence: i64,
    out: &mut Vec<Signal>,
) {
    if let Some(last) = mem.oom_signalled_at
        && close(last, killed_at)
    {
        if let Some((occ, detail)) = mem.oom_active.clone() {
            out.push(
                mem.signal(
                    SignalKind::ContainerOomKilled,
                    true,
                    Severity::High,
                    detail,
                    killed_at,
                )
                .with_occurrence(occ),
            );
        }
        return;
    }
    if folded(
        mem,
        mem.oom_signalled_at,
        killed_at,
        settings.restart_loop_window,
    ) {
        return;
    }
    let detail = mem.oom_detail();
    mem.oom_signalled_at = Some(killed_at);
    mem.oom_active = Some((occurrence, detail.clone()));
    out.push(
        mem.signal(
            SignalKind::ContainerOomKilled,
            true,
            Severity::High,
            detail,
            killed_at,
        )
        .with_occurrence(occurrence),
    );
}

/// `RestartCount` grew since the last sweep and the event stream showed no `die` for it: the
/// engine's restart policy brought the container back from an exit nobody saw (the stream was
/// cut, or the watchdog's reader fell behind). It is reported as one exit, dated by the
/// container's `FinishedAt`; a `die` replayed later for the same exit is the same occurrence.
pub(super) fn missed_restart(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    c: &ContainerDetails,
    at: Timestamp,
    out: &mut Vec<Signal>,
) {
    let Some(&(prev_at, prev_count)) = mem.restart_samples.back() else {
        return;
    };
    // An exited container is judged by its own exit code in `sweep_exit`.
    if c.restart_count <= prev_count || matches!(c.state, RunState::Exited | RunState::Dead) {
        return;
    }
    let exited_at = c.finished_at.filter(|f| *f >= prev_at).unwrap_or(at);
    let seen = mem
        .last_die_seen
        .is_some_and(|d| d >= prev_at || close(d, exited_at));
    if seen || mem.phase.stopped_by_operator() {
        return;
    }
    let grew = c.restart_count - prev_count;
    let detail = format!(
        "exited and restarted by its restart policy {} (restart count {prev_count} -> {}); \
         the exit was not seen as it happened",
        if grew == 1 {
            "once".to_string()
        } else {
            format!("{grew} times")
        },
        c.restart_count
    );
    signal_exit_detail(mem, settings, exited_at, nanos(exited_at), detail, at, out);
}

pub(super) fn note_restart_count(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    at: Timestamp,
    count: u64,
) {
    if let Some(&(_, last)) = mem.restart_samples.back() {
        if count < last {
            mem.restart_samples.clear();
        } else if count > last {
            mem.last_failure_at = Some(mem.last_failure_at.map_or(at, |t| t.max(at)));
        }
    }
    mem.restart_samples.push_back((at, count));
    let window_start = at.minus(settings.restart_loop_window);
    while mem.restart_samples.len() >= 2 && mem.restart_samples[1].0 <= window_start {
        mem.restart_samples.pop_front();
    }
}

/// Restarts within the window and since when: the larger of die→start cycles and RestartCount
/// growth (both count the same restarts when both are visible).
pub(super) fn restarts_in_window(
    mem: &ContainerMemory,
    settings: &EvalSettings,
    now: Timestamp,
) -> (u64, Option<Timestamp>) {
    let window = settings.restart_loop_window;
    let mut cycles = mem.recent_cycles(now, window);
    let first_cycle = cycles.next().copied();
    let cycle_count = first_cycle.map_or(0, |_| 1 + cycles.count() as u64);
    let growth = match (mem.restart_samples.front(), mem.restart_samples.back()) {
        (Some(&(t0, c0)), Some(&(_, c1))) => (c1.saturating_sub(c0), Some(t0)),
        _ => (0, None),
    };
    if growth.0 > cycle_count {
        growth
    } else {
        (cycle_count, first_cycle)
    }
}

/// The restart-loop signal as of `now`: active from `restarts` restarts within the window until
/// a full window passes without a failure.
pub(super) fn evaluate_loop(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    now: Timestamp,
) -> Option<Signal> {
    let (count, first) = restarts_in_window(mem, settings, now);
    if !mem.loop_active && count >= u64::from(settings.restart_loop_restarts.max(1)) {
        mem.loop_active = true;
    } else if mem.loop_active
        && mem
            .last_failure_at
            .is_none_or(|t| now.since(t) >= settings.restart_loop_window)
    {
        mem.loop_active = false;
        return Some(mem.inactive(SignalKind::ContainerRestartLoop, now));
    }
    if mem.loop_active {
        let span = first.map_or(Duration::ZERO, |f| now.since(f));
        let detail = format!(
            "restarted {count} times in {}; manual action needed",
            human_duration(span)
        );
        Some(mem.signal(
            SignalKind::ContainerRestartLoop,
            true,
            Severity::High,
            detail,
            now,
        ))
    } else {
        Some(mem.inactive(SignalKind::ContainerRestartLoop, now))
    }
}

/// State-derived signals from one container's sweep snapshot.
pub(super) fn sweep_lifecycle(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    c: &ContainerDetails,
    at: Timestamp,
    out: &mut Vec<Signal>,
) {
    match c.state {
        RunState::Running => {
            mem.phase.seen_running();
            mem.health_streak = c.health_failing_streak;
            if c.health == Health::Unhealthy {
                let detail = health_detail(c.health_failing_streak);
                out.push(mem.signal(
                    SignalKind::ContainerUnhealthy,
                    true,
                    Severity::High,
                    detail,
                    at,
                ));
            } else {
                out.push(healthy_again(mem, c.health, at));
            }
            if mem.phase.held_kill().is_none() {
                clear_edges(mem, at, out);
            }
        }
        RunState::Exited | RunState::Dead => {
            clear_running_levels(mem, at, out);
            sweep_exit(mem, settings, c, at, out);
        }
        RunState::Created
        | RunState::Paused
        | RunState::Restarting
        | RunState::Removing
        | RunState::Unknown => {
            out.push(mem.inactive(SignalKind::ContainerUnhealthy, at));
        }
    }
}

/// An exited container in a sweep: repeat an exit we already signalled, or judge one we never
/// saw (it died while the watchdog was down, or the event was lost) exactly once.
pub(super) fn sweep_exit(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    c: &ContainerDetails,
    at: Timestamp,
    out: &mut Vec<Signal>,
) {
    let Some(finished) = c.finished_at else {
        return;
    };
    if let Some(held) = mem.phase.held_kill()
        && close(held.at, finished)
        && c.oom_killed
    {
        mem.phase.take_held_kill();
        signal_oom(mem, settings, held.at, held.time_nano, out);
        return;
    }
    let known = |t: Option<Timestamp>| t.is_some_and(|t| close(t, finished));
    if known(mem.exit_signalled_at) {
        if let Some((occ, detail)) = mem.exit_active.clone() {
            out.push(
                mem.signal(
                    SignalKind::ContainerExited,
                    true,
                    Severity::High,
                    detail,
                    at,
                )
                .with_occurrence(occ),
            );
        }
        return;
    }
    if known(mem.oom_signalled_at) {
        if let Some((occ, detail)) = mem.oom_active.clone() {
            out.push(
                mem.signal(
                    SignalKind::ContainerOomKilled,
                    true,
                    Severity::High,
                    detail,
                    at,
                )
                .with_occurrence(occ),
            );
        }
        return;
    }
    if mem.phase.stopped_by_operator()
        || known(mem.last_die_at)
        || mem.phase.held_kill().is_some()
        || mem.sweep_judged_finish == Some(finished)
    {
        return;
    }
    mem.sweep_judged_finish = Some(finished);
    if c.oom_killed {
        signal_oom(mem, settings, finished, nanos(finished), out);
    } else if vigil_docker::labels::is_stop_signal_exit(c.exit_code) {
        // Only a signal from outside ends a container with these codes: someone stopped it.
        mem.phase.stop_signal_exit();
    } else if c.exit_code != 0 {
        signal_exit(
            mem,
            settings,
            finished,
            nanos(finished),
            c.exit_code,
            at,
            out,
        );
    }
}
