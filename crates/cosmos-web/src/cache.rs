//! A micro-cache for the reads dashboards and scripts poll (a page of runs, a search): the
//! serialised answer is kept until anything changes — an event on the bus (any process's
//! state change) or a request to this server that changes state — and at most a second
//! (for what changes without an event, a rating set from the CLI). One request computes an
//! answer while others asking the same wait for it, so a change never sends a hundred
//! clients to the database at once.

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

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

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
        let mut entry = slot.lock().await;
        // Read after the wait: an answer made meanwhile for the same data is good.
        let now = self.generation();
        if let Some(e) = entry.as_ref()
            && e.generation == now
            && e.at.elapsed() < TTL
        {
            return Ok(e.body.clone());
        }
        let body = compute.await?;
        *entry = Some(Entry {
            generation: now,
            at: Instant::now(),
            body: body.clone(),
        });
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
}
