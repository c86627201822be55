//! The engine driven in process against a real SQLite file: the event bus (delivery in
//! order, lag, following another process by cursor), fenced leases, and reads that never
//! wait on a target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmos_core::{
    InputSetId, PromptId, RunId, RunKind, RunParams, RunStatus, Target, TargetConfig, TargetKind,
};
use cosmos_engine::{CancelScope, ExecEnv, Services, SubmitRequest};
use cosmos_media::Ffprobe;
use cosmos_store::{
    Fence, ManualClock, NewPrompt, NewRun, PromptName, SqliteStore, StatusChange, Store, StoreError,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A database with one prompt on one input set, `n` queued runs of it, and the engine on it.
struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<SqliteStore>,
    prompt: PromptId,
    set: InputSetId,
}

impl Fixture {
    async fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cosmos.db");
        let store = Arc::new(SqliteStore::open(&path).await?);
        let set = cosmos_testkit::sample_input_set("scene");
        store.insert_input_set(&set).await?;
        let prompt = store
            .create_prompt(&NewPrompt {
                id: PromptId::new(),
                name: PromptName::Exact("p".into()),
                text: "a harbour".into(),
                negative: None,
                input_set_id: Some(set.id.clone()),
                parent_id: None,
                model: None,
                created_at: cosmos_core::now(),
            })
            .await?;
        Ok(Self {
            _dir: dir,
            path,
            store,
            prompt: prompt.id,
            set: set.id,
        })
    }

    async fn queue(&self, n: usize) -> Result<Vec<RunId>, Box<dyn std::error::Error>> {
        let runs: Vec<NewRun> = (0..n)
            .map(|_| NewRun {
                id: RunId::new(),
                prompt_id: self.prompt.clone(),
                kind: RunKind::Transfer,
                name: None,
                prompt_text: "a harbour".into(),
                negative_prompt: None,
                input_set_id: Some(self.set.clone()),
                params: RunParams::default(),
                priority: 0,
                created_at: cosmos_core::now(),
                note: "queued".into(),
                retry_of: None,
                target_pin: None,
                sweep_id: None,
                signature: None,
                upscale_of: None,
            })
            .collect();
        self.store.create_runs(&runs).await?;
        Ok(runs.into_iter().map(|r| r.id).collect())
    }

    /// The engine as a process would open it.
    async fn engine(&self) -> Result<Services, Box<dyn std::error::Error>> {
        let store = SqliteStore::open(&self.path).await?;
        let exec = ExecEnv::new(
            self.path.with_file_name("data"),
            self.path.with_file_name("known_hosts"),
            Default::default(),
        );
        Ok(Services::new(Arc::new(store), Ffprobe::new("ffprobe")).with_exec(exec))
    }
}

#[test]
fn the_bus_delivers_every_event_in_order_even_to_a_subscriber_that_lags() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let engine = f.engine().await?;
        // More events than the bus holds for a subscriber that does not read.
        let ids = f.queue(1500).await?;
        let mut sub = engine.events().subscribe().await?;
        let cancelled = engine.runs().cancel(CancelScope::Runs(ids.clone())).await?;
        assert!(
            cancelled
                .runs
                .iter()
                .all(|r| r.status == RunStatus::Cancelled)
        );
        assert!(cancelled.unreachable.is_empty());
        let mut seen = Vec::new();
        while seen.len() < ids.len() {
            let e = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await??
                .ok_or("the bus closed")?;
            assert_eq!(e.stage, RunStatus::Cancelled, "{e:?}");
            seen.push(e);
        }
        let seqs: Vec<i64> = seen.iter().map(|e| e.id).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in sequence order");
        let runs: Vec<&RunId> = seen.iter().map(|e| &e.run_id).collect();
        assert_eq!(
            runs,
            ids.iter().collect::<Vec<_>>(),
            "none lost, none repeated"
        );
        Ok(())
    })
}

