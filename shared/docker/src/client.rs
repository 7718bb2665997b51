//! [`DockerClient`]: the read-only calls Vigil makes to the engine (its errors: [`DockerError`]).
//!
//! Every call but the event stream is bounded by the client's timeout and its body by a size
//! cap; container ids and names are checked before they go into a path. After
//! [`DockerClient::negotiate`] (done lazily by the first call that needs it) paths carry the
//! negotiated `/v1.NN` prefix.

use crate::api::{
    ApiVersion, ContainerInspect, ContainerListItem, ContainerStats, MIN_API_VERSION,
    PINNED_API_VERSION, SystemVersion,
};
pub use crate::error::DockerError;
use crate::events::EventDecoder;
use crate::model::{
    ContainerDetails, ContainerEvent, ContainerSummary, EngineVersion, StatsSample,
};
use crate::transport::{Transport, error_chain, truncate};
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use vigil_shared::time::Timestamp;

/// Cap on a non-streaming response body (a list of thousands of containers fits easily).
pub const MAX_BODY: usize = 16 << 20;
/// Cap on how much of an error body is read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Longest container id or name accepted in a path.
const MAX_ID_LEN: usize = 256;
/// The events `/events` is filtered to (what the watchdog's signals are made of).
pub const WATCHED_EVENTS: [&str; 8] = [
    "health_status",
    "die",
    "oom",
    "start",
    "kill",
    "stop",
    "destroy",
    "restart",
];

/// Checks that `id` is a container id or name that can go into a path as one segment:
/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 256 bytes (Docker's own rule for names).
pub fn validate_id(id: &str) -> Result<&str, DockerError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(id)
    } else {
        Err(DockerError::InvalidId(truncate(id, 80).to_string()))
    }
}

/// A read-only Docker Engine client. Cloning is cheap and shares the connection pool and the
/// negotiated API version.
#[derive(Debug, Clone)]
pub struct DockerClient {
    transport: Transport,
    timeout: Duration,
    /// Negotiated minor version of API 1.x; 0 until negotiated.
    api_minor: Arc<AtomicU32>,
}

impl DockerClient {
    /// A client for `host` (`unix:///path` or `tcp://host:port`). Each call except the event
    /// stream's body is bounded by `timeout`. Makes no request.
    pub fn new(host: &str, timeout: Duration) -> Result<DockerClient, DockerError> {
        Ok(DockerClient {
            transport: Transport::new(host, timeout)?,
            timeout,
            api_minor: Arc::new(AtomicU32::new(0)),
        })
    }

    /// Asks the engine for its version (unversioned `/version`) and settles on
    /// `min(engine, 1.47)`; engines below 1.41 are refused. Later calls use `/v1.NN/...`.
    pub async fn negotiate(&self) -> Result<EngineVersion, DockerError> {
        let version = self.version_at("/version").await?;
        let engine = ApiVersion::parse(&version.api_version)
            .ok_or_else(|| DockerError::Unsupported(truncate(&version.api_version, 40).into()))?;
        if engine.major != 1 || engine < MIN_API_VERSION {
            return Err(DockerError::Unsupported(version.api_version.clone()));
        }
        let chosen = engine.min(PINNED_API_VERSION);
        if let Some(min) = version
            .min_api_version
            .as_deref()
            .and_then(ApiVersion::parse)
            && min > chosen
        {
            return Err(DockerError::Unsupported(format!(
                "{} (engine requires at least {min}, this client speaks at most {PINNED_API_VERSION})",
                version.api_version
            )));
        }
        self.api_minor.store(chosen.minor, Ordering::Relaxed);
        tracing::debug!(
            docker.api_version = %chosen,
            docker.engine_version = %version.version,
            "negotiated the Docker Engine API version"
        );
        Ok(version)
    }

    /// The negotiated API version (`1.41`), if negotiation happened.
    pub fn api_version(&self) -> Option<String> {
        match self.api_minor.load(Ordering::Relaxed) {
            0 => None,
            minor => Some(ApiVersion { major: 1, minor }.to_string()),
        }
    }

