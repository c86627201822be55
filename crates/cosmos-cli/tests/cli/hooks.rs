//! Hooks (issue 18): `[[hooks]]` programs and webhooks told of runs' ends, an empty queue
//! and lost targets, each occasion once however many processes see it; a webhook signed with
//! HMAC-SHA256 (checked by Python's own `hmac`), retried, and never in a run's way; a program
//! that hangs cut off at its limit; failures recorded as the run's events; bad hooks refused
//! at config load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::local::Local;
use super::support::{s, stop_worker};

/// Writes `cosmos.toml` (owner-only: a hook may hold a secret).
fn configure(l: &Local, toml: &str) {
    let home = l.home.home();
    std::fs::create_dir_all(&home).expect("home");
    let path = home.join("cosmos.toml");
    std::fs::write(&path, toml).expect("config");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A hook that keeps each delivery it gets as a file of its own in `dir`.
pub(super) fn recorder(name: &str, on: &str, dir: &Path) -> String {
    format!(
        "[[hooks]]\nname = \"{name}\"\non = [{on}]\ncommand = [\"/bin/sh\", \"-c\", \
         'cat > \"$0/$(date +%s%N)-$$.json\"', \"{}\"]\n",
        dir.display()
    )
}

pub(super) fn deliveries(dir: &Path) -> Vec<Value> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .expect("deliveries")
        .map(|e| {
            let path = e.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("delivery");
            (path, serde_json::from_str(&text).expect("a JSON event"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

fn count(events: &[Value], event: &str, run: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == event && e["run"]["id"] == run)
        .count()
}

#[test]
fn a_program_hook_hears_each_runs_end_and_each_empty_queue_once() {
    let l = Local::new();
    let got = tempfile::tempdir().expect("dir");
    configure(
        &l,
        &recorder(
            "rec",
            "\"run.succeeded\", \"run.failed\", \"run.cancelled\", \"queue.empty\"",
            got.path(),
        ),
    );
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");

    // Succeeded, driven by this command.
    let ok = l.run_ok("b", "a red car on a wet street", &scene);
    let ok_id = ok["id"].as_str().expect("id").to_owned();
    // Failed: the sim's guardrail blocks the word.
    let failed = l.run(&["run", "forbiddenfruit on a table", s(&scene), "--json"]);
    assert_ne!(failed.code, 0);
    let failed_id = failed.json()["id"].as_str().expect("id").to_owned();
    // Cancelled while queued.
    l.run(&["queue", "pause"]).ok();
    let queued = l.run(&["run", "a blue boat", s(&scene), "--no-wait"]).ok();
    let cancelled_id = queued.stdout.trim().to_owned();
    l.run(&["kill", &cancelled_id]).ok();
    l.run(&["queue", "resume"]).ok();

    // A worker drives the next run while `cosmos run` follows it: two processes with the
    // same hooks see its end; one tells.
    let worker = l.home.spawn_worker(&[("PATH", &l.path())]);
    let by_worker = l.run_ok("b", "a green tram", &scene);
    let by_worker_id = by_worker["id"].as_str().expect("id").to_owned();
    stop_worker(worker);

    let events = deliveries(got.path());
    assert_eq!(count(&events, "run.succeeded", &ok_id), 1, "{events:#?}");
    assert_eq!(count(&events, "run.failed", &failed_id), 1, "{events:#?}");
    assert_eq!(count(&events, "run.cancelled", &cancelled_id), 1);
    assert_eq!(count(&events, "run.succeeded", &by_worker_id), 1);
    // The queue emptied after each of the four.
    let empty: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "queue.empty")
        .collect();
    assert_eq!(empty.len(), 4, "{events:#?}");
    assert_eq!(events.len(), 8, "{events:#?}");

    // The JSON: the run as `cosmos show --json` has it, and what the delivery is.
    let failed_event = events
        .iter()
        .find(|e| e["event"] == "run.failed")
        .expect("run.failed");
    assert_eq!(failed_event["hook"], "rec");
    assert_eq!(failed_event["test"], false);
    assert_eq!(failed_event["run"]["status"], "failed");
    assert_eq!(failed_event["run"]["failure_code"], "guardrail_blocked");
    assert_eq!(failed_event["occasion"], format!("run.failed:{failed_id}"));
    let ok_event = events
        .iter()
        .find(|e| e["event"] == "run.succeeded" && e["run"]["id"] == ok_id.as_str())
        .expect("run.succeeded");
    assert_eq!(ok_event["run"]["outputs"], ok["outputs"]);
    assert_eq!(ok_event["run"]["prompt_text"], "a red car on a wet street");

    // Every delivery is on record.
    let listed = l.run(&["hooks", "list", "--json"]).ok().json();
    let recorded = listed["deliveries"].as_array().expect("deliveries");
    assert_eq!(recorded.len(), 8, "{listed}");
    assert!(
        recorded.iter().all(|d| d["state"] == "delivered"),
        "{listed}"
    );
}

/// What a test webhook received: headers (lower-case names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A one-thread HTTP server on 127.0.0.1 that answers each POST with the next status of
/// `answers` (the last one for ever after).
fn webhook_server(answers: Vec<u16>) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/cosmos", listener.local_addr().expect("addr"));
    let received: Received = Arc::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            keep.lock()
                .expect("lock")
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let status = *answers.get(i).or(answers.last()).unwrap_or(&200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, received)
}

/// Python's `hmac` over `body` with `key`: an implementation that is not ours.
fn python_hmac(key: &str, body: &str) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, sys; \
             print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_webhook_is_signed_retried_and_never_holds_up_a_run() {
    let l = Local::new();
    // The first answer is a server error: the delivery is tried again and lands.
    let (url, received) = webhook_server(vec![503, 200]);
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/gone", l.local_addr().expect("addr"))
    };
    let got_empty = tempfile::tempdir().expect("dir");
    configure(
        &l,
        &format!(
            "[[hooks]]\nname = \"tracker\"\non = [\"run.succeeded\"]\nurl = \"{url}\"\n\
             secret_env = \"TRACKER_SECRET\"\nretries = 2\nbackoff_seconds = 0.2\n\n\
             [[hooks]]\nname = \"dead\"\non = [\"run.succeeded\"]\nurl = \"{dead}\"\n\
             retries = 2\nbackoff_seconds = 0.2\ntimeout_seconds = 2.0\n\n{}",
            recorder("empty", "\"queue.empty\"", got_empty.path())
        ),
    );
    let secret = "correct horse battery staple";
    let path = l.path();
    let env = [("PATH", path.as_str()), ("TRACKER_SECRET", secret)];
    l.home
        .run_with(
            &[
                "target",
                "add",
                "b",
                "--local",
                "--runtime",
                "none",
                "--gpus",
                "1",
                "--root",
                s(&l.root()),
                "--cosmos-dir",
                s(&l.checkout()),
            ],
            &env,
        )
        .ok();
    let scene = l.home.standard_scene("shot");
    let out = l
        .home
        .run_with(&["run", "a red car", s(&scene), "--json"], &env)
        .ok();
    let run = out.json();
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["status"], "succeeded");

    // Two attempts reached the server: the same signed body each time.
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "{got:?}");
    for (headers, body) in &got {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            header("x-cosmos-signature-256"),
            format!("sha256={}", python_hmac(secret, body))
        );
        assert_eq!(header("x-cosmos-event"), "run.succeeded");
        assert_eq!(header("content-type"), "application/json");
        let event: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(event["run"]["id"], id);
        assert_eq!(event["event"], "run.succeeded");
    }
    // A different secret would not verify.
    assert_ne!(
        format!("sha256={}", python_hmac("wrong", &got[0].1)),
        got[0]
            .0
            .iter()
            .find(|(k, _)| k == "x-cosmos-signature-256")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    );

    // The dead URL: the run succeeded regardless; the failure is on record and shown with
    // the run, after its end.
    let events = l.home.run_with(&["show", id, "--json"], &env).ok().json();
    let messages: Vec<String> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    let failure = messages
        .iter()
        .position(|m| m.starts_with("hook `dead` (run.succeeded) failed after 3 attempts"))
        .unwrap_or_else(|| panic!("no hook failure event: {messages:#?}"));
    let ended = messages
        .iter()
        .position(|m| m.contains("downloaded and verified"))
        .expect("the run's end");
    assert!(ended < failure, "{messages:#?}");
    assert!(
        !messages.iter().any(|m| m.starts_with("hook `tracker`")),
        "{messages:#?}"
    );
    let shown = l.home.run_with(&["show", id], &env).ok().stdout;
    assert!(
        shown.contains("hook `dead` (run.succeeded) failed"),
        "{shown}"
    );
    let listed = l.home.run_with(&["hooks", "list"], &env).ok().stdout;
    assert!(
        listed.contains("failed") && listed.contains("delivered"),
        "{listed}"
    );
    assert!(
        listed.contains("POST") && listed.contains("(signed)"),
        "{listed}"
    );
    // The failure recorded on the run is not a second end: the queue emptied once.
    assert_eq!(deliveries(got_empty.path()).len(), 1);
    // No secret anywhere cosmos keeps things.
    let db = std::fs::read(l.home.home().join("cosmos.db")).expect("database");
    assert!(!String::from_utf8_lossy(&db).contains(secret));

    // `cosmos hooks test`: a sample event, marked as one, signed the same way.
    let tested = l
        .home
        .run_with(&["hooks", "test", "tracker", "--json"], &env)
        .ok()
        .json();
    assert_eq!(tested["delivered"], true, "{tested}");
    let got = received.lock().expect("lock").clone();
    let (headers, body) = got.last().expect("the test delivery");
    let event: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(event["test"], true);
    assert!(headers.iter().any(|(k, v)| k == "x-cosmos-signature-256"
        && *v == format!("sha256={}", python_hmac(secret, body))));
    let dead_test = l.home.run_with(&["hooks", "test", "dead"], &env);
    assert_eq!(dead_test.code, 1);
    assert!(
        dead_test.stderr.contains("failed after 3 attempts"),
        "{}",
        dead_test.stderr
    );
}

