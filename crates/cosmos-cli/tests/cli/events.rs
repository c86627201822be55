//! Live events and the whole path through `cosmos serve`: a run created over HTTP is
//! executed by the embedded worker on the sshd + Docker fixture while a real WebSocket
//! client (tungstenite) sees its events in order; reconnecting with `since` loses and
//! repeats nothing; a slow client is told to resync while a fast one keeps up; outputs are
//! served with ranges and confined to the data directory; SIGTERM closes sockets with a
//! reason and leaves running models alone.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use super::remote::{Model, add_fixture_target, containers, sha256};
use super::serve::{Server, agent, assert_error, get, post};
use super::support::{Home, s};
use cosmos_testkit::SshHost;

type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket to `/api/v1/events{query}`; `rcvbuf` shrinks the socket's receive buffer
/// before it connects (a client that reads slowly fills it at once).
fn connect(server: &Server, query: &str, rcvbuf: Option<usize>) -> Ws {
    let addr: SocketAddr = server.addr.parse().expect("server address");
    let fd = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .expect("socket");
    if let Some(n) = rcvbuf {
        rustix::net::sockopt::set_socket_recv_buffer_size(&fd, n).expect("SO_RCVBUF");
    }
    rustix::net::connect(&fd, &addr).expect("connect");
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let url = format!("ws://{}/api/v1/events{query}", server.addr);
    let (ws, response) = tungstenite::client(url.as_str(), stream).expect("WebSocket upgrade");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// What a client read.
#[derive(Debug)]
enum Got {
    Message(Value),
    Closed(u16, String),
}

#[track_caller]
fn read(ws: &mut Ws) -> Got {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => {
                return Got::Message(serde_json::from_str(&t).expect("JSON message"));
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((0, String::new()));
                return Got::Closed(code, reason);
            }
            _ => {}
        }
    }
}

#[track_caller]
fn message(ws: &mut Ws) -> Value {
    match read(ws) {
        Got::Message(v) => v,
        Got::Closed(code, reason) => {
            panic!("closed ({code} {reason}) while a message was expected")
        }
    }
}

/// Events (type `event`) until `stop` says so; heartbeats are skipped.
#[track_caller]
fn events_until(ws: &mut Ws, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = message(ws);
        match m["type"].as_str() {
            Some("event") => {
                let done = stop(&m);
                out.push(m);
                if done {
                    return out;
                }
            }
            Some("heartbeat") => {}
            other => panic!("unexpected message {other:?}: {m}"),
        }
    }
}

/// Events until the first heartbeat: everything the server had to send.
#[track_caller]
fn events_until_idle(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = message(ws);
        match m["type"].as_str() {
            Some("event") => out.push(m),
            Some("heartbeat") => return out,
            other => panic!("unexpected message {other:?}: {m}"),
        }
    }
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().filter_map(|e| e["seq"].as_i64()).collect()
}

const ORDER: [&str; 6] = [
    "queued",
    "staging",
    "starting",
    "running",
    "collecting",
    "succeeded",
];

/// A home with target `gpu` on an sshd fixture (its models get `env`).
fn fixture(model: Model, env: &[&str]) -> (Home, SshHost) {
    let home = Home::new();
    model.configure(&home);
    let host = SshHost::start().expect("sshd fixture");
    let mut extra = vec!["--gpus".to_owned(), "1".to_owned()];
    extra.extend(model.prepare(&host));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    add_fixture_target(&home, "gpu", &host, env, &extra);
    let h = home.path().display().to_string();
    home.run_with(
        &["target", "trust", "gpu", "--yes"],
        &[("HOME", h.as_str())],
    )
    .ok();
    (home, host)
}

per_model!(
    a_run_created_over_http_runs_on_the_embedded_worker_while_a_websocket_client_sees_it,
    transfer25_a_run_created_over_http_runs_on_the_embedded_worker_while_a_websocket_client_sees_it,
    http_run_on_the_embedded_worker
);

