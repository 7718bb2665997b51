//! A fake Docker Engine API (version 1.41) on a unix socket, for the faults a real engine cannot
//! be made to produce: 500s, malformed JSON, stalls, closed event streams, floods.
//!
//! It speaks what the watchdog reads: `/_ping` (GET, HEAD), `/version`, `/containers/json`,
//! `/containers/{id}/json`, `/containers/{id}/stats` and the streaming `/events` (chunked,
//! newline-delimited JSON), each with or without a `/v1.NN` prefix (a version above the fake's
//! API version, or below its minimum, gets the engine's 400). `POST
//! /containers/{id}/{start,stop,restart,kill}` answer 204 and change the fake state, so a test
//! can see a writer at work; every other path is a 404.
//!
//! The test scripts everything at run time:
//! - containers ([`FakeContainer`]: id, name, labels, state, health, exit code, OOMKilled,
//!   RestartCount, restart policy, stats) through [`FakeDocker::add_container`] and
//!   [`FakeDocker::update`];
//! - events through [`FakeDocker::push_event`] (any JSON) or
//!   [`FakeDocker::push_container_event`] (shaped like the engine's); every event is kept, so a
//!   client reconnecting with `since=` gets the ones it missed, as from the engine's buffer;
//! - faults through [`FakeDocker::set_fault`] (see [`Fault`]).
//!
//! Every request is logged (method, path and query) before any fault applies:
//! [`FakeDocker::requests`] and [`FakeDocker::non_read_requests`] let a test assert that a
//! client only ever sent GET and HEAD.
//!
//! The server runs on its own thread and runtime, so it serves while the test thread blocks and
//! works from sync and async tests alike. Dropping the [`FakeDocker`] stops it.
//!
//! JSON shapes follow the Engine API 1.41 reference (`ContainerList`, `ContainerInspect`,
//! `ContainerStats`, `SystemEvents`) and what a 20.10 engine sends on the project's machines.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use vigil_docker::{Health, LABEL_PROJECT, LABEL_SERVICE, RunState};

/// How many pushed events a slow event stream may fall behind before it loses some (the real
/// engine drops events for slow readers too, after 1024).
const EVENT_BUFFER: usize = 65_536;
const FAKE_IMAGE: &str = "vigil-test/busybox:latest";
const FAKE_IMAGE_ID: &str =
    "sha256:8cf065ccd1aa348bef1123b3a8a0af498332aa85d122c5bf134819927e00fcbb";
/// A body that is not JSON: what [`Fault::MalformedJson`] sends.
pub const GARBAGE_BODY: &str = "{\"Id\": \"3f1c\", \"State\": {\"Status\": \u{0}\u{1}garbage";

/// A fault the fake engine applies to requests, switchable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Every request (including `/_ping`) gets 500 with an engine-style error body.
    Status500,
    /// Every JSON endpoint answers 200 with a body that is not JSON; `/events` streams garbage
    /// lines (one at once, then one per event); `/_ping` still answers `OK`.
    MalformedJson,
    /// Accept the connection, read the request, never answer; open event streams stop
    /// delivering (events are held, not lost) until the fault is cleared.
    Stall,
    /// End every open `/events` stream now; new `/events` requests get 200 and an empty stream
    /// that ends at once. Other endpoints answer normally.
    CloseEventStream,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: String,
    /// Path and query, exactly as sent (e.g. `/v1.41/containers/json?all=true`).
    pub path: String,
}

impl RequestRecord {
    /// GET or HEAD.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// What `/containers/{id}/stats` reports for a container. Each stats request advances the CPU
/// counters by one second's worth at `cpu_percent`, so CPU % computed between two one-shot
/// samples (as `docker stats` does) comes out as `cpu_percent`.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeStats {
    /// CPU use in `docker stats` terms (100 = one CPU fully busy).
    pub cpu_percent: f64,
    pub online_cpus: u32,
    /// `memory_stats.usage` in bytes (includes `inactive_file`, as the engine reports it).
    pub memory_usage: u64,
    /// `memory_stats.limit`; the host's memory when the container has no limit.
    pub memory_limit: u64,
    /// `memory_stats.stats.inactive_file` (and `total_inactive_file`).
    pub inactive_file: u64,
    /// Cumulative `cpu_stats.cpu_usage.total_usage` (ns).
    pub cpu_total: u64,
    /// Cumulative `cpu_stats.system_cpu_usage` (ns).
    pub system_cpu: u64,
}

impl Default for FakeStats {
    fn default() -> Self {
        FakeStats {
            cpu_percent: 1.0,
            online_cpus: 2,
            memory_usage: 16 << 20,
            memory_limit: 24 << 30,
            inactive_file: 1 << 20,
            cpu_total: 1_000_000_000,
            system_cpu: 1_000_000_000_000,
        }
    }
}

