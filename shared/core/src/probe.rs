//! A blocking HTTP/1.0 GET for container healthchecks. The images have no shell and no curl, so
//! each daemon's `healthcheck` command asks its own `/healthz` with this. GET only, like
//! everything in this crate, and no async runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer read.
const MAX_ANSWER: u64 = 1024 * 1024;

/// GETs `path` from `addr` and returns the status code, or why there is none.
pub fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    if !path.starts_with('/') || path.contains([' ', '\r', '\n']) {
        return Err(format!("bad path {path:?}"));
    }
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: vigil-healthcheck\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(status_line)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: no HTTP status in the answer"))
}

/// The exit code of a `healthcheck` command: 0 when `GET /healthz` on `listen` answers 2xx,
/// else 1 with the reason on stderr. `listen: None` (the endpoint is off) is 1 as well.
pub fn healthcheck(program: &str, listen: Option<SocketAddr>) -> i32 {
    let Some(addr) = listen else {
        eprintln!("{program} healthcheck: the listen address is off; nothing to ask");
        return 1;
    };
    match get_status(addr, "/healthz", Duration::from_secs(5)) {
        Ok(status) if (200..300).contains(&status) => 0,
        Ok(status) => {
            eprintln!("{program} healthcheck: GET /healthz on {addr} answered {status}");
            1
        }
        Err(why) => {
            eprintln!("{program} healthcheck: {why}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn healthy_is_zero_and_anything_else_is_one() {
        let ok = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(healthcheck("t", Some(ok)), 0);
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(healthcheck("t", Some(bad)), 1);
        let garbage = serve_once("hello");
        assert_eq!(healthcheck("t", Some(garbage)), 1);
        assert_eq!(healthcheck("t", None), 1);
        // Nothing listens on a port just released.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        assert_eq!(healthcheck("t", Some(closed)), 1);
    }
}
