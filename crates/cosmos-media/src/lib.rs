//! cosmos-media: finding control videos in a folder, probing them with ffprobe and hashing
//! them (sha256, streamed). ffmpeg-based transcodes and thumbnails will live here too.
//!
//! Must not depend on cosmos-store or cosmos-remote.

mod discover;
mod error;
mod hash;
mod probe;

pub use discover::{Discovery, Skipped, discover};
pub use error::{MediaError, MediaResult};
pub use hash::sha256_file;
pub use probe::{Ffprobe, ProbeFacts, inspect_files, read_probe};
