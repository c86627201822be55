//! `cosmos run`: plan a run (spec and command), print it with `--dry-run`, or queue it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;

use cosmos_core::quote::shell_join;
use cosmos_core::{Level, Weights};
use cosmos_engine::{InputsRef, RunRequest, RunSubject, Services};

use crate::context::Ctx;
use crate::output;

/// Run Cosmos-Transfer1 on a prompt (or new text) and its control videos
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cosmos run ps_01jd                                  # an existing prompt
  cosmos run \"a foggy harbour at dawn\" renders/shot010  # new text + a folder of control videos
  cosmos run \"snow at night\" in_01jd --weights edge=0.4,depth=0.6 --seed 7 --dry-run")]
pub struct Args {
    /// A prompt id (any unique prefix) or name, or the text of a new prompt
    subject: String,
    /// With new text: a folder of control videos, or an input set id
    #[arg(value_name = "INPUTS")]
    inputs: Option<String>,
    /// Control weights, e.g. vis=0.3,edge=0.4,depth=0.2,seg=0.1 [default: one equal share per
    /// control video in the input set]
    #[arg(long, value_name = "MODALITY=WEIGHT,…")]
    weights: Option<Weights>,
    /// Random seed (clip i uses seed + i)
    #[arg(long)]
    seed: Option<u32>,
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
    /// Print the spec Cosmos-Transfer1 would receive and the container command; store nothing
    #[arg(long)]
    dry_run: bool,
    /// The target to run on [default: the default target]
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Queue the run and return at once (no target is contacted)
    #[arg(long)]
    no_wait: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl Args {
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

    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let mut params = ctx.settings.config.defaults.clone();
        if let Some(w) = &self.weights {
            params.weights = w.clone();
        }
        params.seed = self.seed.unwrap_or(params.seed);
        params.steps = self.steps.unwrap_or(params.steps);
        params.guidance = self.guidance.unwrap_or(params.guidance);
        params.sigma_max = self.sigma_max.unwrap_or(params.sigma_max);
        params.fps = self.fps.unwrap_or(params.fps);
        params.blur_strength = self.blur_strength.unwrap_or(params.blur_strength);
        params.canny_threshold = self.canny_threshold.unwrap_or(params.canny_threshold);
        params.gpus = self.gpus.unwrap_or(params.gpus);

        let services = ctx.services().await?;
        let request = RunRequest {
            subject: self.subject(&services).await?,
            negative: self.negative.clone(),
            params,
            name: self.name.clone(),
        };
        let mut launch = ctx.launch_defaults();
        let target = match services.find_target(self.target.as_deref()).await {
            Ok(t) => Some(t),
            // Validation errors come first; the missing target is reported after planning.
            Err(cosmos_engine::EngineError::NoDefaultTarget) if self.target.is_none() => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(t) = &target {
            launch = cosmos_engine::LaunchDefaults::for_target(t);
        }
        let plan = services.plan_run(&request, &launch).await?;
        for note in &plan.notes {
            ctx.say("note", note);
        }
        let mut out = std::io::stdout().lock();
        if self.dry_run {
            if self.json {
                let mut value = serde_json::to_value(&plan)?;
                value["container_command_line"] = json!(shell_join(&plan.container_command));
                value["dry_run"] = json!(true);
                output::json(&mut out, &value)?;
            } else {
                writeln!(
                    out,
                    "# spec.json: what Cosmos-Transfer1 receives (dry run of {}; nothing stored)",
                    plan.run_id
                )?;
                output::json(&mut out, &plan.spec)?;
                writeln!(
                    out,
                    "\n# container command (paths under the target root `{}`; [target] in the config)",
                    launch.root
                )?;
                writeln!(out, "{}", shell_join(&plan.container_command))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        if target.is_none() && !self.no_wait {
            return Err(cosmos_engine::EngineError::NoDefaultTarget.into());
        }
        // Refuse an unreachable or untrusted target before anything is stored.
        if let Some(t) = &target
            && !self.no_wait
            && let Some(ssh) = services.connect(t)?.ssh
        {
            ssh.connect()
                .await
                .map_err(cosmos_engine::EngineError::from)?;
        }
        let note = match &target {
            Some(t) => format!("queued for target {}", t.name),
            None => "queued; no target chosen yet".to_owned(),
        };
        let run = services
            .submit_run(plan, &note, self.target.as_deref())
            .await?;
        if self.no_wait || target.is_none() {
            if self.json {
                output::json(&mut out, &run)?;
            } else {
                writeln!(out, "{}", run.id)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        crate::live::execute(ctx, &services, &run.id, self.json).await
    }
}
