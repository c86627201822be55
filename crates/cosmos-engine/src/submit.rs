//! Submitting work: one run, a sweep (seeds × a weight grid) or a runs file, each entry
//! planned exactly (spec and command on its target), checked against the targets' GPU slots
//! and their reachability, then stored as queued runs in one transaction.

mod sweep;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use cosmos_core::{Level, MaskFile, Run, RunParams, Target};

pub use sweep::{
    MAX_RUNS, SeedField, parse_runs as parse_runs_text, read_file as read_runs_file,
    seeds as parse_seeds, weight_grid as parse_weight_grid,
};

use crate::Services;
use crate::error::{EngineError, EngineResult, ErrorKind};
use crate::prompts::InputsRef;
use crate::runs::{LaunchDefaults, RunPlan, RunRequest, RunSubject};

/// One line of work: what `cosmos run`'s arguments, a runs file's entry (TOML `[[run]]` or a
/// JSON line, keys as the flags are named) or an API request say.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEntry {
    /// A prompt id or exact name, or the text of a new prompt.
    #[serde(rename = "prompt")]
    pub subject: String,
    /// With new text: a folder of control videos or an input set id.
    pub inputs: Option<String>,
    pub negative: Option<String>,
    pub name: Option<String>,
    /// One seed, or a list.
    pub seed: Option<SeedField>,
    /// `FIRST..LAST`.
    pub seeds: Option<String>,
    /// Weights, ranges (`start:stop:step`) making a grid.
    pub weights: Option<String>,
    pub steps: Option<u32>,
    pub guidance: Option<f64>,
    pub sigma_max: Option<f64>,
    pub fps: Option<u32>,
    pub blur_strength: Option<Level>,
    pub canny_threshold: Option<Level>,
    pub gpus: Option<u32>,
    pub priority: Option<i32>,
    pub target: Option<String>,
    /// Let Cosmos's prompt upsampler rewrite the prompt (the text it used is recorded).
    pub upsample_prompt: Option<bool>,
    /// Chain a 4K upscale of each run's output after it (queued now, held until it succeeds).
    pub upscale: Option<bool>,
    /// The chained upscale's control weight (0.5 by default; giving it implies `upscale`).
    pub upscale_weight: Option<f64>,
    /// The model (`transfer1`, the default, or `transfer2.5`).
    pub model: Option<String>,
    /// Cosmos-Transfer2.5: conditional frames between chunks (0–2).
    pub num_conditional_frames: Option<u32>,
    /// Cosmos-Transfer2.5: generation resolution (`720`, `480`).
    pub resolution: Option<String>,
    /// Cosmos-Transfer2.5: masks in words per control, `CONTROL=WORDS` (`edge=the car`).
    pub mask_prompt: Option<Vec<String>>,
    /// Cosmos-Transfer2.5: mask videos per control, `CONTROL=FILE` (white where the control
    /// applies), uploaded with the inputs.
    pub mask: Option<Vec<String>>,
}

/// What to submit, and how.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub entries: Vec<RunEntry>,
    /// The runs file the entries came from (named in errors and in the runs' first event).
    pub source: Option<PathBuf>,
    /// Parameters an entry leaves out.
    pub defaults: RunParams,
    /// The layout planned with while no target exists.
    pub launch: LaunchDefaults,
    /// Plan only: nothing is stored and no target is contacted.
    pub dry_run: bool,
    /// Queue without contacting a target (no reachability check).
    pub no_wait: bool,
    /// The most runs this submission may queue ([`sweep::MAX_RUNS`] when `None`).
    pub max_runs: Option<usize>,
}

/// What a submission planned and, unless it was a dry run, stored.
#[derive(Debug, Serialize)]
pub struct Submitted {
    pub plans: Vec<RunPlan>,
    /// The queued runs (empty for a dry run).
    pub runs: Vec<Run>,
    /// The target the last entry was planned on (its root heads the dry run).
    #[serde(skip)]
    pub planned_on: Target,
    /// False when no target exists yet to run on.
    pub has_target: bool,
    /// What Cosmos will do that the user may not expect.
    pub notes: Vec<String>,
}

