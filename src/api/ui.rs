//! The embedded web page: its files (compiled into the binary), the
//! one-time login links `orchestration ui` asks for, the sessions they turn
//! into (in memory, with an expiry), and the headers every response carries
//! so a browser treats what it gets strictly. Who may call what is decided
//! in `guard`; this module only keeps the secrets and answers the page's
//! own routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::ApiContext;
use super::body::{self, Body};
use super::error::ApiError;
use super::guard::{Caller, constant_time_eq};
use crate::wire::{UiFile, UiLink};

type Reply = Result<Response<Body>, ApiError>;

/// How long a login link is good for: long enough for a browser to start.
pub const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long a session lasts from its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Links not yet used, and sessions, kept at most; the oldest go first.
const MAX_LINKS: usize = 16;
const MAX_SESSIONS: usize = 32;

/// The header the page sends its session's CSRF value in.
pub const CSRF_HEADER: &str = "x-orchestration-csrf";

/// The strict policy of every response: the page's own scripts, styles and
/// API only; nothing inline, no frames, no forms, no plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        UiFile::INDEX,
        "text/html; charset=utf-8",
        include_str!("../../assets/ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/ui/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../assets/ui/icon.svg"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/dom.js"),
    ),
    (
        "agents.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/agents.js"),
    ),
    (
        "conversation.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/conversation.js"),
    ),
    (
        "search.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/search.js"),
    ),
    (
        "fanout.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/fanout.js"),
    ),
    (
        "approvals.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/approvals.js"),
    ),
    (
        "usage.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/usage.js"),
    ),
];

/// A logged-in page: the cookie's value and the CSRF value its requests
/// must carry. Its `Debug` shows neither.
#[derive(Clone)]
pub struct Session {
    id: String,
    csrf: String,
    expires: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF value.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// The login links handed out and the sessions made from them. Secrets are
/// compared in constant time, one by one (there are few), so a lookup's
/// timing says nothing about how close a guess was.
#[derive(Default)]
pub struct Sessions {
    state: std::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Unused login tokens and when each expires.
    links: Vec<(String, Instant)>,
    sessions: Vec<Session>,
}

impl Sessions {
    /// A fresh one-time login token, good for [`LINK_LIFETIME`].
    pub fn mint(&self) -> String {
        let token = random_hex();
        let now = Instant::now();
        let mut state = crate::engine::lock(&self.state);
        state.links.retain(|(_, expires)| *expires > now);
        if state.links.len() >= MAX_LINKS {
            state.links.remove(0);
        }
        state.links.push((token.clone(), now + LINK_LIFETIME));
        token
    }

    /// Trades a login token for a session; the token is spent whether or
    /// not it was still good. `None` if it is unknown, used or expired. A
    /// browser that already holds a live session (`current`, its cookie)
    /// keeps it: a second `orchestration ui` opens a second tab, and a new
    /// cookie would break the first tab, whose CSRF value is the old one's.
    pub fn login(&self, token: &str, current: Option<&str>) -> Option<Session> {
        self.login_at(token, current, Instant::now())
    }

    fn login_at(&self, token: &str, current: Option<&str>, now: Instant) -> Option<Session> {
        let mut state = crate::engine::lock(&self.state);
        let found = state
            .links
            .iter()
            .position(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))?;
        let (_, expires) = state.links.remove(found);
        if expires <= now {
            return None;
        }
        state.sessions.retain(|s| s.expires > now);
        let held = current.and_then(|id| {
            state
                .sessions
                .iter()
                .find(|s| constant_time_eq(s.id.as_bytes(), id.as_bytes()))
        });
        if let Some(held) = held {
            return Some(held.clone());
        }
        if state.sessions.len() >= MAX_SESSIONS {
            state.sessions.remove(0);
        }
        let session = Session {
            id: random_hex(),
            csrf: random_hex(),
            expires: now + SESSION_LIFETIME,
        };
        state.sessions.push(session.clone());
        Some(session)
    }

    /// The live session whose cookie value this is.
    pub fn find(&self, id: &str) -> Option<Session> {
        self.find_at(id, Instant::now())
    }

    fn find_at(&self, id: &str, now: Instant) -> Option<Session> {
        let state = crate::engine::lock(&self.state);
        state
            .sessions
            .iter()
            .find(|s| constant_time_eq(s.id.as_bytes(), id.as_bytes()))
            .filter(|s| s.expires > now)
            .cloned()
    }

    fn end(&self, session: &Session) {
        crate::engine::lock(&self.state)
            .sessions
            .retain(|s| s.id != session.id);
    }
}

/// The session cookie's name on the listener at `port`. Browsers send a
/// cookie to every port of a host; the port in the name keeps two daemons'
/// sessions (two users, two ports) from overwriting each other.
pub fn cookie_name(port: u16) -> String {
    format!("orchestration-{port}")
}