#[test]
fn another_process_follows_by_cursor_within_a_poll() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let writer = f.engine().await?;
        let reader = f.engine().await?;
        let ids = f.queue(3).await?;
        let mut follower = reader.events().follow(reader.events().head().await?, None);
        let began = Instant::now();
        writer
            .runs()
            .cancel(CancelScope::Runs(vec![ids[1].clone()]))
            .await?;
        let batch = tokio::time::timeout(Duration::from_secs(2), follower.next_batch()).await??;
        assert!(
            began.elapsed() < Duration::from_millis(900),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(batch.len(), 1, "{batch:?}");
        assert_eq!(
            (&batch[0].run_id, batch[0].stage),
            (&ids[1], RunStatus::Cancelled)
        );
        // After the cursor, nothing is repeated.
        writer
            .runs()
            .cancel(CancelScope::Runs(vec![ids[2].clone()]))
            .await?;
        let next = follower.next_batch().await?;
        assert_eq!(
            next.iter().map(|e| &e.run_id).collect::<Vec<_>>(),
            vec![&ids[2]]
        );
        Ok(())
    })
}

#[test]
fn a_driver_that_lost_its_lease_writes_nothing() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let clock = ManualClock::new();
        let store = SqliteStore::open(&f.path)
            .await?
            .with_clock(Arc::new(clock.clone()));
        let id = f.queue(1).await?.remove(0);
        let a: Fence = store
            .take_lease(&id, "cosmos:h:1", 1_000, None)
            .await?
            .ok_or("a takes the lease")?;
        store
            .change_status(
                &id,
                &StatusChange::new(RunStatus::Queued, RunStatus::Staging, "a stages")
                    .fenced(Some(&a)),
            )
            .await?;
        // A is paused past its lease; B takes over and the token moves on.
        assert_eq!(
            store.take_lease(&id, "cosmos:h:2", 1_000, None).await?,
            None
        );
        clock.advance(1_500);
        let b = store
            .take_lease(&id, "cosmos:h:2", 1_000, None)
            .await?
            .ok_or("b takes the expired lease")?;
        assert_ne!(a.token, b.token);
        // A wakes up: every write it tries is refused, and so is its renewal.
        assert!(!store.renew_lease(&id, &a, 1_000).await?);
        let lost = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseLost { .. }));
        let step =
            StatusChange::new(RunStatus::Staging, RunStatus::Starting, "a starts").fenced(Some(&a));
        assert!(lost(store.change_status(&id, &step).await.map(drop)));
        assert!(lost(
            store
                .add_run_event(&id, RunStatus::Staging, None, "a note", Some(&a))
                .await
                .map(drop)
        ));
        assert!(lost(
            store
                .set_launch_command(&id, &["docker".into()], Some(&a))
                .await
        ));
        assert!(lost(store.set_exit_code(&id, 0, Some(&a)).await));
        assert!(lost(store.set_run_outputs(&id, &[], Some(&a)).await));
        // B drives on.
        let step =
            StatusChange::new(RunStatus::Staging, RunStatus::Starting, "b starts").fenced(Some(&b));
        store.change_status(&id, &step).await?;
        let run = store.run(&id).await?;
        assert_eq!(
            (run.status, run.launch_command),
            (RunStatus::Starting, None)
        );
        let events = store.run_events(&id).await?;
        assert!(
            events
                .iter()
                .all(|e| !e.message.starts_with("a starts") && e.message != "a note")
        );
        Ok(())
    })
}

