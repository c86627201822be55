//! A micro-cache for the reads dashboards and scripts poll (a page of runs, a search): the
//! serialised answer is kept until anything changes — an event on the bus (any process's
//! state change) or a request to this server that changes state — and at most a second
//! (for what changes without an event, a rating set from the CLI).
//!
//! When an answer is out of date, one task makes the next in the background while every
//! request, the one that noticed included, gets the answer before it: no request waits on
//! the database because another process changed something, and a change never sends a
//! hundred clients to the database at once. Only two kinds of request wait for a new
//! answer: the first for a key, and any after a change made through this server (a client
//! must see its own write in its next read). An answer older than `STALE_LIMIT` is not
//! served either, so a refresh that hangs or fails is seen, not hidden.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// How long an answer is kept when nothing says it changed.
const TTL: Duration = Duration::from_secs(1);
/// The oldest answer served while a newer one is made.
const STALE_LIMIT: Duration = Duration::from_secs(10);
/// A refresh taking longer than this is logged (it is what requests would have waited).
const SLOW_REFRESH: Duration = Duration::from_millis(500);
/// Distinct requests kept; past this the cache starts over.
const MAX_KEYS: usize = 1024;

/// Where the data stands: the newest event seen and this server's state-changing requests.
type Generation = (i64, u64);

#[derive(Debug)]
struct Entry {
    generation: Generation,
    at: Instant,
    body: Bytes,
}

/// One request's answers: the latest, and a lock held by whoever is making the next.
#[derive(Debug, Default)]
struct SlotInner {
    latest: Mutex<Option<Entry>>,
    computing: Arc<tokio::sync::Mutex<()>>,
}

type Slot = Arc<SlotInner>;

impl SlotInner {
    /// The latest answer, when `usable` says it may be served.
    fn latest_if(&self, usable: impl Fn(&Entry) -> bool) -> Option<Bytes> {
        let latest = self.latest.lock().ok()?;
        latest
            .as_ref()
            .filter(|e| usable(e))
            .map(|e| e.body.clone())
    }

    /// Keeps `made` (an answer from data at `generation`), or forgets the latest when
    /// making it failed, so the next request makes it again and sees the error.
    fn keep<E>(&self, generation: Generation, made: &Result<Bytes, E>) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = made.as_ref().ok().map(|body| Entry {
                generation,
                at: Instant::now(),
                body: body.clone(),
            });
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    slots: Mutex<HashMap<String, Slot>>,
    /// The newest event sequence number the hub has seen.
    pub events: AtomicI64,
    /// State-changing requests this server has answered.
    pub writes: AtomicU64,
}

impl Cache {
    fn generation(&self) -> Generation {
        (
            self.events.load(Ordering::Acquire),
            self.writes.load(Ordering::Acquire),
        )
    }

    fn slot(&self, key: &str) -> Slot {
        let Ok(mut slots) = self.slots.lock() else {
            return Slot::default();
        };
        if slots.len() >= MAX_KEYS && !slots.contains_key(key) {
            slots.clear();
        }
        slots.entry(key.to_owned()).or_default().clone()
    }

