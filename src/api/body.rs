//! Response bodies (JSON, errors, the NDJSON stream) and reading request
//! bodies within the size limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, allow_header};
use crate::engine::{Events, Exchange, ExchangeEvent};
use crate::model::{Event, EventLine};
use crate::wire::{EventsQuery, StreamLine};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Largest request head (request target and headers) accepted; 431 past it.
pub const MAX_HEAD: usize = 64 * 1024;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed_unsync());
    *response.status_mut() = status;
    response
}

pub fn error(error: &ApiError) -> Response<Body> {
    let mut response = json(error.status(), &error.body());
    if let ApiError::MethodNotAllowed { allowed, .. } = error
        && let Ok(value) = HeaderValue::from_str(&allow_header(allowed))
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    // The rest of a body we gave up on would be read as the next request.
    if matches!(
        error,
        ApiError::BodyTimeout(_)
            | ApiError::TooLarge { .. }
            | ApiError::BodyRead(_)
            | ApiError::HeadTooLarge { .. }
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes, all of which must
/// arrive within `timeout`. The limit is enforced while reading: an honest
/// Content-Length over it is refused before any byte is read, and a lying
/// one cannot make us buffer more than the limit. The timeout bounds the
/// whole body, so a client trickling bytes cannot hold a connection.
pub async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    timeout: Duration,
) -> Result<T, ApiError> {
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge { limit: MAX_BODY });
        }
        Err(error) => return Err(ApiError::BodyRead(error.to_string())),
    };
    parse_json(&bytes)
}

