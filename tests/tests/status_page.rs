//! The status page (issue 14) against the real Docker engine, in headless Chromium: one healthy,
//! one unhealthy and one exited container show with their states; a container that fails while
//! the page is open shows without a reload; HTML in labels renders as text and probe output is
//! never shown; the console stays clean under the page's strict CSP; `/api/status` validates
//! against `docs/status-api.schema.json`; a non-loopback listen address needs a token.
//!
//! Screenshots go to `target/test-artifacts/status-page*.png`.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use vigil_tests::chromium::{Browser, Tab};
use vigil_tests::docker::{Container, Healthcheck, require_engine};
use vigil_tests::ports::free_port;
use vigil_tests::process::target_dir;
use vigil_tests::watchdog_proc::{Sinks, WatchdogBuilder, poll_until};
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
    require_engine();
    let sinks = Sinks::start();
    let wd = WatchdogBuilder::new().sinks(&sinks).start();
    let addr = wd.listen().expect("a listen address");

    let healthy = wd
        .scoped(Container::new().name_hint("page-ok"))
        .healthcheck(Healthcheck::new("true"))
        .shell("exec sleep 300")
        .start();
    let unhealthy = wd
        .scoped(Container::new().name_hint("page-sick"))
        .compose(XSS_PROJECT, XSS_SERVICE)
        .healthcheck(Healthcheck::new(&format!(
            "echo '<b>{PROBE_SECRET}</b><img src=x onerror=alert(3)>'; exit 1"
        )))
        .shell("exec sleep 300")
        .start();
    let exited = wd
        .scoped(Container::new().name_hint("page-exit"))
        .shell("exit 3")
        .start();
    let victim = wd
        .scoped(Container::new().name_hint("page-victim"))
        .shell("exec sleep 300")
        .start();

    let expected = [
        (healthy.name(), "healthy"),
        (unhealthy.name(), "unhealthy"),
        (exited.name(), "exited"),
        (victim.name(), "running"),
    ];
    let mut last = Value::Null;
    let arrived = poll_until(ARRIVAL, || {
        last = status_json(addr);
        expected
            .iter()
            .all(|(n, s)| state_in_api(&last, n).as_deref() == Some(*s))
    });
    assert!(arrived, "states did not arrive in /api/status: {last:#}");
    validate(&last);
    let incidents = last["incidents"].as_array().expect("incidents");
    assert!(
        incidents
            .iter()
            .any(|i| i["subject"]["container"] == unhealthy.name()
                && i["kind"] == "container_unhealthy"),
        "the unhealthy container fires: {incidents:#?}"
    );

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
    require_engine();
    let token = "s3cret-token-for-the-page-0123456789";
    let port = free_port();
    let b = WatchdogBuilder::new().env("WATCHDOG_LISTEN", &format!("0.0.0.0:{port}"));
    let file = b.file("listen_token", &format!("{token}\n"));
    let sinks = Sinks::start();
    let _wd = b
        .env("WATCHDOG_LISTEN_TOKEN_FILE", &file.display().to_string())
        .sinks(&sinks)
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
