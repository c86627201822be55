//! `cosmos quickstart`: a rehearsal from nothing to a finished run, with no GPU and no Docker.
//! It makes a small demo scene with ffmpeg, registers it, writes a prompt and runs it on a
//! local `rehearsal` target where cosmos-sim stands in for Cosmos-Transfer1.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

use cosmos_core::RunParams;
use cosmos_engine::{InputsRef, RunRequest, RunSubject};

use crate::context::Ctx;
use crate::live::{self, Ended};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The prompt for the demo run
    #[arg(
        long,
        default_value = "a rainy neon street at night, reflections on wet asphalt"
    )]
    prompt: String,
}

/// The rehearsal target's name.
pub const REHEARSAL: &str = "rehearsal";

fn sim_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the cosmos binary")?;
    let sim = exe.with_file_name("cosmos-sim");
    if sim.is_file() {
        return Ok(sim);
    }
    bail!(
        "cosmos-sim is not next to {} : build the workspace (`cargo build --release`) so both binaries sit together",
        exe.display()
    )
}

fn ffmpeg(args: &[&str], out: &Path) -> Result<()> {
    if out.is_file() {
        return Ok(());
    }
    let tmp = out.with_extension("part.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .arg(&tmp)
        .status()
        .context("cannot run ffmpeg: install it (Debian: apt-get install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", out.display());
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let base = ctx.settings.paths.data_dir.join("rehearsal");
        let scene = base.join("demo-scene");
        std::fs::create_dir_all(&scene)
            .with_context(|| format!("cannot create {}", scene.display()))?;
        let target = services
            .targets()
            .put_rehearsal(REHEARSAL, &base, &sim_binary()?)
            .await?;
        ctx.say(
            "quickstart",
            "making a demo scene with ffmpeg (colour, depth, edges; 2 s at 24 fps)",
        );
        // The same 49 frames of a test pattern: as is, as a blurred grey "depth", as edges.
        for (file, filter) in [
            ("color.mp4", None),
            ("depth.mp4", Some("format=gray,boxblur=4")),
            ("edge.mp4", Some("edgedetect")),
        ] {
            let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=320x176:rate=24"];
            args.extend(["-frames:v", "49"]);
            if let Some(f) = filter {
                args.extend(["-vf", f]);
            }
            ffmpeg(&args, &scene.join(file))?;
        }
        let plan = services
            .runs()
            .plan(
                &RunRequest {
                    subject: RunSubject::Text {
                        text: self.prompt.clone(),
                        inputs: Some(InputsRef::Dir(scene.clone())),
                    },
                    negative: None,
                    params: RunParams::default(),
                    name: None,
                },
                &target,
            )
            .await?;
        let run = services
            .runs()
            .queue_plan(plan, "quickstart rehearsal", Some(REHEARSAL))
            .await?;
        ctx.say(
            "quickstart",
            &format!(
                "running {} on the local rehearsal target (cosmos-sim, no GPU)",
                run.id
            ),
        );
        let run =
            match live::see_through(&services, std::slice::from_ref(&run.id), false, true).await? {
                Ended::Finished(mut runs) => match runs.pop() {
                    Some(run) => run,
                    None => return Ok(ExitCode::SUCCESS),
                },
                Ended::Detached => return Ok(ExitCode::SUCCESS),
            };
        let code = live::report(&run);
        ctx.say(
            "quickstart",
            &format!(
                "done. This was a REHEARSAL: the video is a copy of the input made by cosmos-sim, not Cosmos output.\n  see it:   cosmos show {}\n  real GPU: cosmos target add gpu1 ssh://you@gpu-host --default && cosmos target trust gpu1 && cosmos target check gpu1",
                run.id
            ),
        );
        Ok(code)
    }
}
