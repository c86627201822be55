//! `cosmos export` (issue 17): chosen outputs with their control videos and a manifest, each
//! file checked against its recorded hash, written whole or not at all.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;

use super::local::Local;
use super::remote::sha256;
use super::support::s;

fn leftovers(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn export_copies_chosen_outputs_and_controls_with_a_manifest_and_refuses_what_it_must() {
    let l = Local::new();
    l.add("b", &["--runtime", "none"]);
    let scene = l.home.standard_scene("shot");
    let good = l.run_ok("b", "a harbour, \"golden\", at dawn", &scene);
    let plain = l.run_ok("b", "a harbour at noon", &scene);
    let good_id = good["id"].as_str().expect("id");
    l.run(&["rate", good_id, "5", "--favourite"]).ok();
    l.run(&["rate", plain["id"].as_str().expect("id"), "2"])
        .ok();

    let out_parent = l.home.path().join("exports");
    let dest = out_parent.join("best");
    let report = l
        .run(&["export", s(&dest), "--rating", "4", "--json"])
        .ok()
        .json();
    assert_eq!(report["runs"], 1, "{report}");
    // The run's video, its prompt file and the three control videos.
    assert!(report["files"].as_u64().expect("files") >= 5, "{report}");

    let text = std::fs::read_to_string(dest.join("manifest.jsonl")).expect("jsonl");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["schema"], 1);
    assert_eq!(row["run_id"], good_id);
    assert_eq!(row["prompt"], "a harbour, \"golden\", at dawn");
    assert_eq!(row["seed"], 1);
    assert_eq!(row["model"], "cosmos-transfer1");
    assert_eq!(row["rating"], 5);
    assert_eq!(row["favourite"], true);
    assert!(row["params"]["weights"].is_object(), "{row}");
    assert!(row["checkout_commit"].is_string() || row["checkout_commit"].is_null());
    assert!(
        row["lineage"].get("upscale_of").is_some() && row["lineage"].get("enhanced_from").is_some()
    );
    // Every file named is there with the hash the manifest gives.
    let video = dest.join(row["video"].as_str().expect("video"));
    assert_eq!(sha256(&video), row["video_sha256"].as_str().expect("sha"));
    let controls = row["controls"].as_array().expect("controls");
    assert_eq!(controls.len(), 3, "{row}");
    for c in controls {
        let path = dest.join(c["path"].as_str().expect("path"));
        assert_eq!(sha256(&path), c["sha256"].as_str().expect("sha"), "{c}");
    }
    // The CSV: a header and one record, the quoted prompt intact.
    let csv = std::fs::read_to_string(dest.join("manifest.csv")).expect("csv");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("run_id,video,video_sha256,prompt,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"a harbour, \"\"golden\"\", at dawn\""),
        "{}",
        lines[1]
    );

    // A folder with something in it is refused without --force, and left as it was.
    let again = l.run(&["export", s(&dest)]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("not empty") && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("manifest.jsonl")).expect("kept"),
        text
    );
    // --force replaces it: now both runs, hard-linked.
    let linked = l
        .run(&["export", s(&dest), "--force", "--link", "--json"])
        .ok()
        .json();
    assert_eq!(linked["runs"], 2, "{linked}");
    assert_eq!(
        linked["linked"], linked["files"],
        "same file system: every file linked"
    );
    let source = Path::new(good["outputs"][0]["path"].as_str().expect("path"));
    let exported = dest.join(format!("outputs/{good_id}/output.mp4"));
    assert_eq!(
        std::fs::metadata(source).expect("source").ino(),
        std::fs::metadata(&exported).expect("export").ino()
    );
    assert_eq!(leftovers(&out_parent), Vec::<String>::new());

    // Nothing matches: nothing is written.
    let none = l.run(&[
        "export",
        s(&out_parent.join("none")),
        "--since",
        "2099-01-01",
    ]);
    assert_ne!(none.code, 0);
    assert!(
        none.stderr.contains("nothing was exported"),
        "{}",
        none.stderr
    );
    assert!(!out_parent.join("none").exists());

    // An output changed since it was verified: refused, and nothing half-written is left.
    std::fs::write(source, b"not the video any more").expect("tamper");
    let bad = l.run(&["export", s(&out_parent.join("bad")), "--favourite"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("changed since it was verified"),
        "{}",
        bad.stderr
    );
    assert!(!out_parent.join("bad").exists());
    assert_eq!(leftovers(&out_parent), Vec::<String>::new());
}
