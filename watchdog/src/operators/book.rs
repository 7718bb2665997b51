//! Silences and acknowledgements, pure: what operators asked for, with `now` passed in.
//!
//! - A silence names a container or a compose project and lasts until its end time; while it is
//!   active no alert about a matching subject goes out.
//! - An acknowledgement names a container: no re-alerts for its current incident. It ends when
//!   one of its signals recovers, or after [`ACK_MAX`].

use crate::signals::Subject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_shared::time::Timestamp;

/// Longest an acknowledgement lasts without a recovery.
pub const ACK_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest silence accepted.
pub const SILENCE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// A container name or a compose project name.
    pub target: String,
    pub reason: String,
    /// Who asked (Telegram user id and name).
    pub by: String,
    pub created_at: Timestamp,
    pub until: Timestamp,
}

impl Silence {
    pub fn matches(&self, subject: &Subject) -> bool {
        subject.container.as_deref() == Some(self.target.as_str())
            || subject.project.as_deref() == Some(self.target.as_str())
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub container: String,
    pub by: String,
    pub at: Timestamp,
    pub until: Timestamp,
}

/// What the book holds, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Book {
    pub silences: BTreeMap<String, Silence>,
    pub acks: BTreeMap<String, Ack>,
}

impl Book {
    /// The active silence covering `subject`, if any.
    pub fn silence_for(&self, subject: &Subject, now: Timestamp) -> Option<&Silence> {
        self.silences
            .values()
            .find(|s| s.is_active(now) && s.matches(subject))
    }

    pub fn is_acked(&self, subject: &Subject, now: Timestamp) -> bool {
        subject
            .container
            .as_deref()
            .and_then(|c| self.acks.get(c))
            .is_some_and(|a| now < a.until)
    }

    /// Active silences, soonest end first.
    pub fn active(&self, now: Timestamp) -> Vec<Silence> {
        let mut v: Vec<Silence> = self
            .silences
            .values()
            .filter(|s| s.is_active(now))
            .cloned()
            .collect();
        v.sort_by_key(|s| s.until);
        v
    }

    /// Removes what has ended; returns the ended silences' ids and ended acks' containers.
    pub fn expire(&mut self, now: Timestamp) -> (Vec<String>, Vec<String>) {
        let ended: Vec<String> = self
            .silences
            .values()
            .filter(|s| !s.is_active(now))
            .map(|s| s.id.clone())
            .collect();
        for id in &ended {
            self.silences.remove(id);
        }
        let acks: Vec<String> = self
            .acks
            .values()
            .filter(|a| now >= a.until)
            .map(|a| a.container.clone())
            .collect();
        for c in &acks {
            self.acks.remove(c);
        }
        (ended, acks)
    }

    /// A fresh short id not in use: `s` and 6 hex digits.
    pub fn new_id(&self) -> String {
        loop {
            let id = format!("s{:06x}", rand::random::<u32>() & 0x00ff_ffff);
            if !self.silences.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Parses `10m`, `2h`, `1d`, `90s`, `1h30m`; at least a second, at most [`SILENCE_MAX`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    if !num.is_empty() || !any || total == 0 {
        return None;
    }
    let d = Duration::from_secs(total);
    (d <= SILENCE_MAX).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(container: &str, project: &str) -> Subject {
        Subject {
            container: Some(container.into()),
            project: Some(project.into()),
            ..Subject::default()
        }
    }

    #[test]
    fn silences_match_container_or_project_and_expire() {
        let mut b = Book::default();
        let s = Silence {
            id: b.new_id(),
            target: "shop".into(),
            reason: "maintenance".into(),
            by: "1".into(),
            created_at: Timestamp(0),
            until: Timestamp(600_000),
        };
        b.silences.insert(s.id.clone(), s.clone());
        assert!(
            b.silence_for(&subject("shop-web-1", "shop"), Timestamp(1))
                .is_some()
        );
        assert!(
            b.silence_for(&subject("shop", "other"), Timestamp(1))
                .is_some()
        );
        assert!(
            b.silence_for(&subject("web", "other"), Timestamp(1))
                .is_none()
        );
        assert!(
            b.silence_for(&subject("x", "shop"), Timestamp(600_000))
                .is_none()
        );
        assert_eq!(b.expire(Timestamp(600_000)).0, vec![s.id]);
        assert!(b.silences.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "10", "m", "0m", "10x", "-5m", "100w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
