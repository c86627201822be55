//! A real Chromium driven over WebDriver (W3C, as chromedriver speaks it), for the dashboard's
//! tests. `.ci/run` starts one chromedriver and names it in `COSMOS_WEBDRIVER`; without it,
//! each browser starts its own chromedriver on a free loopback port (and stops it). Each
//! [`Browser`] is its own headless session with a fresh profile.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{KitError, KitResult, Tool, require};

/// The WebDriver to talk to: `COSMOS_WEBDRIVER`'s, or a chromedriver started for the one
/// browser (stopped with it).
fn driver() -> KitResult<(String, Option<Child>)> {
    if let Ok(url) = std::env::var("COSMOS_WEBDRIVER")
        && !url.is_empty()
    {
        return Ok((url.trim_end_matches('/').to_owned(), None));
    }
    let program = require(Tool::Chromedriver, None)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| KitError::new(format!("no free port for chromedriver: {e}")))?
        .port();
    let mut child = Command::new(program)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Tool::Chromedriver.missing(&e.to_string()))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("{url}/status")).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(Tool::Chromedriver.missing("it did not answer on its port within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((url, Some(child)))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn answer(mut r: ureq::http::Response<ureq::Body>, what: &str) -> KitResult<Value> {
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .read_to_string()
        .map_err(|e| KitError::new(format!("{what}: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| KitError::new(format!("{what}: not JSON ({e}): {text}")))?;
    if status >= 400 {
        return Err(KitError::new(format!(
            "{what}: WebDriver said {status}: {}",
            v["value"]["message"].as_str().unwrap_or(&text)
        )));
    }
    Ok(v["value"].clone())
}

fn get(url: &str) -> KitResult<Value> {
    let r = agent()
        .get(url)
        .call()
        .map_err(|e| KitError::new(format!("GET {url}: {e}")))?;
    answer(r, url)
}

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    base: String,
    agent: ureq::Agent,
    driver: Option<Child>,
}

/// A page element, by its WebDriver reference.
#[derive(Debug, Clone)]
pub struct Element(String);

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// A fresh headless Chromium, 1280×900.
    pub fn start() -> KitResult<Self> {
        let (url, driver) = driver()?;
        let chromium = require(Tool::Chromium, None)?;
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900",
                        "--autoplay-policy=no-user-gesture-required",
                        "--no-first-run", "--disable-extensions",
                    ],
                },
                "goog:loggingPrefs": { "browser": "ALL" },
            } }
        });
        let agent = agent();
        let session = agent
            .post(&format!("{url}/session"))
            .send_json(&caps)
            .map_err(|e| KitError::new(format!("new WebDriver session: {e}")))
            .and_then(|r| answer(r, "new WebDriver session"))
            .and_then(|v| {
                v["sessionId"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| KitError::new(format!("no session id in {v}")))
            });
        let id = match session {
            Ok(id) => id,
            Err(e) => {
                if let Some(mut d) = driver {
                    let _ = d.kill();
                    let _ = d.wait();
                }
                return Err(e);
            }
        };
        Ok(Self {
            base: format!("{url}/session/{id}"),
            agent,
            driver,
        })
    }

    fn post(&self, path: &str, body: &Value) -> KitResult<Value> {
        let url = format!("{}{path}", self.base);
        let r = self
            .agent
            .post(&url)
            .send_json(body)
            .map_err(|e| KitError::new(format!("POST {path}: {e}")))?;
        answer(r, path)
    }

    fn get(&self, path: &str) -> KitResult<Value> {
        let r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(|e| KitError::new(format!("GET {path}: {e}")))?;
        answer(r, path)
    }

    /// Opens `url` and waits for its load to finish.
    pub fn goto(&self, url: &str) -> KitResult<()> {
        self.post("/url", &json!({ "url": url })).map(drop)
    }

    /// The page's URL now.
    pub fn url(&self) -> KitResult<String> {
        Ok(self.get("/url")?.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn exec(&self, script: &str, args: &[Value]) -> KitResult<Value> {
        self.post("/execute/sync", &json!({ "script": script, "args": args }))
    }

    /// Runs `script`, whose last argument is a callback to call with the result.
    pub fn exec_async(&self, script: &str, args: &[Value]) -> KitResult<Value> {
        self.post("/execute/async", &json!({ "script": script, "args": args }))
    }

    /// Waits until `condition` (an expression) is truthy; its value then.
    pub fn wait_for(&self, condition: &str, timeout: Duration) -> KitResult<Value> {
        let deadline = Instant::now() + timeout;
        let script = format!("return ({condition});");
        loop {
            let v = self.exec(&script, &[])?;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(KitError::new(format!(
                    "waited {timeout:?} for `{condition}` on {}",
                    self.url().unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> KitResult<Element> {
        let v = self.post(
            "/element",
            &json!({ "using": "css selector", "value": css }),
        )?;
        v[ELEMENT]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| KitError::new(format!("no element `{css}`")))
    }

    /// Runs `act` on the element `css` finds; when a live page replaced that element in
    /// between (WebDriver's "stale element reference"), finds it again, a few times.
    fn on_element<T>(&self, css: &str, act: impl Fn(&Element) -> KitResult<T>) -> KitResult<T> {
        let mut tries = 0;
        loop {
            let e = self.find(css)?;
            match act(&e) {
                Err(err) if tries < 5 && err.to_string().contains("stale element") => {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Clicks an element as a user would.
    pub fn click(&self, css: &str) -> KitResult<()> {
        self.on_element(css, |e| {
            self.post(&format!("/element/{}/click", e.0), &json!({}))
                .map(drop)
        })
    }

    /// Types `text` into an element (after clearing it when `clear`).
    pub fn type_into(&self, css: &str, text: &str, clear: bool) -> KitResult<()> {
        let e = self.find(css)?;
        if clear {
            self.post(&format!("/element/{}/clear", e.0), &json!({}))?;
        }
        self.post(&format!("/element/{}/value", e.0), &json!({ "text": text }))
            .map(drop)
    }

    /// Presses keys on the page (`"\u{E014}"` is →; see the WebDriver key table).
    pub fn keys(&self, keys: &str) -> KitResult<()> {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            &json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .map(drop)
    }

    /// Text of the first element matching `css`.
    pub fn text(&self, css: &str) -> KitResult<String> {
        self.on_element(css, |e| {
            Ok(self
                .get(&format!("/element/{}/text", e.0))?
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
    }

    /// Sends a Chrome DevTools Protocol command (`Network.clearBrowserCache`, …).
    pub fn cdp(&self, cmd: &str, params: Value) -> KitResult<Value> {
        self.post(
            "/goog/cdp/execute",
            &json!({ "cmd": cmd, "params": params }),
        )
    }

    /// Reloads the page.
    pub fn reload(&self) -> KitResult<()> {
        self.post("/refresh", &json!({})).map(drop)
    }

    /// Saves a PNG of the window at `path`.
    pub fn screenshot(&self, path: &Path) -> KitResult<()> {
        let v = self.get("/screenshot")?;
        let data = v
            .as_str()
            .ok_or_else(|| KitError::new("no screenshot data"))?;
        let bytes = decode_base64(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KitError::new(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(path, bytes).map_err(|e| KitError::new(format!("{}: {e}", path.display())))
    }

    /// What the page logged as errors since the last call: `console.error`, uncaught
    /// exceptions, failed loads.
    pub fn console_errors(&self) -> KitResult<Vec<String>> {
        let v = self.post("/se/log", &json!({ "type": "browser" }))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn decode_base64(text: &str) -> KitResult<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        let mut n = 0;
        for &c in chunk {
            if c == b'=' {
                break;
            }
            acc = (acc << 6) | value(c).ok_or_else(|| KitError::new("bad base64"))?;
            n += 1;
        }
        acc <<= 6 * (4 - n);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..n.max(1)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").ok(), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk=").ok(), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("YWJj").ok(), Some(b"abc".to_vec()));
    }
}
