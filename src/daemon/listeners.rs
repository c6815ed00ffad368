//! The daemon's listeners: the Unix control socket and the loopback TCP
//! listener, and the per-connection HTTP service on top of them.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiContext, ApiError, Transport};
use crate::config::LimitsConfig;

/// How long a refused connection gets to read its one error response.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "another daemon is already answering on {}; stop it first (orchestration serve --stop) or use another --socket",
        .0.display()
    )]
    SocketInUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot listen on {}: {source}", path.display())]
    Unix { path: PathBuf, source: io::Error },
    #[error(
        "cannot listen on {addr}: {source}; pick another with --port or --listen, or pass --no-tcp"
    )]
    Tcp { addr: SocketAddr, source: io::Error },
}

/// The Unix control socket. One this daemon bound is removed when dropped;
/// one a service manager passed is its owner's, and stays.
pub struct UnixSocket {
    pub listener: UnixListener,
    /// The path this daemon bound, and the socket file's identity (device,
    /// inode) there: only that file is removed at the end, never one that
    /// took its place.
    created: Option<(PathBuf, (u64, u64))>,
}

impl UnixSocket {
    /// Wraps a socket passed by socket activation (already non-blocking).
    /// Needs the runtime.
    pub fn inherited(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        Ok(Self {
            listener: UnixListener::from_std(listener)?,
            created: None,
        })
    }

    /// Where it listens, for the log.
    pub fn describe(&self) -> String {
        match self
            .listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned))
        {
            Some(path) => path.display().to_string(),
            None => "an unnamed socket".to_owned(),
        }
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if let Some((path, identity)) = &self.created
            && file_identity(path) == Some(*identity)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the control socket (mode 0600), first clearing a stale socket file
/// left by a daemon that died. A socket someone still answers on is left alone.
pub fn bind_unix(path: &Path) -> Result<UnixSocket, ListenError> {
    clear_stale_socket(path)?;
    let unix_error = |source| ListenError::Unix {
        path: path.to_owned(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(unix_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(unix_error)?;
    let created = file_identity(path).map(|identity| (path.to_owned(), identity));
    Ok(UnixSocket { listener, created })
}

/// A file's device and inode, without following a link.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

fn clear_stale_socket(path: &Path) -> Result<(), ListenError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::SocketInUse(path.to_owned())),
        Err(_) => {
            tracing::info!(socket = %path.display(), "removing stale socket file");
            std::fs::remove_file(path).map_err(|source| ListenError::Unix {
                path: path.to_owned(),
                source,
            })
        }
    }
}

pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Tcp { addr, source })
}

/// How busy the daemon is, for idle exit: open connections (a request or
/// a stream in progress always has one) and when the last one closed.
#[derive(Debug)]
pub struct Activity {
    open: AtomicUsize,
    last_closed: std::sync::Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            last_closed: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// When the daemon may exit for idleness if nothing happens meanwhile;
    /// `None` while a connection is open.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*crate::engine::lock(&self.last_closed) + idle)
    }

    /// Counts a connection as open until the returned guard is dropped.
    fn enter(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(self.clone())
    }
}

/// One open connection in [`Activity`]'s count. The count goes down when
/// this is dropped, however the connection's task ends: closed, aborted at
/// shutdown, or panicking (a closure run at the task's end would be skipped
/// then, and the daemon would never be idle again).
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        *crate::engine::lock(&self.0.last_closed) = Instant::now();
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an admitted connection holds while it is served: its slot under the
/// listener's cap and its place in the activity count, both given back
/// when its task drops this.
struct Admitted {
    _slot: OwnedSemaphorePermit,
    _open: Open,
}

/// The connections being served: hyper's graceful-shutdown watcher, so a
/// stop can drain them, and their tasks, so that a stop can end those that
/// outlive the drain rather than leave them holding the engine.
pub struct Connections {
    graceful: GracefulShutdown,
    tasks: JoinSet<()>,
}