#[test]
fn reads_answer_from_the_store_while_a_target_is_down() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let engine = f.engine().await?;
        // A target whose sshd is gone (nothing listens on the port), with runs mid-way.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let target = Target {
            name: "down".into(),
            config: TargetConfig {
                kind: TargetKind::Ssh,
                host: Some("127.0.0.1".into()),
                user: None,
                port: Some(port),
                key: None,
                jump: None,
                root: "/tmp/cosmos-down".into(),
                cosmos_dir: "/opt/cosmos-transfer1".into(),
                image: "cosmos-transfer1:none".into(),
                shm_size: "8g".into(),
                runtime: cosmos_core::RuntimeKind::Docker,
                docker_sudo: false,
                gpu_flag: true,
                gpus: 2,
                env: Default::default(),
                torchrun: None,
                rehearsal: false,
                mounts: Vec::new(),
                image_digest: None,
                checkout_commit: None,
                manifest_hash: None,
                hf_cache_complete: false,
                gpu_memory_mib: None,
                models: Vec::new(),
                floating_image: false,
                gpus_from_host: false,
            },
            is_default: true,
        };
        f.store.put_target(&target, false).await?;
        // One run in each unfinished state.
        let states = [
            RunStatus::Queued,
            RunStatus::Staging,
            RunStatus::Starting,
            RunStatus::Running,
            RunStatus::Collecting,
        ];
        let ids = f.queue(states.len()).await?;
        for (id, to) in ids.iter().zip(states) {
            let mut from = RunStatus::Queued;
            for next in [
                RunStatus::Staging,
                RunStatus::Starting,
                RunStatus::Running,
                RunStatus::Collecting,
            ] {
                if from == to {
                    break;
                }
                f.store.transition(id, from, next, "moving on").await?;
                from = next;
            }
        }
        let began = Instant::now();
        let view = engine.queue().status(20).await?;
        let runs = engine
            .runs()
            .list(&cosmos_engine::RunFilter {
                limit: 100,
                ..Default::default()
            })
            .await?;
        for id in &ids {
            engine.runs().get(id).await?;
            engine.runs().events(id).await?;
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        let mut seen: Vec<RunStatus> = view.running.iter().map(|r| r.run.status).collect();
        seen.extend(view.queue.iter().map(|q| q.run.status));
        for state in states {
            assert!(seen.contains(&state), "{state} missing from {seen:?}");
        }
        assert_eq!(runs.len(), states.len());
        Ok(())
    })
}

/// A real scene (colour and depth made by ffmpeg) and a rehearsal target on this machine:
/// cosmos-sim as the model, run as a plain process.
async fn rehearsal(f: &Fixture, engine: &Services) -> Result<Target, Box<dyn std::error::Error>> {
    let base = f.path.with_file_name("rehearsal");
    let scene = base.join("scene");
    std::fs::create_dir_all(&scene)?;
    for kind in ["color", "depth"] {
        cosmos_testkit::test_video(&scene.join(format!("{kind}.mp4")), 64, 36, 24, 24)?;
    }
    let sim = cosmos_testkit::sim_binary()?;
    let target = engine.targets().put_rehearsal("here", &base, &sim).await?;
    assert!(target.is_default && target.config.rehearsal);
    engine
        .prompts()
        .create(&cosmos_engine::CreatePromptRequest {
            text: "a foggy harbour at dawn".into(),
            negative: None,
            name: Some("harbour".into()),
            inputs: Some(cosmos_engine::InputsRef::Dir(scene)),
            new: false,
            model: None,
        })
        .await?;
    Ok(target)
}

fn entry(seeds: Option<&str>) -> cosmos_engine::RunEntry {
    cosmos_engine::RunEntry {
        subject: "harbour".into(),
        seeds: seeds.map(str::to_owned),
        ..Default::default()
    }
}

fn submit_request(entries: Vec<cosmos_engine::RunEntry>, dry_run: bool) -> SubmitRequest {
    SubmitRequest {
        entries,
        source: None,
        defaults: RunParams::default(),
        launch: cosmos_engine::LaunchDefaults {
            root: "/unused".into(),
            cosmos_dir: "/unused".into(),
            image: "unused:1".into(),
            shm_size: "1g".into(),
            mounts: Vec::new(),
        },
        dry_run,
        no_wait: false,
        max_runs: None,
    }
}

