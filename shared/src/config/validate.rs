//! Validators every program applies the same way, written once so that a value one program
//! accepts the other does not refuse (a deployment name, a consumer name, a Docker address).
//! Each returns a message without the key; [`ConfigReader`](super::ConfigReader) adds the key.

use crate::docker::transport::EngineHost;
use std::time::Duration;

/// Longest [`simple_name`].
pub const MAX_SIMPLE_NAME: usize = 128;

/// A name usable as a file stem and a Redis key part (deployment, key id, consumer):
/// 1 to [`MAX_SIMPLE_NAME`] of `[A-Za-z0-9._-]`.
pub fn simple_name(s: &String) -> Result<(), String> {
    if !s.is_empty()
        && s.len() <= MAX_SIMPLE_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be 1 to {MAX_SIMPLE_NAME} letters, digits, '.', '_' or '-'"
        ))
    }
}

/// A signing key id, as the wire format accepts it ([`crate::protocol::is_key_id`]): 1 to
/// [`MAX_KEY_ID_LEN`](crate::protocol::MAX_KEY_ID_LEN) letters, digits, '.', '_' or '-', not
/// starting with '.'.
pub fn key_id(s: &String) -> Result<(), String> {
    if crate::protocol::is_key_id(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be 1 to {} letters, digits, '.', '_' or '-', not starting with '.'",
            crate::protocol::MAX_KEY_ID_LEN
        ))
    }
}

/// A Docker engine address as the Docker client reads it ([`EngineHost::parse`]):
/// `unix:///absolute/path` or `tcp://host[:port]`.
pub fn docker_host(s: &str) -> Result<(), String> {
    EngineHost::parse(s).map(drop).map_err(|e| e.to_string())
}

/// A duration greater than zero.
pub fn positive(d: &Duration) -> Result<(), String> {
    if d.is_zero() {
        Err("must be greater than zero".to_string())
    } else {
        Ok(())
    }
}

/// Text that is not blank.
pub fn non_empty(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["prod", "a.b_c-1", &"x".repeat(MAX_SIMPLE_NAME)] {
            assert!(simple_name(&good.to_string()).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(MAX_SIMPLE_NAME + 1)] {
            assert!(simple_name(&bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_are_what_the_wire_format_accepts() {
        assert!(key_id(&"wd-1.a_b".to_string()).is_ok());
        for bad in ["", ".hidden", "a/b", &"k".repeat(65)] {
            assert!(key_id(&bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_hosts_are_what_the_client_reads() {
        for good in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://gate",
        ] {
            assert!(docker_host(good).is_ok(), "{good}");
        }
        for bad in ["http://localhost:2375", "unix://relative", "tcp://", ""] {
            assert!(docker_host(bad).is_err(), "{bad}");
        }
    }
}
