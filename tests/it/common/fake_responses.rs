//! A fake OpenAI Responses server for coding-agent tests (Codex): real
//! HTTP/1.1 with keep-alive on 127.0.0.1, answering every streaming
//! `POST …/responses` with the SSE events Codex accepts, from what the
//! request ends with:
//! - a tool's output (`function_call_output`) → text `tool said: OUTPUT`;
//! - user text with `run: CMD` → a `function_call` of the shell tool the
//!   request offers (Codex 0.171's `exec_command {"cmd"}`, or the older
//!   `shell`/`shell_command` shapes), its arguments streamed in pieces;
//! - user text with `hold:` → the first piece of `echo: TEXT`, then nothing
//!   until the test calls [`FakeResponses::release`] or the client hangs up;
//! - user text with `http500:` → HTTP 500;
//! - any other user text → `echo: TEXT` in three deltas.
//!
//! Every request is logged (method, path, headers, JSON body) for tests to
//! check what the agent sent: that a turn carried the earlier ones, say.
//! The reply rules follow `docs/dev/coding-agents/fake_model.py`.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_http::{self, read_request};

/// One request as the fake received it.
pub use super::fake_http::Request as Logged;

impl Logged {
    /// The request's `input` as JSON text, for "did it carry X" checks.
    pub fn input_text(&self) -> String {
        self.body["input"].to_string()
    }
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Logged>>,
    /// Wakes [`FakeResponses::wait_for`] on each request, and `hold:`
    /// replies on [`FakeResponses::release`].
    changed: Condvar,
    released: AtomicBool,
    holding: AtomicUsize,
    stopping: AtomicBool,
}

/// The running server; stops accepting when dropped.
pub struct FakeResponses {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FakeResponses {
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let port = fake_http::listen(shared.clone(), |s| s.stopping.load(Ordering::SeqCst), serve);
        Self { port, shared }
    }

    /// `http://127.0.0.1:PORT/v1`: what a spawn's `--base-url` names.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The `POST …/responses` requests, in order.
    pub fn responses(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/responses"))
            .collect()
    }

