//! Flap damping against the real engine (issue 12, a long test): 5 containers whose health flips
//! every 20 s for 10 minutes cost at most 3 messages per container per sink. `VIGIL_FLAP_SECS`
//! shortens the run when exploring (the assertion is the same).

use std::thread;
use std::time::{Duration, Instant};
use vigil_tests::docker::{Container, Healthcheck, require_engine};
use vigil_tests::watchdog_proc::{Sinks, WatchdogBuilder};

#[test]
fn five_containers_flapping_for_ten_minutes_cost_at_most_three_messages_each() {
    require_engine();
    let secs: u64 = std::env::var("VIGIL_FLAP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let sinks = Sinks::start();
    let wd = WatchdogBuilder::new().sinks(&sinks).start();
    // Healthy for 20 s, unhealthy for 20 s, and so on (the probe reads a file the main loop
    // fills and empties).
    let containers: Vec<_> = (0..5)
        .map(|i| {
            wd.scoped(Container::new().name_hint(&format!("flap{i}")))
                .healthcheck(Healthcheck::new("test -s /tmp/ok"))
                .shell(
                    "trap 'exit 0' TERM; while :; do echo ok > /tmp/ok; sleep 20; : > /tmp/ok; \
                     sleep 20; done",
                )
                .start()
        })
        .collect();
    let started = Instant::now();
    let mut first_alert_seen = false;
    while started.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(10));
        first_alert_seen |= sinks
            .telegram_messages()
            .iter()
            .any(|m| m.starts_with("ALERT"));
    }
    assert!(
        first_alert_seen,
        "the flapping was detected at all: {}",
        sinks.describe()
    );
    let mut flapping_said = 0;
    for c in &containers {
        let tg = sinks
            .telegram_messages()
            .into_iter()
            .filter(|m| m.contains(c.name()))
            .collect::<Vec<_>>();
        let slack = sinks
            .slack_messages()
            .into_iter()
            .filter(|m| m.contains(c.name()))
            .collect::<Vec<_>>();
        assert!(
            tg.len() <= 3 && slack.len() <= 3,
            "{}: {} telegram and {} slack messages: {tg:#?} {slack:#?}",
            c.name(),
            tg.len(),
            slack.len()
        );
        if tg
            .iter()
            .any(|m| m.contains("FLAPPING") || m.contains("flapping"))
        {
            flapping_said += 1;
        }
    }
    assert!(
        flapping_said >= 1,
        "at least one container was called flapping: {}",
        sinks.describe()
    );
}
