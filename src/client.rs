//! The client: talks HTTP to the daemon over its Unix socket, or over
//! loopback TCP (with the bearer token from `R/http.token`) when there is no
//! socket but a daemon of this runtime dir announced a TCP listener. A socket
//! the user named (`--socket`) is used or nothing is: the TCP fallback would
//! reach whichever daemon owns the default port instead.
//!
//! Every call is one HTTP/1.1 exchange on a fresh connection, made with
//! hyper directly: a CLI process sends one or two requests to a local peer,
//! so it needs neither TLS nor a connection pool, and setting those up cost
//! more than the request itself.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::paths::Paths;
use crate::wire::ErrorBody;

/// `$ORCHESTRATION_URL` points the TCP fallback somewhere other than the default.
const URL_VAR: &str = "ORCHESTRATION_URL";
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
}

/// Where the daemon listens.
#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    /// `host:port`, as connected to and sent in `Host`.
    Tcp(String),
}

pub struct Client {
    target: Target,
    /// The `Host` header.
    host: HeaderValue,
    /// A path prefix from `$ORCHESTRATION_URL` (without a trailing `/`).
    prefix: String,
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
        let use_unix = paths.socket_explicit || paths.socket.exists() || !paths.token_file.exists();
        if use_unix {
            return Ok(Self {
                target: Target::Unix(paths.socket.clone()),
                host: HeaderValue::from_static("localhost"),
                prefix: String::new(),
                authorization: None,
                endpoint: paths.socket.display().to_string(),
            });
        }
        let url = std::env::var(URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("http://{}", crate::paths::DEFAULT_TCP));
        let invalid = |why: &str| ClientError::Protocol(format!("{URL_VAR}={url} {why}"));
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(&format!("is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid(
                "must start with http:// (the daemon speaks plain HTTP)",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("names no host"))?
            .as_str()
            .to_owned();
        let authority = if uri.port().is_some() {
            authority
        } else {
            format!("{authority}:80")
        };
        let host = HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
            .map_err(|e| invalid(&e.to_string()))?;
        let authorization = std::fs::read_to_string(&paths.token_file)
            .ok()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.trim())).ok())
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Ok(Self {
            target: Target::Tcp(authority),
            host,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            authorization,
            endpoint: url,
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
            .uri(format!("{}{}", self.prefix, path))
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
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(socket))
                        .await
                        .map_err(|_| unreachable())?
                        .map_err(|_| unreachable())?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake)?;
                Ok((sender, drive(connection)))
            }
            Target::Tcp(authority) => {
                let stream = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect(authority.as_str()),
                )
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