fn http_run_on_the_embedded_worker(model: Model) {
    // A clip long enough for several GPU samples while the model is busy.
    let (home, _host) = fixture(model, &["COSMOS_SIM_CLIP_SECONDS=1"]);
    let scene = home.standard_scene("shot");
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.home().join("cosmos.toml"))
        .and_then(|mut f| f.write_all(b"\n[queue]\ngpu_sample_seconds = 0.1\n"))
        .expect("config");
    let server = Server::start(&home, &["--heartbeat-ms", "300"]);
    let api = |p: &str| server.url(&format!("/api/v1{p}"));

    let mut ws = connect(&server, "", None);
    let snapshot = message(&mut ws);
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let start = snapshot["seq"].as_i64().expect("snapshot seq");
    assert_eq!(
        snapshot["status"]["targets"][0]["name"], "gpu",
        "{snapshot}"
    );

    let created = post(
        &api("/runs"),
        json!({"runs": [{"prompt": "a quiet street at night", "inputs": s(&scene), "seed": 3}]}),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let id = created.1["runs"][0]["id"]
        .as_str()
        .expect("run id")
        .to_owned();

    let events = events_until(&mut ws, |m| {
        m["event"]["run_id"] == id.as_str()
            && ["succeeded", "failed", "cancelled"]
                .contains(&m["event"]["stage"].as_str().unwrap_or(""))
    });
    let last = events.last().expect("events");
    assert_eq!(
        last["event"]["stage"],
        "succeeded",
        "{}\n{}",
        last,
        server.log()
    );
    let numbers = seqs(&events);
    assert!(numbers[0] > start, "events follow the snapshot");
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order: {numbers:?}"
    );
    for m in &events {
        assert_eq!(
            m["seq"], m["event"]["id"],
            "seq is the event's sequence number"
        );
    }
    let stages: Vec<usize> = events
        .iter()
        .filter_map(|m| ORDER.iter().position(|s| *s == m["event"]["stage"]))
        .collect();
    assert!(
        stages.windows(2).all(|w| w[0] <= w[1]),
        "the lifecycle in order: {stages:?}"
    );
    assert_eq!(stages.first(), Some(&0));
    // The socket saw exactly the run's history as stored.
    let (_, stored) = get(&api(&format!("/runs/{id}/events")));
    let stored: Vec<i64> = stored
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(numbers, stored);

    // The target as the API shows it, and its preflight over its real connection.
    let (_, targets) = get(&api("/targets"));
    assert_eq!(targets[0]["name"], "gpu", "{targets}");
    assert_eq!(get(&api("/targets/gpu")).1["gpus"], 1);
    let (st, items) = post(&api("/targets/gpu/check"), json!({}));
    assert_eq!(st, 200, "{items}");
    let item = |name: &str| {
        items
            .as_array()
            .and_then(|all| all.iter().find(|i| i["check"] == name).cloned())
    };
    assert_eq!(
        item("reachable").map(|i| i["ok"].clone()),
        Some(json!(true)),
        "{items}"
    );
    assert!(items.as_array().is_some_and(|all| all.len() > 3), "{items}");

    // Reconnecting after the k-th event gets exactly the events after it.
    let k = events.len() / 2;
    let mut again = connect(&server, &format!("?since={}", numbers[k]), None);
    let resumed = events_until_idle(&mut again);
    assert_eq!(
        seqs(&resumed),
        numbers[k + 1..].to_vec(),
        "nothing lost or repeated"
    );

    // The output, whole and by range, with an ETag; nothing outside the data directory.
    let (_, run) = get(&api(&format!("/runs/{id}")));
    // Its GPU's load while the model ran, sampled from the host's nvidia-smi.
    let gpu = &run["gpu_usage"];
    assert!(gpu["samples"].as_u64().unwrap_or(0) >= 2, "{run}");
    assert_eq!(
        (
            gpu["utilization_peak"].as_u64(),
            gpu["memory_peak_mib"].as_u64()
        ),
        (Some(93), Some(38_912)),
        "{gpu}"
    );
    let mean = gpu["utilization_mean"].as_f64().unwrap_or(0.0);
    assert!(mean > 0.0 && mean <= 93.0, "{gpu}");
    let h = home.path().display().to_string();
    let shown = home
        .run_with(&["show", &id], &[("HOME", h.as_str())])
        .ok()
        .stdout;
    assert!(
        shown.contains("GPU load") && shown.contains("93% peak"),
        "{shown}"
    );
    let output = run["outputs"][0].clone();
    let local = output["path"].as_str().expect("output path").to_owned();
    let name = Path::new(&local)
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let url = api(&format!("/runs/{id}/outputs/{name}"));
    let mut whole = agent().get(&url).call().expect("GET output");
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(
        whole
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("video/mp4")
    );
    let etag = whole
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned();
    let bytes = whole.body_mut().read_to_vec().expect("body");
    assert_eq!(bytes.len() as u64, output["size"].as_u64().expect("size"));
    assert_eq!(
        sha256(Path::new(&local)),
        output["sha256"].as_str().expect("sha")
    );
    let mut part = agent()
        .get(&url)
        .header("Range", "bytes=4-13")
        .call()
        .expect("range");
    assert_eq!(part.status().as_u16(), 206);
    let range = part
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(range, Some(format!("bytes 4-13/{}", bytes.len())));
    assert_eq!(
        part.body_mut().read_to_vec().expect("part"),
        bytes[4..14].to_vec()
    );
    let cached = agent()
        .get(&url)
        .header("If-None-Match", &etag)
        .call()
        .expect("conditional");
    assert_eq!(cached.status().as_u16(), 304);
    let outside = agent()
        .get(&url)
        .header("Range", "bytes=999999999-")
        .call()
        .expect("range");
    assert_eq!(outside.status().as_u16(), 416);
    for evil in ["..%2F..%2Fcosmos.toml", "%2e%2e", "..", ".%2Fcosmos.toml"] {
        let (st, body) = super::serve::json_of(
            agent()
                .get(&api(&format!("/runs/{id}/outputs/{evil}")))
                .call()
                .expect("GET"),
        );
        assert_eq!(st, 404, "{evil}: {body}");
    }
    let secret = home.path().join("outside.txt");
    std::fs::write(&secret, "not for the web").expect("outside file");
    std::fs::remove_file(&local).expect("remove output");
    std::os::unix::fs::symlink(&secret, &local).expect("symlink");
    assert_error(&get(&url), 404, "not_found");

    // The log, as a tail and as a range.
    let (_, tail) = get(&api(&format!("/runs/{id}/log?tail=3")));
    assert!(tail["size"].as_u64().unwrap_or(0) > 0, "{tail}");
    assert!(
        tail["text"]
            .as_str()
            .is_some_and(|t| t.lines().count() <= 3 && !t.is_empty()),
        "{tail}"
    );
    let (_, head) = get(&api(&format!("/runs/{id}/log?offset=0&limit=10")));
    assert_eq!(
        (head["offset"].as_u64(), head["end"].as_u64()),
        (Some(0), Some(10)),
        "{head}"
    );

    let mut metrics = agent()
        .get(&server.url("/metrics"))
        .call()
        .expect("metrics");
    let text = metrics.body_mut().read_to_string().expect("text");
    assert!(
        text.contains("cosmos_runs{status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cosmos_gpu_slots{target=\"gpu\",state=\"free\"} 1"),
        "{text}"
    );
    assert!(text.contains("cosmos_event_clients 2"), "{text}");
    let inputs: u64 = std::fs::read_dir(&scene)
        .expect("scene")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(
        text.contains(&format!(
            "cosmos_transferred_bytes_total{{direction=\"up\"}} {inputs}\n"
        )),
        "{inputs} bytes uploaded in {text}"
    );
    for measured in [
        "cosmos_claim_latency_seconds_count 1\n",
        "cosmos_run_duration_seconds_count 1\n",
        "cosmos_model_seconds_count 1\n",
        "cosmos_runs_finished_total{status=\"succeeded\"} 1\n",
    ] {
        assert!(text.contains(measured), "{measured} in {text}");
    }
    let produced: u64 = run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["size"].as_u64())
        .sum();
    assert!(
        text.contains(&format!(
            "cosmos_transferred_bytes_total{{direction=\"down\"}} {produced}\n"
        )),
        "{text}"
    );

    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    // Heartbeats sent while the client was busy come first, then the close.
    loop {
        match read(&mut ws) {
            Got::Closed(code, reason) => {
                assert_eq!(code, 1001);
                assert!(reason.contains("shutting down"), "{reason}");
                break;
            }
            Got::Message(m) if m["type"] == "heartbeat" => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

per_model!(
    sigterm_leaves_a_running_model_alone_for_the_next_driver,
    transfer25_sigterm_leaves_a_running_model_alone_for_the_next_driver,
    sigterm_leaves_the_model
);

fn sigterm_leaves_the_model(model: Model) {
    let (home, _host) = fixture(model, &["COSMOS_SIM_LOAD_SECONDS=4"]);
    let scene = home.standard_scene("shot");
    let server = Server::start(&home, &["--heartbeat-ms", "300"]);
    let mut ws = connect(&server, "", None);
    assert_eq!(message(&mut ws)["type"], "snapshot");
    let created = post(
        &server.url("/api/v1/runs"),
        json!({"runs": [{"prompt": "rain on a tin roof", "inputs": s(&scene)}]}),
    );
    let id = created.1["runs"][0]["id"]
        .as_str()
        .expect("run id")
        .to_owned();
    events_until(&mut ws, |m| m["event"]["stage"] == "running");
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        !containers(&id).is_empty(),
        "the model's container is still there"
    );
    let h = home.path().display().to_string();
    let show = home
        .run_with(&["show", &id, "--json"], &[("HOME", h.as_str())])
        .ok()
        .json();
    assert_eq!(show["run"]["status"], "running", "{show}");
    // Another driver takes it over and sees it through, once.
    home.run_with(&["logs", &id, "-f"], &[("HOME", h.as_str())])
        .ok();
    let show = home
        .run_with(&["show", &id, "--json"], &[("HOME", h.as_str())])
        .ok()
        .json();
    assert_eq!(show["run"]["status"], "succeeded", "{show}");
}

#[test]
fn a_slow_websocket_client_is_told_to_resync_while_a_fast_one_keeps_up() {
    let home = Home::new();
    let scene = home.standard_scene("shot");
    let server = Server::start(
        &home,
        &[
            "--no-worker",
            "--client-buffer",
            "300",
            "--socket-send-buffer",
            "8192",
            "--heartbeat-ms",
            "500",
        ],
    );
    let api = |p: &str| server.url(&format!("/api/v1{p}"));
    let created = post(
        &api("/prompts"),
        json!({"text": "waves at dusk", "inputs": s(&scene)}),
    );
    let prompt = created.1["prompt"]["id"]
        .as_str()
        .expect("prompt")
        .to_owned();

    let mut slow = connect(&server, "", Some(2048));
    let mut fast = connect(&server, "", None);
    assert_eq!(message(&mut fast)["type"], "snapshot");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut resyncs = 0;
        loop {
            match read(&mut fast) {
                Got::Message(m) if m["type"] == "event" => all.push(m),
                Got::Message(m) if m["type"] == "resync" => resyncs += 1,
                Got::Message(m) if m["type"] == "heartbeat" && !all.is_empty() => break,
                Got::Message(_) => {}
                Got::Closed(code, reason) => panic!("the fast client was closed: {code} {reason}"),
            }
        }
        (all, resyncs)
    });
    // Sweeps of 100 runs: bursts the buffer holds, far more in all than a socket holds.
    let sweeps = 20;
    for i in 0..sweeps {
        let first = i * 100 + 1;
        let got = post(
            &api("/runs"),
            json!({"runs": [{"prompt": prompt, "seeds": format!("{first}..{}", first + 99)}]}),
        );
        assert_eq!(got.0, 201, "{}", got.1);
    }
    let (fast_events, resyncs) = reader.join().expect("fast reader");
    assert_eq!(resyncs, 0, "the fast client kept up");
    let all = seqs(&fast_events);
    assert_eq!(all.len(), sweeps * 100, "one queued event per run");
    assert!(all.windows(2).all(|w| w[0] < w[1]));

    // The slow client finds what it missed ends in a resync, then a close.
    assert_eq!(message(&mut slow)["type"], "snapshot");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slow_events = Vec::new();
    let resync = loop {
        assert!(Instant::now() < deadline, "no resync came");
        match read(&mut slow) {
            Got::Message(m) if m["type"] == "event" => slow_events.push(m),
            Got::Message(m) if m["type"] == "resync" => break m,
            Got::Message(_) => {}
            Got::Closed(code, reason) => panic!("closed before a resync: {code} {reason}"),
        }
    };
    let seen = seqs(&slow_events);
    assert!(
        seen.len() <= all.len(),
        "{} events seen of {}",
        seen.len(),
        all.len()
    );
    assert_eq!(
        resync["seq"].as_i64(),
        seen.last().copied().or(Some(all[0] - 1)),
        "the resync names the last event sent"
    );
    match read(&mut slow) {
        Got::Closed(code, _) => assert_eq!(code, 4000),
        other => panic!("expected the resync close, got {other:?}"),
    }
    // Resuming from the resync's seq gives it the rest: together, everything, once.
    let since = resync["seq"].as_i64().expect("seq");
    let mut resumed = connect(&server, &format!("?since={since}"), None);
    let mut together = seen.clone();
    together.extend(seqs(&events_until_idle(&mut resumed)));
    assert_eq!(together, all);
    assert_eq!(server.stop().0, 0);
}

