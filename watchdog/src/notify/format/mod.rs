//! One message body, three renderings: plain text (log, webhook `text`, fallbacks), Telegram HTML
//! and Slack mrkdwn. A body is a list of [`Block`]s built from values Vigil did not choose
//! (container names, healthcheck output), so every renderer escapes every value: a name such as
//! `<b>&_` shows literally everywhere.
//!
//! Escaping rules:
//! - Telegram HTML (`parse_mode = "HTML"`): `&`, `<`, `>` become entities; values never sit in
//!   an attribute, so quotes need nothing. Only `<b>` and `<pre>` tags are produced.
//! - Slack mrkdwn: `&`, `<`, `>` become entities (Slack's documented set); `*`, `_`, `~` and
//!   backticks in values are left alone but values sit outside emphasis, and code sits in a
//!   fenced block whose own backticks are broken up.

pub mod html;
pub mod mrkdwn;

/// One piece of a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// `label: value`.
    Field { label: String, value: String },
    /// A list item (one line of a group message).
    Item(String),
    /// A sentence on its own line.
    Line(String),
    /// Verbatim text (healthcheck output), shown monospaced under its label.
    Code { label: String, text: String },
}

impl Block {
    pub fn field(label: impl Into<String>, value: impl Into<String>) -> Block {
        Block::Field {
            label: label.into(),
            value: value.into(),
        }
    }
}

/// The plain-text rendering: `label: value` lines, `- item` lines, code indented under its label.
pub fn plain(blocks: &[Block]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(blocks.len());
    for b in blocks {
        match b {
            Block::Field { label, value } => out.push(format!("{label}: {value}")),
            Block::Item(text) => out.push(format!("- {text}")),
            Block::Line(text) => out.push(text.clone()),
            Block::Code { label, text } => {
                out.push(format!("{label}:"));
                for line in text.lines() {
                    out.push(format!("  {line}"));
                }
            }
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rendering() {
        let blocks = vec![
            Block::field("host", "h1"),
            Block::Item("a".into()),
            Block::Code {
                label: "healthcheck output".into(),
                text: "x\ny".into(),
            },
        ];
        assert_eq!(
            plain(&blocks),
            "host: h1\n- a\nhealthcheck output:\n  x\n  y"
        );
    }
}
