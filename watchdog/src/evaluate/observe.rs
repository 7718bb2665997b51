//! The tracker's two entry points: [`Tracker::observe`] hands each observation to the concern
//! that owns it; [`Tracker::tick`] runs what only the passing of time decides.

use super::lifecycle::signal_exit;
use super::probes::{executor_signal, on_dependency};
use super::*;

impl Tracker {
    pub fn observe(&mut self, obs: &Observation, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        match obs {
            Observation::Event(ev) => {
                self.docker_source_ok(SourceId::DockerEvents, ev.at(), &mut out);
                self.on_event(ev, &mut out);
            }
            Observation::Sweep(sweep) => {
                self.docker_source_ok(SourceId::DockerSweep, sweep.at, &mut out);
                self.on_sweep(sweep, &mut out);
            }
            Observation::Stats(batch) => self.on_stats(batch, &mut out),
            Observation::Host(h) => self.on_host(h, &mut out),
            Observation::Dependency(p) => on_dependency(p, &mut out),
            Observation::App(p) => self.on_app(p, &mut out),
            Observation::Source {
                source,
                at,
                ok,
                detail,
            } => match source {
                SourceId::DockerEvents | SourceId::DockerSweep => {
                    if *ok {
                        self.docker_source_ok(*source, *at, &mut out);
                    } else {
                        self.docker.fail(*source, *at, detail);
                        self.check_docker_debounce(now.max(*at), &mut out);
                    }
                }
                SourceId::Redis => self.on_redis(*at, *ok, detail, now, &mut out),
                // The link only reports the executor while Redis answers: a heartbeat read
                // from a reachable Redis is missing or stale.
                SourceId::Executor => out.push(executor_signal(*ok, detail, *at)),
                // Other sources report their failures through their own observations
                // (a failed probe), which is where their signals come from.
                SourceId::Host | SourceId::Dependencies | SourceId::App => {}
            },
        }
        out
    }

    pub fn tick(&mut self, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        self.check_docker_debounce(now, &mut out);
        self.check_redis_debounce(now, &mut out);
        let docker_ok = self.docker.is_clear();
        let settings = &self.settings;
        let mut ids: Vec<String> = self.containers.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let Some(mem) = self.containers.get_mut(&id) else {
                continue;
            };
            if let Some(held) = mem.phase.held_kill()
                && now.since(held.at) >= settings.oom_grace
            {
                mem.phase.take_held_kill();
                signal_exit(mem, settings, held.at, held.time_nano, 137, now, &mut out);
            }
            // Without Docker we would be concluding "no more dies" from silence.
            if docker_ok && mem.loop_active {
                let quiet = mem
                    .last_failure_at
                    .is_none_or(|t| now.since(t) >= settings.restart_loop_window);
                if quiet {
                    mem.loop_active = false;
                    out.push(mem.inactive(SignalKind::ContainerRestartLoop, now));
                }
            }
        }
        out
    }
}
