//! Status page drawing time at 1,000 containers (issue 14: under 1 s server side), measured in
//! process: a board fed by synthetic sweeps (every container with a full day of state changes
//! and action marks, the worst case for the strips), then `GET /`'s and `/api/status`'s work
//! (snapshot plus HTML or JSON) timed over several repetitions. Also reports the history's
//! memory against its documented bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vigil_shared::docker::{ContainerDetails, ContainerRef, Health, RunState};
use vigil_shared::time::Timestamp;
use vigil_watchdog::collect::{Observation, Sweep};
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
