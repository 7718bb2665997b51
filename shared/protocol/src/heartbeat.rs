//! The executor heartbeat's value, written by the executor and read by the watchdog.
//!
//! `<unix ms>` while all is well; `<unix ms> cannot-audit <reason>` while the executor cannot
//! write its audit log (it then acts on nothing, and the watchdog pages).

const CANNOT_AUDIT: &str = "cannot-audit";

/// One heartbeat, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub at_ms: i64,
    /// Why the executor cannot audit, when it cannot.
    pub cannot_audit: Option<String>,
}

/// The value to store for a beat at `at_ms`.
pub fn encode(at_ms: i64, cannot_audit: Option<&str>) -> String {
    match cannot_audit {
        None => at_ms.to_string(),
        Some(why) => {
            let why: String = why
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!("{at_ms} {CANNOT_AUDIT} {why}")
        }
    }
}

/// Reads a stored value; `None` when it is not a heartbeat.
pub fn decode(value: &str) -> Option<Beat> {
    let value = value.trim();
    let (ms, rest) = value.split_once(' ').unwrap_or((value, ""));
    let at_ms = ms.parse::<i64>().ok()?;
    let rest = rest.trim();
    let cannot_audit = match rest.strip_prefix(CANNOT_AUDIT) {
        Some(why) => Some(why.trim().to_string()),
        None if rest.is_empty() => None,
        None => Some(rest.to_string()),
    };
    Some(Beat {
        at_ms,
        cannot_audit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(
            decode(&encode(5, None)),
            Some(Beat {
                at_ms: 5,
                cannot_audit: None
            })
        );
        let b = decode(&encode(7, Some("disk\nfull"))).expect("beat");
        assert_eq!(b.cannot_audit.as_deref(), Some("disk full"));
        assert_eq!(decode("x"), None);
    }
}