#[test]
fn a_hook_that_hangs_is_cut_off_at_its_limit() {
    let l = Local::new();
    configure(
        &l,
        "[[hooks]]\nname = \"slow\"\non = [\"run.succeeded\"]\n\
         command = [\"sleep\", \"31.25\"]\ntimeout_seconds = 0.5\n",
    );
    let started = Instant::now();
    let out = l.run(&["hooks", "test", "slow"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`sleep` did not finish within 500ms and was stopped"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let left = Command::new("pgrep")
        .args(["-f", "sleep 31.25"])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "the hook's program is still running"
    );

    // A run's hook that hangs: the run is not held, the command ends, the failure is shown.
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    let run = l.run_ok("b", "a quiet street", &scene);
    let id = run["id"].as_str().expect("id");
    let shown = l.run(&["show", id]).ok().stdout;
    assert!(
        shown
            .contains("hook `slow` (run.succeeded) failed after 1 attempt: `sleep` did not finish"),
        "{shown}"
    );
}

#[test]
fn bad_hooks_are_refused_at_config_load() {
    let l = Local::new();
    let cases = [
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\ncommand = \"notify-send 'run failed'\"\n",
            "`command` is a string (\"notify-send 'run failed'\"), and cosmos never runs a shell",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.finished\"]\ncommand = [\"true\"]\n",
            "unknown event `run.finished`: use run.succeeded, run.failed",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\n",
            "give it a `command`",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\nurl = \"ftp://x\"\n",
            "give an http:// or https:// URL",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\nurl = \"http://x\"\nsecret_env = \"NOT_SET_ANYWHERE\"\n",
            "`secret_env` names `NOT_SET_ANYWHERE`, which is not set",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\ncommand = [\"true\"]\ntimeout_seconds = 0\n",
            "`timeout_seconds` is 0",
        ),
        (
            "[[hooks]]\nname = \"n\"\non = [\"run.failed\"]\ncommand = [\"true\"]\n[[hooks]]\nname = \"n\"\non = [\"queue.empty\"]\ncommand = [\"true\"]\n",
            "two hooks are named `n`",
        ),
    ];
    for (toml, needle) in cases {
        configure(&l, toml);
        l.run(&["list"]).fails_with(needle);
    }
    // A secret in a file others can read is refused too.
    configure(
        &l,
        "[[hooks]]\nname = \"w\"\non = [\"run.failed\"]\nurl = \"http://127.0.0.1:9/\"\nsecret = \"x\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        l.home.home().join("cosmos.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    l.run(&["list"])
        .fails_with("holds a secret (the secret of hook `w`)");
    // Unknown name.
    configure(
        &l,
        "[[hooks]]\nname = \"w\"\non = [\"run.failed\"]\ncommand = [\"true\"]\n",
    );
    let out = l.run(&["hooks", "test", "nope"]);
    assert!(
        out.stderr.contains("no hook named `nope`"),
        "{}",
        out.stderr
    );
}
