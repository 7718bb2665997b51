//! Status page drawing time at 1,000 containers (issue 14: under 1 s server side), measured in
//! process: a board fed by synthetic sweeps (every container with a full day of state changes
//! and action marks, the worst case for the strips), then `GET /`'s and `/api/status`'s work
//! (snapshot plus HTML or JSON) timed over several repetitions. One container in ten fires an
//! alert with an open incident (each phase of the incident machine in turn) and twenty
//! silences and acks are active, so the incident list is drawn too. Also reports the history's
//! memory against its documented bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vigil_docker::{ContainerDetails, ContainerRef, Health, RunState};
use vigil_protocol::wire::Action;
use vigil_shared::time::Timestamp;
use vigil_watchdog::collect::{Observation, Sweep};
use vigil_watchdog::decide::AlertState;
use vigil_watchdog::incident::{Attempt, Incident, Phase};
use vigil_watchdog::operators::SilenceView;
use vigil_watchdog::operators::book::{Ack, Silence};
use vigil_watchdog::signals::{Severity, Signal, SignalKind, Subject};
use vigil_watchdog::status_page::board::{AuditView, TargetView};
use vigil_watchdog::status_page::history::{BYTES_PER_CONTAINER, MAX_MARKS, MAX_POINTS};
use vigil_watchdog::status_page::{Board, Meta, render};

pub struct PageResult {
    pub containers: usize,
    pub html_p50: Duration,
    pub html_max: Duration,
    pub json_p50: Duration,
    pub html_bytes: usize,
    pub history_bytes: usize,
    pub history_bound: usize,
}

fn details(i: usize, health: Health) -> ContainerDetails {
    ContainerDetails {
        container: ContainerRef {
            id: format!("{i:064x}"),
            name: format!("bench-page-{i}"),
            project: Some(format!("project-{}", i % 20)),
            service: Some(format!("service-{i}")),
        },
        image: "img".into(),
        labels: BTreeMap::new(),
        state: RunState::Running,
        health,
        health_failing_streak: 0,
        exit_code: 0,
        oom_killed: false,
        restart_count: 0,
        restart_policy: String::new(),
        started_at: None,
        finished_at: None,
        memory_limit: 0,
        last_probe: None,
        stop_timeout: None,
    }
}

struct Silences(Vec<Silence>, Vec<Ack>);

impl SilenceView for Silences {
    fn active_silences(&self, _now: Timestamp) -> Vec<Silence> {
        self.0.clone()
    }
    fn active_acks(&self, _now: Timestamp) -> Vec<Ack> {
        self.1.clone()
    }
}

