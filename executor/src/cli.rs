//! Command line: raw arguments become a [`Command`]; the tool commands (`check-config`,
//! `healthcheck`, `audit verify`, `audit repair`, `audit tail`, `keygen`) run here and return the exit code. `run` (the
//! default) is the service itself, assembled in `main.rs`.

use crate::audit::AuditRecord;
use crate::config::{self, DEFAULT_AUDIT_FILE};
use crate::journal;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use vigil_shared::config::{ConfigErrors, EXIT_CONFIG, ProcessEnv};

/// Exit code for bad usage (as clap uses).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "vigil-executor",
    version,
    about = "Vigil executor: verifies signed requests, applies its policy, acts on Docker, audits"
)]
pub struct Cli {
    /// TOML config file (optional; the EXECUTOR_* environment is enough).
    #[arg(long, short, env = "EXECUTOR_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Consume requests and act on them (the default).
    Run {
        /// Go on although the audit file is behind the audit stream (deleted, replaced or
        /// restored from an older backup), recording the missing range as a `gap` record.
        #[arg(long)]
        accept_audit_gap: bool,
    },
    /// Validate the configuration (including the verify keys), print a summary, exit 0 or 78.
    CheckConfig,
    /// Exit 0 when this executor's `/healthz` (on its `listen` address) answers 2xx, else 1:
    /// the image's healthcheck.
    Healthcheck,
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a new key pair: <DIR>/<KEY_ID>.key (PKCS#8 PEM, 0600) and <DIR>/<KEY_ID>.pub (SPKI
    /// PEM). The private key goes to the watchdog, the public key into EXECUTOR_VERIFY_KEYS.
    Keygen {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; exit 0 when intact, 1 naming the first bad record.
    Verify {
        /// The log (default: EXECUTOR_AUDIT_FILE, else /var/lib/vigil/audit.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The last head seen elsewhere (e.g. the audit stream), as SEQ:HASH; catches a
        /// truncated tail.
        #[arg(long)]
        head: Option<String>,
    },
    /// Cut a torn last line (left by a crash mid-append) and record what was cut; refuses any
    /// other damage.
    Repair {
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print the last N records.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

impl Cli {
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run {
            accept_audit_gap: false,
        })
    }
}

/// Runs a tool command and returns the exit code; `Run` is not a tool (returns `None`).
pub fn run_tool(cli: &Cli) -> Option<i32> {
    Some(match cli.command() {
        Command::Run { .. } => return None,
        Command::CheckConfig => match config::load(cli.config.as_deref(), &ProcessEnv) {
            Ok(cfg) => {
                println!("configuration ok\n{}", cfg.summary());
                0
            }
            Err(errors) => report_config_errors(&errors),
        },
        Command::Healthcheck => match config::load(cli.config.as_deref(), &ProcessEnv) {
            Ok(cfg) => vigil_shared::probe::healthcheck("vigil-executor", cfg.listen),
            Err(errors) => report_config_errors(&errors),
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { file, head } => audit_verify(&audit_path(file), head.as_deref()),
            AuditCommand::Repair { file } => audit_repair(&audit_path(file)),
            AuditCommand::Tail { n, file } => audit_tail(&audit_path(file), n),
        },
        Command::Keygen { dir, key_id } => {
            match vigil_protocol::signing::write_keypair(&dir, &key_id) {
                Ok(files) => {
                    println!(
                        "wrote {} (private, for the watchdog) and {} (public, for EXECUTOR_VERIFY_KEYS); key id {}",
                        files.private.display(),
                        files.public.display(),
                        files.key_id
                    );
                    0
                }
                Err(e) => {
                    eprintln!("vigil-executor keygen: {e}");
                    1
                }
            }
        }
    })
}

/// Prints every configuration error, one per line; returns 78.
pub fn report_config_errors(errors: &ConfigErrors) -> i32 {
    eprintln!(
        "vigil-executor: invalid configuration ({} error(s)):\n{errors}",
        errors.len()
    );
    EXIT_CONFIG
}

fn audit_path(file: Option<PathBuf>) -> PathBuf {
    file.or_else(|| {
        std::env::var_os("EXECUTOR_AUDIT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_FILE))
}

/// Parses `SEQ:HASH` (64 lowercase hex).
pub fn parse_head(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected SEQ:HASH"))?;
    let seq = seq
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("{seq:?}: SEQ must be a non-negative integer"))?;
    let hash = hash.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{hash:?}: HASH must be 64 lowercase hex chars"));
    }
    Ok((seq, hash.to_string()))
}

fn audit_verify(path: &Path, head: Option<&str>) -> i32 {
    let head = match head.map(parse_head).transpose() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vigil-executor audit verify: --head {e}");
            return EXIT_USAGE;
        }
    };
    match journal::verify_file(path, head.as_ref().map(|(s, h)| (*s, h.as_str()))) {
        Ok(summary) => {
            let segments = journal::segments(path).map_or(0, |s| s.len());
            println!(
                "audit log ok: {} ({} records in {} file(s), head {}:{})",
                path.display(),
                summary.records,
                segments + 1,
                summary.head_seq,
                summary.head_hash
            );
            for (from, to) in &summary.gaps {
                println!("  gap: records #{from}..#{to} are missing (accepted by an operator)");
            }
            0
        }
        Err(e) => {
            println!("audit log INVALID: {}: {e}", path.display());
            1
        }
    }
}

fn audit_repair(path: &Path) -> i32 {
    match journal::repair_file(path) {
        Ok(None) => {
            println!(
                "audit log {}: nothing to repair (no torn last line)",
                path.display()
            );
            0
        }
        Ok(Some((torn, rec))) => {
            println!(
                "audit log {}: cut {} bytes (sha256 {}) at offset {}; recorded as #{}",
                path.display(),
                torn.bytes,
                torn.sha256,
                torn.offset,
                rec.seq
            );
            0
        }
        Err(e) => {
            println!(
                "audit log {}: NOT repaired: {e}\n(only a torn last line can be repaired; restore anything else from a backup)",
                path.display()
            );
            1
        }
    }
}

fn audit_tail(path: &Path, n: usize) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil-executor audit tail: {}: {e}", path.display());
            return 1;
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(n)..] {
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(r) => println!(
                "#{} {} {} {} {} {} {}",
                r.seq,
                r.ts.as_millis(),
                r.decision.as_str(),
                r.reason,
                r.action.map_or("-", |a| a.as_str()),
                r.target.as_ref().map_or("-", |t| t.name.as_str()),
                r.request_id.as_deref().unwrap_or("-"),
            ),
            Err(_) => println!("(unreadable line) {line}"),
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let h = "a".repeat(64);
        assert_eq!(parse_head(&format!("12:{h}")), Ok((12, h.clone())));
        assert!(parse_head("12").is_err());
        assert!(parse_head(&format!("x:{h}")).is_err());
        assert!(parse_head("3:abc").is_err());
    }

    #[test]
    fn default_command_is_run() {
        let cli = Cli::parse_from(["vigil-executor"]);
        assert!(matches!(
            cli.command(),
            Command::Run {
                accept_audit_gap: false
            }
        ));
        let cli = Cli::parse_from(["vigil-executor", "run", "--accept-audit-gap"]);
        assert!(matches!(
            cli.command(),
            Command::Run {
                accept_audit_gap: true
            }
        ));
        let cli = Cli::parse_from(["vigil-executor", "audit", "verify", "--head", "1:x"]);
        assert!(matches!(cli.command(), Command::Audit { .. }));
    }
}
