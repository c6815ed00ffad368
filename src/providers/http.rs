//! The HTTP plumbing every remote provider shares: one pooled client, retries
//! with backoff before anything has streamed, an idle timeout on every wait,
//! error bodies turned into readable messages, and a driver that turns a
//! server-sent-event stream into [`ProviderEvent`]s through a per-protocol
//! [`Decoder`].
//!
//! Credentials stay with the endpoint they were meant for: redirects to
//! another origin are not followed, and every credential a request carries
//! is scrubbed ([`Redactor`]) from any error text before it is logged or
//! leaves this module.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, stream};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Request, Response, StatusCode};
use serde_json::Value;

use super::{EventStream, ProviderError, ProviderEvent, SetupError};
use crate::config::ProvidersConfig;

/// The longest `Retry-After` we wait out; a server asking for more gets its
/// error passed on instead of a hung request.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// How much of an error body is read and kept.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_MESSAGE_LIMIT: usize = 500;

/// The longest line, and the longest event, an event stream may send. A
/// real provider's events are a few hundred bytes; without a bound, a line
/// that never ends is buffered (and re-parsed) without end.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A reqwest client builder with the TLS crypto provider in place. Every
/// reqwest client in the program starts here.
pub fn client_builder() -> reqwest::ClientBuilder {
    // The only failure is "already installed", which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// The daemon's one connection pool to model servers, and how to use it.
/// The client (TLS set-up, root certificates) is built on the first call
/// to a model server, not at start: a daemon that only runs `echo` agents,
/// or has not called a model yet, does not carry it.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    pub settings: ProvidersConfig,
    /// `limits.max_reply_bytes`: bounds what a decoder keeps back (reasoning)
    /// and, doubled for JSON's escaping, a successful body read whole.
    pub max_reply_bytes: usize,
}

impl Upstream {
    pub fn new(settings: ProvidersConfig, max_reply_bytes: usize) -> Result<Self, SetupError> {
        Ok(Self {
            client: Arc::default(),
            settings,
            max_reply_bytes,
        })
    }

    /// The most a successful body read whole (a model listing, a reply
    /// sent as one JSON document) may be: the reply limit, doubled for
    /// JSON's escaping and envelope. Error bodies keep their smaller limit.
    fn success_body_limit(&self) -> usize {
        self.max_reply_bytes.saturating_mul(2)
    }

