//! The validators the config sections share: each component's `config.rs` and the composing
//! [`crate::config`] check values with these. A leaf: it imports nothing of the crate.

pub(crate) use vigil_docker::transport::docker_host;
use vigil_shared::config::Secret;
pub(crate) use vigil_shared::config::validate::{non_empty, positive, simple_name};

pub(crate) fn percent(p: &f64) -> Result<(), String> {
    if *p > 0.0 && *p <= 100.0 {
        Ok(())
    } else {
        Err(format!("{p} is outside (0, 100]"))
    }
}

pub(crate) fn at_least_one<T: PartialOrd + From<u8>>(n: &T) -> Result<(), String> {
    if *n >= T::from(1) {
        Ok(())
    } else {
        Err("must be at least 1".to_string())
    }
}

pub(crate) fn http_url(s: &String) -> Result<url::Url, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err(format!("URL {s:?} must be http:// or https:// with a host")),
    }
}

/// Like [`http_url`] for a URL that is a credential: the message never quotes it.
pub(crate) fn secret_http_url(secret: &Secret) -> Result<(), String> {
    let url = url::Url::parse(secret.expose().trim())
        .map_err(|e| format!("invalid URL (value not shown): {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(()),
        _ => Err("URL must be http:// or https:// with a host (value not shown)".to_string()),
    }
}
