//! Streamed sha256 of a file.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{MediaError, MediaResult};

const BUFFER: usize = 1 << 20;

/// The file's sha256 (lowercase hex) and size, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> MediaResult<(String, u64)> {
    let io = |source| MediaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((cosmos_core::sha256::to_hex(&hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(BUFFER * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (hex, size) = sha256_file(&path).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(hex, cosmos_core::sha256::hex_digest(&data));
        assert!(matches!(
            sha256_file(&dir.path().join("missing")),
            Err(MediaError::Io { .. })
        ));
    }
}
