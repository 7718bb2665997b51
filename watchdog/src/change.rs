//! A key whose alert state changed: what the pure core hands to the alert store. A module of
//! its own so the store (Redis side) and the core (pure) both depend on it, not on each other.

use crate::decide::AlertState;
use crate::signals::Signal;

/// A key whose alert state changed, for the alert store.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    /// The key's state (not `Inactive`) and its latest signal.
    Put {
        signal: Box<Signal>,
        state: AlertState,
        /// The key's remediation incident, attached by [`crate::incident::runner::Runner`].
        incident: Option<Box<crate::incident::Incident>>,
    },
    /// The key went back to `Inactive`.
    Remove { key: String },
}
