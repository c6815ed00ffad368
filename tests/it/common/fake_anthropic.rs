//! A fake Anthropic Messages server for coding agents (Claude Code): real
//! HTTP/1.1 with keep-alive on 127.0.0.1, streaming SSE, that answers from
//! the conversation it is sent rather than from a script, since the agent
//! decides how many calls a turn takes. Rules (as docs/dev/coding-agents/
//! fake_model.py): the last user item a tool result → `tool said[ (is_error)]:
//! RESULT`; a text with `run: CMD` → a `Bash` tool call streamed with
//! `input_json_delta`; `slow:` → 40 text deltas a quarter second apart;
//! `hang:` → one text delta, then nothing until the client hangs up;
//! anything else → `echo: TEXT`. Every `/v1/messages` body is logged.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_http::{self, Request, read_request};

/// The running server; it stops with the test process.
pub struct FakeAnthropic {
    port: u16,
    log: Arc<Mutex<Vec<Value>>>,
}

impl FakeAnthropic {
    pub fn start() -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        // It never stops: the test process ends it.
        let port = fake_http::listen(log.clone(), |_| false, serve);
        Self { port, log }
    }

    /// The base URL, as `ANTHROPIC_BASE_URL` takes it (no `/v1`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every `/v1/messages` request body so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    /// The texts of every message the last request carried, in order.
    pub fn last_conversation(&self) -> Vec<String> {
        let requests = self.requests();
        let Some(last) = requests.last() else {
            return Vec::new();
        };
        last["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|message| text_of(&message["content"]))
            .collect()
    }
}

/// One connection: requests until the client closes it.
fn serve(stream: TcpStream, log: &Mutex<Vec<Value>>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some(Request {
        method, path, body, ..
    }) = read_request(&mut reader)
    {
        let outcome = match (method.as_str(), path.split('?').next().unwrap_or("")) {
            ("POST", p) if p.ends_with("/messages") => {
                log.lock().unwrap().push(body.clone());
                messages(&mut writer, &body)
            }
            ("POST", p) if p.ends_with("/count_tokens") => {
                plain(&mut writer, "200 OK", &json!({"input_tokens": 100}))
            }
            ("HEAD", _) => writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            _ => plain(&mut writer, "200 OK", &json!({"data": []})),
        };
        if outcome.is_err() {
            return;
        }
    }
}

fn plain(writer: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        writer,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What the fake answers.
enum Answer {
    Text {
        text: String,
        slow: bool,
    },
    /// The first words, then silence until the client closes the connection.
    Hang(String),
    Bash(String),
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| match block["type"].as_str() {
                Some("text") => block["text"].as_str().map(str::to_owned),
                Some("tool_result") => Some(text_of(&block["content"])),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Decides from the last user message (Claude Code may put system
/// messages after it, and `<system-reminder>` blocks before its text).
fn decide(body: &Value) -> Answer {
    let last = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|message| message["role"] == "user")
        .cloned()
        .unwrap_or(Value::Null);
    let content = &last["content"];
    let blocks: Vec<&Value> = content.as_array().into_iter().flatten().collect();
    let said = |block: &&Value| {
        block["type"] == "text"
            && !block["text"]
                .as_str()
                .unwrap_or("")
                .trim_start()
                .starts_with('<')
            && !block["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("[Request interrupted")
    };
    let last_result = blocks.iter().rposition(|b| b["type"] == "tool_result");
    let last_text = blocks.iter().rposition(said);
    if let Some(at) = last_result
        && last_text.is_none_or(|text| text < at)
    {
        let result = blocks[at];
        let flag = if result["is_error"] == true {
            " (is_error)"
        } else {
            ""
        };
        return Answer::Text {
            text: format!("tool said{flag}: {}", text_of(&result["content"]).trim()),
            slow: false,
        };
    }
    let text = match content {
        Value::String(text) => text.clone(),
        _ => last_text
            .map(|at| blocks[at]["text"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default(),
    };
    if let Some(command) = text.rsplit_once("run:").map(|(_, c)| c.trim().to_owned())
        && !command.is_empty()
        && body["tools"].is_array()
    {
        return Answer::Bash(command);
    }
    if text.contains("hang:") {
        return Answer::Hang(format!("echo: {}", text.trim()));
    }
    Answer::Text {
        slow: text.contains("slow:"),
        text: format!("echo: {}", text.trim()),
    }
}

fn event(writer: &mut TcpStream, name: &str, data: &Value) -> std::io::Result<()> {
    let chunk = format!("event: {name}\ndata: {data}\n\n");
    write!(writer, "{:x}\r\n{chunk}\r\n", chunk.len())?;
    writer.flush()
}

/// The start of a text content block at index 0.
fn text_block_start(writer: &mut TcpStream) -> std::io::Result<()> {
    event(
        writer,
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
    )
}

/// A streamed `/v1/messages` answer.
fn messages(writer: &mut TcpStream, body: &Value) -> std::io::Result<()> {
    let answer = decide(body);
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let input_tokens = body["messages"].to_string().len() / 4;
    writer.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    )?;
    event(
        writer,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": format!("msg_{}", uuid::Uuid::new_v4().simple()), "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )?;
    let stop = match &answer {
        Answer::Text { text, slow } => {
            text_block_start(writer)?;
            let pieces = if *slow { 40 } else { 3 };
            for piece in split(text, pieces) {
                event(
                    writer,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": piece}}),
                )?;
                if *slow {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            "end_turn"
        }
        Answer::Hang(text) => {
            text_block_start(writer)?;
            let first = split(text, 3).into_iter().next().unwrap_or_default();
            event(
                writer,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": first}}),
            )?;
            // Blocks until the client sends more or hangs up; either way the
            // answer is abandoned.
            let _ = (&*writer).read(&mut [0u8; 1]);
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        Answer::Bash(command) => {
            let id = format!("toolu_{}", uuid::Uuid::new_v4().simple());
            event(
                writer,
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "tool_use", "id": id, "name": "Bash", "input": {}}}),
            )?;
            let input = json!({"command": command, "description": "run it"}).to_string();
            for piece in split(&input, 3) {
                event(
                    writer,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}),
                )?;
            }
            "tool_use"
        }
    };
    event(
        writer,
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    )?;
    event(
        writer,
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": 5}}),
    )?;
    event(writer, "message_stop", &json!({"type": "message_stop"}))?;
    writer.write_all(b"0\r\n\r\n")?;
    writer.flush()
}

/// `text` in about `pieces` parts, cut at character boundaries.
fn split(text: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = (chars.len() / pieces).max(1);
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}