    /// The answer for `key` as the data stands now: kept, or made by `compute` (errors are
    /// not kept). `compute` may run on after this request is answered.
    pub(crate) async fn get<E: Send + 'static>(
        &self,
        key: &str,
        compute: impl Future<Output = Result<Bytes, E>> + Send + 'static,
    ) -> Result<Bytes, E> {
        let slot = self.slot(key);
        let now = self.generation();
        if let Some(body) = slot.latest_if(|e| e.generation == now && e.at.elapsed() < TTL) {
            return Ok(body);
        }
        // Out of date only by what others changed: answer with it, and refresh it unless a
        // refresh is already under way.
        if let Some(body) =
            slot.latest_if(|e| e.generation.1 == now.1 && e.at.elapsed() < STALE_LIMIT)
        {
            if let Ok(guard) = slot.computing.clone().try_lock_owned() {
                let (slot, generation) = (slot.clone(), self.generation());
                tokio::spawn(async move {
                    let began = Instant::now();
                    let made = compute.await;
                    slot.keep(generation, &made);
                    drop(guard);
                    let took = began.elapsed();
                    if took > SLOW_REFRESH {
                        tracing::warn!("a cached answer took {took:?} to make afresh");
                    }
                });
            }
            return Ok(body);
        }
        let _computing = slot.computing.lock().await;
        // An answer made while this request waited, from data at least as new as when it
        // asked, is its answer.
        if let Some(body) = slot.latest_if(|e| {
            e.generation.0 >= now.0 && e.generation.1 >= now.1 && e.at.elapsed() < TTL
        }) {
            return Ok(body);
        }
        let generation = self.generation();
        let made = compute.await;
        slot.keep(generation, &made);
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer that counts how often it was made.
    fn counting(calls: &Arc<AtomicU64>) -> impl Future<Output = Result<Bytes, ()>> + use<> {
        let calls = calls.clone();
        async move {
            Ok(Bytes::from(
                calls.fetch_add(1, Ordering::SeqCst).to_string(),
            ))
        }
    }

    async fn fixed(v: &'static str) -> Result<Bytes, ()> {
        Ok(Bytes::from(v))
    }

    /// Lets a refresh under way finish.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn answers_are_kept_until_the_data_changes_then_made_afresh_behind_the_scenes() {
        let cache = Cache::default();
        let calls = Arc::new(AtomicU64::new(0));
        assert_eq!(cache.get("a", counting(&calls)).await, Ok(Bytes::from("0")));
        assert_eq!(cache.get("a", counting(&calls)).await, Ok(Bytes::from("0")));
        assert_eq!(cache.get("b", counting(&calls)).await, Ok(Bytes::from("1")));
        cache.events.store(7, Ordering::Release);
        assert_eq!(
            cache.get("a", counting(&calls)).await,
            Ok(Bytes::from("0")),
            "another process's change: the answer before, while a new one is made"
        );
        settle().await;
        assert_eq!(cache.get("a", counting(&calls)).await, Ok(Bytes::from("2")));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refresh_that_fails_is_not_kept_and_the_next_request_sees_the_error() {
        let cache = Cache::default();
        cache.get("a", fixed("old")).await.ok();
        cache.events.store(1, Ordering::Release);
        assert_eq!(
            cache.get("a", async { Err::<Bytes, ()>(()) }).await,
            Ok(Bytes::from("old"))
        );
        settle().await;
        assert_eq!(
            cache.get("a", async { Err::<Bytes, ()>(()) }).await,
            Err(())
        );
        assert_eq!(cache.get("a", fixed("new")).await, Ok(Bytes::from("new")));
    }

    #[tokio::test]
    async fn no_request_waits_for_a_slow_refresh_and_only_one_runs() {
        let cache = Cache::default();
        cache.get("a", fixed("old")).await.ok();
        cache.events.store(1, Ordering::Release);
        let calls = Arc::new(AtomicU64::new(0));
        let slow = |calls: &Arc<AtomicU64>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, ()>(Bytes::from("new"))
            }
        };
        let started = Instant::now();
        for _ in 0..20 {
            assert_eq!(cache.get("a", slow(&calls)).await, Ok(Bytes::from("old")));
            // The refresh under way gets its turns meanwhile.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "without waiting: {:?}",
            started.elapsed()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh at a time");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.get("a", slow(&calls)).await, Ok(Bytes::from("new")));
    }

    #[tokio::test]
    async fn after_a_write_here_a_read_waits_for_an_answer_that_includes_it() {
        let cache = Cache::default();
        cache.get("a", fixed("old")).await.ok();
        cache.events.store(1, Ordering::Release);
        // A refresh from before the write is under way when the write lands.
        let before = cache
            .get("a", async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, ()>(Bytes::from("before the write"))
            })
            .await;
        assert_eq!(before, Ok(Bytes::from("old")));
        cache.writes.fetch_add(1, Ordering::AcqRel);
        assert_eq!(
            cache.get("a", fixed("after the write")).await,
            Ok(Bytes::from("after the write")),
            "neither the answer before nor the refresh under way"
        );
    }

    #[tokio::test]
    async fn an_answer_past_the_stale_limit_is_not_served() {
        let cache = Cache::default();
        cache.get("a", fixed("old")).await.ok();
        let slot = cache.slot("a");
        if let Ok(mut latest) = slot.latest.lock()
            && let Some(e) = latest.as_mut()
        {
            e.at = Instant::now() - STALE_LIMIT;
        }
        assert_eq!(cache.get("a", fixed("new")).await, Ok(Bytes::from("new")));
    }
}
