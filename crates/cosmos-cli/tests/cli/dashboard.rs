//! The dashboard in a real browser: headless Chromium over WebDriver against `cosmos serve`
//! with its worker on the quickstart's rehearsal target (cosmos-sim as a local process).
//! Each test saves screenshots of the pages it visits under `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use cosmos_testkit::{Browser, sim_binary, workspace_root};

use super::serve::Server;
use super::support::{Home, TestResult, s};

const WAIT: Duration = Duration::from_secs(30);

fn shot(b: &Browser, name: &str) -> TestResult {
    let path: PathBuf = workspace_root()
        .join("target/dashboard-screenshots")
        .join(format!("{name}.png"));
    b.screenshot(&path)?;
    assert!(
        std::fs::metadata(&path)?.len() > 1000,
        "{name}.png is empty"
    );
    Ok(())
}

/// No page logged an error since the last look.
#[track_caller]
fn no_console_errors(b: &Browser, page: &str) {
    let errors = b.console_errors().expect("the browser's log");
    assert!(errors.is_empty(), "{page} logged errors: {errors:#?}");
}

/// A home after `cosmos quickstart`: a rehearsal target and one finished run.
fn quickstarted() -> Result<(Home, String), Box<dyn std::error::Error>> {
    sim_binary()?;
    let home = Home::new();
    home.run(&["quickstart"]).ok();
    let list = home.run(&["list", "--json"]).ok().json();
    let prompt = list[0]["prompt_name"]
        .as_str()
        .ok_or("a prompt")?
        .to_owned();
    Ok((home, prompt))
}

fn run_json(home: &Home, id: &str) -> Value {
    home.run(&["show", id, "--json"]).ok().json()["run"].clone()
}

