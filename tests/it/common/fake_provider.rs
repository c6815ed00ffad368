//! A fake model server for tests: real HTTP/1.1 on 127.0.0.1, one scripted
//! reply per request, in order. It records every request it receives (method,
//! path, headers, JSON body) so tests can assert on what the daemon *sent*,
//! and it can be slow, fail, hang, cut a stream short, send garbage, or hold
//! a stream open until the test releases it.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fake_http::{self, Request};

/// One request as the fake server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// When the whole request had arrived.
    pub arrived: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        fake_http::header(&self.headers, name)
    }
}

/// One step of writing a reply body.
pub enum Step {
    /// Bytes sent as one HTTP chunk.
    Send(String),
    Sleep(Duration),
    /// Blocks until the test calls [`Gate::open`].
    Wait(Gate),
    /// Blocks until the client closes the connection, and counts it.
    AwaitClose,
    /// Sends these bytes as a chunk again and again until the client
    /// closes the connection (counted like `AwaitClose`), or 256 MiB went out.
    Forever(String),
}

/// A one-shot signal from the test to the fake server.
#[derive(Clone)]
pub struct Gate(Arc<(Mutex<Option<Instant>>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Self {
        Self(Arc::new((Mutex::new(None), std::sync::Condvar::new())))
    }
    pub fn open(&self) {
        let (opened, signal) = &*self.0;
        opened.lock().unwrap().get_or_insert_with(Instant::now);
        signal.notify_all();
    }
    /// When the test opened it, if it did.
    pub fn opened_at(&self) -> Option<Instant> {
        *self.0.0.lock().unwrap()
    }
    fn wait(&self) {
        let (opened, signal) = &*self.0;
        let mut opened = opened.lock().unwrap();
        while opened.is_none() {
            let (guard, _) = signal
                .wait_timeout(opened, Duration::from_secs(30))
                .unwrap();
            opened = guard;
        }
    }
}

/// A scripted reply.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub steps: Vec<Step>,
    /// End the body properly (a final empty chunk); false cuts it short.
    pub finish: bool,
    /// Read the request, then never answer.
    pub hang: bool,
}

impl Reply {
    pub fn new(status: u16, content_type: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            steps: Vec::new(),
            finish: true,
            hang: false,
        }
    }

    /// An event stream of these raw SSE blocks, one chunk each.
    pub fn sse<S: AsRef<str>>(blocks: &[S]) -> Self {
        let mut reply = Self::new(200, "text/event-stream");
        reply.steps = blocks
            .iter()
            .map(|b| Step::Send(b.as_ref().to_owned()))
            .collect();
        reply
    }

    pub fn json(status: u16, body: &Value) -> Self {
        let mut reply = Self::new(status, "application/json");
        reply.steps = vec![Step::Send(body.to_string())];
        reply
    }

    pub fn text(status: u16, body: &str) -> Self {
        let mut reply = Self::new(status, "text/plain");
        reply.steps = vec![Step::Send(body.to_owned())];
        reply
    }

    pub fn hang() -> Self {
        let mut reply = Self::new(200, "text/event-stream");
        reply.hang = true;
        reply
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Cuts the connection after the last step instead of ending the body.
    pub fn cut(mut self) -> Self {
        self.finish = false;
        self
    }

    /// Pauses this long before every step.
    pub fn slow(mut self, pause: Duration) -> Self {
        let steps = std::mem::take(&mut self.steps);
        for step in steps {
            self.steps.push(Step::Sleep(pause));
            self.steps.push(step);
        }
        self
    }

    /// Inserts a step after the first `after` steps.
    pub fn insert(mut self, after: usize, step: Step) -> Self {
        self.steps.insert(after.min(self.steps.len()), step);
        self
    }
}

