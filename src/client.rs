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

use crate::paths::{Paths, TcpRecord};
use crate::pidfile::{Holder, holder};
use crate::wire::ErrorBody;

/// `$ORCHESTRATION_DAEMON_UID`: the uid whose daemon the client will talk
/// to, when not the user's own (root reaching a user's daemon).
pub const DAEMON_UID_VAR: &str = "ORCHESTRATION_DAEMON_UID";
/// How long connecting may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the orchestration daemon is not running (nothing answers on {endpoint})")]
    Unreachable { endpoint: String },
    /// The daemon answered with an error status.
    #[error("{detail}")]
    Api {
        status: u16,
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
pub struct Response {
    status: StatusCode,
    body: Incoming,
    connection: Connection,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }
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
    pub async fn send<B: Serialize>(
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

    pub async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json::<(), T>(Method::GET, path, None).await
    }

    /// Sends a request whose answer is an NDJSON stream, calling `on_line`
    /// for each line as it arrives.
    pub async fn stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut on_line: impl FnMut(T) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let response = self.send(Method::POST, path, Some(body)).await?;
        self.read_lines(response, |line| {
            let line =
                serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            on_line(line)
        })
        .await
    }

    /// GETs an NDJSON stream (`/events`), calling `on_line` with each line's
    /// bytes, without its newline, as it arrives; until the daemon ends it.
    /// The first error `on_line` returns ends the stream and is returned.
    pub async fn stream_get<E: From<ClientError>>(
        &self,
        path: &str,
        on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let response = self.send::<()>(Method::GET, path, None).await?;
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
    let (detail, missing_key) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.detail, body.missing_key),
        Err(_) => (fallback_detail(status, &text), None),
    };
    ClientError::Api {
        status: status.as_u16(),
        detail,
        missing_key,
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
