//! What `/status` shows about detection, published by the engine after each step (the engine
//! owns the alert states; this is a copy made for readers).

use crate::incident::Incident;
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
    /// The incident machine's open incidents by signal key (a read-only copy).
    incidents: Mutex<std::collections::BTreeMap<String, Incident>>,
}

impl StatusBoard {
    /// Replaces the firing list (remedies recorded by [`StatusBoard::note_remedy`] are kept for
    /// keys still firing).
    pub fn set_firing(&self, mut firing: Vec<Firing>) {
        let mut remedies = self.remedies.lock().unwrap_or_else(|p| p.into_inner());
        remedies.retain(|k, _| firing.iter().any(|f| &f.key == k));
        self.incidents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| firing.iter().any(|f| &f.key == k));
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

    /// The key's incident after a step (None: it ended).
    pub fn note_incident(&self, key: &str, incident: Option<&Incident>) {
        let mut map = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        match incident {
            Some(i) => {
                map.insert(key.to_string(), i.clone());
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Where the key's incident stands, in the status page's words; None without an incident.
    pub fn phase_text(&self, key: &str) -> Option<String> {
        let map = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|i| {
            crate::status_page::remedy::text(&crate::status_page::remedy::from_incident(i))
        })
    }

    pub fn firing(&self) -> Vec<Firing> {
        self.firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
