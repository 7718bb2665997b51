//! The read-only gate (`vigil-gate`) as a process in front of the real engine, on a unix socket
//! in a directory the caller owns. [`crate::watchdog_proc::WatchdogBuilder`] starts one for
//! every watchdog it runs against the real engine, so the watchdog's tests read Docker exactly
//! as a deployed watchdog does: through the gate's allowlist and projection, never the raw
//! socket.

use crate::process::ChildProcess;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the gate may take to create its socket on a busy machine.
const GATE_STARTUP: Duration = Duration::from_secs(20);

/// A running gate; killed when dropped.
pub struct GateProc {
    pub process: ChildProcess,
    socket: PathBuf,
}

impl GateProc {
    /// Starts `vigil-gate serve` on `<dir>/gate.sock` in front of the engine at the default
    /// socket, and waits until the socket exists.
    pub fn start_in(dir: &Path) -> GateProc {
        crate::docker::require_engine();
        let socket = dir.join("gate.sock");
        let listen = format!("unix://{}", socket.display());
        let process = ChildProcess::spawn_bin(
            "vigil-gate",
            "vigil-gate",
            &["serve", "--listen", &listen],
            &[],
        );
        let deadline = Instant::now() + GATE_STARTUP;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the gate did not create {} within {GATE_STARTUP:?}:\n{}",
                socket.display(),
                process.transcript()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        GateProc { process, socket }
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