    /// Lets every `hold:` reply, now and later, finish.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
    }

    /// How many `hold:` replies are holding now.
    pub fn holding(&self) -> usize {
        self.shared.holding.load(Ordering::SeqCst)
    }

    /// Waits until `count` Responses requests have arrived (or `patience` passed).
    pub fn wait_for(&self, count: usize, patience: Duration) -> Vec<Logged> {
        let deadline = std::time::Instant::now() + patience;
        let mut log = self.shared.log.lock().unwrap();
        loop {
            let seen: Vec<Logged> = log
                .iter()
                .filter(|r| r.method == "POST" && r.path.ends_with("/responses"))
                .cloned()
                .collect();
            let now = std::time::Instant::now();
            if seen.len() >= count || now >= deadline {
                return seen;
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for FakeResponses {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.release();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut stream = stream;
    // Keep-alive: one request after another on the connection, as Codex sends them.
    while let Some(request) = read_request(&mut reader) {
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method = request.method.clone();
        let body = request.body.clone();
        {
            shared.log.lock().unwrap().push(request);
            shared.changed.notify_all();
        }
        let served = if method == "POST" && path.ends_with("/responses") {
            respond(&mut stream, &mut reader, &body, shared)
        } else if method == "GET" {
            write_json(&mut stream, 200, &json!({"object": "list", "data": []}))
        } else {
            write_json(&mut stream, 404, &json!({"error": {"message": path}}))
        };
        if served.is_err() {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// What the model "decides" from the request.
enum Answer {
    Text { text: String, hold: bool },
    Call { name: String, arguments: Value },
    Fail,
}

fn decide(body: &Value) -> Answer {
    let empty = Vec::new();
    let items = body["input"].as_array().unwrap_or(&empty);
    if let Some(last) = items.last()
        && matches!(
            last["type"].as_str(),
            Some("function_call_output" | "custom_tool_call_output")
        )
    {
        let output = match &last["output"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            other => other["content"]
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned),
        };
        return Answer::Text {
            text: format!("tool said: {}", output.trim()),
            hold: false,
        };
    }
    let text = last_user_text(items);
    if text.contains("http500:") {
        return Answer::Fail;
    }
    if let Some(command) = run_command(&text)
        && let Some((name, arguments)) = shell_call(body, &command)
    {
        return Answer::Call { name, arguments };
    }
    Answer::Text {
        text: format!("echo: {}", text.trim()),
        hold: text.contains("hold:"),
    }
}

fn last_user_text(items: &[Value]) -> String {
    let Some(user) = items
        .iter()
        .rev()
        .find(|i| i["type"].as_str().unwrap_or("message") == "message" && i["role"] == "user")
    else {
        return String::new();
    };
    match &user["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p["type"].as_str(),
                    Some("input_text" | "text" | "output_text")
                )
            })
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The command after the last `run:`, to the end of its line.
fn run_command(text: &str) -> Option<String> {
    let at = text.rfind("run:")?;
    let command = text[at + 4..].trim().lines().next()?.trim();
    (!command.is_empty()).then(|| command.to_owned())
}

/// A call of the shell tool the request offers, shaped as its parameters ask.
fn shell_call(body: &Value, command: &str) -> Option<(String, Value)> {
    let tools = body["tools"].as_array()?;
    for wanted in ["exec_command", "shell_command", "shell", "local_shell"] {
        let Some(tool) = tools.iter().find(|t| {
            t["name"]
                .as_str()
                .or_else(|| t["function"]["name"].as_str())
                == Some(wanted)
        }) else {
            continue;
        };
        let properties = &tool["parameters"]["properties"];
        let arguments = if properties.get("cmd").is_some() {
            json!({"cmd": command})
        } else if properties["command"]["type"] == "array" {
            json!({"command": ["bash", "-lc", command]})
        } else {
            json!({"command": command})
        };
        return Some((wanted.to_owned(), arguments));
    }
    None
}

fn respond(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    body: &Value,
    shared: &Shared,
) -> std::io::Result<()> {
    let answer = decide(body);
    if let Answer::Fail = answer {
        return write_json(
            stream,
            500,
            &json!({"error": {"type": "server_error", "message": "fake internal error"}}),
        );
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let model = body["model"].clone();
    let base = json!({"id": id, "object": "response", "created_at": 0, "model": model,
        "status": "in_progress", "output": []});
    event(
        stream,
        &json!({"type": "response.created", "response": base}),
    )?;
    let (done, written) = match answer {
        Answer::Text { text, hold } => stream_text(stream, reader, &text, hold, shared)?,
        Answer::Call { name, arguments } => stream_call(stream, &name, &arguments)?,
        Answer::Fail => unreachable!("answered above"),
    };
    event(
        stream,
        &json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
    )?;
    let input_tokens = body["input"].to_string().len() as u64 / 4;
    let output_tokens = (written as u64 / 4).max(1);
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let mut completed = base;
    completed["status"] = json!("completed");
    completed["output"] = json!([done]);
    completed["usage"] = usage;
    event(
        stream,
        &json!({"type": "response.completed", "response": completed}),
    )?;
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

/// A text reply in three deltas (or, held, one delta and the rest after
/// the test releases it); returns the done item and the text's length.
fn stream_text(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    text: &str,
    hold: bool,
    shared: &Shared,
) -> std::io::Result<(Value, usize)> {
    let item_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let item = json!({"type": "message", "id": item_id, "role": "assistant",
        "status": "in_progress", "content": []});
    event(
        stream,
        &json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
    )?;
    event(
        stream,
        &json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    )?;
    for (i, piece) in pieces(text).iter().enumerate() {
        event(
            stream,
            &json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                "content_index": 0, "delta": piece}),
        )?;
        if hold && i == 0 {
            hold_until_released(stream, reader, shared)?;
        }
    }
    event(
        stream,
        &json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
            "content_index": 0, "text": text}),
    )?;
    let mut done = item;
    done["status"] = json!("completed");
    done["content"] = json!([{"type": "output_text", "text": text, "annotations": []}]);
    Ok((done, text.len()))
}

/// Holds a reply open until the test releases it; an error once the
/// client hung up (an interrupted or killed agent does).
fn hold_until_released(
    stream: &TcpStream,
    reader: &mut BufReader<TcpStream>,
    shared: &Shared,
) -> std::io::Result<()> {
    shared.holding.fetch_add(1, Ordering::SeqCst);
    let result = (|| {
        // Poll the socket now and then: a client that hangs up ends the hold.
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut byte = [0u8; 1];
        while !shared.released.load(Ordering::SeqCst) {
            match reader.get_mut().read(&mut byte) {
                Ok(0) => return Err(std::io::ErrorKind::ConnectionAborted.into()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        stream.set_read_timeout(None)
    })();
    shared.holding.fetch_sub(1, Ordering::SeqCst);
    result
}

fn stream_call(
    stream: &mut TcpStream,
    name: &str,
    arguments: &Value,
) -> std::io::Result<(Value, usize)> {
    let item_id = format!("fc_{}", uuid::Uuid::new_v4().simple());
    let call_id = format!("call_{}", uuid::Uuid::new_v4().simple());
    let text = arguments.to_string();
    let item = json!({"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
        "arguments": "", "status": "in_progress"});
    event(
        stream,
        &json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
    )?;
    for piece in pieces(&text) {
        event(
            stream,
            &json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                "output_index": 0, "delta": piece}),
        )?;
    }
    event(
        stream,
        &json!({"type": "response.function_call_arguments.done", "item_id": item_id,
            "output_index": 0, "arguments": text}),
    )?;
    let mut done = item;
    done["arguments"] = json!(text);
    done["status"] = json!("completed");
    Ok((done, text.len()))
}

/// Three pieces, split on character boundaries.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len() / 3 + 1;
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn event(stream: &mut TcpStream, value: &Value) -> std::io::Result<()> {
    let name = value["type"].as_str().unwrap_or("message");
    let block = format!("event: {name}\ndata: {value}\n\n");
    write!(stream, "{:x}\r\n{block}\r\n", block.len())?;
    stream.flush()
}

fn write_json(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}
