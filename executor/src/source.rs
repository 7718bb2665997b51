//! Where requests come from: the Redis requests stream, read through the `executors` consumer
//! group, plus the Redis side of the pipeline ([`Broker`]: nonces, the pause key, the audit
//! stream).
//!
//! # Delivery
//! - The group is created with `MKSTREAM` from id `0` (requests queued before the first start
//!   are handled, and rejected as expired if they are old); `BUSYGROUP` is fine.
//! - On start (and after every reconnect) this consumer first re-reads its own pending entries
//!   (`XREADGROUP ... 0`): those read before a crash and never acknowledged.
//! - New entries: `XREADGROUP GROUP executors <consumer> COUNT 64 BLOCK 1000 ... >` on a
//!   connection of its own (a blocked read must not hold up the requests in flight); 64 entries
//!   at the size cap are about 600 KiB. [`crate::consume`] sorts and runs them.
//! - Periodically entries idle longer than `reclaim_idle` whose lease is gone are claimed
//!   (another executor's that died, or ours that failed on a Redis error); see [`crate::lease`].
//! - Every entry is handled under a lease, so two executors never run one request.
//! - A re-delivered entry whose delivery count (`XPENDING`) exceeds `max_deliveries` is copied
//!   (once) to the dead-letter stream with the reason, audited as `dead_letter` and acknowledged.
//! - Nothing is read, taken or copied while the audit log cannot be written.
//! - An entry is acknowledged only after its audit record is durable.
//!
//! # Hostile entries
//! Every reply is read as raw [`redis::Value`]s ([`crate::stream_entry`]): no reply can fail to
//! convert and leave an entry pending for ever. An entry that is not UTF-8, has no `envelope`, is
//! over [`vigil_protocol::names::MAX_REQUEST_ENTRY_BYTES`] or carries an id from the far future is
//! audited as
//! `malformed` (id and size only) and acknowledged. A future id is also deleted and the stream's
//! and group's last ids are set back, as it would otherwise block every later append. The
//! consumer reports each completed step to [`crate::serve::Health`]; one that makes no progress turns
//! `/healthz` to 503 and withholds the heartbeat.
//!
//! A Redis outage never ends the process: each failed step is logged and retried with backoff.

use crate::lease::Claims;
use crate::pipeline::{Broker, BrokerError, Pipeline, PipelineError, Reservation};
use crate::stream_entry::{self, Entry, Malformed};
use futures_util::future::BoxFuture;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamPendingCountReply;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_protocol::names::{EXECUTOR_GROUP, Names, RECORD_FIELD};
use vigil_protocol::redis_functions::{self, AUDIT_APPEND};
use vigil_shared::backoff::Backoff;
use vigil_shared::config::Secret;
use vigil_shared::time::Timestamp;

/// Re-delivered entries read or claimed per call: a few, as each is handled on its own.
pub const READ_COUNT: usize = 4;
/// New entries read per call at most: a flood is handled a batch at a time (one lease round
/// trip, one sync, one acknowledgement per batch). 64 entries at Redis's own size limit are
/// about 600 KiB.
pub const READ_BATCH: usize = 64;
/// How long one `XREADGROUP` blocks.
pub const BLOCK: Duration = Duration::from_millis(1000);
/// The audit stream entry's field naming the executor (its consumer name) that wrote it.
pub const AUDIT_EXECUTOR_FIELD: &str = vigil_protocol::names::EXECUTOR_FIELD;
/// Audit stream entries kept (approximately).
const AUDIT_STREAM_MAXLEN: usize = vigil_protocol::names::AUDIT_MAXLEN;
/// How often a blocked audit log is checked again.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(250);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

impl From<stream_entry::ShapeError> for SourceError {
    fn from(e: stream_entry::ShapeError) -> Self {
        SourceError::Reply(e.0)
    }
}

