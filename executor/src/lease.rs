//! One execution per request across executors, and one dead-letter copy per entry.
//!
//! # Leases
//! Before an executor handles a requests-stream entry it takes `<prefix>lease:<entry id>` with
//! `SET NX PX <lease ttl>`, holding its consumer name and a per-process instance id. While the
//! request runs (a restart may wait out a long stop grace) the lease is renewed every third of
//! its lifetime. It is released after the entry is acknowledged.
//!
//! Reclaiming never takes an entry that is leased: [`Claims::reclaim`] lists idle pending
//! entries (`XPENDING ... IDLE`), skips those whose lease still exists, and `XCLAIM`s the rest.
//! An executor that died mid-request stops renewing, so its entry becomes reclaimable one lease
//! lifetime later; the next executor's fresh-state check then sees the action already happened.
//!
//! # Dead letters
//! The copy to the dead-letter stream (through the dead-letter append function) and a marker `<prefix>deadcopied:<entry id>` are written
//! in one `MULTI`/`EXEC`, and the copy is skipped when the marker exists, so a retry (after a
//! failed audit or acknowledgement) never copies an entry twice.

use redis::Value;
use redis::aio::ConnectionManager;
use std::time::Duration;
use vigil_protocol::names::{EXECUTOR_GROUP, Names};
use vigil_protocol::redis_functions::DEAD_APPEND;

/// How long a dead-letter marker is kept.
const DEAD_MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The lease and claim operations of one executor process.
#[derive(Clone)]
pub struct Claims {
    conn: ConnectionManager,
    names: Names,
    consumer: String,
    /// `<consumer>/<instance>`: a restarted process with the same consumer name is another
    /// holder, so it waits for its predecessor's lease to lapse.
    holder: String,
    ttl: Duration,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Claims {
    pub fn new(conn: ConnectionManager, names: Names, consumer: &str, ttl: Duration) -> Claims {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        Claims {
            conn,
            names,
            consumer: consumer.to_string(),
            holder: format!("{consumer}/{}", &instance[..12]),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Takes the lease on `entry_id`; false when another holder has it.
    pub async fn acquire(&self, entry_id: &str) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.names.lease(entry_id))
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// [`Claims::acquire`] for many entries in one round trip: which leases we now hold.
    pub async fn acquire_many(&self, entry_ids: &[&str]) -> redis::RedisResult<Vec<bool>> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in entry_ids {
            pipe.cmd("SET")
                .arg(self.names.lease(id))
                .arg(&self.holder)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl.as_millis() as u64);
        }
        let set: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
        Ok(set.into_iter().map(|s| s.is_some()).collect())
    }

