//! `cosmos serve` from the outside: a real server on 127.0.0.1 and a real HTTP client
//! (ureq). Every REST endpoint with its happy path and its errors, the guard (token,
//! login cookie, Origin, Host, body size), refusing a non-loopback bind without a token,
//! and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{Home, s};

/// A `cosmos serve` process and where it listens.
pub(super) struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `cosmos serve --bind 127.0.0.1:0 ARGS…` and waits until it listens.
    pub(super) fn start(home: &Home, args: &[&str]) -> Server {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_raw(home, &all)
    }

    pub(super) fn start_raw(home: &Home, args: &[&str]) -> Server {
        let home_dir = home.path().display().to_string();
        let mut child = home
            .command(args)
            .env("HOME", &home_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cosmos serve");
        let err = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("serving http://")
                    && let Some(addr) = rest.split('/').next()
                {
                    let _ = tx.send(addr.to_owned());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "cosmos serve did not start:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        };
        Server { child, addr, log }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then its exit code and everything it printed.
    pub(super) fn stop(mut self) -> (i32, String) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        (status.code().unwrap_or(-1), self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that reports every status (no redirects followed).
pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into()
}

/// A response's status and JSON body (`Null` when the body is not JSON).
pub(super) fn json_of(mut r: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) fn get(url: &str) -> (u16, Value) {
    json_of(agent().get(url).call().expect("GET"))
}

pub(super) fn post(url: &str, body: Value) -> (u16, Value) {
    json_of(agent().post(url).send_json(&body).expect("POST"))
}

pub(super) fn put(url: &str, body: Value) -> (u16, Value) {
    json_of(agent().put(url).send_json(&body).expect("PUT"))
}

/// Asserts an error response: status, code, and the `{"error":{"code","message"}}` shape.
#[track_caller]
pub(super) fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error says what is wrong: {}",
        got.1
    );
}

/// A raw HTTP/1.1 request (for headers a client library would fix up): the status and
/// the response as text (headers and a `Content-Length` body).
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn every_rest_endpoint_works_and_errors_carry_the_engine_s_codes() {
    let home = Home::new();
    let scene = home.standard_scene("shot");
    let server = Server::start(&home, &["--no-worker"]);
    let api = |p: &str| server.url(&format!("/api/v1{p}"));

    // Input sets: a folder on the server's machine.
    let added = post(
        &api("/inputs"),
        json!({"dir": s(&scene), "name": "harbour"}),
    );
    assert_eq!(added.0, 201, "{}", added.1);
    let set_id = added.1["id"].as_str().expect("input set id").to_owned();
    assert_eq!(added.1["files"].as_array().map(Vec::len), Some(3));
    let again = post(&api("/inputs"), json!({"dir": s(&scene)}));
    assert_eq!((again.0, again.1["reused"].as_bool()), (200, Some(true)));
    assert_error(
        &post(&api("/inputs"), json!({"dir": "relative/dir"})),
        400,
        "relative_path",
    );
    let missing = home.path().join("nowhere");
    assert_eq!(post(&api("/inputs"), json!({"dir": s(&missing)})).0, 400);
    let (st, sets) = get(&api("/inputs"));
    assert_eq!((st, sets.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        get(&api(&format!("/inputs/{}", &set_id[..8]))).1["id"],
        set_id.as_str()
    );

    // Prompts: create, reuse, list, show, edit, search.
    let created = post(
        &api("/prompts"),
        json!({"text": "a foggy harbour at dawn, <b>cranes</b>", "inputs": set_id, "name": "fog"}),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let prompt_id = created.1["prompt"]["id"]
        .as_str()
        .expect("prompt id")
        .to_owned();
    let same = post(
        &api("/prompts"),
        json!({"text": "a foggy harbour at dawn, <b>cranes</b>", "inputs": set_id}),
    );
    assert_eq!((same.0, same.1["reused"].as_bool()), (200, Some(true)));
    assert_error(
        &post(&api("/prompts"), json!({"text": "   "})),
        400,
        "invalid_input",
    );
    assert_error(
        &post(&api("/prompts"), json!({"text": "x", "colour": 1})),
        400,
        "invalid_body",
    );
    assert_eq!(get(&api("/prompts")).1.as_array().map(Vec::len), Some(1));
    assert_eq!(
        get(&api("/prompts/fog")).1["prompt"]["id"],
        prompt_id.as_str()
    );
    let edited = json_of(
        agent()
            .patch(&api(&format!("/prompts/{prompt_id}")))
            .send_json(json!({"negative": "blurry"}))
            .expect("PATCH"),
    );
    assert_eq!((edited.0, &edited.1["negative"]), (200, &json!("blurry")));
    let hits = get(&api("/prompts/search?q=harbour"));
    assert_eq!(hits.0, 200, "{}", hits.1);
    let html = hits.1[0]["snippet_html"].as_str().unwrap_or_default();
    assert!(html.contains("<mark>harbour</mark>"), "{html}");
    assert!(
        html.contains("&lt;b&gt;cranes") && !html.contains("<b>"),
        "text is escaped: {html}"
    );
    assert_error(
        &get(&api("/prompts/search?q=%22unclosed")),
        400,
        "bad_search_query",
    );

    // Runs: a dry run plans without storing; a sweep queues one run per seed.
    let dry = post(
        &api("/runs"),
        json!({"runs": [{"prompt": prompt_id, "seed": 7}], "dry_run": true}),
    );
    assert_eq!(dry.0, 200, "{}", dry.1);
    assert!(dry.1["plans"][0]["spec"].is_object(), "{}", dry.1);
    assert!(
        dry.1["plans"][0]["container_command"].is_array(),
        "{}",
        dry.1
    );
    assert_eq!(dry.1["runs"].as_array().map(Vec::len), Some(0));
    let sweep = post(
        &api("/runs"),
        json!({"runs": [{"prompt": prompt_id, "seeds": "1..5", "steps": 10}]}),
    );
    assert_eq!(sweep.0, 201, "{}", sweep.1);
    let ids: Vec<String> = sweep.1["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    assert_error(
        &post(
            &api("/runs"),
            json!({"runs": [{"prompt": prompt_id, "steps": 0}]}),
        ),
        400,
        "invalid_spec",
    );
    assert_error(&post(&api("/runs"), json!({"runs": []})), 400, "no_runs");
    assert_error(
        &post(
            &api("/runs"),
            json!({"runs": [{"prompt": prompt_id, "seeds": "1..50"}], "max_runs": 10}),
        ),
        400,
        "invalid_input",
    );

    // Pages follow the cursor with nothing repeated or skipped.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => api(&format!("/runs?limit=2&count=true&cursor={c}")),
            None => api("/runs?limit=2&count=true"),
        };
        let (st, page) = get(&url);
        assert_eq!(st, 200, "{page}");
        assert_eq!(page["total"], 5);
        for r in page["runs"].as_array().expect("runs") {
            seen.push(r["id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");
    let filtered = get(&api(&format!(
        "/runs?status=queued&prompt=fog&input_set={}",
        &set_id[..10]
    )));
    assert_eq!(
        filtered.1["runs"].as_array().map(Vec::len),
        Some(5),
        "{}",
        filtered.1
    );
    assert_eq!(
        get(&api("/runs?status=running")).1["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        get(&api("/runs?target=elsewhere")).1["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_error(&get(&api("/runs?status=sleeping")), 400, "invalid_status");
    assert_error(&get(&api("/runs?cursor=nonsense")), 400, "invalid_cursor");
    assert_error(&get(&api("/runs?limit=0")), 400, "invalid_limit");
    assert_error(&get(&api("/runs?limit=abc")), 400, "invalid_query");
    assert_error(&get(&api("/runs?prompt=nothing-like-it")), 404, "not_found");
    assert_error(&get(&api("/runs?since=yesterday")), 400, "invalid_query");
    let future = get(&api("/runs?since=2999-01-01T00:00:00Z"));
    assert_eq!(future.1["runs"].as_array().map(Vec::len), Some(0));

    // One run: show, priority, rating, events, log, cancel, retry.
    let id = &ids[0];
    assert_eq!(get(&api(&format!("/runs/{id}"))).1["params"]["steps"], 10);
    assert_error(&get(&api("/runs/rs_zzzz")), 404, "not_found");
    let (st, raised) = put(
        &api(&format!("/runs/{id}/priority")),
        json!({"priority": 9}),
    );
    assert_eq!((st, &raised["priority"]), (200, &json!(9)));
    let queue = get(&api("/queue?limit=10"));
    assert_eq!(
        queue.1["queue"][0]["run"]["id"],
        id.as_str(),
        "a raised run is first: {}",
        queue.1
    );
    assert_eq!(queue.1["queued_total"], 5);
    let before = get(&api("/runs?limit=50"));
    let find = |page: &Value| {
        page["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == id.as_str()).cloned())
    };
    assert_eq!(
        find(&before.1).map(|r| r["rating"].clone()),
        Some(Value::Null)
    );
    let (st, rated) = put(
        &api(&format!("/runs/{id}/rating")),
        json!({"rating": 4, "favourite": true}),
    );
    // A page read just before the change is not served after it.
    let after = get(&api("/runs?limit=50"));
    assert_eq!(find(&after.1).map(|r| r["rating"].clone()), Some(json!(4)));
    assert_eq!(
        (st, &rated["rating"], &rated["favourite"]),
        (200, &json!(4), &json!(true))
    );
    assert_error(
        &put(&api(&format!("/runs/{id}/rating")), json!({"rating": 9})),
        400,
        "invalid_input",
    );
    assert_eq!(
        get(&api("/runs?rating=4&favourite=true")).1["runs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (st, events) = get(&api(&format!("/runs/{id}/events")));
    assert_eq!(st, 200);
    let first = events[0]["id"].as_i64().expect("sequence number");
    assert_eq!(events[0]["stage"], "queued");
    assert_eq!(
        get(&api(&format!("/runs/{id}/events?after={first}")))
            .1
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let (st, log) = get(&api(&format!("/runs/{id}/log?tail=10")));
    assert_eq!(
        (st, &log["size"], &log["text"]),
        (200, &json!(0), &json!(""))
    );
    assert_error(
        &get(&api(&format!("/runs/{id}/log?tail=5&offset=0"))),
        400,
        "invalid_range",
    );
    let (st, cancelled) = post(&api(&format!("/runs/{id}/cancel")), json!({}));
    assert_eq!(
        (st, &cancelled["runs"][0]["status"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );
    assert_error(
        &put(
            &api(&format!("/runs/{id}/priority")),
            json!({"priority": 1}),
        ),
        409,
        "not_queued",
    );
    let (st, retried) = post(&api(&format!("/runs/{id}/retry")), json!({}));
    assert_eq!((st, &retried["retry_of"]), (201, &json!(id)), "{retried}");
    assert_error(
        &post(&api(&format!("/runs/{id}/retry")), json!({})),
        409,
        "already_retried",
    );
    assert_error(
        &post(&api(&format!("/runs/{}/retry", ids[1])), json!({})),
        409,
        "conflict",
    );
    assert_error(
        &get(&api(&format!("/runs/{id}/outputs/output.mp4"))),
        404,
        "not_found",
    );

    // Targets and the queue.
    assert_eq!(get(&api("/targets")).1, json!([]));
    assert_error(&get(&api("/targets/gpu")), 404, "no_such_target");
    assert_error(
        &post(&api("/targets/gpu/check"), json!({})),
        404,
        "no_such_target",
    );
    assert_eq!(
        post(&api("/queue/pause"), json!({})).1,
        json!({"paused": true})
    );
    assert_eq!(get(&api("/queue")).1["paused"], true);
    assert_eq!(
        post(&api("/queue/resume"), json!({})).1,
        json!({"paused": false})
    );
    assert_error(
        &post(&api("/queue/pause"), json!({"target": "gpu"})),
        404,
        "no_such_target",
    );

    // Deleting a prompt keeps its runs unless forced.
    assert_error(
        &json_of(agent().delete(&api("/prompts/fog")).call().expect("DELETE")),
        409,
        "in_use",
    );
    let gone = json_of(
        agent()
            .delete(&api("/prompts/fog?force=true"))
            .call()
            .expect("DELETE"),
    );
    assert_eq!(
        (gone.0, &gone.1["runs_deleted"]),
        (200, &json!(6)),
        "{}",
        gone.1
    );

    // Malformed requests get the same error shape.
    assert_error(&get(&server.url("/nowhere")), 404, "not_found");
    assert_error(
        &json_of(agent().delete(&api("/runs")).call().expect("DELETE")),
        405,
        "method_not_allowed",
    );
    let text = json_of(
        agent()
            .post(&api("/prompts"))
            .header("Content-Type", "text/plain")
            .send("text=hello")
            .expect("POST"),
    );
    assert_error(&text, 415, "unsupported_media_type");
    // A body over the limit is refused from its declared length, before it is read.
    let (st, big) = raw(
        &server.addr,
        &format!(
            "POST /api/v1/prompts HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"text\": \"",
            server.addr,
            2 * 1024 * 1024
        ),
    );
    assert_eq!(st, 413, "{big}");
    assert!(big.contains("body_too_large"), "{big}");
    assert_error(&get(&api("/events")), 426, "websocket_required");

    // The document describes what was just used, generated from the code.
    let (st, doc) = get(&api("/openapi.json"));
    assert_eq!((st, &doc["openapi"]), (200, &json!("3.1.0")));
    for path in [
        "/api/v1/runs",
        "/api/v1/runs/{id}/outputs/{name}",
        "/api/v1/prompts/search",
        "/api/v1/queue/pause",
        "/api/v1/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"]["Run"]["properties"]["status"].is_object());

    // Metrics count what is there.
    let mut metrics = agent().get(&server.url("/metrics")).call().expect("GET");
    let text = metrics.body_mut().read_to_string().expect("metrics text");
    assert!(text.contains("cosmos_runs{status=\"queued\"} 0"), "{text}");
    assert!(text.contains("cosmos_queue_paused 0"), "{text}");
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn upscale_and_enhance_are_queued_over_the_api_and_refused_with_codes() {
    let home = Home::new();
    let scene = home.standard_scene("shot");
    let server = Server::start(&home, &["--no-worker"]);
    let api = |p: &str| server.url(&format!("/api/v1{p}"));
    let created = post(
        &api("/prompts"),
        json!({"text": "a quay at night", "inputs": s(&scene), "name": "quay"}),
    );
    assert_eq!(created.0, 201, "{}", created.1);

    // A chain in one submission, then an upscale of a run still queued: both wait for it.
    let queued = post(
        &api("/runs"),
        json!({"runs": [{"prompt": "quay", "upscale": true, "upscale_weight": 0.6}]}),
    );
    assert_eq!(queued.0, 201, "{}", queued.1);
    let runs = queued.1["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 2, "{}", queued.1);
    let parent = runs[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(runs[1]["kind"], "upscale");
    assert_eq!(runs[1]["upscale_of"], parent.as_str());
    assert_eq!(runs[1]["params"]["weights"], "upscale=0.6");
    let more = post(
        &api(&format!("/runs/{parent}/upscale")),
        json!({"weight": 0.4}),
    );
    assert_eq!(more.0, 201, "{}", more.1);
    assert_eq!(more.1["upscale_of"], parent.as_str());
    let shown = get(&api(&format!("/runs/{parent}")));
    assert_eq!(
        shown.1["upscaled_by"].as_array().map(Vec::len),
        Some(2),
        "{}",
        shown.1
    );
    assert_error(
        &post(
            &api(&format!("/runs/{parent}/upscale")),
            json!({"weight": 3}),
        ),
        400,
        "bad_weight",
    );
    assert_eq!(post(&api("/runs/rs_0000000000/upscale"), json!({})).0, 404);
    // An upscale of an upscale is refused.
    let child = more.1["id"].as_str().expect("id");
    assert_error(
        &post(&api(&format!("/runs/{child}/upscale")), json!({})),
        400,
        "not_upscalable",
    );

    // Enhance: a run of kind enhance for a prompt with videos; none for one without.
    let enhance = post(&api("/prompts/quay/enhance"), json!({}));
    assert_eq!(enhance.0, 201, "{}", enhance.1);
    assert_eq!(enhance.1["kind"], "enhance");
    assert_eq!(enhance.1["status"], "queued");
    let bare = post(&api("/prompts"), json!({"text": "an idea", "name": "idea"}));
    assert_eq!(bare.0, 201, "{}", bare.1);
    assert_error(
        &post(&api("/prompts/idea/enhance"), json!({})),
        400,
        "needs_inputs",
    );
}

#[test]
fn the_guard_checks_the_token_the_login_cookie_the_origin_and_the_host() {
    let home = Home::new();
    let token_file = home.path().join("api-token");
    std::fs::write(&token_file, "correct-horse-battery-staple\n").expect("token file");
    let server = Server::start(&home, &["--no-worker", "--token-file", s(&token_file)]);
    let runs = server.url("/api/v1/runs");

    assert_error(&get(&runs), 401, "unauthorized");
    let wrong = json_of(
        agent()
            .get(&runs)
            .header("Authorization", "Bearer correct-horse-battery-stapl")
            .call()
            .expect("GET"),
    );
    assert_error(&wrong, 401, "unauthorized");
    let right = json_of(
        agent()
            .get(&runs)
            .header("Authorization", "Bearer correct-horse-battery-staple")
            .call()
            .expect("GET"),
    );
    assert_eq!(right.0, 200, "{}", right.1);
    // A browser without a session is sent to the login form.
    let page = agent()
        .get(&server.url("/"))
        .header("Accept", "text/html")
        .call()
        .expect("GET");
    assert_eq!(
        (
            page.status().as_u16(),
            page.headers().get("location").and_then(|v| v.to_str().ok())
        ),
        (303, Some("/login"))
    );

    // The login form: a wrong token is refused; the right one gives an HttpOnly cookie.
    let origin = server.url("");
    let bad = agent()
        .post(&server.url("/login"))
        .header("Origin", &origin)
        .send_form([("token", "guess")])
        .expect("POST");
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let good = agent()
        .post(&server.url("/login"))
        .header("Origin", &origin)
        .send_form([("token", "correct-horse-battery-staple")])
        .expect("POST");
    assert_eq!(good.status().as_u16(), 303);
    let cookie = good
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("correct-horse"),
        "the cookie is a session, not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let with_cookie = json_of(
        agent()
            .get(&runs)
            .header("Cookie", &session)
            .call()
            .expect("GET"),
    );
    assert_eq!(with_cookie.0, 200);
    let forged = json_of(
        agent()
            .get(&runs)
            .header("Cookie", "cosmos_session=00ff")
            .call()
            .expect("GET"),
    );
    assert_error(&forged, 401, "unauthorized");

    // A foreign Origin cannot change state, even with a valid session; its own origin can.
    let pause_from = |from: &str| {
        json_of(
            agent()
                .post(&server.url("/api/v1/queue/pause"))
                .header("Cookie", &session)
                .header("Origin", from)
                .send_json(json!({}))
                .expect("POST"),
        )
    };
    assert_error(&pause_from("http://evil.example"), 403, "origin_refused");
    let own = pause_from(&origin);
    assert_eq!(own.0, 200, "{}", own.1);
    // A WebSocket upgrade from a foreign origin is refused before it upgrades.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let (st, _) = raw(
        &server.addr,
        &format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer correct-horse-battery-staple\r\nOrigin: http://evil.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
            server.addr
        ),
    );
    assert_eq!(st, 403);

    // A rebinding Host is refused whatever else the request carries.
    let (st, body) = raw(
        &server.addr,
        "GET /api/v1/runs HTTP/1.1\r\nHost: attacker.example:80\r\nAuthorization: Bearer correct-horse-battery-staple\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 421, "{body}");
    assert!(body.contains("host_refused"), "{body}");
    let port = server.addr.rsplit(':').next().unwrap_or_default();
    let (st, _) = raw(
        &server.addr,
        &format!(
            "GET /api/v1/runs HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer correct-horse-battery-staple\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(st, 200, "localhost names a loopback server");

    // No CORS unless configured: a foreign page's preflight gets no allowance.
    let preflight = agent()
        .options(&runs)
        .header("Origin", "http://notebook.lan:8888")
        .header("Access-Control-Request-Method", "GET")
        .call()
        .expect("OPTIONS");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // The token is nowhere the server writes.
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("correct-horse"), "{log}");
}

#[test]
fn a_configured_cors_origin_may_call_the_api_from_a_browser_and_no_other() {
    let home = Home::new();
    let server = Server::start(
        &home,
        &["--no-worker", "--cors-origin", "http://notebook.lan:8888"],
    );
    let runs = server.url("/api/v1/runs");
    let preflight = agent()
        .options(&runs)
        .header("Origin", "http://notebook.lan:8888")
        .header("Access-Control-Request-Method", "POST")
        .call()
        .expect("OPTIONS");
    assert_eq!(preflight.status().as_u16(), 204);
    let allowed = |r: &ureq::http::Response<ureq::Body>| {
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        allowed(&preflight).as_deref(),
        Some("http://notebook.lan:8888")
    );
    let listed = agent()
        .get(&runs)
        .header("Origin", "http://notebook.lan:8888")
        .call()
        .expect("GET");
    assert_eq!(
        allowed(&listed).as_deref(),
        Some("http://notebook.lan:8888")
    );
    let paused = json_of(
        agent()
            .post(&server.url("/api/v1/queue/pause"))
            .header("Origin", "http://notebook.lan:8888")
            .send_json(json!({}))
            .expect("POST"),
    );
    assert_eq!(paused.0, 200, "{}", paused.1);
    let other = agent()
        .get(&runs)
        .header("Origin", "http://evil.example")
        .call()
        .expect("GET");
    assert_eq!(allowed(&other), None);
    assert_eq!(server.stop().0, 0);
}

/// `/api/v1/runs` of a server bound to every address, reached over loopback.
fn loopback_runs(server: &Server) -> String {
    let port = server.addr.rsplit(':').next().unwrap_or_default();
    format!("http://127.0.0.1:{port}/api/v1/runs")
}

/// The status of listing runs with `token` as the bearer.
fn runs_with_token(server: &Server, token: &str) -> u16 {
    let r = agent()
        .get(&loopback_runs(server))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET");
    r.status().as_u16()
}

#[test]
fn a_non_loopback_bind_needs_a_token_that_is_printed_once_and_kept_as_a_hash() {
    let home = Home::new();
    home.run(&["init"]).ok();
    home.run(&["serve", "--bind", "0.0.0.0:0", "--no-worker"])
        .fails_with("needs an access token: pass --token-file FILE, or --new-token");

    let server = Server::start_raw(
        &home,
        &["serve", "--bind", "0.0.0.0:0", "--no-worker", "--new-token"],
    );
    let log = server.log();
    let token = log
        .lines()
        .find_map(|l| l.split("only its hash is kept): ").nth(1))
        .expect("the token is printed")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64, "{log}");
    assert_error(&get(&loopback_runs(&server)), 401, "unauthorized");
    assert_eq!(runs_with_token(&server, &token), 200);
    assert_eq!(server.stop().0, 0);

    // Only the hash is stored, owner-only; the next start uses it and prints nothing.
    let data = home.home();
    let stored = std::fs::read_dir(&data)
        .expect("data dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("serve-token"))
        })
        .expect("a stored hash");
    let text = std::fs::read_to_string(&stored).expect("hash file");
    assert!(!text.contains(&token), "the token itself is not stored");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = Server::start_raw(&home, &["serve", "--bind", "0.0.0.0:0", "--no-worker"]);
    assert!(!again.log().contains("only its hash is kept"));
    assert_eq!(runs_with_token(&again, &token), 200);
    assert_eq!(again.stop().0, 0);
}