/// Parses JSON, naming the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidBody(
            "the body is empty; a JSON object is expected".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::InvalidBody(inner.to_string())
        } else {
            ApiError::InvalidBody(format!("field `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::InvalidBody(error.to_string()))?;
    Ok(value)
}

/// A streamed reply: each exchange event becomes one NDJSON line as soon as
/// it happens. Dropping the body (the client went away) drops the exchange,
/// which cancels it.
pub fn ndjson(exchange: Exchange) -> Response<Body> {
    use futures_util::StreamExt;
    ndjson_lines(exchange_lines(exchange).map(|lines| encode_lines(&lines)))
}

/// An exchange's events as stream lines, as they happen, ending after the
/// reply or the failure.
pub fn exchange_lines(exchange: Exchange) -> impl Stream<Item = Vec<StreamLine>> + Send {
    futures_util::stream::unfold(Some(exchange), |exchange| async move {
        let mut exchange = exchange?;
        let (lines, finished) = stream_lines(exchange.next_event().await);
        Some((lines, (!finished).then_some(exchange)))
    })
}

/// The stream lines one exchange event becomes, and whether it was the last.
fn stream_lines(event: ExchangeEvent) -> (Vec<StreamLine>, bool) {
    match event {
        ExchangeEvent::Queued(ahead) => (vec![StreamLine::Queued { ahead }], false),
        ExchangeEvent::Delta(content) => (vec![StreamLine::Delta { content }], false),
        ExchangeEvent::ToolCall(call) => (vec![StreamLine::ToolCall { call }], false),
        ExchangeEvent::ToolResult(result) => (vec![StreamLine::ToolResult { result }], false),
        ExchangeEvent::Approval(approval) => (vec![StreamLine::Approval { approval }], false),
        ExchangeEvent::Reply(message) => (
            vec![StreamLine::Message { message }, StreamLine::Done],
            true,
        ),
        ExchangeEvent::Failed(error) => (vec![error_line(&ApiError::from(error))], true),
    }
}

/// An error as the last line of a stream.
pub fn error_line(error: &ApiError) -> StreamLine {
    StreamLine::Error {
        status: error.status().as_u16(),
        code: error.code(),
        detail: error.to_string(),
    }
}

/// Any stream of NDJSON lines as a response body.
pub fn ndjson_lines<S>(lines: S) -> Response<Body>
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    streamed(lines, "application/x-ndjson")
}

/// A body that sends each chunk as soon as it is ready. Dropping the body
/// (the client went away) drops the stream, and so cancels what feeds it.
fn streamed<S>(chunks: S, content_type: &'static str) -> Response<Body>
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    use futures_util::StreamExt;
    let frames = chunks.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn encode_lines<T: Serialize>(lines: &[T]) -> Bytes {
    let mut out = Vec::new();
    for line in lines {
        if serde_json::to_writer(&mut out, line).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// How `GET /events` frames its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsFormat {
    /// `application/x-ndjson`: one JSON object a line.
    Ndjson,
    /// `text/event-stream`: `id:` and `data:` lines, a blank line after each event.
    Sse,
}

/// The event stream: each event the reader wants, framed as it asks, as
/// soon as it happens. A reader that fell behind gets a `lagged` line in
/// place of what it missed. When the daemon stops, the events already sent
/// follow, then the daemon's `shutdown`, and the body ends, so an open
/// stream never holds the daemon's exit up.
pub fn events(bus: Events, stream: EventStream, stop: CancellationToken) -> Response<Body> {
    let EventStream {
        query,
        format,
        slot,
        keepalive,
    } = stream;
    let state = EventsState {
        receiver: bus.subscribe(),
        bus,
        query,
        format,
        stop,
        stopping: false,
        done: false,
        _slot: slot,
        keepalive,
        next_keepalive: tokio::time::Instant::now() + keepalive,
    };
    let lines = futures_util::stream::unfold(state, |mut state| async move {
        let bytes = state.next().await?;
        Some((bytes, state))
    });
    let content_type = match format {
        EventsFormat::Ndjson => "application/x-ndjson",
        EventsFormat::Sse => "text/event-stream",
    };
    let mut response = streamed(lines, content_type);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What one `GET /events` stream is: which events, framed how, holding
/// its place under the cap of open streams until it ends.
pub struct EventStream {
    pub query: EventsQuery,
    pub format: EventsFormat,
    pub slot: OwnedSemaphorePermit,
    /// Silence after which a keep-alive line is sent.
    pub keepalive: Duration,
}

/// The cap on open event streams. A reload that changes the cap starts a
/// new semaphore; streams already open keep their place in the old one.
#[derive(Debug)]
pub struct StreamSlots(std::sync::Mutex<(usize, Arc<Semaphore>)>);

impl Default for StreamSlots {
    fn default() -> Self {
        Self(std::sync::Mutex::new((0, Arc::new(Semaphore::new(0)))))
    }
}

impl StreamSlots {
    /// A place for one more stream under `limit`, if there is room.
    pub fn take(&self, limit: usize) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = crate::engine::lock(&self.0);
            if slots.0 != limit {
                *slots = (limit, Arc::new(Semaphore::new(limit)));
            }
            slots.1.clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

struct EventsState {
    receiver: broadcast::Receiver<Arc<EventLine>>,
    bus: Events,
    query: EventsQuery,
    format: EventsFormat,
    stop: CancellationToken,
    /// The daemon is stopping: what is queued is sent, then the body ends.
    stopping: bool,
    /// The daemon's `shutdown` was sent: the body ends.
    done: bool,
    /// Its place under the cap of open streams, given back when it ends.
    _slot: OwnedSemaphorePermit,
    keepalive: Duration,
    /// When a keep-alive is due if nothing is sent before.
    next_keepalive: tokio::time::Instant,
}

impl EventsState {
    /// The next framed line, or `None` at the end of the stream; a
    /// keep-alive after [`Self::keepalive`] of silence, whose write fails
    /// once the reader has gone, which ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        let next = self.next_line().await;
        self.next_keepalive = tokio::time::Instant::now() + self.keepalive;
        next
    }

    async fn next_line(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let line = if self.stopping {
                match self.receiver.try_recv() {
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        return Some(self.lagged(missed));
                    }
                    Err(_) => return None,
                    Ok(line) => line,
                }
            } else {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => {
                        // When this returns, the daemon's `shutdown` is queued
                        // for this reader too: the end is in sight.
                        self.bus.stopping();
                        self.stopping = true;
                        continue;
                    }
                    received = self.receiver.recv() => match received {
                        Ok(line) => line,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            return Some(self.lagged(missed));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    () = tokio::time::sleep_until(self.next_keepalive) => {
                        return Some(self.keepalive_line());
                    }
                }
            };
            if line.agent.is_none() && line.event == (Event::Shutdown { restart: false }) {
                // The daemon's last word: nothing after it is for this reader.
                self.done = true;
                return Some(self.frame(&line));
            }
            if self.query.wants(line.agent.as_ref()) {
                return Some(self.frame(&line));
            }
        }
    }

    /// A line every reader skips: an SSE comment, or an empty NDJSON line.
    fn keepalive_line(&self) -> Bytes {
        match self.format {
            EventsFormat::Ndjson => Bytes::from_static(b"\n"),
            EventsFormat::Sse => Bytes::from_static(b":\n\n"),
        }
    }

    fn lagged(&self, missed: u64) -> Bytes {
        self.frame(&EventLine {
            id: None,
            ts: self.bus.clock().now_rfc3339(),
            agent: None,
            event: Event::Lagged { missed },
        })
    }

    fn frame(&self, line: &EventLine) -> Bytes {
        let Ok(json) = serde_json::to_string(line) else {
            return Bytes::new();
        };
        let framed = match (self.format, line.id) {
            (EventsFormat::Ndjson, _) => format!("{json}\n"),
            (EventsFormat::Sse, Some(id)) => format!("id: {id}\ndata: {json}\n\n"),
            (EventsFormat::Sse, None) => format!("data: {json}\n\n"),
        };
        Bytes::from(framed)
    }
}
