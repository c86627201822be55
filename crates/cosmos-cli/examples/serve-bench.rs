//! `cosmos serve` under load (issue 15). On a database of 200k runs (`cosmos dev seed`),
//! while the embedded worker runs cosmos-sim jobs on the rehearsal target:
//! - `wrk` with 100 connections for 30 s against `GET /api/v1/runs?limit=50` and a prompt
//!   search (budget: p99 under 20 ms, no errors); baseline in the same run: the same load on
//!   a route that touches no database (the login form, through the same guard);
//! - WebSocket fan-out: 1,000 events, each one run queued over HTTP, to 100 clients, the
//!   delivery latency being the client's clock at receipt minus the event's stored time
//!   (budget: p99 under 50 ms); baseline: the same 1,000 events to one client;
//! - the server's resident memory idle and with the 100 clients connected.
//!
//!   apt-get install wrk ffmpeg
//!   cargo build --release -p cosmos-cli -p cosmos-sim
//!   cargo run --release -p cosmos-cli --example serve-bench -- [RUNS] [SECONDS]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use cosmos_testkit::workspace_root;

#[path = "bench/common.rs"]
mod common;
#[path = "bench/serve.rs"]
mod serve;
use common::ok;
use serve::{cosmos, serve};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `wrk` against `url`: its p50, p99, requests per second and error count.
fn wrk(url: &str, seconds: u64) -> String {
    let out = Command::new("wrk")
        .args(["-t2", "-c100", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "?".into())
    };
    // wrk prints these lines only when something went wrong: name it.
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Non-2xx") || l.starts_with("Socket errors"))
        .collect();
    let errors = if errors.is_empty() {
        "no errors".to_owned()
    } else {
        errors.join("; ")
    };
    format!(
        "p50 {:>8}  p99 {:>8}  {:>9} req/s  {errors}",
        field("50%"),
        field("99%"),
        field("Requests/sec:")
    )
}

