//! Remediation end to end (issue 3 "End to end", issue 5 "a test scrapes both /metrics
//! endpoints"): the real `vigil-watchdog` and `vigil-executor` binaries, a real `redis-server`,
//! the machine's Docker engine and a fake Telegram and Slack.
//!
//! Two containers whose health check passes until the test breaks it (`/tmp/state` stops saying
//! `ok`); each one writes `ok` again when it starts, so a restart heals it:
//! - opted in (`vigil.remediate=true`): one alert, one signed request, one restart by the
//!   executor, one `executed` audit record, one outcome message;
//! - not opted in: one alert, and nothing else: no request, no audit record, no restart.
//!
//! During the incident both `/metrics` endpoints are scraped: the incident is counted on each
//! side (signal, alert, request, decision, action) and no label value names a container.
//! "Exactly one" means: one arrived, and after a settle period there is still one.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use vigil_tests::docker::RunningContainer;
use vigil_tests::executor_rig::started_at;
use vigil_tests::stack_rig::{Stack, break_health};
use vigil_tests::watchdog_proc::poll_until;

/// How long one step may take on a busy 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(30);
/// How long to keep watching after the expected effects arrived.
const SETTLE: Duration = Duration::from_secs(5);

fn executed_for<'a>(records: &'a [Value], c: &RunningContainer) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["decision"] == "executed" && r["target"]["id"] == c.id())
        .collect()
}

fn about(records: &[Value], c: &RunningContainer) -> usize {
    records
        .iter()
        .filter(|r| r["target"]["id"] == c.id() || r["target"]["name"] == c.name())
        .count()
}

fn is_alert(name: &str) -> impl Fn(&str) -> bool {
    let name = name.to_owned();
    move |m: &str| m.starts_with("ALERT") && m.contains("container_unhealthy") && m.contains(&name)
}

fn is_outcome(name: &str) -> impl Fn(&str) -> bool {
    let needle = format!("restarted {name}");
    move |m: &str| m.contains(&needle) && m.contains("(audit #")
}

/// `GET path` over HTTP/1.0; the body of a 200 answer.
fn scrape(addr: SocketAddr, path: &str) -> String {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("writing the request");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("reading the reply");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "GET {path} on {addr}: {head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("openmetrics-text") || path != "/metrics",
        "/metrics is OpenMetrics text: {head}"
    );
    body.to_owned()
}

/// One sample of an OpenMetrics text.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the samples of an OpenMetrics text (label values without escapes, as ours are).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv
                                .split_once("=\"")
                                .unwrap_or_else(|| panic!("bad label {kv:?} in {line:?}"));
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

/// Sum of the samples named `name` whose labels include every pair of `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// No label value may name a container: ids (full or short) and names stay out of metrics.
fn assert_no_container_in_labels(scrape: &[Sample], which: &str, containers: &[&RunningContainer]) {
    for s in scrape {
        for (k, v) in &s.labels {
            for c in containers {
                assert!(
                    !v.contains(&c.id()[..12]) && !v.contains(c.name()),
                    "{which}: label {k}={v:?} of {} names container {}",
                    s.name,
                    c.name()
                );
            }
        }
    }
}

