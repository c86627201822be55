//! `cosmos dev seed`: fills a store with realistic synthetic data (prompts, input sets, runs
//! and their events) so list, show and search can be measured at scale.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use cosmos_core::naming::{name_candidates, name_from_text};
use cosmos_core::{
    InputFile, InputKind, InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId, RunKind,
    RunOutput, RunParams, RunStatus, VideoInfo, Weights,
};
use cosmos_store::ImportBatch;

use crate::Services;
use crate::error::EngineResult;

#[derive(Debug, Clone)]
pub struct SeedRequest {
    pub prompts: usize,
    pub runs: usize,
    pub input_sets: usize,
    /// Seed of the random generator: the same seed gives the same data.
    pub rng_seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub input_sets: usize,
    pub prompts: usize,
    pub runs: usize,
    pub events: usize,
}

const SUBJECTS: &[&str] = &[
    "a robot arm",
    "a delivery van",
    "a red sports car",
    "a cyclist",
    "a forklift",
    "a drone",
    "a humanoid robot",
    "a golden retriever",
    "a pedestrian with an umbrella",
    "a city bus",
    "a tractor",
    "a sailboat",
    "a warehouse worker",
    "a freight train",
    "a motorcyclist",
    "a child on a scooter",
    "an autonomous shuttle",
    "a mobile manipulator",
    "a police car",
    "a food truck",
];
const ACTIONS: &[&str] = &[
    "drives along",
    "crosses",
    "waits at",
    "picks up boxes in",
    "turns left at",
    "parks beside",
    "moves slowly through",
    "speeds down",
    "navigates",
    "stops in front of",
    "circles above",
    "loads pallets in",
    "patrols",
    "reverses out of",
    "enters",
];
const PLACES: &[&str] = &[
    "a rain-soaked intersection",
    "a busy warehouse",
    "a snowy mountain road",
    "a desert highway",
    "a narrow cobblestone street",
    "a modern kitchen",
    "an assembly line",
    "a harbour at dawn",
    "a suburban cul-de-sac",
    "a parking garage",
    "a foggy forest trail",
    "a neon-lit alley",
    "a construction site",
    "an airport apron",
    "a country lane",
    "a hospital corridor",
    "a supermarket aisle",
    "a bridge over a river",
    "a tunnel",
    "a roundabout",
];
const LIGHTING: &[&str] = &[
    "golden hour light",
    "overcast daylight",
    "harsh midday sun",
    "blue hour",
    "night with street lamps",
    "heavy rain and reflections",
    "dense fog",
    "light snowfall",
    "sunset backlight",
    "fluorescent lighting",
];
const STYLES: &[&str] = &[
    "photorealistic",
    "cinematic film grain",
    "dashcam footage",
    "drone footage",
    "documentary style",
    "35mm lens",
    "wide angle",
    "shallow depth of field",
    "high dynamic range",
    "handheld camera",
];
const NEGATIVES: &[&str] = &[
    "blurry, distorted, low quality",
    "cartoon, illustration, game graphics",
    "text, watermark, logo",
    "oversaturated, overexposed",
];

fn prompt_text(rng: &mut StdRng) -> String {
    let pick = |rng: &mut StdRng, words: &[&'static str]| {
        *words.choose(rng).expect("word lists are not empty")
    };
    format!(
        "{} {} {}, {}, {}.",
        pick(rng, SUBJECTS),
        pick(rng, ACTIONS),
        pick(rng, PLACES),
        pick(rng, LIGHTING),
        pick(rng, STYLES)
    )
}

fn fake_sha(rng: &mut StdRng) -> String {
    let bytes: [u8; 32] = rng.random();
    cosmos_core::sha256::to_hex(&bytes)
}

/// Records per import transaction.
const CHUNK: usize = 20_000;

