//! How records look to people: the tables and detail views several commands share.

use std::io::{self, Write};

use chrono::Utc;

use cosmos_core::{InputSet, Prompt, Run, RunEvent};

use crate::output::{Style, Table, age, local, truncate};

pub fn runs_table(out: &mut dyn Write, runs: &[Run], style: Style) -> io::Result<()> {
    let now = Utc::now();
    let mut t = Table::new(&[
        "ID", "STATUS", "PROMPT", "WEIGHTS", "SEED", "GPUS", "TARGET", "CREATED",
    ]);
    for r in runs {
        t.row(vec![
            r.id.to_string(),
            style.status(r.status),
            truncate(&r.prompt_name, 32),
            // An enhance run has no controls: it runs the prompt upsampler.
            match r.kind {
                cosmos_core::RunKind::Enhance => "(prompt upsampler)".to_owned(),
                _ => r.params.weights.to_string(),
            },
            r.params.seed.to_string(),
            r.params.gpus.to_string(),
            target_cell(r),
            age(r.created_at, now),
        ]);
    }
    t.print(out, style)
}

/// The target a run was placed on, marked when it was a rehearsal (cosmos-sim's output).
pub fn target_cell(r: &Run) -> String {
    match (&r.target, r.rehearsal) {
        (Some(t), true) => format!("{t} (rehearsal)"),
        (Some(t), false) => t.clone(),
        (None, _) => "-".into(),
    }
}

/// What a rehearsal run's output is, wherever a run is reported on its own.
pub const REHEARSAL_NOTE: &str =
    "rehearsal output: cosmos-sim stood in for Cosmos, so the video is a copy of the input";

pub fn input_files_table(out: &mut dyn Write, set: &InputSet, style: Style) -> io::Result<()> {
    let mut t = Table::new(&["KIND", "FRAMES", "FPS", "SIZE", "CODEC", "SHA256", "PATH"]);
    for f in &set.files {
        t.row(vec![
            f.kind.to_string(),
            f.video.frames.to_string(),
            format!("{:.3}", f.video.fps)
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned(),
            format!("{}x{}", f.video.width, f.video.height),
            f.video.codec.clone(),
            f.sha256.chars().take(12).collect(),
            f.path.clone(),
        ]);
    }
    t.print(out, style)
}

pub fn field(out: &mut dyn Write, style: Style, name: &str, value: &str) -> io::Result<()> {
    writeln!(out, "{} {value}", style.dim(&format!("{name:<10}")))
}

/// A field holding text a user wrote: its control characters are shown, not obeyed.
fn text_field(out: &mut dyn Write, style: Style, name: &str, value: &str) -> io::Result<()> {
    field(out, style, name, &crate::output::visible(value, 11))
}

pub fn input_set(
    out: &mut dyn Write,
    set: &InputSet,
    prompts: Option<u64>,
    style: Style,
) -> io::Result<()> {
    field(out, style, "input set", &style.bold(set.id.as_str()))?;
    text_field(out, style, "name", &set.name)?;
    text_field(out, style, "folder", &set.dir)?;
    field(out, style, "created", &local(set.created_at))?;
    if let Some(first) = set.files.first() {
        let b = cosmos_core::resolution::bucket_for(first.video.width, first.video.height);
        field(
            out,
            style,
            "cosmos",
            &format!(
                "{}x{} ({}), {} frames → {} clip(s)",
                b.width,
                b.height,
                b.aspect,
                first.video.frames,
                cosmos_core::resolution::clip_count(first.video.frames)
            ),
        )?;
    }
    if let Some(n) = prompts {
        field(out, style, "prompts", &n.to_string())?;
    }
    writeln!(out)?;
    input_files_table(out, set, style)
}

pub fn prompt(out: &mut dyn Write, p: &Prompt, style: Style) -> io::Result<()> {
    field(out, style, "prompt", &style.bold(p.id.as_str()))?;
    text_field(out, style, "name", &p.name)?;
    field(out, style, "created", &local(p.created_at))?;
    if p.updated_at != p.created_at {
        field(out, style, "edited", &local(p.updated_at))?;
    }
    field(
        out,
        style,
        "inputs",
        p.input_set_id.as_ref().map_or("-", |i| i.as_str()),
    )?;
    if let Some(parent) = &p.parent_id {
        field(out, style, "enhanced from", parent.as_str())?;
    }
    if let Some(model) = &p.model {
        field(out, style, "model", model)?;
    }
    text_field(out, style, "text", &p.text)?;
    text_field(out, style, "negative", p.negative.as_deref().unwrap_or("-"))
}