    /// `GET /_ping`: succeeds when the engine answers 2xx.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.get_bytes("/_ping", MAX_ERROR_BODY).await.map(drop)
    }

    /// `GET /v1.NN/version`.
    pub async fn version(&self) -> Result<EngineVersion, DockerError> {
        let prefix = self.prefix().await?;
        self.version_at(&format!("{prefix}/version")).await
    }

    /// `GET /containers/json`, optionally every container (`all`) and only those with a label
    /// (`key` or `key=value`).
    pub async fn list_containers(
        &self,
        all: bool,
        label_filter: Option<&str>,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let prefix = self.prefix().await?;
        let mut path = format!("{prefix}/containers/json?all={all}");
        if let Some(label) = label_filter {
            let filters = serde_json::json!({ "label": [label] }).to_string();
            path.push_str("&filters=");
            path.extend(utf8_percent_encode(&filters, NON_ALPHANUMERIC));
        }
        let rows: Vec<ContainerListItem> = self.get_json(&path, "container list").await?;
        rows.into_iter().map(ContainerSummary::try_from).collect()
    }

    /// `GET /containers/{id}/json` (`id` may be a name).
    pub async fn inspect(&self, id: &str) -> Result<ContainerDetails, DockerError> {
        let id = validate_id(id)?;
        let prefix = self.prefix().await?;
        let raw: ContainerInspect = self
            .get_json(
                &format!("{prefix}/containers/{id}/json"),
                "container inspect",
            )
            .await?;
        ContainerDetails::try_from(raw)
    }

    /// `GET /containers/{id}/stats?stream=false&one-shot=true`: one sample, no wait for a
    /// second one (so no `precpu`; CPU % comes from two calls).
    pub async fn stats_once(&self, id: &str) -> Result<StatsSample, DockerError> {
        let id = validate_id(id)?;
        let prefix = self.prefix().await?;
        let raw: ContainerStats = self
            .get_json(
                &format!("{prefix}/containers/{id}/stats?stream=false&one-shot=true"),
                "container stats",
            )
            .await?;
        Ok(raw.into_sample(Timestamp::now()))
    }

    /// `GET /events` for container events of [`WATCHED_EVENTS`], from `since_nanos` (engine
    /// time; the event at exactly that time may be replayed). Only the response head is bounded
    /// by the timeout: the stream itself is long-lived.
    pub async fn events(&self, since_nanos: Option<i64>) -> Result<EventStream, DockerError> {
        let prefix = self.prefix().await?;
        let filters =
            serde_json::json!({ "type": ["container"], "event": WATCHED_EVENTS }).to_string();
        let mut path = format!(
            "{prefix}/events?filters={}",
            utf8_percent_encode(&filters, NON_ALPHANUMERIC)
        );
        if let Some(nanos) = since_nanos {
            let nanos = nanos.max(0);
            path.push_str(&format!(
                "&since={}.{:09}",
                nanos / 1_000_000_000,
                nanos % 1_000_000_000
            ));
        }
        let response = tokio::time::timeout(self.timeout, async {
            let response = self.transport.get(&path).await?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            Ok(response)
        })
        .await
        .map_err(|_| DockerError::Timeout(self.timeout))??;
        Ok(EventStream {
            body: response.into_body(),
            decoder: EventDecoder::new(since_nanos),
            done: false,
        })
    }

    /// `GET path` exactly as given (no version prefix, no negotiation), whatever the answer: its
    /// status and body (at most [`MAX_BODY`]), for a look at what the engine, or the gate in
    /// front of it, answers (`vigil-watchdog docker-get`). Like every call, only a GET.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Bytes), DockerError> {
        tokio::time::timeout(self.timeout, async {
            let response = self.transport.get(path).await?;
            let status = response.status().as_u16();
            Ok((status, read_capped(response.into_body(), MAX_BODY).await?))
        })
        .await
        .map_err(|_| DockerError::Timeout(self.timeout))?
    }

    /// The `/v1.NN` prefix, negotiating first if no call has yet.
    async fn prefix(&self) -> Result<String, DockerError> {
        if self.api_minor.load(Ordering::Relaxed) == 0 {
            self.negotiate().await?;
        }
        Ok(format!("/v1.{}", self.api_minor.load(Ordering::Relaxed)))
    }

    async fn version_at(&self, path: &str) -> Result<EngineVersion, DockerError> {
        let raw: SystemVersion = self.get_json(path, "version").await?;
        EngineVersion::try_from(raw)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &'static str,
    ) -> Result<T, DockerError> {
        let body = self.get_bytes(path, MAX_BODY).await?;
        serde_json::from_slice(&body).map_err(|e| DockerError::Decode {
            what,
            error: e.to_string(),
        })
    }

    /// GET with the timeout over the whole exchange; non-2xx becomes [`DockerError::Status`].
    async fn get_bytes(&self, path: &str, limit: usize) -> Result<Bytes, DockerError> {
        tokio::time::timeout(self.timeout, async {
            let response = self.transport.get(path).await?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            read_capped(response.into_body(), limit).await
        })
        .await
        .map_err(|_| DockerError::Timeout(self.timeout))?
    }
}