#[test]
fn the_engine_submits_claims_drives_retries_and_cancels_in_process() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let engine = f.engine().await?;
        rehearsal(&f, &engine).await?;
        let mut events = engine.events().subscribe().await?;

        // A dry run plans on the target without storing anything.
        let dry = engine
            .runs()
            .submit(submit_request(vec![entry(None)], true))
            .await?;
        assert!(dry.runs.is_empty() && dry.plans.len() == 1);
        let planned = dry.plans[0].container_command.clone();

        // Submitted, claimed, driven here to the end.
        let submitted = engine
            .runs()
            .submit(submit_request(vec![entry(None)], false))
            .await?;
        let id = submitted.runs[0].id.clone();
        let (_keep, never) = tokio::sync::watch::channel(false);
        let cosmos_engine::Followed::Finished(runs) = engine
            .runs()
            .see_through(std::slice::from_ref(&id), never.clone())
            .await?
        else {
            return Err("the run was left running".into());
        };
        assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0]);
        assert!(std::path::Path::new(&runs[0].outputs[0].path).is_file());
        // What ran is what the dry run showed, but for the run id.
        let ran = runs[0].launch_command.clone().ok_or("a launch command")?;
        let same = |argv: &[String], id: &str| -> Vec<String> {
            argv.iter().map(|a| a.replace(id, "RUN")).collect()
        };
        assert_eq!(
            same(&planned, dry.plans[0].run_id.as_str()),
            same(&ran, id.as_str())
        );
        // Its life, in order, on the bus.
        let mut stages = Vec::new();
        // (Everything is stored and published by now: a short wait ends the reading.)
        while let Ok(next) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            let Some(e) = next? else { break };
            if e.run_id == id && stages.last() != Some(&e.stage) {
                stages.push(e.stage);
            }
        }
        assert_eq!(
            stages,
            [
                RunStatus::Queued,
                RunStatus::Staging,
                RunStatus::Starting,
                RunStatus::Running,
                RunStatus::Collecting,
                RunStatus::Succeeded
            ]
        );

        // Only a failed or cancelled run is retried.
        let e = engine.runs().retry(&id).await.expect_err("a succeeded run");
        assert_eq!(e.kind(), cosmos_engine::ErrorKind::Conflict);

        // A sweep queued without a worker; cancelling the sweep cancels all of it, and a
        // cancelled run can be retried.
        let mut queued = engine.events().subscribe().await?;
        let mut sweep = submit_request(vec![entry(Some("1..3"))], false);
        sweep.no_wait = true;
        let sweep = engine.runs().submit(sweep).await?;
        assert_eq!(sweep.runs.len(), 3);
        // Queued runs are on the bus as soon as they are stored (what wakes a worker here).
        for run in &sweep.runs {
            let e = tokio::time::timeout(Duration::from_secs(2), queued.next())
                .await??
                .ok_or("the bus closed")?;
            assert_eq!((&e.run_id, e.stage), (&run.id, RunStatus::Queued));
        }
        let cancelled = engine
            .runs()
            .cancel(CancelScope::Sweep(sweep.runs[1].id.clone()))
            .await?;
        assert_eq!(cancelled.runs.len(), 3);
        assert!(
            cancelled
                .runs
                .iter()
                .all(|r| r.status == RunStatus::Cancelled)
        );
        let mut queued = engine.events().subscribe().await?;
        let again = engine.runs().retry(&sweep.runs[0].id).await?;
        // The new run's first event is on the bus as soon as it is stored.
        let first = tokio::time::timeout(Duration::from_secs(2), queued.next())
            .await??
            .ok_or("the bus closed")?;
        assert_eq!((&first.run_id, first.stage), (&again.id, RunStatus::Queued));
        assert_eq!(
            (again.status, again.retry_of.as_ref()),
            (RunStatus::Queued, Some(&sweep.runs[0].id))
        );
        Ok(())
    })
}

