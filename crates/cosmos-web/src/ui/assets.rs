//! The dashboard's stylesheet and modules, compiled in. Each is served under its name with a
//! `?v=` of its content's hash, so a browser may keep it for a year and still never runs an
//! old module against a new page.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use cosmos_core::sha256::hex_digest;

/// (name, content type, content).
const FILES: [(&str, &str, &str); 9] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    ("common.js", JS, include_str!("../../assets/common.js")),
    ("runs.js", JS, include_str!("../../assets/runs.js")),
    ("run.js", JS, include_str!("../../assets/run.js")),
    ("lockstep.js", JS, include_str!("../../assets/lockstep.js")),
    ("gallery.js", JS, include_str!("../../assets/gallery.js")),
    ("compare.js", JS, include_str!("../../assets/compare.js")),
    ("queue.js", JS, include_str!("../../assets/queue.js")),
    ("author.js", JS, include_str!("../../assets/author.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// Each file as served, with its version: modules import each other by versioned URL (so
/// a page's `modulepreload` and the import are one fetch), and a version (the first 12 hex
/// digits of the sha256 of the text served) changes when anything it imports changes.
static BUILT: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let mut built: Vec<(String, String)> = FILES
        .iter()
        .map(|(_, _, text)| ((*text).to_owned(), String::new()))
        .collect();
    // Imports are at most a few deep: a few rounds settle every version.
    for _ in 0..4 {
        let versions: Vec<String> = built
            .iter()
            .map(|(text, _)| hex_digest(text.as_bytes())[..12].to_owned())
            .collect();
        built = FILES
            .iter()
            .zip(&versions)
            .map(|((_, _, text), version)| {
                let mut out = (*text).to_owned();
                for (j, (dep, _, _)) in FILES.iter().enumerate() {
                    out = out.replace(
                        &format!("from \"./{dep}\""),
                        &format!("from \"./{dep}?v={}\"", versions[j]),
                    );
                }
                (out, version.clone())
            })
            .collect();
    }
    built
        .into_iter()
        .map(|(text, _)| {
            let version = hex_digest(text.as_bytes())[..12].to_owned();
            (text, version)
        })
        .collect()
});

fn find(name: &str) -> Option<usize> {
    FILES.iter().position(|(n, _, _)| *n == name)
}

/// The modules `name` imports, directly or through others (a page preloads them all, so
/// the browser fetches them together instead of one import after another).
pub(crate) fn imports(name: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        let Some(i) = find(&next) else { continue };
        for line in FILES[i].2.lines().filter(|l| l.starts_with("import ")) {
            if let Some((_, rest)) = line.rsplit_once("from \"./")
                && let Some((file, _)) = rest.split_once('"')
                && let Some(j) = find(file)
                && !out.contains(&FILES[j].0)
            {
                out.push(FILES[j].0);
                todo.push(file.to_owned());
            }
        }
    }
    out
}

/// Where a page links an asset.
pub(crate) fn url(name: &str) -> String {
    match find(name) {
        Some(i) => format!("/assets/{name}?v={}", BUILT[i].1),
        None => format!("/assets/{name}"),
    }
}

/// Every asset's size together (the dashboard's weight).
pub fn total_bytes() -> usize {
    FILES.iter().map(|(_, _, text)| text.len()).sum()
}

/// Served for a year when asked for by version (as pages link them); otherwise (a module's
/// import of another) checked with the server each time by its `ETag`.
pub(crate) async fn serve(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(i) = find(&name) else {
        return crate::error::ApiError::not_found(format!("no asset `{name}`")).into_response();
    };
    let kind = FILES[i].1;
    let (text, version) = &BUILT[i];
    let etag = format!("\"{version}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let versioned = query.is_some_and(|q| q == format!("v={version}"));
    let mut response = ([(header::CONTENT_TYPE, kind)], text.clone()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if versioned {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_assets_folder_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        for entry in std::fs::read_dir(&dir).expect("assets folder").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                find(&name).is_some(),
                "{name} is in assets/ but not in FILES"
            );
        }
    }

    #[test]
    fn modules_import_only_assets_that_are_served() {
        for (name, _, text) in FILES {
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line
                    .rsplit_once("from \"./")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(file, _)| file);
                let file = from.unwrap_or_else(|| panic!("{name}: an import not from ./: {line}"));
                assert!(
                    find(file).is_some(),
                    "{name} imports {file}, which is not served"
                );
            }
        }
    }

    #[test]
    fn a_page_preloads_every_module_its_module_imports_by_the_same_url() {
        assert_eq!(imports("run.js"), ["common.js", "lockstep.js"]);
        assert_eq!(imports("compare.js"), ["lockstep.js"]);
        assert!(imports("common.js").is_empty());
        let runs = &BUILT[find("runs.js").expect("runs.js")].0;
        let common = url("common.js");
        let imported = common.trim_start_matches("/assets/");
        assert!(runs.contains(&format!("from \"./{imported}\"")), "{runs}");
    }

    #[test]
    fn the_dashboard_weighs_under_200_kb() {
        assert!(total_bytes() < 200 * 1024, "{} bytes", total_bytes());
    }
}
