//! Output geometry as Cosmos-Transfer1 computes it (DESIGN.md Appendix A.5).

use serde::Serialize;

/// One of the five resolutions Cosmos resizes every input to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub aspect: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The buckets in the order Cosmos's table lists them (ties go to the first).
pub const BUCKETS: [Bucket; 5] = [
    Bucket {
        aspect: "1:1",
        width: 960,
        height: 960,
    },
    Bucket {
        aspect: "4:3",
        width: 960,
        height: 704,
    },
    Bucket {
        aspect: "3:4",
        width: 704,
        height: 960,
    },
    Bucket {
        aspect: "16:9",
        width: 1280,
        height: 704,
    },
    Bucket {
        aspect: "9:16",
        width: 704,
        height: 1280,
    },
];

fn ratio(aspect: &str) -> f64 {
    let (w, h) = aspect
        .split_once(':')
        .expect("bucket aspects are written w:h");
    let w: f64 = w.parse().expect("bucket aspect numbers are integers");
    let h: f64 = h.parse().expect("bucket aspect numbers are integers");
    w / h
}

/// The bucket a `width`×`height` video is resized to: the closest aspect ratio.
pub fn bucket_for(width: u32, height: u32) -> Bucket {
    let current = f64::from(width) / f64::from(height.max(1));
    let mut best = BUCKETS[0];
    for b in BUCKETS {
        if (current - ratio(b.aspect)).abs() < (current - ratio(best.aspect)).abs() {
            best = b;
        }
    }
    best
}

/// Frames per clip and new frames per further clip.
pub const CLIP_FRAMES: u64 = 121;
const NEW_FRAMES_PER_CLIP: u64 = 120;

/// Longest video Cosmos reads, in frames.
pub const MAX_FRAMES: u64 = 5000;

/// How many auto-regressive clips Cosmos generates for `frames` input frames.
pub fn clip_count(frames: u64) -> u64 {
    if frames <= 1 {
        0
    } else {
        (frames.min(MAX_FRAMES) - 1).div_ceil(NEW_FRAMES_PER_CLIP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_aspect_ratio() {
        let cases = [
            (1920, 1080, "16:9"),
            (1280, 720, "16:9"),
            (640, 480, "4:3"),
            (512, 512, "1:1"),
            (480, 640, "3:4"),
            (1080, 1920, "9:16"),
            (2048, 858, "16:9"),
            (1000, 900, "1:1"),
        ];
        for (w, h, want) in cases {
            assert_eq!(bucket_for(w, h).aspect, want, "{w}x{h}");
        }
    }

    #[test]
    fn clips_are_121_frames_then_120_new_each() {
        for (frames, clips) in [
            (0, 0),
            (1, 0),
            (2, 1),
            (121, 1),
            (122, 2),
            (241, 2),
            (242, 3),
        ] {
            assert_eq!(clip_count(frames), clips, "{frames}");
        }
        assert_eq!(clip_count(100_000), clip_count(MAX_FRAMES));
    }
}
