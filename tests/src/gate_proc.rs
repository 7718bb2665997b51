//! The read-only gate (`vigil-gate`) as a process in front of the real engine, on a unix socket
//! in a directory the caller owns. [`crate::watchdog_proc::WatchdogBuilder`] starts one for
//! every watchdog it runs against the real engine, so the watchdog's tests read Docker exactly
//! as a deployed watchdog does: through the gate's allowlist and projection, never the raw
//! socket. A test can stop the gate and start it again on the same socket, to cut the
//! watchdog's event stream.

use crate::process::ChildProcess;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the gate may take to listen on its socket on a busy machine.
const GATE_STARTUP: Duration = Duration::from_secs(20);

/// A running gate; killed when dropped.
pub struct GateProc {
    pub process: ChildProcess,
    socket: PathBuf,
}

impl GateProc {
    /// Starts `vigil-gate serve` on `<dir>/gate.sock` in front of the engine at the default
    /// socket, and waits until it accepts connections.
    pub fn start_in(dir: &Path) -> GateProc {
        crate::docker::require_engine();
        let socket = dir.join("gate.sock");
        let process = serve(&socket);
        GateProc { process, socket }
    }

    /// Kills the gate (its socket file stays behind, as after a crash).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts a stopped gate again on the same socket and waits until it accepts connections.
    pub fn start_again(&mut self) {
        self.process.kill();
        self.process = serve(&self.socket);
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`, for `WATCHDOG_DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Spawns `vigil-gate serve` on `socket`; waits until a connect works (a stale socket file of a
/// killed gate exists before the new one listens).
fn serve(socket: &Path) -> ChildProcess {
    let listen = format!("unix://{}", socket.display());
    let process = ChildProcess::spawn_bin(
        "vigil-gate",
        "vigil-gate",
        &["serve", "--listen", &listen],
        &[],
    );
    let deadline = Instant::now() + GATE_STARTUP;
    while UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the gate did not listen on {} within {GATE_STARTUP:?}:\n{}",
            socket.display(),
            process.transcript()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}
