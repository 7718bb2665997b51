//! Local fake servers for the internet services Vigil talks to: the Telegram Bot API, a Slack
//! incoming webhook and a generic JSON webhook. Each binds `127.0.0.1:0`, records every request
//! (method, path, body, the status it answered) and answers from a script first, then with its
//! default reply.
//!
//! ```text
//! let tg = FakeTelegram::start().await;
//! tg.rate_limit_first(1, 1); // first call: 429 with retry_after 1
//! let cfg = tg.config("42"); // a TelegramConfig pointing at the fake
//! // ... send ...
//! let texts = tg.wait_for(1, Duration::from_secs(5)).await;
//! assert_eq!(tg.request_count(), 2);
//! ```
//!
//! `messages()` lists only what the fake *accepted* (answered 2xx), so "delivered exactly once"
//! is `messages().len() == 1`, and `request_count()` counts every attempt.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use vigil_shared::config::Secret;
use vigil_watchdog::config::{SlackConfig, TelegramConfig, WebhookConfig};

/// One request a fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/bot123:abc/sendMessage`.
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
    /// The status the fake answered with.
    pub status: u16,
    /// When the request arrived (its body read).
    pub at: std::time::Instant,
}

impl Recorded {
    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An answer a fake gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long the fake waits before answering (a slow server; other requests go on).
    pub delay: Duration,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Computes the default reply to a request (its index among all requests is the second argument).
pub type Responder = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    default_override: Option<Reply>,
}