#[test]
fn the_runs_table_follows_a_run_live_without_reloading() -> TestResult {
    let (home, prompt) = quickstarted()?;
    // Slow enough to be seen running.
    home.run(&[
        "target",
        "edit",
        "rehearsal",
        "--env",
        "COSMOS_SIM_LOAD_SECONDS=1",
        "--env",
        "COSMOS_SIM_CLIP_SECONDS=2",
    ])
    .ok();
    let server = Server::start(&home, &[]);
    let b = Browser::start()?;
    b.goto(&server.url("/"))?;
    b.wait_for("document.querySelector('.live.on')", WAIT)?;
    // A reload would forget this.
    b.exec("window.stayed = true;", &[])?;
    let id = home
        .run(&["run", &prompt, "--seed", "77", "--no-wait"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let row = format!("document.querySelector('tr[data-run=\"{id}\"]')");
    b.wait_for(&row, WAIT)?;
    let running = b.wait_for(
        &format!(
            "{row}.dataset.status === 'running' && {row}.querySelector('.c-stage').textContent"
        ),
        WAIT,
    )?;
    assert!(running.as_str().is_some_and(|t| !t.is_empty()), "{running}");
    shot(&b, "runs-live")?;
    b.wait_for(&format!("{row}.dataset.status === 'succeeded'"), WAIT)?;
    assert_eq!(
        b.text(&format!("tr[data-run=\"{id}\"] .c-status"))?,
        "succeeded"
    );
    assert_eq!(b.exec("return window.stayed === true;", &[])?, json!(true));
    assert_eq!(run_json(&home, &id)["status"], "succeeded");
    no_console_errors(&b, "/");

    // Many at once: queue two behind a pause, pick both, cancel them from the page.
    home.run(&["queue", "pause"]).ok();
    let sweep = home
        .run(&["run", &prompt, "--seeds", "5..6", "--no-wait"])
        .ok()
        .stdout;
    let ids: Vec<&str> = sweep.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{sweep}");
    for id in &ids {
        b.wait_for(
            &format!("document.querySelector('tr[data-run=\"{id}\"]')"),
            WAIT,
        )?;
        b.click(&format!("tr[data-run=\"{id}\"] input.pick"))?;
    }
    b.click("#cancel-picked")?;
    for id in &ids {
        b.wait_for(
            &format!(
                "document.querySelector('tr[data-run=\"{id}\"]').dataset.status === 'cancelled'"
            ),
            WAIT,
        )?;
        assert_eq!(run_json(&home, id)["status"], "cancelled");
    }
    no_console_errors(&b, "/ after cancelling");
    Ok(())
}

#[test]
fn a_run_page_plays_seeks_in_lockstep_and_keeps_its_rating() -> TestResult {
    let (home, _) = quickstarted()?;
    let id = home.run(&["list", "--json"]).ok().json()[0]["id"]
        .as_str()
        .ok_or("a run")?
        .to_owned();
    let server = Server::start(&home, &["--no-worker"]);
    let b = Browser::start()?;
    b.goto(&server.url(&format!("/runs/{id}")))?;
    let videos = "[...document.querySelectorAll('.lockstep video')]";
    let count = b.wait_for(
        &format!("{videos}.every(v => v.readyState >= 2) && {videos}.length"),
        WAIT,
    )?;
    assert!(
        count.as_u64().is_some_and(|n| n >= 3),
        "output and controls: {count}"
    );
    assert!(
        b.exec(&format!("return {videos}[0].currentSrc;"), &[])?
            .as_str()
            .is_some_and(|src| src.contains(&format!("/api/v1/runs/{id}/outputs/"))),
        "the output leads"
    );

    // It plays: the output's clock moves, and the controls' with it.
    b.click(".lockstep button.play")?;
    b.wait_for(&format!("{videos}[0].currentTime > 0.4"), WAIT)?;
    b.wait_for(&format!("{videos}.every(v => v.currentTime > 0.2)"), WAIT)?;
    b.click(".lockstep button.play")?;
    b.wait_for(&format!("{videos}.every(v => v.paused)"), WAIT)?;

    // A seek from the scrubber lands every video within one frame of the others.
    let fps = b
        .exec(
            "return Number(document.querySelector('.lockstep').dataset.fps);",
            &[],
        )?
        .as_f64()
        .ok_or("fps")?;
    for at in [0.73, 0.2, 0.5] {
        b.exec(
            "const s = document.querySelector('.lockstep input.scrub');
             s.value = arguments[0]; s.dispatchEvent(new Event('input'));
             s.dispatchEvent(new Event('change'));",
            &[json!(at)],
        )?;
        b.wait_for(&format!("{videos}.every(v => !v.seeking)"), WAIT)?;
        let times = b.exec(&format!("return {videos}.map(v => v.currentTime);"), &[])?;
        let times: Vec<f64> = times
            .as_array()
            .ok_or("times")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let (lo, hi) = times
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        assert!(
            hi - lo < 1.0 / fps,
            "after a seek to {at}: {times:?} at {fps} fps"
        );
        assert!(lo > 0.0, "moved: {times:?}");
    }

    // Seeking asks for ranges, which the server answers as such.
    let partial = b.exec_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.querySelector('.lockstep video').currentSrc, { headers: { Range: 'bytes=100-199' } })
           .then(async r => done([r.status, r.headers.get('content-range'), (await r.arrayBuffer()).byteLength]));",
        &[],
    )?;
    assert_eq!(partial[0], json!(206), "{partial}");
    assert!(
        partial[1]
            .as_str()
            .is_some_and(|r| r.starts_with("bytes 100-199/")),
        "{partial}"
    );
    assert_eq!(partial[2], json!(100));

    // The log and the timeline are there.
    b.wait_for(
        "!document.querySelector('#log').textContent.startsWith('loading')",
        WAIT,
    )?;
    assert!(b.text("ol.timeline")?.contains("succeeded"));
    // The spec it gave the model and the command that started it.
    let spec: Value = serde_json::from_str(&b.text("pre.spec")?)?;
    assert!(
        spec["prompt"].as_str().is_some_and(|p| p.contains("neon")),
        "{spec}"
    );
    assert!(!b.text("pre.command")?.is_empty());
    shot(&b, "run-page")?;

    // A rating and a favourite survive a reload, and are the run's.
    b.click(".stars button[data-value=\"4\"]")?;
    b.wait_for(
        "document.querySelector('.stars').dataset.rating === '4'",
        WAIT,
    )?;
    b.click("button.fav")?;
    b.wait_for("document.querySelector('button.fav.on')", WAIT)?;
    b.reload()?;
    let on = b.wait_for("document.querySelectorAll('.stars button.on').length", WAIT)?;
    assert_eq!(on, json!(4));
    assert_eq!(
        b.exec(
            "return document.querySelector('button.fav').classList.contains('on');",
            &[]
        )?,
        json!(true)
    );
    let run = run_json(&home, &id);
    assert_eq!(
        (run["rating"].clone(), run["favourite"].clone()),
        (json!(4), json!(true))
    );
    no_console_errors(&b, "the run page");

    // "Upscale to 4K" queues an upscale of this run and opens its page.
    b.click("button[data-act=\"upscale\"]")?;
    let moved = b.wait_for(
        &format!("location.pathname.startsWith('/runs/') && location.pathname !== '/runs/{id}' && location.pathname"),
        WAIT,
    )?;
    let new_id = moved
        .as_str()
        .and_then(|p| p.strip_prefix("/runs/"))
        .ok_or("the upscale's page")?
        .to_owned();
    let up = run_json(&home, &new_id);
    assert_eq!(
        (up["kind"].clone(), up["upscale_of"].clone()),
        (json!("upscale"), json!(id))
    );
    Ok(())
}

