//! Control modalities: the hint keys Cosmos-Transfer1 reads from a spec, and the roles a video
//! plays inside an input set, with the file-name convention that finds them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Cosmos-Transfer1 control ("hint") key, spelled exactly as the spec JSON spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hint {
    Vis,
    Seg,
    Edge,
    Depth,
    Keypoint,
    Upscale,
    Hdmap,
    Lidar,
}

impl Hint {
    /// Every hint key, in the order Cosmos lists them.
    pub const ALL: [Hint; 8] = [
        Hint::Vis,
        Hint::Seg,
        Hint::Edge,
        Hint::Depth,
        Hint::Keypoint,
        Hint::Upscale,
        Hint::Hdmap,
        Hint::Lidar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hint::Vis => "vis",
            Hint::Seg => "seg",
            Hint::Edge => "edge",
            Hint::Depth => "depth",
            Hint::Keypoint => "keypoint",
            Hint::Upscale => "upscale",
            Hint::Hdmap => "hdmap",
            Hint::Lidar => "lidar",
        }
    }

    /// Hints that belong to the Sample-AV model (`--is_av_sample`).
    pub fn is_av(self) -> bool {
        matches!(self, Hint::Hdmap | Hint::Lidar)
    }

    /// Whether Cosmos computes this control from the colour video when no file is given.
    pub fn is_generated_from_color(self) -> bool {
        matches!(
            self,
            Hint::Vis | Hint::Seg | Hint::Edge | Hint::Depth | Hint::Keypoint
        )
    }

    /// The input-set video that supplies this control, if one can.
    pub fn source_kind(self) -> Option<InputKind> {
        match self {
            Hint::Seg => Some(InputKind::Seg),
            Hint::Edge => Some(InputKind::Edge),
            Hint::Depth => Some(InputKind::Depth),
            Hint::Keypoint => Some(InputKind::Keypoint),
            Hint::Hdmap => Some(InputKind::Hdmap),
            Hint::Lidar => Some(InputKind::Lidar),
            Hint::Vis | Hint::Upscale => None,
        }
    }

    /// The names users may type for this hint on the command line.
    pub fn list() -> String {
        Hint::ALL
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hint {
    type Err = UnknownHint;

    fn from_str(s: &str) -> Result<Self, UnknownHint> {
        let lower = s.trim().to_ascii_lowercase();
        Hint::ALL
            .into_iter()
            .find(|h| h.as_str() == lower)
            .ok_or_else(|| UnknownHint(s.trim().to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown modality `{0}`: expected one of {list}", list = Hint::list())]
pub struct UnknownHint(pub String);

/// The role a video plays in an input set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InputKind {
    /// The RGB render: Cosmos's `input_video_path`, and the source of the `vis` control.
    Color,
    Depth,
    Seg,
    Edge,
    Keypoint,
    Hdmap,
    Lidar,
}

/// File extensions recognised as control videos (any case).
pub const VIDEO_EXTENSIONS: [&str; 3] = ["mp4", "mov", "mkv"];

/// Whether a file extension (any case) is one of [`VIDEO_EXTENSIONS`].
pub fn is_video_extension(ext: &str) -> bool {
    VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
}

/// The last word of a file name's stem, the one the convention reads (`shot010_depth` →
/// `depth`).
pub fn last_word(stem: &str) -> &str {
    stem.rsplit(['_', '-', '.', ' ']).next().unwrap_or(stem)
}

impl InputKind {
    pub const ALL: [InputKind; 7] = [
        InputKind::Color,
        InputKind::Depth,
        InputKind::Seg,
        InputKind::Edge,
        InputKind::Keypoint,
        InputKind::Hdmap,
        InputKind::Lidar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Color => "color",
            InputKind::Depth => "depth",
            InputKind::Seg => "seg",
            InputKind::Edge => "edge",
            InputKind::Keypoint => "keypoint",
            InputKind::Hdmap => "hdmap",
            InputKind::Lidar => "lidar",
        }
    }

    /// File-name words that mark a video as this kind (matched case-insensitively).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            InputKind::Color => &["color", "colour", "rgb", "vis"],
            InputKind::Depth => &["depth"],
            InputKind::Seg => &["seg", "segmentation"],
            InputKind::Edge => &["edge", "edges", "canny"],
            InputKind::Keypoint => &["keypoint", "keypoints", "pose"],
            InputKind::Hdmap => &["hdmap"],
            InputKind::Lidar => &["lidar"],
        }
    }

    /// The control hint this video feeds, if any (the colour video is the input video).
    pub fn hint(self) -> Option<Hint> {
        Hint::ALL
            .into_iter()
            .find(|h| h.source_kind() == Some(self))
    }

    /// The naming convention, for help texts and error hints.
    pub fn convention() -> String {
        let kinds: Vec<String> = InputKind::ALL
            .iter()
            .map(|k| format!("{} ({})", k.as_str(), k.aliases().join("|")))
            .collect();
        format!(
            "a control video is named after its kind, alone or as the last word of the name \
             (`depth.mp4`, `shot010_depth.mov`, `Shot-010-Seg.mkv`); kinds: {}; extensions: {}",
            kinds.join(", "),
            VIDEO_EXTENSIONS.join(", ")
        )
    }

    /// Classifies a file name by the convention. Returns `None` for names that are not
    /// control videos; `Some(Err(kind))` for a name that matches a kind but has an extension
    /// we do not read (so the caller can say why it was skipped).
    pub fn classify(file_name: &str) -> Option<Result<InputKind, InputKind>> {
        let (stem, ext) = file_name.rsplit_once('.')?;
        let last = last_word(stem).to_lowercase();
        let kind = InputKind::ALL
            .into_iter()
            .find(|k| k.aliases().contains(&last.as_str()))?;
        if is_video_extension(ext) {
            Some(Ok(kind))
        } else {
            Some(Err(kind))
        }
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_classify_by_their_last_word() {
        use InputKind::*;
        let cases: [(&str, Option<Result<InputKind, InputKind>>); 14] = [
            ("color.mp4", Some(Ok(Color))),
            ("RGB.MOV", Some(Ok(Color))),
            ("shot010_vis.mkv", Some(Ok(Color))),
            ("colour.mp4", Some(Ok(Color))),
            ("depth.mp4", Some(Ok(Depth))),
            ("Shot-010-Segmentation.mp4", Some(Ok(Seg))),
            ("scene.canny.mp4", Some(Ok(Edge))),
            ("edges.mp4", Some(Ok(Edge))),
            ("hdmap.mp4", Some(Ok(Hdmap))),
            ("my lidar.mp4", Some(Ok(Lidar))),
            ("depth.avi", Some(Err(Depth))),
            ("depthmap.mp4", None),
            ("notes.txt", None),
            ("README", None),
        ];
        for (name, want) in cases {
            assert_eq!(InputKind::classify(name), want, "{name}");
        }
    }

    #[test]
    fn hints_parse_in_any_case_and_name_the_valid_ones() {
        assert_eq!("Depth".parse::<Hint>().unwrap(), Hint::Depth);
        let err = "colr".parse::<Hint>().unwrap_err().to_string();
        assert!(
            err.contains("`colr`") && err.contains("vis, seg, edge"),
            "{err}"
        );
    }

    #[test]
    fn every_control_kind_feeds_exactly_one_hint() {
        for kind in InputKind::ALL {
            assert_eq!(kind.hint().is_none(), kind == InputKind::Color, "{kind}");
        }
    }
}
