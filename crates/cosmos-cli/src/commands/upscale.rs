//! `cosmos upscale`: a 4K upscale of a run's output (now, or once it succeeds) or of a video.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use cosmos_engine::{UpscaleRequest, UpscaleSource};

use crate::context::Ctx;
use crate::output;

/// Upscale a run's output (or a video) to 4K with Cosmos-Transfer1's upscaler
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The output is three times the video's resolution bucket (1280×704 → 3840×2112), made in\n10 steps. A run's upscale goes to the target that made the run, whose verified output is\nused there (nothing is uploaded again); a run still queued or running is upscaled once it\nsucceeds. A video larger than its bucket is refused: Cosmos would shrink it first.\n\nExamples:\n  cosmos upscale rs_01jd\n  cosmos upscale rs_01jd --weight 0.7 --prompt \"a foggy harbour at dawn, fine detail\"\n  cosmos upscale renders/final/shot010.mp4 --target gpu1"
)]
pub struct Args {
    /// A run id (any unique prefix), or the path of a video file
    source: String,
    /// The upscale control's weight, 0 to 1 [default: 0.5]
    #[arg(long, value_name = "W")]
    weight: Option<f64>,
    /// Text for the upscaler [default: the run's prompt; for a video, Cosmos's default prompt]
    #[arg(long)]
    prompt: Option<String>,
    /// The target to run on [default: the one that made the run; any for a video]
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Queue order: higher runs first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Queue the upscale and return at once
    #[arg(long)]
    no_wait: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        // A path (an existing file, or anything with a slash or a video extension) is a video;
        // run ids never look like one.
        let path = PathBuf::from(&self.source);
        let looks_like_file = path.is_file()
            || self.source.contains('/')
            || path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(cosmos_core::modality::is_video_extension);
        let source = if looks_like_file {
            UpscaleSource::Video(path)
        } else {
            UpscaleSource::Run(self.source.clone())
        };
        let run = services
            .runs()
            .upscale(&UpscaleRequest {
                source,
                weight: self.weight,
                prompt: self.prompt.clone(),
                target: self.target.clone(),
                priority: self.priority,
            })
            .await?;
        if self.no_wait {
            if self.json {
                output::json(&mut std::io::stdout().lock(), &run)?;
            } else {
                println!("{}", run.id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        crate::live::execute(ctx, &services, std::slice::from_ref(&run.id), self.json).await
    }
}
