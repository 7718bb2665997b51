//! Notification delivery against local fakes of Telegram, Slack and a webhook: retries deliver
//! exactly once, permanent failures are not retried, a full queue drops the oldest without ever
//! blocking detection, and no secret leaks into an error.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_docker::ContainerRef;
use vigil_shared::time::Timestamp;
use vigil_tests::fakes::{FAKE_TELEGRAM_TOKEN, FakeSlack, FakeTelegram, FakeWebhook};
use vigil_watchdog::config::NotifyConfig;
use vigil_watchdog::notify::{Notice, Notifier, Occasion, SendError, test_notify};
use vigil_watchdog::signals::{Severity, Signal, SignalKind, Subject};

const WAIT: Duration = Duration::from_secs(10);

fn config() -> NotifyConfig {
    NotifyConfig {
        group_window: Duration::ZERO,
        queue_capacity: 64,
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        telegram: None,
        slack: None,
        webhook: None,
        ..NotifyConfig::default()
    }
}

fn notice(project: &str, n: usize) -> Notice {
    let c = ContainerRef {
        id: format!("id{n}"),
        name: format!("{project}-web-{n}"),
        project: Some(project.to_string()),
        service: Some("web".to_string()),
    };
    let sig = Signal::new(
        SignalKind::ContainerUnhealthy,
        true,
        Severity::High,
        Subject::container(&c),
        "health check failed 3 times",
        Timestamp::now(),
    );
    Notice::new(Occasion::Alert, sig, "host-test")
}

