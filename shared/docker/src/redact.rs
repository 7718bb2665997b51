//! Scrubbing secrets out of free text Vigil did not write (healthcheck output, error bodies)
//! before it reaches a message or a log line. One rule set, used everywhere such text leaves.
//!
//! Rules, in order:
//! 1. `key=value`, `key: value` and `"key": "value"` where the key names a secret (password,
//!    passwd, pwd, secret, token, api_key, apikey, access_key, auth, credential, private_key,
//!    session, cookie): the value becomes `<redacted>`.
//! 2. `Bearer <x>` and `Basic <x>`: the credential becomes `<redacted>`.
//! 3. URL user info (`scheme://user:pass@host`): the password becomes `<redacted>`.

/// Key fragments that mark the value after them as a secret (compared lowercase).
const SECRET_KEYS: [&str; 13] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "auth",
    "credential",
    "private_key",
    "session",
    "cookie",
];

pub const REDACTED: &str = "<redacted>";

/// Returns `text` with every secret the rules recognise replaced by `<redacted>`.
pub fn scrub_text(text: &str) -> String {
    let step = scrub_key_values(text);
    let step = scrub_schemes(&step);
    scrub_userinfo(&step)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Rule 1.
fn scrub_key_values(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !is_key_char(chars[i]) || (i > 0 && is_key_char(chars[i - 1])) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A word starts at i.
        let start = i;
        while i < chars.len() && is_key_char(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        out.push_str(&word);
        let lower = word.to_ascii_lowercase();
        if !SECRET_KEYS.iter().any(|k| lower.contains(k)) {
            continue;
        }
        // Optional closing quote, spaces, then `=` or `:`, spaces, optional opening quote.
        let mut j = i;
        if j < chars.len() && (chars[j] == '"' || chars[j] == '\'') {
            j += 1;
        }
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        if j >= chars.len() || (chars[j] != '=' && chars[j] != ':') {
            continue;
        }
        j += 1;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        let quote = if j < chars.len() && (chars[j] == '"' || chars[j] == '\'') {
            let q = chars[j];
            j += 1;
            Some(q)
        } else {
            None
        };
        let value_start = j;
        while j < chars.len() {
            let c = chars[j];
            let end = match quote {
                Some(q) => c == q,
                None => c.is_whitespace() || c == ',' || c == ';' || c == '&' || c == '"',
            };
            if end {
                break;
            }
            j += 1;
        }
        if j == value_start {
            continue;
        }
        // `Authorization: Bearer <x>`: the credential is the word after the scheme.
        let value: String = chars[value_start..j].iter().collect();
        if quote.is_none()
            && (value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("basic"))
        {
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            while j < chars.len() && !chars[j].is_whitespace() && chars[j] != ',' && chars[j] != ';'
            {
                j += 1;
            }
        }
        out.extend(&chars[i..value_start]);
        out.push_str(REDACTED);
        i = j;
    }
    out
}

/// Rule 2.
fn scrub_schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut words = text.split_inclusive(char::is_whitespace).peekable();
    while let Some(w) = words.next() {
        out.push_str(w);
        let bare = w.trim_end();
        if (bare.eq_ignore_ascii_case("bearer") || bare.eq_ignore_ascii_case("basic"))
            && bare.len() < w.len()
            && let Some(next) = words.peek()
            && !next.trim().is_empty()
        {
            let next = words.next().unwrap_or_default();
            out.push_str(REDACTED);
            out.push_str(&next[next.trim_end().len()..]);
        }
    }
    out
}

/// Rule 3.
fn scrub_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at_sign), Some(colon)) if colon < at_sign => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(REDACTED);
                out.push_str(&authority[at_sign..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_redacted() {
        assert_eq!(scrub_text("token=hunter2 ok"), "token=<redacted> ok");
        assert_eq!(
            scrub_text("DB_PASSWORD: s3cr3t, host=db"),
            "DB_PASSWORD: <redacted>, host=db"
        );
        assert_eq!(
            scrub_text(r#"{"api_key": "abc def", "n": 1}"#),
            r#"{"api_key": "<redacted>", "n": 1}"#
        );
        assert_eq!(scrub_text("no secrets here: 42"), "no secrets here: 42");
    }

    #[test]
    fn schemes_and_urls_are_redacted() {
        assert_eq!(
            scrub_text("Authorization: Bearer abc.def"),
            "Authorization: <redacted>"
        );
        assert_eq!(
            scrub_text("sent bearer xyz now"),
            "sent bearer <redacted> now"
        );
        assert_eq!(
            scrub_text("connect postgres://app:pw@db:5432/x failed"),
            "connect postgres://app:<redacted>@db:5432/x failed"
        );
        assert_eq!(
            scrub_text("db connection refused on 5432"),
            "db connection refused on 5432"
        );
    }
}
