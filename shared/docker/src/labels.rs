//! Container labels Vigil reads, what their values mean, and how an exit is classified: the
//! rules the watchdog and the executor must agree on, written once.
//!
//! Every label name Vigil reads is a constant here; no other file spells one out.
//!
//! # Meaning of a value (fail safe)
//! A value is compared trimmed and in any case. [`flag`] reads it as
//! [`Flag::True`] (`true`, `1`, `yes`, `on`), [`Flag::False`] (`false`, `0`, `no`, `off`) or
//! [`Flag::Unclear`] (anything else). What an unclear value means depends on which way is safe:
//! - [`REMEDIATE`] opts in only when true: an unclear value does not opt in ([`remediates`]).
//! - [`PROTECTED`] protects unless false: an unclear value protects ([`is_protected`]).
//! - [`IGNORE`] ignores only when true; [`MONITOR`] stops watching only when false (an unclear
//!   value keeps the container watched).
//!
//! An unclear value is logged once per container, label and value ([`report_unclear`]), so an
//! operator learns about the typo without a log line per sweep.
//!
//! # Exit causes
//! [`classify_exit`] is the one reading of an exit code: 0 is clean, OOM-killed is the kernel,
//! 137 (SIGKILL) and 143 (SIGTERM) without an OOM kill come from outside the container (an
//! operator's `docker stop`/`kill`, or Vigil's own stop), anything else is a failure.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// Prefix of every label Vigil reads (the gate passes labels under it through).
pub const VIGIL_PREFIX: &str = "vigil.";
/// Prefix of Docker Compose's labels (the gate passes labels under it through).
pub const COMPOSE_PREFIX: &str = "com.docker.compose.";
/// `com.docker.compose.project`.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// `com.docker.compose.service`.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// `vigil.remediate=true`: Vigil may act on this container (opt in).
pub const REMEDIATE: &str = "vigil.remediate";
/// `vigil.protected` (any value but false): never acted on.
pub const PROTECTED: &str = "vigil.protected";
/// `vigil.remediate.memory=true`: restart before a steady memory climb reaches the limit.
pub const REMEDIATE_MEMORY: &str = "vigil.remediate.memory";
/// `vigil.remediate.cpu=true`: restart on sustained high CPU.
pub const REMEDIATE_CPU: &str = "vigil.remediate.cpu";
/// `vigil.ignore=true`: the container is not watched at all.
pub const IGNORE: &str = "vigil.ignore";
/// `vigil.monitor=false`: same as `vigil.ignore=true`.
pub const MONITOR: &str = "vigil.monitor";
/// `vigil.cpu_threshold=<pct>`: this container's CPU threshold.
pub const CPU_THRESHOLD: &str = "vigil.cpu_threshold";
/// `vigil.memory_threshold=<pct>`: this container's memory threshold.
pub const MEMORY_THRESHOLD: &str = "vigil.memory_threshold";

/// The boolean labels, whose unclear values are reported.
pub const BOOLEAN_LABELS: [&str; 6] = [
    REMEDIATE,
    PROTECTED,
    REMEDIATE_MEMORY,
    REMEDIATE_CPU,
    IGNORE,
    MONITOR,
];

/// How a boolean label's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    True,
    False,
    /// Neither: what it means depends on the label (see the module docs).
    Unclear,
}

