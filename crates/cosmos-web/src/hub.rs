//! One follower of the engine's event bus for the whole server, fanned out to every live
//! client through a bounded broadcast: publishing never waits for a client, and a client
//! that falls more than its buffer behind learns it lagged (and is told to resync) instead
//! of slowing anyone down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use cosmos_core::RunEvent;
use cosmos_engine::Services;

use crate::cache::Cache;
use crate::observe::Observed;

#[derive(Debug)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<RunEvent>>,
    /// Durations and totals measured from the stream, for `/metrics`.
    pub observed: Mutex<Observed>,
}

impl Hub {
    /// Starts following from the newest event stored now.
    pub(crate) async fn start(
        services: Services,
        buffer: usize,
        cache: Arc<Cache>,
        mut stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(buffer.max(1));
        let hub = Arc::new(Self {
            tx: tx.clone(),
            observed: Mutex::new(Observed::new()),
        });
        let head = loop {
            match services.events().head().await {
                Ok(h) => break h,
                Err(e) => {
                    tracing::warn!("events: cannot read where the sequence stands: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let mut follower = services.events().follow(head, None);
        let me = hub.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = crate::stopped(&mut stop) => break,
                    batch = follower.next_batch() => match batch {
                        Ok(events) => {
                            if let Some(last) = events.last() {
                                // Cached answers are stale from here.
                                cache.events.store(last.id, std::sync::atomic::Ordering::Release);
                            }
                            for e in events {
                                let ended = me.observed.lock().is_ok_and(|mut o| o.event(&e));
                                let id = e.run_id.clone();
                                // No client listening is fine: the store has it.
                                let _ = tx.send(Arc::new(e));
                                if ended {
                                    // Read off the fan-out path: later events go out at once.
                                    let (services, me) = (services.clone(), me.clone());
                                    tokio::spawn(async move {
                                        if let Ok(run) = services.runs().get(&id).await
                                            && let Ok(mut o) = me.observed.lock()
                                        {
                                            o.ended(&run);
                                        }
                                    });
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!("events: reading the store failed: {e}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    },
                }
            }
        });
        hub
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<RunEvent>> {
        self.tx.subscribe()
    }

    /// Clients listening now.
    pub(crate) fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}