    pub fn client(&self) -> Result<&reqwest::Client, ProviderError> {
        let settings = &self.settings;
        self.client
            .get_or_init(|| {
                client_builder()
                    .connect_timeout(settings.connect_timeout)
                    .redirect(reqwest::redirect::Policy::custom(same_origin_only))
                    .user_agent(concat!("orchestration/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|error| ProviderError::Other(format!("cannot set up HTTPS: {error}")))
    }

    /// Sends a request and returns a successful response, retrying 429s,
    /// 5xx answers and connection errors with backoff. Nothing has streamed
    /// yet when this returns, so a retry can never duplicate reply text.
    pub async fn send(&self, request: Request) -> Result<Response, ProviderError> {
        let redactor = Redactor::for_request(&request);
        let mut attempt = 0;
        loop {
            let (error, retry_after) = match self.attempt(&request).await {
                Ok(response) => return Ok(response),
                Err(Attempt::Final(error)) => return Err(error.redact(&redactor)),
                Err(Attempt::Retryable(error, retry_after)) => {
                    (error.redact(&redactor), retry_after)
                }
            };
            if attempt >= self.settings.max_retries {
                return Err(error);
            }
            let backoff = self
                .settings
                .retry_backoff
                .saturating_mul(1 << attempt.min(16));
            let pause = retry_after.unwrap_or(backoff);
            if pause > MAX_RETRY_WAIT {
                return Err(error);
            }
            attempt += 1;
            tracing::warn!(
                url = %redactor.scrub(request.url().as_str()),
                attempt,
                pause_ms = pause.as_millis() as u64,
                error = %error,
                "retrying the upstream request"
            );
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(&self, original: &Request) -> Result<Response, Attempt> {
        let Some(request) = original.try_clone() else {
            return Err(Attempt::Final(ProviderError::Other(
                "the request cannot be retried".into(),
            )));
        };
        let host = host_of(&request);
        let idle = self.settings.idle_timeout;
        let response = match tokio::time::timeout(
            idle,
            self.client().map_err(Attempt::Final)?.execute(request),
        )
        .await
        {
            Err(_) => {
                return Err(Attempt::Final(ProviderError::Timeout(format!(
                    "{host} sent no response within {}",
                    seconds(idle)
                ))));
            }
            Ok(Err(error)) => return Err(classify(&host, error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut message = error_message(&read_body(response, idle, ERROR_BODY_LIMIT).await.text);
        if status.is_redirection() {
            message = format!(
                "redirected to {}; a redirect to another host is not followed, so no credential leaves the configured endpoint: set base_url to the new location",
                location.as_deref().unwrap_or("an unnamed location")
            );
        } else {
            message.push_str(&what_was_asked(original, status));
        }
        let error = ProviderError::Status {
            status: status.as_u16(),
            message,
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Attempt::Retryable(error, retry_after))
        } else {
            Err(Attempt::Final(error))
        }
    }

    /// A GET whose JSON answer is returned whole (for model listings).
    pub async fn get_json(&self, request: Request) -> Result<Value, ProviderError> {
        let idle = self.settings.idle_timeout;
        let redactor = Redactor::for_request(&request);
        let response = self.send(request).await?;
        let limit = self.success_body_limit();
        let body = read_body(response, idle, limit).await;
        if body.over {
            return Err(ProviderError::Protocol(format!(
                "the answer is larger than {} (twice limits.max_reply_bytes); raise limits.max_reply_bytes to read it",
                bytes_text(limit)
            )));
        }
        let body = body.text;
        serde_json::from_str(&body).map_err(|_| {
            ProviderError::Protocol(format!("expected JSON, got: {}", excerpt(&body)))
                .redact(&redactor)
        })
    }
}

/// Follows a redirect only within the origin it started from (at most five
/// hops); any other is handed back as the 3xx it is, and reported.
fn same_origin_only(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let same_origin = attempt
        .previous()
        .first()
        .is_some_and(|first| first.origin() == attempt.url().origin());
    if !same_origin {
        attempt.stop()
    } else if attempt.previous().len() > 5 {
        attempt.error("more than five redirects")
    } else {
        attempt.follow()
    }
}

/// What the user needs to see beside a model server's error to fix it: the
/// request actually made (method and URL, without credentials or query) and
/// whether a key went with it, whatever the status (LiteLLM answers 500 to a
/// missing key); and, for a 404 on a path with `/v1` twice, that base_url
/// should not end in `/v1` for a wire that adds it.
fn what_was_asked(request: &Request, status: StatusCode) -> String {
    let url = request.url();
    let shown = format!("{}://{}{}", url.scheme(), host_of(request), url.path());
    let key = if carries_key(request) {
        "an API key was sent".to_owned()
    } else {
        "no API key was sent: if it needs one, name the variable that holds it with \
         --api-key-env VAR, or bind it to the URL in a [profiles.NAME] with api_key_env"
            .to_owned()
    };
    let doubled = if status == StatusCode::NOT_FOUND && url.path().contains("/v1/v1/") {
        "; the path has /v1 twice: this provider adds /v1 itself, so drop the trailing /v1 \
         from base_url"
    } else {
        ""
    };
    format!(" ({} {shown}; {key}{doubled})", request.method())
}

/// Whether a request presents a key in one of the ways providers read one.
fn carries_key(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(reqwest::header::AUTHORIZATION) || headers.contains_key("x-api-key")
}

/// The credentials one request carries, scrubbed from any text an answer
/// to it produces: upstream servers echo keys in their error messages
/// ("Incorrect API key: sk-…"), and that text goes on to responses, stream
/// lines, the history and the log.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Shorter values are not keys, and scrubbing them would mangle messages.
const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    /// Every credential-looking header value (the key, whatever header it
    /// travels in, and custom headers named like one), and a key-named
    /// parameter in the URL.
    pub fn for_request(request: &Request) -> Self {
        let mut secrets = Vec::new();
        for (name, value) in request.headers() {
            if !is_credential_name(name.as_str()) {
                continue;
            }
            let Ok(value) = value.to_str() else { continue };
            secrets.push(value.to_owned());
            // `Bearer KEY`, `Basic B64`: the key alone, too.
            if let Some((_, key)) = value.split_once(' ') {
                secrets.push(key.trim().to_owned());
            }
        }
        // reqwest has already moved a URL's password into `Authorization`.
        secrets.extend(
            request
                .url()
                .query_pairs()
                .filter(|(key, _)| is_credential_name(key))
                .map(|(_, value)| value.into_owned()),
        );
        secrets.retain(|secret| secret.len() >= MIN_SECRET_LEN);
        // Longest first, so a key inside a longer secret is not half-replaced.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// These secrets (a coding agent's key, which its child holds).
    pub fn of(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|secret| secret.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Where the tail of `text` that could be the start of a secret
    /// begins (`text.len()` when none could): text from there on must wait
    /// for what follows before it can be scrubbed.
    pub fn unfinished(&self, text: &str) -> usize {
        let longest = self.secrets.first().map_or(0, String::len);
        let from = text.len().saturating_sub(longest.saturating_sub(1));
        (from..text.len())
            .filter(|&start| text.is_char_boundary(start))
            .find(|&start| {
                let tail = &text[start..];
                self.secrets.iter().any(|secret| secret.starts_with(tail))
            })
            .unwrap_or(text.len())
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth", "key", "token", "secret", "cookie", "session", "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

impl ProviderError {
    /// The same error with every credential of `redactor` scrubbed from its text.
    pub fn redact(self, redactor: &Redactor) -> Self {
        match self {
            Self::Status { status, message } => Self::Status {
                status,
                message: redactor.scrub(&message),
            },
            Self::Timeout(text) => Self::Timeout(redactor.scrub(&text)),
            Self::Connect(text) => Self::Connect(redactor.scrub(&text)),
            Self::Protocol(text) => Self::Protocol(redactor.scrub(&text)),
            Self::Stream(text) => Self::Stream(redactor.scrub(&text)),
            Self::Other(text) => Self::Other(redactor.scrub(&text)),
            Self::Limit(text) => Self::Limit(redactor.scrub(&text)),
        }
    }
}

enum Attempt {
    Retryable(ProviderError, Option<Duration>),
    Final(ProviderError),
}

fn host_of(request: &Request) -> String {
    let url = request.url();
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "the model server".to_owned(),
    }
}

fn classify(host: &str, error: reqwest::Error) -> Attempt {
    // reqwest's messages name the URL but never headers, so no key leaks here.
    let detail = error_chain(&error);
    if error.is_connect() || error.is_request() {
        Attempt::Retryable(
            ProviderError::Connect(format!("cannot reach {host}: {detail}")),
            None,
        )
    } else if error.is_timeout() {
        Attempt::Final(ProviderError::Timeout(format!("{host}: {detail}")))
    } else {
        Attempt::Final(ProviderError::Other(format!("{host}: {detail}")))
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::well_known::Rfc2822;
    let when = time::OffsetDateTime::parse(value, &format).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or_default())
}

/// A body read up to a limit.
struct Body {
    text: String,
    /// More arrived than the limit; `text` holds the first `limit` bytes.
    over: bool,
}

/// Reads at most `limit` bytes of a body, waiting at most the idle timeout
/// for each chunk; whatever arrived is returned, and whether there was more.
async fn read_body(mut response: Response, idle: Duration, limit: usize) -> Body {
    let mut body = Vec::new();
    while body.len() <= limit {
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let over = body.len() > limit;
    body.truncate(limit);
    Body {
        text: String::from_utf8_lossy(&body).into_owned(),
        over,
    }
}

/// Appends `text` to `buffer` while it stays within `limit` bytes (cut at a
/// character boundary): what a decoder keeps back, such as reasoning, is
/// bounded like the reply itself.
pub fn push_bounded(buffer: &mut String, text: &str, limit: usize) {
    let room = limit.saturating_sub(buffer.len());
    let mut cut = text.len().min(room);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    buffer.push_str(&text[..cut]);
}

/// A byte count as people read it: "4 MiB", "1.5 KiB", "300 bytes".
pub fn bytes_text(bytes: usize) -> String {
    const UNITS: [(&str, usize); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenths = (bytes % size) * 10 / size;
            return match tenths {
                0 => format!("{whole} {unit}"),
                _ => format!("{whole}.{tenths} {unit}"),
            };
        }
    }
    format!("{bytes} bytes")
}

/// The human part of an upstream error body, whatever its shape:
/// `{"error":{"message":…}}` (OpenAI, Anthropic), `{"error":"…"}`,
/// `[{"error":{…}}]` (Gemini), `{"message":…}`, `{"detail":…}`, or plain text.
pub fn error_message(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| json_error_message(&value))
        .unwrap_or_else(|| body.trim().to_owned());
    if message.is_empty() {
        return "(empty response body)".to_owned();
    }
    excerpt(&message)
}

/// The message inside a JSON error value, if it has one.
pub fn json_error_message(value: &Value) -> Option<String> {
    if let Some(first) = value.as_array().and_then(|items| items.first()) {
        return json_error_message(first);
    }
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match value.get("error") {
        Some(Value::String(message)) => Some(message.clone()),
        Some(error @ Value::Object(_)) => {
            let message = error.get("message").and_then(text);
            let kind = error
                .get("type")
                .or_else(|| error.get("status"))
                .and_then(text);
            match (kind, message) {
                (Some(kind), Some(message)) => Some(format!("{message} ({kind})")),
                (None, Some(message)) => Some(message),
                (Some(kind), None) => Some(kind),
                (None, None) => Some(error.to_string()),
            }
        }
        Some(other) if !other.is_null() => Some(other.to_string()),
        _ => value
            .get("message")
            .or_else(|| value.get("detail"))
            .and_then(text),
    }
}

/// The HTTP status inside a JSON error value, if it carries a plausible one.
pub fn json_error_status(value: &Value) -> Option<u16> {
    if let Some(first) = value.as_array().and_then(|items| items.first()) {
        return json_error_status(first);
    }
    let code = value.get("error")?.get("code")?;
    let code = code
        .as_u64()
        .or_else(|| code.as_str().and_then(|s| s.parse().ok()))?;
    u16::try_from(code).ok().filter(|c| (400..600).contains(c))
}

/// At most [`ERROR_MESSAGE_LIMIT`] characters, on one line.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(ERROR_MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// What a decoder wants after one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The reply is complete; stop reading.
    Stop,
}

/// One protocol's reading of its event stream.
pub trait Decoder: Send + 'static {
    /// Handles one server-sent event, pushing what it means onto `out`.
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<Flow, ProviderError>;
    /// Whether the reply so far is complete, i.e. the stream may end here.
    fn complete(&self) -> bool;
    /// Called once at the end, however it ended, to flush what was kept back.
    fn finish(&mut self, _out: &mut VecDeque<ProviderEvent>) {}
    /// Reads a whole reply sent as one JSON document by a server that
    /// ignored `stream: true` (proxies and mocks do), leaving the decoder
    /// complete. False when `reply` is not a reply of this protocol.
    fn whole(&mut self, reply: &Value, out: &mut VecDeque<ProviderEvent>) -> bool;
}

type SseEvents = Pin<Box<dyn Stream<Item = Result<Event, ProviderError>> + Send>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Response, ProviderError>> + Send>>;

enum Phase {
    Connecting(Connecting),
    Streaming(SseEvents),
    Done,
}

/// Drives one streamed reply: connect (with retries), then decode events
/// until the decoder says stop, the stream ends, or something fails.
struct Driver<D> {
    phase: Phase,
    decoder: D,
    pending: VecDeque<ProviderEvent>,
    failure: Option<ProviderError>,
    idle: Duration,
    /// The most a reply sent as one JSON document may be.
    body_limit: usize,
    redactor: Redactor,
    /// Reply text not yet passed on: the last few bytes are held back until
    /// it is sure no credential starts in them (a model that echoes the key
    /// may split it across deltas).
    held: String,
}

/// The stream of a reply sent as server-sent events. A request that could
/// not be built is a stream that fails at once.
pub fn sse_reply<D: Decoder>(
    upstream: &Upstream,
    request: Result<Request, ProviderError>,
    decoder: D,
) -> EventStream {
    let sender = upstream.clone();
    let redactor = request
        .as_ref()
        .map(Redactor::for_request)
        .unwrap_or_default();
    let connecting: Connecting = Box::pin(async move { sender.send(request?).await });
    let driver = Driver {
        phase: Phase::Connecting(connecting),
        decoder,
        pending: VecDeque::new(),
        failure: None,
        idle: upstream.settings.idle_timeout,
        body_limit: upstream.success_body_limit(),
        redactor,
        held: String::new(),
    };
    Box::pin(stream::unfold(driver, |mut driver| async move {
        driver.next().await.map(|item| (item, driver))
    }))
}

impl<D: Decoder> Driver<D> {
    async fn next(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                match self.scrub(event) {
                    Some(event) => return Some(Ok(event)),
                    None => continue,
                }
            }
            if matches!(self.phase, Phase::Done) && !self.held.is_empty() {
                let rest = std::mem::take(&mut self.held);
                return Some(Ok(ProviderEvent::Delta(self.redactor.scrub(&rest))));
            }
            if let Some(error) = self.failure.take() {
                return Some(Err(error));
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Connecting(connecting) => match connecting.await {
                    Ok(response) => self.phase = Phase::Streaming(self.events(response).await),
                    Err(error) => self.fail(error),
                },
                Phase::Streaming(events) => match events.next().await {
                    Some(Ok(event)) => match self.decoder.event(&event, &mut self.pending) {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Stop) => self.end(),
                        Err(error) => self.fail(error),
                    },
                    Some(Err(error)) => self.fail(error),
                    None if self.decoder.complete() => self.end(),
                    None => self.fail(ProviderError::Protocol(
                        "the stream ended before the reply was complete".into(),
                    )),
                },
            }
        }
    }

    fn end(&mut self) {
        self.phase = Phase::Done;
        self.decoder.finish(&mut self.pending);
    }

    /// An event with every credential the request carried scrubbed from its
    /// text, so a model that echoes the key cannot put it in the history,
    /// the search index, a stream or an event. Reply text is passed on
    /// once no credential can start in it; `None` while all is held back.
    fn scrub(&mut self, event: ProviderEvent) -> Option<ProviderEvent> {
        if self.redactor.is_empty() {
            return Some(event);
        }
        match event {
            ProviderEvent::Delta(text) => {
                self.held.push_str(&text);
                self.held = self.redactor.scrub(&self.held);
                let cut = self.redactor.unfinished(&self.held);
                (cut > 0).then(|| ProviderEvent::Delta(self.held.drain(..cut).collect()))
            }
            ProviderEvent::Metadata(mut facts) => {
                for value in facts.values_mut() {
                    if let Value::String(text) = value {
                        *text = self.redactor.scrub(text);
                    }
                }
                Some(ProviderEvent::Metadata(facts))
            }
            // A model that echoes the key into a tool's arguments would
            // hand it to the tool server, and to the history.
            ProviderEvent::ToolCall(mut call) => {
                let text = call.input.to_string();
                let clean = self.redactor.scrub(&text);
                if clean != text {
                    call.input = serde_json::from_str(&clean).unwrap_or(Value::String(clean));
                }
                Some(ProviderEvent::ToolCall(call))
            }
            other => Some(other),
        }
    }

    fn fail(&mut self, error: ProviderError) {
        self.end();
        self.failure = Some(error.redact(&self.redactor));
    }

    /// The response body as events. A server that answers JSON instead of
    /// an event stream is read whole: an error inside is reported as such,
    /// a complete reply goes to the decoder at once.
    async fn events(&mut self, response: Response) -> SseEvents {
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if is_json {
            let body = read_body(response, self.idle, self.body_limit).await;
            if body.over {
                let error = ProviderError::Limit(format!(
                    "the reply, sent whole, is larger than {} (twice limits.max_reply_bytes)",
                    bytes_text(self.body_limit)
                ));
                return Box::pin(stream::iter([Err(error)]));
            }
            let body = body.text;
            let error = match serde_json::from_str::<Value>(&body) {
                Ok(value) => match json_error_message(&value) {
                    Some(message) => ProviderError::Stream(message),
                    None if self.decoder.whole(&value, &mut self.pending) => {
                        return Box::pin(stream::empty());
                    }
                    None => ProviderError::Protocol(format!(
                        "expected an event stream, got JSON: {}",
                        excerpt(&body)
                    )),
                },
                Err(_) => ProviderError::Protocol(format!(
                    "expected an event stream, got: {}",
                    excerpt(&body)
                )),
            };
            return Box::pin(stream::iter([Err(error)]));
        }
        Box::pin(
            line_limited(idle_limited(response, self.idle))
                .eventsource()
                .map(|item| item.map_err(sse_error)),
        )
    }
}

/// The body's chunks, ended by an error at the first line or event longer
/// than [`MAX_LINE_BYTES`] (the whole lines before it are passed on), so the
/// event parser never buffers more than that.
fn line_limited(
    chunks: impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send {
    let state = LineLimited {
        chunks: Box::pin(chunks),
        meter: LineMeter::default(),
        queue: VecDeque::new(),
        over: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Some((item, state));
            }
            if state.over {
                return None;
            }
            let chunk = match state.chunks.next().await? {
                Ok(chunk) => chunk,
                Err(error) => {
                    state.over = true;
                    return Some((Err(error), state));
                }
            };
            let Some(whole) = state.meter.measure(&chunk) else {
                return Some((Ok(chunk), state));
            };
            state.over = true;
            if whole > 0 {
                state.queue.push_back(Ok(chunk.slice(..whole)));
            }
            state.queue.push_back(Err(ProviderError::Limit(format!(
                "the model server sent a line or event longer than {} in its event stream",
                bytes_text(MAX_LINE_BYTES)
            ))));
        }
    })
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

struct LineLimited {
    chunks: Chunks,
    meter: LineMeter,
    queue: VecDeque<Result<Bytes, ProviderError>>,
    over: bool,
}

/// Counts the bytes of the current line and the current event (lines up
/// to an empty one) across chunks. Lines end at `\n`, `\r` or `\r\n`.
#[derive(Debug, Default)]
struct LineMeter {
    line: usize,
    event: usize,
    after_cr: bool,
}

impl LineMeter {
    /// `None` while every line and event stays within [`MAX_LINE_BYTES`];
    /// else how many bytes of `chunk` end with the last line end before
    /// the limit was passed.
    fn measure(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut whole = 0;
        for (index, &byte) in chunk.iter().enumerate() {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                    self.after_cr = byte == b'\r';
                    whole = index + 1;
                }
                _ => {
                    self.line += 1;
                    self.event += 1;
                    self.after_cr = false;
                    if self.line > MAX_LINE_BYTES || self.event > MAX_LINE_BYTES {
                        return Some(whole);
                    }
                }
            }
        }
        None
    }
}

/// The body's chunks, each wait bounded by the idle timeout.
fn idle_limited(
    response: Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send {
    let chunks = response.bytes_stream();
    stream::unfold(Some(Box::pin(chunks)), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(idle, chunks.next()).await {
            Err(_) => Some((
                Err(ProviderError::Timeout(format!(
                    "the model server sent nothing for {}",
                    seconds(idle)
                ))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
            Ok(Some(Err(error))) => Some((
                Err(ProviderError::Connect(format!(
                    "the connection broke mid-reply: {}",
                    error_chain(&error)
                ))),
                None,
            )),
        }
    })
}

fn sse_error(error: EventStreamError<ProviderError>) -> ProviderError {
    match error {
        EventStreamError::Transport(error) => error,
        EventStreamError::Utf8(error) => {
            ProviderError::Protocol(format!("the event stream is not UTF-8: {error}"))
        }
        EventStreamError::Parser(error) => {
            ProviderError::Protocol(format!("the event stream is malformed: {error}"))
        }
    }
}

/// Parses an event's `data` as JSON, or says what arrived instead.
pub fn event_json(event: &Event) -> Result<Value, ProviderError> {
    serde_json::from_str(&event.data).map_err(|_| {
        ProviderError::Protocol(format!(
            "the model server sent an event that is not JSON: {}",
            excerpt(&event.data)
        ))
    })
}

/// A JSON event that reports an error instead of carrying reply data.
pub fn stream_error(value: &Value) -> Option<ProviderError> {
    let is_error = value.as_array().is_some() || value.get("error").is_some_and(|e| !e.is_null());
    if !is_error {
        return None;
    }
    let message = json_error_message(value).unwrap_or_else(|| excerpt(&value.to_string()));
    Some(match json_error_status(value) {
        Some(status) => ProviderError::Status { status, message },
        None => ProviderError::Stream(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_every_shape() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#),
            "bad key (invalid_request_error)"
        );
        assert_eq!(error_message(r#"{"error":"nope"}"#), "nope");
        assert_eq!(
            error_message(r#"[{"error":{"code":400,"message":"m","status":"INVALID_ARGUMENT"}}]"#),
            "m (INVALID_ARGUMENT)"
        );
        assert_eq!(error_message("upstream\nbroke"), "upstream broke");
        assert_eq!(error_message(""), "(empty response body)");
        assert_eq!(error_message(&"x".repeat(2000)).chars().count(), 501);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(90);
        let soon = soon
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        headers.insert(RETRY_AFTER, soon.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn every_credential_a_request_carries_is_scrubbed() {
        let client = client_builder().build().unwrap();
        let request = client
            .post("http://127.0.0.1:9/v1?key=query-secret&model=m")
            .bearer_auth("sk-bearer-secret")
            .header("x-api-key", "anthropic-secret")
            .header("X-Custom-Token", "custom-token-value")
            .header("X-Title", "orchestration")
            .build()
            .unwrap();
        let redactor = Redactor::for_request(&request);
        let text = "bad key Bearer sk-bearer-secret; anthropic-secret, custom-token-value, \
                    query-secret, from orchestration";
        let scrubbed = redactor.scrub(text);
        for secret in [
            "sk-bearer-secret",
            "anthropic-secret",
            "custom-token-value",
            "query-secret",
        ] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert!(scrubbed.contains("from orchestration"), "{scrubbed}");
        let error = ProviderError::Status {
            status: 401,
            message: "Incorrect API key provided: sk-bearer-secret".into(),
        };
        assert_eq!(
            error.redact(&redactor).to_string(),
            "the model server answered 401: Incorrect API key provided: [redacted]"
        );
    }

    #[test]
    fn only_a_tail_that_may_start_a_secret_waits() {
        let redactor = Redactor {
            secrets: vec!["sk-secret".into()],
        };
        assert_eq!(redactor.unfinished("so far"), 6);
        assert_eq!(redactor.unfinished("key: sk-se"), 5);
        assert_eq!(redactor.unfinished("ends with s"), 10);
        assert_eq!(redactor.unfinished(""), 0);
    }

    #[test]
    fn error_status_only_when_plausible() {
        let gemini: Value = serde_json::from_str(r#"[{"error":{"code":429}}]"#).unwrap();
        assert_eq!(json_error_status(&gemini), Some(429));
        let odd: Value = serde_json::from_str(r#"{"error":{"code":"invalid_api_key"}}"#).unwrap();
        assert_eq!(json_error_status(&odd), None);
    }
}
