//! The HTTP API: one entry point, [`handle`], that guards, routes and answers
//! a request. The same service runs on the Unix socket and on TCP; the
//! [`Transport`] tells the guard which rules apply.

mod body;
mod error;
mod guard;
mod routes;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

pub use body::{Body, MAX_BODY};
pub use error::ApiError;

use crate::engine::Engine;

/// What every request handler can reach.
pub struct ApiContext {
    pub engine: Engine,
    /// Cancelled to stop the daemon (`POST /shutdown`).
    pub stop: CancellationToken,
    /// The bearer token TCP clients must present.
    pub tcp_token: Option<String>,
    next_request: AtomicU64,
}

impl ApiContext {
    pub fn new(engine: Engine, stop: CancellationToken, tcp_token: Option<String>) -> Self {
        Self {
            engine,
            stop,
            tcp_token,
            next_request: AtomicU64::new(1),
        }
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
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match guard::check(&ctx, transport, &request) {
        Ok(()) => routes::route(&ctx, request).await,
        Err(error) => Err(error),
    };
    let response = response.unwrap_or_else(|error| body::error(&error));
    // The agent a request is about, as its own field for `journalctl AGENT=…`.
    let agent = path
        .strip_prefix("/agents/")
        .and_then(|rest| rest.split('/').next())
        .filter(|name| !name.is_empty());
    tracing::info!(
        request_id,
        agent,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
