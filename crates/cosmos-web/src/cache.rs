//! A micro-cache for the reads dashboards and scripts poll (a page of runs, a search): the
//! serialised answer is kept until anything changes — an event on the bus (any process's
//! state change) or a request to this server that changes state — and at most a second
//! (for what changes without an event, a rating set from the CLI). One request computes an
//! answer while others asking the same wait for it, so a change never sends a hundred
//! clients to the database at once; while it computes, the others get the answer before it
//! if only events (other processes' changes) made it stale — never after a change made
//! through this server, which a client must see in its next read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// How long an answer is kept when nothing says it changed.
const TTL: Duration = Duration::from_secs(1);
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
    computing: tokio::sync::Mutex<()>,
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
    /// not kept).
    pub(crate) async fn get<E>(
        &self,
        key: &str,
        compute: impl Future<Output = Result<Bytes, E>>,
    ) -> Result<Bytes, E> {
        let slot = self.slot(key);
        let now = self.generation();
        if let Some(body) = slot.latest_if(|e| e.generation == now && e.at.elapsed() < TTL) {
            return Ok(body);
        }
        let _computing = match slot.computing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone is making a newer answer: the one before it (however old: the
                // newer one is moments away) will do unless this server changed something
                // since.
                if let Some(body) = slot.latest_if(|e| e.generation.1 == now.1) {
                    return Ok(body);
                }
                slot.computing.lock().await
            }
        };
        // An answer made while this request waited, from data at least as new as when it
        // asked, is its answer (waiters never recompute one by one as events go by).
        if let Some(body) = slot.latest_if(|e| {
            e.generation.0 >= now.0 && e.generation.1 >= now.1 && e.at.elapsed() < TTL
        }) {
            return Ok(body);
        }
        let now = self.generation();
        let body = compute.await?;
        if let Ok(mut latest) = slot.latest.lock() {
            *latest = Some(Entry {
                generation: now,
                at: Instant::now(),
                body: body.clone(),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_kept_until_the_data_changes() {
        let cache = Cache::default();
        let calls = AtomicU64::new(0);
        let compute = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Bytes::from(n.to_string()))
        };
        assert_eq!(cache.get("a", compute()).await, Ok(Bytes::from("0")));
        assert_eq!(cache.get("a", compute()).await, Ok(Bytes::from("0")));
        assert_eq!(cache.get("b", compute()).await, Ok(Bytes::from("1")));
        cache.events.store(7, Ordering::Release);
        assert_eq!(cache.get("a", compute()).await, Ok(Bytes::from("2")));
        cache.writes.fetch_add(1, Ordering::AcqRel);
        assert_eq!(
            cache.get("a", async { Err::<Bytes, ()>(()) }).await,
            Err(())
        );
        assert_eq!(
            cache.get("a", compute()).await,
            Ok(Bytes::from("3")),
            "errors are not kept"
        );
    }

    #[tokio::test]
    async fn while_one_computes_others_get_the_answer_before_unless_this_server_wrote() {
        let cache = Cache::default();
        let fixed = |v: &'static str| async move { Ok::<_, ()>(Bytes::from(v)) };
        cache.get("a", fixed("old")).await.ok();
        cache.events.store(1, Ordering::Release);
        let slow = async {
            cache
                .get("a", async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, ()>(Bytes::from("new"))
                })
                .await
        };
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let started = Instant::now();
            let got = cache.get("a", fixed("unused")).await;
            (got, started.elapsed())
        };
        let (first, (second, waited)) = tokio::join!(slow, meanwhile);
        assert_eq!(first, Ok(Bytes::from("new")));
        assert_eq!(second, Ok(Bytes::from("old")), "served the answer before");
        assert!(
            waited < Duration::from_millis(100),
            "without waiting: {waited:?}"
        );

        cache.events.store(2, Ordering::Release);
        cache.writes.fetch_add(1, Ordering::AcqRel);
        let slow = cache.get("a", async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, ()>(Bytes::from("newest"))
        });
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cache.get("a", fixed("unused")).await
        };
        let (_, second) = tokio::join!(slow, meanwhile);
        assert_eq!(
            second,
            Ok(Bytes::from("newest")),
            "after a write here, it waits"
        );
    }
}
