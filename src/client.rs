//! The client: talks HTTP to the daemon over its Unix socket, or over
//! loopback TCP (with the bearer token from `R/http.token`) when there is no
//! socket but a live daemon of this runtime dir recorded the address it
//! serves in `R/http.address`. A socket the user named (`--socket`) is used
//! or nothing is.
//!
//! Before anything is sent the client makes sure it talks to its own
//! daemon: the socket's peer must run as the user (`SO_PEERCRED` /
//! `getpeereid`), a socket in a directory others may write to must be the
//! user's own in a sticky one, and the token goes only to the recorded
//! address, never to a guessed port.
//!
//! Every call is one HTTP/1.1 exchange on a fresh connection, made with
//! hyper directly: a CLI process sends one or two requests to a local peer,
//! so it needs neither TLS nor a connection pool, and setting those up cost
//! more than the request itself.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::collections::BTreeMap;

use crate::model::{AgentInfo, AgentName, Approval, PruneReport, ShutdownReport, UsageReport};
use crate::paths::{Paths, TcpRecord};
use crate::pidfile::{Holder, holder};
use crate::wire::{AnswerRequest, Answered, ApprovalId, ApprovalsQuery};
use crate::wire::{
    Conversations, ConversationsQuery, ErrorBody, ErrorCode, EventsQuery, FanOutRequest,
    FanOutResult, Health, HistoryQuery, Interrupted, ListQuery, MessageRequest, Messages, Models,
    ModelsRequest, PruneRequest, Reloaded, Route, SearchQuery, SearchResults, SpawnRequest,
    TaskRequest, ToolServers, ToolsQuery, UiLink, UsageQuery,
};

/// `$ORCHESTRATION_DAEMON_UID`: the uid whose daemon the client will talk
/// to, when not the user's own (root reaching a user's daemon).
pub const DAEMON_UID_VAR: &str = "ORCHESTRATION_DAEMON_UID";
/// How long connecting may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the orchestration daemon is not running (nothing answers on {endpoint})")]
    Unreachable { endpoint: String },
    /// The daemon answered with an error status. Decide on `code`;
    /// `detail` is for people.
    #[error("{detail}")]
    Api {
        status: u16,
        code: ErrorCode,
        detail: String,
        /// The key variable a suspended agent lacks (a client may send it).
        missing_key: Option<String>,
    },
    #[error("lost the connection to the daemon: {0}")]
    Connection(String),
    #[error("the daemon sent something unexpected: {0}")]
    Protocol(String),
    /// The socket may not be the user's own daemon's: nothing was sent.
    #[error("refusing to talk to {}: {why}", path.display())]
    NotOurDaemon { path: PathBuf, why: String },
    #[error("{DAEMON_UID_VAR}={0:?} is not a uid (a number)")]
    BadDaemonUid(String),
}

/// Where the daemon listens.
#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    /// The address the daemon recorded.
    Tcp(SocketAddr),
}

/// Whose daemon the client accepts on a Unix socket.
#[derive(Debug, Clone, Copy)]
struct Expected {
    uid: u32,
    /// Named with `$ORCHESTRATION_DAEMON_UID`: the user chose that daemon,
    /// so the socket's directory is not second-guessed.
    explicit: bool,
}

pub struct Client {
    target: Target,
    expected: Expected,
    /// The `Host` header.
    host: HeaderValue,
    /// `Authorization: Bearer …` for the TCP data plane.
    authorization: Option<HeaderValue>,
    endpoint: String,
}

/// A successful answer whose body has not been read yet. It owns its
/// connection, which closes when the answer is dropped.
struct Response {
    status: StatusCode,
    body: Incoming,
    connection: Connection,
}

