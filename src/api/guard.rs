//! Who is calling, and what they may do. The Unix socket is the owner and
//! passes untouched; the socket's own permissions guard it. TCP (the data
//! plane) needs a loopback `Host` and `Origin` (against DNS rebinding and
//! cross-site requests) and then either the bearer token or the web page's
//! session: its cookie *and* its CSRF header, with the page held to its own
//! routes and to JSON bodies. No control-plane route is reachable on TCP.
//! The route is the one [`Route::parse`] made, the same value the dispatcher
//! runs; `None` when the request did not parse (refused unless the token
//! came with it). [`check_peer`] runs first: what it refuses is logged only
//! as a refusal.

use http::{HeaderMap, Method, header};

use super::error::ApiError;
use super::ui::{self, Session};
use super::{ApiContext, Transport};
use crate::model::ApprovalMode;
use crate::runtime;
use crate::wire::Route;

/// Who a request comes from, as [`check_peer`] found.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The Unix socket: the owning user, every route.
    Owner,
    /// TCP with the bearer token: every route but the control plane.
    Token { port: u16 },
    /// TCP from the web page: its session cookie and CSRF header.
    Page { session: Session, port: u16 },
    /// TCP with neither: the page's files and its login only.
    Anonymous { port: u16 },
}

impl Caller {
    /// The TCP port the request came in on; `None` on the Unix socket.
    pub fn tcp_port(&self) -> Option<u16> {
        match self {
            Self::Owner => None,
            Self::Token { port } | Self::Page { port, .. } | Self::Anonymous { port } => {
                Some(*port)
            }
        }
    }
}

/// Who the request comes from, or why it is refused before anything else:
/// on TCP a loopback `Host` and no foreign `Origin`, then the bearer token
/// (a wrong one is refused outright), else for the page's files and login
/// nobody in particular, else the page's session cookie with its CSRF
/// header. What fails here is unauthenticated, so it is logged only as a
/// refusal.
pub fn check_peer(
    ctx: &ApiContext,
    transport: Transport,
    headers: &HeaderMap,
    route: Option<&Route>,
) -> Result<Caller, ApiError> {
    let Transport::Tcp { port, remote } = transport else {
        return Ok(Caller::Owner);
    };
    check_host(headers, port, remote)?;
    check_origin(headers)?;
    if headers.contains_key(header::AUTHORIZATION) {
        return check_token(ctx, headers).map(|()| Caller::Token { port });
    }
    // From here on the caller is a browser: its `Origin`, when it sends
    // one, must be this very listener, not another local port's page.
    check_same_origin(headers)?;
    if route.is_some_and(open_to_anyone) {
        return Ok(Caller::Anonymous { port });
    }
    let session = ui::cookie(headers, &ui::cookie_name(port))
        .ok_or(ApiError::Unauthorized)
        .and_then(|id| {
            ctx.sessions.find(id).ok_or_else(|| {
                ApiError::NoSession("the web page's session has expired or was ended".into())
            })
        })?;
    // The cookie alone proves a browser, not the page: any page a browser
    // shows on this host (another port, another user) would send it too.
    // The CSRF value only the page's own script holds.
    let csrf = headers
        .get(ui::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session.csrf_matches(csrf) {
        return Err(ApiError::Forbidden(format!(
            "the web page's requests carry its {} header; this one did not",
            ui::CSRF_HEADER
        )));
    }
    Ok(Caller::Page { session, port })
}

/// Whether `caller` may run `route`: no control plane over TCP; the page
/// only its own routes, and a JSON body whenever it changes something.
pub fn check_route(caller: &Caller, route: Option<&Route>) -> Result<(), ApiError> {
    let Some(route) = route else {
        return Ok(());
    };
    if matches!(caller, Caller::Owner) {
        return Ok(());
    }
    if route.is_control_plane() {
        return Err(ApiError::Forbidden(
            "this is a control-plane operation; it is only accepted on the daemon's Unix socket"
                .into(),
        ));
    }
    if matches!(caller, Caller::Page { .. }) && !open_to_page(route) {
        return Err(ApiError::Forbidden(format!(
            "the web page may not use {} {}",
            route.method(),
            route.label()
        )));
    }
    Ok(())
}

/// Modes and `allow` patterns that run a coding agent's commands without
/// asking are control plane: neither the TCP token nor the web page may
/// ever be a shell.
pub fn check_approval_mode(
    caller: &Caller,
    approval: Option<ApprovalMode>,
    allow: &[String],
) -> Result<(), ApiError> {
    if matches!(caller, Caller::Owner) {
        return Ok(());
    }
    if approval == Some(ApprovalMode::Bypass) {
        return Err(ApiError::BypassOverTcp);
    }
    match allow
        .iter()
        .find(|pattern| runtime::runs_every_command(pattern))
    {
        Some(pattern) => Err(ApiError::ShellOverTcp(pattern.clone())),
        None => Ok(()),
    }
}

/// A browser's request that changes something must say its body is JSON:
/// a cross-site form or `text/plain` "simple request" cannot. Checked once
/// the route is known to be allowed.
pub fn check_content_type(
    caller: &Caller,
    route: Option<&Route>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let browser = matches!(caller, Caller::Page { .. } | Caller::Anonymous { .. });
    let changes = route.is_some_and(|r| r.method() != Method::GET);
    if !browser || !changes {
        return Ok(());
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "the web page's requests that change something must be sent as Content-Type: application/json".into(),
    ))
}

