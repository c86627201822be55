//! `cosmos run`: plan runs (spec and command), print them with `--dry-run`, or queue them —
//! one run, a sweep (`--seed 1,2,3`, `--seeds 1..8`, weight ranges), or a file of runs — and
//! see them through.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use cosmos_core::quote::shell_join;
use cosmos_core::{Level, RunParams, Target};
use cosmos_engine::{InputsRef, LaunchDefaults, RunPlan, RunRequest, RunSubject, Services};

use super::sweep::{self, FileRun};
use crate::context::Ctx;
use crate::output;

/// Run Cosmos-Transfer1 on a prompt (or new text) and its control videos
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cosmos run ps_01jd                                  # an existing prompt
  cosmos run \"a foggy harbour at dawn\" renders/shot010  # new text + a folder of control videos
  cosmos run \"snow at night\" in_01jd --weights edge=0.4,depth=0.6 --seed 7 --dry-run
  cosmos run ps_01jd --seeds 1..8 --no-wait            # a sweep: 8 runs, queued at once
  cosmos run ps_01jd --weights vis=0.2:0.6:0.2,edge=0.5 # a grid: vis 0.2, 0.4, 0.6
  cosmos run --from-file sweep.toml                   # [[run]] tables (or .jsonl lines)")]
pub struct Args {
    /// A prompt id (any unique prefix) or name, or the text of a new prompt
    #[arg(required_unless_present = "from_file")]
    subject: Option<String>,
    /// With new text: a folder of control videos, or an input set id
    #[arg(value_name = "INPUTS")]
    inputs: Option<String>,
    /// Control weights, e.g. vis=0.3,edge=0.4,depth=0.2,seg=0.1; START:STOP:STEP sweeps a
    /// weight [default: one equal share per control video in the input set]
    #[arg(long, value_name = "MODALITY=WEIGHT,…")]
    weights: Option<String>,
    /// Random seed (clip i uses seed + i); a comma list makes one run per seed
    #[arg(long, value_name = "SEED[,SEED…]")]
    seed: Option<String>,
    /// One run per seed from FIRST to LAST
    #[arg(long, value_name = "FIRST..LAST", conflicts_with = "seed")]
    seeds: Option<String>,
    /// Diffusion steps
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance scale
    #[arg(long)]
    guidance: Option<f64>,
    /// Noise applied to the colour video; 80 or more ignores its pixels
    #[arg(long)]
    sigma_max: Option<f64>,
    /// Frame rate of the output video
    #[arg(long)]
    fps: Option<u32>,
    /// Blur of the vis control: very_low, low, medium, high, very_high
    #[arg(long)]
    blur_strength: Option<Level>,
    /// Threshold of the edge control: very_low, low, medium, high, very_high
    #[arg(long)]
    canny_threshold: Option<Level>,
    /// Negative prompt for this run (with new text: the new prompt's)
    #[arg(long)]
    negative: Option<String>,
    /// GPUs for the run: 1, 2, 4 or 8
    #[arg(long)]
    gpus: Option<u32>,
    /// A name for the run (with new text: also for the new prompt)
    #[arg(long)]
    name: Option<String>,
    /// Queue order: higher runs first [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Runs from a file: TOML `[[run]]` tables or JSON lines, with the flags' names as keys
    #[arg(long, value_name = "FILE", conflicts_with_all = ["subject", "inputs", "dry_run"])]
    from_file: Option<PathBuf>,
    /// Print the spec Cosmos-Transfer1 would receive and the container command; store nothing
    #[arg(long)]
    dry_run: bool,
    /// The target to run on [default: wherever GPU slots are free; the default target's
    /// layout for --dry-run]
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Queue the runs and return at once (no target is contacted)
    #[arg(long)]
    no_wait: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// One line of work, from the flags or from a runs file.
#[derive(Debug, Clone, Default)]
struct Entry {
    subject: String,
    inputs: Option<String>,
    negative: Option<String>,
    name: Option<String>,
    seed: Option<String>,
    seeds: Option<String>,
    weights: Option<String>,
    steps: Option<u32>,
    guidance: Option<f64>,
    sigma_max: Option<f64>,
    fps: Option<u32>,
    blur_strength: Option<Level>,
    canny_threshold: Option<Level>,
    gpus: Option<u32>,
    priority: Option<i32>,
    target: Option<String>,
}

impl From<FileRun> for Entry {
    fn from(f: FileRun) -> Self {
        Entry {
            subject: f.prompt,
            inputs: f.inputs,
            negative: f.negative,
            name: f.name,
            seed: f.seed.map(|s| s.as_list()),
            seeds: f.seeds,
            weights: f.weights,
            steps: f.steps,
            guidance: f.guidance,
            sigma_max: f.sigma_max,
            fps: f.fps,
            blur_strength: f.blur_strength,
            canny_threshold: f.canny_threshold,
            gpus: f.gpus,
            priority: f.priority,
            target: f.target,
        }
    }
}

impl Entry {
    async fn subject(&self, services: &Services) -> Result<RunSubject> {
        let looks_like_id = self.subject.to_ascii_lowercase().starts_with("ps_");
        if looks_like_id {
            if self.inputs.is_some() {
                bail!(
                    "a prompt brings its own input set: drop INPUTS, or change the prompt's with \
                     `cosmos prompt edit {} --inputs DIR`",
                    self.subject
                );
            }
            return Ok(RunSubject::Prompt(self.subject.clone()));
        }
        // A prompt's exact name runs that prompt.
        if self.inputs.is_none()
            && let Some(p) = services.store().prompt_by_name(self.subject.trim()).await?
        {
            return Ok(RunSubject::Prompt(p.id.to_string()));
        }
        Ok(RunSubject::Text {
            text: self.subject.clone(),
            inputs: self.inputs.as_deref().map(InputsRef::parse),
        })
    }

