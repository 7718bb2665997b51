//! Slack mrkdwn for Block Kit `section` text. Slack asks for `&`, `<` and `>` to be escaped as
//! entities (a raw `<` starts a link or mention).

use super::Block;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The body as mrkdwn: `*label:* value` lines, `• item` lines, code in a fenced block.
pub fn render(blocks: &[Block]) -> String {
    blocks
        .iter()
        .map(|b| match b {
            Block::Field { label, value } => format!("*{}:* {}", escape(label), escape(value)),
            Block::Item(text) => format!("• {}", escape(text)),
            Block::Line(text) => escape(text),
            Block::Code { label, text } => format!(
                "*{}:*\n```{}```",
                escape(label),
                // A backtick run would close the fence early.
                escape(text).replace("```", "` ` `")
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            render(&[Block::field("container", "<b>&_")]),
            "*container:* &lt;b&gt;&amp;_"
        );
    }
}