/// The page's files and its login need no session: they are how one starts.
fn open_to_anyone(route: &Route) -> bool {
    matches!(route, Route::UiFile(_) | Route::UiLogin)
}

/// What the web page can do: look at agents and conversations, spawn, talk,
/// interrupt and shut down agents. Not tasks, model listings (they carry
/// keys), history deletion, nor anything of the daemon's.
fn open_to_page(route: &Route) -> bool {
    matches!(
        route,
        Route::Health
            | Route::ListAgents(_)
            | Route::GetAgent(_)
            | Route::Spawn
            | Route::ShutdownAgent(_)
            | Route::Message(_)
            | Route::Interrupt(_)
            | Route::History(..)
            | Route::Search(_)
            | Route::Conversations(_)
            | Route::Events(_)
            | Route::FanOut
            | Route::Approvals(_)
            | Route::Answer(_)
            | Route::Usage(_)
            | Route::UiFile(_)
            | Route::UiLogin
            | Route::UiLogout
    )
}

/// A browser's `Origin`, if it sent one, must name the `Host` it asked.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    if origin.strip_prefix("http://") == Some(host) && !host.is_empty() {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "requests from origin {origin:?} are not allowed; the web page is served from http://{host}"
    )))
}

/// A DNS-rebinding attack needs a host *name*; so a loopback listener
/// accepts only loopback names and addresses, and one bound with
/// `--allow-remote` also any IP literal, never another name.
fn check_host(headers: &HeaderMap, port: u16, remote: bool) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (name, host_port) = split_host_port(host);
    let port_ok = host_port.is_none_or(|p| p == port.to_string());
    let name_ok = is_loopback_name(name) || (remote && name.parse::<std::net::IpAddr>().is_ok());
    if name_ok && port_ok {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "Host {host:?} is not a loopback address with this listener's port; the TCP listener only answers to localhost"
    )))
}

fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let (name, _) = split_host_port(authority);
    if is_loopback_name(name) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "requests from origin {origin:?} are not allowed"
    )))
}

fn check_token(ctx: &ApiContext, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &ctx.tcp_token else {
        return Err(ApiError::Unauthorized);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// matched without regard to case (RFC 7235 §2.1: `bearer`, `BEARER`), and
/// any run of spaces may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches([' ', '\t']))
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return match rest.split_once(']') {
            Some((name, tail)) => (name, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (authority, None),
    }
}

fn is_loopback_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without an early exit, so timing does not reveal how much of the
/// token a guess got right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_name("localhost"));
        assert!(is_loopback_name("127.0.0.1"));
        assert!(is_loopback_name("127.8.0.1"));
        assert!(is_loopback_name("::1"));
        assert!(!is_loopback_name("evil.example"));
        assert!(!is_loopback_name(""));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host_port("localhost"), ("localhost", None));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
