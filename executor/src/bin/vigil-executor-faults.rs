//! The executor built with test-only fault points (`--features fault-injection`); see
//! `src/fault.rs`. The integration tests run it; it is never shipped.

include!("../main.rs");