/// A container as the fake engine knows it. Build with [`FakeContainer::new`] and the
/// builder methods; change later with [`FakeDocker::update`].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContainer {
    /// 64 hex characters.
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    /// `Health::None` means no healthcheck: inspect then has no `State.Health`.
    pub health: Health,
    pub failing_streak: u64,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub restart_count: u64,
    /// `HostConfig.RestartPolicy.Name`.
    pub restart_policy: String,
    /// `HostConfig.Memory` (0 = unlimited).
    pub memory_limit: u64,
    /// `Config.Env` (`KEY=value`): a gate must strip it; the fake returns it like the engine.
    pub env: Vec<String>,
    pub pid: u32,
    pub created: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub stats: FakeStats,
}

impl FakeContainer {
    /// A running container without healthcheck, compose labels or restart policy.
    pub fn new(name: &str) -> Self {
        let mut rng = rand::thread_rng();
        let id: String = (0..32)
            .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
            .collect();
        let now = SystemTime::now();
        FakeContainer {
            id,
            name: name.trim_start_matches('/').to_owned(),
            image: FAKE_IMAGE.to_owned(),
            labels: BTreeMap::new(),
            state: RunState::Running,
            health: Health::None,
            failing_streak: 0,
            exit_code: 0,
            oom_killed: false,
            restart_count: 0,
            restart_policy: "no".to_owned(),
            memory_limit: 0,
            env: vec!["PATH=/bin".to_owned()],
            pid: rng.gen_range(1000..60000),
            created: now - Duration::from_secs(60),
            started_at: Some(now - Duration::from_secs(30)),
            finished_at: None,
            stats: FakeStats::default(),
        }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    /// Compose's project and service labels.
    pub fn compose(self, project: &str, service: &str) -> Self {
        self.label(LABEL_PROJECT, project)
            .label(LABEL_SERVICE, service)
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn state(mut self, state: RunState) -> Self {
        self.state = state;
        self
    }

    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets the exit code; a non-running state is the caller's to set.
    pub fn exit_code(mut self, code: i64) -> Self {
        self.exit_code = code;
        self
    }

    pub fn oom_killed(mut self, oom: bool) -> Self {
        self.oom_killed = oom;
        self
    }

    pub fn restart_count(mut self, n: u64) -> Self {
        self.restart_count = n;
        self
    }

    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.restart_policy = policy.to_owned();
        self
    }

    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    pub fn stats(mut self, stats: FakeStats) -> Self {
        self.stats = stats;
        self
    }

    fn matches(&self, id_or_name: &str) -> bool {
        let wanted = id_or_name.trim_start_matches('/');
        self.id == wanted
            || self.name == wanted
            || (wanted.len() >= 4 && self.id.starts_with(wanted))
    }

    fn is_listed_without_all(&self) -> bool {
        matches!(
            self.state,
            RunState::Running | RunState::Paused | RunState::Restarting
        )
    }

    /// The `GET /containers/json` row.
    pub fn summary_json(&self) -> Value {
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": self.image,
            "ImageID": FAKE_IMAGE_ID,
            "Command": "sleep infinity",
            "Created": unix_secs(self.created),
            "Ports": [],
            "Labels": self.labels,
            "State": run_state_str(self.state),
            "Status": self.status_text(),
            "HostConfig": { "NetworkMode": "default" },
            "NetworkSettings": { "Networks": {} },
            "Mounts": [],
        })
    }

    /// The `GET /containers/{id}/json` body.
    pub fn inspect_json(&self) -> Value {
        let mut state = json!({
            "Status": run_state_str(self.state),
            "Running": matches!(self.state, RunState::Running | RunState::Paused | RunState::Restarting),
            "Paused": self.state == RunState::Paused,
            "Restarting": self.state == RunState::Restarting,
            "OOMKilled": self.oom_killed,
            "Dead": self.state == RunState::Dead,
            "Pid": if self.state == RunState::Running { self.pid } else { 0 },
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": self.started_at.map(rfc3339).unwrap_or_else(zero_time),
            "FinishedAt": self.finished_at.map(rfc3339).unwrap_or_else(zero_time),
        });
        if self.health != Health::None {
            state["Health"] = json!({
                "Status": health_str(self.health),
                "FailingStreak": self.failing_streak,
                "Log": [],
            });
        }
        let healthcheck = (self.health != Health::None).then(
            || json!({ "Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 1 }),
        );
        let mut config = json!({
            "Hostname": &self.id[..12.min(self.id.len())],
            "Domainname": "",
            "User": "",
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": self.env,
            "Cmd": ["sleep", "infinity"],
            "Image": self.image,
            "Volumes": null,
            "WorkingDir": "",
            "Entrypoint": null,
            "OnBuild": null,
            "Labels": self.labels,
        });
        if let Some(check) = healthcheck {
            config["Healthcheck"] = check;
        }
        json!({
            "Id": self.id,
            "Created": rfc3339(self.created),
            "Path": "sleep",
            "Args": ["infinity"],
            "State": state,
            "Image": FAKE_IMAGE_ID,
            "ResolvConfPath": "",
            "HostnamePath": "",
            "HostsPath": "",
            "LogPath": "",
            "Name": format!("/{}", self.name),
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": {
                "NetworkMode": "default",
                "RestartPolicy": { "Name": self.restart_policy, "MaximumRetryCount": 0 },
                "Memory": self.memory_limit,
                "MemorySwap": if self.memory_limit > 0 { self.memory_limit as i64 } else { 0 },
            },
            "GraphDriver": { "Name": "overlay2", "Data": null },
            "Mounts": [],
            "Config": config,
            "NetworkSettings": { "Networks": {} },
        })
    }

    /// One stats sample; advances the CPU counters (see [`FakeStats`]).
    fn next_stats_json(&mut self, one_shot: bool) -> Value {
        let running = self.state == RunState::Running;
        let s = &mut self.stats;
        let pre_total = s.cpu_total;
        let pre_system = s.system_cpu;
        if running {
            s.system_cpu += u64::from(s.online_cpus.max(1)) * 1_000_000_000;
            s.cpu_total += (s.cpu_percent.max(0.0) / 100.0 * 1_000_000_000.0) as u64;
        }
        let per_cpu = vec![s.cpu_total / u64::from(s.online_cpus.max(1)); s.online_cpus as usize];
        let throttling = json!({ "periods": 0, "throttled_periods": 0, "throttled_time": 0 });
        let precpu = if one_shot {
            json!({ "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                    "throttling_data": throttling })
        } else {
            json!({ "cpu_usage": { "total_usage": pre_total, "percpu_usage": per_cpu,
                                   "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                    "system_cpu_usage": pre_system, "online_cpus": s.online_cpus,
                    "throttling_data": throttling })
        };
        let empty: Vec<Value> = Vec::new();
        json!({
            "read": rfc3339(SystemTime::now()),
            "preread": if one_shot { zero_time() } else { rfc3339(SystemTime::now() - Duration::from_secs(1)) },
            "pids_stats": { "current": if running { 1 } else { 0 } },
            "blkio_stats": {
                "io_service_bytes_recursive": empty, "io_serviced_recursive": [],
                "io_queue_recursive": [], "io_service_time_recursive": [],
                "io_wait_time_recursive": [], "io_merged_recursive": [],
                "io_time_recursive": [], "sectors_recursive": [],
            },
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": {
                "cpu_usage": { "total_usage": s.cpu_total, "percpu_usage": per_cpu,
                               "usage_in_kernelmode": 0, "usage_in_usermode": s.cpu_total },
                "system_cpu_usage": s.system_cpu,
                "online_cpus": s.online_cpus,
                "throttling_data": throttling,
            },
            "precpu_stats": precpu,
            "memory_stats": {
                "usage": s.memory_usage,
                "max_usage": s.memory_usage,
                "stats": {
                    "active_anon": s.memory_usage.saturating_sub(s.inactive_file),
                    "inactive_file": s.inactive_file,
                    "total_inactive_file": s.inactive_file,
                    "cache": s.inactive_file,
                    "rss": s.memory_usage.saturating_sub(s.inactive_file),
                    "hierarchical_memory_limit": s.memory_limit,
                },
                "limit": s.memory_limit,
            },
            "name": format!("/{}", self.name),
            "id": self.id,
        })
    }

    fn status_text(&self) -> String {
        let up = self
            .started_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(0, |d| d.as_secs());
        let ago = self
            .finished_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(0, |d| d.as_secs());
        match self.state {
            RunState::Running => match self.health {
                Health::None => format!("Up {up} seconds"),
                Health::Starting => format!("Up {up} seconds (health: starting)"),
                Health::Healthy => format!("Up {up} seconds (healthy)"),
                Health::Unhealthy => format!("Up {up} seconds (unhealthy)"),
            },
            RunState::Paused => format!("Up {up} seconds (Paused)"),
            RunState::Restarting => format!("Restarting ({}) {ago} seconds ago", self.exit_code),
            RunState::Exited => format!("Exited ({}) {ago} seconds ago", self.exit_code),
            RunState::Created => "Created".to_owned(),
            RunState::Removing => "Removal In Progress".to_owned(),
            RunState::Dead => "Dead".to_owned(),
            RunState::Unknown => String::new(),
        }
    }
}

/// A container event shaped like the engine's: `Type`, `Action`, `Actor{ID, Attributes}` (the
/// container's labels plus `name` and `image`, and `extra`), `scope`, and the deprecated
/// `status`/`id`/`from`. `time`/`timeNano` are stamped by [`FakeDocker::push_event`].
pub fn container_event(container: &FakeContainer, action: &str, extra: &[(&str, &str)]) -> Value {
    let mut attributes = Map::new();
    for (k, v) in &container.labels {
        attributes.insert(k.clone(), Value::String(v.clone()));
    }
    attributes.insert("image".into(), Value::String(container.image.clone()));
    attributes.insert("name".into(), Value::String(container.name.clone()));
    for (k, v) in extra {
        attributes.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    json!({
        "status": action,
        "id": container.id,
        "from": container.image,
        "Type": "container",
        "Action": action,
        "Actor": { "ID": container.id, "Attributes": attributes },
        "scope": "local",
    })
}

struct State {
    containers: Vec<FakeContainer>,
    requests: Vec<RequestRecord>,
    events: Vec<Arc<Value>>,
    last_time_nano: i64,
    api_version: String,
    min_api_version: String,
    engine_version: String,
}

struct Shared {
    state: Mutex<State>,
    fault: watch::Sender<Fault>,
    /// Bumped to end every open event stream.
    close_streams: watch::Sender<u64>,
    events: broadcast::Sender<Arc<Value>>,
    open_streams: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fake engine. See the module docs.
pub struct FakeDocker {
    shared: Arc<Shared>,
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    // Declared last: removed after the server thread has stopped.
    _dir: tempfile::TempDir,
}

impl FakeDocker {
    /// Binds `docker.sock` in a fresh temp dir and serves it on a background thread.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vigil-fake-docker-")
            .tempdir()
            .expect("creating a temp dir for the fake engine's socket");
        let socket = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .expect("binding the fake engine's unix socket");
        listener
            .set_nonblocking(true)
            .expect("making the fake engine's socket non-blocking");
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                containers: Vec::new(),
                requests: Vec::new(),
                events: Vec::new(),
                last_time_nano: 0,
                api_version: "1.41".to_owned(),
                min_api_version: "1.12".to_owned(),
                engine_version: "20.10.24".to_owned(),
            }),
            fault: watch::Sender::new(Fault::None),
            close_streams: watch::Sender::new(0),
            events,
            open_streams: AtomicUsize::new(0),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let server_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("fake-docker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the fake engine's runtime");
                runtime.block_on(serve(listener, server_shared, shutdown_rx));
            })
            .expect("spawning the fake engine's thread");
        FakeDocker {
            shared,
            socket,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `unix:///.../docker.sock`, for `WATCHDOG_DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Sets what `/version` reports and which `/v1.NN` prefixes are accepted.
    pub fn set_api_version(&self, api_version: &str, min_api_version: &str) {
        let mut state = self.shared.lock();
        state.api_version = api_version.to_owned();
        state.min_api_version = min_api_version.to_owned();
    }

    /// Adds a container; returns its id.
    pub fn add_container(&self, container: FakeContainer) -> String {
        let id = container.id.clone();
        self.shared.lock().containers.push(container);
        id
    }

    /// Changes a container in place; panics if there is none with that id or name.
    pub fn update(&self, id_or_name: &str, change: impl FnOnce(&mut FakeContainer)) {
        let mut state = self.shared.lock();
        let container = state
            .containers
            .iter_mut()
            .find(|c| c.matches(id_or_name))
            .unwrap_or_else(|| panic!("fake engine: no container {id_or_name} to update"));
        change(container);
    }

    /// Removes a container; returns it if it existed.
    pub fn remove_container(&self, id_or_name: &str) -> Option<FakeContainer> {
        let mut state = self.shared.lock();
        let index = state
            .containers
            .iter()
            .position(|c| c.matches(id_or_name))?;
        Some(state.containers.remove(index))
    }

    /// A copy of one container.
    pub fn container(&self, id_or_name: &str) -> Option<FakeContainer> {
        self.shared
            .lock()
            .containers
            .iter()
            .find(|c| c.matches(id_or_name))
            .cloned()
    }

    /// A copy of every container.
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.shared.lock().containers.clone()
    }

    /// Sends `event` to every open `/events` stream (subject to each stream's filters) and
    /// keeps it for `since=` replays. `time` and `timeNano` are set when absent (`timeNano`
    /// strictly increasing). Returns the event as sent.
    pub fn push_event(&self, mut event: Value) -> Value {
        let mut state = self.shared.lock();
        if event.get("timeNano").and_then(Value::as_i64).is_none() {
            let nanos = now_nanos().max(state.last_time_nano + 1);
            event["timeNano"] = json!(nanos);
            if event.get("time").is_none() {
                event["time"] = json!(nanos / 1_000_000_000);
            }
        }
        if let Some(nanos) = event.get("timeNano").and_then(Value::as_i64) {
            state.last_time_nano = state.last_time_nano.max(nanos);
        }
        let event = Arc::new(event);
        state.events.push(event.clone());
        // No receiver is fine: nobody is streaming right now.
        let _ = self.shared.events.send(event.clone());
        (*event).clone()
    }

    /// Pushes [`container_event`] for a known container; for `die` the container's exit code
    /// is added as `exitCode`. Panics if the container is unknown.
    pub fn push_container_event(&self, id_or_name: &str, action: &str) -> Value {
        let container = self
            .container(id_or_name)
            .unwrap_or_else(|| panic!("fake engine: no container {id_or_name} for an event"));
        let exit_code = container.exit_code.to_string();
        let extra: Vec<(&str, &str)> = if action == "die" {
            vec![("exitCode", exit_code.as_str())]
        } else {
            Vec::new()
        };
        self.push_event(container_event(&container, action, &extra))
    }

    /// Every event pushed so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .lock()
            .events
            .iter()
            .map(|e| (**e).clone())
            .collect()
    }

    /// Switches the fault mode for requests from now on (see [`Fault`]).
    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Ends every open `/events` stream now, without changing the fault mode.
    pub fn close_event_streams(&self) {
        self.shared
            .close_streams
            .send_modify(|generation| *generation += 1);
    }

    /// How many `/events` streams are open.
    pub fn event_streams_open(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` `/events` streams are open; false on timeout.
    pub fn wait_for_event_streams(&self, n: usize, timeout: Duration) -> bool {
        poll_until(timeout, || self.event_streams_open() >= n)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Requests whose method was neither GET nor HEAD.
    pub fn non_read_requests(&self) -> Vec<RequestRecord> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| !r.is_read())
            .cloned()
            .collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Waits until some logged request satisfies `pred`; false on timeout.
    pub fn wait_for_request(
        &self,
        timeout: Duration,
        pred: impl Fn(&RequestRecord) -> bool,
    ) -> bool {
        poll_until(timeout, || self.shared.lock().requests.iter().any(&pred))
    }

    /// How many logged requests satisfy `pred`.
    pub fn count_requests(&self, pred: impl Fn(&RequestRecord) -> bool) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| pred(r))
            .count()
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn poll_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("[fake-docker] cannot serve the socket: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, shared.clone()));
                    // Errors here are clients hanging up, which tests do on purpose.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// A response body: a whole buffer, or a channel of chunks (sent with chunked encoding).
pub struct FakeBody(BodyInner);

enum BodyInner {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            BodyInner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyInner::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, BodyInner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyInner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            BodyInner::Full(None) => SizeHint::with_exact(0),
            BodyInner::Channel(_) => SizeHint::default(),
        }
    }
}

