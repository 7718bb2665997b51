//! Redis names shared by the watchdog, the executor, the ACL file, the docs and the tests.
//!
//! Every name is `<prefix><suffix>`; the prefix is configurable and defaults to `vigil:`.

pub const DEFAULT_PREFIX: &str = "vigil:";
/// Consumer group on the requests stream.
pub const EXECUTOR_GROUP: &str = "executors";
/// The one field of a requests-stream entry; it holds the envelope JSON.
pub const ENVELOPE_FIELD: &str = "envelope";
/// The one field of an audit-stream entry; it holds the record's JSON line.
pub const RECORD_FIELD: &str = "record";
/// The second field of an audit-stream entry: the consumer name of the executor that wrote it.
pub const EXECUTOR_FIELD: &str = "executor";

/// Largest requests-stream entry (field names and values): an envelope is at most
/// [`crate::wire::MAX_ENVELOPE_BYTES`]. The append function refuses more; the consumer
/// audits a larger entry as malformed.
pub const MAX_REQUEST_ENTRY_BYTES: usize = crate::wire::MAX_ENVELOPE_BYTES + 1024;
/// Largest audit record the audit append function accepts.
pub const MAX_AUDIT_ENTRY_BYTES: usize = 64 * 1024;
/// Requests-stream length cap (approximate `MAXLEN ~`) applied by the append function.
pub const REQUESTS_MAXLEN: usize = 10_000;
/// Audit-stream length cap (approximate `MAXLEN ~`) applied by the append function.
pub const AUDIT_MAXLEN: usize = 100_000;
/// Dead-letter-stream length cap (approximate `MAXLEN ~`) applied by the append function.
pub const DEAD_MAXLEN: usize = 10_000;

/// The Redis names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names::new(DEFAULT_PREFIX)
    }
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_string(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn requests(&self) -> String {
        format!("{}requests", self.prefix)
    }
    pub fn audit(&self) -> String {
        format!("{}audit", self.prefix)
    }
    pub fn dead(&self) -> String {
        format!("{}dead", self.prefix)
    }
    pub fn nonce(&self, nonce: &str) -> String {
        format!("{}nonce:{nonce}", self.prefix)
    }
    /// The lease an executor holds on a requests-stream entry while it handles it.
    pub fn lease(&self, entry_id: &str) -> String {
        format!("{}lease:{entry_id}", self.prefix)
    }
    /// Marks an entry whose copy is already in the dead-letter stream.
    pub fn dead_copied(&self, entry_id: &str) -> String {
        format!("{}deadcopied:{entry_id}", self.prefix)
    }
    pub fn executor_heartbeat(&self) -> String {
        format!("{}heartbeat:executor", self.prefix)
    }
    pub fn pause(&self) -> String {
        format!("{}pause", self.prefix)
    }
    /// Operators' silences and acknowledgements (a hash: silence id or `ack:<container>` to JSON).
    pub fn silences(&self) -> String {
        format!("{}silences", self.prefix)
    }
    pub fn alert(&self, signal_key: &str) -> String {
        format!("{}alert:{signal_key}", self.prefix)
    }
    /// The set of the watchdog's alert keys (read back at start-up instead of a key scan, so
    /// the watchdog needs no `SCAN`).
    pub fn alert_index(&self) -> String {
        format!("{}alert_index", self.prefix)
    }
    /// Where the watchdog keeps the id of the last audit entry it has told people about.
    pub fn watchdog_audit_cursor(&self) -> String {
        format!("{}watchdog:audit_cursor", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let n = Names::default();
        assert_eq!(n.requests(), "vigil:requests");
        assert_eq!(n.audit(), "vigil:audit");
        assert_eq!(n.dead(), "vigil:dead");
        assert_eq!(n.nonce("ab"), "vigil:nonce:ab");
        assert_eq!(n.executor_heartbeat(), "vigil:heartbeat:executor");
        assert_eq!(n.pause(), "vigil:pause");
        assert_eq!(n.silences(), "vigil:silences");
        assert_eq!(n.alert("k/x"), "vigil:alert:k/x");
        assert_eq!(n.alert_index(), "vigil:alert_index");
        assert_eq!(n.watchdog_audit_cursor(), "vigil:watchdog:audit_cursor");
    }
}