    /// [`Claims::still_pending`] for many entries in one round trip.
    pub async fn still_pending_many(&self, entry_ids: &[&str]) -> redis::RedisResult<Vec<bool>> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in entry_ids {
            pipe.cmd("XPENDING")
                .arg(self.names.requests())
                .arg(EXECUTOR_GROUP)
                .arg(id)
                .arg(id)
                .arg(1);
        }
        let replies: Vec<redis::streams::StreamPendingCountReply> =
            pipe.query_async(&mut self.conn()).await?;
        Ok(replies.into_iter().map(|r| !r.ids.is_empty()).collect())
    }

    /// [`Claims::release`] for many entries: two round trips whatever their number.
    pub async fn release_many(&self, entry_ids: &[&str]) -> redis::RedisResult<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in entry_ids {
            pipe.cmd("GET").arg(self.names.lease(id));
        }
        let holders: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
        let mut del = redis::cmd("DEL");
        let mut any = false;
        for (id, holder) in entry_ids.iter().zip(holders) {
            if holder.as_deref() == Some(self.holder.as_str()) {
                del.arg(self.names.lease(id));
                any = true;
            }
        }
        if any {
            let _: i64 = del.query_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Extends our lease; false when it is no longer ours.
    pub async fn renew(&self, entry_id: &str) -> redis::RedisResult<bool> {
        let key = self.names.lease(entry_id);
        let holder: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        if holder.as_deref() != Some(self.holder.as_str()) {
            return Ok(false);
        }
        let n: i64 = redis::cmd("PEXPIRE")
            .arg(&key)
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Renews the lease every third of its lifetime, forever (run it beside the work).
    pub async fn keep(&self, entry_id: &str) {
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self.renew(entry_id).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    stream.entry_id = entry_id,
                    "Lost the lease on the request in progress (it lapsed); another executor may take it over."
                ),
                Err(e) => tracing::warn!(
                    stream.entry_id = entry_id,
                    error = %e,
                    "Cannot renew the lease on the request in progress; retrying."
                ),
            }
        }
    }

    /// Drops our lease (only if it is still ours).
    pub async fn release(&self, entry_id: &str) -> redis::RedisResult<()> {
        let key = self.names.lease(entry_id);
        let holder: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        if holder.as_deref() == Some(self.holder.as_str()) {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await?;
        }
        Ok(())
    }

    /// Whether the entry is still pending in the group (not acknowledged by anyone).
    pub async fn still_pending(&self, entry_id: &str) -> redis::RedisResult<bool> {
        let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(self.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg(entry_id)
            .arg(entry_id)
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        Ok(!reply.ids.is_empty())
    }

    /// Claims up to `count` entries idle at least `min_idle` whose lease is gone and that are not
    /// `ours` (queued or running in this process), scanning from
    /// `start` (`-` for the beginning). Returns the next start and the raw `XCLAIM` reply (nil
    /// when nothing was claimable), for [`crate::stream_entry::parse_entries`]: entries are
    /// hostile and never converted by the client library.
    pub async fn reclaim(
        &self,
        start: &str,
        min_idle: Duration,
        count: usize,
        ours: &(dyn Fn(&str) -> bool + Sync),
    ) -> redis::RedisResult<(String, Value)> {
        let idle_ms = min_idle.as_millis() as u64;
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(self.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg("IDLE")
            .arg(idle_ms)
            .arg(start)
            .arg("+")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        let next = match pending.ids.last() {
            Some(last) if pending.ids.len() >= count => format!("({}", last.id),
            _ => "-".to_string(),
        };
        let mut claimable = Vec::new();
        for p in &pending.ids {
            if ours(&p.id) {
                // Already queued or running in this process: claiming it again would only
                // count one more delivery.
                continue;
            }
            let leased: i64 = redis::cmd("EXISTS")
                .arg(self.names.lease(&p.id))
                .query_async(&mut self.conn())
                .await?;
            if leased == 0 {
                claimable.push(p.id.clone());
            }
        }
        if claimable.is_empty() {
            return Ok((next, Value::Nil));
        }
        let reply: Value = redis::cmd("XCLAIM")
            .arg(self.names.requests())
            .arg(EXECUTOR_GROUP)
            .arg(&self.consumer)
            .arg(idle_ms)
            .arg(&claimable)
            .query_async(&mut self.conn())
            .await?;
        Ok((next, reply))
    }

    /// Copies the entry to the dead-letter stream unless a copy was already made. True when
    /// this call made the copy.
    pub async fn dead_letter_once(
        &self,
        entry_id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
        deliveries: u64,
    ) -> redis::RedisResult<bool> {
        let mark = self.names.dead_copied(entry_id);
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&mark)
            .query_async(&mut self.conn())
            .await?;
        if exists > 0 {
            return Ok(false);
        }
        let mut xadd = redis::cmd("FCALL");
        xadd.arg(DEAD_APPEND).arg(1).arg(self.names.dead());
        for (k, v) in fields {
            if !matches!(k.as_slice(), b"reason" | b"entry_id" | b"deliveries") {
                xadd.arg(k.as_slice()).arg(v.as_slice());
            }
        }
        xadd.arg("reason")
            .arg("max_deliveries")
            .arg("entry_id")
            .arg(entry_id)
            .arg("deliveries")
            .arg(deliveries);
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(xadd).ignore();
        pipe.cmd("SET")
            .arg(&mark)
            .arg(1)
            .arg("PX")
            .arg(DEAD_MARK_TTL.as_millis() as u64)
            .ignore();
        let () = pipe.query_async(&mut self.conn()).await?;
        Ok(true)
    }
}