#[test]
fn a_rehearsal_target_beside_a_real_one_runs_only_what_names_it() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        let engine = f.engine().await?;
        rehearsal(&f, &engine).await?;
        // A real target added later, without `--default`, becomes the default.
        let real = engine
            .targets()
            .add(
                &cosmos_engine::AddTargetRequest {
                    name: "real".into(),
                    local: true,
                    settings: cosmos_engine::TargetSettings {
                        gpus: Some(1),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                &submit_request(Vec::new(), true).launch,
            )
            .await?;
        assert!(
            real.is_default,
            "a rehearsal's default gives way to a real target"
        );
        assert_eq!(engine.targets().find(None).await?.name, "real");
        // The real target takes nothing now; the rehearsal has free slots all the while.
        engine.queue().set_paused(Some("real"), true).await?;
        let mut unnamed = submit_request(vec![entry(Some("1..2"))], false);
        unnamed.no_wait = true;
        let unnamed = engine.runs().submit(unnamed).await?;
        let mut named = submit_request(
            vec![cosmos_engine::RunEntry {
                target: Some("here".into()),
                ..entry(None)
            }],
            false,
        );
        named.no_wait = true;
        let named = engine.runs().submit(named).await?.runs[0].id.clone();

        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (report, _reports) = tokio::sync::mpsc::unbounded_channel();
        let worker = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.queue().work(stop, report).await })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let run = engine.runs().get(&named).await?;
            if run.status.is_terminal() {
                break run;
            }
            assert!(Instant::now() < deadline, "the named run never finished");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // One more claim pass would have placed the unnamed runs if it could.
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop_tx.send(true)?;
        worker.await??;
        assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
        assert!(done.rehearsal, "a run on the rehearsal target is marked");
        for r in &unnamed.runs {
            let r = engine.runs().get(&r.id).await?;
            assert_eq!((r.status, r.target.as_deref()), (RunStatus::Queued, None));
        }
        Ok(())
    })
}

#[test]
fn a_worker_waits_out_a_locked_database_and_finishes_its_runs() -> TestResult {
    runtime().block_on(async {
        let f = Fixture::new().await?;
        // Writes give up after 200 ms of waiting for another process's lock.
        let store =
            SqliteStore::open_with_busy_timeout(&f.path, Duration::from_millis(200)).await?;
        let exec = ExecEnv::new(
            f.path.with_file_name("data"),
            f.path.with_file_name("known_hosts"),
            Default::default(),
        );
        let engine = Services::new(Arc::new(store), Ffprobe::new("ffprobe")).with_exec(exec);
        rehearsal(&f, &engine).await?;
        let mut queued = submit_request(vec![entry(None)], false);
        queued.no_wait = true;
        let id = engine.runs().submit(queued).await?.runs[0].id.clone();

        // Another process holds the write lock for 3 s, as a long import would.
        let locker = sqlx::SqlitePool::connect(&format!("sqlite:{}", f.path.display())).await?;
        let mut held = locker.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *held).await?;

        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let worker = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.queue().work(stop, report).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!worker.is_finished(), "the worker left on a busy database");
        sqlx::query("COMMIT").execute(&mut *held).await?;
        drop(held);

        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let run = engine.runs().get(&id).await?;
            if run.status.is_terminal() {
                break run;
            }
            assert!(Instant::now() < deadline, "the run never finished: {run:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
        stop_tx.send(true)?;
        worker.await??;
        let mut troubles = Vec::new();
        while let Ok(e) = reports.try_recv() {
            if let cosmos_engine::WorkerEvent::Trouble(m) = e {
                troubles.push(m);
            }
        }
        assert!(
            troubles
                .iter()
                .any(|m| m.contains("database is locked") || m.contains("busy")),
            "the wait was reported: {troubles:?}"
        );
        Ok(())
    })
}
