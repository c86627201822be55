//! Files the server hands out: a run's outputs, confined to the data directory (single HTTP
//! ranges, `ETag` from the recorded sha256, `Content-Type` from the file's name), pieces of
//! its log, and the control videos of input sets (exactly the files registered, nothing
//! else by path).

use std::io::SeekFrom;
use std::path::{Component, Path};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use cosmos_core::Run;

use crate::error::{ApiError, ApiResult};

/// The most bytes of a log one request reads.
pub(crate) const MAX_LOG_RANGE: u64 = 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Piece {
    pub bytes: Vec<u8>,
    pub offset: u64,
    pub size: u64,
}

/// Bytes `offset..offset+limit` of a file; nothing when it does not exist (yet).
pub(crate) async fn read_range(path: &Path, offset: u64, limit: u64) -> std::io::Result<Piece> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Piece {
                bytes: Vec::new(),
                offset,
                size: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    let start = offset.min(size);
    file.seek(SeekFrom::Start(start)).await?;
    let mut bytes = Vec::new();
    file.take(limit.min(size - start))
        .read_to_end(&mut bytes)
        .await?;
    Ok(Piece {
        bytes,
        offset: start,
        size,
    })
}

/// The last `lines` lines of a file, read backwards in blocks (a big log is not read whole).
pub(crate) async fn read_tail(path: &Path, lines: usize) -> std::io::Result<Piece> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Piece {
                bytes: Vec::new(),
                offset: 0,
                size: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    let mut start = size;
    let mut tail: Vec<u8> = Vec::new();
    // A final newline ends the last line; it does not start another.
    let wanted = lines + 1;
    while start > 0 && tail.iter().filter(|b| **b == b'\n').count() < wanted {
        if tail.len() as u64 >= MAX_LOG_RANGE {
            break;
        }
        let from = start.saturating_sub(BLOCK);
        file.seek(SeekFrom::Start(from)).await?;
        let mut block = vec![0; (start - from) as usize];
        file.read_exact(&mut block).await?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
    }
    // Keep only the last `lines` lines.
    let ends_with_newline = tail.last() == Some(&b'\n');
    let mut seen = 0;
    let mut cut = 0;
    let body = if ends_with_newline {
        &tail[..tail.len() - 1]
    } else {
        &tail[..]
    };
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                cut = i + 1;
                break;
            }
        }
    }
    if lines == 0 {
        cut = tail.len();
    }
    Ok(Piece {
        bytes: tail[cut..].to_vec(),
        offset: start + cut as u64,
        size,
    })
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("json") => "application/json",
        Some("txt" | "log") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// No range this server honours (several, or another unit): the whole file.
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// A range that starts past the end.
    Outside,
}

/// A single range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of `size` bytes.
fn parse_range(text: &str, size: u64) -> Ask {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return Ask::Whole;
    };
    if spec.contains(',') {
        return Ask::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ask::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ask::Whole,
    };
    if range.0 >= size {
        return Ask::Outside;
    }
    Ask::Part(range.0, range.1)
}

/// Serves one of `run`'s recorded outputs by file name, only from inside `data_dir`.
pub(crate) async fn serve_output(
    data_dir: &Path,
    run: &Run,
    name: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found(format!("run `{}` has no output `{name}`", run.id));
    let plain = Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        && !name.contains(['/', '\\'])
        && !name.is_empty();
    if !plain {
        return Err(missing());
    }
    let dir = cosmos_engine::execute_paths::local_outputs(data_dir, &run.id);
    let path = dir.join(name);
    let recorded = run
        .outputs
        .iter()
        .find(|o| Path::new(&o.path).file_name().is_some_and(|f| f == name))
        .ok_or_else(missing)?;
    // Symlinks are followed only while they stay inside the data directory.
    let (Ok(root), Ok(real)) = (
        tokio::fs::canonicalize(data_dir).await,
        tokio::fs::canonicalize(&path).await,
    ) else {
        return Err(missing());
    };
    if !real.starts_with(&root) {
        tracing::warn!(run = %run.id, name, "an output resolves outside the data directory: refused");
        return Err(missing());
    }
    send_file(&real, name, &recorded.sha256, headers)
        .await
        .ok_or_else(missing)
}