/// The run of the gallery tile under the keyboard's cursor.
fn cursor_run(b: &Browser) -> Result<String, Box<dyn std::error::Error>> {
    let id = b.exec(
        "return document.querySelector('.tile.cursor').dataset.run;",
        &[],
    )?;
    Ok(id.as_str().ok_or("a tile")?.to_owned())
}

#[test]
fn the_gallery_reviews_from_the_keyboard_and_compares_outputs_side_by_side() -> TestResult {
    let (home, prompt) = quickstarted()?;
    home.run(&["run", &prompt, "--seeds", "11..12"]).ok();
    let server = Server::start(&home, &["--no-worker"]);
    let b = Browser::start()?;
    b.goto(&server.url("/gallery"))?;
    let tiles = b.wait_for("document.querySelectorAll('.gallery .tile').length", WAIT)?;
    assert_eq!(tiles, json!(3));
    // The first tile has the cursor: 3 rates it, f marks it, c picks it; → and c the next.
    let first = cursor_run(&b)?;
    b.keys("3f")?;
    b.wait_for(
        "document.querySelector('.tile.cursor').dataset.rating === '3'",
        WAIT,
    )?;
    b.wait_for(
        "document.querySelector('.tile.cursor').dataset.favourite === 'true'",
        WAIT,
    )?;
    b.keys("c\u{E014}c")?;
    let second = cursor_run(&b)?;
    assert_ne!(first, second);
    let run = run_json(&home, &first);
    assert_eq!(
        (run["rating"].clone(), run["favourite"].clone()),
        (json!(3), json!(true))
    );
    shot(&b, "gallery")?;
    no_console_errors(&b, "the gallery");

    b.click("#compare")?;
    b.wait_for("location.pathname === '/compare'", WAIT)?;
    let videos = "[...document.querySelectorAll('.lockstep video')]";
    let n = b.wait_for(
        &format!("{videos}.every(v => v.readyState >= 2) && {videos}.length"),
        WAIT,
    )?;
    assert_eq!(n, json!(2));
    let differs = b.exec(
        "return [...document.querySelectorAll('table.diff tr.differs td:first-child')].map(td => td.textContent);",
        &[],
    )?;
    assert!(differs.to_string().contains("seed"), "{differs}");
    assert!(!differs.to_string().contains("weights"), "{differs}");
    b.click(".lockstep button.play")?;
    b.wait_for(&format!("{videos}.every(v => v.currentTime > 0.3)"), WAIT)?;
    shot(&b, "compare")?;
    no_console_errors(&b, "compare");
    Ok(())
}

