//! The Redis functions every stream append goes through, and the one command that loads them.
//!
//! Clients never `XADD` themselves: the watchdog calls [`REQUEST_APPEND`], the executor
//! [`AUDIT_APPEND`] and [`DEAD_APPEND`]. Each function refuses an entry over its cap, lets Redis
//! choose the id (`*`, so no writer can pick a maximal id that blocks the stream) and trims the
//! stream to its length cap. The caps come from [`crate::names`].
//!
//! Who loads them: the executor, with `FUNCTION LOAD REPLACE` at start-up and after every
//! reconnect. The library is compiled into the executor, so an upgrade of the
//! executor replaces the functions; the library reports its version through `vigil_version`.
//!
//! Redis runs the commands inside a function with the caller's ACL, so the callers' users must
//! still be allowed `XADD` on their stream: the functions keep Vigil's own appends bounded, and
//! the consumer treats every entry as hostile all the same.

use crate::names::{
    AUDIT_MAXLEN, DEAD_MAXLEN, ENVELOPE_FIELD, EXECUTOR_FIELD, MAX_AUDIT_ENTRY_BYTES,
    MAX_REQUEST_ENTRY_BYTES, RECORD_FIELD, REQUESTS_MAXLEN,
};

/// `FCALL vigil_request_append 1 <requests> envelope <json>`.
pub const REQUEST_APPEND: &str = "vigil_request_append";
/// `FCALL vigil_audit_append 1 <audit> record <line> [executor <consumer>]`.
pub const AUDIT_APPEND: &str = "vigil_audit_append";
/// `FCALL vigil_dead_append 1 <dead> <field> <value> ...`.
pub const DEAD_APPEND: &str = "vigil_dead_append";
/// `FCALL vigil_version 0`.
pub const VERSION_FUNCTION: &str = "vigil_version";
/// The library's version: the crate version (an upgrade replaces the library).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A dead-letter copy: the request entry's fields plus why.
pub const MAX_DEAD_ENTRY_BYTES: usize = MAX_REQUEST_ENTRY_BYTES + 1024;

const TEMPLATE: &str = include_str!("redis_functions.lua");

/// The library source with the caps filled in.
pub fn library() -> String {
    TEMPLATE
        .replace("@VERSION@", VERSION)
        .replace("@ENVELOPE_FIELD@", ENVELOPE_FIELD)
        .replace("@RECORD_FIELD@", RECORD_FIELD)
        .replace("@EXECUTOR_FIELD@", EXECUTOR_FIELD)
        .replace("@REQUEST_CAP@", &MAX_REQUEST_ENTRY_BYTES.to_string())
        .replace("@REQUEST_MAXLEN@", &REQUESTS_MAXLEN.to_string())
        .replace("@AUDIT_CAP@", &MAX_AUDIT_ENTRY_BYTES.to_string())
        .replace("@AUDIT_MAXLEN@", &AUDIT_MAXLEN.to_string())
        .replace("@DEAD_CAP@", &MAX_DEAD_ENTRY_BYTES.to_string())
        .replace("@DEAD_MAXLEN@", &DEAD_MAXLEN.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_is_filled_in() {
        let lib = library();
        assert!(!lib.contains('@'), "{lib}");
        assert!(lib.starts_with("#!lua name=vigil\n"));
        for f in [REQUEST_APPEND, AUDIT_APPEND, DEAD_APPEND, VERSION_FUNCTION] {
            assert!(lib.contains(&format!("'{f}'")), "{f}");
        }
    }
}
