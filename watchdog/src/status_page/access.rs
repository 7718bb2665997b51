//! Who may read the status page, `/api/status` and `/metrics`.
//!
//! On a loopback listen address (the default, `127.0.0.1:9750`) anyone who can reach it may read:
//! that is the machine's own users. Any other address needs a token, read from a secret file
//! (`WATCHDOG_LISTEN_TOKEN_FILE` or `listen_token_file`); without one the configuration is
//! refused (exit 78), because a page that names every container and what was done to it must not
//! be open to a network by accident. With a token, every request but `GET /healthz` must carry it,
//! either as `Authorization: Bearer <token>` (scripts, Prometheus' `authorization`
//! setting) or as the password of HTTP Basic authentication with any user name (browsers ask for
//! it once and send it with the page's own refreshes). Requests without it get 401. The token is
//! compared by its SHA-256 digest in constant time and never appears in a response or a log.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use vigil_shared::config::{ConfigReader, Secret};

/// The configuration key of the token's file (and `WATCHDOG_LISTEN_TOKEN_FILE`).
pub const TOKEN_FILE_KEY: &str = "listen_token_file";
/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads the token and enforces the rule above; errors go to `r` (so start-up exits 78).
pub fn read_token(r: &mut ConfigReader<'_>, listen: Option<SocketAddr>) -> Option<Secret> {
    let found = r.secret("listen_token", TOKEN_FILE_KEY);
    if let Some(f) = &found
        && f.value.expose().len() < MIN_TOKEN_LEN
    {
        let key = f.key().to_string();
        r.error(
            key,
            format!("the listen token must be at least {MIN_TOKEN_LEN} characters"),
        );
        return None;
    }
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && found.is_none()
    {
        let key = r.key_for(TOKEN_FILE_KEY, true);
        r.error(
            key,
            format!(
                "required when listen ({addr}) is not a loopback address: the status page and \
                 /metrics would be open to the network. Put a random token (16+ characters) in a \
                 file and point WATCHDOG_LISTEN_TOKEN_FILE at it, or listen on 127.0.0.1"
            ),
        );
    }
    found.map(|f| f.value)
}

/// The request check. `Access::open()` lets everything through (loopback without a token).
#[derive(Clone)]
pub struct Access {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.digest.map(|_| "<redacted>"))
            .finish()
    }
}

impl Access {
    pub fn open() -> Access {
        Access { digest: None }
    }

    pub fn new(token: Option<&Secret>) -> Access {
        Access {
            digest: token.map(|t| digest(t.expose().as_bytes())),
        }
    }

    pub fn requires_token(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether a request with this `Authorization` header value may read.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.digest else {
            return true;
        };
        let Some(given) = authorization.and_then(presented_token) else {
            return false;
        };
        let got = digest(&given);
        got.iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token in a `Bearer <token>` or `Basic base64(user:token)` header value.
fn presented_token(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::config::MapEnv;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn bearer_and_basic_pass_anything_else_fails() {
        let a = Access::new(Some(&Secret::new(TOKEN)));
        assert!(a.allows(Some(format!("Bearer {TOKEN}").as_bytes())));
        assert!(a.allows(Some(format!("bearer  {TOKEN} ").as_bytes())));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("me:{TOKEN}"));
        assert!(a.allows(Some(format!("Basic {basic}").as_bytes())));
        assert!(!a.allows(None));
        assert!(!a.allows(Some(b"Bearer wrong")));
        assert!(!a.allows(Some(TOKEN.as_bytes())));
        assert!(!a.allows(Some(format!("Bearer {TOKEN}x").as_bytes())));
        let bad = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:"));
        assert!(!a.allows(Some(format!("Basic {bad}").as_bytes())));
        assert!(!format!("{a:?}").contains(TOKEN));
        assert!(Access::open().allows(None));
    }

    fn reader_errors(listen: &str, token: Option<&str>) -> (Option<Secret>, String) {
        let mut env = MapEnv::default();
        if let Some(t) = token {
            env = env.with("WATCHDOG_LISTEN_TOKEN", t);
        }
        let table = toml::Table::new();
        let mut r = ConfigReader::new("WATCHDOG", table, &env, &[]);
        let got = read_token(&mut r, listen.parse().ok());
        let errs = r.finish();
        (got, errs.to_string())
    }

    #[test]
    fn non_loopback_needs_a_token_loopback_does_not() {
        let (t, errs) = reader_errors("0.0.0.0:9750", None);
        assert!(t.is_none());
        assert!(errs.contains("WATCHDOG_LISTEN_TOKEN_FILE"), "{errs}");
        let (t, errs) = reader_errors("127.0.0.1:9750", None);
        assert!(t.is_none() && errs.is_empty(), "{errs}");
        let (t, errs) = reader_errors("[::1]:9750", None);
        assert!(t.is_none() && errs.is_empty(), "{errs}");
        let (t, errs) = reader_errors("0.0.0.0:9750", Some(TOKEN));
        assert!(t.is_some() && errs.is_empty(), "{errs}");
        let (t, errs) = reader_errors("0.0.0.0:9750", Some("short"));
        assert!(t.is_none() && errs.contains("at least"), "{errs}");
        assert!(!errs.contains("short"), "the value is never shown: {errs}");
    }
}