/// Reads a whole body, failing once it passes `limit` bytes.
async fn read_capped(mut body: Incoming, limit: usize) -> Result<Bytes, DockerError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| DockerError::Connect(error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(DockerError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The engine's error: `{"message": "..."}` when it sent one, else the start of the body.
async fn status_error(response: http::Response<Incoming>) -> DockerError {
    let status = response.status();
    let body = match read_capped(response.into_body(), MAX_ERROR_BODY).await {
        Ok(body) => body,
        Err(_) => Bytes::new(),
    };
    DockerError::Status {
        status: status.as_u16(),
        message: error_message(status, &body),
    }
}

fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct EngineError {
        message: Option<String>,
    }
    if let Ok(EngineError {
        message: Some(message),
    }) = serde_json::from_slice(body)
    {
        return truncate(&message, 1024).to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    } else {
        truncate(text, 1024).to_string()
    }
}

/// The live `/events` stream. Frames are read as they arrive and split into events; dropping
/// the stream closes the connection.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    decoder: EventDecoder,
    done: bool,
}

impl EventStream {
    /// The next event; `Some(Err)` for a line that could not be decoded (the stream goes on)
    /// or a broken connection (after which it ends); `None` once the engine closed the stream.
    ///
    /// Cancel-safe: dropping the future loses no event, so it can sit in a `select!`.
    pub async fn next(&mut self) -> Option<Result<ContainerEvent, DockerError>> {
        loop {
            if let Some(item) = self.decoder.next_event() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.push(&data);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(DockerError::Connect(error_chain(&e))));
                }
                None => {
                    self.done = true;
                    self.decoder.finish();
                }
            }
        }
    }

    /// Engine time (`timeNano`) of the latest event read, else the `since` the stream started
    /// from: what a reconnect passes as `since`.
    pub fn last_time_nano(&self) -> Option<i64> {
        self.decoder.last_time_nano()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventAction, RunState};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};

    #[test]
    fn ids_are_validated() {
        for ok in ["abc", "0fde985c5da5", "demo-web-1", "my_app.v2", "A"] {
            assert_eq!(validate_id(ok), Ok(ok));
        }
        for bad in [
            "",
            ".",
            "..",
            "../images",
            "a/b",
            "a?b",
            "a b",
            "-x",
            ".x",
            "%2e%2e",
            "a#b",
            "a\u{0}b",
            "é",
        ] {
            assert!(
                matches!(validate_id(bad), Err(DockerError::InvalidId(_))),
                "accepted {bad:?}"
            );
        }
        assert!(validate_id(&"a".repeat(257)).is_err());
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                StatusCode::NOT_FOUND,
                br#"{"message":"No such container: x"}"#
            ),
            "No such container: x"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"  upstream down \n"),
            "upstream down"
        );
        assert_eq!(
            error_message(StatusCode::INTERNAL_SERVER_ERROR, b""),
            "Internal Server Error"
        );
    }

    /// What the fake engine does with one request.
    enum Reply {
        /// Status, body (sent with Content-Length).
        Full(u16, Vec<u8>),
        /// Chunked body, one chunk per element, then end (or hang up without ending).
        Chunks(Vec<Vec<u8>>, bool),
        /// Never answer.
        Stall,
    }

    type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

    /// A fake engine on a unix socket: answers each request (keep-alive) with `handler`,
    /// recording request lines.
    struct FakeEngine {
        _dir: tempfile::TempDir,
        host: String,
        requests: Arc<Mutex<Vec<String>>>,
        connections: Arc<AtomicU32>,
    }

    impl FakeEngine {
        fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeEngine {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("engine.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(AtomicU32::new(0));
            let handler: Handler = Arc::new(handler);
            let (reqs, conns) = (requests.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    conns.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, handler.clone(), reqs.clone()));
                }
            });
            FakeEngine {
                host: format!("unix://{}", path.display()),
                _dir: dir,
                requests,
                connections,
            }
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn serve(mut stream: UnixStream, handler: Handler, requests: Arc<Mutex<Vec<String>>>) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            buf.drain(..head_end);
            let line = head.lines().next().unwrap_or("").to_string();
            requests.lock().unwrap().push(line.clone());
            match handler(&line) {
                Reply::Full(status, body) => {
                    let out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(out.as_bytes()).await.is_err()
                        || stream.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
                Reply::Chunks(chunks, end) => {
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for c in chunks {
                        let mut out = format!("{:x}\r\n", c.len()).into_bytes();
                        out.extend_from_slice(&c);
                        out.extend_from_slice(b"\r\n");
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if !end {
                        return;
                    }
                    if stream.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
                Reply::Stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
            }
        }
    }

    fn version_reply(api: &str) -> Reply {
        Reply::Full(
            200,
            format!(r#"{{"Version":"fake","ApiVersion":"{api}","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}}"#)
                .into_bytes(),
        )
    }

    fn client(engine: &FakeEngine) -> DockerClient {
        DockerClient::new(&engine.host, Duration::from_millis(500)).unwrap()
    }

    #[tokio::test]
    async fn negotiates_down_to_the_pinned_version_and_prefixes_paths() {
        let engine = FakeEngine::start(|line| {
            if line.starts_with("GET /version ") {
                version_reply("1.51")
            } else if line.starts_with("GET /v1.47/containers/json?") {
                Reply::Full(
                    200,
                    br#"[{"Id":"a","Names":["/a"],"State":"running"}]"#.to_vec(),
                )
            } else {
                Reply::Full(404, br#"{"message":"page not found"}"#.to_vec())
            }
        });
        let c = client(&engine);
        assert_eq!(c.api_version(), None);
        let rows = c
            .list_containers(true, Some("org.example.test=1"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, RunState::Running);
        assert_eq!(c.api_version().as_deref(), Some("1.47"));
        let reqs = engine.requests();
        assert_eq!(
            reqs[0], "GET /version HTTP/1.1",
            "negotiation is unversioned"
        );
        assert_eq!(
            reqs[1],
            "GET /v1.47/containers/json?all=true&filters=%7B%22label%22%3A%5B%22org%2Eexample%2Etest%3D1%22%5D%7D HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn get_raw_sends_the_path_as_given_and_returns_any_status() {
        let engine = FakeEngine::start(|line| {
            if line.starts_with("GET /_ping ") {
                Reply::Full(200, b"OK".to_vec())
            } else {
                Reply::Full(403, br#"{"message":"denied"}"#.to_vec())
            }
        });
        let c = client(&engine);
        let (status, body) = c.get_raw("/_ping").await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"OK"[..]));
        let (status, body) = c.get_raw("/containers/x/../../images/json").await.unwrap();
        assert_eq!((status, &body[..]), (403, &br#"{"message":"denied"}"#[..]));
        assert_eq!(
            engine.requests(),
            [
                "GET /_ping HTTP/1.1",
                "GET /containers/x/../../images/json HTTP/1.1"
            ]
        );
        assert!(matches!(
            c.get_raw("no-slash").await,
            Err(DockerError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn old_engines_are_refused() {
        for (api, min) in [
            ("1.40", "1.12"),
            ("2.0", "1.12"),
            ("garbage", "1.12"),
            ("1.50", "1.48"),
        ] {
            let (api, min) = (api.to_string(), min.to_string());
            let engine = FakeEngine::start(move |_| {
                Reply::Full(
                    200,
                    format!(r#"{{"ApiVersion":"{api}","MinAPIVersion":"{min}"}}"#).into_bytes(),
                )
            });
            let c = client(&engine);
            let err = c.negotiate().await.unwrap_err();
            assert!(matches!(err, DockerError::Unsupported(_)), "{err:?}");
            assert_eq!(c.api_version(), None);
            assert!(matches!(
                c.inspect("a").await,
                Err(DockerError::Unsupported(_))
            ));
        }
    }

    #[tokio::test]
    async fn status_errors_carry_the_engine_message() {
        let engine = FakeEngine::start(|line| {
            if line.starts_with("GET /version ") {
                version_reply("1.41")
            } else {
                Reply::Full(404, br#"{"message":"No such container: gone"}"#.to_vec())
            }
        });
        let err = client(&engine).inspect("gone").await.unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err,
            DockerError::Status {
                status: 404,
                message: "No such container: gone".into()
            }
        );
    }

    #[tokio::test]
    async fn invalid_ids_never_reach_the_engine() {
        let engine = FakeEngine::start(|_| version_reply("1.41"));
        let c = client(&engine);
        for bad in ["../../images/json", "x/archive?path=/", ""] {
            assert!(matches!(
                c.inspect(bad).await,
                Err(DockerError::InvalidId(_))
            ));
            assert!(matches!(
                c.stats_once(bad).await,
                Err(DockerError::InvalidId(_))
            ));
        }
        assert!(engine.requests().is_empty(), "{:?}", engine.requests());
    }

    #[tokio::test]
    async fn garbage_huge_and_stalled_answers_are_errors() {
        let engine = FakeEngine::start(|line| {
            if line.starts_with("GET /version ") {
                version_reply("1.41")
            } else if line.contains("/containers/garbage/") {
                Reply::Full(200, b"\x00\xffnot json{{{".to_vec())
            } else if line.contains("/containers/huge/") {
                Reply::Chunks(vec![vec![b' '; 1 << 20]; 17], true)
            } else if line.contains("/containers/wrongtype/") {
                Reply::Full(200, br#"{"Id":"a","State":{"ExitCode":"x"}}"#.to_vec())
            } else {
                Reply::Stall
            }
        });
        let c = DockerClient::new(&engine.host, Duration::from_secs(2)).unwrap();
        assert!(matches!(
            c.inspect("garbage").await,
            Err(DockerError::Decode {
                what: "container inspect",
                ..
            })
        ));
        assert!(matches!(
            c.inspect("wrongtype").await,
            Err(DockerError::Decode { .. })
        ));
        assert_eq!(
            c.inspect("huge").await,
            Err(DockerError::TooLarge { limit: MAX_BODY })
        );
        let started = std::time::Instant::now();
        assert_eq!(
            c.stats_once("stall").await,
            Err(DockerError::Timeout(Duration::from_secs(2)))
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn connections_are_reused() {
        let engine = FakeEngine::start(|line| {
            if line.starts_with("GET /version ") {
                version_reply("1.41")
            } else {
                Reply::Full(200, br#"{"Id":"a","Name":"/a"}"#.to_vec())
            }
        });
        let c = client(&engine);
        for _ in 0..50 {
            c.clone().inspect("a").await.unwrap();
        }
        assert_eq!(engine.requests().len(), 51);
        assert_eq!(engine.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn event_stream_reads_frames_incrementally() {
        let kill = r#"{"Type":"container","Action":"kill","Actor":{"ID":"c1","Attributes":{"name":"web","signal":"15"}},"time":1795473053,"timeNano":1795473053000000001}"#;
        let die = r#"{"Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"name":"web","exitCode":"143"}},"time":1795473053,"timeNano":1795473053000000002}"#;
        let body = format!("{kill}\n{{broken\n{die}\n");
        let (a, b) = body.as_bytes().split_at(30);
        let chunks = vec![a.to_vec(), b.to_vec()];
        let engine = FakeEngine::start(move |line| {
            if line.starts_with("GET /version ") {
                version_reply("1.41")
            } else {
                Reply::Chunks(chunks.clone(), false)
            }
        });
        let c = client(&engine);
        let mut stream = c.events(Some(1_795_473_000_123_000_000)).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.action, EventAction::Kill { signal: Some(15) });
        assert_eq!(first.container.name, "web");
        assert!(matches!(
            stream.next().await,
            Some(Err(DockerError::Decode { .. }))
        ));
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(
            second.action,
            EventAction::Die {
                exit_code: Some(143)
            }
        );
        assert_eq!(stream.last_time_nano(), Some(1795473053000000002));
        // The fake hangs up without ending the chunked body: a broken stream, then the end.
        assert!(matches!(
            stream.next().await,
            Some(Err(DockerError::Connect(_)))
        ));
        assert!(stream.next().await.is_none());
        let reqs = engine.requests();
        assert!(
            reqs[1].starts_with("GET /v1.41/events?filters=%7B")
                && reqs[1].contains("%22type%22%3A%5B%22container%22%5D"),
            "{reqs:?}"
        );
        assert!(reqs[1].contains("%22health%5Fstatus%22"), "{reqs:?}");
        assert!(reqs[1].contains("&since=1795473000.123000000 "), "{reqs:?}");
    }

    #[tokio::test]
    async fn unreachable_engine_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/none.sock", dir.path().display());
        let c = DockerClient::new(&host, Duration::from_secs(1)).unwrap();
        assert!(matches!(c.ping().await, Err(DockerError::Connect(_))));
        assert!(matches!(c.negotiate().await, Err(DockerError::Connect(_))));
        assert!(matches!(
            DockerClient::new("http://x", Duration::from_secs(1)),
            Err(DockerError::InvalidHost(_))
        ));
    }
}