/// A recording HTTP/1 server on `127.0.0.1:<random port>`. Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Starts a server answering scripted replies first, then `responder`'s.
    pub async fn start(responder: Responder) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(accept_loop(listener, state.clone(), responder));
        FakeServer { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    /// The next request (whatever its path) gets `reply`; scripted replies are used in order.
    pub fn push_reply(&self, reply: Reply) {
        self.lock().script.push_back(reply);
    }

    /// From now on, unscripted requests get `reply` instead of the fake's normal answer
    /// (`None` restores the normal answer).
    pub fn set_default_reply(&self, reply: Option<Reply>) {
        self.lock().default_override = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Waits until at least `n` requests arrived or `timeout` passed; returns them all.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        wait_until(timeout, || self.request_count() >= n).await;
        self.requests()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, responder: Responder) {
    // Connections live in this set, so dropping the server (aborting this task) ends them too.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let state = state.clone();
        let responder = responder.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone(), responder.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    responder: Responder,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let mut rec = Recorded {
        method,
        path,
        content_type,
        body,
        status: 0,
        at: std::time::Instant::now(),
    };
    let reply = {
        let mut st = state.lock().expect("fake state lock");
        let index = st.requests.len();
        // The Bot API fake's command polling never consumes scripted or overridden replies:
        // those are for the sends a test scripts.
        let polling = rec.path.to_ascii_lowercase().ends_with("/getupdates");
        let reply = match (polling, st.script.front().is_some()) {
            (true, _) => responder(&rec, index),
            (false, true) => st
                .script
                .pop_front()
                .unwrap_or_else(|| responder(&rec, index)),
            (false, false) => match &st.default_override {
                Some(r) => r.clone(),
                None => responder(&rec, index),
            },
        };
        rec.status = reply.status;
        st.requests.push(rec);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    Ok(resp
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad scripted reply")));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }))
}

// ---------------------------------------------------------------------------------------------
// Telegram

/// The bot token the fake Telegram accepts.
pub const FAKE_TELEGRAM_TOKEN: &str = "123456789:vigil-test-token_AbC";

/// A fake Bot API: `POST /bot<token>/sendMessage` (any case; JSON or form body) answers `ok` with a
/// `Message` teloxide can parse, but only when `parse_mode` is `HTML` and the text parses as
/// Telegram HTML (known tags, balanced, only the four entities); otherwise 400 "can't parse
/// entities", as the real API does. `getUpdates` serves the updates queued by
/// [`FakeTelegram::push_update`] (long polling: it waits up to 1 s for one). A wrong token
/// answers 401; anything else 404.
pub struct FakeTelegram {
    server: FakeServer,
    updates: Arc<Mutex<Updates>>,
}

#[derive(Default)]
struct Updates {
    next_id: i64,
    pending: Vec<serde_json::Value>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        Self::start_with_delay(Duration::ZERO).await
    }

    /// A fake whose every `sendMessage` answer takes `delay` (a slow Bot API).
    pub async fn start_with_delay(delay: Duration) -> FakeTelegram {
        let updates = Arc::new(Mutex::new(Updates::default()));
        let ups = updates.clone();
        let responder: Responder = Arc::new(move |rec: &Recorded, index: usize| {
            if rec.path.to_ascii_lowercase().ends_with("/getupdates") {
                return telegram_updates(rec, &ups);
            }
            telegram_answer(rec, index).delayed(delay)
        });
        FakeTelegram {
            server: FakeServer::start(responder).await,
            updates,
        }
    }

    /// The API base URL (`WATCHDOG_TELEGRAM_API_URL`), with a trailing slash.
    pub fn url(&self) -> String {
        format!("{}/", self.server.base_url())
    }

    pub fn token(&self) -> &'static str {
        FAKE_TELEGRAM_TOKEN
    }

    /// A Telegram configuration pointing at this fake.
    pub fn config(&self, chat_id: &str) -> TelegramConfig {
        TelegramConfig {
            bot_token: Secret::new(FAKE_TELEGRAM_TOKEN),
            chat_id: chat_id.to_string(),
            api_url: Some(url::Url::parse(&self.url()).expect("fake url parses")),
            allowed_users: Vec::new(),
            commands: true,
        }
    }

    /// Every request except `getUpdates` polls (those are the command loop idling).
    pub fn requests(&self) -> Vec<Recorded> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| !r.path.to_ascii_lowercase().ends_with("/getupdates"))
            .collect()
    }

    /// Count of [`FakeTelegram::requests`].
    pub fn request_count(&self) -> usize {
        self.requests().len()
    }

    /// Queues an incoming chat message for `getUpdates` (a command an operator types).
    pub fn push_update(&self, chat_id: i64, user_id: u64, text: &str) {
        let mut ups = self.updates.lock().expect("updates lock");
        let id = ups.next_id;
        ups.next_id += 1;
        ups.pending.push(serde_json::json!({
            "update_id": id,
            "message": {
                "message_id": 10_000 + id,
                "date": 1_700_000_000,
                "chat": {"id": chat_id, "type": "group", "title": "ops"},
                "from": {"id": user_id, "is_bot": false, "first_name": "Op", "username": format!("op{user_id}")},
                "text": text,
            }
        }));
    }

    /// Accepted messages that reply to `message_id` (answers to a command, thread updates).
    pub fn replies_to(&self, message_id: i64) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted() && is_send_message(r))
            .filter(|r| {
                r.json()
                    .pointer("/reply_parameters/message_id")
                    .and_then(|v| v.as_i64())
                    == Some(message_id)
            })
            .filter_map(|r| {
                telegram_params(r)
                    .get("text")
                    .map(|t| render_telegram_html(t).unwrap_or_default())
            })
            .collect()
    }

    /// How many updates were ever queued (the next one gets this index).
    pub fn pending_update_count(&self) -> i64 {
        self.updates.lock().expect("updates lock").next_id
    }

    /// The message id of the command update `n` (0-based, in push order).
    pub fn update_message_id(n: i64) -> i64 {
        10_000 + n
    }

    /// Raw bodies (HTML as sent) of the accepted messages, in order.
    pub fn raw_messages(&self) -> Vec<serde_json::Value> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted() && is_send_message(r))
            .map(Recorded::json)
            .collect()
    }

    /// The first `n` calls get flood control: 429 with `retry_after`.
    pub fn rate_limit_first(&self, n: usize, retry_after_secs: u32) {
        for _ in 0..n {
            self.server.push_reply(Reply::json(
                429,
                serde_json::json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {retry_after_secs}"),
                    "parameters": { "retry_after": retry_after_secs },
                }),
            ));
        }
    }

    /// The next call gets an API error such as 400 "Bad Request: chat not found".
    pub fn api_error_next(&self, code: u16, description: &str) {
        self.server.push_reply(Reply::json(
            code,
            serde_json::json!({ "ok": false, "error_code": code, "description": description }),
        ));
    }

    /// Texts of the messages accepted (sendMessage answered ok), in order, as a person reads
    /// them (HTML rendered: tags gone, entities decoded).
    pub fn messages(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted() && is_send_message(r))
            .filter_map(|r| telegram_params(r).get("text").cloned())
            .map(|t| render_telegram_html(&t).unwrap_or(t))
            .collect()
    }

    /// Chat ids of the accepted messages, in order.
    pub fn chat_ids(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted() && is_send_message(r))
            .filter_map(|r| telegram_params(r).get("chat_id").cloned())
            .collect()
    }

    /// Waits until at least `n` messages were accepted or `timeout` passed; returns the texts.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(timeout, || self.messages().len() >= n).await;
        self.messages()
    }
}