/// Serves one control video of an input set: exactly the file registered, while it still
/// has the size it was registered with (a changed file is refused, not served as the old).
pub(crate) async fn serve_input(
    set: &cosmos_core::InputSet,
    kind: cosmos_core::InputKind,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found(format!("input set `{}` has no `{kind}` video", set.id));
    let file = set.file(kind).ok_or_else(missing)?;
    let path = Path::new(&file.path);
    let meta = tokio::fs::metadata(path).await.map_err(|_| {
        ApiError::not_found(format!(
            "`{}` is gone from this machine; register the folder again",
            file.path
        ))
    })?;
    if !meta.is_file() || meta.len() != file.size {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "input_changed",
            format!(
                "`{}` changed since it was registered ({} bytes then, {} now); register the folder again",
                file.path,
                file.size,
                meta.len()
            ),
        ));
    }
    send_file(path, &file.path, &file.sha256, headers)
        .await
        .ok_or_else(missing)
}

/// A JPEG still (a poster, a thumbnail) whose `ETag` is `tag`.
pub(crate) async fn serve_still(
    path: &Path,
    tag: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    send_file(path, "still.jpg", tag, headers)
        .await
        .ok_or_else(|| ApiError::not_found("the still is gone"))
}

/// A file with its `ETag` (from `sha256`), single ranges and `If-Range`, typed by `name`'s
/// extension; `None` when it cannot be read.
async fn send_file(path: &Path, name: &str, sha256: &str, headers: &HeaderMap) -> Option<Response> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let size = file.metadata().await.ok()?.len();
    let etag = format!("\"{sha256}\"");
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return Some((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // A range applies only to the version the client has (`If-Range`).
    let range_text = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == etag)
        });
    let range = match range_text.map_or(Ask::Whole, |t| parse_range(t, size)) {
        Ask::Outside => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Some(r);
        }
        Ask::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        Ask::Whole => (StatusCode::OK, 0, size),
    };
    let (status, start, len) = range;
    file.seek(SeekFrom::Start(start)).await.ok()?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_single_and_inside_the_file() {
        let cases = [
            ("bytes=0-99", Ask::Part(0, 99)),
            ("bytes=100-", Ask::Part(100, 999)),
            ("bytes=-100", Ask::Part(900, 999)),
            ("bytes=990-2000", Ask::Part(990, 999)),
            ("bytes=1000-", Ask::Outside),
            ("bytes=5-1", Ask::Whole),
            ("bytes=0-1,5-9", Ask::Whole),
            ("items=0-1", Ask::Whole),
            ("bytes=-0", Ask::Whole),
        ];
        for (text, want) in cases {
            assert_eq!(parse_range(text, 1000), want, "{text}");
        }
    }

    #[tokio::test]
    async fn the_tail_is_the_last_lines_however_the_file_ends() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let text: String = (1..=5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text)?;
        let tail = read_tail(&path, 3).await?;
        assert_eq!(
            String::from_utf8_lossy(&tail.bytes),
            "line 4998\nline 4999\nline 5000\n"
        );
        assert_eq!(tail.offset + tail.bytes.len() as u64, tail.size);
        std::fs::write(&path, "a\nb")?;
        let tail = read_tail(&path, 1).await?;
        assert_eq!(String::from_utf8_lossy(&tail.bytes), "b");
        let all = read_tail(&path, 10).await?;
        assert_eq!((all.offset, all.bytes.len()), (0, 3));
        let none = read_tail(&dir.path().join("missing"), 10).await?;
        assert_eq!(none.size, 0);
        Ok(())
    }
}