type FakeResponse = Response<FakeBody>;

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
    api: &str,
) -> FakeResponse {
    let mut response = Response::new(FakeBody(BodyInner::Full(Some(body.into()))));
    *response.status_mut() = status;
    add_engine_headers(&mut response, content_type, api);
    response
}

fn respond_json(status: StatusCode, body: &Value, api: &str) -> FakeResponse {
    respond(status, "application/json", format!("{body}\n"), api)
}

fn error(status: StatusCode, message: &str, api: &str) -> FakeResponse {
    respond_json(status, &json!({ "message": message }), api)
}

fn add_engine_headers(response: &mut FakeResponse, content_type: &str, api: &str) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(api) {
        headers.insert("Api-Version", v);
    }
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert(
        "Server",
        HeaderValue::from_static("Docker/20.10.24 (linux)"),
    );
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<FakeResponse, Infallible> {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let api = {
        let mut state = shared.lock();
        state.requests.push(RequestRecord {
            method: method.to_string(),
            path: path_and_query.clone(),
        });
        state.api_version.clone()
    };
    let fault = *shared.fault.borrow();
    match fault {
        Fault::Status500 => {
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fake engine: injected fault",
                &api,
            ));
        }
        Fault::Stall => std::future::pending::<()>().await,
        Fault::None | Fault::MalformedJson | Fault::CloseEventStream => {}
    }

    let path = req.uri().path();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let (version, route) = split_version(path);
    if let Some(version) = version
        && let Some(rejection) = check_version(&shared, version, &api)
    {
        return Ok(rejection);
    }
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    let malformed = fault == Fault::MalformedJson;
    let garbage = || respond(StatusCode::OK, "application/json", GARBAGE_BODY, &api);

    let response = match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => {
            let mut r = respond(StatusCode::OK, "text/plain; charset=utf-8", "OK", &api);
            r.headers_mut().insert(
                "Cache-Control",
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            );
            r.headers_mut()
                .insert("Pragma", HeaderValue::from_static("no-cache"));
            if method == Method::HEAD {
                *r.body_mut() = FakeBody(BodyInner::Full(None));
            }
            r
        }
        (&Method::GET, _) if malformed && route != "/events" => garbage(),
        (&Method::GET, ["version"]) => respond_json(StatusCode::OK, &version_json(&shared), &api),
        (&Method::GET, ["containers", "json"]) => {
            let all = matches!(
                query.get("all").map(String::as_str),
                Some("1" | "true" | "True")
            );
            let filters = parse_filters(query.get("filters"));
            let state = shared.lock();
            let rows: Vec<Value> = state
                .containers
                .iter()
                .filter(|c| all || c.is_listed_without_all())
                .filter(|c| list_filters_match(&filters, c))
                .map(FakeContainer::summary_json)
                .collect();
            respond_json(StatusCode::OK, &Value::Array(rows), &api)
        }
        (&Method::GET, ["containers", id, "json"]) => {
            let state = shared.lock();
            match state.containers.iter().find(|c| c.matches(id)) {
                Some(c) => respond_json(StatusCode::OK, &c.inspect_json(), &api),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("No such container: {id}"),
                    &api,
                ),
            }
        }
        (&Method::GET, ["containers", id, "stats"]) => {
            let stream = !matches!(
                query.get("stream").map(String::as_str),
                Some("0" | "false" | "False")
            );
            let one_shot = matches!(
                query.get("one-shot").map(String::as_str),
                Some("1" | "true" | "True")
            );
            stats_response(&shared, id, stream, one_shot && !stream, &api)
        }
        (&Method::GET, ["events"]) => events_response(&shared, &query, fault, &api),
        (
            &Method::POST,
            [
                "containers",
                id,
                action @ ("start" | "stop" | "restart" | "kill"),
            ],
        ) => write_action(&shared, id, action, &api),
        _ => error(StatusCode::NOT_FOUND, "page not found", &api),
    };
    Ok(response)
}

fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return (Some(version), &rest[end..]);
        }
    }
    (None, path)
}

fn parse_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn check_version(shared: &Shared, version: &str, api: &str) -> Option<FakeResponse> {
    let min = shared.lock().min_api_version.clone();
    let wanted = parse_version(version);
    if wanted > parse_version(api) {
        let msg =
            format!("client version {version} is too new. Maximum supported API version is {api}");
        return Some(error(StatusCode::BAD_REQUEST, &msg, api));
    }
    if wanted < parse_version(&min) {
        let msg = format!(
            "client version {version} is too old. Minimum supported API version is {min}, \
             please upgrade your client to a newer version"
        );
        return Some(error(StatusCode::BAD_REQUEST, &msg, api));
    }
    None
}

fn version_json(shared: &Shared) -> Value {
    let state = shared.lock();
    json!({
        "Platform": { "Name": "" },
        "Components": [{
            "Name": "Engine",
            "Version": state.engine_version,
            "Details": {
                "ApiVersion": state.api_version,
                "Arch": "amd64",
                "BuildTime": "2026-01-01T00:00:00.000000000+00:00",
                "Experimental": "false",
                "GitCommit": "fake",
                "GoVersion": "go1.19.8",
                "KernelVersion": "6.1.0",
                "MinAPIVersion": state.min_api_version,
                "Os": "linux",
            },
        }],
        "Version": state.engine_version,
        "ApiVersion": state.api_version,
        "MinAPIVersion": state.min_api_version,
        "GitCommit": "fake",
        "GoVersion": "go1.19.8",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0",
        "BuildTime": "2026-01-01T00:00:00.000000000+00:00",
    })
}