impl Deref for FakeTelegram {
    type Target = FakeServer;
    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn is_send_message(rec: &Recorded) -> bool {
    rec.path
        .rsplit('/')
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("sendMessage"))
}

/// The request's parameters as strings, whether sent as JSON or as a form.
fn telegram_params(rec: &Recorded) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if let serde_json::Value::Object(map) = rec.json() {
        for (k, v) in map {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, s);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(rec.body.as_bytes()) {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    out
}

fn telegram_answer(rec: &Recorded, index: usize) -> Reply {
    let wanted = format!("/bot{FAKE_TELEGRAM_TOKEN}/");
    if !rec.path.starts_with("/bot") {
        return Reply::json(
            404,
            serde_json::json!({"ok": false, "error_code": 404, "description": "Not Found"}),
        );
    }
    if !rec.path.starts_with(&wanted) {
        return Reply::json(
            401,
            serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    // Bot API method names are case-insensitive (teloxide sends `SendMessage`).
    let method = &rec.path[wanted.len()..];
    if !method.eq_ignore_ascii_case("sendMessage") {
        return Reply::json(
            404,
            serde_json::json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
        );
    }
    let params = telegram_params(rec);
    let Some(text) = params.get("text") else {
        return Reply::json(
            400,
            serde_json::json!({"ok": false, "error_code": 400, "description": "Bad Request: message text is empty"}),
        );
    };
    if params.get("parse_mode").map(String::as_str) != Some("HTML") {
        return Reply::json(
            400,
            serde_json::json!({"ok": false, "error_code": 400, "description": "Bad Request: this fake expects parse_mode HTML"}),
        );
    }
    if let Err(e) = render_telegram_html(text) {
        return Reply::json(
            400,
            serde_json::json!({"ok": false, "error_code": 400, "description": format!("Bad Request: can't parse entities: {e}")}),
        );
    }
    let chat = params.get("chat_id").cloned().unwrap_or_default();
    let chat_json = match chat.parse::<i64>() {
        Ok(id) => {
            serde_json::json!({"id": id, "type": "private", "first_name": "Vigil", "username": "vigil_ops"})
        }
        Err(_) => serde_json::json!({
            "id": -1_001_234_567_890_i64,
            "type": "channel",
            "title": "Vigil alerts",
            "username": chat.trim_start_matches('@'),
        }),
    };
    Reply::json(
        200,
        serde_json::json!({
            "ok": true,
            "result": {
                "message_id": index + 1,
                "from": {"id": 123_456_789, "is_bot": true, "first_name": "Vigil", "username": "vigil_test_bot"},
                "chat": chat_json,
                "date": 1_700_000_000 + index,
                "text": text,
            }
        }),
    )
}

fn telegram_updates(rec: &Recorded, updates: &Mutex<Updates>) -> Reply {
    let offset = telegram_params(rec)
        .get("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0);
    let ready: Vec<serde_json::Value> = {
        let mut ups = updates.lock().expect("updates lock");
        ups.pending
            .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        ups.pending.clone()
    };
    // Long polling, briefly: nothing new answers after a short wait.
    let wait = if ready.is_empty() {
        Duration::from_millis(300)
    } else {
        Duration::ZERO
    };
    Reply::json(200, serde_json::json!({"ok": true, "result": ready})).delayed(wait)
}

/// Renders Telegram HTML as the client shows it, or says why the Bot API would refuse it:
/// only the tags Telegram knows, properly nested, and only `&lt;`, `&gt;`, `&amp;`, `&quot;`.
pub fn render_telegram_html(text: &str) -> Result<String, String> {
    const TAGS: [&str; 14] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "blockquote",
        "tg-spoiler",
    ];
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest.find('>').ok_or("unclosed start tag")?;
                let inner = &rest[1..end];
                let (closing, name) = match inner.strip_prefix('/') {
                    Some(n) => (true, n.trim()),
                    None => (false, inner.split_whitespace().next().unwrap_or("")),
                };
                if !TAGS.contains(&name) {
                    return Err(format!("unsupported start tag {name:?}"));
                }
                if closing {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!(
                            "can't find end tag corresponding to start tag {name}"
                        ));
                    }
                } else {
                    open.push(name.to_string());
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').ok_or("unterminated entity")?;
                let decoded = match &rest[..=end] {
                    "&lt;" => '<',
                    "&gt;" => '>',
                    "&amp;" => '&',
                    "&quot;" => '"',
                    other => return Err(format!("unsupported entity {other}")),
                };
                out.push(decoded);
                rest = &rest[end + 1..];
            }
            '>' => return Err("unexpected '>'".into()),
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(t) = open.pop() {
        return Err(format!("can't find end tag corresponding to start tag {t}"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Slack

/// The path of the fake incoming webhook.
pub const FAKE_SLACK_PATH: &str = "/services/T0VIGIL00/B0VIGIL00/vigilTestSecret0000000000";

/// A fake Slack incoming webhook: `POST <FAKE_SLACK_PATH>` answers 200 `ok`; another path 404
/// `no_service`; a body that is not JSON with `text` 400 `invalid_payload`.
pub struct FakeSlack {
    server: FakeServer,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let responder: Responder = Arc::new(|rec: &Recorded, _| {
            if rec.path != FAKE_SLACK_PATH {
                return Reply::text(404, "no_service");
            }
            if rec.json().get("text").is_none() {
                return Reply::text(400, "invalid_payload");
            }
            Reply::text(200, "ok")
        });
        FakeSlack {
            server: FakeServer::start(responder).await,
        }
    }

    /// The full webhook URL (the secret an operator configures).
    pub fn url(&self) -> String {
        format!("{}{FAKE_SLACK_PATH}", self.server.base_url())
    }

    pub fn config(&self) -> SlackConfig {
        SlackConfig {
            webhook_url: Secret::new(self.url()),
        }
    }

    /// The next `n` calls get `status` (e.g. 500 `internal_error`).
    pub fn fail_next(&self, n: usize, status: u16) {
        for _ in 0..n {
            self.server
                .push_reply(Reply::text(status, slack_error_word(status)));
        }
    }

    /// The next call gets 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, secs: u32) {
        self.server
            .push_reply(Reply::text(429, "rate_limited").header("retry-after", secs.to_string()));
    }

    /// Every call from now on gets `status` (e.g. 400 `invalid_payload`).
    pub fn fail_always(&self, status: u16) {
        self.server
            .set_default_reply(Some(Reply::text(status, slack_error_word(status))));
    }

    /// The JSON payloads accepted, in order.
    pub fn payloads(&self) -> Vec<serde_json::Value> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted())
            .map(Recorded::json)
            .collect()
    }

    /// Texts of the accepted messages: `text` and each attachment's text, joined by newlines.
    pub fn messages(&self) -> Vec<String> {
        self.payloads().iter().map(slack_text).collect()
    }

    /// Waits until at least `n` messages were accepted or `timeout` passed; returns the texts.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(timeout, || self.payloads().len() >= n).await;
        self.messages()
    }
}

