//! The event bus (DESIGN.md §2): every state change and progress update is written to the
//! store first, then published here to this process's subscribers, in the order of its
//! global sequence number. A process learns what another process did by cursor ("events
//! after N", a [`Follower`]), never by re-reading a run's history; a subscriber that falls
//! behind re-reads from the store, so no publisher ever waits for a slow one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, broadcast};

use cosmos_core::{RunEvent, RunId, RunStatus};
use cosmos_store::{Store, StoreResult};

use crate::error::EngineResult;

/// How many events a subscriber may fall behind before it re-reads from the store.
const CAPACITY: usize = 1024;
/// How often a follower asks the store for what other processes wrote.
pub const CROSS_PROCESS_POLL: Duration = Duration::from_millis(100);
/// Events read from the store at a time.
const PAGE: u32 = 500;

/// Publishes stored events in sequence order to this process's subscribers.
#[derive(Debug)]
pub struct EventBus {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<RunEvent>,
    /// The last sequence number published; `None` until the bus first writes.
    published: Mutex<Option<i64>>,
    /// Rung when a run is queued or frees its slots: local workers look at once.
    work: Notify,
    /// Told of every event published (a run's end reaches the configured hooks).
    hooks: std::sync::OnceLock<Arc<crate::hooks::HookRunner>>,
}

impl EventBus {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            tx: broadcast::channel(CAPACITY).0,
            published: Mutex::new(None),
            work: Notify::new(),
            hooks: std::sync::OnceLock::new(),
        }
    }

    /// Performs a store write that records events, then publishes what it (and anyone else
    /// meanwhile) recorded.
    pub(crate) async fn record<T>(
        &self,
        write: impl Future<Output = StoreResult<T>>,
    ) -> EngineResult<T> {
        self.prime().await?;
        let result = write.await;
        self.publish().await?;
        Ok(result?)
    }

    /// Performs a store write that records one event and publishes that event as written
    /// (no read-back). Writes through the bus are serialised, so this process's events are
    /// published in sequence order; other processes' events are for followers to read.
    pub(crate) async fn record_event(
        &self,
        write: impl Future<Output = StoreResult<RunEvent>>,
    ) -> EngineResult<RunEvent> {
        let mut published = self.published.lock().await;
        let event = write.await?;
        self.send(event.clone());
        *published = Some(published.map_or(event.id, |p| p.max(event.id)));
        // A run's end may settle others in the same write (its upscale runs released or
        // cancelled): their events follow its own.
        if event.stage.is_terminal() {
            drop(published);
            self.publish().await?;
        }
        Ok(event)
    }

    pub(crate) fn set_hooks(&self, runner: Arc<crate::hooks::HookRunner>) {
        let _ = self.hooks.set(runner);
    }

    fn send(&self, e: RunEvent) {
        if let Some(hooks) = self.hooks.get() {
            hooks.on_event(&e);
        }
        // Work may be claimable: a run was queued, ended, or began collecting (a run alone
        // frees its GPU slot then, its model having exited).
        if matches!(
            e.stage,
            RunStatus::Queued
                | RunStatus::Collecting
                | RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Cancelled
        ) {
            self.work.notify_waiters();
        }
        // No subscriber is fine: the store has it.
        let _ = self.tx.send(e);
    }

    /// Learns where the sequence stands before this process writes its first event, so only
    /// new events are published.
    async fn prime(&self) -> EngineResult<()> {
        let mut published = self.published.lock().await;
        if published.is_none() {
            *published = Some(self.store.last_event_id().await?);
        }
        Ok(())
    }

    /// Publishes every stored event after the last one published, in order (the bus is
    /// primed before the write whose events it publishes).
    async fn publish(&self) -> EngineResult<()> {
        let mut published = self.published.lock().await;
        let mut cursor = match *published {
            Some(c) => c,
            None => self.store.last_event_id().await?,
        };
        loop {
            let events = self.store.events_after(cursor, None, PAGE).await?;
            let Some(last) = events.last() else { break };
            cursor = last.id;
            // A short page is the end: no second query to learn it.
            let more = events.len() == PAGE as usize;
            for e in events {
                self.send(e);
            }
            if !more {
                break;
            }
        }
        *published = Some(cursor);
        Ok(())
    }

    /// A subscription to this process's events from now on.
    pub async fn subscribe(&self) -> EngineResult<Subscription> {
        self.prime().await?;
        // Subscribed while the cursor is held: nothing published falls between the two.
        let published = self.published.lock().await;
        Ok(Subscription {
            rx: self.tx.subscribe(),
            store: self.store.clone(),
            cursor: *published,
            backlog: std::collections::VecDeque::new(),
        })
    }

    /// Waits until a local event says there may be new work.
    pub(crate) async fn work_arrived(&self) {
        self.work.notified().await;
    }

    /// A follower from sequence number `after` on, of all runs or of one: sees what any
    /// process writes, within [`CROSS_PROCESS_POLL`].
    pub fn follow(&self, after: i64, run: Option<RunId>) -> Follower {
        Follower {
            store: self.store.clone(),
            wake: self.tx.subscribe(),
            cursor: after,
            run,
        }
    }

    /// Up to `limit` stored events after sequence number `after`, of every run, without
    /// waiting (a client catching up reads page by page).
    pub async fn page(&self, after: i64, limit: u32) -> EngineResult<Vec<RunEvent>> {
        Ok(self.store.events_after(after, None, limit).await?)
    }

    /// The newest sequence number stored.
    pub async fn head(&self) -> EngineResult<i64> {
        Ok(self.store.last_event_id().await?)
    }
}