fn stats_response(
    shared: &Arc<Shared>,
    id: &str,
    stream: bool,
    one_shot: bool,
    api: &str,
) -> FakeResponse {
    let first = {
        let mut state = shared.lock();
        match state.containers.iter_mut().find(|c| c.matches(id)) {
            Some(c) => c.next_stats_json(one_shot),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("No such container: {id}"),
                    api,
                );
            }
        }
    };
    if !stream {
        return respond_json(StatusCode::OK, &first, api);
    }
    // Streaming stats: one sample a second until the client hangs up or the container goes.
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let shared = shared.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let mut sample = first;
        loop {
            if tx.send(Bytes::from(format!("{sample}\n"))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let next = shared
                .lock()
                .containers
                .iter_mut()
                .find(|c| c.matches(&id))
                .map(|c| c.next_stats_json(false));
            match next {
                Some(next) => sample = next,
                None => break,
            }
        }
    });
    streaming_response(rx, api)
}

fn streaming_response(rx: mpsc::Receiver<Bytes>, api: &str) -> FakeResponse {
    let mut response = Response::new(FakeBody(BodyInner::Channel(rx)));
    add_engine_headers(&mut response, "application/json", api);
    response
}

fn write_action(shared: &Shared, id: &str, action: &str, api: &str) -> FakeResponse {
    let mut state = shared.lock();
    let Some(c) = state.containers.iter_mut().find(|c| c.matches(id)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No such container: {id}"),
            api,
        );
    };
    let now = SystemTime::now();
    match action {
        "start" if c.state == RunState::Running => {
            return respond(StatusCode::NOT_MODIFIED, "text/plain", Bytes::new(), api);
        }
        "start" | "restart" => {
            c.state = RunState::Running;
            c.started_at = Some(now);
            c.exit_code = 0;
            c.oom_killed = false;
            if c.health != Health::None {
                c.health = Health::Starting;
                c.failing_streak = 0;
            }
        }
        "stop" if c.state != RunState::Running => {
            return respond(StatusCode::NOT_MODIFIED, "text/plain", Bytes::new(), api);
        }
        _ => {
            if c.state != RunState::Running {
                let msg = format!(
                    "Cannot kill container: {id}: Container {} is not running",
                    c.id
                );
                return error(StatusCode::CONFLICT, &msg, api);
            }
            c.state = RunState::Exited;
            c.finished_at = Some(now);
            c.exit_code = if action == "stop" { 143 } else { 137 };
        }
    }
    let mut response = Response::new(FakeBody(BodyInner::Full(None)));
    *response.status_mut() = StatusCode::NO_CONTENT;
    add_engine_headers(&mut response, "text/plain", api);
    response
}

