//! Stills for the dashboard: a run's poster (made when it is collected, or on first request
//! for runs collected before posters existed) and a thumbnail of each control video (made
//! on first request, kept by the video's hash). Both made by ffmpeg through cosmos-media.

use std::path::{Path, PathBuf};

use cosmos_core::{InputKind, InputSetId, RunId};

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::execute::local_poster;

impl Services {
    /// Writes the still of `video` to `out` (its folder made if need be).
    pub(crate) async fn make_poster(&self, video: PathBuf, out: PathBuf) -> EngineResult<()> {
        let ffmpeg = cosmos_media::ffmpeg_beside(self.ffprobe.program());
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir).map_err(|source| cosmos_media::MediaError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            cosmos_media::poster(&ffmpeg, &video, &out, 0.5)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("making a poster stopped: {e}")))?
        .map_err(EngineError::from)
    }

    /// A run's poster under `data_dir`, made now when it has an output video but no poster.
    pub(crate) async fn run_poster(
        &self,
        id: &RunId,
        data_dir: &Path,
    ) -> EngineResult<Option<PathBuf>> {
        let out = local_poster(data_dir, id);
        if out.is_file() {
            return Ok(Some(out));
        }
        let run = self.store().run(id).await?;
        let Some(video) = run
            .outputs
            .iter()
            .find(|o| o.path.ends_with(".mp4") && Path::new(&o.path).is_file())
        else {
            return Ok(None);
        };
        self.make_poster(PathBuf::from(&video.path), out.clone())
            .await?;
        Ok(Some(out))
    }

    /// A thumbnail of an input set's `kind` video under `data_dir/thumbs`, by its hash.
    pub(crate) async fn input_thumbnail(
        &self,
        set: &InputSetId,
        kind: InputKind,
        data_dir: &Path,
    ) -> EngineResult<Option<(PathBuf, String)>> {
        let set = self.store().input_set(set).await?;
        let Some(file) = set.file(kind).filter(|f| Path::new(&f.path).is_file()) else {
            return Ok(None);
        };
        let out = data_dir.join("thumbs").join(format!("{}.jpg", file.sha256));
        if !out.is_file() {
            self.make_poster(PathBuf::from(&file.path), out.clone())
                .await?;
        }
        Ok(Some((out, file.sha256.clone())))
    }
}