/// Gives a sink's worker time to make any (wrong) extra attempt after the expected ones.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn telegram_rate_limit_then_success_delivers_exactly_once() {
    let tg = FakeTelegram::start().await;
    tg.rate_limit_first(1, 1);
    let mut cfg = config();
    cfg.telegram = Some(tg.config("-100200300"));
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    let started = Instant::now();
    notifier.enqueue(notice("shop", 1));
    let texts = tg.wait_for(1, WAIT).await;
    assert_eq!(
        texts.len(),
        1,
        "delivered after the rate limit: {:?}",
        tg.requests()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "retry_after 1 s was honoured"
    );
    quiet_period().await;

    let reqs = tg.requests();
    assert_eq!(reqs.len(), 2, "one 429, one success: {reqs:?}");
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 200);
    assert_eq!(tg.messages().len(), 1);
    assert_eq!(tg.chat_ids(), ["-100200300"]);
    assert!(
        reqs[1].path.to_ascii_lowercase().ends_with("/sendmessage"),
        "{}",
        reqs[1].path
    );
    let text = &texts[0];
    for want in [
        "host-test",
        "shop",
        "web",
        "shop-web-1",
        "container_unhealthy",
        "high",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    let stats = notifier
        .stats()
        .sink("telegram")
        .expect("telegram sink is running");
    assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 0);

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn slack_server_error_then_success_delivers_exactly_once() {
    let slack = FakeSlack::start().await;
    slack.fail_next(1, 500);
    let mut cfg = config();
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    notifier.enqueue(notice("shop", 1));
    let texts = slack.wait_for(1, WAIT).await;
    assert_eq!(texts.len(), 1, "{:?}", slack.requests());
    quiet_period().await;

    let reqs = slack.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 200]
    );
    let payload = &slack.payloads()[0];
    assert!(
        payload["text"]
            .as_str()
            .is_some_and(|t| t.contains("container_unhealthy"))
    );
    assert!(
        payload["attachments"][0]["color"]
            .as_str()
            .is_some_and(|c| c.starts_with('#'))
    );
    assert!(texts[0].contains("shop-web-1"), "{}", texts[0]);
    let stats = notifier
        .stats()
        .sink("slack")
        .expect("slack sink is running");
    assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn slack_rate_limit_honours_retry_after() {
    let slack = FakeSlack::start().await;
    slack.rate_limit_next(2);
    let mut cfg = config();
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    let started = Instant::now();
    notifier.enqueue(notice("shop", 1));
    assert_eq!(slack.wait_for(1, WAIT).await.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "Retry-After: 2 was honoured"
    );
    assert_eq!(slack.request_count(), 2);

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn slack_client_error_is_not_retried() {
    let slack = FakeSlack::start().await;
    slack.fail_always(400);
    let mut cfg = config();
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    notifier.enqueue(notice("shop", 1));
    slack.wait_for_requests(1, WAIT).await;
    // Longer than the first backoff (1 s): a retry would have happened by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(slack.request_count(), 1, "a 400 is permanent");
    let stats = notifier
        .stats()
        .sink("slack")
        .expect("slack sink is running");
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn webhook_gets_structured_notices_after_a_503() {
    let hook = FakeWebhook::start().await;
    hook.fail_next(1, 503);
    let mut cfg = config();
    cfg.webhook = Some(hook.config());
    cfg.group_window = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    for i in 0..3 {
        notifier.enqueue(notice("shop", i));
    }
    let docs = {
        hook.wait_for(2, WAIT).await;
        hook.payloads()
    };
    quiet_period().await;
    assert_eq!(
        hook.request_count(),
        3,
        "the first document's 503 and retry, then the follow-up"
    );
    // Leading edge: the first notice of the project goes at once (its 503 is retried), the two
    // in the window after it go out together as one follow-up. A retry does not hold back the
    // message behind it, so the two documents may arrive in either order.
    assert_eq!(docs.len(), 2, "first notice, then one follow-up: {docs:?}");
    let mut sizes: Vec<usize> = docs
        .iter()
        .map(|d| d["notices"].as_array().expect("notices array").len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2]);
    for doc in &docs {
        assert_eq!(doc["project"], "shop");
        assert_eq!(doc["host"], "host-test");
    }
    let first = docs
        .iter()
        .find(|d| d["notices"].as_array().is_some_and(|n| n.len() == 1))
        .expect("the first notice's document");
    assert_eq!(first["notices"][0]["kind"], "container_unhealthy");
    assert_eq!(first["notices"][0]["occasion"], "alert");
    assert_eq!(first["notices"][0]["subject"]["container"], "shop-web-0");
    let follow_up = docs
        .iter()
        .find(|d| d["notices"].as_array().is_some_and(|n| n.len() == 2))
        .expect("the follow-up document");
    assert_eq!(
        follow_up["notices"][0]["subject"]["container"],
        "shop-web-1"
    );
    assert_eq!(
        follow_up["notices"][1]["subject"]["container"],
        "shop-web-2"
    );

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn one_failing_sink_does_not_hold_up_the_others() {
    let tg = FakeTelegram::start().await;
    let slack = FakeSlack::start().await;
    // Slack keeps failing with 500 and is retried for a while; Telegram must not wait for it.
    slack.fail_always(500);
    let mut cfg = config();
    cfg.telegram = Some(tg.config("42"));
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    notifier.enqueue(notice("shop", 1));
    notifier.enqueue(notice("blog", 1));
    let texts = tg.wait_for(2, Duration::from_secs(3)).await;
    assert_eq!(
        texts.len(),
        2,
        "telegram delivered both while slack was failing"
    );

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn full_queue_drops_the_oldest_and_never_blocks() {
    let slack = FakeSlack::start().await;
    let mut cfg = config();
    cfg.queue_capacity = 8;
    cfg.slack = Some(slack.config());
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    // A current-thread test runtime: the worker cannot run until this task awaits, so 1000
    // synchronous enqueues must all return at once and only the newest 8 survive.
    let started = Instant::now();
    for i in 0..1000 {
        notifier.enqueue(notice(&format!("p{i}"), i));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "enqueue never blocks"
    );
    assert_eq!(notifier.queue_depth(), 8);
    assert_eq!(notifier.stats().dropped.load(Ordering::Relaxed), 992);
    assert_eq!(notifier.stats().enqueued.load(Ordering::Relaxed), 1000);

    let texts = slack.wait_for(8, WAIT).await;
    assert_eq!(texts.len(), 8);
    quiet_period().await;
    assert_eq!(slack.request_count(), 8, "the dropped ones were never sent");
    for i in 992..1000 {
        let container = format!("p{i}-web-{i}");
        assert!(
            texts.iter().any(|t| t.contains(&container)),
            "newest notice {i} was kept"
        );
    }
    assert!(
        !texts.iter().any(|t| t.contains("p0-web-0")),
        "the oldest was dropped"
    );

    cancel.cancel();
    handle.await.expect("notifier ends");
}

#[tokio::test]
async fn shutdown_sends_what_is_still_grouping() {
    let hook = FakeWebhook::start().await;
    let mut cfg = config();
    cfg.webhook = Some(hook.config());
    cfg.group_window = Duration::from_secs(3600);
    let cancel = CancellationToken::new();
    let (notifier, handle) = Notifier::start(&cfg, "host-test".into(), cancel.clone());

    notifier.enqueue(notice("shop", 1));
    notifier.enqueue(notice("shop", 2));
    hook.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        hook.request_count(),
        1,
        "the first notice went at once; the second waits inside the group window"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("drains within its deadline")
        .expect("notifier ends");
    let docs = hook.payloads();
    assert_eq!(docs.len(), 2, "the held follow-up went out on shutdown");
    assert_eq!(docs[1]["notices"][0]["subject"]["container"], "shop-web-2");
}

#[tokio::test]
async fn test_notify_reports_each_sink_and_leaks_no_secret() {
    let tg = FakeTelegram::start().await;
    let slack = FakeSlack::start().await;
    let hook = FakeWebhook::start().await;
    tg.api_error_next(400, "Bad Request: chat not found");
    hook.fail_next(1, 404);
    let mut cfg = config();
    cfg.telegram = Some(tg.config("42"));
    cfg.slack = Some(slack.config());
    cfg.webhook = Some(hook.config());

    let results = test_notify(&cfg, "host-test").await;
    let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["log", "telegram", "slack", "webhook"]);
    assert_eq!(results[0].1, Ok(()));
    assert!(
        matches!(&results[1].1, Err(SendError::Permanent(r)) if r.contains("chat not found")),
        "{:?}",
        results[1].1
    );
    assert_eq!(results[2].1, Ok(()));
    assert!(
        matches!(&results[3].1, Err(SendError::Permanent(r)) if r.contains("404")),
        "{:?}",
        results[3].1
    );
    // Sent directly: one request each, no retries.
    assert_eq!(tg.request_count(), 1);
    assert_eq!(slack.request_count(), 1);
    assert_eq!(hook.request_count(), 1);
    assert!(
        slack.messages()[0].contains("host-test"),
        "{:?}",
        slack.messages()
    );
    for (_, r) in &results {
        if let Err(e) = r {
            let text = e.to_string();
            assert!(!text.contains(FAKE_TELEGRAM_TOKEN), "token leaked: {text}");
            assert!(
                !text.contains(&slack.url()) && !text.contains(&hook.url()),
                "url leaked: {text}"
            );
        }
    }
}

#[tokio::test]
async fn unreachable_telegram_is_retryable_and_leaks_no_token() {
    // Bind and drop a listener: its port is then (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = config();
    let mut tg = vigil_watchdog::config::TelegramConfig {
        bot_token: vigil_shared::config::Secret::new(FAKE_TELEGRAM_TOKEN),
        chat_id: "42".into(),
        api_url: None,
        allowed_users: Vec::new(),
        commands: false,
    };
    tg.api_url = Some(url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url"));
    cfg.telegram = Some(tg);
    let results = test_notify(&cfg, "host-test").await;
    let (name, outcome) = &results[1];
    assert_eq!(name, "telegram");
    let err = outcome.as_ref().expect_err("nothing listens");
    assert!(err.is_retryable(), "{err}");
    assert!(
        !err.to_string().contains(FAKE_TELEGRAM_TOKEN),
        "token leaked: {err}"
    );
}
