//! Event-to-alert and event-to-restart-issued latency on the real engine.
//!
//! One phase creates `n + 1` distinct containers (distinct, so no restart-loop folding hides an
//! exit), each blocked on its own FIFO and exiting with code 3 once released; a release build of
//! the watchdog watches exactly them (a scope label unique to the phase) with grouping off and a
//! local webhook as its only remote sink. Container 0 is a warm-up incident: it proves the event
//! stream, the sink (and in request mode the request publisher) are live and is not counted.
//! The others are released one at a time, [`SPACING`] apart.
//!
//! Clocks: the start of each latency is the engine's own `die` time (`timeNano`, read from our
//! own `/events` subscription); the end is the moment our webhook received the alert (this
//! process's wall clock) or the request's stream entry id (Redis stream ids are the insertion
//! time in Unix milliseconds, so request latencies have 1 ms resolution). All three clocks are
//! this machine's.

use crate::fleet::{Group, Triggers};
use crate::interrupt;
use crate::{Bench, daemon::Daemon};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_docker::EventAction;
use vigil_docker::labels;
use vigil_protocol::wire::Envelope;
use vigil_tests::fakes::{FakeServer, Recorded, Reply, Responder};

/// Time between two incidents.
pub const SPACING: Duration = Duration::from_millis(300);
/// How long the warm-up incident may take end to end (start-up sweep included).
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the last release every incident must have arrived.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The exit code of every incident.
const EXIT_CODE: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Die event to the webhook receiving the `container_exited` alert (grouping off).
    Alert,
    /// The same with the default configuration (2 s grouping window): each incident container
    /// is the only one of its compose project, so each alert is its project's first, which
    /// leading-edge grouping sends at once.
    AlertDefault,
    /// Die event to the signed request's entry in the requests stream.
    Request,
}

/// Latencies of one phase, in milliseconds, in incident order.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub incidents: usize,
    pub samples_ms: Vec<f64>,
    /// Incidents with no die event or no alert/request within the drain timeout.
    pub missing: usize,
    /// For the same incidents: the engine's die time to our own `/events` reader getting it.
    pub delivery_ms: Vec<f64>,
}

/// Container ids are compared by their first 12 hex digits (every API form has at least these).
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A webhook receiver recording when each request arrived.
pub struct Webhook {
    server: FakeServer,
    receipts: Arc<Mutex<Vec<(i64, String)>>>,
}

impl Webhook {
    pub fn start(rt: &tokio::runtime::Runtime) -> Webhook {
        let receipts: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let sink = receipts.clone();
        let responder: Responder = Arc::new(move |rec: &Recorded, _| {
            let at = now_nanos();
            if let Ok(mut r) = sink.lock() {
                r.push((at, rec.body.clone()));
            }
            Reply::json(200, serde_json::json!({"received": true}))
        });
        let server = rt.block_on(FakeServer::start(responder));
        Webhook { server, receipts }
    }

    pub fn url(&self) -> String {
        format!("{}/hooks/vigil", self.server.base_url())
    }

    /// First receipt time of a `container_exited` alert per container (short id).
    fn exit_alerts(&self) -> HashMap<String, i64> {
        let mut first = HashMap::new();
        let receipts = self.receipts.lock().map(|r| r.clone()).unwrap_or_default();
        for (at, body) in receipts {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            for notice in doc["notices"].as_array().into_iter().flatten() {
                if notice["kind"] == "container_exited"
                    && notice["occasion"] == "alert"
                    && let Some(id) = notice["subject"]["container_id"].as_str()
                {
                    first.entry(short(id)).or_insert(at);
                }
            }
        }
        first
    }
}

/// Per container (short id): the die event's engine time (`timeNano`) and when our own event
/// subscription read it (Unix ns), which tells how long the engine takes to deliver an event.
struct DieLog {
    dies: Arc<Mutex<HashMap<String, (i64, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DieLog {
    fn start(bench: &Bench) -> Result<DieLog> {
        let mut stream = bench
            .rt
            .block_on(bench.client.events(None))
            .context("subscribing to the engine's events")?;
        let dies: Arc<Mutex<HashMap<String, (i64, i64)>>> = Arc::default();
        let sink = dies.clone();
        let task = bench.rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let read_at = now_nanos();
                if let Ok(ev) = item
                    && matches!(ev.action, EventAction::Die { .. })
                    && let Ok(mut d) = sink.lock()
                {
                    d.entry(short(&ev.container.id))
                        .or_insert((ev.time_nano, read_at));
                }
            }
        });
        Ok(DieLog { dies, task })
    }

    fn get(&self, id: &str) -> Option<(i64, i64)> {
        self.dies.lock().ok()?.get(&short(id)).copied()
    }
}

impl Drop for DieLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Request entries per target container (short id): the entry's insertion time in Unix ms.
fn request_entries(bench: &Bench) -> Result<HashMap<String, i64>> {
    let redis = bench.redis()?;
    let reply: redis::streams::StreamRangeReply = bench
        .rt
        .block_on(async {
            let mut conn = redis.conn.clone();
            redis::cmd("XRANGE")
                .arg(redis.names.requests())
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
        })
        .context("XRANGE of the requests stream")?;
    let mut out = HashMap::new();
    for entry in reply.ids {
        let Some(ms) = entry
            .id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse::<i64>().ok())
        else {
            continue;
        };
        let Some(raw) = entry.get::<String>(vigil_protocol::names::ENVELOPE_FIELD) else {
            continue;
        };
        let Ok(envelope) = Envelope::parse(raw.as_bytes()) else {
            continue;
        };
        let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(&envelope.payload)
        else {
            continue;
        };
        let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        if let Some(id) = payload["target"]["id"].as_str() {
            out.entry(short(id)).or_insert(ms);
        }
    }
    Ok(out)
}

