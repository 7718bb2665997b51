//! Operators talk back: silences, acknowledgements, pause/resume and `/status`, driven by
//! Telegram commands and read by the notifier (and the status page).
//!
//! # Layout (data-flow order)
//! - [`commands`]: parses a command text into a [`commands::Command`] (pure).
//! - [`bot`]: long-polls the Bot API (teloxide, configurable API URL), accepts only the
//!   configured chat (and listed user ids, if set), runs each command and answers it.
//! - [`book`]: the silences and acks themselves (pure, `now` passed in).
//! - [`store`]: where they persist (Redis hash `<prefix>silences`, else the state file).
//! - [`gate`]: the notifier's filter: silenced alerts are held (and sent when the silence ends
//!   while they still fire), acknowledged re-alerts are dropped.
//! - [`status`]: what the engine publishes for `/status` (firing incidents and their state).
//!
//! [`Operators`] ties them together; [`SilenceView`] is the read-only view other parts (the status
//! page) use.

pub mod book;
pub mod bot;
pub mod commands;
pub mod gate;
pub mod status;
pub mod store;
pub mod wiring;

use crate::redis::link::RedisLink;
use book::{ACK_MAX, Ack, Book, Silence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Change, Store, ack_field};
use vigil_shared::time::Timestamp;

/// Read-only access to the operators' silences, for the status page.
pub trait SilenceView: Send + Sync {
    /// Silences in force at `now`, soonest end first.
    fn active_silences(&self, now: Timestamp) -> Vec<Silence>;
    /// Containers acknowledged at `now`.
    fn active_acks(&self, now: Timestamp) -> Vec<Ack>;
}

/// The operators' shared state. Cheap to share (`Arc`).
pub struct Operators {
    book: Mutex<Book>,
    store: Store,
    /// Present when Redis is configured: pause and resume write `<prefix>pause` through it.
    redis: Option<Arc<RedisLink>>,
    /// Wakes the notifier when a silence ends early, so held alerts go out at once.
    pub(crate) changed: tokio::sync::Notify,
    pub status: status::StatusBoard,
}

impl Operators {
    pub fn new(store: Store, redis: Option<Arc<RedisLink>>) -> Arc<Operators> {
        Arc::new(Operators {
            book: Mutex::new(Book::default()),
            store,
            redis,
            changed: tokio::sync::Notify::new(),
            status: status::StatusBoard::default(),
        })
    }

    /// An in-memory instance (tests, and set-ups with no store).
    pub fn in_memory() -> Arc<Operators> {
        Operators::new(Store::Memory, None)
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads what was stored (at start-up).
    pub async fn load(&self) {
        match self.store.load().await {
            Ok(b) => {
                tracing::info!(
                    operators.store = self.store.describe(),
                    operators.silences = b.silences.len(),
                    operators.acks = b.acks.len(),
                    "Silences and acknowledgements loaded."
                );
                *self.book() = b;
            }
            Err(e) => tracing::warn!(
                error = %e,
                "Silences not loaded; earlier silences are not in force until this is fixed."
            ),
        }
    }

    pub fn store_name(&self) -> &'static str {
        self.store.describe()
    }

    /// Records, then applies, a silence of `target` for `length`.
    pub async fn silence(
        &self,
        target: &str,
        length: Duration,
        reason: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Silence, String> {
        let mut next = self.book().clone();
        let s = Silence {
            id: next.new_id(),
            target: target.to_string(),
            reason: reason.to_string(),
            by: by.to_string(),
            created_at: now,
            until: now.plus(length),
        };
        next.silences.insert(s.id.clone(), s.clone());
        self.store
            .record(&next, Change::PutSilence(&s))
            .await
            .map_err(|e| format!("the silence could not be recorded ({e}); nothing changed"))?;
        self.book().silences.insert(s.id.clone(), s.clone());
        Ok(s)
    }

    /// Records, then applies, the end of silence `id`.
    pub async fn unsilence(&self, id: &str) -> Result<Silence, String> {
        let mut next = self.book().clone();
        let Some(s) = next.silences.remove(id) else {
            return Err(format!("no silence with id {id}; /silences lists them"));
        };
        self.store
            .record(&next, Change::Remove(vec![id.to_string()]))
            .await
            .map_err(|e| format!("the end could not be recorded ({e}); still silenced"))?;
        self.book().silences.remove(id);
        self.changed.notify_one();
        Ok(s)
    }

    pub async fn ack(&self, container: &str, by: &str, now: Timestamp) -> Result<Ack, String> {
        let a = Ack {
            container: container.to_string(),
            by: by.to_string(),
            at: now,
            until: now.plus(ACK_MAX),
        };
        let mut next = self.book().clone();
        next.acks.insert(a.container.clone(), a.clone());
        self.store
            .record(&next, Change::PutAck(&a))
            .await
            .map_err(|e| format!("the acknowledgement could not be recorded ({e})"))?;
        self.book().acks.insert(a.container.clone(), a.clone());
        Ok(a)
    }

    /// Ends the ack of `container` (its incident recovered).
    pub async fn end_ack(&self, container: &str) {
        let next = {
            let mut b = self.book();
            if b.acks.remove(container).is_none() {
                return;
            }
            b.clone()
        };
        if let Err(e) = self
            .store
            .record(&next, Change::Remove(vec![ack_field(container)]))
            .await
        {
            tracing::warn!(container.name = container, error = %e, "Ended ack not recorded; it expires on its own.");
        }
    }

    /// Drops what has expired from the book and the store.
    pub async fn expire(&self, now: Timestamp) {
        let (next, fields) = {
            let mut b = self.book();
            let (silences, acks) = b.expire(now);
            if silences.is_empty() && acks.is_empty() {
                return;
            }
            for id in &silences {
                tracing::info!(silence.id = %id, "Silence ended.");
            }
            let mut fields = silences;
            fields.extend(acks.iter().map(|c| ack_field(c)));
            (b.clone(), fields)
        };
        if let Err(e) = self.store.record(&next, Change::Remove(fields)).await {
            tracing::warn!(error = %e, "Expired silences not removed from the store; retrying later.");
        }
    }

    /// Sets or clears `<prefix>pause` (remediation pause read by the executor).
    pub async fn set_pause(&self, paused: bool) -> Result<(), String> {
        let link = self
            .redis
            .as_ref()
            .ok_or("alert-only mode: no Redis, so no remediation to pause")?;
        let key = link.names().pause();
        let cmd = if paused {
            let mut c = redis::cmd("SET");
            c.arg(&key).arg("1");
            c
        } else {
            let mut c = redis::cmd("DEL");
            c.arg(&key);
            c
        };
        link.query::<redis::Value>(&cmd)
            .await
            .map(|_| ())
            .map_err(|e| format!("Redis refused: {e}"))
    }

    /// Whether `<prefix>pause` is set; None in alert-only mode.
    pub async fn paused(&self) -> Option<Result<bool, String>> {
        let link = self.redis.as_ref()?;
        let key = link.names().pause();
        Some(
            link.query::<bool>(redis::cmd("EXISTS").arg(&key))
                .await
                .map_err(|e| e.to_string()),
        )
    }

    pub fn redis(&self) -> Option<&Arc<RedisLink>> {
        self.redis.as_ref()
    }
}

impl SilenceView for Operators {
    fn active_silences(&self, now: Timestamp) -> Vec<Silence> {
        self.book().active(now)
    }

    fn active_acks(&self, now: Timestamp) -> Vec<Ack> {
        self.book()
            .acks
            .values()
            .filter(|a| now < a.until)
            .cloned()
            .collect()
    }
}
