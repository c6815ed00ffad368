//! The TCP data plane's rules: a loopback `Host` and `Origin` (against DNS
//! rebinding and cross-site requests), the bearer token, and no control-plane
//! routes. Unix-socket requests pass untouched; the socket's own permissions
//! guard it. The route is the one [`Route::parse`] made, the same value the
//! dispatcher runs; `None` when the request did not parse (it is refused
//! anyway, after the token check). [`check_peer`] runs first, on the
//! headers alone: what it refuses is logged only as a refusal.

use http::{HeaderMap, header};

use super::error::ApiError;
use super::{ApiContext, Transport};
use crate::wire::Route;

/// Whether the request comes from someone entitled to the API at all: on
/// TCP a loopback `Host`, no foreign `Origin` and the token. What fails
/// here is unauthenticated, so it is logged only as a refusal.
pub fn check_peer(
    ctx: &ApiContext,
    transport: Transport,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Transport::Tcp { port, remote } = transport else {
        return Ok(());
    };
    check_host(headers, port, remote)?;
    check_origin(headers)?;
    check_token(ctx, headers)
}

/// Whether this transport may run `route`: no control plane over TCP.
pub fn check_route(transport: Transport, route: Option<&Route>) -> Result<(), ApiError> {
    if !matches!(transport, Transport::Tcp { .. }) {
        return Ok(());
    }
    if route.is_some_and(Route::is_control_plane) {
        return Err(ApiError::Forbidden(
            "this is a control-plane operation; it is only accepted on the daemon's Unix socket"
                .into(),
        ));
    }
    Ok(())
}

/// Modes that run a coding agent's commands without asking are control
/// plane: the TCP token must never be a shell.
pub fn check_approval_mode(transport: Transport, bypass: bool) -> Result<(), ApiError> {
    if bypass && matches!(transport, Transport::Tcp { .. }) {
        return Err(ApiError::BypassOverTcp);
    }
    Ok(())
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
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