/// Events published in this process, in order, with nothing lost: after a lag it reads the
/// missed ones from the store.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<RunEvent>,
    store: Arc<dyn Store>,
    cursor: Option<i64>,
    backlog: std::collections::VecDeque<RunEvent>,
}

impl Subscription {
    /// The next event; `None` when the bus is gone.
    pub async fn next(&mut self) -> EngineResult<Option<RunEvent>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.cursor = Some(e.id);
                return Ok(Some(e));
            }
            match self.rx.recv().await {
                Ok(e) if self.cursor.is_some_and(|c| e.id <= c) => continue,
                Ok(e) => {
                    self.cursor = Some(e.id);
                    return Ok(Some(e));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind: what was dropped is in the store.
                    let after = self.cursor.unwrap_or(0);
                    self.backlog
                        .extend(self.store.events_after(after, None, PAGE).await?);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}

/// Follows the store by cursor: what this process publishes wakes it at once; what other
/// processes write is seen within [`CROSS_PROCESS_POLL`].
#[derive(Debug)]
pub struct Follower {
    store: Arc<dyn Store>,
    wake: broadcast::Receiver<RunEvent>,
    cursor: i64,
    run: Option<RunId>,
}

impl Follower {
    /// The events after the cursor, waiting for at least one.
    pub async fn next_batch(&mut self) -> EngineResult<Vec<RunEvent>> {
        loop {
            let events = self
                .store
                .events_after(self.cursor, self.run.as_ref(), PAGE)
                .await?;
            if let Some(last) = events.last() {
                self.cursor = last.id;
                return Ok(events);
            }
            tokio::select! {
                _ = self.wake.recv() => {}
                _ = tokio::time::sleep(CROSS_PROCESS_POLL) => {}
            }
        }
    }

    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}

impl Follower {
    /// Whatever is stored after the cursor now, without waiting.
    pub async fn drain(mut self) -> EngineResult<Vec<RunEvent>> {
        let mut out = Vec::new();
        loop {
            let events = self
                .store
                .events_after(self.cursor, self.run.as_ref(), PAGE)
                .await?;
            let Some(last) = events.last() else {
                return Ok(out);
            };
            self.cursor = last.id;
            out.extend(events);
        }
    }
}
