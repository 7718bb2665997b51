//! Telegram HTML (`parse_mode = "HTML"`). The Bot API accepts a few tags and exactly four
//! entities (`&lt;`, `&gt;`, `&amp;`, `&quot;`); any other `<` or `&` makes it refuse the whole
//! message, so every value goes through [`escape`].

use super::Block;

/// Escapes text for Telegram HTML.
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

/// The title in bold, a blank line, then the body.
pub fn render(title: &str, blocks: &[Block]) -> String {
    let mut out = format!("<b>{}</b>", escape(title));
    if !blocks.is_empty() {
        out.push_str("\n\n");
    }
    let lines: Vec<String> = blocks
        .iter()
        .map(|b| match b {
            Block::Field { label, value } => {
                format!("<b>{}:</b> {}", escape(label), escape(value))
            }
            Block::Item(text) => format!("• {}", escape(text)),
            Block::Line(text) => escape(text),
            Block::Code { label, text } => {
                format!("<b>{}:</b>\n<pre>{}</pre>", escape(label), escape(text))
            }
        })
        .collect();
    out.push_str(&lines.join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_tags_are_ours() {
        let html = render(
            "ALERT <b>&_",
            &[
                Block::field("container", "<b>&_"),
                Block::Code {
                    label: "out".into(),
                    text: "a < b && c > d".into(),
                },
            ],
        );
        assert_eq!(
            html,
            "<b>ALERT &lt;b&gt;&amp;_</b>\n\n<b>container:</b> &lt;b&gt;&amp;_\n\
             <b>out:</b>\n<pre>a &lt; b &amp;&amp; c &gt; d</pre>"
        );
    }
}
