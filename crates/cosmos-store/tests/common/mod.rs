//! What the store's tests (and its claim benchmark) build their data from.

use cosmos_core::{InputFile, InputKind, InputSet, InputSetId, VideoInfo};

/// An input set of one colour video; the tag names it and makes its hash.
pub fn input_set(tag: &str) -> InputSet {
    let files = vec![InputFile {
        kind: InputKind::Color,
        path: format!("/s/{tag}.mp4"),
        size: 10,
        sha256: format!("{tag:0>64}"),
        video: VideoInfo {
            frames: 48,
            fps: 24.0,
            width: 320,
            height: 180,
            duration_seconds: 2.0,
            codec: "h264".into(),
        },
    }];
    InputSet {
        id: InputSetId::new(),
        name: tag.into(),
        dir: "/s".into(),
        fingerprint: cosmos_core::inputs::fingerprint(&files),
        created_at: cosmos_core::now(),
        files,
    }
}

/// The placement the engine's direct scheduler makes (pin, inputs, most free slots), for
/// claims made without the engine.
#[derive(Debug)]
#[allow(dead_code)] // the sqlite tests share this module without claiming
pub struct Place;

impl cosmos_store::Placer for Place {
    fn place(
        &self,
        run: &cosmos_store::Candidate,
        slots: &[cosmos_core::queue::TargetSlots],
    ) -> Option<(String, Vec<u32>)> {
        cosmos_core::queue::place(run.gpus, run.target_pin.as_deref(), slots, |t| {
            run.inputs_on.contains(t)
        })
    }
}