#[test]
fn every_page_renders_without_console_errors() -> TestResult {
    let (home, prompt) = quickstarted()?;
    let list = home.run(&["list", "--json"]).ok().json();
    let run = list[0]["id"].as_str().ok_or("a run")?.to_owned();
    let set = list[0]["input_set_id"]
        .as_str()
        .ok_or("an input set")?
        .to_owned();
    let prompt_id = list[0]["prompt_id"].as_str().ok_or("a prompt")?.to_owned();
    let server = Server::start(&home, &[]);
    let b = Browser::start()?;
    let pages = [
        ("runs", "/".to_owned(), "#runs"),
        ("run", format!("/runs/{run}"), ".lockstep"),
        ("gallery", "/gallery".to_owned(), ".gallery"),
        ("queue", "/queue".to_owned(), "#targets"),
        ("inputs", "/inputs".to_owned(), "table.list"),
        ("input-set", format!("/inputs/{set}"), ".lockstep"),
        ("prompts", "/prompts".to_owned(), "table.list"),
        (
            "prompt-search",
            format!("/prompts?q={}", prompt.split('-').next().unwrap_or("a")),
            "mark",
        ),
        ("prompt", format!("/prompts/{prompt_id}"), ".gallery"),
    ];
    for (name, path, marker) in &pages {
        b.goto(&server.url(path))?;
        b.wait_for(&format!("document.querySelector('{marker}')"), WAIT)?;
        // Let modules load, sockets open and videos start loading.
        std::thread::sleep(Duration::from_millis(400));
        shot(&b, name)?;
        no_console_errors(&b, path);
    }
    // The queue page pauses and resumes a target.
    b.goto(&server.url("/queue"))?;
    for (verb, then, paused) in [("pause", "resume", true), ("resume", "pause", false)] {
        b.click(&format!(
            "button[data-queue=\"{verb}\"][data-target=\"rehearsal\"]"
        ))?;
        b.wait_for(
            &format!(
                "document.querySelector('button[data-queue=\"{then}\"][data-target=\"rehearsal\"]')"
            ),
            WAIT,
        )?;
        let status = home.run(&["status", "--json"]).ok().json();
        let state = status["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "rehearsal"))
            .map(|t| t["paused"].clone());
        assert_eq!(state, Some(json!(paused)), "after {verb}: {status}");
    }
    no_console_errors(&b, "/queue after pausing");
    // The runs page searches every run's prompt, not only the page shown.
    let word = prompt.split('-').next().unwrap_or("a");
    b.goto(&server.url(&format!("/?q={word}")))?;
    let rows = b.wait_for("document.querySelectorAll('#runs tbody tr').length", WAIT)?;
    assert_eq!(rows, json!(1));
    b.goto(&server.url("/?q=zeppelin"))?;
    b.wait_for("document.querySelector('#empty')", WAIT)?;
    assert_eq!(
        b.exec(
            "return document.querySelectorAll('#runs tbody tr').length;",
            &[]
        )?,
        json!(0)
    );
    // A bad filter is named on the page, with what to write instead.
    b.goto(&server.url("/gallery?seed=abc&since=yesterday"))?;
    assert!(b.text("main")?.contains("is not a"), "{}", b.text("main")?);
    b.goto(&server.url("/?status=sleeping"))?;
    assert!(
        b.text("main .err")?.contains("sleeping"),
        "{}",
        b.text("main")?
    );
    // A missing page is a page, not a crash.
    b.goto(&server.url("/runs/rs_00000000000000000000000000"))?;
    assert!(b.text("main")?.contains("no run"), "{}", b.text("main")?);
    Ok(())
}

#[test]
fn off_loopback_the_dashboard_asks_for_the_token_and_refuses_a_wrong_one() -> TestResult {
    let home = Home::new();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "correct-horse-battery\n")?;
    let server = Server::start_raw(
        &home,
        &[
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--no-worker",
            "--token-file",
            s(&token_file),
        ],
    );
    let port = server.addr.rsplit(':').next().ok_or("a port")?.to_owned();
    let b = Browser::start()?;
    b.goto(&format!("http://127.0.0.1:{port}/"))?;
    b.wait_for("location.pathname === '/login'", WAIT)?;
    b.type_into("#token", "wrong-token", true)?;
    b.click("button[type=submit]")?;
    b.wait_for("document.querySelector('.err')", WAIT)?;
    assert!(b.text(".err")?.contains("not this server's access token"));
    b.type_into("#token", "correct-horse-battery", true)?;
    b.click("button[type=submit]")?;
    b.wait_for("document.querySelector('#runs')", WAIT)?;
    assert_eq!(b.exec("return location.pathname;", &[])?, json!("/"));
    // The live events follow with the session cookie (the WebSocket upgrade carries it).
    b.wait_for("document.querySelector('.live.on')", WAIT)?;
    // The session cookie is HttpOnly: the page's script cannot read it.
    assert_eq!(b.exec("return document.cookie;", &[])?, json!(""));
    shot(&b, "runs-after-login")?;
    Ok(())
}