/// One alert in ten, each with an incident in one of the machine's phases in turn.
fn incidents(board: &Board, containers: usize, now: i64) {
    let signals: Vec<Signal> = (0..containers)
        .step_by(10)
        .map(|i| {
            Signal::new(
                SignalKind::ContainerUnhealthy,
                true,
                Severity::High,
                Subject {
                    project: Some(format!("project-{}", i % 20)),
                    service: Some(format!("service-{i}")),
                    container: Some(format!("bench-page-{i}")),
                    container_id: Some(format!("{i:064x}")),
                    name: None,
                },
                "health check failing: <html> output",
                Timestamp(now - 600_000),
            )
        })
        .collect();
    let firing = AlertState::Firing {
        since: Timestamp(now - 600_000),
        last_notified: Timestamp(now - 600_000),
        count: 1,
        interval: Duration::from_secs(3600),
        occurrence: None,
    };
    board.set_alerts(signals.iter().map(|s| (s, &firing)));
    for (n, sig) in signals.iter().enumerate() {
        let at = Timestamp(now - 60_000);
        let phase = match n % 6 {
            0 => Phase::Due { at },
            1 => Phase::Requested {
                request_id: format!("r{n}"),
                expires_at: Timestamp(now + 60_000),
            },
            2 => Phase::Verifying {
                seq: n as u64 + 1,
                until: Timestamp(now + 60_000),
            },
            3 => Phase::Waiting {
                retry_at: Timestamp(now + 60_000),
                reason: "backoff".into(),
            },
            4 => Phase::GaveUp {
                reason: "protected".into(),
            },
            _ => Phase::Escalated,
        };
        let inc = Incident {
            key: sig.key.clone(),
            container_id: sig.subject.container_id.clone().unwrap_or_default(),
            container: sig.subject.container.clone().unwrap_or_default(),
            action: Action::Restart,
            reason: "unhealthy".into(),
            confidence: 0.9,
            detected_at: Timestamp(now - 600_000),
            phase,
            attempts: (0..3)
                .map(|a| Attempt {
                    request_id: format!("r{n}-{a}"),
                    issued_at: at,
                    outcome: Some("executed".into()),
                    seq: Some(n as u64 * 3 + a + 1),
                })
                .collect(),
            acted_at: Some(at),
            breaker_until: None,
        };
        board.note_incident(&sig.key, Some(&inc));
    }
    let silences = (0..20)
        .map(|i| Silence {
            id: format!("s{i:06x}"),
            target: format!("bench-page-{}", i * 10),
            reason: "bench".into(),
            by: "1 bench".into(),
            created_at: Timestamp(now - 1000),
            until: Timestamp(now + 3_600_000),
        })
        .collect();
    let acks = (0..20)
        .map(|i| Ack {
            container: format!("bench-page-{}", 500 + i * 10),
            by: "1 bench".into(),
            at: Timestamp(now - 1000),
            until: Timestamp(now + 3_600_000),
        })
        .collect();
    board.set_silences(std::sync::Arc::new(Silences(silences, acks)));
}

pub fn run(containers: usize, reps: usize) -> anyhow::Result<PageResult> {
    let board = Board::new(Meta {
        host: "bench".into(),
        deployment: "bench".into(),
        enabled: true,
        remediation_configured: true,
        started_at: Timestamp::now(),
    });
    let now = Timestamp::now().as_millis();
    // A day of flapping: more changes than the ring keeps, spread over the window.
    let flips = MAX_POINTS + 16;
    let step = 86_400_000 / i64::try_from(flips).unwrap_or(1);
    for f in 0..flips {
        let at = now - 86_400_000 + i64::try_from(f).unwrap_or(0) * step;
        let health = if f % 2 == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        let sweep = Sweep {
            at: Timestamp(at),
            containers: (0..containers).map(|i| details(i, health)).collect(),
        };
        board.observe(&Observation::Sweep(sweep), Timestamp(at));
    }
    let mut seq = 0u64;
    for m in 0..MAX_MARKS {
        for i in 0..containers {
            seq += 1;
            board.record_audit(
                AuditView {
                    request_id: None,
                    duration_ms: None,
                    seq,
                    ts: Some(Timestamp(
                        now - 3_600_000 + i64::try_from(m).unwrap_or(0) * 1000,
                    )),
                    action: Some("restart".into()),
                    target: Some(TargetView {
                        service: None,
                        id: Some(format!("{i:064x}")),
                        name: Some(format!("bench-page-{i}")),
                        project: None,
                    }),
                    decision: "executed".into(),
                    reason: "ok".into(),
                    result: None,
                    retry_at: None,
                },
                Timestamp(now),
            );
        }
    }
    incidents(&board, containers, now);
    let mut html_times = Vec::new();
    let mut json_times = Vec::new();
    let mut html_bytes = 0;
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        let html = render::page(&board.snapshot(Timestamp(now)))?;
        html_times.push(started.elapsed());
        html_bytes = html.len();
        let started = Instant::now();
        let json = serde_json::to_string(&board.snapshot(Timestamp(now)))?;
        json_times.push(started.elapsed());
        std::hint::black_box(json);
    }
    html_times.sort();
    json_times.sort();
    Ok(PageResult {
        containers,
        html_p50: html_times[html_times.len() / 2],
        html_max: *html_times.last().unwrap_or(&Duration::ZERO),
        json_p50: json_times[json_times.len() / 2],
        html_bytes,
        history_bytes: board.history_bytes(),
        history_bound: containers * BYTES_PER_CONTAINER,
    })
}