/// The task driving one connection; aborted (closing the connection) when
/// the answer is dropped, e.g. when Ctrl-C abandons a streamed reply.
struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    pub fn new(paths: &Paths) -> Result<Self, ClientError> {
        let expected = expected_daemon()?;
        let tcp = if paths.socket_explicit || paths.socket.exists() {
            None
        } else {
            recorded_tcp(paths)
        };
        let Some((addr, token)) = tcp else {
            return Ok(Self {
                target: Target::Unix(paths.socket.clone()),
                expected,
                host: HeaderValue::from_static("localhost"),
                authorization: None,
                endpoint: paths.socket.display().to_string(),
            });
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Protocol("the token file holds no token".into()))?;
        authorization.set_sensitive(true);
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            target: Target::Tcp(addr),
            expected,
            host,
            authorization: Some(authorization),
            endpoint: format!("http://{addr}"),
        })
    }

    /// Where requests go, for messages to the user.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends a request and returns the response if its status is a success.
    /// Private: every request goes through the endpoint table ([`Route`]).
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.clone());
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(body)
                    .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?
            }
            None => Vec::new(),
        };
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(format!("cannot build the request: {e}")))?;

        let (mut sender, connection) = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let response = Response {
            status: response.status(),
            body: response.into_body(),
            connection,
        };
        if response.status.is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// One request for `route` (its method and target from the endpoint
    /// table, so they are the ones the daemon parses), answered with JSON.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &Route,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.json(route.method(), &route.target(), body).await
    }

    /// One request for `route` whose answer has no body worth reading.
    async fn call_empty(&self, route: &Route) -> Result<(), ClientError> {
        self.send::<()>(route.method(), &route.target(), None)
            .await
            .map(drop)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call::<(), _>(&Route::Health, None).await
    }

    pub async fn spawn(&self, request: &SpawnRequest) -> Result<AgentInfo, ClientError> {
        self.call(&Route::Spawn, Some(request)).await
    }

    pub async fn list(&self, query: &ListQuery) -> Result<Vec<AgentInfo>, ClientError> {
        self.call::<(), _>(&Route::ListAgents(query.clone()), None)
            .await
    }

    pub async fn agent(&self, name: &AgentName) -> Result<AgentInfo, ClientError> {
        self.call::<(), _>(&Route::GetAgent(name.clone()), None)
            .await
    }

    pub async fn shutdown_agent(&self, name: &AgentName) -> Result<(), ClientError> {
        self.call_empty(&Route::ShutdownAgent(name.clone())).await
    }

    pub async fn shutdown_all(&self) -> Result<ShutdownReport, ClientError> {
        self.call::<(), _>(&Route::ShutdownAll, None).await
    }

    /// A message answered whole (`stream` false; see [`Client::stream`]).
    pub async fn message(
        &self,
        name: &AgentName,
        request: &MessageRequest,
    ) -> Result<Messages, ClientError> {
        self.call(&Route::Message(name.clone()), Some(request))
            .await
    }

    /// A task answered whole (`stream` false; see [`Client::stream`]).
    pub async fn task(
        &self,
        name: &AgentName,
        request: &TaskRequest,
    ) -> Result<Messages, ClientError> {
        self.call(&Route::Task(name.clone()), Some(request)).await
    }

    /// Stops the turn the agent is running now; says whether one was.
    pub async fn interrupt(&self, name: &AgentName) -> Result<Interrupted, ClientError> {
        self.call::<(), _>(&Route::Interrupt(name.clone()), None)
            .await
    }

    pub async fn history(
        &self,
        name: &AgentName,
        query: &HistoryQuery,
    ) -> Result<Messages, ClientError> {
        let route = Route::History(name.clone(), query.clone());
        self.call::<(), _>(&route, None).await
    }

    pub async fn clear_history(&self, name: &AgentName) -> Result<(), ClientError> {
        self.call_empty(&Route::ClearHistory(name.clone())).await
    }

    pub async fn conversations(
        &self,
        query: &ConversationsQuery,
    ) -> Result<Conversations, ClientError> {
        self.call::<(), _>(&Route::Conversations(query.clone()), None)
            .await
    }

    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResults, ClientError> {
        self.call::<(), _>(&Route::Search(query.clone()), None)
            .await
    }

    pub async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, ClientError> {
        self.call::<(), _>(&Route::Usage(query.clone()), None).await
    }

    /// `GET /tools`: the configured MCP servers (started first with `start`).
    pub async fn tools(&self, query: &ToolsQuery) -> Result<ToolServers, ClientError> {
        self.call::<(), _>(&Route::Tools(query.clone()), None).await
    }

    pub async fn models(&self, request: &ModelsRequest) -> Result<Models, ClientError> {
        self.call(&Route::Models, Some(request)).await
    }

    /// A fan-out answered whole: each agent's reply or error.
    pub async fn fan_out(
        &self,
        request: &FanOutRequest,
    ) -> Result<BTreeMap<AgentName, FanOutResult>, ClientError> {
        self.call(&Route::FanOut, Some(request)).await
    }

    pub async fn prune(&self, request: &PruneRequest) -> Result<PruneReport, ClientError> {
        self.call(&Route::Prune, Some(request)).await
    }

    pub async fn reload(&self) -> Result<Reloaded, ClientError> {
        self.call::<(), _>(&Route::Reload, None).await
    }

    /// The pending approvals, oldest first.
    pub async fn approvals(&self, query: &ApprovalsQuery) -> Result<Vec<Approval>, ClientError> {
        self.call::<(), _>(&Route::Approvals(query.clone()), None)
            .await
    }

    /// Approves or denies a pending approval (at most once: a second
    /// answer is `already_resolved`).
    pub async fn answer(
        &self,
        id: &ApprovalId,
        answer: &AnswerRequest,
    ) -> Result<Answered, ClientError> {
        self.call(&Route::Answer(id.clone()), Some(answer)).await
    }

    /// A one-time login link to the web page (Unix socket only).
    pub async fn ui_link(&self) -> Result<UiLink, ClientError> {
        self.call::<(), _>(&Route::UiLink, None).await
    }

    /// Asks the daemon to stop (it answers before it does).
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call_empty(&Route::Shutdown).await
    }

    /// Opens a connection and spawns the task that drives it.
    async fn connect(&self) -> Result<(http1::SendRequest<Full<Bytes>>, Connection), ClientError> {
        let unreachable = || ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
        };
        let handshake = |e: hyper::Error| ClientError::Connection(e.to_string());
        match &self.target {
            Target::Unix(socket) => {
                if !self.expected.explicit {
                    check_directory(socket, self.expected.uid)?;
                }
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(socket))
                        .await
                        .map_err(|_| unreachable())?
                        .map_err(|_| unreachable())?;
                check_peer(&stream, socket, self.expected.uid)?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake)?;
                Ok((sender, drive(connection)))
            }
            Target::Tcp(addr) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                        .await
                        .map_err(|_| unreachable())?
                        .map_err(|_| unreachable())?;
                let _ = stream.set_nodelay(true);
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake)?;
                Ok((sender, drive(connection)))
            }
        }
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends a request whose answer is an NDJSON stream (a message, task or
    /// fan-out with `"stream": true`), calling `on_line` for each line as
    /// it arrives. The first error `on_line` returns (the caller's own, a
    /// failed write say) ends the stream and is returned as it is.
    pub async fn stream<B, T, E>(
        &self,
        route: &Route,
        body: &B,
        mut on_line: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        B: Serialize,
        T: DeserializeOwned,
        E: From<ClientError>,
    {
        let response = self
            .send(route.method(), &route.target(), Some(body))
            .await?;
        self.read_lines(response, |line| {
            let line =
                serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            on_line(line)
        })
        .await
    }

    /// Follows `GET /events`, calling `on_line` with each line's bytes,
    /// without its newline, as it arrives; until the daemon ends it. The
    /// first error `on_line` returns ends the stream and is returned.
    pub async fn events<E: From<ClientError>>(
        &self,
        query: &EventsQuery,
        on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let route = Route::Events(query.clone());
        let response = self
            .send::<()>(route.method(), &route.target(), None)
            .await?;
        self.read_lines(response, on_line).await
    }

    /// The one line splitter: calls `on_line` for each non-blank line of
    /// an NDJSON body as soon as it is complete.
    async fn read_lines<E: From<ClientError>>(
        &self,
        mut response: Response,
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pending = Vec::new();
        while let Some(frame) = response.body.frame().await {
            let frame = frame.map_err(|e| ClientError::Connection(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = line.trim_ascii();
                if !line.is_empty() {
                    on_line(line)?;
                }
            }
        }
        Ok(())
    }
}

/// The uid whose daemon this client talks to: the user's own, unless
/// `$ORCHESTRATION_DAEMON_UID` names another.
fn expected_daemon() -> Result<Expected, ClientError> {
    let own = nix::unistd::geteuid().as_raw();
    match std::env::var(DAEMON_UID_VAR) {
        Ok(text) if !text.is_empty() => {
            let uid = text
                .trim()
                .parse()
                .map_err(|_| ClientError::BadDaemonUid(text.clone()))?;
            Ok(Expected {
                uid,
                explicit: true,
            })
        }
        _ => Ok(Expected {
            uid: own,
            explicit: false,
        }),
    }
}

/// The address and token of this runtime dir's TCP listener, if a live
/// daemon (one holding the PID file's lock) recorded both. Files left by a
/// killed daemon name a port anyone may have bound since: they are ignored.
fn recorded_tcp(paths: &Paths) -> Option<(SocketAddr, String)> {
    let Some(TcpRecord::Serving(addr)) = TcpRecord::read(&paths.address_file) else {
        return None;
    };
    let token = std::fs::read_to_string(&paths.token_file).ok()?;
    let token = token.trim();
    if token.is_empty() || !matches!(holder(&paths.pid_file), Holder::Daemon(_)) {
        return None;
    }
    Some((addr, token.to_owned()))
}

/// A socket in a directory others may write to could have been put there
/// by them, or be swapped for theirs: only a sticky directory (where no one
/// else can remove or rename the user's file) holding a socket of the
/// user's own will do.
fn check_directory(socket: &Path, uid: u32) -> Result<(), ClientError> {
    let refuse = |why: String| ClientError::NotOurDaemon {
        path: socket.to_owned(),
        why,
    };
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(dir_meta) = std::fs::metadata(dir) else {
        return Ok(()); // Nothing to connect to: the connect says so.
    };
    let mode = dir_meta.mode();
    if mode & 0o022 == 0 {
        return Ok(());
    }
    let dir_text = format!(
        "its directory {} is writable by others (mode {:o}, owner {})",
        dir.display(),
        mode & 0o7777,
        describe_uid(dir_meta.uid())
    );
    if mode & 0o1000 == 0 {
        return Err(refuse(format!(
            "{dir_text} and not sticky, so anyone may have put it there"
        )));
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.uid() != uid => Err(refuse(format!(
            "it belongs to {}, not to {}, and {dir_text}",
            describe_uid(meta.uid()),
            describe_uid(uid)
        ))),
        _ => Ok(()),
    }
}

/// The process listening on the socket must run as the expected uid.
fn check_peer(stream: &tokio::net::UnixStream, socket: &Path, uid: u32) -> Result<(), ClientError> {
    let refuse = |why: String| ClientError::NotOurDaemon {
        path: socket.to_owned(),
        why,
    };
    let peer = stream
        .peer_cred()
        .map_err(|e| refuse(format!("cannot read the peer's credentials: {e}")))?;
    if peer.uid() == uid {
        return Ok(());
    }
    Err(refuse(format!(
        "it is served by {}, not by {}",
        describe_uid(peer.uid()),
        describe_uid(uid)
    )))
}

/// `uid 1000 (alice)`, or `uid 1000` when the name cannot be told.
fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Spawns the task that reads and writes one connection.
fn drive<T>(connection: http1::Connection<T, Full<Bytes>>) -> Connection
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Connection(tokio::spawn(async move {
        // A failure shows up in the request or its body.
        let _ = connection.await;
    }))
}

async fn read_all(response: Response) -> Result<Bytes, ClientError> {
    let Response {
        body, connection, ..
    } = response;
    let collected = body
        .collect()
        .await
        .map_err(|e| ClientError::Connection(e.to_string()))?;
    drop(connection);
    Ok(collected.to_bytes())
}

async fn api_error(response: Response) -> ClientError {
    let status = response.status;
    let bytes = read_all(response).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
        detail: fallback_detail(status, &text),
        code: ErrorCode::Other,
        missing_key: None,
    });
    ClientError::Api {
        status: status.as_u16(),
        code: body.code,
        detail: body.detail,
        missing_key: body.missing_key,
    }
}

fn fallback_detail(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        format!("the daemon answered {status}")
    } else {
        format!("the daemon answered {status}: {text}")
    }
}
