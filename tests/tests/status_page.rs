//! The status page (issue 14) against the real Docker engine, in headless Chromium: one healthy,
//! one unhealthy and one exited container show with their states; a container that fails while
//! the page is open shows without a reload; HTML in labels renders as text and probe output is
//! never shown; the console stays clean under the page's strict CSP; `/api/status` validates
//! against `docs/status-api.schema.json`; a non-loopback listen address needs a token. With
//! Redis and the real executor, a firing incident's remediation follows the incident machine on
//! the open page (requested, restarted at audit #, refused until, escalated), and silences and
//! acknowledgements set through the (fake) Telegram chat show beside their incidents.
//!
//! Screenshots go to `target/test-artifacts/status-page*.png`.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use vigil_docker::labels;
use vigil_tests::chromium::{Browser, Tab};
use vigil_tests::docker::Healthcheck;
use vigil_tests::ports::free_port;
use vigil_tests::process::target_dir;
use vigil_tests::stack_rig::Stack;
use vigil_tests::watchdog_proc::{WatchdogBuilder, poll_until};
use vigil_tests::workspace_root;

/// How long a container state may take to reach the page on a busy machine (the engine's own
/// health retries included).
const ARRIVAL: Duration = Duration::from_secs(60);
/// How long a change may take to show in an open page. The page refreshes every second and the
/// watchdog hears of a dying container from the event stream at once, so this is normally
/// about 1 s (printed); the bound is generous for a loaded machine.
const LIVE: Duration = Duration::from_secs(20);
const XSS_SERVICE: &str = "<img src=x onerror=alert(1)>";
const XSS_PROJECT: &str = "<script>alert(2)</script>&amp;";
const PROBE_SECRET: &str = "PROBE-OUTPUT-hunter2";

