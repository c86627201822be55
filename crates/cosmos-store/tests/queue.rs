//! The queue against real database files: claims from several connections at once, slots,
//! pins, preferences, pauses, retries and workers.

mod common;

use common::input_set;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cosmos_core::{InputSetId, PromptId, RunId, RunKind, RunParams, RunStatus};
use cosmos_store::{
    ClaimRequest, ManualClock, NewPrompt, NewRun, PromptName, SqliteStore, Store, TargetOffer,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A prompt on a fresh input set, and a way to queue runs of it.
struct Queue {
    store: SqliteStore,
    prompt: PromptId,
    set: InputSetId,
    /// The store's clock: tests move time on instead of sleeping.
    clock: ManualClock,
}

impl Queue {
    async fn open(path: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let clock = ManualClock::new();
        let store = SqliteStore::open(path)
            .await?
            .with_clock(std::sync::Arc::new(clock.clone()));
        let set = input_set("scene");
        store.insert_input_set(&set).await?;
        let prompt = store
            .create_prompt(&NewPrompt {
                id: PromptId::new(),
                name: PromptName::Exact("p".into()),
                text: "t".into(),
                negative: None,
                input_set_id: Some(set.id.clone()),
                parent_id: None,
                model: None,
                created_at: cosmos_core::now(),
            })
            .await?;
        Ok(Queue {
            store,
            prompt: prompt.id,
            set: set.id,
            clock,
        })
    }

    async fn add(&self, gpus: u32, priority: i32) -> Result<RunId, Box<dyn std::error::Error>> {
        self.add_on(gpus, priority, None).await
    }

    async fn add_on(
        &self,
        gpus: u32,
        priority: i32,
        pin: Option<&str>,
    ) -> Result<RunId, Box<dyn std::error::Error>> {
        self.add_signed(gpus, priority, pin, None).await
    }

    /// A run with a batch signature (`None`: never batched).
    async fn add_signed(
        &self,
        gpus: u32,
        priority: i32,
        pin: Option<&str>,
        signature: Option<&str>,
    ) -> Result<RunId, Box<dyn std::error::Error>> {
        let params = RunParams {
            gpus,
            ..RunParams::default()
        };
        let run = self
            .store
            .create_run(&NewRun {
                id: RunId::new(),
                prompt_id: self.prompt.clone(),
                kind: RunKind::Transfer,
                name: None,
                prompt_text: "t".into(),
                negative_prompt: None,
                input_set_id: Some(self.set.clone()),
                params,
                priority,
                created_at: cosmos_core::now(),
                note: "queued".into(),
                retry_of: None,
                target_pin: pin.map(str::to_owned),
                sweep_id: None,
                signature: signature.map(str::to_owned),
                upscale_of: None,
            })
            .await?;
        Ok(run.id)
    }
}

fn targets(list: &[(&str, u32)]) -> Vec<TargetOffer> {
    list.iter().map(|(n, g)| TargetOffer::new(*n, *g)).collect()
}

fn req<'a>(owner: &'a str, targets: &'a [TargetOffer]) -> ClaimRequest<'a> {
    ClaimRequest {
        owner,
        ttl_ms: 60_000,
        targets,
        only: None,
        placer: &common::Place,
    }
}

#[test]
fn concurrent_claimers_never_share_a_run_or_a_gpu() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cosmos.db");
    let rt = runtime();
    let total = rt.block_on(async {
        let q = Queue::open(&path).await?;
        for i in 0..90u32 {
            q.add([1, 2, 1, 4][i as usize % 4], 0).await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(90usize)
    })?;
    let slots = targets(&[("a", 4), ("b", 2), ("c", 8)]);
    // Devices held right now, per target: a claim that overlaps one is a double booking.
    let held: Arc<Mutex<BTreeMap<String, BTreeSet<u32>>>> = Arc::default();
    let claimed: Arc<Mutex<Vec<RunId>>> = Arc::default();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (path, slots, held, claimed) =
                (path.clone(), slots.clone(), held.clone(), claimed.clone());
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let store = SqliteStore::open(&path).await.expect("store");
                    let owner = format!("worker-{w}");
                    let mut idle = 0;
                    while idle < 50 {
                        let Some(c) = store.claim_run(&req(&owner, &slots)).await.expect("claim")
                        else {
                            idle += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            continue;
                        };
                        idle = 0;
                        {
                            let mut h = held.lock().expect("held");
                            let set = h.entry(c.target.clone()).or_default();
                            for d in &c.devices {
                                assert!(
                                    set.insert(*d),
                                    "device {d} of {} handed out twice",
                                    c.target
                                );
                            }
                        }
                        claimed.lock().expect("claimed").push(c.run.clone());
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        {
                            let mut h = held.lock().expect("held");
                            let set = h.entry(c.target.clone()).or_default();
                            for d in &c.devices {
                                set.remove(d);
                            }
                        }
                        store
                            .transition(&c.run, RunStatus::Queued, RunStatus::Staging, "go")
                            .await
                            .expect("staging");
                        store
                            .transition(&c.run, RunStatus::Staging, RunStatus::Failed, "done")
                            .await
                            .expect("done");
                    }
                })
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a worker panicked")?;
    }
    let claimed = claimed.lock().map_err(|_| "poisoned")?.clone();
    let distinct: BTreeSet<&RunId> = claimed.iter().collect();
    assert_eq!(claimed.len(), total, "every run claimed");
    assert_eq!(distinct.len(), total, "no run claimed twice");
    Ok(())
}

