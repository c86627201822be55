//! Who drives a run: leases with their owner names, the runs a crash left without a
//! driver, and cancelling.

use std::path::Path;

use cosmos_core::launch::RunLayout;
use cosmos_core::{Run, RunId, RunStatus};

use super::LEASE_TTL_MS;
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

impl Services {
    /// Takes the run's lease, or says who holds it.
    pub(crate) async fn acquire(&self, id: &RunId) -> EngineResult<String> {
        let owner = owner_id();
        let steal = match self.store().lease(id).await? {
            Some(l) if l.owner != owner && owner_is_dead(&l.owner) => Some(l.owner),
            _ => None,
        };
        if self
            .store()
            .take_lease(id, &owner, LEASE_TTL_MS, steal.as_deref())
            .await?
        {
            return Ok(owner);
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

    /// Gives the run's lease up (after a drive, or when the user detaches).
    pub async fn release(&self, id: &RunId) -> EngineResult<()> {
        Ok(self.store().release_lease(id, &owner_id()).await?)
    }

    /// Cancels a run: a queued or staging one ends `cancelled` at once; a started one has
    /// its model killed, and whoever drives it records `cancelled`.
    pub async fn cancel_run(&self, id: &RunId) -> EngineResult<Run> {
        let run = self.store().run(id).await?;
        match run.status {
            s if s.is_terminal() => Ok(run),
            RunStatus::Queued | RunStatus::Staging => {
                self.store()
                    .transition(
                        id,
                        run.status,
                        RunStatus::Cancelled,
                        "cancelled by the user",
                    )
                    .await?;
                Ok(self.store().run(id).await?)
            }
            _ => {
                self.store().request_cancel(id, run.status).await?;
                let target = self.find_target(run.target.as_deref()).await?;
                let c = self.connect(&target)?;
                let layout = RunLayout::new(&target.config.root, id);
                c.runtime.kill(&c.host, id, &layout).await?;
                Ok(self.store().run(id).await?)
            }
        }
    }

    /// Runs that started but have not finished and that no live process drives: the ones a
    /// crash left behind.
    pub async fn orphaned_runs(&self) -> EngineResult<Vec<Run>> {
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
