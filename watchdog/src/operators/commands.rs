//! The chat commands, parsed (pure). Unknown commands and bad arguments become a usage answer:
//! every command gets a reply.

use super::book::parse_duration;
use std::time::Duration;

pub const HELP: &str = "Vigil commands:
/status - what fires, executor state, recent actions
/silence <container|project> <duration> [reason] - e.g. /silence shop-db-1 2h migration
/unsilence <id> - end a silence early
/silences - list silences in force
/ack <container> - no more re-alerts for its current incident
/pause - pause remediation (the executor acts on nothing)
/resume - resume remediation
/help - this text";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Silence {
        target: String,
        length: Duration,
        reason: String,
    },
    Unsilence {
        id: String,
    },
    Silences,
    Ack {
        container: String,
    },
    Pause,
    Resume,
    Help,
}

/// Parses `text` as a command. `Ok(None)` for text that is not a command at all (ignored);
/// `Err(answer)` for a command used wrongly. A `/cmd@botname` suffix is accepted.
pub fn parse(text: &str) -> Result<Option<Command>, String> {
    let text = text.trim();
    if !text.starts_with('/') {
        return Ok(None);
    }
    let mut words = text.split_whitespace();
    let head = words.next().unwrap_or_default();
    let name = head[1..]
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    let no_args = |cmd: Command| {
        if args.is_empty() {
            Ok(Some(cmd))
        } else {
            Err(format!("/{name} takes no arguments.\n\n{HELP}"))
        }
    };
    match name.as_str() {
        "status" => no_args(Command::Status),
        "silences" => no_args(Command::Silences),
        "pause" => no_args(Command::Pause),
        "resume" => no_args(Command::Resume),
        "help" | "start" => Ok(Some(Command::Help)),
        "silence" => {
            const USAGE: &str = "usage: /silence <container|project> <duration> [reason], \
                                 e.g. /silence shop-db-1 2h migration (duration: 90s, 10m, 2h, 1d)";
            let (Some(target), Some(length)) = (args.first(), args.get(1)) else {
                return Err(USAGE.to_string());
            };
            let Some(length) = parse_duration(length) else {
                return Err(format!("cannot read the duration {length:?}; {USAGE}"));
            };
            Ok(Some(Command::Silence {
                target: target.to_string(),
                length,
                reason: args[2..].join(" "),
            }))
        }
        "unsilence" => match args.as_slice() {
            [id] => Ok(Some(Command::Unsilence { id: id.to_string() })),
            _ => Err("usage: /unsilence <id> (ids are listed by /silences)".to_string()),
        },
        "ack" => match args.as_slice() {
            [c] => Ok(Some(Command::Ack {
                container: c.to_string(),
            })),
            _ => Err("usage: /ack <container>".to_string()),
        },
        other => Err(format!("unknown command /{other}.\n\n{HELP}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("hello"), Ok(None));
        assert_eq!(parse("/status"), Ok(Some(Command::Status)));
        assert_eq!(parse("/status@vigil_bot"), Ok(Some(Command::Status)));
        assert_eq!(
            parse("/silence shop-web-1 10m db maintenance"),
            Ok(Some(Command::Silence {
                target: "shop-web-1".into(),
                length: Duration::from_secs(600),
                reason: "db maintenance".into()
            }))
        );
        assert!(parse("/silence shop-web-1").is_err());
        assert!(parse("/silence shop-web-1 soon").is_err());
        assert!(parse("/unsilence").is_err());
        assert!(parse("/frobnicate").is_err_and(|e| e.contains("/help")));
        assert!(parse("/pause now").is_err());
    }
}