/// Reads one value (trimmed, any case).
pub fn flag(value: &str) -> Flag {
    let v = value.trim();
    if ["true", "1", "yes", "on"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
    {
        Flag::True
    } else if ["false", "0", "no", "off"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
    {
        Flag::False
    } else {
        Flag::Unclear
    }
}

/// The label is present and true.
pub fn is_true(labels: &BTreeMap<String, String>, name: &str) -> bool {
    labels.get(name).is_some_and(|v| flag(v) == Flag::True)
}

/// The label is present and false.
pub fn is_false(labels: &BTreeMap<String, String>, name: &str) -> bool {
    labels.get(name).is_some_and(|v| flag(v) == Flag::False)
}

/// Opted in: [`REMEDIATE`] is true.
pub fn remediates(labels: &BTreeMap<String, String>) -> bool {
    is_true(labels, REMEDIATE)
}

/// Protected: [`PROTECTED`] is present with any value but a false one.
pub fn is_protected(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get(PROTECTED)
        .is_some_and(|v| flag(v) != Flag::False)
}

/// Not watched: [`IGNORE`] true or [`MONITOR`] false.
pub fn is_ignored(labels: &BTreeMap<String, String>) -> bool {
    is_true(labels, IGNORE) || is_false(labels, MONITOR)
}

/// A percentage label (`70`, `70%`); anything else is `None` (the default applies).
pub fn percent(labels: &BTreeMap<String, String>, name: &str) -> Option<f64> {
    let v: f64 = labels
        .get(name)?
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .ok()?;
    (v.is_finite() && v > 0.0).then_some(v)
}

/// The boolean labels whose value is neither true nor false, as `(name, value)`.
pub fn unclear(labels: &BTreeMap<String, String>) -> Vec<(&'static str, &str)> {
    BOOLEAN_LABELS
        .iter()
        .filter_map(|name| {
            let v = labels.get(*name)?;
            (flag(v) == Flag::Unclear).then_some((*name, v.as_str()))
        })
        .collect()
}

/// One reported label: container, label name and value.
type Reported = (String, &'static str, String);

/// What was reported already; bounded so a hostile label churn cannot grow it for ever.
static REPORTED: Mutex<Option<HashSet<Reported>>> = Mutex::new(None);
const MAX_REPORTED: usize = 4096;

/// Logs each unclear boolean label of `container` once (per container, label and value), with
/// what Vigil takes it to mean. Returns how many lines it wrote (for tests).
pub fn report_unclear(container: &str, labels: &BTreeMap<String, String>) -> usize {
    let found = unclear(labels);
    if found.is_empty() {
        return 0;
    }
    let mut guard = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    let mut written = 0;
    for (name, value) in found {
        let key = (container.to_string(), name, value.to_string());
        if seen.contains(&key) {
            continue;
        }
        if seen.len() >= MAX_REPORTED {
            seen.clear();
        }
        seen.insert(key);
        let meaning = match name {
            PROTECTED => "protected (only false, 0, no or off unprotects)",
            MONITOR => "watched (only false, 0, no or off stops watching)",
            _ => "not set (only true, 1, yes or on sets it)",
        };
        // The value is an operator's label, not a secret; it is shown cut short and escaped.
        let shown: String = value.chars().take(64).collect();
        tracing::warn!(
            container.name = container,
            label.name = name,
            label.value = ?shown,
            label.meaning = meaning,
            "A Vigil label is neither true nor false; using the safe meaning."
        );
        written += 1;
    }
    written
}

/// Why a container's main process ended, from its exit code and the OOM flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// Exit 0.
    Clean,
    /// The kernel's OOM killer.
    OomKilled,
    /// 137 or 143 without an OOM kill: a signal from outside (`docker stop`, `docker kill`, or
    /// Vigil's own stop). Intent, not failure.
    Stopped,
    /// Any other code: the process failed.
    Failed,
}

/// SIGKILL (128 + 9) or SIGTERM (128 + 15): only a signal from outside ends a process so.
pub const fn is_stop_signal_exit(code: i64) -> bool {
    matches!(code, 137 | 143)
}

/// The one classification both programs use.
pub fn classify_exit(code: i64, oom_killed: bool) -> ExitCause {
    if oom_killed {
        ExitCause::OomKilled
    } else if code == 0 {
        ExitCause::Clean
    } else if is_stop_signal_exit(code) {
        ExitCause::Stopped
    } else {
        ExitCause::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_string(), value.to_string())])
    }

    #[test]
    fn values_read_fail_safe() {
        // (value, flag, opts in, protects)
        let table = [
            ("true", Flag::True, true, true),
            ("1", Flag::True, true, true),
            ("yes", Flag::True, true, true),
            ("TRUE", Flag::True, true, true),
            (" on ", Flag::True, true, true),
            ("On", Flag::True, true, true),
            ("false", Flag::False, false, false),
            ("0", Flag::False, false, false),
            (" No", Flag::False, false, false),
            ("OFF", Flag::False, false, false),
            ("garbage", Flag::Unclear, false, true),
            ("", Flag::Unclear, false, true),
            ("truee", Flag::Unclear, false, true),
        ];
        for (value, want, opts_in, protects) in table {
            assert_eq!(flag(value), want, "{value:?}");
            assert_eq!(remediates(&one(REMEDIATE, value)), opts_in, "{value:?}");
            assert_eq!(is_protected(&one(PROTECTED, value)), protects, "{value:?}");
        }
        assert!(!remediates(&BTreeMap::new()));
        assert!(!is_protected(&BTreeMap::new()));
    }

    #[test]
    fn ignore_and_monitor_keep_watching_when_unclear() {
        assert!(is_ignored(&one(IGNORE, "yes")));
        assert!(!is_ignored(&one(IGNORE, "maybe")));
        assert!(is_ignored(&one(MONITOR, "off")));
        assert!(!is_ignored(&one(MONITOR, "maybe")));
    }

    #[test]
    fn unclear_values_are_reported_once() {
        let labels = BTreeMap::from([
            (PROTECTED.to_string(), "maybe".to_string()),
            (REMEDIATE.to_string(), "ja".to_string()),
            ("other".to_string(), "x".to_string()),
        ]);
        assert_eq!(report_unclear("labels-test-c1", &labels), 2);
        assert_eq!(report_unclear("labels-test-c1", &labels), 0);
        assert_eq!(report_unclear("labels-test-c2", &labels), 2);
    }

    #[test]
    fn exit_causes() {
        assert_eq!(classify_exit(0, false), ExitCause::Clean);
        assert_eq!(classify_exit(137, false), ExitCause::Stopped);
        assert_eq!(classify_exit(143, false), ExitCause::Stopped);
        assert_eq!(classify_exit(137, true), ExitCause::OomKilled);
        assert_eq!(classify_exit(1, false), ExitCause::Failed);
        assert_eq!(classify_exit(139, false), ExitCause::Failed);
    }
}