/// An HTTP client that reports every status.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The server's `/metrics` text.
fn metrics(agent: &ureq::Agent, addr: &str) -> String {
    let mut r = agent
        .get(&format!("http://{addr}/metrics"))
        .call()
        .expect("metrics");
    r.body_mut().read_to_string().expect("metrics text")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Connects `clients` WebSockets after `since`, queues `events` runs over HTTP one at a
/// time, and returns every client's delivery latencies (ms) for those runs' events.
fn fan_out(addr: &str, prompt: &str, clients: usize, events: usize, pid: u32) -> (Vec<i64>, u64) {
    let agent = agent();
    let head: i64 = {
        metrics(&agent, addr)
            .lines()
            .find_map(|l| l.strip_prefix("cosmos_event_sequence "))
            .and_then(|v| v.parse().ok())
            .expect("sequence")
    };
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    for _ in 0..clients {
        let (tx, ready_tx, addr) = (tx.clone(), ready_tx.clone(), addr.to_owned());
        std::thread::spawn(move || {
            let stream = TcpStream::connect(&addr).expect("connect");
            let url = format!("ws://{addr}/api/v1/events?since={head}");
            let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("upgrade");
            let _ = ready_tx.send(());
            let mut lat = Vec::new();
            let mut seen = 0;
            while seen < events {
                let Ok(Message::Text(t)) = ws.read() else {
                    continue;
                };
                let now = chrono::Utc::now().timestamp_millis();
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] != "event" || v["event"]["stage"] != "queued" {
                    continue;
                }
                let at =
                    chrono::DateTime::parse_from_rfc3339(v["event"]["at"].as_str().unwrap_or(""))
                        .map(|t| t.timestamp_millis())
                        .unwrap_or(now);
                lat.push(now - at);
                seen += 1;
            }
            let _ = tx.send(lat);
            // Stay connected until the measurement is read.
            std::thread::sleep(Duration::from_secs(3));
        });
    }
    for _ in 0..clients {
        ready_rx.recv().expect("client ready");
    }
    for i in 0..events {
        let r = agent
            .post(&format!("http://{addr}/api/v1/runs"))
            .send_json(json!({"runs": [{"prompt": prompt, "seed": 100_000 + i}]}))
            .expect("queue a run");
        assert_eq!(r.status().as_u16(), 201);
    }
    let mut all = Vec::new();
    for _ in 0..clients {
        all.extend(
            rx.recv_timeout(Duration::from_secs(120))
                .expect("a client's latencies"),
        );
    }
    let rss = rss_kib(pid);
    all.sort();
    (all, rss)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map(|n| n.parse().expect("RUNS"))
        .unwrap_or(200_000);
    let seconds: u64 = args
        .next()
        .map(|n| n.parse().expect("SECONDS"))
        .unwrap_or(30);
    assert!(
        workspace_root().join("target/release/cosmos-sim").is_file(),
        "build first: cargo build --release -p cosmos-cli -p cosmos-sim"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let home: PathBuf = dir.path().join("home");
    ok(cosmos(&home).arg("init"), "init");
    let began = Instant::now();
    ok(
        cosmos(&home).args([
            "dev",
            "seed",
            "--prompts",
            &(runs / 2).to_string(),
            "--runs",
            &runs.to_string(),
            "--input-sets",
            "2000",
        ]),
        "seed",
    );
    eprintln!(
        "seeded {runs} runs in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    ok(cosmos(&home).arg("quickstart"), "quickstart");
    let list: Value = serde_json::from_str(&ok(
        cosmos(&home).args(["list", "--limit", "1", "--json"]),
        "list",
    ))
    .expect("list json");
    let prompt = list[0]["prompt_id"]
        .as_str()
        .expect("the demo run's prompt")
        .to_owned();
    // Work for the embedded worker while wrk runs.
    ok(
        cosmos(&home).args(["run", &prompt, "--seeds", "1..400", "--no-wait"]),
        "queue sim runs",
    );

    let (mut server, addr) = serve(&home, &[]);
    let pid = server.id();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(pid);

    let finished = |agent: &ureq::Agent| -> u64 {
        metrics(agent, &addr)
            .lines()
            .filter(|l| l.starts_with("cosmos_runs_finished_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let agent = agent();
    let done_before = finished(&agent);
    println!(
        "wrk -t2 -c100 -d{seconds}s, {runs} runs in the database, the worker running sim jobs:"
    );
    println!(
        "  baseline: GET /login (no database)   {}",
        wrk(&format!("http://{addr}/login"), seconds)
    );
    println!(
        "  GET /api/v1/runs?limit=50            {}",
        wrk(&format!("http://{addr}/api/v1/runs?limit=50"), seconds)
    );
    println!(
        "  GET /api/v1/prompts/search?q=…       {}",
        wrk(
            &format!("http://{addr}/api/v1/prompts/search?q=harbour%20dawn"),
            seconds
        )
    );

    println!(
        "  (the worker finished {} sim runs meanwhile)",
        finished(&agent) - done_before
    );
    // Queued runs stay queued during the fan-out: only the events measured flow.
    agent
        .post(&format!("http://{addr}/api/v1/queue/pause"))
        .send_json(json!({}))
        .expect("pause");
    std::thread::sleep(Duration::from_secs(2));
    let (one, _) = fan_out(&addr, &prompt, 1, 1000, pid);
    let (many, rss) = fan_out(&addr, &prompt, 100, 1000, pid);
    println!("WebSocket fan-out of 1,000 events (delivery latency, ms):");
    for (label, v) in [
        ("  baseline: 1 client   ", &one),
        ("  100 clients          ", &many),
    ] {
        println!(
            "{label} p50 {:>3}  p99 {:>3}  max {:>3}  ({} deliveries)",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(0),
            v.len()
        );
    }
    println!(
        "server memory: {} MiB idle, {} MiB with 100 clients",
        idle / 1024,
        rss / 1024
    );
    let _ = server.kill();
    let _ = server.wait();
}