impl Deref for FakeSlack {
    type Target = FakeServer;
    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn slack_error_word(status: u16) -> &'static str {
    match status {
        400 => "invalid_payload",
        403 => "invalid_token",
        404 => "no_service",
        410 => "channel_is_archived",
        429 => "rate_limited",
        _ => "internal_error",
    }
}

fn slack_text(v: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
        parts.push(t.to_string());
    }
    if let Some(atts) = v.get("attachments").and_then(|a| a.as_array()) {
        for a in atts {
            if let Some(t) = a.get("text").and_then(|t| t.as_str()) {
                parts.push(t.to_string());
            }
            for b in a
                .get("blocks")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
            {
                if b.get("type").and_then(|t| t.as_str()) == Some("section")
                    && let Some(t) = b.pointer("/text/text").and_then(|t| t.as_str())
                {
                    parts.push(t.to_string());
                }
            }
        }
    }
    // As Slack shows mrkdwn: entities decoded, `*label:*` emphasis gone.
    parts
        .join("\n")
        .replace('*', "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// Generic webhook

/// The path of the fake generic webhook.
pub const FAKE_WEBHOOK_PATH: &str = "/hooks/vigil";

/// A fake generic JSON webhook: `POST <FAKE_WEBHOOK_PATH>` answers 200 `{"received":true}`;
/// another path 404.
pub struct FakeWebhook {
    server: FakeServer,
}

impl FakeWebhook {
    pub async fn start() -> FakeWebhook {
        let responder: Responder = Arc::new(|rec: &Recorded, _| {
            if rec.path != FAKE_WEBHOOK_PATH || rec.method != "POST" {
                return Reply::text(404, "not found");
            }
            Reply::json(200, serde_json::json!({"received": true}))
        });
        FakeWebhook {
            server: FakeServer::start(responder).await,
        }
    }

    pub fn url(&self) -> String {
        format!("{}{FAKE_WEBHOOK_PATH}", self.server.base_url())
    }

    pub fn config(&self) -> WebhookConfig {
        WebhookConfig {
            url: Secret::new(self.url()),
        }
    }

    /// The next `n` calls get `status` with a short text body.
    pub fn fail_next(&self, n: usize, status: u16) {
        for _ in 0..n {
            self.server
                .push_reply(Reply::text(status, format!("scripted failure {status}")));
        }
    }

    /// Every call from now on gets `status`.
    pub fn fail_always(&self, status: u16) {
        self.server.set_default_reply(Some(Reply::text(
            status,
            format!("scripted failure {status}"),
        )));
    }

    /// The JSON documents accepted, in order.
    pub fn payloads(&self) -> Vec<serde_json::Value> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted())
            .map(Recorded::json)
            .collect()
    }

    /// Texts of the accepted documents: `title` and `text` joined by a blank line when present,
    /// else the raw body.
    pub fn messages(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.accepted())
            .map(|r| {
                let v = r.json();
                match (
                    v.get("title").and_then(|t| t.as_str()),
                    v.get("text").and_then(|t| t.as_str()),
                ) {
                    (Some(title), Some(text)) => format!("{title}\n\n{text}"),
                    _ => r.body.clone(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` documents were accepted or `timeout` passed; returns the texts.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(timeout, || self.payloads().len() >= n).await;
        self.messages()
    }
}

impl Deref for FakeWebhook {
    type Target = FakeServer;
    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