#[test]
fn placement_follows_slots_pins_inputs_priority_pauses_and_retries() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let q = Queue::open(&dir.path().join("cosmos.db")).await?;
        let s = &q.store;
        let two = targets(&[("a", 2), ("b", 2)]);

        // Priority first, then age; a claimed run holds its devices.
        let low = q.add(1, 0).await?;
        let high = q.add(2, 5).await?;
        let c = s.claim_run(&req("w", &two)).await?.ok_or("a claim")?;
        assert_eq!(
            (c.run.clone(), c.target.as_str(), c.devices.clone()),
            (high.clone(), "a", vec![0, 1])
        );
        let run = s.run(&high).await?;
        assert_eq!(run.devices, vec![0, 1]);
        assert_eq!(run.target.as_deref(), Some("a"));
        let c = s.claim_run(&req("w", &two)).await?.ok_or("a claim")?;
        assert_eq!((c.run, c.target.as_str()), (low.clone(), "b"));

        // Full: a 2-GPU run waits, a 1-GPU run fits the last slot.
        let big = q.add(2, 0).await?;
        let small = q.add(1, 0).await?;
        let c = s.claim_run(&req("w", &two)).await?.ok_or("a claim")?;
        assert_eq!(
            (c.run, c.target.as_str(), c.devices),
            (small.clone(), "b", vec![1])
        );
        assert_eq!(s.claim_run(&req("w", &two)).await?, None);
        // Finishing frees the slots.
        s.transition(&high, RunStatus::Queued, RunStatus::Cancelled, "x")
            .await?;
        let c = s.claim_run(&req("w", &two)).await?.ok_or("a claim")?;
        assert_eq!(c.run, big);
        for id in [&low, &small, &big] {
            s.transition(id, RunStatus::Queued, RunStatus::Cancelled, "x")
                .await?;
        }

        // A target holding the inputs is preferred over a roomier one.
        let wide = targets(&[("a", 2), ("b", 8)]);
        let r = q.add(1, 0).await?;
        s.note_inputs_on_target("a", &q.set).await?;
        let c = s.claim_run(&req("w", &wide)).await?.ok_or("a claim")?;
        assert_eq!((c.run.clone(), c.target.as_str()), (r.clone(), "a"));
        s.transition(&r, RunStatus::Queued, RunStatus::Cancelled, "x")
            .await?;

        // A lapsed claim frees the run and its slots for the next claimer.
        let r = q.add(2, 0).await?;
        let lapsed = ClaimRequest {
            ttl_ms: -1,
            ..req("dead", &two)
        };
        assert_eq!(s.claim_run(&lapsed).await?.ok_or("a claim")?.run, r);
        let c = s.claim_run(&req("alive", &two)).await?.ok_or("a claim")?;
        assert_eq!((c.run.clone(), c.devices), (r.clone(), vec![0, 1]));
        s.transition(&r, RunStatus::Queued, RunStatus::Cancelled, "x")
            .await?;

        // Pauses: the whole queue, then one target.
        let r = q.add(1, 0).await?;
        s.set_paused(None, true).await?;
        assert_eq!(s.claim_run(&req("w", &two)).await?, None);
        s.set_paused(None, false).await?;
        s.set_paused(Some("a"), true).await?;
        assert_eq!(s.paused().await?, vec![Some("a".to_owned())]);
        let c = s.claim_run(&req("w", &two)).await?.ok_or("a claim")?;
        assert_eq!((c.run.clone(), c.target.as_str()), (r.clone(), "b"));
        s.set_paused(Some("a"), false).await?;

        // A retry waits its turn and frees its slots; `only` claims one run.
        s.transition(&r, RunStatus::Queued, RunStatus::Staging, "go")
            .await?;
        let later = cosmos_core::now() + chrono::Duration::milliseconds(300);
        s.requeue_run(&r, RunStatus::Staging, later, "retrying", None, None)
            .await?;
        let run = s.run(&r).await?;
        assert_eq!(
            (run.status, run.attempts, run.devices.len()),
            (RunStatus::Queued, 1, 0)
        );
        let other = q.add(1, 0).await?;
        let only = ClaimRequest {
            only: Some(&r),
            ..req("w", &two)
        };
        assert_eq!(s.claim_run(&only).await?, None, "not before its time");
        q.clock.advance(5_000);
        assert_eq!(s.claim_run(&only).await?.ok_or("a claim")?.run, r);
        assert_eq!(
            s.claim_run(&req("w", &two)).await?.ok_or("a claim")?.run,
            other
        );
        Ok(())
    })
}

