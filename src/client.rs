//! The client: talks HTTP to the daemon over its Unix socket, or over
//! loopback TCP (with the bearer token from `R/http.token`) when there is no
//! socket but a daemon of this runtime dir announced a TCP listener. A socket
//! the user named (`--socket`) is used or nothing is: the TCP fallback would
//! reach whichever daemon owns the default port instead.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::wire::{ErrorBody, StreamLine};
use crate::paths::Paths;

/// `$ORCHESTRATION_URL` points the TCP fallback somewhere other than the default.
const URL_VAR: &str = "ORCHESTRATION_URL";

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

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    endpoint: String,
}

impl Client {
    pub fn new(paths: &Paths) -> Result<Self, ClientError> {
        let builder =
            crate::providers::http::client_builder().connect_timeout(Duration::from_secs(5));
        let use_unix = paths.socket_explicit || paths.socket.exists() || !paths.token_file.exists();
        let (builder, base, token, endpoint) = if use_unix {
            let endpoint = paths.socket.display().to_string();
            (
                builder.unix_socket(paths.socket.clone()),
                "http://localhost".to_owned(),
                None,
                endpoint,
            )
        } else {
            let base = std::env::var(URL_VAR)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| format!("http://{}", crate::daemon::DEFAULT_TCP));
            let token = std::fs::read_to_string(&paths.token_file)
                .ok()
                .map(|t| t.trim().to_owned());
            (builder, base.trim_end_matches('/').to_owned(), token, base)
        };
        let http = builder
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            token,
            endpoint,
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
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.classify(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    pub async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = response.bytes().await.map_err(|e| self.classify(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json::<(), T>(Method::GET, path, None).await
    }

    /// Sends a request whose answer is an NDJSON stream, calling `on_line`
    /// for each line as it arrives.
    pub async fn stream<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        mut on_line: impl FnMut(StreamLine) -> Result<(), ClientError>,
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
        response: reqwest::Response,
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut chunks = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = chunks.next().await {
            pending.extend_from_slice(&chunk.map_err(|e| self.classify(e))?);
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

    fn classify(&self, error: reqwest::Error) -> ClientError {
        if error.is_connect() {
            ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
            }
        } else {
            ClientError::Connection(error.to_string())
        }
    }
}

async fn api_error(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
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
