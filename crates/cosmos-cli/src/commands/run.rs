//! `cosmos run`: plan runs (spec and command), print them with `--dry-run`, or queue them —
//! one run, a sweep (`--seed 1,2,3`, `--seeds 1..8`, weight ranges), or a file of runs — and
//! see them through.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde_json::json;

use cosmos_core::Level;
use cosmos_core::quote::shell_join;
use cosmos_engine::{RunEntry, RunPlan, SeedField, SubmitRequest, read_runs_file};

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
  cosmos run ps_01jd --seeds 1..4 --upscale           # each followed by its 4K upscale
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
    /// Let Cosmos's prompt upsampler (Pixtral-12B) rewrite the prompt first; `cosmos show`
    /// then has the text the model used
    #[arg(long)]
    upsample_prompt: bool,
    /// Follow each run with a 4K upscale of its output (10 steps, on the same target, once
    /// it succeeds; cancelled if it fails)
    #[arg(long)]
    upscale: bool,
    /// The chained upscale's control weight, 0 to 1 [default: 0.5]
    #[arg(long, value_name = "W", requires = "upscale")]
    upscale_weight: Option<f64>,
    /// The model: transfer1 (Cosmos-Transfer1, the default) or transfer2.5; a target set up
    /// for it runs it
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Cosmos-Transfer2.5: frames each chunk takes from the one before, 0 to 2 [default: 1]
    #[arg(long, value_name = "N")]
    num_conditional_frames: Option<u32>,
    /// Cosmos-Transfer2.5: the generation resolution, e.g. 720 or 480 [default: 720]
    #[arg(long)]
    resolution: Option<String>,
    /// Cosmos-Transfer2.5: where a control applies, in words: CONTROL=WORDS (repeatable),
    /// e.g. --mask-prompt "edge=the red car"
    #[arg(long, value_name = "CONTROL=WORDS")]
    mask_prompt: Vec<String>,
    /// Cosmos-Transfer2.5: where a control applies, as a video (white = apply):
    /// CONTROL=FILE (repeatable), e.g. --mask edge=masks/car.mp4
    #[arg(long, value_name = "CONTROL=FILE")]
    mask: Vec<String>,
    /// Runs from a file: TOML `[[run]]` tables or JSON lines, with the flags' names as keys
    #[arg(long, value_name = "FILE", conflicts_with_all = ["subject", "inputs"])]
    from_file: Option<PathBuf>,
    /// Print the spec the model would receive and the container command; store nothing
    #[arg(long)]
    dry_run: bool,
    /// The target to run on [default: wherever GPU slots are free; the default target's
    /// layout for --dry-run]
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Queue the runs and return at once (no target is contacted)
    #[arg(long)]
    no_wait: bool,
    /// Allow this submission to queue up to N runs (default 10000: a typo in a range
    /// should not flood the queue)
    #[arg(long, value_name = "N")]
    max_runs: Option<usize>,
    /// `full` re-hashes every input already on the target before the run uses it (when this
    /// process runs it); `stamp` (the default) only those that changed since verified
    #[arg(long, value_name = "stamp|full", value_parser = ["stamp", "full"])]
    verify_inputs: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    fn entries(&self) -> Result<Vec<RunEntry>> {
        if let Some(path) = &self.from_file {
            let mut entries = read_runs_file(path)?;
            // Flags given beside the file apply where an entry says nothing.
            for e in &mut entries {
                e.target = e.target.take().or(self.target.clone());
                e.priority = e.priority.or(self.priority);
                e.gpus = e.gpus.or(self.gpus);
                if self.upsample_prompt {
                    e.upsample_prompt = Some(true);
                }
                if self.upscale {
                    e.upscale = e.upscale.or(Some(true));
                    e.upscale_weight = e.upscale_weight.or(self.upscale_weight);
                }
                e.model = e.model.take().or(self.model.clone());
            }
            return Ok(entries);
        }
        Ok(vec![RunEntry {
            subject: self.subject.clone().unwrap_or_default(),
            inputs: self.inputs.clone(),
            negative: self.negative.clone(),
            name: self.name.clone(),
            seed: self.seed.clone().map(SeedField::Text),
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
            upsample_prompt: self.upsample_prompt.then_some(true),
            upscale: self.upscale.then_some(true),
            upscale_weight: self.upscale_weight,
            model: self.model.clone(),
            num_conditional_frames: self.num_conditional_frames,
            resolution: self.resolution.clone(),
            mask_prompt: (!self.mask_prompt.is_empty()).then(|| self.mask_prompt.clone()),
            mask: (!self.mask.is_empty()).then(|| self.mask.clone()),
        }])
    }

    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let entries = self.entries()?;
        let services = ctx
            .services_verifying(self.verify_inputs.as_deref())
            .await?;
        let submitted = services
            .runs()
            .submit(SubmitRequest {
                entries,
                source: self.from_file.clone(),
                defaults: ctx.settings.config.defaults.clone(),
                launch: ctx.launch_defaults(),
                dry_run: self.dry_run,
                no_wait: self.no_wait,
                max_runs: self.max_runs,
            })
            .await?;
        for note in &submitted.notes {
            ctx.say("note", note);
        }
        let mut out = std::io::stdout().lock();
        if self.dry_run {
            return dry_run(
                &mut out,
                &submitted.plans,
                &submitted.planned_on.config.root,
                self.json,
            );
        }
        let runs = submitted.runs;
        if self.no_wait || !submitted.has_target {
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
        crate::live::execute(ctx, &services, &ids, self.json).await
    }
}

fn dry_run(out: &mut dyn Write, plans: &[RunPlan], root: &str, json_out: bool) -> Result<ExitCode> {
    let plan = plans.first().context("nothing to run")?;
    if json_out {
        let mut value = serde_json::to_value(plan)?;
        value["container_command_line"] = json!(shell_join(&plan.container_command));
        value["dry_run"] = json!(true);
        value["runs"] = json!(plans.len());
        output::json(out, &value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let model = cosmos_core::model::model(&plan.params.model)
        .map_or(plan.params.model.as_str(), |m| m.title());
    writeln!(
        out,
        "# spec.json: what {model} receives (dry run of {}; nothing stored)",
        plan.run_id
    )?;
    output::json(out, &plan.spec)?;
    writeln!(
        out,
        "\n# container command (paths under the target root `{}`; [target] in the config)",
        root
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
