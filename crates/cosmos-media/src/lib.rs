//! cosmos-media: finding control videos in a folder, probing them with ffprobe and hashing
//! them (sha256, streamed), and poster frames made by ffmpeg.
//!
//! Must not depend on cosmos-store or cosmos-remote.

mod discover;
mod error;
mod hash;
mod poster;
mod probe;

pub use discover::{Discovery, Skipped, discover};
pub use error::{MediaError, MediaResult};
pub use hash::sha256_file;
pub use poster::{POSTER_WIDTH, ffmpeg_beside, poster};
pub use probe::{Ffprobe, ProbeFacts, inspect_files, read_probe};
