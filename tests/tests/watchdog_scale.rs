//! The watchdog at scale on the real engine: 200 running containers in scope with a 5 s sweep
//! interval. A sweep that has to list and inspect them all is slow on a loaded machine, and the
//! stats of 200 containers take several of the engine's collector ticks, but neither is the
//! engine failing: no `docker_unreachable`, no sweep failure, and the sweeps keep coming.
//! (How long the sweep takes is measured by `bench`, not asserted here.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use vigil_tests::docker::{Container, RunningContainer, require_engine};
use vigil_tests::watchdog_proc::{Sinks, WatchdogBuilder, poll_until};

const N: usize = 200;
/// Threads starting (and removing) containers at once.
const PARALLEL: usize = 10;

/// `GET /metrics` as text.
fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
}

/// The value of the sample line starting with `key ` (0 when absent).
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn in_parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(PARALLEL).max(1);
    let mut items = items;
    let mut chunks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        chunks.push(std::mem::replace(&mut items, rest));
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread"))
            .collect()
    })
}

#[test]
fn two_hundred_containers_at_a_five_second_interval_raise_no_docker_unreachable() {
    require_engine();
    let sinks = Sinks::start();
    let builder = WatchdogBuilder::new()
        .sinks(&sinks)
        .env("WATCHDOG_INTERVAL", "5s");
    let builders: Vec<Container> = (0..N)
        .map(|i| {
            builder
                .scoped(Container::new().name_hint(&format!("scale{i}")))
                .command(&["sleep", "600"])
        })
        .collect();
    let containers: Vec<RunningContainer> = in_parallel(builders, Container::start);
    assert_eq!(containers.len(), N);

    let mut wd = builder.start();
    let addr = wd.listen().expect("the test watchdog listens");
    // Every container inspected once (the first sweep), then at least four more sweeps.
    let mut last = String::new();
    let swept = poll_until(Duration::from_secs(120), || {
        last = metrics(addr);
        sample(
            &last,
            r#"vigil_watchdog_sweep_containers_total{how="inspected"}"#,
        ) >= N as f64
            && sample(&last, "vigil_watchdog_sweep_duration_seconds_count") >= 5.0
    });
    assert!(swept, "five sweeps of {N} containers within 120 s:\n{last}");

    let unreachable = |m: &String| m.contains("docker_unreachable");
    let messages: Vec<String> = sinks
        .telegram_messages()
        .into_iter()
        .chain(sinks.slack_messages())
        .collect();
    assert!(
        !messages.iter().any(unreachable),
        "no docker_unreachable message: {messages:#?}"
    );
    let lines = wd
        .process
        .matching_lines(|l| l.contains("docker_unreachable") || l.contains("Sweep failed"));
    assert!(lines.is_empty(), "{lines:#?}");
    assert_eq!(
        sample(
            &last,
            r#"vigil_watchdog_signals_firing{kind="docker_unreachable"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &last,
            r#"vigil_watchdog_docker_api_failures_total{source="docker_sweep"}"#
        ),
        0.0,
        "{last}"
    );
    // Later sweeps reuse what did not change.
    assert!(
        sample(
            &last,
            r#"vigil_watchdog_sweep_containers_total{how="reused"}"#
        ) >= N as f64,
        "{last}"
    );
    wd.assert_running("after five sweeps of 200 containers");
    drop(wd);
    in_parallel(containers, drop);
}
