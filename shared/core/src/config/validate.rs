//! Validators every program applies the same way, written once so that a value one program
//! accepts the other does not refuse (a deployment name, a consumer name, a duration).
//! Each returns a message without the key; [`ConfigReader`](super::ConfigReader) adds the key.
//! Validators that belong to another crate's format live with it: a Docker address in
//! `vigil_docker::transport::docker_host`, a signing key id in `vigil_protocol::wire::key_id`.

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
}
