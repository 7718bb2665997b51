//! What the executor needs from Redis, as a trait: nonce reservations, the pause key and the
//! audit stream. The pipeline and the group commit both talk to it; tests plug in their own.

use futures_util::future::BoxFuture;
use std::time::Duration;

/// A Redis failure (or any broker failure): the entry is left pending and retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker: {0}")]
pub struct BrokerError(pub String);

/// The answer to a nonce reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// This entry now holds the nonce.
    Reserved,
    /// The nonce was already held, by the entry with this id.
    HeldBy(String),
}

/// What the pipeline needs from Redis.
pub trait Broker: Send + Sync {
    /// `SET <prefix>nonce:<nonce> <entry_id> NX PX <ttl>`, reading the holder when it exists.
    fn reserve_nonce<'a>(
        &'a self,
        nonce: &'a str,
        entry_id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, BrokerError>>;
    /// Whether the runtime pause key exists.
    fn paused(&self) -> BoxFuture<'_, Result<bool, BrokerError>>;
    /// Appends one line to the audit stream.
    fn publish_audit<'a>(&'a self, line: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;
    /// Appends lines to the audit stream in this order (one round trip where the broker can).
    fn publish_audit_batch<'a>(
        &'a self,
        lines: &'a [String],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            for line in lines {
                self.publish_audit(line).await?;
            }
            Ok(())
        })
    }
    /// `(seq, hash)` of this executor's last record on the audit stream (`None`: none there).
    fn audit_stream_head(&self) -> BoxFuture<'_, Result<Option<(u64, String)>, BrokerError>>;
}
