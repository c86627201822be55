//! Claim cost (DESIGN.md §4): how long one claim takes with a deep queue and several
//! workers competing, against the same with a shallow queue in the same run (the claim must
//! not grow with the queue: it walks the `runs_queue` index and stops at the first fit).
//!
//!   cargo run --release -p cosmos-store --example claim-bench -- [QUEUED] [CLAIMS] [WORKERS]
//!
//! Each worker is a thread with its own connection pool, like a process of its own; every
//! claim is followed by ending the run, so slots free up again.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cosmos_core::{PromptId, RunId, RunKind, RunParams, RunStatus};
#[path = "../tests/common/mod.rs"]
mod common;

use cosmos_store::{ClaimRequest, NewPrompt, NewRun, PromptName, SqliteStore, Store, TargetOffer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn fill(path: &Path, queued: usize) -> SqliteStore {
    let store = SqliteStore::open(path).await.expect("store");
    let set = common::input_set("scene");
    store.insert_input_set(&set).await.expect("input set");
    let prompt = store
        .create_prompt(&NewPrompt {
            id: PromptId::new(),
            name: PromptName::Exact("bench".into()),
            text: "a harbour".into(),
            negative: None,
            input_set_id: Some(set.id.clone()),
            parent_id: None,
            model: None,
            created_at: cosmos_core::now(),
        })
        .await
        .expect("prompt");
    let runs: Vec<NewRun> = (0..queued)
        .map(|i| NewRun {
            id: RunId::new(),
            prompt_id: prompt.id.clone(),
            kind: RunKind::Transfer,
            name: None,
            prompt_text: "a harbour".into(),
            negative_prompt: None,
            input_set_id: Some(set.id.clone()),
            params: RunParams {
                seed: i as u32,
                ..RunParams::default()
            },
            priority: (i % 3) as i32,
            created_at: cosmos_core::now(),
            note: "queued".into(),
            retry_of: None,
            target_pin: None,
            sweep_id: None,
            signature: None,
            upscale_of: None,
        })
        .collect();
    store.create_runs(&runs).await.expect("runs");
    store
}

/// SQLite's plan for the queries a claim runs, to show they use the indexes.
async fn plans(path: &Path) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("pool");
    for (what, query) in [
        (
            "queue scan",
            "SELECT id, gpus, target_pin, input_set_id FROM runs INDEXED BY runs_queue \
             WHERE status = 'queued' AND (lease_owner IS NULL OR lease_expires_at < 0) \
             AND (not_before IS NULL OR not_before <= 0) AND (NULL IS NULL OR id = NULL) \
             AND gpus <= 8 AND (target_pin IS NULL OR target_pin IN (SELECT value FROM json_each('[]'))) \
             ORDER BY priority DESC, created_at LIMIT 64",
        ),
        (
            "slots held",
            "SELECT target, gpu_devices FROM runs INDEXED BY runs_placed WHERE gpu_devices IS NOT NULL \
             AND status IN ('queued', 'staging', 'starting', 'running', 'collecting') \
             AND NOT (status = 'queued' AND (lease_owner IS NULL OR lease_expires_at < 0))",
        ),
    ] {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {query}"))
                .fetch_all(&pool)
                .await
                .expect("plan");
        let steps: Vec<String> = rows.into_iter().map(|r| r.3).collect();
        println!("  plan of the {what}: {}", steps.join(" / "));
    }
}

/// Claim latencies in microseconds, sorted.
fn measure(queued: usize, claims: usize, workers: usize) -> Vec<u128> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cosmos.db");
    runtime().block_on(async {
        fill(&path, queued).await;
        plans(&path).await;
    });
    let latencies: Arc<Mutex<Vec<u128>>> = Arc::default();
    let per_worker = claims / workers;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (path, latencies) = (path.clone(), latencies.clone());
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let store = SqliteStore::open(&path).await.expect("store");
                    let targets: Vec<TargetOffer> = (0..3)
                        .map(|t| TargetOffer::new(format!("gpu-{t}"), 8))
                        .collect();
                    let owner = format!("bench-{w}");
                    let mut mine = Vec::with_capacity(per_worker);
                    for _ in 0..per_worker {
                        let began = Instant::now();
                        let claim = store
                            .claim_run(&ClaimRequest {
                                owner: &owner,
                                ttl_ms: 60_000,
                                targets: &targets,
                                only: None,
                                placer: &common::Place,
                            })
                            .await
                            .expect("claim");
                        mine.push(began.elapsed().as_micros());
                        let Some(c) = claim else { continue };
                        store
                            .transition(&c.run, RunStatus::Queued, RunStatus::Cancelled, "done")
                            .await
                            .expect("end the run");
                    }
                    latencies.lock().expect("latencies").extend(mine);
                })
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a worker thread");
    }
    let mut all = latencies.lock().expect("latencies").clone();
    all.sort_unstable();
    all
}

fn pick(v: &[u128], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let queued: usize = args.next().map_or(10_000, |v| v.parse().expect("QUEUED"));
    let claims: usize = args.next().map_or(3_000, |v| v.parse().expect("CLAIMS"));
    let workers: usize = args.next().map_or(3, |v| v.parse().expect("WORKERS"));
    println!("{workers} workers competing, {claims} claims, each followed by ending the run:");
    for depth in [claims.min(queued), queued] {
        let v = measure(depth, claims, workers);
        println!(
            "  {depth:>6} queued: claim median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pick(&v, 0.5),
            pick(&v, 0.99),
            pick(&v, 1.0)
        );
    }
}