/// Arrival times (Unix ns) per container (short id).
fn arrivals(bench: &Bench, measure: Measure, webhook: &Webhook) -> Result<HashMap<String, i64>> {
    match measure {
        Measure::Alert | Measure::AlertDefault => Ok(webhook.exit_alerts()),
        Measure::Request => Ok(request_entries(bench)?
            .into_iter()
            .map(|(id, ms)| (id, ms * 1_000_000))
            .collect()),
    }
}

/// Runs one phase of `n` measured incidents (plus the warm-up).
pub fn run(bench: &Bench, measure: Measure, n: usize) -> Result<Latencies> {
    let group = bench.guard.group();
    let dir = bench.work.join(format!("trig-{}", group.id()));
    let triggers = Triggers::create(&dir, n + 1)?;
    let containers = (0..=n)
        .map(|i| {
            let c = group
                .container(i)
                .arg("-v")
                .arg(&triggers.volume())
                .shell(&Triggers::script(i, EXIT_CODE));
            match measure {
                Measure::Alert => c,
                Measure::AlertDefault => {
                    c.compose(&format!("bench-{}-{i}", &group.id()[..8]), "app")
                }
                Measure::Request => c.label(labels::REMEDIATE, "true"),
            }
        })
        .collect();
    eprintln!("bench: {measure:?} latency: starting {} containers", n + 1);
    let result = measure_with(bench, measure, n, &group, &triggers, containers);
    if let Err(e) = group.remove() {
        eprintln!("bench: removing the phase's containers failed: {e:#}");
    }
    result
}

fn measure_with(
    bench: &Bench,
    measure: Measure,
    n: usize,
    group: &Group,
    triggers: &Triggers,
    containers: Vec<vigil_tests::docker::Container>,
) -> Result<Latencies> {
    let group_ids = group.start_all(containers)?;
    let dies = DieLog::start(bench)?;
    let webhook = Webhook::start(&bench.rt);
    let with_redis = measure == Measure::Request;
    let mut env = bench.watchdog_env(&group.label(), &webhook.url(), with_redis)?;
    if measure == Measure::AlertDefault {
        env.retain(|(k, _)| k != "WATCHDOG_NOTIFY__GROUP_WINDOW");
    }
    let mut watchdog = Daemon::spawn(
        &format!("watchdog-{}", format!("{measure:?}").to_lowercase()),
        &bench.watchdog_bin,
        &env,
        &bench.work,
    )?;
    watchdog.wait_for_log("Notifications started", Duration::from_secs(30))?;
    let window = if measure == Measure::AlertDefault {
        "group_window_ms=2000"
    } else {
        "group_window_ms=0"
    };
    if !watchdog.log_text().contains(window) {
        eprintln!("bench: warning: the watchdog's log does not show notify.{window}");
    }

    // Warm-up: the first incident proves the whole path is live.
    triggers.fire(0)?;
    let warm = &group_ids[0];
    let arrived = interrupt::poll_until(WARM_UP_TIMEOUT, Duration::from_millis(20), || {
        watchdog.require_running()?;
        Ok(arrivals(bench, measure, &webhook)?.contains_key(&short(warm)))
    })?;
    if !arrived {
        let alerted = webhook.exit_alerts().contains_key(&short(warm));
        bail!(
            "the warm-up incident produced no {} within {WARM_UP_TIMEOUT:?} (alert {}); the \
             watchdog's log ends with:\n{}",
            match measure {
                Measure::Alert | Measure::AlertDefault => "alert",
                Measure::Request => "request",
            },
            if alerted { "arrived" } else { "missing too" },
            watchdog.log_tail(30)
        );
    }

    eprintln!("bench: {measure:?} latency: {n} incidents, {SPACING:?} apart");
    for i in 1..=n {
        triggers.fire(i)?;
        interrupt::pause(SPACING)?;
    }
    let measured = &group_ids[1..];
    interrupt::poll_until(DRAIN_TIMEOUT, Duration::from_millis(100), || {
        let got = arrivals(bench, measure, &webhook)?;
        Ok(measured.iter().all(|id| got.contains_key(&short(id))))
    })?;
    watchdog.require_running()?;
    let got = arrivals(bench, measure, &webhook)?;
    let mut out = Latencies {
        incidents: n,
        ..Latencies::default()
    };
    for id in measured {
        match (dies.get(id), got.get(&short(id))) {
            (Some((die, read_at)), Some(at)) => {
                out.samples_ms.push((*at - die) as f64 / 1e6);
                out.delivery_ms.push((read_at - die) as f64 / 1e6);
            }
            _ => out.missing += 1,
        }
    }
    drop(watchdog);
    let round = |v: &[f64]| {
        v.iter()
            .map(|x| (x * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    eprintln!(
        "bench: {measure:?} latency (ms, incident order): {:?}",
        round(&out.samples_ms)
    );
    eprintln!(
        "bench: die event delivery to our own reader (ms, incident order): {:?}",
        round(&out.delivery_ms)
    );
    Ok(out)
}

/// The nearest-rank percentile `p` (0..=100) of `samples`.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
