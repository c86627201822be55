//! Who drives a run: leases with their owner names and fences, the runs a crash left without
//! a driver, and cancelling. A driver holds a [`Fence`]: every write it makes is conditioned
//! on it, and a renewal that fails stops the driver at once.

use std::path::Path;
use std::time::Duration;

use cosmos_core::{Run, RunId, RunStatus};
use cosmos_store::Fence;
use tokio::sync::watch;

use crate::Services;
use crate::error::{EngineError, EngineResult};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// This process's lease owner name: `cosmos:<host>:<pid>`.
pub fn owner_id() -> String {
    format!("cosmos:{}:{}", hostname(), std::process::id())
}

/// True when `owner` names a process on this machine that no longer exists.
pub(crate) fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(2, ':');
    let (Some(pid), Some(rest)) = (parts.next(), parts.next()) else {
        return false;
    };
    let host = rest.strip_prefix("cosmos:").unwrap_or("");
    host == hostname()
        && pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a lease held by this process runs out, by this process's monotonic clock.
#[derive(Debug, Clone)]
pub(crate) struct LeaseClock {
    origin: std::time::Instant,
    until_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Ends the drive: the lease is lost, or no longer surely held.
    lose: std::sync::Arc<watch::Sender<bool>>,
}

impl LeaseClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Whether the lease is surely still ours. When it is not, the drive ends: the next
    /// driver (this process again, if the lease is still free) starts from what is stored.
    pub(crate) fn held(&self) -> bool {
        let held = self.now_ms() < self.until_ms.load(std::sync::atomic::Ordering::SeqCst);
        if !held {
            self.lose.send_replace(true);
        }
        held
    }
}

/// A lease being held: renewed in the background while it lives; `lost` turns true the
/// moment a renewal finds it passed to another driver.
pub(crate) struct HeldLease {
    pub fence: Fence,
    pub lost: watch::Receiver<bool>,
    pub until: LeaseClock,
    _beat: AbortOnDrop,
}

impl Services {
    /// Takes the run's lease, or says who holds it.
    pub(crate) async fn acquire(&self, id: &RunId) -> EngineResult<HeldLease> {
        let owner = owner_id();
        let ttl = self.lease_ttl_ms();
        let steal = match self.store().lease(id).await? {
            Some(l) if l.owner != owner && owner_is_dead(&l.owner) => Some(l.owner),
            _ => None,
        };
        if let Some(fence) = self
            .store()
            .take_lease(id, &owner, ttl, steal.as_deref())
            .await?
        {
            return Ok(self.hold(id, fence));
        }
        let holder = self
            .store()
            .lease(id)
            .await?
            .map(|l| l.owner)
            .unwrap_or_default();
        Err(EngineError::Busy {
            run: id.to_string(),
            owner: holder,
        })
    }

    /// Starts renewing a lease taken with `fence`.
    fn hold(&self, id: &RunId, fence: Fence) -> HeldLease {
        let (tell, lost) = watch::channel(false);
        let ttl = self.lease_ttl_ms();
        let until = LeaseClock {
            origin: std::time::Instant::now(),
            until_ms: std::sync::Arc::new((ttl.max(0) as u64).into()),
            lose: std::sync::Arc::new(tell),
        };
        let beat = {
            let (me, id, fence, until) = (self.clone(), id.clone(), fence.clone(), until.clone());
            let every = Duration::from_millis((ttl / 6).max(50) as u64);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // Counted from before the renewal was asked for.
                    let asked = until.now_ms();
                    match me.store().renew_lease(&id, &fence, ttl).await {
                        Ok(true) => until.until_ms.store(
                            asked + ttl.max(0) as u64,
                            std::sync::atomic::Ordering::SeqCst,
                        ),
                        Ok(false) => {
                            tracing::warn!(run = %id, "lease lost to another driver: stopping");
                            until.lose.send_replace(true);
                            return;
                        }
                        // The database is busy or gone for a moment: the next beat tries
                        // again, well before the lease runs out.
                        Err(e) => tracing::warn!(run = %id, "cannot renew the lease: {e}"),
                    }
                }
            })
        };
        HeldLease {
            fence,
            lost,
            until,
            _beat: AbortOnDrop(beat),
        }
    }

    /// Gives the run's lease up (after a drive, or when the user detaches), if this process
    /// holds it.
    pub(crate) async fn release(&self, id: &RunId) -> EngineResult<()> {
        if let Some(l) = self.store().lease(id).await?
            && l.owner == owner_id()
        {
            let fence = Fence {
                owner: l.owner,
                token: l.token,
            };
            self.store().release_lease(id, &fence).await?;
        }
        Ok(())
    }

    /// Runs that started but have not finished and that no live process drives: the ones a
    /// crash left behind.
    pub(crate) async fn orphaned_runs(&self) -> EngineResult<Vec<Run>> {
        let live = self
            .store()
            .list_runs(&cosmos_store::RunFilter {
                statuses: vec![
                    RunStatus::Staging,
                    RunStatus::Starting,
                    RunStatus::Running,
                    RunStatus::Collecting,
                ],
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let now = cosmos_core::now();
        let mut out = Vec::new();
        for run in live {
            let free = match self.store().lease(&run.id).await? {
                None => true,
                Some(l) => l.expires_at < now || owner_is_dead(&l.owner),
            };
            if free {
                out.push(run);
            }
        }
        Ok(out)
    }
}
