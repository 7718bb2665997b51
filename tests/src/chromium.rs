//! Headless Chromium (Debian's `chromium`, installed by `scripts/setup-test.sh`) driven over the
//! DevTools protocol: [`Browser::start`] launches it on a free debugging port with a throw-away
//! profile, [`Browser::open`] gives a [`Tab`] attached to a new page, which can navigate,
//! evaluate JavaScript, take screenshots and report every console error, uncaught exception,
//! Content-Security-Policy violation and JavaScript dialog the page caused.
//!
//! A missing `chromium` is a loud failure, never a skip.

use crate::process::ChildProcess;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How long Chromium may take to start on a loaded machine.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one DevTools command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Installed at every new document before the page's own scripts (and exempt from its CSP): it
/// records CSP violations so a test can read them back.
const CSP_RECORDER: &str = "window.__cspViolations = []; document.addEventListener(\
    'securitypolicyviolation', function (e) { window.__cspViolations.push(\
    e.violatedDirective + ' blocked ' + e.blockedURI); });";

/// A running headless Chromium; killed on drop.
pub struct Browser {
    ws_url: String,
    _process: ChildProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        let bin = which("chromium").unwrap_or_else(|| {
            panic!(
                "chromium is not installed: run `bash scripts/setup-test.sh` (it installs \
                 Debian's chromium package)"
            )
        });
        let profile = tempfile::Builder::new()
            .prefix("vigil-chromium-")
            .tempdir()
            .expect("a temp dir for the chromium profile");
        let mut cmd = crate::process::command(bin);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-extensions",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ]);
        cmd.arg(format!("--user-data-dir={}", profile.path().display()));
        cmd.arg("about:blank");
        let process = ChildProcess::spawn("chromium", cmd);
        let line = process
            .wait_for_line(|l| l.contains("DevTools listening on "), LAUNCH_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "chromium did not open its DevTools port within {LAUNCH_TIMEOUT:?}:\n{}",
                    process.transcript()
                )
            });
        let ws_url = line
            .split("DevTools listening on ")
            .nth(1)
            .map(|s| s.trim().to_string())
            .expect("a ws:// URL after 'DevTools listening on'");
        Browser {
            ws_url,
            _process: process,
            _profile: profile,
        }
    }

    /// A new page (tab) with console, log and page events enabled.
    pub fn open(&self) -> Tab {
        let mut conn = Conn::connect(&self.ws_url);
        let target = conn.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = conn.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let mut tab = Tab { conn, session };
        for method in ["Runtime.enable", "Log.enable", "Page.enable"] {
            tab.call(method, json!({}));
        }
        tab.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": CSP_RECORDER}),
        );
        tab
    }
}

/// One page of the browser.
pub struct Tab {
    conn: Conn,
    session: String,
}

impl Tab {
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params)
    }

    /// Navigates and waits for the load event.
    pub fn navigate(&mut self, url: &str) {
        let before = self.conn.events.len();
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(
            r.get("errorText").is_none(),
            "navigating to {url} failed: {r}"
        );
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !self.conn.events[before..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(
                Instant::now() < deadline,
                "{url} did not finish loading within {CALL_TIMEOUT:?}"
            );
            self.conn.pump(Duration::from_millis(100));
        }
    }

    /// Evaluates `expr` in the page and returns its value (JSON-serialisable results only).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr:?} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }

    /// Reads pending events for `d`.
    pub fn pump(&mut self, d: Duration) {
        self.conn.pump(d);
    }

    /// Console errors, uncaught exceptions, error log entries (network failures, CSP reports)
    /// and JavaScript dialogs seen so far, plus violations the page itself recorded.
    pub fn problems(&mut self) -> Vec<String> {
        self.conn.pump(Duration::from_millis(200));
        let mut out: Vec<String> = self
            .conn
            .events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log error: {}", p["entry"]))
                    }
                    "Page.javascriptDialogOpening" => Some(format!("dialog: {p}")),
                    _ => None,
                }
            })
            .collect();
        if let Some(list) = self.eval("window.__cspViolations || []").as_array() {
            out.extend(list.iter().map(|v| format!("CSP violation: {v}")));
        }
        out
    }
}

/// One DevTools websocket; events that arrive while waiting for a reply are kept.
struct Conn {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Conn {
    fn connect(url: &str) -> Conn {
        let parsed = url::Url::parse(url).expect("a DevTools ws:// URL");
        let host = parsed.host_str().expect("host");
        let port = parsed.port().expect("port");
        let stream = TcpStream::connect((host, port)).expect("connecting to DevTools");
        let (ws, _) = tungstenite::client(url, stream).expect("DevTools websocket handshake");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Conn {
            ws,
            next_id: 1,
            events: Vec::new(),
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "no DevTools reply to {method} within {CALL_TIMEOUT:?}"
            );
            if let Some(v) = self.read_one() {
                if v["id"] == id {
                    if let Some(err) = v.get("error") {
                        panic!("DevTools {method} failed: {err}");
                    }
                    return v["result"].clone();
                }
                self.events.push(v);
            }
        }
    }

    fn pump(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if let Some(v) = self.read_one() {
                self.events.push(v);
            }
        }
    }

    fn read_one(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection failed: {e}"),
        }
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