#[test]
fn a_prompt_and_a_four_run_sweep_made_in_the_browser_are_queued_and_finish() -> TestResult {
    let (home, _) = quickstarted()?;
    let server = Server::start(&home, &[]);
    let b = Browser::start()?;
    b.goto(&server.url("/new"))?;
    // Each control of the input set shows as a thumbnail ffmpeg made.
    let thumbs = b.wait_for(
        "[...document.querySelectorAll('.thumbs img')].every(i => i.complete && i.naturalWidth === 320)
         && document.querySelectorAll('.thumbs img').length",
        WAIT,
    )?;
    assert!(thumbs.as_u64().is_some_and(|n| n >= 3), "{thumbs}");
    b.type_into(
        "textarea[name=text]",
        "a lighthouse in a winter storm, waves breaking",
        true,
    )?;
    b.click("input[name=inputs]")?;
    b.type_into("input[name=seeds]", "1..4", true)?;
    // A value Cosmos refuses is named inline, with the reason, before anything is queued.
    b.type_into("input[name=steps]", "0", true)?;
    let problem = b.wait_for("document.querySelector('#problems li')?.textContent", WAIT)?;
    assert!(
        problem.as_str().is_some_and(|p| p.contains("steps")),
        "{problem}"
    );
    // The browser notes that refusal (a 400 to the dry run) and nothing else.
    let refused = b.console_errors()?;
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|e| e.contains("/api/v1/runs") && e.contains("400")),
        "{refused:#?}"
    );
    b.type_into("input[name=steps]", "35", true)?;
    b.exec(
        "const s = document.querySelector('input[name=w-depth]'); s.value = 0.6;
         s.dispatchEvent(new Event('input', { bubbles: true }));",
        &[],
    )?;
    let count = b.wait_for(
        "document.querySelector('#count').textContent.includes('4 runs') && document.querySelector('#count').textContent",
        WAIT,
    )?;
    assert_eq!(count, json!("4 runs will be queued"));
    assert!(b.text("#spec")?.contains("a lighthouse in a winter storm"));
    assert!(b.text("#spec")?.contains("depth"), "{}", b.text("#spec")?);
    assert_eq!(
        b.exec(
            "return document.querySelector('#problems').children.length;",
            &[]
        )?,
        json!(0)
    );
    shot(&b, "new")?;
    no_console_errors(&b, "/new");
    b.click("#queue")?;
    b.wait_for("location.pathname === '/'", WAIT)?;
    let runs = || -> Vec<Value> {
        home.run(&["list", "--json"])
            .ok()
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r["prompt_text"]
                    .as_str()
                    .is_some_and(|t| t.contains("lighthouse"))
            })
            .collect()
    };
    let mine = runs();
    assert_eq!(mine.len(), 4, "{mine:?}");
    let mut seeds: Vec<u64> = mine
        .iter()
        .filter_map(|r| r["params"]["seed"].as_u64())
        .collect();
    seeds.sort_unstable();
    assert_eq!(seeds, [1, 2, 3, 4]);
    assert!(
        mine.iter().all(|r| r["params"]["weights"] == "depth=0.6"),
        "{mine:?}"
    );
    // They appear in the table and finish there.
    for r in &mine {
        let id = r["id"].as_str().ok_or("an id")?;
        b.wait_for(
            &format!(
                "document.querySelector('tr[data-run=\"{id}\"]')?.dataset.status === 'succeeded'"
            ),
            Duration::from_secs(90),
        )?;
    }
    assert!(runs().iter().all(|r| r["status"] == "succeeded"));
    // Each has a poster, made when it was collected.
    let id = mine[0]["id"].as_str().ok_or("an id")?;
    let poster = home.home().join("outputs").join(id).join("poster.jpg");
    let data_poster = std::fs::metadata(&poster).map(|m| m.len()).unwrap_or(0);
    assert!(data_poster > 0, "{} is missing", poster.display());
    let fetched = b.exec_async(
        "const done = arguments[arguments.length - 1];
         fetch(arguments[0]).then(r => done([r.status, r.headers.get('content-type')]));",
        &[json!(format!("/api/v1/runs/{id}/poster"))],
    )?;
    assert_eq!(fetched, json!([200, "image/jpeg"]));
    no_console_errors(&b, "/ after queueing");
    Ok(())
}