#[test]
fn unhealthy_opted_in_container_is_restarted_once_and_unlabelled_is_only_alerted() {
    let stack = Stack::builder().executor().executor_metrics().start();
    let opted = stack.opted_in("optin").start();
    let plain = stack.healable("plain").start();
    opted.wait_for_health("healthy", ARRIVAL);
    plain.wait_for_health("healthy", ARRIVAL);
    let opted_started = started_at(&opted);
    let plain_started = started_at(&plain);

    // One after the other, so the two alerts are not grouped into one message.
    break_health(&plain);
    stack.sinks.expect_exactly(
        "alert for the unlabelled container",
        1,
        is_alert(plain.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    // People hear about it; the opted-in one is restarted and they are told so.
    break_health(&opted);
    stack.sinks.expect_exactly(
        "alert for the opted-in container",
        1,
        is_alert(opted.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    stack.sinks.expect_exactly(
        "outcome message for the opted-in container",
        1,
        is_outcome(opted.name()),
        ARRIVAL,
        Duration::ZERO,
    );

    // Both metrics endpoints, while the unlabelled container's signal still fires.
    let wd_text = scrape(
        stack.watchdog().listen().expect("a listen address"),
        "/metrics",
    );
    let ex_text = scrape(stack.executor_metrics(), "/metrics");
    let wd = samples(&wd_text);
    let ex = samples(&ex_text);
    let unhealthy = [("kind", "container_unhealthy")];
    assert!(
        sum(&wd, "vigil_watchdog_signals_firing", &unhealthy) >= 1.0,
        "signal firing:\n{wd_text}"
    );
    assert!(
        sum(
            &wd,
            "vigil_watchdog_decisions_total",
            &[("kind", "container_unhealthy"), ("decision", "alert")]
        ) >= 2.0,
        "two alerts decided:\n{wd_text}"
    );
    assert!(
        sum(&wd, "vigil_watchdog_detection_latency_seconds_count", &[]) >= 1.0,
        "alert latency observed:\n{wd_text}"
    );
    assert!(
        sum(
            &wd,
            "vigil_watchdog_notifications_total",
            &[("sink", "telegram"), ("outcome", "sent")]
        ) >= 3.0,
        "two alerts and an outcome sent to Telegram:\n{wd_text}"
    );
    assert!(
        sum(&wd, "vigil_watchdog_requests_published_total", &[]) >= 1.0,
        "request counted:\n{wd_text}"
    );
    if wd_text.contains("outcome=\"published\"") {
        assert_eq!(
            sum(
                &wd,
                "vigil_watchdog_requests_published_total",
                &[("outcome", "published")]
            ),
            1.0,
            "{wd_text}"
        );
    }
    assert_eq!(
        sum(
            &ex,
            "vigil_executor_requests_total",
            &[("decision", "executed"), ("reason", "ok")]
        ),
        1.0,
        "one executed decision:\n{ex_text}"
    );
    assert_eq!(
        sum(&ex, "vigil_executor_requests_total", &[]),
        1.0,
        "nothing else reached the executor:\n{ex_text}"
    );
    assert_eq!(
        sum(
            &ex,
            "vigil_executor_action_duration_seconds_count",
            &[("action", "restart")]
        ),
        1.0,
        "one restart timed:\n{ex_text}"
    );
    assert!(
        sum(&ex, "vigil_executor_audit_seq", &[]) >= 1.0,
        "{ex_text}"
    );
    assert_eq!(sum(&ex, "vigil_executor_redis_up", &[]), 1.0, "{ex_text}");
    assert_eq!(
        sum(&ex, "vigil_executor_circuit_open", &[]),
        0.0,
        "{ex_text}"
    );
    let age = sum(&ex, "vigil_executor_heartbeat_age_seconds", &[]);
    assert!(
        (0.0..15.0).contains(&age),
        "heartbeat is fresh: {age}\n{ex_text}"
    );
    assert_no_container_in_labels(&wd, "watchdog", &[&opted, &plain]);
    assert_no_container_in_labels(&ex, "executor", &[&opted, &plain]);

    // The restart really happened, and healed the container.
    assert!(
        poll_until(ARRIVAL, || started_at(&opted) != opted_started),
        "the opted-in container was not restarted\n{}",
        stack.describe()
    );
    opted.wait_for_health("healthy", ARRIVAL);

    // Settle, then count everything once more: nothing grew.
    std::thread::sleep(SETTLE);
    stack.sinks.expect_exactly(
        "alert for the opted-in container, after settling",
        1,
        is_alert(opted.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    stack.sinks.expect_exactly(
        "outcome message, after settling",
        1,
        is_outcome(opted.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    stack.sinks.expect_exactly(
        "alert for the unlabelled container, after settling",
        1,
        is_alert(plain.name()),
        ARRIVAL,
        Duration::ZERO,
    );
    for sink in [
        stack.sinks.telegram_messages(),
        stack.sinks.slack_messages(),
    ] {
        let alert = sink.iter().position(|m| is_alert(opted.name())(m));
        let outcome = sink.iter().position(|m| is_outcome(opted.name())(m));
        assert!(
            alert < outcome,
            "the alert comes before the outcome: {sink:#?}"
        );
    }

    let records = stack.records();
    assert_eq!(
        executed_for(&records, &opted).len(),
        1,
        "exactly one executed record for the opted-in container\n{}",
        stack.describe()
    );
    assert_eq!(
        records.len(),
        1,
        "no other record: {records:#?}\n{}",
        stack.describe()
    );
    assert_eq!(about(&records, &plain), 0, "{records:#?}");
    let requested: Vec<String> = stack.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        requested,
        vec![opted.id().to_owned()],
        "exactly one request, for the opted-in container"
    );
    assert_eq!(
        started_at(&plain),
        plain_started,
        "the unlabelled container was never touched"
    );
    assert_eq!(plain.health().as_deref(), Some("unhealthy"));

    let ex = samples(&scrape(stack.executor_metrics(), "/metrics"));
    assert_eq!(sum(&ex, "vigil_executor_requests_total", &[]), 1.0);

    stack.verify_audit();
}