impl Services {
    pub async fn seed(&self, req: &SeedRequest) -> EngineResult<SeedReport> {
        let mut rng = StdRng::seed_from_u64(req.rng_seed);
        let now = Utc::now();
        let span_ms: i64 = 180 * 24 * 3600 * 1000;
        let times = |rng: &mut StdRng, n: usize| -> Vec<DateTime<Utc>> {
            let mut t: Vec<DateTime<Utc>> = (0..n)
                .map(|_| now - Duration::milliseconds(rng.random_range(0..span_ms)))
                .collect();
            t.sort();
            t
        };

        let set_times = times(&mut rng, req.input_sets.max(1));
        let sets: Vec<InputSet> = set_times
            .iter()
            .enumerate()
            .map(|(i, at)| {
                let files = [
                    InputKind::Color,
                    InputKind::Depth,
                    InputKind::Seg,
                    InputKind::Edge,
                ]
                .into_iter()
                .map(|kind| InputFile {
                    kind,
                    path: format!("/renders/scene_{i:05}/{kind}.mp4"),
                    size: rng.random_range(2_000_000..80_000_000),
                    sha256: fake_sha(&mut rng),
                    video: VideoInfo {
                        frames: 121,
                        fps: 24.0,
                        width: 1280,
                        height: 720,
                        duration_seconds: 121.0 / 24.0,
                        codec: "h264".into(),
                    },
                })
                .collect::<Vec<_>>();
                InputSet {
                    id: InputSetId::at(*at, rng.random()),
                    name: format!("scene_{i:05}"),
                    dir: format!("/renders/scene_{i:05}"),
                    fingerprint: cosmos_core::inputs::fingerprint(&files),
                    created_at: *at,
                    files,
                }
            })
            .collect();
        let mut batch = ImportBatch {
            input_sets: sets.clone(),
            ..ImportBatch::default()
        };
        self.store().import(&batch).await?;

        let mut names: HashSet<String> = HashSet::new();
        let prompt_times = times(&mut rng, req.prompts);
        let mut prompts: Vec<Prompt> = Vec::with_capacity(req.prompts);
        batch = ImportBatch::default();
        for at in prompt_times {
            let text = prompt_text(&mut rng);
            let base = name_from_text(&text);
            let name = name_candidates(&base)
                .find(|n| !names.contains(n))
                .expect("candidates never run out");
            names.insert(name.clone());
            let set = &sets[rng.random_range(0..sets.len())];
            let negative = rng
                .random_bool(0.5)
                .then(|| (*NEGATIVES.choose(&mut rng).expect("not empty")).to_owned());
            let prompt = Prompt {
                id: PromptId::at(at, rng.random()),
                name,
                text,
                negative,
                input_set_id: Some(set.id.clone()),
                parent_id: None,
                model: None,
                created_at: at,
                updated_at: at,
            };
            prompts.push(prompt.clone());
            batch.prompts.push(prompt);
            if batch.prompts.len() == CHUNK {
                self.store().import(&std::mem::take(&mut batch)).await?;
            }
        }
        self.store().import(&std::mem::take(&mut batch)).await?;

        let mut events = 0;
        let run_times = times(&mut rng, req.runs);
        for at in run_times {
            let Some(Prompt {
                id: prompt_id,
                text,
                negative,
                input_set_id,
                created_at: created,
                ..
            }) = prompts.choose(&mut rng).cloned()
            else {
                break;
            };
            let at = at.max(created);
            let status = match rng.random_range(0..100) {
                0..70 => RunStatus::Succeeded,
                70..85 => RunStatus::Failed,
                85..90 => RunStatus::Cancelled,
                90..95 => RunStatus::Queued,
                _ => RunStatus::Running,
            };
            let weights = Weights::new([
                (
                    cosmos_core::Hint::Edge,
                    f64::from(rng.random_range(1..6u8)) / 10.0,
                ),
                (
                    cosmos_core::Hint::Depth,
                    f64::from(rng.random_range(1..6u8)) / 10.0,
                ),
            ])
            .expect("seeded weights are valid");
            let params = RunParams {
                weights,
                seed: rng.random_range(1..1000),
                ..RunParams::default()
            };
            let id = RunId::at(at, rng.random());
            let started = (status != RunStatus::Queued)
                .then(|| at + Duration::seconds(rng.random_range(1..600)));
            let finished = status
                .is_terminal()
                .then(|| started.unwrap_or(at) + Duration::seconds(rng.random_range(300..3600)));
            let outputs = if status == RunStatus::Succeeded {
                vec![RunOutput {
                    path: format!("outputs/{id}/output.mp4"),
                    size: rng.random_range(5_000_000..50_000_000),
                    sha256: fake_sha(&mut rng),
                }]
            } else {
                Vec::new()
            };
            let mut push_event =
                |stage: RunStatus, when: DateTime<Utc>, message: &str, progress: Option<f64>| {
                    batch.events.push(RunEvent {
                        id: 0,
                        run_id: id.clone(),
                        at: when,
                        stage,
                        progress,
                        message: message.to_owned(),
                    });
                    events += 1;
                };
            push_event(RunStatus::Queued, at, "queued", None);
            if let Some(s) = started {
                push_event(RunStatus::Running, s, "Run generation", Some(0.4));
            }
            if let Some(f) = finished {
                push_event(status, f, status.as_str(), Some(1.0));
            }
            batch.runs.push(Run {
                id,
                prompt_id,
                prompt_name: String::new(),
                kind: RunKind::Transfer,
                status,
                name: None,
                prompt_text: text,
                negative_prompt: negative,
                input_set_id,
                params,
                target: Some(format!("gpu-{}", rng.random_range(1..4))),
                priority: 0,
                created_at: at,
                started_at: started,
                finished_at: finished,
                failure_reason: (status == RunStatus::Failed)
                    .then(|| "CUDA out of memory".to_owned()),
                rating: (status == RunStatus::Succeeded && rng.random_bool(0.3))
                    .then(|| rng.random_range(1..=5)),
                outputs,
                devices: Vec::new(),
                attempts: 0,
                retry_of: None,
                target_pin: None,
                exit_code: None,
                failure_code: None,
                launch_command: None,
                supply: None,
                sweep_id: None,
                rehearsal: false,
                favourite: false,
                retried_by: None,
                gpu_usage: None,
                batch_id: None,
                batch_line: None,
                upscale_of: None,
                upscaled_by: Vec::new(),
                model_prompt: None,
            });
            if batch.runs.len() == CHUNK {
                self.store().import(&std::mem::take(&mut batch)).await?;
            }
        }
        self.store().import(&batch).await?;
        Ok(SeedReport {
            input_sets: sets.len(),
            prompts: req.prompts,
            runs: req.runs,
            events,
        })
    }
}
