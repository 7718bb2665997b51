//! The executor test rig, once: a real `redis-server`, a watchdog key pair (the private half
//! signs, in the test or in a watchdog process; the public half sits in the executor's key
//! directory), an audit file in a temp dir, and the `vigil-executor` process started with those
//! settings.
//!
//! Each test file picks the Redis it needs ([`ExecutorRig::new`] for a plain server the
//! executor reaches as the default user, [`ExecutorRig::with_vigil_acl`] for the shipped ACL
//! and append functions, the executor logging in as `executor`) and the defaults it layers on
//! the settings every executor needs (consumer name, stop timeout, back-off).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;
use vigil_docker::labels;
use vigil_protocol::signing::{Signer, write_keypair_files};
use vigil_protocol::wire::{Action, Payload, Reason, Target};
use vigil_shared::time::Timestamp;

use crate::docker::{Container, RunningContainer};
use crate::process::{ChildProcess, workspace_bin, workspace_bin_with_features};
use crate::redis_server::{EXECUTOR_PASSWORD, RedisServer};

/// The deployment name the rig's executor serves and its requests carry.
pub const DEPLOYMENT: &str = "test";
/// The id of the rig's watchdog key.
pub const KEY_ID: &str = "wd1";
/// The executor's log line once its consumer reads the requests stream.
pub const READY: &str = "Consuming the requests stream";

/// Redis, a key pair, a temp audit file; starts executors configured for them.
pub struct ExecutorRig {
    pub redis: RedisServer,
    pub dir: TempDir,
    pub signer: Signer,
    /// The signer's private key file (PKCS#8 PEM), for a watchdog process.
    pub private_key: PathBuf,
    /// The default audit file (`<dir>/audit.jsonl`).
    pub audit: PathBuf,
    /// The URL the executor connects with.
    url: String,
    /// Settings a test file layers on the common ones.
    defaults: Vec<(&'static str, &'static str)>,
}

impl ExecutorRig {
    /// A plain `redis-server`; the executor connects as the default user.
    pub fn new(defaults: &[(&'static str, &'static str)]) -> ExecutorRig {
        let redis = RedisServer::start();
        let url = redis.url();
        Self::around(redis, url, defaults)
    }

    /// Redis with the shipped ACL and append functions; the executor logs in as `executor`.
    pub fn with_vigil_acl(defaults: &[(&'static str, &'static str)]) -> ExecutorRig {
        let redis = RedisServer::start_vigil();
        let url = redis.url_for("executor", EXECUTOR_PASSWORD);
        Self::around(redis, url, defaults)
    }

