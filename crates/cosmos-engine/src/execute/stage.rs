//! Staging a run: the target's preflight, the inputs uploaded once and linked, spec.json and
//! the owner-only env file written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cosmos_core::launch::RunLayout;
use cosmos_core::{Run, RunKind, RunStatus};
use cosmos_remote::blobs::{self, LocalBlob};
use cosmos_remote::{RemoteError, args};

use super::transfer_events::{TransferEvents, gib_or_mib};
use super::{Drive, Failure, devices_of};
use crate::Services;
use crate::error::EngineError;
use crate::runs::extension;
use crate::targets::{Connected, GPU_QUERY, Preflight, parse_gpus};

/// How long a target's passed preflight is trusted before it is checked again.
const PREFLIGHT_FRESH: Duration = Duration::from_secs(60);
/// Room kept free on a target beyond the inputs, for the model's outputs and log.
const DISK_MARGIN: u64 = 64 << 20;

/// Makes a run's folders and links blobs into its inputs folder (a batch line's own folder
/// under it is made once, for its first link):
/// `sh -c SCRIPT sh OUTPUTS INPUTS HF_CACHE BLOB LINK BLOB LINK …` (the target's Hugging
/// Face cache is made by the login user, before docker would make it as root).
const LINK_SCRIPT: &str = r#"mkdir -p -- "$1" "$2" "$3" || exit 1; d=$1; shift 3
while [ $# -gt 1 ]; do
  case $2 in "$d"/*) ;; *) d=${2%/*}; mkdir -p -- "$d" || exit 1 ;; esac
  ln -sfn -- "$1" "$2" || exit 1; shift 2
done"#;

impl Services {
    /// Uploads the inputs (once), links them, writes spec.json and the env file; checks what
    /// can be checked before any GPU time is spent.
    pub(super) async fn stage(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        d: &Drive,
    ) -> Result<(), Staging> {
        let h = &c.host;
        let name = &c.target.name;
        self.check_placement(c, d, run).await?;
        let files = self.input_files(run).await?;
        // What the model reads beside its inputs: the spec, or (an enhance run) the prompt
        // the upsampler rewrites; and the checkpoints it needs, checked before a byte is sent.
        let (needs, file, content) = if run.kind == RunKind::Enhance {
            let needs = vec![cosmos_core::setup::UPSAMPLER];
            (needs, layout.prompt_file(), run.prompt_text.clone())
        } else {
            let spec = crate::runs::spec_for(
                run.kind,
                run.id.as_str(),
                &run.prompt_text,
                run.negative_prompt.as_deref(),
                &run.params,
                &files,
                layout,
            )
            .map_err(invalid_spec)?;
            let mut text = serde_json::to_string_pretty(&spec.json).unwrap_or_default();
            text.push('\n');
            // What the model needs in the checkout's checkpoints folder (an upscale run is
            // Cosmos-Transfer1's upscaler; a model that downloads its own needs none there).
            let needs = match run.kind {
                RunKind::Upscale => {
                    cosmos_core::setup::needed_checkpoints(&spec.json, spec.is_av, false)
                }
                _ => crate::runs::model_of(&run.params)
                    .map_err(invalid_spec)?
                    .checkpoint_needs(&spec),
            };
            (needs, layout.spec(), text)
        };
        self.check_needs(c, d, &needs).await?;
        if run.kind == RunKind::Transfer {
            let model = crate::runs::model_of(&run.params).map_err(invalid_spec)?;
            self.check_entry_point(c, model).await?;
        }
        let blobs_in = local_blobs(&files).map_err(Staging::Fail)?;
        if let Some(parent) = &run.upscale_of {
            self.check_upscale_input(parent, &files[0]).await?;
            self.adopt_parent_output(c, d, parent, &blobs_in).await?;
        }
        let masks = mask_blobs(&run.params).map_err(Staging::Fail)?;
        let mut sent = blobs_in;
        sent.extend(masks.iter().map(|(_, b)| b.clone()));
        let paths = self.upload_inputs(c, d, &sent).await?;
        // Placement prefers this target for later runs on these inputs.
        if let Some(set) = &run.input_set_id {
            self.store()
                .note_inputs_on_target(name, set)
                .await
                .map_err(|e| Staging::Error(e.into()))?;
        }
        let (input_paths, mask_paths) = paths.split_at(files.len());
        let links: Vec<(String, String)> = files
            .iter()
            .zip(input_paths)
            .map(|(f, blob)| (blob.clone(), layout.input(f.kind, extension(&f.path))))
            .chain(
                masks
                    .iter()
                    .zip(mask_paths)
                    .map(|(((stem, ext), _), blob)| (blob.clone(), layout.input(stem, ext))),
            )
            .collect();
        self.link_inputs(c, layout, &links).await?;
        h.files
            .write(&file, content.as_bytes(), 0o644)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        self.write_env(c, layout, &devices_of(run)).await
    }

    /// An upscale's input is its parent's output: when the parent ran on this target, the
    /// verified file still there becomes the input's blob (hashed there, linked, nothing
    /// sent); otherwise the local copy is uploaded as any input is.
    async fn adopt_parent_output(
        &self,
        c: &Connected,
        d: &Drive,
        parent: &cosmos_core::RunId,
        blobs_in: &[LocalBlob],
    ) -> Result<(), Staging> {
        let parent = self
            .store()
            .run(parent)
            .await
            .map_err(|e| Staging::Error(e.into()))?;
        let (Some(blob), Some(video)) = (blobs_in.first(), crate::upscale::primary_output(&parent))
        else {
            return Ok(());
        };
        if parent.target.as_deref() != Some(c.target.name.as_str()) {
            return Ok(());
        }
        let env = self.exec_env().map_err(Staging::Error)?;
        let local_dir = super::local_outputs(&env.data_dir, &parent.id);
        let Ok(rel) = std::path::Path::new(&video.path).strip_prefix(&local_dir) else {
            return Ok(());
        };
        let root = &c.target.config.root;
        let remote_dir = match (&parent.batch_id, parent.batch_line) {
            (Some(batch), Some(line)) => RunLayout::new(root, batch).line_outputs(line),
            _ => RunLayout::new(root, &parent.id).outputs(),
        };
        let remote = format!("{remote_dir}/{}", rel.display());
        let adopted = blobs::adopt(&c.host, root, &remote, blob)
            .await
            .map_err(|e| self.stage_error(e, &c.target.name))?;
        let message = if adopted {
            format!(
                "input: the output of {} already on {} (verified there, not uploaded)",
                parent.id, c.target.name
            )
        } else {
            format!(
                "input: the output of {} is no longer on {} as it was verified; uploading this machine's copy",
                parent.id, c.target.name
            )
        };
        self.note(d, RunStatus::Staging, &message)
            .await
            .map_err(Staging::Error)?;
        Ok(())
    }

    /// The target's preflight, and the run's GPUs there: as many as it asks for, and
    /// devices the host has.
    pub(super) async fn check_placement(
        &self,
        c: &Connected,
        d: &Drive,
        run: &Run,
    ) -> Result<(), Staging> {
        let name = &c.target.name;
        let gpus = self.preflight(c, d).await?;
        if let Some(found) = gpus {
            if found < run.params.gpus {
                return Err(Staging::Fail(Failure::new(
                    "gpu_shortage",
                    format!(
                        "the run asks for {} GPUs but target {name} has {found}: run it on {found} GPUs or on a bigger host",
                        run.params.gpus
                    ),
                )));
            }
            // Placed on slots the host does not have (more slots configured than GPUs):
            // from now on this process gives the target only as many slots as it has GPUs.
            if let Some(d) = devices_of(run).into_iter().find(|d| *d >= found) {
                return Err(Staging::Misplaced(format!(
                    "placed on GPU {d} but target {name} has {found} GPUs: its slots should be {found}"
                )));
            }
        }

        Ok(())
    }

    /// Uploads the blobs the target lacks (room for them checked first), each verified by
    /// its hash; returns where each blob is on the target, in order.
    pub(super) async fn upload_inputs(
        &self,
        c: &Connected,
        d: &Drive,
        blobs_in: &[LocalBlob],
    ) -> Result<Vec<String>, Staging> {
        let cfg = &c.target.config;
        let h = &c.host;
        let name = &c.target.name;
        // Room for what is not there yet, checked before a byte is sent.
        let mut missing = 0u64;
        for b in blobs_in {
            let at = blobs::blob_path(&cfg.root, &b.sha256);
            let have = h
                .files
                .size(&at)
                .await
                .map_err(|e| self.stage_error(e, name))?;
            if have != Some(b.size) {
                missing += b.size;
            }
        }
        let free = h
            .free_bytes(&cfg.root)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        if let Some(free) = free
            && free < missing + DISK_MARGIN
        {
            return Err(Staging::Fail(Failure::new(
                "disk_full",
                format!(
                    "not enough disk space on target {name}: {} free under {}, the inputs need {} (plus {} for outputs): free space there, or use another root",
                    gib_or_mib(free),
                    cfg.root,
                    gib_or_mib(missing),
                    gib_or_mib(DISK_MARGIN)
                ),
            )));
        }
        let total: u64 = blobs_in.iter().map(|b| b.size).sum();
        let steps = TransferEvents::new(
            self,
            d,
            RunStatus::Staging,
            "uploading inputs",
            missing,
            total,
        );
        let report: Arc<dyn Fn(u64) + Send + Sync> = steps.report.clone();
        let verify = self.exec_env().map_err(Staging::Error)?.verify_inputs;
        let uploaded = self
            .retrying(
                self.staging_patience()?,
                c,
                d,
                RunStatus::Staging,
                "upload inputs",
                || blobs::upload_all(h, &cfg.root, blobs_in, verify, 4, report.clone()),
            )
            .await;
        steps.finish().await;
        let (paths, sent) = uploaded.map_err(|e| match e {
            EngineError::Remote(r) => self.stage_error(r, name),
            other => Staging::Error(other),
        })?;
        let sent = if sent.bytes == 0 {
            "inputs already on the target: nothing uploaded".to_owned()
        } else {
            format!("{UPLOADED}{} bytes, verified by sha256", sent.bytes)
        };
        self.note(d, RunStatus::Staging, &sent).await?;
        Ok(paths)
    }

    /// Makes the job's folders and links each blob under the name its spec uses.
    pub(super) async fn link_inputs(
        &self,
        c: &Connected,
        layout: &RunLayout,
        links: &[(String, String)],
    ) -> Result<(), Staging> {
        let inputs_dir = format!("{}/inputs", layout.dir());
        let mut link = args(&[
            "sh",
            "-c",
            LINK_SCRIPT,
            "sh",
            &layout.outputs(),
            &inputs_dir,
            &cosmos_core::setup::hf_cache(&c.target.config.root),
        ]);
        for (blob, name) in links {
            link.push(blob.clone());
            link.push(name.clone());
        }
        c.host
            .ok("link inputs", &link)
            .await
            .map(drop)
            .map_err(|e| self.stage_error(e, &c.target.name))
    }

    /// Writes the job's owner-only env file: the runtime's lines and the target's settings.
    pub(super) async fn write_env(
        &self,
        c: &Connected,
        layout: &RunLayout,
        devices: &[u32],
    ) -> Result<(), Staging> {
        let cfg = &c.target.config;
        let mut lines = String::new();
        for line in c.runtime.env_lines(&cfg.cosmos_dir, &cfg.root, devices) {
            lines.push_str(&line);
            lines.push('\n');
        }
        // Setup filled the cache: the model finds everything there, even without internet.
        if cfg.hf_cache_complete {
            lines.push_str("HF_HUB_OFFLINE=1\n");
        }
        // Settings only: no secret reaches a run. Cosmos-Transfer1 reads HF_TOKEN only to
        // download checkpoints, never while it generates (reference §6).
        for (k, v) in &cfg.env {
            if v.contains('\n') {
                return Err(Staging::Fail(Failure::new(
                    "bad_environment",
                    format!("the value of {k} spans lines; env files take one line per variable"),
                )));
            }
            lines.push_str(&format!("{k}={v}\n"));
        }
        c.host
            .files
            .write(&layout.env_file(), lines.as_bytes(), 0o600)
            .await
            .map_err(|e| self.stage_error(e, &c.target.name))
    }

    /// What can be checked of a target before a byte is sent: the image, the checkpoints
    /// and the GPUs (their number is returned; a rehearsal has none to count). A target that
    /// passed lately with the same configuration is not asked again.
    async fn preflight(&self, c: &Connected, d: &Drive) -> Result<Option<u32>, Staging> {
        let cfg = &c.target.config;
        let h = &c.host;
        let name = &c.target.name;
        let env = self.exec_env().map_err(Staging::Error)?;
        if let Ok(cache) = env.preflights.lock()
            && let Some(p) = cache.get(name)
            && &p.config == cfg
            && p.at.elapsed() < PREFLIGHT_FRESH
        {
            return Ok(p.gpus);
        }
        let image = self
            .retrying(
                self.staging_patience()?,
                c,
                d,
                RunStatus::Staging,
                "check the image",
                || c.runtime.check_image(h, &cfg.image),
            )
            .await?;
        let image_id = match image {
            Some(Err(words)) => {
                return Err(Staging::Fail(Failure::new(
                    "image_missing",
                    format!("image {} is not on target {name} ({words})", cfg.image),
                )));
            }
            Some(Ok(id)) => Some(id),
            None => None,
        };
        let mut gpus = None;
        if !cfg.rehearsal {
            let smi = args(&GPU_QUERY);
            let out = self
                .retrying(
                    self.staging_patience()?,
                    c,
                    d,
                    RunStatus::Staging,
                    "count the GPUs",
                    || h.runner.run(&smi),
                )
                .await?;
            let listed = parse_gpus(&out.stdout_text());
            let found = listed.len() as u32;
            if !out.success() || found == 0 {
                return Err(Staging::Fail(Failure::new(
                    "no_gpu",
                    format!(
                        "no usable GPU on target {name} (nvidia-smi: {}): install the NVIDIA driver there, or pick another target",
                        if out.success() {
                            "no GPUs listed".into()
                        } else {
                            out.last_words()
                        }
                    ),
                )));
            }
            gpus = Some(found);
            if let Err(e) = self.record_gpus(name, &listed).await {
                tracing::warn!(target = %name, "cannot record the GPUs found: {e}");
            }
        }
        if let Ok(mut cache) = env.preflights.lock() {
            let at = std::time::Instant::now();
            let config = cfg.clone();
            cache.insert(
                name.clone(),
                Preflight {
                    at,
                    config,
                    gpus,
                    image_id,
                    present: Default::default(),
                },
            );
        }
        Ok(gpus)
    }

    /// What a run on `target` runs on: the image and its id (as the preflight found it, else
    /// as last recorded), the checkout's commit and the manifest's hash (from setup).
    pub(super) fn supply_of(&self, target: &cosmos_core::Target) -> cosmos_core::Supply {
        let cfg = &target.config;
        let seen = self.exec_env().ok().and_then(|env| {
            env.preflights
                .lock()
                .ok()?
                .get(&target.name)
                .filter(|p| &p.config == cfg)
                .and_then(|p| p.image_id.clone())
        });
        let docker = cfg.runtime == cosmos_core::RuntimeKind::Docker;
        cosmos_core::Supply {
            image: docker.then(|| cfg.image.clone()),
            image_digest: if docker {
                seen.or_else(|| cfg.image_digest.clone())
            } else {
                None
            },
            checkout_commit: cfg.checkout_commit.clone(),
            manifest_hash: cfg.manifest_hash.clone(),
        }
    }

    /// Fails the run, naming the checkpoint, when one its spec needs is not on the target
    /// (base model, each control, the upscaler, tokenizer, T5, guardrails, the preprocessors
    /// of computed controls). What was found present stays known while the preflight does.
    pub(super) async fn check_needs(
        &self,
        c: &Connected,
        d: &Drive,
        needs: &[cosmos_core::setup::Need],
    ) -> Result<(), Staging> {
        let cfg = &c.target.config;
        let name = &c.target.name;
        let env = self.exec_env().map_err(Staging::Error)?;
        let known = env
            .preflights
            .lock()
            .ok()
            .and_then(|cache| {
                cache
                    .get(name)
                    .filter(|p| &p.config == cfg)
                    .map(|p| p.present.clone())
            })
            .unwrap_or_default();
        let unknown: Vec<&cosmos_core::setup::Need> =
            needs.iter().filter(|n| !known.contains(n.path)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let ckpt = format!("{}/checkpoints", cfg.cosmos_dir);
        let mut argv = args(&["sh", "-c", crate::setup::UNREADABLE, "sh", &ckpt]);
        argv.extend(unknown.iter().map(|n| n.path.to_owned()));
        let out = self
            .retrying(
                self.staging_patience()?,
                c,
                d,
                RunStatus::Staging,
                "check the checkpoints",
                || c.host.runner.run(&argv),
            )
            .await?;
        let text = out.stdout_text();
        let missing: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if let Some(first) = missing.first() {
            let why = needs
                .iter()
                .find(|n| n.path == *first)
                .map_or("the model", |n| n.why);
            let more = match missing.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return Err(Staging::Fail(Failure::new(
                "checkpoint_missing",
                format!(
                    "checkpoint {first} ({why}) is not in {ckpt} on target {name}{more}: the run needs it; set the target up (or download it there)"
                ),
            )));
        }
        if let Ok(mut cache) = env.preflights.lock()
            && let Some(p) = cache.get_mut(name)
        {
            p.present.extend(unknown.iter().map(|n| n.path));
        }
        Ok(())
    }

    /// The model's entry point is in the target's checkout: a checkout of another model, or
    /// none, fails the run before anything is sent, saying which file is missing where.
    pub(super) async fn check_entry_point(
        &self,
        c: &Connected,
        model: &dyn cosmos_core::model::Model,
    ) -> Result<(), Staging> {
        let cfg = &c.target.config;
        let name = &c.target.name;
        let entry = model.entry_point();
        // Found once, then trusted as the checkpoints are, for as long as the preflight is.
        let env = self.exec_env().map_err(Staging::Error)?;
        let known = env.preflights.lock().ok().is_some_and(|cache| {
            cache
                .get(name)
                .is_some_and(|p| &p.config == cfg && p.present.contains(entry))
        });
        if known {
            return Ok(());
        }
        let path = format!("{}/{entry}", cfg.cosmos_dir.trim_end_matches('/'));
        let found = c
            .host
            .files
            .size(&path)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        if found.is_none() {
            return Err(Staging::Fail(Failure::new(
                "checkout_missing",
                format!(
                    "{} is not in {} on target {name}: its cosmos-dir must be a checkout of {}; set the target up (`cosmos target setup {name}`) or point --cosmos-dir at one",
                    model.entry_point(),
                    cfg.cosmos_dir,
                    model.title()
                ),
            )));
        }
        if let Ok(mut cache) = env.preflights.lock()
            && let Some(p) = cache.get_mut(name)
        {
            p.present.insert(entry);
        }
        Ok(())
    }

    pub(super) fn stage_error(&self, e: RemoteError, target: &str) -> Staging {
        if e.is_transient() {
            return Staging::Error(e.into());
        }
        let text = e.to_string();
        if text.contains("No space left") || text.contains("Failure") && text.contains("write") {
            return Staging::Fail(Failure::new(
                "disk_full",
                format!(
                    "the target {target} ran out of disk space while staging ({text}): free space under its root"
                ),
            ));
        }
        Staging::Fail(Failure::new(
            "staging_failed",
            format!("staging on {target} failed: {text}"),
        ))
    }
}

/// The spec could not be built: the run fails with Cosmos's words.
pub(super) fn invalid_spec(e: cosmos_core::spec::SpecError) -> Staging {
    Staging::Fail(Failure::new(
        "invalid_spec",
        format!("the spec is invalid: {e}"),
    ))
}

/// The registered input files as blobs to send, each still the size it was registered with.
pub(super) fn local_blobs(files: &[cosmos_core::InputFile]) -> Result<Vec<LocalBlob>, Failure> {
    files
        .iter()
        .map(|f| {
            let what = format!("input {}", f.path);
            let changed = "changed since it was registered: register the folder again";
            local_blob(&f.path, &f.sha256, f.size, &what, changed)
        })
        .collect()
}

/// A mask video to send: the stem and extension it is linked under, and its blob.
pub(super) type MaskBlob = ((String, String), LocalBlob);

/// A run's mask videos as blobs to send, each still the size it had when the run was
/// submitted (the upload checks its hash).
pub(super) fn mask_blobs(params: &cosmos_core::RunParams) -> Result<Vec<MaskBlob>, Failure> {
    params
        .mask_files
        .iter()
        .map(|(hint, m)| {
            let what = format!("the {hint} mask {}", m.path);
            let changed = "changed since the run was submitted: submit the run again";
            let b = local_blob(&m.path, &m.sha256, m.size, &what, changed)?;
            Ok(((cosmos_core::launch::mask_stem(*hint), m.extension()), b))
        })
        .collect()
}

/// A local file as a blob to send, if it is still `size` bytes: otherwise the run fails
/// saying which file (`what`) cannot be read, or that it `changed` (since when, and the fix).
fn local_blob(
    path: &str,
    sha256: &str,
    size: u64,
    what: &str,
    changed: &str,
) -> Result<LocalBlob, Failure> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == size => Ok(LocalBlob {
            path: PathBuf::from(path),
            sha256: sha256.to_owned(),
            size,
        }),
        Ok(_) => Err(Failure::new("input_changed", format!("{what} {changed}"))),
        Err(e) => Err(Failure::new(
            "input_missing",
            format!("cannot read {what}: {e}"),
        )),
    }
}

/// Why staging stopped: a reason the run fails with, or an error that leaves it as it is.
pub(super) enum Staging {
    Fail(Failure),
    /// Placed on GPUs the target does not have: to be placed again.
    Misplaced(String),
    Error(EngineError),
}

impl From<EngineError> for Staging {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Remote(r) if !r.is_transient() => {
                Staging::Fail(Failure::new("staging_failed", r.to_string()))
            }
            // What no retry changes (an upscale's input above the size Cosmos takes).
            EngineError::Refused { code, message, .. } => {
                Staging::Fail(Failure::new(code, message))
            }
            other => Staging::Error(other),
        }
    }
}

/// How a staging event that uploaded inputs begins; [`uploaded_bytes`] reads it back.
const UPLOADED: &str = "uploaded ";

/// The bytes a staging event says were uploaded (for metrics that follow the event stream).
pub fn uploaded_bytes(message: &str) -> Option<u64> {
    message
        .strip_prefix(UPLOADED)?
        .split_once(" bytes, verified")?
        .0
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upload_note_reads_back_as_bytes() {
        let note = format!("{}1234 bytes, verified by sha256", super::UPLOADED);
        assert_eq!(super::uploaded_bytes(&note), Some(1234));
        assert_eq!(
            super::uploaded_bytes("inputs already on the target: nothing uploaded"),
            None
        );
    }
}