/// The value of the cookie named `name` among the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// Adds the headers every response carries: the strict content policy, no
/// referrer, no sniffing, no caching.
pub fn harden(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// `GET /ui/{file}`: one of the page's files, or 404.
pub fn file(file: &UiFile) -> Reply {
    let Some((_, content_type, content)) = FILES.iter().find(|(name, ..)| *name == file.as_str())
    else {
        return Err(ApiError::NoRoute(format!("/ui/{}", file.as_str())));
    };
    let mut response =
        Response::new(Full::new(Bytes::from_static(content.as_bytes())).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// What the page posts to log in: the token from its URL's fragment.
#[derive(Deserialize)]
struct LoginRequest {
    token: String,
}

/// The login's answer: the value the page sends in [`CSRF_HEADER`].
#[derive(Serialize)]
struct LoginReply {
    csrf: String,
    expires_in_s: u64,
}

/// `POST /ui/login`: spends the token and sets the session cookie.
pub async fn login(
    ctx: &ApiContext,
    caller: &Caller,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Reply {
    let Some(port) = caller.tcp_port() else {
        return Err(ApiError::Forbidden(
            "the web page logs in over the TCP listener, not the Unix socket".into(),
        ));
    };
    let request: LoginRequest = ctx.read_json(body).await?;
    let current = cookie(headers, &cookie_name(port));
    let session = ctx.sessions.login(&request.token, current).ok_or_else(|| {
        ApiError::NoSession("this login link was already used or has expired".into())
    })?;
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        cookie_name(port),
        session.id,
        SESSION_LIFETIME.as_secs()
    );
    let mut response = body::json(
        StatusCode::OK,
        &LoginReply {
            csrf: session.csrf.clone(),
            expires_in_s: SESSION_LIFETIME.as_secs(),
        },
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /ui/logout`: ends the caller's session and clears its cookie.
pub fn logout(ctx: &ApiContext, caller: &Caller) -> Reply {
    let Caller::Page { session, port } = caller else {
        return Err(ApiError::Forbidden(
            "only the web page has a session to log out of".into(),
        ));
    };
    ctx.sessions.end(session);
    let mut response = body::empty(StatusCode::NO_CONTENT);
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        cookie_name(*port)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /ui/link` (Unix socket only): a one-time login link to the page
/// on the TCP listener.
pub fn link(ctx: &ApiContext) -> Reply {
    let Some(address) = ctx.tcp_address else {
        return Err(ApiError::Forbidden(
            "the daemon has no TCP listener (it was started with --no-tcp), and the web page is served there"
                .into(),
        ));
    };
    let token = ctx.sessions.mint();
    let link = UiLink {
        url: format!("http://{}/ui/#t={token}", browsable(address)),
        expires_in_s: LINK_LIFETIME.as_secs(),
    };
    Ok(body::json(StatusCode::OK, &link))
}

/// The address a browser should use for a listener bound to `address`:
/// an unspecified one (`0.0.0.0`) is reached on loopback.
fn browsable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port())
        }
        _ => address,
    }
}

/// 244 random bits from the OS (two v4 UUIDs), as hex.
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_is_good_once() {
        let sessions = Sessions::default();
        let token = sessions.mint();
        let session = sessions.login(&token, None).expect("the first use logs in");
        assert!(
            sessions.login(&token, None).is_none(),
            "the second use must not"
        );
        // A browser with a live session keeps it when it logs in again.
        let again = sessions
            .login(&sessions.mint(), Some(&session.id))
            .expect("a login");
        assert_eq!((&again.id, &again.csrf), (&session.id, &session.csrf));
        let other = sessions
            .login(&sessions.mint(), Some("stale"))
            .expect("a login");
        assert_ne!(other.id, session.id);
        assert!(sessions.find(&session.id).is_some());
        assert!(sessions.find("nope").is_none());
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        let shown = format!("{session:?}");
        assert!(!shown.contains(&session.id) && !shown.contains(&session.csrf));
        sessions.end(&session);
        assert!(sessions.find(&session.id).is_none());
    }

    #[test]
    fn links_and_sessions_expire() {
        let sessions = Sessions::default();
        let late = Instant::now() + LINK_LIFETIME + Duration::from_secs(1);
        let token = sessions.mint();
        assert!(sessions.login_at(&token, None, late).is_none());
        assert!(
            sessions.login(&token, None).is_none(),
            "an expired token is spent"
        );
        let session = sessions.login(&sessions.mint(), None).expect("a login");
        let later = Instant::now() + SESSION_LIFETIME + Duration::from_secs(1);
        assert!(sessions.find_at(&session.id, later).is_none());
        assert!(sessions.find(&session.id).is_some());
    }

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; orchestration-80=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("orchestration-81=y"),
        );
        assert_eq!(cookie(&headers, "orchestration-80"), Some("x"));
        assert_eq!(cookie(&headers, "orchestration-81"), Some("y"));
        assert_eq!(cookie(&headers, "orchestration-8"), None);
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let index = FILES[0].2;
        for (name, ..) in FILES {
            let file = UiFile::parse(name).expect("a valid file name");
            assert!(super::file(&file).is_ok(), "{name}");
        }
        for script in ["/ui/app.js", "/ui/style.css", "/ui/icon.svg"] {
            assert!(index.contains(script), "index.html does not load {script}");
        }
        // The content policy allows no inline script or style.
        assert!(!index.contains("<script>") && !index.contains("style="));
    }

    #[test]
    fn an_unspecified_address_is_browsed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:7862".parse().unwrap();
        assert_eq!(browsable(any).to_string(), "127.0.0.1:7862");
        let v6: SocketAddr = "[::]:7862".parse().unwrap();
        assert_eq!(browsable(v6).to_string(), "[::1]:7862");
    }
}
