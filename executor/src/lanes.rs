//! Requests for different containers in parallel, requests for one container one after the other.
//!
//! [`Lanes`] runs jobs keyed by their target: jobs with the same key run strictly in the order
//! they were submitted, each only after the one before it has finished; jobs with different keys
//! run side by side, at most `concurrency` at a time (a semaphore). A lane is a task that exists
//! only while its key has work; [`Lanes::close`] lets running jobs finish and waits for them.
//!
//! [`TargetLocks`] is the second half of "one container at a time" inside the pipeline: a lock
//! per resolved container id, held from the inspect to the outcome record, so that even two
//! requests that name one container differently (a short id, a renamed container) never act on
//! it at once.

use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, OwnedMutexGuard, Semaphore};
use tokio_util::task::TaskTracker;

/// Default number of requests acted on at once (`EXECUTOR_CONCURRENCY`).
pub const DEFAULT_CONCURRENCY: usize = 8;

type Job = BoxFuture<'static, ()>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Inner {
    queues: Mutex<HashMap<String, VecDeque<Job>>>,
    slots: Arc<Semaphore>,
    /// Jobs submitted and not finished (queued or running).
    pending: AtomicUsize,
    finished: Notify,
}

/// Keyed, bounded job runner.
#[derive(Clone)]
pub struct Lanes {
    inner: Arc<Inner>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// At most `concurrency` (at least 1) jobs run at once.
    pub fn new(concurrency: usize) -> Lanes {
        Lanes {
            inner: Arc::new(Inner {
                queues: Mutex::new(HashMap::new()),
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                pending: AtomicUsize::new(0),
                finished: Notify::new(),
            }),
            tasks: TaskTracker::new(),
        }
    }

    /// Jobs queued or running.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Runs `job` after every job submitted earlier with the same `key`.
    pub fn submit(&self, key: String, job: Job) {
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        let mut queues = lock(&self.inner.queues);
        if let Some(queue) = queues.get_mut(&key) {
            queue.push_back(job);
            return;
        }
        queues.insert(key.clone(), VecDeque::new());
        drop(queues);
        let inner = self.inner.clone();
        self.tasks.spawn(run_lane(inner, key, job));
    }

    /// Waits until some job finishes (or returns at once when none is pending).
    pub async fn some_finished(&self) {
        let notified = self.inner.finished.notified();
        if self.pending() == 0 {
            return;
        }
        notified.await;
    }

    /// Waits for every submitted job to finish.
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn run_lane(inner: Arc<Inner>, key: String, first: Job) {
    let mut job = first;
    loop {
        // The semaphore is never closed, so acquiring only fails if it were; run anyway then.
        let permit = inner.slots.clone().acquire_owned().await.ok();
        job.await;
        drop(permit);
        inner.pending.fetch_sub(1, Ordering::AcqRel);
        inner.finished.notify_waiters();
        let mut queues = lock(&inner.queues);
        match queues.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(next) => job = next,
            None => {
                queues.remove(&key);
                return;
            }
        }
    }
}

/// One async lock per container id, dropped from the map when nobody holds or waits for it.
#[derive(Debug, Default)]
pub struct TargetLocks {
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds the lock on one container until dropped.
pub struct TargetGuard {
    key: String,
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = lock(&self.map);
        // Only the map's own reference left: nobody holds or waits for this lock.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

impl TargetLocks {
    /// Waits for the lock on `key`; the second value is false when someone else held it.
    pub async fn lock(&self, key: &str) -> (TargetGuard, bool) {
        let mutex = lock(&self.map).entry(key.to_string()).or_default().clone();
        let (guard, free) = match mutex.clone().try_lock_owned() {
            Ok(g) => (g, true),
            Err(_) => (mutex.lock_owned().await, false),
        };
        (
            TargetGuard {
                key: key.to_string(),
                map: self.map.clone(),
                guard: Some(guard),
            },
            free,
        )
    }

    /// Containers locked or waited for now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_runs_in_order_and_keys_run_side_by_side() {
        let lanes = Lanes::new(3);
        let log = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        for key in ["a", "b", "c", "d"] {
            for i in 0..3 {
                let (log, running, most) = (log.clone(), running.clone(), most.clone());
                let name = format!("{key}{i}");
                lanes.submit(
                    key.to_string(),
                    Box::pin(async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        lock(&log).push(format!("start {name}"));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        lock(&log).push(format!("end {name}"));
                        running.fetch_sub(1, Ordering::SeqCst);
                    }),
                );
            }
        }
        assert_eq!(lanes.pending(), 12);
        lanes.close().await;
        assert_eq!(lanes.pending(), 0);
        let log = lock(&log).clone();
        for key in ["a", "b", "c", "d"] {
            let mine: Vec<&String> = log
                .iter()
                .filter(|l| l.split(' ').nth(1).is_some_and(|n| n.starts_with(key)))
                .collect();
            let want: Vec<String> = (0..3)
                .flat_map(|i| [format!("start {key}{i}"), format!("end {key}{i}")])
                .collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{log:?}");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most > 1, "different keys ran side by side");
        assert!(most <= 3, "never more than the bound: {most}");
    }

    #[tokio::test]
    async fn target_locks_serialise_and_are_forgotten() {
        let locks = TargetLocks::default();
        let (first, free) = locks.lock("x").await;
        assert!(free);
        let second = tokio::time::timeout(Duration::from_millis(50), locks.lock("x")).await;
        assert!(second.is_err(), "held");
        let (other, free) = locks.lock("y").await;
        assert!(free);
        drop(first);
        let (again, _) = locks.lock("x").await;
        drop((again, other));
        assert!(locks.is_empty());
    }
}