    fn around(
        redis: RedisServer,
        url: String,
        defaults: &[(&'static str, &'static str)],
    ) -> ExecutorRig {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).expect("key dir");
        let private_key = dir.path().join(format!("{KEY_ID}.key"));
        write_keypair_files(&private_key, &keys.join(format!("{KEY_ID}.pub"))).expect("key pair");
        let signer = Signer::from_key_file(KEY_ID, &private_key).expect("signing key");
        let audit = dir.path().join("audit.jsonl");
        ExecutorRig {
            redis,
            dir,
            signer,
            private_key,
            audit,
            url,
            defaults: defaults.to_vec(),
        }
    }

    /// The executor's key directory (`EXECUTOR_VERIFY_KEYS`): the public half of the key.
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The executor's environment writing to `audit`: the common settings, the rig's
    /// defaults, then `extra`. A later setting replaces an earlier one of the same name; an
    /// empty value leaves the variable unset.
    pub fn env(&self, audit: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let keys = self.keys_dir().display().to_string();
        let audit = audit.display().to_string();
        let common: [(&str, &str); 6] = [
            ("EXECUTOR_REDIS_URL", self.url.as_str()),
            ("EXECUTOR_VERIFY_KEYS", keys.as_str()),
            ("EXECUTOR_AUDIT_FILE", audit.as_str()),
            ("EXECUTOR_DEPLOYMENT", DEPLOYMENT),
            ("EXECUTOR_LISTEN", "off"),
            ("EXECUTOR_LOG_LEVEL", "info"),
        ];
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in common.iter().chain(&self.defaults).chain(extra) {
            env.retain(|(x, _)| x != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        env
    }

    /// Spawns `bin args` with [`ExecutorRig::env`]; does not wait for it to consume.
    pub fn spawn_with(
        &self,
        bin: PathBuf,
        args: &[&str],
        audit: &Path,
        extra: &[(&str, &str)],
    ) -> ChildProcess {
        let mut cmd = crate::process::command(bin);
        cmd.args(args);
        for (k, v) in self.env(audit, extra) {
            cmd.env(k, v);
        }
        ChildProcess::spawn("executor", cmd)
    }

    /// `vigil-executor run` on the rig's audit file; does not wait for it to consume.
    pub fn spawn(&self, extra: &[(&str, &str)]) -> ChildProcess {
        self.spawn_with(
            workspace_bin("vigil-executor", "vigil-executor"),
            &["run"],
            &self.audit,
            extra,
        )
    }

    /// The fault-injection build on the rig's audit file, aborting at the fault point `fault`;
    /// does not wait for it to consume.
    pub fn spawn_faulty(&self, fault: &str, extra: &[(&str, &str)]) -> ChildProcess {
        let bin = workspace_bin_with_features(
            "vigil-executor",
            "vigil-executor-faults",
            "fault-injection",
        );
        let mut all = vec![("VIGIL_FAULT", fault)];
        all.extend_from_slice(extra);
        self.spawn_with(bin, &["run"], &self.audit, &all)
    }

    /// A connection to the rig's Redis as its administrative user (`admin` under the shipped
    /// ACL, else the default user).
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis.admin_url())
            .expect("redis url")
            .get_connection()
            .expect("redis connection")
    }

    /// An unsigned request for `action` on `c`, for the rig's deployment.
    pub fn payload(&self, action: Action, c: &RunningContainer) -> Payload {
        Payload::new(
            DEPLOYMENT,
            action,
            Target {
                id: c.id().to_owned(),
                name: c.name().to_owned(),
                project: None,
                service: None,
            },
            Reason::new("container_unhealthy", "high", "test", 0.9),
            Timestamp::now(),
        )
    }

    /// `p` signed by the rig's watchdog key, as envelope JSON.
    pub fn envelope(&self, p: &Payload) -> String {
        self.signer.sign(p).expect("signs").to_json()
    }

    /// XADDs an `envelope` field to `vigil:requests` as the administrative user; returns the entry id.
    pub fn send_raw(&self, envelope: &str) -> String {
        redis::cmd("XADD")
            .arg("vigil:requests")
            .arg("*")
            .arg("envelope")
            .arg(envelope)
            .query(&mut self.redis())
            .expect("XADD")
    }
}

/// Waits until `exec` logs that its consumer runs.
pub fn wait_ready(exec: &ChildProcess, wait: Duration) {
    exec.expect_line("the consumer running", |l| l.contains(READY), wait);
}

/// Every line of an audit file, parsed (a line that is not JSON fails the test).
pub fn read_records(audit: &Path) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record ({e}): {l:?}")))
        .collect()
}

/// Whether `rec` is `request_id`'s outcome: an `intent` record only precedes the action.
pub fn is_outcome_of(rec: &Value, request_id: &str) -> bool {
    rec["request_id"] == request_id && rec["decision"] != "intent"
}

/// A container that runs until stopped and exits at once on SIGTERM (so restarts are quick).
pub fn sleeper() -> Container {
    Container::new().shell("trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done")
}

/// A [`sleeper`] that opts in to remediation.
pub fn opted_in() -> Container {
    sleeper().label(labels::REMEDIATE, "true")
}

/// When `c` last started, as the engine reports it (a restart changes it).
pub fn started_at(c: &RunningContainer) -> String {
    c.inspect_json()["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The peak resident memory (`VmHWM`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// `vigil-executor audit verify --file <audit> <extra>`, run to completion.
pub fn audit_verify(audit: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("vigil-executor", "vigil-executor"))
        .args(["audit", "verify", "--file"])
        .arg(audit)
        .args(extra)
        .output()
        .expect("running audit verify")
}

/// A bare HTTP/1.1 GET on loopback; returns the whole answer, status line and all.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}
