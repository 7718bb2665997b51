//! What `/status` shows about detection, published by the engine after each step (the engine
//! owns the alert states; this is a copy made for readers).

use crate::signals::{Severity, SignalKind};
use std::sync::Mutex;
use vigil_shared::time::Timestamp;

/// One firing signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub key: String,
    /// `shop/web (shop-web-1)` or the subject name.
    pub label: String,
    pub kind: SignalKind,
    pub severity: Severity,
    pub since: Timestamp,
    /// What Vigil did or will do about it, if anything was said.
    pub remedy: Option<String>,
}

#[derive(Debug, Default)]
pub struct StatusBoard {
    firing: Mutex<Vec<Firing>>,
    remedies: Mutex<std::collections::BTreeMap<String, String>>,
}

impl StatusBoard {
    /// Replaces the firing list (remedies recorded by [`StatusBoard::note_remedy`] are kept for
    /// keys still firing).
    pub fn set_firing(&self, mut firing: Vec<Firing>) {
        let mut remedies = self.remedies.lock().unwrap_or_else(|p| p.into_inner());
        remedies.retain(|k, _| firing.iter().any(|f| &f.key == k));
        for f in &mut firing {
            if f.remedy.is_none() {
                f.remedy = remedies.get(&f.key).cloned();
            }
        }
        *self.firing.lock().unwrap_or_else(|p| p.into_inner()) = firing;
    }

    pub fn note_remedy(&self, key: &str, remedy: &str) {
        self.remedies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), remedy.to_string());
    }

    pub fn firing(&self) -> Vec<Firing> {
        self.firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
