//! A long transfer's progress as run events, a tenth at a time, so `cosmos status`,
//! `cosmos logs -f` and followers in other processes see an upload or a download move, not
//! only its end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cosmos_core::RunStatus;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Drive;
use crate::Services;

/// Transfers smaller than this finish within a second on any link worth using: their end
/// event says enough.
pub(crate) const EVENT_MIN_BYTES: u64 = 16 << 20;

/// Writes a transfer's step events; `report` is called with the bytes done so far.
pub(crate) struct TransferEvents {
    pub report: Arc<dyn Fn(u64) + Send + Sync>,
    /// The writer task and its channel; `None` on the channel ends it.
    writer: Option<(mpsc::UnboundedSender<Option<String>>, JoinHandle<()>)>,
}

impl TransferEvents {
    /// `what` names the transfer in the events (`uploading inputs`); `to_send` is what really
    /// has to move, `total` what `report` counts towards (files already there count as done).
    pub(crate) fn new(
        services: &Services,
        d: &Drive,
        stage: RunStatus,
        what: &'static str,
        to_send: u64,
        total: u64,
    ) -> Self {
        if to_send < EVENT_MIN_BYTES || total == 0 {
            return Self {
                report: Arc::new(|_| {}),
                writer: None,
            };
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
        // The database is written by a task, so the transfer never waits on it.
        let writer = {
            let (me, d) = (services.clone(), d.clone());
            tokio::spawn(async move {
                while let Some(Some(message)) = rx.recv().await {
                    // A lost lease ends the drive itself; a step lost here is only a step.
                    if let Err(e) = me.note(&d, stage, &message).await {
                        tracing::debug!("transfer step not recorded: {e}");
                    }
                }
            })
        };
        let step = Arc::new(AtomicU64::new(0));
        let size = gib_or_mib(to_send);
        let sender = tx.clone();
        let report = Arc::new(move |done: u64| {
            // Tenths of the whole, only ever forwards (a resumed transfer reports again
            // from where it restarts).
            let tenth = (done.min(total) * 10 / total).min(9);
            if step.fetch_max(tenth, Ordering::Relaxed) < tenth {
                let _ = sender.send(Some(format!("{what}: {}% of {size}", tenth * 10)));
            }
        });
        Self {
            report,
            writer: Some((tx, writer)),
        }
    }

    /// Waits until every step reported so far is stored (the caller's own end event comes
    /// after); later reports are dropped.
    pub(crate) async fn finish(self) {
        if let Some((tx, writer)) = self.writer {
            let _ = tx.send(None);
            let _ = writer.await;
        }
    }
}

/// A size for people: GiB from 1 GiB up, else MiB, one decimal.
pub(crate) fn gib_or_mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::gib_or_mib;

    #[test]
    fn sizes_read_in_the_larger_unit_that_fits() {
        for (bytes, want) in [
            (16 << 20, "16.0 MiB"),
            ((1 << 30) - (1 << 20), "1023.0 MiB"),
            (1 << 30, "1.0 GiB"),
            (3 << 29, "1.5 GiB"),
        ] {
            assert_eq!(gib_or_mib(bytes), want, "{bytes}");
        }
    }
}