#[test]
fn workers_are_live_while_they_are_seen() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let s = SqliteStore::open(&dir.path().join("cosmos.db")).await?;
        s.worker_seen("w1", "host", 42).await?;
        s.worker_seen("w1", "host", 42).await?;
        assert_eq!(s.live_workers(10_000).await?.len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(s.live_workers(10).await?.is_empty(), "not seen lately");
        s.worker_gone("w1").await?;
        assert!(s.live_workers(10_000).await?.is_empty());
        Ok(())
    })
}

#[test]
fn runs_that_cannot_start_never_hold_up_the_queue() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let q = Queue::open(&dir.path().join("cosmos.db")).await?;
        let s = &q.store;
        let slots = targets(&[("busy", 2), ("idle", 1)]);
        // More than a claim looks at: pinned to a paused target, or too big for any.
        for i in 0..150 {
            if i % 2 == 0 {
                q.add_on(1, 9, Some("busy")).await?;
            } else {
                q.add(8, 9).await?;
            }
        }
        s.set_paused(Some("busy"), true).await?;
        let pinned = q.add_on(1, 0, Some("idle")).await?;
        let free = q.add(1, 0).await?;
        let c = s.claim_run(&req("w", &slots)).await?.ok_or("a claim")?;
        assert_eq!((c.run, c.target.as_str()), (pinned, "idle"));
        assert_eq!(
            s.claim_run(&req("w", &slots)).await?,
            None,
            "idle is full now"
        );
        s.set_paused(Some("busy"), false).await?;
        let c = s.claim_run(&req("w", &slots)).await?.ok_or("a claim")?;
        assert_eq!(c.target, "busy");
        assert_ne!(c.run, free, "the pinned high-priority runs go first");
        assert_eq!(
            s.queue_length().await?,
            152,
            "claimed runs stay queued until staged"
        );
        Ok(())
    })
}

#[test]
fn target_health_keeps_its_since_and_its_last_gpu_count() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let store = SqliteStore::open(&dir.path().join("cosmos.db")).await?;
        store.set_target_health("gpu", true, None).await?;
        let first = store.target_health().await?;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].gpus, None);

        store.set_target_health("gpu", true, Some(2)).await?;
        // A later report that did not count the GPUs keeps the count.
        store.set_target_health("gpu", true, None).await?;
        let h = &store.target_health().await?[0];
        assert_eq!(h.gpus, Some(2));
        assert!(h.reachable);
        assert_eq!(h.since, first[0].since, "still reachable: same since");

        store.set_target_health("gpu", false, None).await?;
        let h = &store.target_health().await?[0];
        assert!(!h.reachable);
        assert!(h.since >= first[0].since);
        assert_eq!(h.gpus, Some(2));
        Ok(())
    })
}

#[test]
fn a_rehearsal_target_beside_real_ones_takes_only_runs_named_to_it_and_marks_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let q = Queue::open(&dir.path().join("cosmos.db")).await?;
        let s = &q.store;
        let offers = [
            TargetOffer::new("gpu", 1),
            TargetOffer {
                pinned_only: true,
                rehearsal: true,
                ..TargetOffer::new("rehearsal", 8)
            },
        ];
        let first = q.add(1, 0).await?;
        let second = q.add(1, 0).await?;
        let named = q.add_on(1, 0, Some("rehearsal")).await?;
        let c = s.claim_run(&req("w", &offers)).await?.ok_or("a claim")?;
        assert_eq!((c.run.clone(), c.target.as_str()), (first.clone(), "gpu"));
        assert!(!s.run(&first).await?.rehearsal);
        // The real target is full: the unnamed run waits; the named one goes to the rehearsal.
        let c = s.claim_run(&req("w", &offers)).await?.ok_or("a claim")?;
        assert_eq!(
            (c.run.clone(), c.target.as_str()),
            (named.clone(), "rehearsal")
        );
        assert!(s.run(&named).await?.rehearsal, "marked as rehearsal output");
        assert_eq!(s.claim_run(&req("w", &offers)).await?, None);
        assert_eq!(s.run(&second).await?.status, RunStatus::Queued);
        Ok(())
    })
}

