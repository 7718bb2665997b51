//! Text helpers every sink and the message builder share: cutting to a length, scrubbing secrets.

/// Replaces every occurrence of each non-empty secret in `text`. Used on every error text that
/// came from an HTTP client, since those often quote the URL (which holds the token).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

/// Cuts `s` to at most `max` characters (not bytes), marking the cut with `...`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret() {
        let t = scrub(
            "error for url (http://h/bot123:abc/sendMessage) bot123:abc",
            &["bot123:abc", ""],
        );
        assert!(!t.contains("123:abc"), "{t}");
        assert_eq!(t.matches("<redacted>").count(), 2);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo wörld", 6), "hél...");
        assert_eq!(truncate_chars("héllo wörld", 6).chars().count(), 6);
    }
}
