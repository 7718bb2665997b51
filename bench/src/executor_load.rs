//! The executor under load: restarts of slow containers side by side, and the rejection rate of
//! a large forged flood (the flood itself is [`crate::footprint::flood`]).
//!
//! Parallel restarts: `n` opted-in containers that ignore SIGTERM and have a stop grace of
//! `grace`, one signed restart request for each sent at once to the running release executor
//! (which uses each container's own grace). The time is from the first request to the last
//! `executed` record, which the executor writes once the engine's restart call has returned.

use crate::footprint::Executor;
use crate::{Bench, fleet::Group, interrupt};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_protocol::signing::Signer;
use vigil_protocol::wire::{Action, Payload, Reason, Target};
use vigil_shared::time::Timestamp;

/// The parallel-restart measurement.
#[derive(Debug, Clone)]
pub struct ParallelRestarts {
    pub containers: usize,
    pub grace: Duration,
    /// First request sent to the last restart recorded.
    pub elapsed: Duration,
}

/// Restarts `n` slow containers (stop grace `grace`) at once through `executor`.
pub fn parallel_restarts(
    bench: &Bench,
    executor: &mut Executor,
    group: &Group,
    n: usize,
    grace: Duration,
) -> Result<ParallelRestarts> {
    let containers = (0..n)
        .map(|i| {
            group
                .container(i)
                .shell("trap '' TERM; while :; do sleep 1; done")
                .label(labels::REMEDIATE, "true")
                .arg(&format!("--stop-timeout={}", grace.as_secs()))
        })
        .collect();
    let ids = group.start_all(containers)?;
    let signer = Signer::from_key_file(bench.key_id.clone(), &bench.key_file)
        .context("loading the signing key")?;
    let envelopes = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let payload = Payload::new(
                crate::DEPLOYMENT,
                Action::Restart,
                Target {
                    id: id.clone(),
                    name: group.name(i),
                    project: None,
                    service: None,
                },
                Reason::new("container_unhealthy", "high", "vigil-bench parallel", 0.9),
                Timestamp::now(),
            );
            let request_id = payload.id.to_string();
            signer.sign(&payload).map(|e| (request_id, e.to_json()))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("signing the requests")?;
    let mut waiting: HashSet<String> = envelopes.iter().map(|(id, _)| id.clone()).collect();
    eprintln!(
        "bench: parallel restarts: {n} containers, {} s stop grace",
        grace.as_secs()
    );
    let started = Instant::now();
    bench
        .send_envelopes(envelopes.iter().map(|(_, e)| e.as_str()))
        .context("sending the requests")?;
    let timeout = grace * (n as u32 + 2);
    let mut problem = None;
    let done = interrupt::poll_until(timeout, Duration::from_millis(20), || {
        executor.daemon.require_running()?;
        let text = std::fs::read_to_string(&executor.audit_file).unwrap_or_default();
        for line in text.lines().rev() {
            let rec: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let Some(id) = rec["request_id"].as_str() else {
                continue;
            };
            if !waiting.contains(id) || rec["decision"] == "intent" {
                continue;
            }
            if rec["decision"] != "executed" {
                problem = Some(format!("request {id}: {rec}"));
            }
            waiting.remove(id);
        }
        Ok(waiting.is_empty())
    })?;
    let elapsed = started.elapsed();
    if let Some(p) = problem {
        bail!("a restart was not executed: {p}");
    }
    if !done {
        bail!(
            "{} of {n} restarts not recorded within {timeout:?}",
            waiting.len()
        );
    }
    Ok(ParallelRestarts {
        containers: n,
        grace,
        elapsed,
    })
}