impl RunEntry {
    async fn subject(&self, services: &Services) -> EngineResult<RunSubject> {
        if self.subject.to_ascii_lowercase().starts_with("ps_") {
            return Ok(match &self.inputs {
                // Videos for a prompt that has none become its own (said in the plan).
                Some(inputs) => RunSubject::PromptOn {
                    prompt: self.subject.clone(),
                    inputs: InputsRef::parse(inputs),
                },
                None => RunSubject::Prompt(self.subject.clone()),
            });
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

    /// The model-specific parameters this entry sets, by their flags.
    fn given(&self) -> Vec<&'static str> {
        [
            (self.fps.is_some(), "--fps"),
            (self.upsample_prompt == Some(true), "--upsample-prompt"),
            (
                self.upscale == Some(true) || self.upscale_weight.is_some(),
                "--upscale",
            ),
            (
                self.num_conditional_frames.is_some(),
                "--num-conditional-frames",
            ),
            (self.resolution.is_some(), "--resolution"),
            (
                self.mask_prompt.as_ref().is_some_and(|m| !m.is_empty()),
                "--mask-prompt",
            ),
            (self.mask.as_ref().is_some_and(|m| !m.is_empty()), "--mask"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect()
    }

    /// Every parameter set this entry asks for: seeds × weight grid.
    /// `prompt_model`: the model of the stored prompt the entry runs, if it has one (the
    /// entry's own `model` wins, then it, then the configured default).
    fn variants(
        &self,
        defaults: &RunParams,
        prompt_model: Option<&str>,
        max: usize,
    ) -> EngineResult<Vec<RunParams>> {
        let mut base = defaults.clone();
        let named = self.model.as_deref().or(prompt_model);
        let model = cosmos_core::model::model(named.unwrap_or(&defaults.model)).map_err(|e| {
            EngineError::refused(ErrorKind::InvalidInput, "unknown_model", e.to_string())
        })?;
        // The model's own defaults, where the configuration left Cosmos-Transfer1's.
        if model.name() != cosmos_core::model::DEFAULT_MODEL {
            let (t1, mut own) = (RunParams::default(), base.clone());
            model.defaults(&mut own);
            if base.seed == t1.seed {
                base.seed = own.seed;
            }
            if base.guidance == t1.guidance {
                base.guidance = own.guidance;
            }
            if base.steps == t1.steps {
                base.steps = own.steps;
            }
            if base.sigma_max == t1.sigma_max {
                base.sigma_max_unset = own.sigma_max_unset;
            }
        }
        base.model = model.name().to_owned();
        if self.sigma_max.is_some() {
            base.sigma_max_unset = false;
        }
        base.num_conditional_frames = self.num_conditional_frames.or(base.num_conditional_frames);
        base.resolution = self.resolution.clone().or(base.resolution);
        for m in self.mask_prompt.iter().flatten() {
            let (hint, words) = per_control("--mask-prompt", m, "WORDS", "the red car")?;
            crate::prompts::validate_text("mask prompt", words)?;
            base.mask_prompts.insert(hint, words.to_owned());
        }
        for m in self.mask.iter().flatten() {
            let (hint, path) = per_control("--mask", m, "FILE", "masks/car.mp4")?;
            // Read (found, probed, hashed) by `read_masks` once the model has taken it.
            let path = path.to_owned();
            let (size, sha256) = (0, String::new());
            base.mask_files
                .insert(hint, MaskFile { path, size, sha256 });
        }
        base.steps = self.steps.unwrap_or(base.steps);
        base.guidance = self.guidance.unwrap_or(base.guidance);
        base.sigma_max = self.sigma_max.unwrap_or(base.sigma_max);
        base.fps = self.fps.unwrap_or(base.fps);
        base.blur_strength = self.blur_strength.unwrap_or(base.blur_strength);
        base.canny_threshold = self.canny_threshold.unwrap_or(base.canny_threshold);
        base.gpus = self.gpus.unwrap_or(base.gpus);
        base.upsample_prompt = self.upsample_prompt.unwrap_or(base.upsample_prompt);
        let seed = self.seed.as_ref().map(SeedField::as_list);
        let mut seeds = sweep::seeds(seed.as_deref(), self.seeds.as_deref(), max)?;
        if seeds.is_empty() {
            seeds.push(base.seed);
        }
        let grid = match &self.weights {
            Some(w) => sweep::weight_grid(w)?,
            None => vec![base.weights.clone()],
        };
        if seeds.len() * grid.len() > max {
            return Err(too_many(seeds.len() * grid.len(), max, || {
                format!("{} seeds × {} weight settings", seeds.len(), grid.len())
            }));
        }
        let mut out = Vec::with_capacity(seeds.len() * grid.len());
        let given = self.given();
        for w in &grid {
            for s in &seeds {
                let mut p = base.clone();
                p.seed = *s;
                p.weights = w.clone();
                model.check_given(&given, &p).map_err(|e| {
                    EngineError::refused(
                        ErrorKind::InvalidInput,
                        "wrong_model_parameter",
                        e.to_string(),
                    )
                })?;
                out.push(p);
            }
        }
        if let Some(hint) = base
            .mask_files
            .keys()
            .find(|h| base.mask_prompts.contains_key(*h))
        {
            return Err(EngineError::Invalid(format!(
                "--mask {hint}=… and --mask-prompt {hint}=…: a control's mask is a video or words, not both ({} takes only one of mask_path or mask_prompt)",
                model.title()
            )));
        }
        Ok(out)
    }

    /// Plans every run of the entry (its `variants`): the first fully, the rest as its
    /// variants.
    async fn plan(
        &self,
        services: &Services,
        variants: Vec<RunParams>,
        target: &Target,
    ) -> EngineResult<Vec<RunPlan>> {
        let request = RunRequest {
            subject: self.subject(services).await?,
            negative: self.negative.clone(),
            params: variants[0].clone(),
            name: self.name.clone(),
        };
        let mut first = services.plan_run(&request, target).await?;
        first.priority = self.priority.unwrap_or(0);
        first.target_pin = self.target.clone();
        if self.upscale == Some(true) || self.upscale_weight.is_some() {
            let weight = self
                .upscale_weight
                .unwrap_or(crate::upscale::DEFAULT_WEIGHT);
            // Checked now, not when the first run succeeds.
            crate::upscale::upscale_params(&first.params, weight)?;
            first.upscale = Some(weight);
            first.notes.push(format!(
                "each run is followed by a 4K upscale of its output (upscale weight {weight}, {} steps), queued now and run on the same target once it succeeds",
                crate::upscale::STEPS
            ));
        }
        let mut plans = Vec::with_capacity(variants.len());
        for params in &variants[1..] {
            plans.push(services.plan_variant(&first, params, target)?);
        }
        plans.insert(0, first);
        Ok(plans)
    }
}

/// `CONTROL=VALUE` of a per-control flag (`--mask edge=car.mp4`): the control and the value,
/// trimmed; a missing `=`, an unknown control or an empty value says what to give.
fn per_control<'a>(
    flag: &str,
    given: &'a str,
    value: &str,
    example: &str,
) -> EngineResult<(cosmos_core::Hint, &'a str)> {
    let usage = || {
        EngineError::Invalid(format!(
            "{flag} `{given}`: give CONTROL={value}, e.g. `edge={example}`"
        ))
    };
    let (hint, rest) = given.split_once('=').ok_or_else(usage)?;
    let hint = hint.trim().parse().map_err(|e: cosmos_core::UnknownHint| {
        EngineError::Invalid(format!("{flag} `{given}`: {e}"))
    })?;
    match rest.trim() {
        "" => Err(usage()),
        rest => Ok((hint, rest)),
    }
}

/// A submission past its cap: how many it would queue, and how to mean it.
fn too_many(count: usize, max: usize, what: impl FnOnce() -> String) -> EngineError {
    EngineError::Refused {
        kind: crate::error::ErrorKind::InvalidInput,
        code: "too_many_runs",
        message: format!(
            "{} would queue {count} runs, more than the {max} one submission may: pass --max-runs {count} if you mean it",
            what()
        ),
    }
}

/// An error in entry `i` of a runs file says which.
fn in_entry(source: &Option<PathBuf>, i: usize, e: EngineError) -> EngineError {
    match source {
        Some(path) => EngineError::Invalid(format!("{} run {}: {e}", path.display(), i + 1)),
        None => e,
    }
}

impl Services {
    /// The model of the stored prompt an entry runs, when the entry names no model of its
    /// own (a prompt that cannot be found is reported when the entry is planned).
    async fn prompt_model(&self, entry: &RunEntry) -> Option<String> {
        if entry.model.is_some() {
            return None;
        }
        let subject = entry.subject.trim();
        let prompt = if subject.to_ascii_lowercase().starts_with("ps_") {
            let id = self.resolve_prompt(subject).await.ok()?;
            self.store().prompt(&id).await.ok()?
        } else if entry.inputs.is_none() {
            self.store().prompt_by_name(subject).await.ok()??
        } else {
            return None;
        };
        prompt.model
    }

    /// Reads the mask videos an entry gives (the same for all its runs): each must be a
    /// video ffprobe reads; its size and hash are recorded now (staging checks the size,
    /// the upload the hash).
    async fn read_masks(&self, variants: &mut [RunParams]) -> EngineResult<()> {
        let Some(given) = variants
            .first()
            .map(|p| p.mask_files.clone())
            .filter(|m| !m.is_empty())
        else {
            return Ok(());
        };
        let ffprobe = self.ffprobe.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for (hint, m) in given {
                let path = std::fs::canonicalize(&m.path).map_err(|e| {
                    EngineError::Invalid(format!(
                        "--mask {hint}={}: {e}: give the path of a mask video",
                        m.path
                    ))
                })?;
                if let Err(e) = ffprobe.probe(&path) {
                    return Err(EngineError::Invalid(format!(
                        "--mask {hint}={}: not a video ffprobe can read ({e}): a mask is a video, white where the control applies",
                        m.path
                    )));
                }
                let (sha256, size) = cosmos_media::sha256_file(&path)?;
                let path = path.display().to_string();
                out.insert(hint, MaskFile { path, size, sha256 });
            }
            Ok::<_, EngineError>(out)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("reading the mask videos stopped: {e}")))??;
        for p in variants {
            p.mask_files = read.clone();
        }
        Ok(())
    }