impl Connections {
    pub fn new() -> Self {
        Self {
            graceful: GracefulShutdown::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Waits for a connection task to end, and forgets it (a task that
    /// panicked is logged). Never resolves while none runs.
    pub async fn reap(&mut self) {
        match self.tasks.join_next().await {
            Some(Err(error)) if error.is_panic() => {
                tracing::error!("a connection's task panicked; the connection was dropped");
            }
            Some(_) => {}
            None => std::future::pending().await,
        }
    }

    /// Lets the open connections finish their requests; `within` bounds
    /// the wait, and `past_deadline` runs once if it passes (to cancel what
    /// still runs), after which they get `grace` more. Whatever is left
    /// after that is aborted.
    pub async fn drain<F: Future>(
        self,
        within: Duration,
        past_deadline: impl FnOnce() -> F,
        grace: Duration,
    ) {
        let Self {
            graceful,
            mut tasks,
        } = self;
        let drained = graceful.shutdown();
        tokio::pin!(drained);
        if tokio::time::timeout(within, &mut drained).await.is_err() {
            tracing::warn!(
                deadline_s = within.as_secs_f64(),
                "requests still running at the drain deadline; cancelling them"
            );
            past_deadline().await;
            if tokio::time::timeout(grace, &mut drained).await.is_err() {
                tracing::warn!("some connections did not close; dropping them");
            }
        }
        tasks.shutdown().await;
    }
}

/// Who may connect and how many at once: one listener's admission rules,
/// read from the limits in effect for each new connection.
pub struct Admission {
    /// The cap and its semaphore. A reload that changes the cap starts a new
    /// semaphore; connections already open keep their slot in the old one.
    slots: std::sync::Mutex<(usize, Arc<Semaphore>)>,
    activity: Arc<Activity>,
    /// TCP connections that have not authenticated yet.
    pending: Arc<Pending>,
}

impl Admission {
    pub fn new(activity: Arc<Activity>) -> Self {
        Self {
            slots: std::sync::Mutex::new((0, Arc::new(Semaphore::new(0)))),
            activity,
            pending: Arc::new(Pending::default()),
        }
    }

    /// Serves a TCP connection. Until one of its requests carries the
    /// token it takes no connection slot: it is one of the unauthenticated
    /// (at most `limits.max_unauthenticated`, the oldest closed to make
    /// room) and is closed after `limits.unauthenticated_timeout`. Its
    /// first authenticated request takes a slot (503 if none is free), so
    /// a crowd of clients without the token never keeps one with it out.
    pub fn admit_tcp<S>(
        &self,
        ctx: &Arc<ApiContext>,
        transport: Transport,
        stream: S,
        connections: &mut Connections,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits: LimitsConfig = ctx.engine.settings().config.limits.clone();
        let (id, evicted) = self.pending.enter(limits.max_unauthenticated);
        let state = Arc::new(TcpState {
            pending: self.pending.clone(),
            id,
            slots: self.slots(limits.max_connections),
            slot: std::sync::Mutex::new(None),
        });
        let open = self.activity.enter();
        let ctx = ctx.clone();
        let serving = state.clone();
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let ctx = ctx.clone();
            let state = serving.clone();
            async move {
                if !state.promote(&ctx, transport, request.headers()) {
                    return Ok(no_slot(&ctx));
                }
                Ok::<_, std::convert::Infallible>(api::handle(ctx, transport, request).await)
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(api::MAX_HEAD)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.graceful.watch(connection);
        let deadline = limits.unauthenticated_timeout;
        connections.tasks.spawn(async move {
            let _open = open;
            tokio::select! {
                ended = connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                () = evicted.cancelled() => {}
                () = state.unauthenticated_for(deadline) => {}
            }
        });
    }

    fn slots(&self, limit: usize) -> Arc<Semaphore> {
        let mut slots = crate::engine::lock(&self.slots);
        if slots.0 != limit {
            *slots = (limit, Arc::new(Semaphore::new(limit)));
        }
        slots.1.clone()
    }

    /// Serves a connection if there is room, else answers 503 and closes it.
    pub fn admit<S>(
        &self,
        ctx: &Arc<ApiContext>,
        transport: Transport,
        stream: S,
        connections: &mut Connections,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits: LimitsConfig = ctx.engine.settings().config.limits.clone();
        let limit = limits.max_connections;
        let Ok(slot) = self.slots(limit).try_acquire_owned() else {
            ctx.refusals.note(|| {
                tracing::warn!(
                    limit,
                    ?transport,
                    "connection refused: too many open connections"
                );
            });
            refuse(stream, &ApiError::TooManyConnections { limit });
            return;
        };
        let admitted = Admitted {
            _slot: slot,
            _open: self.activity.enter(),
        };
        serve_connection(
            ctx.clone(),
            transport,
            stream,
            connections,
            admitted,
            limits.header_timeout,
        );
    }

    /// Serves a Unix-socket connection only if its peer runs as our uid
    /// (SPEC §4), whatever the socket file's mode says.
    pub fn admit_unix(
        &self,
        ctx: &Arc<ApiContext>,
        stream: UnixStream,
        connections: &mut Connections,
    ) {
        let ours = nix::unistd::geteuid().as_raw();
        match stream.peer_cred() {
            Ok(peer) if peer.uid() == ours => self.admit(ctx, Transport::Unix, stream, connections),
            Ok(peer) => {
                ctx.refusals.note(|| {
                    tracing::warn!(
                        peer_uid = peer.uid(),
                        peer_pid = peer.pid(),
                        "connection refused: the peer runs as another user"
                    );
                });
                refuse(
                    stream,
                    &ApiError::Forbidden(format!(
                        "this daemon belongs to uid {ours}; connections from uid {} are refused",
                        peer.uid()
                    )),
                );
            }
            Err(error) => {
                ctx.refusals.note(|| {
                    tracing::warn!(%error, "connection refused: cannot read the peer's credentials");
                });
                refuse(
                    stream,
                    &ApiError::Forbidden("cannot verify who is connecting; refused".to_owned()),
                );
            }
        }
    }
}

/// The TCP connections that have not authenticated yet, oldest first, each
/// with the token that closes it.
#[derive(Default)]
struct Pending {
    queue: std::sync::Mutex<VecDeque<(u64, CancellationToken)>>,
    next: AtomicU64,
}

impl Pending {
    /// Counts a new connection in, closing the oldest ones past `cap`.
    fn enter(&self, cap: usize) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut queue = crate::engine::lock(&self.queue);
        while queue.len() >= cap {
            let Some((_, oldest)) = queue.pop_front() else {
                break;
            };
            oldest.cancel();
        }
        queue.push_back((id, token.clone()));
        (id, token)
    }

    fn leave(&self, id: u64) {
        crate::engine::lock(&self.queue).retain(|(entry, _)| *entry != id);
    }
}

/// One TCP connection's standing: unauthenticated (in [`Pending`]) until
/// a request of it authenticates and it takes a slot under the cap.
struct TcpState {
    pending: Arc<Pending>,
    id: u64,
    slots: Arc<Semaphore>,
    slot: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl TcpState {
    /// Whether the request may be served: an unauthenticated one always
    /// (the API answers it 401 or 403); an authenticated one if its
    /// connection holds a slot or can take one now.
    fn promote(&self, ctx: &ApiContext, transport: Transport, headers: &http::HeaderMap) -> bool {
        let mut slot = crate::engine::lock(&self.slot);
        if slot.is_some() || !api::authenticated(ctx, transport, headers) {
            return true;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return false;
        };
        *slot = Some(permit);
        self.pending.leave(self.id);
        true
    }

    /// Resolves `deadline` after now if the connection has not
    /// authenticated by then; never once it has.
    async fn unauthenticated_for(&self, deadline: Duration) {
        tokio::time::sleep(deadline).await;
        if crate::engine::lock(&self.slot).is_some() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for TcpState {
    fn drop(&mut self) {
        self.pending.leave(self.id);
    }
}

/// The answer to an authenticated request when every slot is taken: the
/// API's own error answer (status, code), and the connection is closed.
fn no_slot(ctx: &ApiContext) -> http::Response<api::Body> {
    let limit = ctx.engine.settings().config.limits.max_connections;
    let mut response = api::error_response(&ApiError::TooManyConnections { limit });
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// Answers a connection the daemon will not serve with one JSON error, then
/// closes it. It waits for the end of the request head first (HTTP clients
/// treat an answer that arrives before their request as a broken
/// connection) but looks at nothing in it.
fn refuse<S>(mut stream: S, error: &ApiError)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The status and body come from the API's one error type, as every
    // other error answer's do; only the framing is written by hand here.
    let status = error.status();
    let body = serde_json::to_string(&error.body()).unwrap_or_default();
    tokio::spawn(async move {
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            skip_request_head(&mut stream).await?;
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what else the peer sent so closing does not reset the
            // connection before it has read the answer.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

/// Reads until the blank line that ends a request head, the peer stops
/// sending, or 16 KiB have gone by.
async fn skip_request_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut seen = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while seen.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        // Look only at the new bytes and the three before them.
        let from = seen.len().saturating_sub(3);
        seen.extend_from_slice(&chunk[..n]);
        if seen[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(())
}

/// Serves one connection with the API until it closes, as one of
/// `connections`, so shutdown can drain it; `admitted` is held until then.
fn serve_connection<S>(
    ctx: Arc<ApiContext>,
    transport: Transport,
    stream: S,
    connections: &mut Connections,
    admitted: Admitted,
    header_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(ctx, transport, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // hyper's default is about 400 KiB; a bigger head gets its 431.
        .max_buf_size(api::MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let connection = connections.graceful.watch(connection);
    connections.tasks.spawn(async move {
        let _admitted = admitted;
        if let Err(error) = connection.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_task_that_panics_still_leaves_the_count() {
        let activity = Activity::new();
        let open = activity.enter();
        assert_eq!(activity.idle_deadline(Duration::ZERO), None);
        let task = tokio::spawn(async move {
            let _open = open;
            panic!("a handler bug");
        });
        let ended = task.await;
        assert!(ended.is_err_and(|error| error.is_panic()));
        assert!(activity.idle_deadline(Duration::ZERO).is_some());
    }

    #[tokio::test]
    async fn an_aborted_connection_task_leaves_the_count() {
        let activity = Activity::new();
        let open = activity.enter();
        let task = tokio::spawn(async move {
            let _open = open;
            std::future::pending::<()>().await;
        });
        task.abort();
        assert!(task.await.is_err_and(|error| error.is_cancelled()));
        assert!(activity.idle_deadline(Duration::ZERO).is_some());
    }
}