/// `/events`: replays kept events from `since` (up to `until`), then streams pushed events until
/// the client hangs up, `until` is reached, or a fault or [`FakeDocker::close_event_streams`]
/// ends it.
fn events_response(
    shared: &Arc<Shared>,
    query: &BTreeMap<String, String>,
    fault: Fault,
    api: &str,
) -> FakeResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    if fault == Fault::CloseEventStream {
        drop(tx);
        return streaming_response(rx, api);
    }
    let filters = parse_filters(query.get("filters"));
    let until = query.get("until").and_then(|s| parse_timestamp_nanos(s));
    // With only `until`, the engine replays its buffer up to then.
    let since = query
        .get("since")
        .and_then(|s| parse_timestamp_nanos(s))
        .or(until.map(|_| 0));
    // Subscribe and snapshot under the lock push_event holds, so nothing is missed or doubled.
    let (mut live, replay) = {
        let state = shared.lock();
        let live = shared.events.subscribe();
        let replay: Vec<Arc<Value>> = match since {
            Some(since) => state
                .events
                .iter()
                .filter(|e| {
                    let t = event_time_nanos(e);
                    t >= since && until.is_none_or(|u| t <= u)
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (live, replay)
    };
    let mut fault_rx = shared.fault.subscribe();
    let mut close_rx = shared.close_streams.subscribe();
    shared.open_streams.fetch_add(1, Ordering::SeqCst);
    let guard = OpenStreamGuard(shared.clone());
    tokio::spawn(async move {
        let shared = &guard.0;
        let garbage = || Bytes::from(format!("{GARBAGE_BODY}\n"));
        if fault == Fault::MalformedJson && tx.send(garbage()).await.is_err() {
            return;
        }
        for event in replay.iter().filter(|e| event_matches(&filters, e)) {
            if tx.send(encode_event(shared, event)).await.is_err() {
                return;
            }
        }
        if until.is_some() {
            return;
        }
        loop {
            let stalled = *fault_rx.borrow() == Fault::Stall;
            tokio::select! {
                _ = close_rx.changed() => return,
                changed = fault_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *fault_rx.borrow_and_update();
                    if now == Fault::CloseEventStream {
                        return;
                    }
                    if now == Fault::MalformedJson && tx.send(garbage()).await.is_err() {
                        return;
                    }
                }
                received = live.recv(), if !stalled => match received {
                    Ok(event) => {
                        if event_matches(&filters, &event)
                            && tx.send(encode_event(shared, &event)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    streaming_response(rx, api)
}

/// Keeps the open-stream count right however a stream task ends.
struct OpenStreamGuard(Arc<Shared>);

impl Drop for OpenStreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One event line, or garbage while [`Fault::MalformedJson`] is on.
fn encode_event(shared: &Shared, event: &Value) -> Bytes {
    if *shared.fault.borrow() == Fault::MalformedJson {
        Bytes::from(format!("{GARBAGE_BODY}\n"))
    } else {
        Bytes::from(format!("{event}\n"))
    }
}

fn event_time_nanos(event: &Value) -> i64 {
    event
        .get("timeNano")
        .and_then(Value::as_i64)
        .or_else(|| {
            event
                .get("time")
                .and_then(Value::as_i64)
                .map(|s| s * 1_000_000_000)
        })
        .unwrap_or(0)
}

/// Docker's `filters` query value: `{"key":["v1","v2"]}` or the older `{"key":{"v1":true}}`.
fn parse_filters(raw: Option<&String>) -> BTreeMap<String, Vec<String>> {
    let mut filters = BTreeMap::new();
    let Some(Ok(Value::Object(map))) = raw.map(|r| serde_json::from_str::<Value>(r)) else {
        return filters;
    };
    for (key, values) in map {
        let values: Vec<String> = match values {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::Object(items) => items.keys().cloned().collect(),
            Value::String(s) => vec![s],
            _ => Vec::new(),
        };
        filters.insert(key, values);
    }
    filters
}

/// Every `label` filter (`key` or `key=value`) must match.
fn labels_match(wanted: Option<&Vec<String>>, labels: &dyn Fn(&str) -> Option<String>) -> bool {
    wanted.is_none_or(|wanted| {
        wanted.iter().all(|w| match w.split_once('=') {
            Some((k, v)) => labels(k).as_deref() == Some(v),
            None => labels(w).is_some(),
        })
    })
}

fn list_filters_match(filters: &BTreeMap<String, Vec<String>>, c: &FakeContainer) -> bool {
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
        filters.get(key).is_none_or(|vs| vs.iter().any(|v| pred(v)))
    };
    labels_match(filters.get("label"), &|k| c.labels.get(k).cloned())
        && any("status", &|v| v == run_state_str(c.state))
        && any("id", &|v| c.id.starts_with(v))
        && any("name", &|v| c.name.contains(v.trim_start_matches('/')))
        && any("health", &|v| v == health_str(c.health))
}

fn event_matches(filters: &BTreeMap<String, Vec<String>>, event: &Value) -> bool {
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("");
    let actor_id = event
        .pointer("/Actor/ID")
        .and_then(Value::as_str)
        .unwrap_or("");
    let attr = |k: &str| {
        event
            .pointer("/Actor/Attributes")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
        filters.get(key).is_none_or(|vs| vs.iter().any(|v| pred(v)))
    };
    // Like the engine: `health_status` (and exec_*) without a colon match by prefix.
    let fuzzy_events = filters.get("event").is_some_and(|vs| {
        vs.iter()
            .any(|v| matches!(v.as_str(), "health_status" | "exec_create" | "exec_start"))
    });
    let action = field("Action");
    any("type", &|v| v == field("Type"))
        && any("event", &|v| {
            if fuzzy_events {
                action.starts_with(v)
            } else {
                action == v
            }
        })
        && any("container", &|v| {
            actor_id == v || actor_id.starts_with(v) || attr("name").as_deref() == Some(v)
        })
        && labels_match(filters.get("label"), &attr)
}

/// `since`/`until` as the engine takes them: Unix seconds with an optional fraction.
fn parse_timestamp_nanos(raw: &str) -> Option<i64> {
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut frac = frac.chars().take(9).collect::<String>();
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while frac.len() < 9 {
        frac.push('0');
    }
    Some(secs * 1_000_000_000 + frac.parse::<i64>().ok()?)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| (hi * 16 + lo) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run_state_str(state: RunState) -> &'static str {
    match state {
        RunState::Created => "created",
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Restarting => "restarting",
        RunState::Removing => "removing",
        RunState::Exited => "exited",
        RunState::Dead => "dead",
        RunState::Unknown => "unknown",
    }
}

fn health_str(health: Health) -> &'static str {
    match health {
        Health::None => "none",
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn zero_time() -> String {
    "0001-01-01T00:00:00Z".to_owned()
}

/// RFC 3339 with nanoseconds in UTC, as the engine writes times.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_473_044, 222_058_176);
        assert_eq!(rfc3339(t), "2026-11-23T22:30:44.222058176Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn since_parses_like_the_engine() {
        assert_eq!(
            parse_timestamp_nanos("1629574695"),
            Some(1_629_574_695_000_000_000)
        );
        assert_eq!(
            parse_timestamp_nanos("1629574695.5"),
            Some(1_629_574_695_500_000_000)
        );
        assert_eq!(
            parse_timestamp_nanos("1629574695.515050000"),
            Some(1_629_574_695_515_050_000)
        );
        assert_eq!(parse_timestamp_nanos("10m"), None);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = parse_query("all=true&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&x=%zz");
        assert_eq!(q["all"], "true");
        assert_eq!(q["filters"], r#"{"label":["a=b"]}"#);
        assert_eq!(q["x"], "%zz");
    }

    #[test]
    fn health_status_event_filter_matches_by_prefix() {
        let c = FakeContainer::new("web").compose("shop", "web");
        let event = container_event(&c, "health_status: unhealthy", &[]);
        let filters = parse_filters(Some(
            &r#"{"type":["container"],"event":["health_status","die"]}"#.to_owned(),
        ));
        assert!(event_matches(&filters, &event));
        let die_only = parse_filters(Some(&r#"{"event":["die"]}"#.to_owned()));
        assert!(!event_matches(&die_only, &event));
        let label = parse_filters(Some(
            &r#"{"label":["com.docker.compose.project=shop"]}"#.to_owned(),
        ));
        assert!(event_matches(&label, &event));
        let other = parse_filters(Some(
            &r#"{"label":["com.docker.compose.project=other"]}"#.to_owned(),
        ));
        assert!(!event_matches(&other, &event));
    }
}