    /// The target a run of `model` is planned on: the one chosen, if it is set up for the
    /// model; else the default, or the first target that is. A run no target can take is
    /// refused now rather than queued for ever (a dry run plans on the defaults instead).
    async fn target_for_model(
        &self,
        chosen: Option<Target>,
        named: bool,
        model: &str,
        dry_run: bool,
    ) -> EngineResult<Option<Target>> {
        let fits = chosen.as_ref().is_none_or(|t| t.config.runs_model(model));
        if fits && (chosen.is_some() || dry_run) {
            return Ok(chosen);
        }
        let title = cosmos_core::model::model(model).map_or(model, |m| m.title());
        if let Some(t) = chosen.as_ref().filter(|_| named) {
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "model_not_on_target",
                format!(
                    "target `{}` is set up for {} and this run is for {title}: choose a target set up for it, or add one with `cosmos target add NAME … --model {model}`",
                    t.name,
                    t.config.models().join(", ")
                ),
            ));
        }
        let targets = self.store().list_targets().await?;
        if let Some(t) = targets.into_iter().find(|t| t.config.runs_model(model)) {
            return Ok(Some(t));
        }
        if dry_run || chosen.is_none() {
            // No target at all (or a dry run): the usual "add a target" path says what to do.
            if chosen.is_none() {
                return Ok(None);
            }
            return Ok(chosen);
        }
        Err(EngineError::refused(
            ErrorKind::InvalidInput,
            "model_not_on_target",
            format!(
                "no target is set up for {title}: add one with `cosmos target add NAME … --model {model}` (and `cosmos target setup NAME`)"
            ),
        ))
    }

    /// Plans the entries and, unless it is a dry run, checks that every run fits a target's
    /// GPU slots and that the targets answer, then queues them all in one transaction.
    #[tracing::instrument(level = "info", skip_all, fields(entries = req.entries.len(), dry_run = req.dry_run))]
    pub(crate) async fn submit(&self, req: SubmitRequest) -> EngineResult<Submitted> {
        let max = req.max_runs.unwrap_or(sweep::MAX_RUNS);
        // Counted before anything is planned: a flood is refused at once, with its size.
        let mut variants = Vec::with_capacity(req.entries.len());
        for (i, entry) in req.entries.iter().enumerate() {
            let prompt_model = self.prompt_model(entry).await;
            let mut planned = entry
                .variants(&req.defaults, prompt_model.as_deref(), max)
                .map_err(|e| in_entry(&req.source, i, e))?;
            self.read_masks(&mut planned)
                .await
                .map_err(|e| in_entry(&req.source, i, e))?;
            variants.push(planned);
        }
        let count: usize = variants.iter().map(Vec::len).sum();
        if count > max {
            let what = match &req.source {
                Some(path) => format!("{} ({} entries)", path.display(), req.entries.len()),
                None => "this submission".to_owned(),
            };
            return Err(too_many(count, max, || what));
        }
        let mut plans = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut has_target = true;
        let mut planned_on = req.launch.as_target();
        for (i, (entry, variants)) in req.entries.iter().zip(variants).enumerate() {
            let target = match self.find_target(entry.target.as_deref()).await {
                Ok(t) => Some(t),
                // Validation errors come first; the missing target is reported after planning.
                Err(EngineError::NoDefaultTarget) if entry.target.is_none() => None,
                Err(e) => return Err(e),
            };
            let model = variants
                .first()
                .map_or(cosmos_core::model::DEFAULT_MODEL, |p| p.model.as_str());
            // A run no target can take is refused, after its own parameters are checked.
            let (target, unplaceable) = match self
                .target_for_model(target, entry.target.is_some(), model, req.dry_run)
                .await
            {
                Ok(t) => (t, None),
                Err(e) => (None, Some(in_entry(&req.source, i, e))),
            };
            planned_on = target.clone().unwrap_or_else(|| req.launch.as_target());
            has_target &= target.is_some();
            if let Some(t) = target
                && !targets.iter().any(|k| k.name == t.name)
            {
                targets.push(t);
            }
            let planned = entry
                .plan(self, variants, &planned_on)
                .await
                .map_err(|e| in_entry(&req.source, i, e))?;
            if let Some(e) = unplaceable {
                return Err(e);
            }
            plans.extend(planned);
        }
        let mut notes = plans.first().map(|p| p.notes.clone()).unwrap_or_default();
        if plans.is_empty() {
            return Err(EngineError::Invalid("nothing to run".into()));
        }
        // Cosmos-Transfer1 ignores canny_threshold (reference R4): its edge detector draws
        // random thresholds seeded by --seed, and a given edge video is used as it is.
        let mut levels: Vec<&str> = plans
            .iter()
            .filter(|p| p.params.model == cosmos_core::model::DEFAULT_MODEL)
            .map(|p| p.params.canny_threshold.as_str())
            .collect();
        levels.sort_unstable();
        levels.dedup();
        if levels.len() > 1 {
            return Err(EngineError::refused(
                crate::ErrorKind::InvalidInput,
                "canny_sweep",
                format!(
                    "these runs differ in canny_threshold ({}), which changes nothing Cosmos-Transfer1 makes: it picks the edge thresholds at random from the seed, or uses a given edge video as it is. Sweep seeds (--seeds) or edge weights instead",
                    levels.join(", ")
                ),
            ));
        }
        if req.entries.iter().any(|e| {
            e.canny_threshold.is_some() && e.model.as_deref().is_none_or(|m| m == "transfer1")
        }) {
            notes.push(
                "canny_threshold has no effect: Cosmos-Transfer1 picks the edge thresholds at random (seeded by --seed) when it computes the edge video, and uses a given edge video as it is".into(),
            );
        }
        if req.dry_run {
            return Ok(Submitted {
                plans,
                runs: Vec::new(),
                planned_on,
                has_target,
                notes,
            });
        }
        if !has_target && !req.no_wait {
            return Err(EngineError::NoDefaultTarget);
        }
        self.check_fit(&plans).await?;
        // Refuse an unreachable or untrusted target before anything is stored.
        if !req.no_wait {
            for t in &targets {
                if let Some(ssh) = self.connect(t)?.ssh {
                    ssh.connect().await?;
                }
            }
        }
        let mut note = match (&req.source, plans.len()) {
            (Some(path), n) => format!("queued from {} ({n} runs)", path.display()),
            (None, 1) => "queued".to_owned(),
            (None, n) => format!("queued in a sweep of {n} runs"),
        };
        if !has_target {
            note.push_str("; no target chosen yet");
        }
        let runs = self.submit_runs(plans, &note).await?;
        Ok(Submitted {
            plans: Vec::new(),
            runs,
            planned_on,
            has_target,
            notes,
        })
    }

    /// A run no target has the GPU slots for would wait for ever.
    async fn check_fit(&self, plans: &[RunPlan]) -> EngineResult<()> {
        let all = self.store().list_targets().await?;
        if all.is_empty() {
            return Ok(());
        }
        let anywhere = crate::targets::takes_unnamed_runs(&all);
        for p in plans {
            let want = p.params.gpus;
            let fits = |t: &&Target| t.config.gpus >= want;
            let ok = match &p.target_pin {
                Some(pin) => all.iter().filter(|t| &t.name == pin).any(|t| fits(&t)),
                None => all.iter().filter(|t| anywhere(t)).any(|t| fits(&t)),
            };
            if ok {
                continue;
            }
            let most = all
                .iter()
                .filter(|t| anywhere(t))
                .map(|t| t.config.gpus)
                .max()
                .unwrap_or(0);
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
            return Err(EngineError::DoesNotFit { want, place });
        }
        Ok(())
    }
}
