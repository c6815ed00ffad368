//! The HTTP API: one entry point, [`handle`], that parses a request once
//! into a [`Route`], guards it, dispatches it and logs it — all three from
//! that one value. The same service runs on the Unix socket and on TCP; the
//! [`Transport`] tells the guard which rules apply.

mod body;
mod error;
mod guard;
mod metrics;
pub mod refusals;
mod routes;
mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

pub use crate::wire::Route;
pub use body::{Body, MAX_HEAD, error as error_response};
pub use error::ApiError;

use crate::engine::Engine;
use crate::wire;

/// What every request handler can reach.
pub struct ApiContext {
    pub engine: Engine,
    /// Cancelled to stop the daemon (`POST /shutdown`).
    pub stop: CancellationToken,
    /// The bearer token TCP clients must present.
    pub tcp_token: Option<String>,
    /// Reload and its status, which only the daemon can do.
    pub control: Arc<dyn Control>,
    /// The log of refused requests and connections, rate-limited.
    pub refusals: refusals::Refusals,
    /// The open `GET /events` streams, under `limits.max_event_streams`.
    event_streams: body::StreamSlots,
    /// Where the TCP listener is, for the web page's login links.
    tcp_address: Option<std::net::SocketAddr>,
    /// The web page's login links and sessions.
    sessions: ui::Sessions,
    next_request: AtomicU64,
}

/// What the API asks of the daemon beyond the engine: a reload (`POST
/// /reload`, `serve --reload`), and when the config was last loaded.
pub trait Control: Send + Sync {
    /// Re-reads the config and environment files and puts them in effect,
    /// or changes nothing and says why.
    fn reload(&self) -> Result<wire::Reloaded, String>;
    fn config_status(&self) -> wire::ConfigStatus;
}

impl ApiContext {
    pub fn new(
        engine: Engine,
        stop: CancellationToken,
        tcp_token: Option<String>,
        control: Arc<dyn Control>,
    ) -> Self {
        Self {
            engine,
            stop,
            tcp_token,
            control,
            refusals: refusals::Refusals::default(),
            event_streams: body::StreamSlots::default(),
            tcp_address: None,
            sessions: ui::Sessions::default(),
            next_request: AtomicU64::new(1),
        }
    }

    /// Where the TCP listener serves (the web page's address), if it runs.
    pub fn with_tcp_address(mut self, address: Option<std::net::SocketAddr>) -> Self {
        self.tcp_address = address;
        self
    }

    /// Reads a JSON request body within the size limit and the body timeout
    /// in effect.
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        body: Incoming,
    ) -> Result<T, ApiError> {
        let timeout = self.engine.settings().config.limits.body_timeout;
        body::read_json(body, timeout).await
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The control plane: every route, for the owning user only.
    Unix,
    /// The loopback data plane: bearer token, loopback `Host`, no control routes.
    /// `remote` (bound with `--allow-remote`) also accepts IP-literal `Host`s.
    Tcp { port: u16, remote: bool },
}

pub async fn handle(
    ctx: Arc<ApiContext>,
    transport: Transport,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = ctx.next_request.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    // Parsed before the peer is known, but neither logged nor acted on
    // until it is: the guard needs to know whether it is the page's login.
    let route = match head_size(&parts) {
        size if size > MAX_HEAD => Err(ApiError::HeadTooLarge { limit: MAX_HEAD }),
        _ => Route::parse(&parts.method, &parts.uri).map_err(ApiError::from),
    };
    let caller = match guard::check_peer(&ctx, transport, &parts.headers, route.as_ref().ok()) {
        Ok(caller) => caller,
        Err(error) => return refused(&ctx, &parts, &error),
    };
    let (label, agent) = match &route {
        Ok(route) => (route.label(), route.agent().map(ToString::to_string)),
        Err(_) => ("none", None),
    };
    let allowed = guard::check_route(&caller, route.as_ref().ok())
        .and_then(|()| guard::check_content_type(&caller, route.as_ref().ok(), &parts.headers));
    let response = match (allowed, route) {
        (Err(error), _) | (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok(route)) => routes::dispatch(&ctx, route, &caller, &parts.headers, body).await,
    };
    let mut response = response.unwrap_or_else(|error| body::error(&error));
    ui::harden(&mut response);
    macro_rules! access_log {
        ($level:expr) => {
            tracing::event!(
                $level,
                request_id,
                agent,
                route = label,
                method = %parts.method,
                path = %parts.uri.path(),
                status = response.status().as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "request"
            )
        };
    }
    // Anyone who reaches the listener may fetch the page's files or try a
    // login: at the default level that would be a log line per request
    // from an unauthenticated peer, which only refusals (rate-limited) get.
    if matches!(caller, guard::Caller::Anonymous { .. }) {
        access_log!(tracing::Level::DEBUG);
    } else {
        access_log!(tracing::Level::INFO);
    }
    response
}

/// Whether a request with these headers passes the transport's peer
/// rules (on TCP: loopback `Host`, no foreign `Origin`, and the token or
/// the web page's session with its CSRF header).
pub fn authenticated(ctx: &ApiContext, transport: Transport, headers: &http::HeaderMap) -> bool {
    guard::check_peer(ctx, transport, headers, None).is_ok()
}

/// Answers a request that did not authenticate. Anyone who can reach the
/// listener can send one, so its line goes through the rate-limited
/// refusal log, and shows only a short escaped prefix of the path.
fn refused(ctx: &ApiContext, parts: &http::request::Parts, error: &ApiError) -> Response<Body> {
    let mut response = body::error(error);
    ui::harden(&mut response);
    // One answer per connection: a client without the token gets no
    // keep-alive connection to send garbage down.
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    ctx.refusals.note(|| {
        tracing::warn!(
            status = response.status().as_u16(),
            method = %refusals::prefix(parts.method.as_str()),
            path = %refusals::prefix(parts.uri.path()),
            "request refused: not authenticated"
        );
    });
    response
}

/// The bytes a request head took, near enough: target plus header lines.
/// hyper's read buffer (sized to [`MAX_HEAD`]) bounds the memory; this makes
/// the limit exact.
fn head_size(parts: &http::request::Parts) -> usize {
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    parts.uri.to_string().len() + headers
}