    /// Every parameter set this entry asks for: seeds × weight grid.
    fn variants(&self, defaults: &RunParams) -> Result<Vec<RunParams>> {
        let mut base = defaults.clone();
        base.steps = self.steps.unwrap_or(base.steps);
        base.guidance = self.guidance.unwrap_or(base.guidance);
        base.sigma_max = self.sigma_max.unwrap_or(base.sigma_max);
        base.fps = self.fps.unwrap_or(base.fps);
        base.blur_strength = self.blur_strength.unwrap_or(base.blur_strength);
        base.canny_threshold = self.canny_threshold.unwrap_or(base.canny_threshold);
        base.gpus = self.gpus.unwrap_or(base.gpus);
        let mut seeds = sweep::seeds(self.seed.as_deref(), self.seeds.as_deref())?;
        if seeds.is_empty() {
            seeds.push(base.seed);
        }
        let grid = match &self.weights {
            Some(w) => sweep::weight_grid(w)?,
            None => vec![base.weights.clone()],
        };
        if seeds.len() * grid.len() > sweep::MAX_RUNS {
            bail!(
                "{} seeds × {} weight settings make more than {} runs",
                seeds.len(),
                grid.len(),
                sweep::MAX_RUNS
            );
        }
        let mut out = Vec::with_capacity(seeds.len() * grid.len());
        for w in &grid {
            for s in &seeds {
                let mut p = base.clone();
                p.seed = *s;
                p.weights = w.clone();
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Plans every run of the entry: the first fully, the rest as its variants.
    async fn plan(
        &self,
        ctx: &Ctx,
        services: &Services,
        launch: &LaunchDefaults,
    ) -> Result<Vec<RunPlan>> {
        let variants = self.variants(&ctx.settings.config.defaults)?;
        let request = RunRequest {
            subject: self.subject(services).await?,
            negative: self.negative.clone(),
            params: variants[0].clone(),
            name: self.name.clone(),
        };
        let mut first = services.plan_run(&request, launch).await?;
        first.priority = self.priority.unwrap_or(0);
        first.target_pin = self.target.clone();
        let mut plans = Vec::with_capacity(variants.len());
        for params in &variants[1..] {
            plans.push(services.plan_variant(&first, params, launch)?);
        }
        plans.insert(0, first);
        Ok(plans)
    }
}

impl Args {
    fn entries(&self) -> Result<Vec<Entry>> {
        if let Some(path) = &self.from_file {
            let mut entries: Vec<Entry> = sweep::read_file(path)?
                .into_iter()
                .map(Entry::from)
                .collect();
            // Flags given beside the file apply where an entry says nothing.
            for e in &mut entries {
                e.target = e.target.take().or(self.target.clone());
                e.priority = e.priority.or(self.priority);
                e.gpus = e.gpus.or(self.gpus);
            }
            return Ok(entries);
        }
        Ok(vec![Entry {
            subject: self.subject.clone().unwrap_or_default(),
            inputs: self.inputs.clone(),
            negative: self.negative.clone(),
            name: self.name.clone(),
            seed: self.seed.clone(),
            seeds: self.seeds.clone(),
            weights: self.weights.clone(),
            steps: self.steps,
            guidance: self.guidance,
            sigma_max: self.sigma_max,
            fps: self.fps,
            blur_strength: self.blur_strength,
            canny_threshold: self.canny_threshold,
            gpus: self.gpus,
            priority: self.priority,
            target: self.target.clone(),
        }])
    }

    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let entries = self.entries()?;
        let services = ctx.services().await?;
        let mut plans = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut launch = ctx.launch_defaults();
        let mut any_target = true;
        for (i, entry) in entries.iter().enumerate() {
            let target = match services.find_target(entry.target.as_deref()).await {
                Ok(t) => Some(t),
                // Validation errors come first; the missing target is reported after planning.
                Err(cosmos_engine::EngineError::NoDefaultTarget) if entry.target.is_none() => None,
                Err(e) => return Err(e.into()),
            };
            launch = match &target {
                Some(t) => LaunchDefaults::for_target(t),
                None => ctx.launch_defaults(),
            };
            any_target &= target.is_some();
            if let Some(t) = target
                && !targets.iter().any(|k| k.name == t.name)
            {
                targets.push(t);
            }
            let planned = entry.plan(ctx, &services, &launch).await;
            let planned = match (&self.from_file, planned) {
                (Some(path), Err(e)) => {
                    return Err(e.context(format!("{} run {}", path.display(), i + 1)));
                }
                (_, r) => r?,
            };
            plans.extend(planned);
        }
        for note in plans.first().map(|p| p.notes.clone()).unwrap_or_default() {
            ctx.say("note", &note);
        }
        let mut out = std::io::stdout().lock();
        if self.dry_run {
            return dry_run(&mut out, &plans, &launch, self.json);
        }
        if !any_target && !self.no_wait {
            return Err(cosmos_engine::EngineError::NoDefaultTarget.into());
        }
        // A run no target has the GPU slots for would wait for ever.
        let all = services.store().list_targets().await?;
        if !all.is_empty() {
            for p in &plans {
                let want = p.params.gpus;
                let fits = |t: &&Target| t.config.gpus >= want;
                let ok = match &p.target_pin {
                    Some(pin) => all.iter().filter(|t| &t.name == pin).any(|t| fits(&t)),
                    None => all.iter().any(|t| fits(&t)),
                };
                if !ok {
                    let most = all.iter().map(|t| t.config.gpus).max().unwrap_or(0);
                    let place = match &p.target_pin {
                        Some(pin) => {
                            let n = all
                                .iter()
                                .find(|t| &t.name == pin)
                                .map_or(0, |t| t.config.gpus);
                            format!(
                                "target {pin} has {n} GPU slot{}",
                                if n == 1 { "" } else { "s" }
                            )
                        }
                        None => format!("no target has that many GPU slots (the most is {most})"),
                    };
                    bail!(
                        "the run asks for {want} GPUs but {place}: use a smaller --gpus, or `cosmos target edit NAME --gpus N`"
                    );
                }
            }
        }
        // Refuse an unreachable or untrusted target before anything is stored.
        if !self.no_wait {
            for t in &targets {
                if let Some(ssh) = services.connect(t)?.ssh {
                    ssh.connect()
                        .await
                        .map_err(cosmos_engine::EngineError::from)?;
                }
            }
        }
        let mut note = match (&self.from_file, plans.len()) {
            (Some(path), n) => format!("queued from {} ({n} runs)", path.display()),
            (None, 1) => "queued".to_owned(),
            (None, n) => format!("queued in a sweep of {n} runs"),
        };
        if !any_target {
            note.push_str("; no target chosen yet");
        }
        let runs = services.submit_runs(plans, &note).await?;
        if runs.len() == 1 && !self.no_wait && any_target {
            drop(out);
            return crate::live::execute(ctx, &services, &runs[0].id, self.json).await;
        }
        if self.no_wait || !any_target {
            if self.json {
                if runs.len() == 1 {
                    output::json(&mut out, &runs[0])?;
                } else {
                    output::json(&mut out, &runs)?;
                }
            } else {
                for r in &runs {
                    writeln!(out, "{}", r.id)?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        let ids: Vec<_> = runs.iter().map(|r| r.id.clone()).collect();
        crate::live::execute_many(ctx, &services, &ids, self.json).await
    }
}

fn dry_run(
    out: &mut dyn Write,
    plans: &[RunPlan],
    launch: &LaunchDefaults,
    json_out: bool,
) -> Result<ExitCode> {
    let plan = plans.first().context("nothing to run")?;
    if json_out {
        let mut value = serde_json::to_value(plan)?;
        value["container_command_line"] = json!(shell_join(&plan.container_command));
        value["dry_run"] = json!(true);
        value["runs"] = json!(plans.len());
        output::json(out, &value)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "# spec.json: what Cosmos-Transfer1 receives (dry run of {}; nothing stored)",
        plan.run_id
    )?;
    output::json(out, &plan.spec)?;
    writeln!(
        out,
        "\n# container command (paths under the target root `{}`; [target] in the config)",
        launch.root
    )?;
    writeln!(out, "{}", shell_join(&plan.container_command))?;
    if plans.len() > 1 {
        writeln!(out, "\n# and {} more runs like it:", plans.len() - 1)?;
        for p in &plans[1..] {
            writeln!(
                out,
                "#   seed {}  weights {}",
                p.params.seed, p.params.weights
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
