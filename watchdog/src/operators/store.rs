//! Where silences and acknowledgements persist: the Redis hash `<prefix>silences` (field = the
//! silence id or `ack:<container>`, value = JSON), else a local JSON state file, else memory
//! only (said once at start-up). Writes come first: a silence that cannot be recorded is not
//! applied, and the operator is told.

use super::book::{Ack, Book, Silence};
use crate::redis::link::RedisLink;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis: {0}")]
    Redis(String),
    #[error("state file {path}: {reason}")]
    File { path: String, reason: String },
}

pub enum Store {
    Redis(Arc<RedisLink>),
    File(PathBuf),
    Memory,
}

const ACK_PREFIX: &str = "ack:";

impl Store {
    pub fn describe(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::File(_) => "state file",
            Store::Memory => "memory only",
        }
    }

    /// Everything stored; entries that do not parse are skipped and logged.
    pub async fn load(&self) -> Result<Book, StoreError> {
        match self {
            Store::Memory => Ok(Book::default()),
            Store::File(path) => match tokio::fs::read(path).await {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
                Err(e) => Err(StoreError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            },
            Store::Redis(link) => {
                let key = link.names().silences();
                let all: Vec<(String, String)> = link
                    .query(redis::cmd("HGETALL").arg(&key))
                    .await
                    .map_err(|e| StoreError::Redis(e.to_string()))?;
                let mut book = Book::default();
                for (field, json) in all {
                    if field.starts_with(ACK_PREFIX) {
                        match serde_json::from_str::<Ack>(&json) {
                            Ok(a) => {
                                book.acks.insert(a.container.clone(), a);
                            }
                            Err(e) => tracing::warn!(field, error = %e, "Unreadable ack skipped."),
                        }
                    } else {
                        match serde_json::from_str::<Silence>(&json) {
                            Ok(s) => {
                                book.silences.insert(s.id.clone(), s);
                            }
                            Err(e) => {
                                tracing::warn!(field, error = %e, "Unreadable silence skipped.")
                            }
                        }
                    }
                }
                Ok(book)
            }
        }
    }

    /// Records a change: `book` is the state after it; for Redis only the named fields change.
    pub async fn record(&self, book: &Book, change: Change<'_>) -> Result<(), StoreError> {
        match self {
            Store::Memory => Ok(()),
            Store::File(path) => write_file(path, book).await,
            Store::Redis(link) => {
                let key = link.names().silences();
                let cmd = match change {
                    Change::PutSilence(s) => {
                        let mut c = redis::cmd("HSET");
                        c.arg(&key).arg(&s.id).arg(json(s));
                        c
                    }
                    Change::PutAck(a) => {
                        let mut c = redis::cmd("HSET");
                        c.arg(&key)
                            .arg(format!("{ACK_PREFIX}{}", a.container))
                            .arg(json(a));
                        c
                    }
                    Change::Remove(fields) => {
                        if fields.is_empty() {
                            return Ok(());
                        }
                        let mut c = redis::cmd("HDEL");
                        c.arg(&key);
                        for f in fields {
                            c.arg(f);
                        }
                        c
                    }
                };
                link.query::<i64>(&cmd)
                    .await
                    .map(|_| ())
                    .map_err(|e| StoreError::Redis(e.to_string()))
            }
        }
    }
}

/// One change to record.
pub enum Change<'a> {
    PutSilence(&'a Silence),
    PutAck(&'a Ack),
    /// Hash fields to remove: silence ids, or `ack:<container>` (see [`ack_field`]).
    Remove(Vec<String>),
}

pub fn ack_field(container: &str) -> String {
    format!("{ACK_PREFIX}{container}")
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Writes the whole book to `path` through a temporary file and a rename, so a crash never
/// leaves half a file.
async fn write_file(path: &std::path::Path, book: &Book) -> Result<(), StoreError> {
    let err = |e: std::io::Error| StoreError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(book).unwrap_or_default();
    tokio::fs::write(&tmp, body).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}