impl From<BrokerError> for SourceError {
    fn from(e: BrokerError) -> Self {
        SourceError::Pipeline(PipelineError::Broker(e))
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub names: Names,
    pub consumer: String,
    pub reclaim_idle: Duration,
    pub max_deliveries: u64,
    pub lease_ttl: Duration,
}

/// The requests stream and the pipeline's Redis needs, over one multiplexed connection shared by
/// every request in flight, plus one for the blocking read.
#[derive(Clone)]
pub struct RedisSource {
    conn: ConnectionManager,
    /// The connection of the blocking `XREADGROUP` (one per source): a blocked read on the
    /// shared connection would hold up every request in flight.
    reader: ConnectionManager,
    opts: SourceOptions,
    claims: Claims,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Connects, retrying with backoff until it works or `cancel` fires (`None` then). The URL is a
/// secret and is never logged.
pub async fn connect(url: &Secret, cancel: &CancellationToken) -> Option<ConnectionManager> {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        let attempt = async {
            let client = redis::Client::open(url.expose())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(3))
                .set_response_timeout(BLOCK + Duration::from_secs(4))
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(client, config).await
        };
        match attempt.await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Cannot connect to Redis; retrying.");
                if sleep_or_cancel(wait, cancel).await {
                    return None;
                }
            }
        }
    }
}

/// Sleeps `d`; true when cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

impl RedisSource {
    pub fn new(conn: ConnectionManager, opts: SourceOptions) -> RedisSource {
        let claims = Claims::new(
            conn.clone(),
            opts.names.clone(),
            &opts.consumer,
            opts.lease_ttl,
        );
        RedisSource {
            reader: conn.clone(),
            conn,
            opts,
            claims,
        }
    }

    /// Blocking reads go over `reader`, everything else over the shared connection.
    pub fn with_reader(mut self, reader: ConnectionManager) -> RedisSource {
        self.reader = reader;
        self
    }