/// A GET with an optional `Authorization` value: (status, head, body).
fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn status_json(addr: SocketAddr) -> Value {
    let (code, _, body) = get(addr, "/api/status", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/api/status is JSON")
}

fn state_in_api(doc: &Value, name: &str) -> Option<String> {
    doc["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["state"].as_str().map(str::to_string))
}

fn state_in_dom(tab: &mut Tab, name: &str) -> Option<String> {
    let expr = format!(
        "(function () {{ var n = {}; var e = Array.from(document.querySelectorAll('li.ctr'))\
         .find(function (x) {{ return x.dataset.name === n; }}); return e ? e.dataset.state : null; }})()",
        serde_json::to_string(name).expect("json")
    );
    tab.eval(&expr).as_str().map(str::to_string)
}

fn artifact(name: &str, png: &[u8]) {
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("writing the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", path.display());
}

fn validate(doc: &Value) {
    let text = std::fs::read_to_string(workspace_root().join("docs/status-api.schema.json"))
        .expect("docs/status-api.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}\n{doc:#}");
}

#[test]
fn page_shows_states_live_escapes_html_and_keeps_the_console_clean() {
    let stack = Stack::builder().start();
    let addr = stack.watchdog().listen().expect("a listen address");

    let healthy = stack
        .scoped("page-ok")
        .healthcheck(Healthcheck::new("true"))
        .shell("exec sleep 300")
        .start();
    let unhealthy = stack
        .scoped("page-sick")
        .compose(XSS_PROJECT, XSS_SERVICE)
        .healthcheck(Healthcheck::new(&format!(
            "echo '<b>{PROBE_SECRET}</b><img src=x onerror=alert(3)>'; exit 1"
        )))
        .shell("exec sleep 300")
        .start();
    let exited = stack.scoped("page-exit").shell("exit 3").start();
    let victim = stack.scoped("page-victim").shell("exec sleep 300").start();

    let expected = [
        (healthy.name(), "healthy"),
        (unhealthy.name(), "unhealthy"),
        (exited.name(), "exited"),
        (victim.name(), "running"),
    ];
    let mut last = Value::Null;
    // The sweep shows a container unhealthy a moment before its signal is decided, so the
    // incident is waited for as well.
    let unhealthy_fires = |status: &Value| {
        status["incidents"].as_array().is_some_and(|incidents| {
            incidents.iter().any(|i| {
                i["subject"]["container"] == unhealthy.name() && i["kind"] == "container_unhealthy"
            })
        })
    };
    let arrived = poll_until(ARRIVAL, || {
        last = status_json(addr);
        expected
            .iter()
            .all(|(n, s)| state_in_api(&last, n).as_deref() == Some(*s))
            && unhealthy_fires(&last)
    });
    assert!(
        arrived,
        "states and the unhealthy container's incident did not arrive in /api/status: {last:#}"
    );
    validate(&last);

    // The page in a browser.
    let browser = Browser::start();
    let mut tab = browser.open();
    tab.navigate(&format!("http://{addr}/"));
    for (name, state) in expected {
        assert_eq!(
            state_in_dom(&mut tab, name).as_deref(),
            Some(state),
            "{name} in the DOM"
        );
    }
    // The inline script ran (it says "live") and the inline style applied: the CSP allows both.
    assert!(poll_until(LIVE, || tab
        .eval("document.getElementById('conn').textContent")
        == "live"));
    assert_eq!(
        tab.eval("getComputedStyle(document.body).maxWidth"),
        "1152px",
        "the inline style sheet applies"
    );
    // HTML from labels is text: the project and service show literally, nothing was injected.
    let group = tab.eval(&format!(
        "document.querySelector('li.ctr[data-name=\"{}\"] .group').textContent",
        unhealthy.name()
    ));
    assert_eq!(group, format!("{XSS_PROJECT} / {XSS_SERVICE}"));
    assert_eq!(tab.eval("document.querySelectorAll('img').length"), 0);
    assert_eq!(tab.eval("document.querySelectorAll('script').length"), 1);
    assert_eq!(tab.eval("document.querySelectorAll('b').length"), 0);
    let html = tab.eval("document.documentElement.outerHTML");
    let html = html.as_str().expect("html");
    assert!(!html.contains(PROBE_SECRET), "probe output is never shown");
    assert!(
        !last.to_string().contains(PROBE_SECRET),
        "nor in /api/status"
    );
    artifact("status-page.png", &tab.screenshot());

    // A container failing while the page is open appears without a reload.
    tab.eval("window.__sameDocument = 'yes'");
    let killed_at = Instant::now();
    victim.kill();
    let shown = poll_until(LIVE, || {
        state_in_dom(&mut tab, victim.name()).as_deref() == Some("exited")
    });
    let took = killed_at.elapsed();
    assert!(
        shown,
        "{} did not show as exited within {LIVE:?}",
        victim.name()
    );
    eprintln!("a killed container showed as exited in the open page after {took:?}");
    assert_eq!(
        tab.eval("window.__sameDocument"),
        "yes",
        "the page updated in place, not by reloading"
    );
    // Firing incidents come first on the page.
    let first = tab.eval("document.querySelector('main section:nth-of-type(2)').id");
    assert_eq!(first, "incidents");

    // Phone width.
    tab.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    tab.pump(Duration::from_millis(1500));
    let overflow = tab.eval("document.documentElement.scrollWidth <= window.innerWidth + 1");
    assert_eq!(overflow, true, "no sideways scrolling on a phone");
    artifact("status-page-phone.png", &tab.screenshot());

    let problems = tab.problems();
    assert!(problems.is_empty(), "console problems: {problems:#?}");

    // Response headers: strict CSP, no caching, no framing.
    let (code, head, _) = get(addr, "/", None);
    assert_eq!(code, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(
        !head.contains("unsafe-inline") && !head.contains("unsafe-eval"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    validate(&status_json(addr));
}

#[test]
fn non_loopback_listen_without_a_token_is_refused_with_78() {
    let port = free_port();
    let out = WatchdogBuilder::new()
        .env("WATCHDOG_LISTEN", &format!("0.0.0.0:{port}"))
        .run_to_exit(&[], Duration::from_secs(60));
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(
        out.stderr.contains("WATCHDOG_LISTEN_TOKEN_FILE") && out.stderr.contains("loopback"),
        "{}",
        out.stderr
    );
}

#[test]
fn with_a_token_requests_without_it_get_401() {
    let token = "s3cret-token-for-the-page-0123456789";
    let port = free_port();
    let _stack = Stack::builder()
        .watchdog_env("WATCHDOG_LISTEN", &format!("0.0.0.0:{port}"))
        .watchdog_file(
            "WATCHDOG_LISTEN_TOKEN_FILE",
            "listen_token",
            &format!("{token}\n"),
        )
        .start();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(poll_until(Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok()
    }));
    for path in [
        "/",
        "/live",
        "/api/status",
        "/metrics",
        "/api/status.schema.json",
    ] {
        let (code, head, body) = get(addr, path, None);
        assert_eq!(code, 401, "{path} without a token: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{head}"
        );
        assert!(!body.contains(token));
        let (code, _, _) = get(addr, path, Some("Bearer not-the-token-at-all"));
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
    for auth in [format!("Bearer {token}"), format!("Basic {basic}")] {
        let (code, _, body) = get(addr, "/", Some(&auth));
        assert_eq!(code, 200, "{auth}");
        assert!(!body.contains(token), "the page never carries the token");
        let (code, _, body) = get(addr, "/api/status", Some(&auth));
        assert_eq!(code, 200);
        assert!(!body.contains(token));
    }
    let (code, _, _) = get(addr, "/healthz", None);
    assert_eq!(code, 200, "/healthz stays open for health checks");
}

/// An incident's remediation on the open page: `(data-remediation, its text, the silence or
/// ack badge)` of the incident whose subject starts with `name`.
fn incident_in_dom(tab: &mut Tab, name: &str) -> Option<(String, String, String)> {
    let expr = format!(
        "(function () {{ var n = {}; var e = Array.from(document.querySelectorAll('li.incident'))\
         .find(function (x) {{ return x.querySelector('.subject').textContent.indexOf(n) === 0; }});\
         if (!e) return null; var q = e.querySelector('.quieted');\
         return [e.dataset.remediation, e.querySelector('.remedy').textContent, q ? q.textContent : ''].join('\\u0001'); }})()",
        serde_json::to_string(name).expect("json")
    );
    let v = tab.eval(&expr);
    let text = v.as_str()?;
    let mut parts = text.split('\u{1}').map(str::to_string);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Waits until the open page shows `name`'s remediation as `state`; returns its text.
fn wait_remediation(tab: &mut Tab, name: &str, state: &str, timeout: Duration) -> String {
    let mut last = None;
    let shown = poll_until(timeout, || {
        last = incident_in_dom(tab, name);
        last.as_ref().is_some_and(|(s, _, _)| s == state)
    });
    assert!(
        shown,
        "{name}: remediation {state:?} not shown within {timeout:?}; last seen {last:?}"
    );
    last.map(|(_, text, _)| text).unwrap_or_default()
}

const OPERATOR: u64 = 7;
/// Each start of the looping container gets this long of `starting` before its (always failing)
/// check counts: long enough for the page to show "restarted" before the next request.
const START_PERIOD: Duration = Duration::from_secs(10);
/// The executor's backoff after one action: the second request is refused until then.
const BACKOFF: &str = "20s";

#[test]
fn remediation_phases_silences_and_acks_show_live_and_in_status() {
    let mut stack = Stack::builder()
        .watchdog_env("WATCHDOG_TELEGRAM_ALLOWED_USERS", &OPERATOR.to_string())
        .executor_later()
        .executor_env("EXECUTOR_POLICY__BACKOFF_INITIAL", BACKOFF)
        .executor_env("EXECUTOR_POLICY__BACKOFF_MAX", "1m")
        .executor_env("EXECUTOR_POLICY__BREAKER_MAX_ACTIONS", "1")
        .start();
    assert!(
        stack.watchdog().gate().is_some(),
        "the watchdog reads Docker through a gate"
    );
    let addr = stack.watchdog().listen().expect("a listen address");
    let always_failing = |hint: &str| {
        let mut check = Healthcheck::new("exit 1");
        check.start_period = START_PERIOD;
        stack
            .scoped(hint)
            .healthcheck(check)
            .shell("trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done")
    };
    // Opted in: no restart heals it, so its incident runs the whole course.
    let looping = always_failing("page-loop")
        .label(labels::REMEDIATE, "true")
        .start();
    let quiet = always_failing("page-quiet").start();
    let acked = always_failing("page-acked").start();

    let browser = Browser::start();
    let mut tab = browser.open();
    tab.navigate(&format!("http://{addr}/"));
    // No executor yet: the request waits on the stream.
    let arrival = ARRIVAL + START_PERIOD;
    let text = wait_remediation(&mut tab, looping.name(), "requested", arrival);
    assert!(text.starts_with("restart requested at "), "{text}");
    let doc = status_json(addr);
    validate(&doc);

    // Operators silence one incident and acknowledge another, in the chat.
    let said = stack.sinks.ask(
        OPERATOR,
        &format!("/silence {} 1h maintenance <b>window</b>", quiet.name()),
        ARRIVAL,
    );
    assert!(
        said.contains(quiet.name()) && said.contains("ends"),
        "{said}"
    );
    stack
        .sinks
        .ask(OPERATOR, &format!("/ack {}", acked.name()), ARRIVAL);

    // The executor comes: restart (audit #), then backoff, then the breaker.
    stack.start_executor();
    let restarted = wait_remediation(&mut tab, looping.name(), "executed", ARRIVAL);
    assert!(
        restarted.starts_with("restarted at ") && restarted.contains("(audit #"),
        "{restarted}\n{}",
        stack.describe()
    );
    artifact("status-page-restarted.png", &tab.screenshot());
    let refused = wait_remediation(&mut tab, looping.name(), "refused", arrival);
    assert!(
        refused.contains("refused until ") && refused.contains("backoff"),
        "{refused}\n{}",
        stack.describe()
    );
    let doc = status_json(addr);
    validate(&doc);
    let r = doc["incidents"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| i["subject"]["container"] == looping.name())
        })
        .map(|i| i["remediation"].clone())
        .expect("the looping container's incident");
    assert_eq!(r["phase"], "waiting", "{r:#}");
    assert!(r["retry_at"].as_i64().is_some(), "{r:#}");
    let escalated = wait_remediation(&mut tab, looping.name(), "escalated", arrival + LIVE);
    assert!(
        escalated.contains("manual action needed (audit #"),
        "{escalated}\n{}",
        stack.describe()
    );

    // Silence and ack beside their incidents, the silence listed, its reason as text.
    let (_, _, badge) = incident_in_dom(&mut tab, quiet.name()).expect("quiet incident");
    assert!(badge.starts_with("silenced until"), "{badge}");
    let (_, _, badge) = incident_in_dom(&mut tab, acked.name()).expect("acked incident");
    assert_eq!(badge, format!("acknowledged by Op ({OPERATOR})"), "{badge}");
    let listed = tab.eval(&format!(
        "(function () {{ var e = document.querySelector('li.silence[data-target=\"{}\"]'); return e ? e.textContent : ''; }})()",
        quiet.name()
    ));
    let listed = listed.as_str().unwrap_or_default();
    assert!(listed.contains("maintenance <b>window</b>"), "{listed:?}");
    assert_eq!(tab.eval("document.querySelectorAll('b').length"), 0);
    artifact("status-page-escalated.png", &tab.screenshot());
    let problems = tab.problems();
    assert!(problems.is_empty(), "console problems: {problems:#?}");

    let doc = status_json(addr);
    validate(&doc);
    let silences = doc["silences"].as_array().expect("silences");
    assert_eq!(silences.len(), 1, "{doc:#}");
    assert_eq!(silences[0]["target"], quiet.name());

    // Telegram's /status says the same phase.
    let status = stack.sinks.ask(OPERATOR, "/status", ARRIVAL);
    let line = status
        .lines()
        .find(|l| l.contains(looping.name()))
        .unwrap_or_else(|| panic!("{} missing from {status}", looping.name()));
    assert!(
        line.contains("now: escalated: manual action needed (audit #"),
        "{line}"
    );
}