/// OpenAI `chat.completion.chunk` events for a reply made of `pieces`, with a
/// finish reason on the last content chunk, a usage chunk, and `[DONE]`.
pub fn openai_chunks(pieces: &[&str]) -> Vec<String> {
    let mut blocks = vec![data(&json!({
        "id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    }))];
    for (i, piece) in pieces.iter().enumerate() {
        let finish = if i + 1 == pieces.len() {
            json!("stop")
        } else {
            Value::Null
        };
        blocks.push(data(&json!({
            "id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}]
        })));
    }
    blocks.push(data(&json!({
        "id": "c1", "object": "chat.completion.chunk", "model": "fake-model", "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": pieces.len(), "total_tokens": 11 + pieces.len()}
    })));
    blocks.push("data: [DONE]\n\n".to_owned());
    blocks
}

/// Anthropic Messages events for a reply made of `pieces`.
pub fn anthropic_events(pieces: &[&str]) -> Vec<String> {
    let mut blocks = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "fake-claude",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 21, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    for piece in pieces {
        blocks.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    blocks.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    blocks.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": pieces.len()}}),
    ));
    blocks.push(event("message_stop", &json!({"type": "message_stop"})));
    blocks
}

pub fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

pub fn event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    closed: AtomicUsize,
    stopping: AtomicBool,
}

/// The running fake server. Stops when dropped.
pub struct FakeProvider {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FakeProvider {
    pub fn start() -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            closed: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let port = fake_http::listen(shared.clone(), |s| s.stopping.load(Ordering::SeqCst), serve);
        Self { port, shared }
    }

    /// `http://127.0.0.1:PORT` with `suffix` appended (e.g. `/v1`).
    pub fn url(&self, suffix: &str) -> String {
        format!("http://127.0.0.1:{}{suffix}", self.port)
    }

    /// Queues the reply to the next request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.shared.script.lock().unwrap().push_back(reply);
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the fake provider got no request")
    }

    /// How many `AwaitClose` and `Forever` steps saw the client hang up.
    pub fn closed_by_client(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let Some(recorded) = read_request(&mut reader) else {
        return;
    };
    shared.requests.lock().unwrap().push(recorded);
    let reply = shared.script.lock().unwrap().pop_front();
    let reply =
        reply.unwrap_or_else(|| Reply::text(500, "the fake provider has no scripted reply left"));
    let mut stream = stream;
    if reply.hang {
        // Hold the connection open, saying nothing, until the client leaves.
        let mut sink = [0u8; 64];
        while !shared.stopping.load(Ordering::SeqCst) {
            match reader.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        return;
    }
    let mut head = format!("HTTP/1.1 {} Fake\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for step in reply.steps {
        let sent = match step {
            Step::Send(text) if text.is_empty() => Ok(()),
            Step::Send(text) => stream
                .write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())
                .and_then(|()| stream.flush()),
            Step::Sleep(pause) => {
                std::thread::sleep(pause);
                Ok(())
            }
            Step::Wait(gate) => {
                gate.wait();
                Ok(())
            }
            Step::Forever(text) => {
                let chunk = format!("{:x}\r\n{text}\r\n", text.len());
                let mut sent = 0usize;
                while sent < 256 << 20 && !shared.stopping.load(Ordering::SeqCst) {
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        shared.closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    sent += chunk.len();
                }
                return;
            }
            Step::AwaitClose => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut sink = [0u8; 64];
                let closed = match reader.read(&mut sink) {
                    Ok(n) => n == 0,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                };
                if closed {
                    shared.closed.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
    if reply.finish {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The next request, stamped with when it had all arrived.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let Request {
        method,
        path,
        headers,
        body,
    } = super::fake_http::read_request(reader)?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
        arrived: Instant::now(),
    })
}

/// OpenAI chunks for a reply made of `pieces` reporting `usage` (any shape:
/// `prompt_tokens_details`, `completion_tokens_details`…) in the final
/// chunk only, as OpenAI does with `stream_options.include_usage`; `None`
/// reports no usage at all. `model` is the model the reply names.
pub fn openai_chunks_with_usage(model: &str, pieces: &[&str], usage: Option<Value>) -> Vec<String> {
    let mut blocks: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let finish = if i + 1 == pieces.len() {
                json!("stop")
            } else {
                Value::Null
            };
            data(&json!({
                "id": "c1", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}]
            }))
        })
        .collect();
    if let Some(usage) = usage {
        blocks.push(data(&json!({
            "id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [],
            "usage": usage
        })));
    }
    blocks.push("data: [DONE]\n\n".to_owned());
    blocks
}

/// Anthropic events for a reply made of `pieces`, from model `model`:
/// `start` is `message_start`'s usage (input and cache counts), `end` the
/// final `message_delta`'s (output, cumulative).
pub fn anthropic_events_with_usage(
    model: &str,
    pieces: &[&str],
    start: Value,
    end: Value,
) -> Vec<String> {
    let mut blocks = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "usage": start}}),
    )];
    for piece in pieces {
        blocks.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    blocks.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": end}),
    ));
    blocks.push(event("message_stop", &json!({"type": "message_stop"})));
    blocks
}