/// Server-sent events: the `data:` JSON of each frame until `stop` says so; `id:` lines are
/// checked against the message's `seq`.
fn sse_until(
    reader: &mut impl std::io::BufRead,
    mut stop: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut id: Option<i64> = None;
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "the stream ended"
        );
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let m: Value = serde_json::from_str(data).expect("JSON data");
            if let Some(seq) = m["seq"].as_i64()
                && m["type"] != "heartbeat"
            {
                assert_eq!(id, Some(seq), "the id is the sequence number: {m}");
            }
            id = None;
            let done = stop(&m);
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

#[test]
fn clients_without_websocket_get_the_same_events_as_server_sent_events() {
    let home = Home::new();
    let scene = home.standard_scene("shot");
    let server = Server::start(&home, &["--no-worker", "--heartbeat-ms", "200"]);
    let url = server.url("/api/v1/events");
    let open = |extra: Option<(&str, String)>| {
        let mut req = agent().get(&url).header("Accept", "text/event-stream");
        if let Some((k, v)) = extra {
            req = req.header(k, &v);
        }
        let resp = req.call().expect("GET events");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        std::io::BufReader::new(resp.into_body().into_reader())
    };
    let mut stream = open(None);
    let snapshot = sse_until(&mut stream, |_| true);
    assert_eq!(snapshot[0]["type"], "snapshot", "{}", snapshot[0]);
    let start = snapshot[0]["seq"].as_i64().expect("seq");

    let created = post(
        &server.url("/api/v1/runs"),
        json!({"runs": [{"prompt": "gulls over a pier", "inputs": s(&scene)}]}),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let id = created.1["runs"][0]["id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let got = sse_until(&mut stream, |m| m["type"] == "event");
    let event = got.last().expect("an event");
    assert_eq!(event["event"]["run_id"], id.as_str());
    assert_eq!(event["event"]["stage"], "queued");

    // An EventSource reconnecting with Last-Event-ID gets what came after it, no snapshot.
    let mut resumed = open(Some(("Last-Event-ID", start.to_string())));
    let first = sse_until(&mut resumed, |_| true);
    assert_eq!(first[0]["type"], "event", "{}", first[0]);
    assert_eq!(first[0]["seq"], event["seq"]);
    assert_eq!(server.stop().0, 0);
}
