//! A real `redis-server` per test, on a free loopback port, with no persistence.
//!
//! It installs nothing: `scripts/setup-test.sh` does. A missing `redis-server` is a loud
//! failure, never a skipped test.
//!
//! Every server has Vigil's append functions loaded (the library the executor loads in
//! production). [`RedisServer::start_vigil`] also runs with the shipped ACL
//! (`compose/redis/users.acl.template`, rendered with the test passwords below plus an `admin`
//! user for the test's own set-up) and the stack's memory settings.

use crate::ports::free_port;
use crate::process::ChildProcess;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Passwords of the ACL users in [`RedisServer::start_vigil`].
pub const WATCHDOG_PASSWORD: &str = "watchdog-test-password";
pub const EXECUTOR_PASSWORD: &str = "executor-test-password";
pub const ADMIN_PASSWORD: &str = "admin-test-password";
const BIND_ATTEMPTS: usize = 5;

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// An ACL file (`user ... on >password ~keys +@cmds`), passed as `--aclfile`.
    pub aclfile: Option<PathBuf>,
    /// Extra `redis-server` arguments, e.g. `["--maxmemory", "10mb"]`.
    pub extra_args: Vec<String>,
}

/// A running `redis-server` bound to 127.0.0.1, killed on drop.
pub struct RedisServer {
    port: u16,
    process: ChildProcess,
    dir: TempDir,
    /// The `admin` user's password when the server runs with the shipped ACL.
    admin: Option<&'static str>,
    /// What it was started with, for [`RedisServer::start_again`].
    options: RedisOptions,
    /// Holds the ACL file of [`RedisServer::start_vigil`] (read again at a restart).
    _acl_dir: Option<TempDir>,
}

impl RedisServer {
    /// Starts a server with default options and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with the shipped ACL file (default user off; `watchdog`, `executor` and
    /// `healthcheck` as in production, plus `admin` for test set-up), `maxmemory` with
    /// `noeviction` and the stack's size limits, and the append functions loaded.
    pub fn start_vigil() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vigil-acl-")
            .tempdir()
            .expect("creating a temp dir for the ACL file");
        let acl = dir.path().join("users.acl");
        std::fs::write(&acl, render_acl()).expect("writing the ACL file");
        let mut server = Self::start_with(RedisOptions {
            aclfile: Some(acl),
            extra_args: [
                "--maxmemory",
                "64mb",
                "--maxmemory-policy",
                "noeviction",
                "--proto-max-bulk-len",
                "1mb",
                "--client-query-buffer-limit",
                "1mb",
            ]
            .map(String::from)
            .to_vec(),
        });
        // Kept: a restart reads the ACL file again.
        server._acl_dir = Some(dir);
        server.admin = Some(ADMIN_PASSWORD);
        server.load_functions();
        server
    }

    /// The URL for the test's own set-up: `admin` under the shipped ACL, else no credentials.
    pub fn admin_url(&self) -> String {
        match self.admin {
            Some(pw) => self.url_for("admin", pw),
            None => self.url(),
        }
    }

    /// `FUNCTION LOAD REPLACE` of Vigil's append functions (as the executor does at start-up).
    pub fn load_functions(&self) {
        let client = redis::Client::open(self.admin_url()).expect("valid url");
        let mut con = client
            .get_connection()
            .expect("connecting to load functions");
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(vigil_protocol::redis_functions::library())
            .query(&mut con)
            .expect("FUNCTION LOAD of Vigil's append functions");
    }

    /// Starts a server with `options` and waits until it answers PING (an ACL file that turns
    /// the default user off makes PING answer NOAUTH, which also counts as up).
    pub fn start_with(options: RedisOptions) -> Self {
        let binary = find_redis_server();
        let mut last_output = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("vigil-redis-")
                .tempdir()
                .expect("creating a temp dir for redis-server");
            let port = free_port();
            let mut process = spawn(&binary, port, dir.path(), &options);
            if wait_until_up(port, &mut process) {
                let server = RedisServer {
                    port,
                    process,
                    dir,
                    admin: None,
                    options,
                    _acl_dir: None,
                };
                if server.options.aclfile.is_none() {
                    server.load_functions();
                }
                return server;
            }
            last_output = process.transcript();
        }
        panic!(
            "redis-server did not come up after {BIND_ATTEMPTS} attempts; last output:\n{last_output}"
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/` (no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis://<user>:<password>@127.0.0.1:<port>/` for ACL users.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}/", self.port)
    }

    /// The server's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.transcript()
    }

    /// Kills the server now (to test what clients do when Redis goes away).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts a killed server again on the same port with the same options, empty: no data and
    /// no functions, as an operator restarting a Redis without persistence would find it (the
    /// executor loads the functions again when it reconnects).
    pub fn start_again(&mut self) {
        self.process.kill();
        let mut process = spawn(
            &find_redis_server(),
            self.port,
            self.dir.path(),
            &self.options,
        );
        assert!(
            wait_until_up(self.port, &mut process),
            "redis-server did not come back on port {}:\n{}",
            self.port,
            process.transcript()
        );
        self.process = process;
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and new ones are accepted by the
    /// kernel, but nothing is answered, as with a Redis host that hangs. [`RedisServer::thaw`]
    /// resumes it; dropping a frozen server kills it all the same.
    pub fn freeze(&self) {
        self.process.send_signal("STOP");
    }

    /// Resumes a server [`RedisServer::freeze`] stopped.
    pub fn thaw(&self) {
        self.process.send_signal("CONT");
    }
}

/// Spawns `redis-server` on `port` with its files in `dir`, without persistence.
fn spawn(binary: &Path, port: u16, dir: &Path, options: &RedisOptions) -> ChildProcess {
    let mut cmd = crate::process::command(binary);
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", ""]);
    if let Some(aclfile) = &options.aclfile {
        cmd.arg("--aclfile").arg(aclfile);
    }
    cmd.args(&options.extra_args);
    ChildProcess::spawn("redis-server", cmd)
}

/// `compose/redis/users.acl.template` as `scripts/setup-deploy.sh` renders it, with plain test
/// passwords instead of their hashes, plus an `admin` user for the test's own set-up.
pub fn render_acl() -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/redis/users.acl.template"),
    )
    .expect("reading compose/redis/users.acl.template");
    let mut out: String = template
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            l.replace("#@WATCHDOG_SHA256@", &format!(">{WATCHDOG_PASSWORD}"))
                .replace("#@EXECUTOR_SHA256@", &format!(">{EXECUTOR_PASSWORD}"))
                + "\n"
        })
        .collect();
    out.push_str(&format!("user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"));
    out
}

fn find_redis_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not on PATH: run scripts/setup-test.sh (it installs redis-server)"
            )
        })
}

/// Polls PING until the server answers (`+PONG`, or `-NOAUTH` when the default user is off) or
/// the process exits (typically: the port was taken in the meantime).
fn wait_until_up(port: u16, process: &mut ChildProcess) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if process.try_status().is_some() {
            return false;
        }
        if let Some(reply) = ping(port)
            && (reply.starts_with("+PONG") || reply.starts_with("-NOAUTH"))
        {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    process.kill();
    false
}

fn ping(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}
