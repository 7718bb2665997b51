//! Delivery guarantees and formats (issue 12) against the fake Bot API, Slack and webhook:
//! a slow Telegram does not delay Slack, a 2xx `ok` whose body the client cannot fully read is
//! delivered once, and `test-notify` sends the new formats. The notifier runs in-process; no
//! container is involved.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_docker::ContainerRef;
use vigil_shared::time::Timestamp;
use vigil_tests::fakes::{FakeSlack, FakeTelegram, FakeWebhook, Reply};
use vigil_watchdog::config::NotifyConfig;
use vigil_watchdog::notify::{Notice, Notifier, Occasion, test_notify};
use vigil_watchdog::signals::{Severity, Signal, SignalKind, Subject};

const WAIT: Duration = Duration::from_secs(20);

fn config() -> NotifyConfig {
    NotifyConfig {
        group_window: Duration::ZERO,
        timeout: Duration::from_secs(10),
        ..NotifyConfig::default()
    }
}

fn notice(n: usize) -> Notice {
    let c = ContainerRef {
        id: format!("id{n}"),
        name: format!("app{n}-web-1"),
        project: Some(format!("app{n}")),
        service: Some("web".to_string()),
    };
    let sig = Signal::new(
        SignalKind::ContainerUnhealthy,
        true,
        Severity::High,
        Subject::container(&c),
        "health check failing",
        Timestamp::now(),
    );
    Notice::new(Occasion::Alert, sig, "host-test")
}

/// Sends `count` notices at once and returns, for each, how long after enqueueing Slack received
/// it (measured at the fake).
async fn slack_latencies(telegram_delay: Duration, count: usize) -> Vec<Duration> {
    let tg = FakeTelegram::start_with_delay(telegram_delay).await;
    let slack = FakeSlack::start().await;
    let mut cfg = config();
    let mut tg_cfg = tg.config("42");
    tg_cfg.commands = false;
    cfg.telegram = Some(tg_cfg);
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());
    let mut sent_at = Vec::new();
    for i in 0..count {
        sent_at.push(Instant::now());
        notifier.enqueue(notice(i));
        // Spaced out, so a later message would queue behind a slow call if sinks were coupled.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    slack.wait_for(count, WAIT).await;
    let reqs = slack.requests();
    assert_eq!(reqs.len(), count, "{reqs:?}");
    let latencies = reqs
        .iter()
        .zip(&sent_at)
        .map(|(r, t)| r.at.saturating_duration_since(*t))
        .collect();
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_telegram_does_not_delay_slack() {
    // Baseline with a fast Telegram, then with 5 s per call; compare the slowest Slack delivery
    // of each (best of 3 runs, so a machine busy for a moment does not decide).
    let mut best_extra = Duration::MAX;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let fast = slack_latencies(Duration::ZERO, 3).await;
        let slow = slack_latencies(Duration::from_secs(5), 3).await;
        let fast_max = fast.iter().max().copied().unwrap_or_default();
        let slow_max = slow.iter().max().copied().unwrap_or_default();
        best_extra = best_extra.min(slow_max.saturating_sub(fast_max));
        seen.push((fast, slow));
        if best_extra <= Duration::from_millis(100) {
            break;
        }
    }
    assert!(
        best_extra <= Duration::from_millis(100),
        "a slow Telegram delayed Slack by {best_extra:?}; runs (fast, slow): {seen:?}"
    );
}

#[tokio::test]
async fn an_ok_answer_the_client_cannot_fully_read_is_delivered_once() {
    let tg = FakeTelegram::start().await;
    tg.set_default_reply(Some(Reply::json(
        200,
        serde_json::json!({"ok": true, "result": {"message_id": 1}}),
    )));
    let mut cfg = config();
    let mut tg_cfg = tg.config("42");
    tg_cfg.commands = false;
    cfg.telegram = Some(tg_cfg);
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());
    notifier.enqueue(notice(1));
    tg.wait_for_requests(1, WAIT).await;
    // Longer than the first retry wait (1 s) and then some.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(tg.request_count(), 1, "never retried: {:?}", tg.requests());
    let stats = notifier.stats().sink("telegram").expect("telegram sink");
    assert_eq!(stats.sent.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 0);
    cancel.cancel();
    let _ = handle.await;
}

#[tokio::test]
async fn test_notify_sends_the_new_formats() {
    let tg = FakeTelegram::start().await;
    let slack = FakeSlack::start().await;
    let hook = FakeWebhook::start().await;
    let mut cfg = config();
    cfg.telegram = Some(tg.config("42"));
    cfg.slack = Some(slack.config());
    cfg.webhook = Some(hook.config());
    let results = test_notify(&cfg, "host-test").await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");

    // Telegram: HTML that the fake parsed (it refuses what does not), markup escaped.
    let raw = tg.raw_messages();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["parse_mode"], "HTML");
    let html = raw[0]["text"].as_str().expect("text");
    assert!(html.starts_with("<b>Vigil test notification"), "{html}");
    assert!(html.contains("<pre>&lt;ok&gt; &amp; done</pre>"), "{html}");
    assert!(
        tg.messages()[0].contains("<ok> & done"),
        "{:?}",
        tg.messages()
    );

    // Slack: Block Kit inside a coloured attachment.
    let p = &slack.payloads()[0];
    let att = &p["attachments"][0];
    assert!(
        att["color"].as_str().is_some_and(|c| c.starts_with('#')),
        "{p}"
    );
    assert_eq!(att["blocks"][0]["type"], "header");
    assert_eq!(att["blocks"][1]["type"], "section");
    assert_eq!(att["blocks"][1]["text"]["type"], "mrkdwn");

    // Webhook: the versioned schema.
    let doc = &hook.payloads()[0];
    assert_eq!(doc["v"], 1);
    assert_eq!(doc["schema"], "vigil.notification");
    assert_eq!(doc["host"], "host-test");
}
