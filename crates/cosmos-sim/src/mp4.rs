//! Counts a video's frames and reads its size from the MP4/QuickTime container (the `stsz`
//! sample table of the first video track), so the image needs no ffprobe.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What Cosmos reads off a video before generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFacts {
    pub frames: u64,
    pub width: u32,
    pub height: u32,
}

/// Why a file could not be read as a video.
#[derive(Debug)]
pub enum ProbeError {
    Io,
    NotAVideo(&'static str),
}

const MAX_MOOV: u64 = 64 << 20;

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Child boxes of a box body: (type, body).
fn boxes(mut body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let size = be_u32(body, 0)? as usize;
        let kind = body.get(4..8)?;
        let (header, size) = match size {
            1 => {
                let large = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
                (16, usize::try_from(large).ok()?)
            }
            0 => (8, body.len()),
            n => (8, n),
        };
        if size < header || size > body.len() {
            return None;
        }
        let inner = &body[header..size];
        body = &body[size..];
        Some((kind, inner))
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    boxes(body).find(|(k, _)| *k == kind).map(|(_, b)| b)
}

/// Finds the top-level `moov` box by walking the file's boxes, seeking over media data.
fn read_moov(file: &mut File) -> Result<Vec<u8>, ProbeError> {
    let len = file.metadata().map_err(|_| ProbeError::Io)?.len();
    let mut pos = 0u64;
    while pos + 8 <= len {
        file.seek(SeekFrom::Start(pos))
            .map_err(|_| ProbeError::Io)?;
        let mut head = [0u8; 16];
        let got = file.read(&mut head).map_err(|_| ProbeError::Io)?;
        if got < 8 {
            break;
        }
        let size32 = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = &head[4..8];
        if pos == 0
            && !matches!(
                kind,
                b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide" | b"skip"
            )
        {
            return Err(ProbeError::NotAVideo(
                "no MP4 or QuickTime box at the start",
            ));
        }
        let (header, size) = match size32 {
            1 if got >= 16 => (
                16,
                u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()),
            ),
            0 => (8, len - pos),
            n => (8, n),
        };
        if size < header {
            return Err(ProbeError::NotAVideo("a malformed box"));
        }
        if kind == b"moov" {
            if size > MAX_MOOV {
                return Err(ProbeError::NotAVideo("an implausibly large moov box"));
            }
            let mut body = vec![0u8; (size - header) as usize];
            file.seek(SeekFrom::Start(pos + header))
                .map_err(|_| ProbeError::Io)?;
            file.read_exact(&mut body).map_err(|_| ProbeError::Io)?;
            return Ok(body);
        }
        pos += size;
    }
    Err(ProbeError::NotAVideo("moov atom not found"))
}

fn video_track(moov: &[u8]) -> Option<VideoFacts> {
    for (kind, trak) in boxes(moov) {
        if kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia") else {
            continue;
        };
        let is_video = child(mdia, b"hdlr").and_then(|h| h.get(8..12)) == Some(b"vide");
        if !is_video {
            continue;
        }
        let stbl = child(child(mdia, b"minf")?, b"stbl")?;
        let frames = u64::from(be_u32(child(stbl, b"stsz")?, 8)?);
        // stsd: version/flags, entry count, then the first sample entry (size, format,
        // 6 reserved, data reference index, 16 bytes of defaults, width, height).
        let entry = child(stbl, b"stsd")?.get(8..)?;
        let width = u32::from(be_u16(entry, 32)?);
        let height = u32::from(be_u16(entry, 34)?);
        return Some(VideoFacts {
            frames,
            width,
            height,
        });
    }
    None
}

/// Reads frame count and size from `path`.
pub fn probe(path: &Path) -> Result<VideoFacts, ProbeError> {
    let mut file = File::open(path).map_err(|_| ProbeError::Io)?;
    let moov = read_moov(&mut file)?;
    let facts = video_track(&moov).ok_or(ProbeError::NotAVideo("no video track"))?;
    if facts.frames == 0 {
        return Err(ProbeError::NotAVideo("the video track has no samples"));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// A minimal file: ftyp, mdat, then moov with one video track of `frames` samples.
    fn fake_mp4(frames: u32, w: u16, h: u16) -> Vec<u8> {
        let hdlr = bx(
            b"hdlr",
            &[0, 0, 0, 0, 0, 0, 0, 0, b'v', b'i', b'd', b'e', 0, 0, 0, 0],
        );
        let mut entry = vec![0u8; 8 + 24];
        entry.extend_from_slice(&w.to_be_bytes());
        entry.extend_from_slice(&h.to_be_bytes());
        entry.extend_from_slice(&[0u8; 50]);
        let mut stsd_body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd_body.extend_from_slice(&entry);
        let mut stsz_body = vec![0u8; 8];
        stsz_body.extend_from_slice(&frames.to_be_bytes());
        let stbl = bx(
            b"stbl",
            &[bx(b"stsd", &stsd_body), bx(b"stsz", &stsz_body)].concat(),
        );
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &[hdlr, minf].concat());
        let moov = bx(b"moov", &bx(b"trak", &mdia));
        [bx(b"ftyp", b"isom\0\0\0\0"), bx(b"mdat", &[7u8; 100]), moov].concat()
    }

    #[test]
    fn reads_frames_and_size_after_the_media_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        std::fs::write(&path, fake_mp4(250, 1280, 720)).unwrap();
        let facts = probe(&path).unwrap();
        assert_eq!(
            facts,
            VideoFacts {
                frames: 250,
                width: 1280,
                height: 720
            }
        );
    }

    #[test]
    fn text_is_not_a_video() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        std::fs::write(&path, b"hello, this is not a video at all").unwrap();
        assert!(matches!(probe(&path), Err(ProbeError::NotAVideo(_))));
    }
}