pub fn run(out: &mut dyn Write, r: &Run, events: &[RunEvent], style: Style) -> io::Result<()> {
    field(out, style, "run", &style.bold(r.id.as_str()))?;
    field(out, style, "status", &style.status(r.status))?;
    field(out, style, "kind", r.kind.as_str())?;
    if let Some(name) = &r.name {
        text_field(out, style, "name", name)?;
    }
    text_field(
        out,
        style,
        "prompt",
        &format!("{} ({})", r.prompt_name, r.prompt_id),
    )?;
    field(
        out,
        style,
        "inputs",
        r.input_set_id.as_ref().map_or("-", |i| i.as_str()),
    )?;
    field(out, style, "target", &target_cell(r))?;
    if r.rehearsal {
        field(out, style, "rehearsal", REHEARSAL_NOTE)?;
    }
    if let Some(b) = &r.batch_id {
        let line = r
            .batch_line
            .map_or_else(String::new, |l| format!(", line {} (video_{l})", l + 1));
        field(
            out,
            style,
            "batch",
            &format!("{b}{line}: one model process for several runs"),
        )?;
    }
    field(out, style, "created", &local(r.created_at))?;
    if let Some(t) = r.started_at {
        field(out, style, "started", &local(t))?;
    }
    if let Some(t) = r.finished_at {
        field(out, style, "finished", &local(t))?;
    }
    if let Some(reason) = &r.failure_reason {
        text_field(out, style, "reason", reason)?;
    }
    if let Some(of) = &r.retry_of {
        field(out, style, "retry of", of.as_str())?;
    }
    if let Some(by) = &r.retried_by {
        field(out, style, "retried as", by.as_str())?;
    }
    if let Some(of) = &r.upscale_of {
        field(out, style, "upscale of", of.as_str())?;
    }
    if !r.upscaled_by.is_empty() {
        let ids: Vec<&str> = r.upscaled_by.iter().map(|i| i.as_str()).collect();
        field(out, style, "upscaled as", &ids.join(", "))?;
    }
    if r.rating.is_some() || r.favourite {
        let stars = r
            .rating
            .map_or_else(|| "unrated".into(), |n| "★".repeat(n.into()));
        let fav = if r.favourite { " · favourite" } else { "" };
        field(out, style, "rating", &format!("{stars}{fav}"))?;
    }
    if let Some(s) = &r.supply {
        // What it ran on: two runs with the same three ran the same code on the same weights.
        if let Some(image) = &s.image {
            let digest = s.image_digest.as_deref().unwrap_or("digest unknown");
            field(out, style, "image", &format!("{image} ({digest})"))?;
        }
        field(
            out,
            style,
            "checkout",
            s.checkout_commit
                .as_deref()
                .unwrap_or("unknown (not set up by cosmos)"),
        )?;
        field(
            out,
            style,
            "checkpoints",
            &s.manifest_hash.as_deref().map_or_else(
                || "no manifest (not set up by cosmos)".to_owned(),
                |h| format!("manifest sha256 {h}"),
            ),
        )?;
    }
    if let Some(g) = &r.gpu_usage {
        field(
            out,
            style,
            "GPU load",
            &format!(
                "utilisation {:.0}% mean, {}% peak · memory {:.1} GiB mean, {:.1} GiB peak ({} samples)",
                g.utilization_mean,
                g.utilization_peak,
                g.memory_mean_mib / 1024.0,
                g.memory_peak_mib as f64 / 1024.0,
                g.samples
            ),
        )?;
    }
    let p = &r.params;
    if r.kind != cosmos_core::RunKind::Enhance {
        field(out, style, "weights", &p.weights.to_string())?;
    }
    let params = if p.model == cosmos_core::model::DEFAULT_MODEL {
        format!(
            "seed {} · steps {} · guidance {} · sigma_max {} · fps {} · blur {} · canny {} · gpus {}",
            p.seed,
            p.steps,
            p.guidance,
            p.sigma_max,
            p.fps,
            p.blur_strength,
            p.canny_threshold,
            p.gpus
        )
    } else {
        field(out, style, "model", &p.model)?;
        let sigma = if p.sigma_max_unset {
            "the model's".to_owned()
        } else {
            p.sigma_max.to_string()
        };
        let mut text = format!(
            "seed {} · steps {} · guidance {} · sigma_max {sigma} · blur {} · edge threshold {} · gpus {}",
            p.seed, p.steps, p.guidance, p.blur_strength, p.canny_threshold, p.gpus
        );
        if let Some(n) = p.num_conditional_frames {
            text.push_str(&format!(" · conditional frames {n}"));
        }
        if let Some(r) = &p.resolution {
            text.push_str(&format!(" · resolution {r}"));
        }
        for (hint, words) in &p.mask_prompts {
            text.push_str(&format!(" · {hint} mask \"{words}\""));
        }
        for (hint, m) in &p.mask_files {
            text.push_str(&format!(" · {hint} mask {}", m.path));
        }
        text
    };
    field(out, style, "params", &params)?;
    if r.prompt_text.is_empty() {
        field(out, style, "text", "(none: Cosmos's default prompt)")?;
    } else {
        text_field(out, style, "text", &r.prompt_text)?;
    }
    if let Some(used) = &r.model_prompt {
        text_field(out, style, "model used", used)?;
    }
    text_field(
        out,
        style,
        "negative",
        r.negative_prompt.as_deref().unwrap_or("-"),
    )?;
    for o in &r.outputs {
        field(
            out,
            style,
            "output",
            &format!("{} ({} bytes, sha256 {})", o.path, o.size, o.sha256),
        )?;
    }
    writeln!(out)?;
    let mut t = Table::new(&["TIME", "STAGE", "PROGRESS", "MESSAGE"]);
    for e in events {
        t.row(vec![
            local(e.at),
            e.stage.to_string(),
            e.progress
                .map_or_else(|| "-".into(), |p| format!("{:.0}%", p * 100.0)),
            crate::output::truncate(&e.message, 240),
        ]);
    }
    t.print(out, style)
}