    pub fn options(&self) -> &SourceOptions {
        &self.opts
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `FUNCTION LOAD REPLACE` of the append functions compiled into this executor
    /// ([`vigil_protocol::redis_functions`]): at start-up and after every reconnect (a Redis
    /// restarted without persistence has lost them), replacing an older version on upgrade.
    pub async fn load_functions(&self) -> Result<(), SourceError> {
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(redis_functions::library())
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// `XGROUP CREATE <requests> executors 0 MKSTREAM`; an existing group is fine.
    pub async fn ensure_group(&self) -> Result<(), SourceError> {
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.opts.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_group(
        &self,
        id: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, SourceError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(EXECUTOR_GROUP)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(count.max(1));
        let mut conn = self.conn();
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
            conn = self.reader.clone();
        }
        cmd.arg("STREAMS").arg(self.opts.names.requests()).arg(id);
        let reply: Value = cmd.query_async(&mut conn).await?;
        Ok(stream_entry::parse_read_reply(reply)?)
    }

    /// Up to `count` (at most [`READ_BATCH`]) new entries, blocking up to [`BLOCK`].
    pub async fn read_new(&self, count: usize) -> Result<Vec<Entry>, SourceError> {
        self.read_group(">", count.min(READ_BATCH), Some(BLOCK))
            .await
    }

    /// This consumer's own pending entries from `after` on (`0` for all of them).
    pub async fn read_own_pending(&self, after: &str) -> Result<Vec<Entry>, SourceError> {
        self.read_group(after, READ_COUNT, None).await
    }

    /// Claims entries idle longer than `reclaim_idle` whose lease is gone, at most
    /// [`READ_COUNT`] per call, scanning from `start` (`-` at first; `-` again when done).
    pub async fn reclaim(
        &self,
        start: &str,
        ours: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(String, Vec<Entry>), SourceError> {
        let (next, claimed) = self
            .claims
            .reclaim(start, self.opts.reclaim_idle, READ_COUNT, ours)
            .await?;
        Ok((next, stream_entry::parse_entries(claimed)?))
    }

    /// Removes an entry whose id was chosen far in the future and sets the stream's and the
    /// group's last ids back to the newest remaining entry, so `XADD *` works again.
    pub async fn heal_future_id(&self, id: &str) -> Result<(), SourceError> {
        let key = self.opts.names.requests();
        let _: i64 = redis::cmd("XDEL")
            .arg(&key)
            .arg(id)
            .query_async(&mut self.conn())
            .await?;
        let top: Value = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        let top = stream_entry::parse_entries(top)?
            .into_iter()
            .next()
            .map_or_else(|| "0-1".to_string(), |e| e.id);
        if stream_entry::id_is_from_the_future(&top, Timestamp::now()) {
            // Another future entry is newer still; it is healed when it is read.
            return Ok(());
        }
        let _: () = redis::cmd("XSETID")
            .arg(&key)
            .arg(&top)
            .query_async(&mut self.conn())
            .await?;
        let _: () = redis::cmd("XGROUP")
            .arg("SETID")
            .arg(&key)
            .arg(EXECUTOR_GROUP)
            .arg(&top)
            .query_async(&mut self.conn())
            .await?;
        tracing::warn!(
            stream.entry_id = id,
            stream.last_id = %top,
            "Deleted a requests-stream entry with a far-future id and set the stream back."
        );
        Ok(())
    }

    /// How often the entry was delivered (`XPENDING`); 0 when it is not pending.
    pub async fn delivery_count(&self, id: &str) -> Result<u64, SourceError> {
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(self.opts.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        Ok(reply.ids.first().map_or(0, |p| p.times_delivered as u64))
    }

    /// `XACK` of many entries in one call.
    pub async fn ack_many(&self, ids: &[&str]) -> Result<(), SourceError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = redis::cmd("XACK")
            .arg(self.opts.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg(ids)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    pub async fn ack(&self, id: &str) -> Result<(), SourceError> {
        self.ack_many(&[id]).await
    }

    /// Handles one entry: dead-letters it when delivered too often, else runs the pipeline;
    /// acknowledges it once audited.
    pub async fn process(
        &self,
        pipeline: &Pipeline,
        entry: &Entry,
        redelivered: bool,
    ) -> Result<(), SourceError> {
        if entry.deleted {
            // Trimmed or deleted from the stream while pending: nothing left to do.
            return self.ack(&entry.id).await;
        }
        // Fail closed before taking anything: the entry stays pending for later.
        pipeline
            .check_audit()
            .await
            .map_err(PipelineError::CannotAudit)?;
        if !self.claims.acquire(&entry.id).await? {
            tracing::debug!(
                stream.entry_id = %entry.id,
                "Another executor holds the lease on this request; leaving it to them."
            );
            return Ok(());
        }
        let result = self.process_leased(pipeline, entry, redelivered).await;
        if let Err(e) = self.claims.release(&entry.id).await {
            tracing::warn!(stream.entry_id = %entry.id, error = %e, "Cannot release a lease; it lapses on its own.");
        }
        result
    }

    async fn process_leased(
        &self,
        pipeline: &Pipeline,
        entry: &Entry,
        redelivered: bool,
    ) -> Result<(), SourceError> {
        if !self.claims.still_pending(&entry.id).await? {
            tracing::debug!(stream.entry_id = %entry.id, "Request already finished by another executor.");
            return Ok(());
        }
        let now = Timestamp::now();
        // A malformed entry is audited and acknowledged, never copied anywhere (its content
        // is hostile), however often it was delivered.
        let envelope = match entry.check(now) {
            Ok(envelope) => envelope,
            Err(why) => {
                pipeline
                    .malformed(&entry.id, entry.size, why.as_str(), now)
                    .await?;
                self.ack(&entry.id).await?;
                if why == Malformed::FutureId {
                    return self.heal_future_id(&entry.id).await;
                }
                return Ok(());
            }
        };
        if redelivered {
            let deliveries = self.delivery_count(&entry.id).await?;
            if deliveries > self.opts.max_deliveries {
                self.claims
                    .dead_letter_once(&entry.id, &entry.fields, deliveries)
                    .await?;
                pipeline
                    .dead_letter(&entry.id, deliveries, Timestamp::now())
                    .await?;
                return self.ack(&entry.id).await;
            }
        }
        let handled = tokio::select! {
            r = pipeline.handle(&entry.id, Some(envelope), now) => r,
            () = self.claims.keep(&entry.id) => {
                return Err(SourceError::Reply("the lease keeper stopped".into()));
            }
        };
        handled?;
        self.ack(&entry.id).await
    }
}

impl Broker for RedisSource {
    fn reserve_nonce<'a>(
        &'a self,
        nonce: &'a str,
        entry_id: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, BrokerError>> {
        Box::pin(async move {
            let key = self.opts.names.nonce(nonce);
            // Twice: the holder may expire between a failed SET and the GET.
            for _ in 0..2 {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(entry_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(broker_err)?;
                if set.is_some() {
                    return Ok(Reservation::Reserved);
                }
                let holder: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(broker_err)?;
                if let Some(holder) = holder {
                    return Ok(Reservation::HeldBy(holder));
                }
            }
            Err(BrokerError(format!("cannot reserve nonce key {key}")))
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<bool, BrokerError>> {
        Box::pin(async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg(self.opts.names.pause())
                .query_async(&mut self.conn())
                .await
                .map_err(broker_err)?;
            Ok(n > 0)
        })
    }

    fn publish_audit<'a>(&'a self, line: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let _: String = redis::cmd("FCALL")
                .arg(AUDIT_APPEND)
                .arg(1)
                .arg(self.opts.names.audit())
                .arg(RECORD_FIELD)
                .arg(line)
                .arg(AUDIT_EXECUTOR_FIELD)
                .arg(&self.opts.consumer)
                .query_async(&mut self.conn())
                .await
                .map_err(broker_err)?;
            Ok(())
        })
    }

    fn publish_audit_batch<'a>(
        &'a self,
        lines: &'a [String],
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            if lines.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for line in lines {
                pipe.cmd("FCALL")
                    .arg(AUDIT_APPEND)
                    .arg(1)
                    .arg(self.opts.names.audit())
                    .arg(RECORD_FIELD)
                    .arg(line)
                    .arg(AUDIT_EXECUTOR_FIELD)
                    .arg(&self.opts.consumer)
                    .ignore();
            }
            let () = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(broker_err)?;
            Ok(())
        })
    }

    fn audit_stream_head(&self) -> BoxFuture<'_, Result<Option<(u64, String)>, BrokerError>> {
        Box::pin(async move {
            // Newest first, a page at a time, until a record of this executor (entries without
            // an executor field predate it and come from the only executor there was).
            let mut end = "+".to_string();
            for _ in 0..(AUDIT_STREAM_MAXLEN / 500 + 10) {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(self.opts.names.audit())
                    .arg(&end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(broker_err)?;
                for e in &reply.ids {
                    let ours = e
                        .get::<String>(AUDIT_EXECUTOR_FIELD)
                        .is_none_or(|c| c == self.opts.consumer);
                    if !ours {
                        continue;
                    }
                    let head = e
                        .get::<String>("record")
                        .and_then(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
                        .and_then(|v| {
                            Some((
                                v.get("seq")?.as_u64()?,
                                v.get("hash")?.as_str()?.to_string(),
                            ))
                        });
                    if head.is_some() {
                        return Ok(head);
                    }
                }
                match reply.ids.last() {
                    Some(last) if reply.ids.len() >= 500 => end = format!("({}", last.id),
                    _ => return Ok(None),
                }
            }
            Ok(None)
        })
    }
}

fn broker_err(e: redis::RedisError) -> BrokerError {
    BrokerError(e.to_string())
}
