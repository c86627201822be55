//! Who may talk to the server (DESIGN.md §3 invariant 8): the `Host` header must name the
//! address the server is bound to (no DNS rebinding); requests that change state and
//! WebSocket upgrades must come from no browser origin or the server's own (or one
//! configured for CORS); and when the server has an access token, every request carries
//! it as a bearer header or a session cookie made by the login form.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use cosmos_core::sha256::{hex_digest, to_hex};

use crate::error::ApiError;

/// The session cookie the login form sets.
pub const SESSION_COOKIE: &str = "cosmos_session";

/// What the server lets in.
#[derive(Debug)]
pub struct Access {
    /// sha256 of the access token, lowercase hex; `None`: no token (loopback only).
    token_hash: Option<String>,
    /// `Host` values accepted (lowercase); empty when bound to every address (the token
    /// guards it then).
    hosts: Vec<String>,
    /// Origins allowed besides the server's own (CORS), exactly as browsers send them.
    cors: Vec<String>,
    /// sha256 of each live session id, lowercase hex.
    sessions: Mutex<HashSet<String>>,
}

/// Equal without an early exit: how long a comparison takes says nothing of where it differs.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Access {
    /// `extra_hosts`: names the server is also reached by (`gpu-box.lan`, a proxy's name).
    pub fn new(
        bind: SocketAddr,
        token_hash: Option<String>,
        extra_hosts: &[String],
        cors: Vec<String>,
    ) -> Self {
        let port = bind.port();
        let mut names: Vec<String> = Vec::new();
        if !bind.ip().is_unspecified() {
            names.push(match bind {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            });
            if bind.ip().is_loopback() {
                names.push("localhost".into());
            }
            names.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        }
        let mut hosts = Vec::new();
        for name in names {
            if name.contains(':') && !name.starts_with('[') {
                hosts.push(name);
                continue;
            }
            hosts.push(format!("{name}:{port}"));
            if port == 80 {
                hosts.push(name);
            }
        }
        Self {
            token_hash,
            hosts,
            cors,
            sessions: Mutex::new(HashSet::new()),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token_hash.is_some()
    }

    fn host_ok(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h == host)
    }

    fn origin_ok(&self, origin: &str, host: &str) -> bool {
        origin == format!("http://{host}")
            || origin == format!("https://{host}")
            || self.cors.iter().any(|c| c == origin)
    }

    fn token_ok(&self, token: &str) -> bool {
        self.token_hash
            .as_ref()
            .is_some_and(|h| same(h, &hex_digest(token.as_bytes())))
    }

    fn session_ok(&self, id: &str) -> bool {
        let hash = hex_digest(id.as_bytes());
        self.sessions
            .lock()
            .map(|s| s.iter().any(|h| same(h, &hash)))
            .unwrap_or(false)
    }

    fn new_session(&self) -> String {
        let text = to_hex(&rand::random::<[u8; 32]>());
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(hex_digest(text.as_bytes()));
        }
        text
    }

    fn end_session(&self, id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&hex_digest(id.as_bytes()));
        }
    }
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    header(headers, header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// Checks every request before it reaches a handler.
pub(crate) async fn check(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = header(headers, header::HOST).map(str::to_ascii_lowercase) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "host_missing",
            "the request has no `Host` header",
        );
    };
    if !access.host_ok(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "host_refused",
            "the `Host` header does not name this server's address (DNS rebinding is refused); start the server with `--host NAME` to accept another name",
        );
    }
    let origin = header(headers, header::ORIGIN).map(str::to_owned);
    let cors = origin
        .as_deref()
        .filter(|o| access.cors.iter().any(|c| c == o))
        .map(str::to_owned);
    if req.method() == Method::OPTIONS
        && let Some(origin) = &cors
    {
        return preflight(origin);
    }
    if (changes_state(req.method()) || is_upgrade(headers))
        && let Some(origin) = &origin
        && !access.origin_ok(origin, &host)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_refused",
            "requests that change state must come from this server's own pages (the `Origin` header names another site)",
        );
    }
    let path = req.uri().path();
    let exempt = path == "/login";
    if access.has_token() && !exempt {
        let bearer = header(headers, header::AUTHORIZATION)
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        let allowed = match bearer {
            Some(t) => access.token_ok(t),
            None => cookie(headers, SESSION_COOKIE).is_some_and(|s| access.session_ok(s)),
        };
        if !allowed {
            let wants_page = !path.starts_with("/api/")
                && path != "/metrics"
                && header(headers, header::ACCEPT).is_some_and(|a| a.contains("text/html"));
            if wants_page {
                return Redirect::to("/login").into_response();
            }
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs its access token: send `Authorization: Bearer TOKEN`, or log in at /login",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let mut response = next.run(req).await;
    if let Some(origin) = cors
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

fn preflight(origin: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosmos: log in</title>
<style>body{font:16px system-ui,sans-serif;background:#14161a;color:#e6e6e6;display:grid;place-items:center;height:100vh;margin:0}
form{display:grid;gap:.75rem;min-width:22rem}input,button{font:inherit;padding:.5rem;border-radius:6px;border:1px solid #444;background:#1e2127;color:inherit}
button{background:#3a6df0;border:0;cursor:pointer}.err{color:#ff8080}</style></head>
<body><form method="post" action="/login"><h1>cosmos</h1>{message}
<label for="token">Access token</label><input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Log in</button></form></body></html>"#;

fn login_page(message: &str) -> Html<String> {
    Html(LOGIN_PAGE.replace("{message}", message))
}

/// The login form.
pub(crate) async fn login_form() -> Html<String> {
    login_page("")
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// Checks the token from the form and hands the browser an HttpOnly session cookie.
pub(crate) async fn login(
    State(access): State<Arc<Access>>,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, login_page("")).into_response();
    };
    if !access.has_token() {
        return Redirect::to("/").into_response();
    }
    if !access.token_ok(form.token.trim()) {
        let page = login_page(r#"<p class="err">That is not this server's access token.</p>"#);
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let session = access.new_session();
    let cookie = format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends the browser's session.
pub(crate) async fn logout(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    if let Some(s) = cookie(&headers, SESSION_COOKIE) {
        access.end_session(s);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cosmos_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_accepted_follow_the_bind_address() {
        let loopback = Access::new("127.0.0.1:8080".parse().unwrap(), None, &[], vec![]);
        assert!(loopback.host_ok("127.0.0.1:8080"));
        assert!(loopback.host_ok("localhost:8080"));
        assert!(!loopback.host_ok("evil.example:8080"));
        assert!(!loopback.host_ok("127.0.0.1:9999"));
        let named = Access::new(
            "10.0.0.5:80".parse().unwrap(),
            Some("0".repeat(64)),
            &["GPU-box.lan".into()],
            vec![],
        );
        assert!(named.host_ok("10.0.0.5"));
        assert!(named.host_ok("gpu-box.lan"));
        assert!(named.host_ok("gpu-box.lan:80"));
        assert!(!named.host_ok("localhost:80"));
        let any = Access::new(
            "0.0.0.0:8080".parse().unwrap(),
            Some("0".repeat(64)),
            &[],
            vec![],
        );
        assert!(any.host_ok("whatever:8080"));
    }

    #[test]
    fn origins_must_be_the_server_itself_or_configured() {
        let a = Access::new(
            "127.0.0.1:8080".parse().unwrap(),
            None,
            &[],
            vec!["http://notebook.lan:8888".into()],
        );
        assert!(a.origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(a.origin_ok("http://notebook.lan:8888", "127.0.0.1:8080"));
        assert!(!a.origin_ok("http://evil.example", "127.0.0.1:8080"));
        assert!(!a.origin_ok("null", "127.0.0.1:8080"));
    }

    #[test]
    fn tokens_and_sessions_are_checked_by_hash() {
        let a = Access::new(
            "127.0.0.1:1".parse().unwrap(),
            Some(hex_digest(b"s3cret-token")),
            &[],
            vec![],
        );
        assert!(a.token_ok("s3cret-token"));
        assert!(!a.token_ok("s3cret-tokeN"));
        let s = a.new_session();
        assert!(a.session_ok(&s));
        a.end_session(&s);
        assert!(!a.session_ok(&s));
    }
}
