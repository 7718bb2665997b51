//! The Redis side's configuration: `[redis]` and `[signing]`, their schema and validation.
//! [`crate::config`] composes them (and checks that Redis comes with a signing key).

use crate::config::check::*;
use std::path::PathBuf;
use vigil_protocol::wire;
use vigil_shared::config::{ConfigReader, Found, Secret, convert};

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: Secret,
    /// Key prefix (default `vigil:`).
    pub prefix: String,
    /// `redis.unreachable_after`: Redis must fail this long before `redis_unreachable`
    /// (default 10 s).
    pub unreachable_after: std::time::Duration,
}

/// Default of [`RedisConfig::unreachable_after`].
pub const DEFAULT_UNREACHABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct SigningConfig {
    /// `WATCHDOG_SIGNING_KEY_FILE`: PKCS#8 PEM private key.
    pub key_file: PathBuf,
    /// `WATCHDOG_KEY_ID` (default: the key file's stem, matching the executor's convention that
    /// a public key file's stem is its key id).
    pub key_id: String,
}

pub(crate) fn redis_url(secret: &Secret) -> Result<(), String> {
    let url = url::Url::parse(secret.expose().trim())
        .map_err(|e| format!("invalid Redis URL (value not shown): {e}"))?;
    match url.scheme() {
        "redis" | "rediss" | "unix" | "redis+unix" => Ok(()),
        _ => Err("expected a redis://, rediss:// or unix:// URL (value not shown)".to_string()),
    }
}

pub(crate) fn read_redis(r: &mut ConfigReader<'_>) -> Option<Found<RedisConfig>> {
    let url = r.secret("redis.url", "redis.url_file");
    let prefix = r.get_checked("redis.prefix", convert::string, |s| non_empty(s));
    let unreachable_after = r.get_checked("redis.unreachable_after", convert::duration, positive);
    let url = match url {
        Some(url) => url,
        None => {
            for key in [
                prefix.map(|p| p.key().to_string()),
                unreachable_after.map(|u| u.key().to_string()),
            ]
            .into_iter()
            .flatten()
            {
                r.error(key, "set, but no Redis URL is configured");
            }
            return None;
        }
    };
    if let Err(message) = redis_url(&url.value) {
        r.error(url.key().to_string(), message);
        return None;
    }
    let prefix = prefix.map_or_else(|| "vigil:".to_string(), |p| p.value);
    let unreachable_after = unreachable_after.map_or(DEFAULT_UNREACHABLE_AFTER, |u| u.value);
    Some(url.map(|u| RedisConfig {
        url: u,
        prefix,
        unreachable_after,
    }))
}

pub(crate) fn read_signing(r: &mut ConfigReader<'_>) -> Option<SigningConfig> {
    let key_file = r.get_checked("signing.key_file", convert::string, |s| non_empty(s));
    let key_id = r.get_checked("signing.key_id", convert::string, wire::key_id);
    let key_file = match key_file {
        Some(f) => f,
        None => {
            if let Some(id) = key_id {
                r.error(
                    id.key().to_string(),
                    "set, but no signing key file is configured",
                );
            }
            return None;
        }
    };
    let path = PathBuf::from(key_file.value.trim());
    // The key is parsed by the signing module at start-up; here we only check that it can be
    // read, so `check-config` catches a missing secret.
    if let Err(e) = std::fs::File::open(&path) {
        r.error(
            key_file.key().to_string(),
            format!("cannot read signing key file {}: {e}", path.display()),
        );
        return None;
    }
    let key_id = match key_id {
        Some(id) => id.value,
        None => {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Err(message) = wire::key_id(&stem) {
                let key = r.key_for("signing.key_id", key_file.origin.is_env());
                r.error(
                    key,
                    format!("not set, and the key file's name cannot serve as one: {message}"),
                );
                return None;
            }
            stem
        }
    };
    Some(SigningConfig {
        key_file: path,
        key_id,
    })
}
