//! The dashboard's first page load (issue 16). On a database of 200k runs (`cosmos dev
//! seed`) plus the quickstart's rehearsal run, `cosmos serve` (release, no worker) serves
//! the runs page and the gallery to headless Chromium with its cache cleared before each
//! load (a first visit); the time to DOMContentLoaded is the browser's own navigation timing. Budget: under 200 ms; every
//! asset together under 200 KB. Baseline in the same run: the login form (static, through
//! the same guard).
//!
//!   apt-get install chromium chromium-driver ffmpeg
//!   cargo build --release -p cosmos-cli -p cosmos-sim
//!   cargo run --release -p cosmos-cli --example dashboard-bench -- [RUNS] [LOADS]

use cosmos_testkit::Browser;

#[path = "bench/common.rs"]
mod common;
#[path = "bench/serve.rs"]
mod serve;
use common::ok;
use serve::{cosmos, serve};

/// One load of `url` in `b` with nothing cached (the browser itself already running, as a
/// user's is): DOMContentLoaded and the first byte (ms from navigation start), and the bytes
/// of the page with its stylesheet and modules.
fn load(b: &Browser, url: &str) -> (f64, f64, f64) {
    b.cdp("Network.clearBrowserCache", serde_json::json!({}))
        .expect("clear the cache");
    b.goto("about:blank").expect("a blank page");
    b.goto(url).expect("the page");
    let v = b
        .exec(
            "const n = performance.getEntriesByType('navigation')[0];
             const bytes = performance.getEntriesByType('resource')
               .filter(r => r.initiatorType === 'link' || r.initiatorType === 'script' || r.initiatorType === 'other')
               .reduce((a, r) => a + r.transferSize, n.transferSize);
             return [n.domContentLoadedEventEnd - n.startTime, bytes, n.responseStart - n.startTime];",
            &[],
        )
        .expect("navigation timing");
    (
        v[0].as_f64().unwrap_or(f64::NAN),
        v[1].as_f64().unwrap_or(f64::NAN),
        v[2].as_f64().unwrap_or(f64::NAN),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map(|n| n.parse().expect("RUNS"))
        .unwrap_or(200_000);
    let loads: usize = args.next().map(|n| n.parse().expect("LOADS")).unwrap_or(15);
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    ok(cosmos(&home).arg("init"), "init");
    let r = runs.to_string();
    let p = (runs / 2).to_string();
    ok(
        cosmos(&home).args([
            "dev",
            "seed",
            "--prompts",
            &p,
            "--runs",
            &r,
            "--input-sets",
            "2000",
        ]),
        "seed",
    );
    ok(cosmos(&home).arg("quickstart"), "quickstart");
    let (mut server, addr) = serve(&home, &["--no-worker"]);
    println!(
        "first load (cache cleared) in headless Chromium, {runs} runs in the database, {loads} \
         loads each (DOMContentLoaded, ms; bytes of the page and its stylesheet and modules):"
    );
    for (label, path) in [
        ("baseline: /login", "/login"),
        ("runs page  /", "/"),
        ("gallery    /gallery", "/gallery"),
    ] {
        let url = format!("http://{addr}{path}");
        let b = Browser::start().expect("a browser");
        let _ = load(&b, &url); // the server's first answer warms its caches
        let mut times: Vec<f64> = Vec::new();
        let mut firsts: Vec<f64> = Vec::new();
        let mut bytes = 0.0;
        for _ in 0..loads {
            let (t, size, first) = load(&b, &url);
            times.push(t);
            firsts.push(first);
            bytes = size;
        }
        firsts.sort_by(f64::total_cmp);
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!(
            "  {label:<22} p50 {:>6.1}  p90 {:>6.1}  max {:>6.1}   (first byte p50 {:>5.1})  {:>7.0} bytes",
            pct(0.5),
            pct(0.9),
            times.last().copied().unwrap_or(f64::NAN),
            firsts[firsts.len() / 2],
            bytes
        );
    }
    println!(
        "assets compiled in, all together: {} bytes (budget 204,800)",
        cosmos_web::asset_bytes()
    );
    let _ = server.kill();
    let _ = server.wait();
}