#[test]
fn stages_give_each_named_runs_latest_message_and_progress_in_one_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let q = Queue::open(&dir.path().join("cosmos.db")).await?;
        let s = &q.store;
        let first = q.add(1, 0).await?;
        let second = q.add(1, 0).await?;
        let other = q.add(1, 0).await?;
        let stage = RunStatus::Queued;
        s.add_run_event(&first, stage, Some(0.25), "clip 1/4", None)
            .await?;
        s.add_run_event(&first, stage, None, "uploading", None)
            .await?;
        let got: BTreeMap<RunId, (Option<String>, Option<f64>)> = s
            .stages_of(&[first.clone(), second.clone()])
            .await?
            .into_iter()
            .map(|l| (l.run_id, (l.message, l.progress)))
            .collect();
        assert_eq!(
            got.keys().cloned().collect::<BTreeSet<_>>(),
            BTreeSet::from([first.clone(), second.clone()]),
            "the runs named, not {other}"
        );
        // The latest message, and the latest progress even when a later event has none.
        assert_eq!(got[&first], (Some("uploading".into()), Some(0.25)));
        assert_eq!(got[&second], (Some("queued".into()), None));
        assert!(s.stages_of(&[]).await?.is_empty());
        Ok(())
    })
}

#[test]
fn a_claim_batches_runs_of_one_signature_within_limits_and_spread_over_free_slots() -> TestResult {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let q = Queue::open(&dir.path().join("cosmos.db")).await?;
        let s = &q.store;
        let mut a = Vec::new();
        for _ in 0..6 {
            a.push(q.add_signed(1, 0, None, Some("A")).await?);
        }
        let other = q.add_signed(1, 0, None, Some("B")).await?;
        let pinned_elsewhere = q.add_signed(1, 0, Some("far"), Some("A")).await?;
        let lone = q.add_signed(1, 0, None, None).await?;
        let offers = [TargetOffer {
            max_batch: 4,
            ..TargetOffer::new("gpu", 2)
        }];
        // 6 runs of A on 2 free GPUs, at most 4 a batch: 3 and 3, on different GPUs.
        let c = s.claim_run(&req("w", &offers)).await?.ok_or("a claim")?;
        let batch = c.batch.clone().ok_or("a batch")?;
        let lines: Vec<RunId> = batch.runs.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            lines,
            a[..3].to_vec(),
            "in queue order, the claimed run first"
        );
        assert_eq!(batch.events.len(), 2);
        for (i, id) in lines.iter().enumerate() {
            let run = s.run(id).await?;
            assert_eq!(run.batch_id.as_ref(), Some(&batch.id));
            assert_eq!(run.batch_line, Some(i as u32));
            assert_eq!(
                (run.target.as_deref(), run.devices.clone()),
                (Some("gpu"), vec![0])
            );
            assert_eq!(s.lease(id).await?.map(|l| l.owner), Some("w".to_owned()));
        }
        let c = s.claim_run(&req("w", &offers)).await?.ok_or("a claim")?;
        let second: Vec<RunId> = c
            .batch
            .ok_or("a batch")?
            .runs
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(second, a[3..].to_vec());
        assert_eq!(s.run(&a[3]).await?.devices, vec![1]);
        // No slot left: the rest wait.
        assert_eq!(s.claim_run(&req("w", &offers)).await?, None);

        // Back from a batch that ran out of memory: uncounted, at most 1 a batch from now on.
        let leases: Vec<_> = {
            let mut v = Vec::new();
            for run in s.batch_runs(&batch.id).await? {
                let (id, status) = (&run.id, &run.status);
                let l = s.lease(id).await?.ok_or("a lease")?;
                v.push((
                    id.clone(),
                    *status,
                    cosmos_store::Fence {
                        owner: l.owner,
                        token: l.token,
                    },
                ));
            }
            v
        };
        s.requeue_from_batch(&leases, "out of memory", Some(1))
            .await?;
        for (id, _, _) in &leases {
            let run = s.run(id).await?;
            assert_eq!(
                (run.status, run.attempts, run.batch_id),
                (RunStatus::Queued, 0, None)
            );
        }
        let offers = [TargetOffer {
            max_batch: 4,
            ..TargetOffer::new("gpu2", 1)
        }];
        let c = s.claim_run(&req("v", &offers)).await?.ok_or("a claim")?;
        assert_eq!(c.run, a[0]);
        assert!(c.batch.is_none(), "its limit is 1 now");
        assert!(s.run(&a[0]).await?.batch_id.is_none());
        // Another signature, a pin elsewhere and an unsigned run joined no batch.
        for id in [&other, &pinned_elsewhere, &lone] {
            let run = s.run(id).await?;
            assert_eq!((run.status, run.batch_id), (RunStatus::Queued, None));
        }
        Ok(())
    })
}
