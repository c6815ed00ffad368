//! `anthropic`: the Anthropic Messages API (`POST {base}/v1/messages`), streamed.
//!
//! The instructions go in the top-level `system` field, `max_tokens` is
//! always sent (the API requires it: the request's bound when a budget set
//! one, else config `providers.anthropic_max_tokens`),
//! and the named events `message_start`, `content_block_delta`,
//! `message_delta`, `message_stop`, `ping` and `error` are read. The reply is
//! complete at `message_stop`. A server that ignores `stream: true` and
//! answers one `message` object is read whole.
//!
//! Tools go out as `tools: [{name, description, input_schema}]`; a tool
//! call arrives as a `tool_use` content block (`content_block_start` with
//! its id and name, `input_json_delta` pieces of its arguments,
//! `content_block_stop`) and is passed on whole at its block's end. A
//! turn's earlier tool rounds are sent back as an assistant message of
//! text and `tool_use` blocks, then a user message of `tool_result` blocks.

use std::collections::{BTreeMap, VecDeque};

use eventsource_stream::Event;
use reqwest::Request;
use serde_json::{Value, json};

use super::endpoint::Endpoint;
use super::http::{Decoder, Flow, Upstream, event_json, push_bounded, sse_reply, stream_error};
use super::{
    Auth, ChatRequest, EventStream, Provider, ProviderError, ProviderEvent, Role, ToolRound, Turn,
};
use crate::model::{ToolCall, ToolDef, Usage};

/// The most tool calls one reply may make; more are not read.
const MAX_CALLS: usize = 64;

/// The API version this decoder is written against.
pub const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    endpoint: Endpoint,
    upstream: Upstream,
}

impl Anthropic {
    pub fn new(endpoint: Endpoint, upstream: Upstream) -> Self {
        Self { endpoint, upstream }
    }

    fn request(&self, chat: &ChatRequest) -> Result<Request, ProviderError> {
        let mut messages: Vec<Value> = alternating(&chat.turns)
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        for round in &chat.rounds {
            push_round(&mut messages, round);
        }
        let mut body = json!({
            "model": chat.model.as_ref().or(self.endpoint.model.as_ref()),
            "max_tokens": chat
                .max_output_tokens
                .unwrap_or(self.upstream.settings.anthropic_max_tokens),
            "messages": messages,
            "stream": true,
        });
        if let Some(instructions) = &chat.instructions {
            body["system"] = Value::from(instructions.as_str());
        }
        if !chat.tools.is_empty() {
            body["tools"] = Value::Array(chat.tools.iter().map(tool).collect());
        }
        let builder = self
            .upstream
            .client()?
            .post(format!("{}/v1/messages", self.endpoint.base_url))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("anthropic-version", API_VERSION)
            .json(&body);
        super::finish_request(builder, &self.endpoint, Auth::XApiKey)
    }
}

impl Provider for Anthropic {
    fn stream(&self, chat: ChatRequest) -> EventStream {
        let decoder = EventDecoder {
            thinking_limit: self.upstream.max_reply_bytes,
            ..EventDecoder::default()
        };
        sse_reply(&self.upstream, self.request(&chat), decoder)
    }
}

/// A tool as the Messages API declares one.
fn tool(def: &ToolDef) -> Value {
    json!({
        "name": def.wire_name(),
        "description": def.description,
        "input_schema": super::schema_object(&def.input_schema),
    })
}

/// A tool round as messages: the assistant's text and `tool_use` blocks,
/// then one user message with a `tool_result` block a call.
fn push_round(messages: &mut Vec<Value>, round: &ToolRound) {
    let mut blocks = Vec::with_capacity(round.calls.len() + 1);
    if !round.text.trim().is_empty() {
        blocks.push(json!({"type": "text", "text": round.text}));
    }
    for call in &round.calls {
        // The API takes only an object; arguments that were not JSON were
        // never run, and their result says so.
        let input = if call.input.is_object() {
            call.input.clone()
        } else {
            json!({})
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    messages.push(json!({"role": "assistant", "content": blocks}));
    let results: Vec<Value> = round
        .results
        .iter()
        .map(|result| {
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": result.id,
                "content": result.output,
            });
            if result.is_error {
                block["is_error"] = Value::Bool(true);
            }
            block
        })
        .collect();
    messages.push(json!({"role": "user", "content": results}));
}

/// The conversation as the Messages API accepts it: no empty turns, and
/// turns of the same role merged (a failed reply leaves two user turns in a
/// row, which the API would refuse).
fn alternating(turns: &[Turn]) -> Vec<(&'static str, String)> {
    let mut merged: Vec<(&'static str, String)> = Vec::new();
    for turn in turns.iter().filter(|t| !t.content.trim().is_empty()) {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match merged.last_mut() {
            Some((last, text)) if *last == role => {
                text.push_str("\n\n");
                text.push_str(&turn.content);
            }
            _ => merged.push((role, turn.content.to_string())),
        }
    }
    merged
}

#[derive(Default)]
struct EventDecoder {
    stopped: bool,
    usage: Usage,
    /// The latest `input_tokens` figure: input that was not cached.
    uncached_input: u64,
    thinking: String,
    /// The most thinking text kept (`limits.max_reply_bytes`), and the most
    /// argument text kept for one tool call.
    thinking_limit: usize,
    /// `tool_use` blocks being assembled, by their block index.
    calls: BTreeMap<u64, PartialCall>,
}

/// A `tool_use` block as its deltas have built it so far.
struct PartialCall {
    id: String,
    name: String,
    /// The input the block started with (a whole reply's; `{}` when streamed).
    start: Value,
    json: String,
}

impl Decoder for EventDecoder {
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<Flow, ProviderError> {
        if event.data.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        let data = event_json(event)?;
        if let Some(error) = stream_error(&data) {
            return Err(error);
        }
        // The `type` inside the data is authoritative; the event name is a copy.
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        match kind {
            "message_start" => self.message_start(&data, out),
            "content_block_start" => {
                let block = data.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("tool_use") {
                    self.tool_start(index(&data), block);
                } else {
                    self.text(block.and_then(|b| b.get("text")), out);
                }
            }
            "content_block_delta" => self.content_delta(index(&data), data.get("delta"), out),
            "content_block_stop" => {
                if let Some(call) = self.calls.remove(&index(&data)) {
                    out.push_back(call.finish());
                }
            }
            "message_delta" => self.message_delta(&data, out),
            "message_stop" => {
                self.stopped = true;
                return Ok(Flow::Stop);
            }
            // `ping`, `content_block_stop`, and event types added later.
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn complete(&self) -> bool {
        self.stopped
    }

    /// A `message` object: its text and thinking blocks, stop reason, usage.
    fn whole(&mut self, reply: &Value, out: &mut VecDeque<ProviderEvent>) -> bool {
        if reply.get("type").and_then(Value::as_str) != Some("message") {
            return false;
        }
        let Some(blocks) = reply.get("content").and_then(Value::as_array) else {
            return false;
        };
        if let Some(model) = reply.get("model").and_then(Value::as_str) {
            out.push_back(ProviderEvent::fact("model", model));
        }
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("thinking") => {
                    if let Some(text) = block.get("thinking").and_then(Value::as_str) {
                        push_bounded(&mut self.thinking, text, self.thinking_limit);
                    }
                }
                Some("text") => self.text(block.get("text"), out),
                Some("tool_use") => {
                    self.tool_start(u64::MAX, Some(block));
                    if let Some(call) = self.calls.remove(&u64::MAX) {
                        out.push_back(call.finish());
                    }
                }
                // Block types added later carry no reply text.
                _ => {}
            }
        }
        if let Some(reason) = reply.get("stop_reason").and_then(Value::as_str) {
            out.push_back(ProviderEvent::Finish(reason.to_owned()));
        }
        self.add_usage(reply.get("usage"), out);
        self.stopped = true;
        true
    }

    fn finish(&mut self, out: &mut VecDeque<ProviderEvent>) {
        if !self.thinking.is_empty() {
            let text = std::mem::take(&mut self.thinking);
            out.push_back(ProviderEvent::fact("reasoning", text));
        }
    }
}

impl EventDecoder {
    fn message_start(&mut self, data: &Value, out: &mut VecDeque<ProviderEvent>) {
        let Some(message) = data.get("message") else {
            return;
        };
        if let Some(model) = message.get("model").and_then(Value::as_str) {
            out.push_back(ProviderEvent::fact("model", model));
        }
        self.add_usage(message.get("usage"), out);
    }

    /// A `tool_use` block begins: its id and name now, its input in deltas.
    fn tool_start(&mut self, index: u64, block: Option<&Value>) {
        let Some(block) = block else {
            return;
        };
        if self.calls.len() >= MAX_CALLS {
            return;
        }
        let text = |field: &str| {
            block
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        self.calls.insert(
            index,
            PartialCall {
                id: text("id"),
                name: text("name"),
                start: block.get("input").cloned().unwrap_or(Value::Null),
                json: String::new(),
            },
        );
    }

    fn content_delta(
        &mut self,
        index: u64,
        delta: Option<&Value>,
        out: &mut VecDeque<ProviderEvent>,
    ) {
        let Some(delta) = delta else {
            return;
        };
        match delta.get("type").and_then(Value::as_str) {
            Some("input_json_delta") => {
                let limit = self.thinking_limit;
                if let (Some(call), Some(text)) = (
                    self.calls.get_mut(&index),
                    delta.get("partial_json").and_then(Value::as_str),
                ) {
                    push_bounded(&mut call.json, text, limit);
                }
            }
            Some("thinking_delta") => {
                if let Some(text) = delta.get("thinking").and_then(Value::as_str) {
                    push_bounded(&mut self.thinking, text, self.thinking_limit);
                }
            }
            _ => self.text(delta.get("text"), out),
        }
    }

    fn text(&mut self, text: Option<&Value>, out: &mut VecDeque<ProviderEvent>) {
        if let Some(text) = text.and_then(Value::as_str)
            && !text.is_empty()
        {
            out.push_back(ProviderEvent::Delta(text.to_owned()));
        }
    }

    fn message_delta(&mut self, data: &Value, out: &mut VecDeque<ProviderEvent>) {
        let reason = data
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        if let Some(reason) = reason {
            out.push_back(ProviderEvent::Finish(reason.to_owned()));
        }
        self.add_usage(data.get("usage"), out);
    }

    /// Anthropic's counts are cumulative: the latest figure for each wins.
    /// Its `input_tokens` leaves out the tokens read from and written to
    /// the cache; [`Usage`] counts them in, as OpenAI and OpenTelemetry do.
    fn add_usage(&mut self, usage: Option<&Value>, out: &mut VecDeque<ProviderEvent>) {
        let Some(usage) = usage else {
            return;
        };
        let count = |field: &str| usage.get(field).and_then(Value::as_u64);
        if let Some(input) = count("input_tokens") {
            self.uncached_input = input;
        }
        if let Some(read) = count("cache_read_input_tokens") {
            self.usage.cache_read_tokens = read;
        }
        if let Some(written) = count("cache_creation_input_tokens") {
            self.usage.cache_write_tokens = written;
        }
        self.usage.input_tokens = self
            .uncached_input
            .saturating_add(self.usage.cache_read_tokens)
            .saturating_add(self.usage.cache_write_tokens);
        if let Some(output) = count("output_tokens") {
            self.usage.output_tokens = output;
        }
        out.push_back(ProviderEvent::Usage(self.usage));
    }
}

/// A content block event's `index`.
fn index(data: &Value) -> u64 {
    data.get("index").and_then(Value::as_u64).unwrap_or(0)
}

impl PartialCall {
    /// The whole call: the streamed input if any came, else the start's.
    fn finish(self) -> ProviderEvent {
        let input = if self.json.trim().is_empty() && self.start.is_object() {
            self.start
        } else {
            super::parse_arguments(&self.json)
        };
        ProviderEvent::ToolCall(ToolCall {
            id: self.id,
            name: self.name,
            input,
        })
    }
}

/// `GET {base}/v1/models`, as model ids.
pub async fn models(
    endpoint: &Endpoint,
    upstream: &Upstream,
) -> Result<Vec<String>, ProviderError> {
    let builder = upstream
        .client()?
        .get(format!("{}/v1/models", endpoint.base_url))
        .header("anthropic-version", API_VERSION);
    let request = super::finish_request(builder, endpoint, Auth::XApiKey)?;
    super::model_ids(upstream.get_json(request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_role_turns_are_merged_and_empty_ones_dropped() {
        let turn = |role, content: &str| Turn {
            role,
            content: content.into(),
        };
        let turns = [
            turn(Role::User, "one"),
            turn(Role::User, "two"),
            turn(Role::Assistant, ""),
            turn(Role::Assistant, "reply"),
        ];
        assert_eq!(
            alternating(&turns),
            [
                ("user", "one\n\ntwo".to_owned()),
                ("assistant", "reply".to_owned())
            ]
        );
    }

    fn decode(events: &[Value]) -> Vec<ProviderEvent> {
        let mut decoder = EventDecoder {
            thinking_limit: 1 << 20,
            ..EventDecoder::default()
        };
        let mut out = VecDeque::new();
        for data in events {
            let event = Event {
                data: data.to_string(),
                ..Event::default()
            };
            decoder.event(&event, &mut out).unwrap();
        }
        decoder.finish(&mut out);
        out.into_iter().collect()
    }

    #[test]
    fn tool_use_blocks_are_assembled_from_their_deltas() {
        let partial = |index: u64, text: &str| {
            json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": text}})
        };
        let events = decode(&[
            json!({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 3}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "toolu_1", "name": "fs__read_file", "input": {}}}),
            partial(1, ""),
            partial(1, "{\"path\": \"no"),
            json!({"type": "content_block_start", "index": 2, "content_block":
                {"type": "tool_use", "id": "toolu_2", "name": "time__now", "input": {}}}),
            partial(1, "tes.txt\"}"),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ]);
        assert!(events.contains(&ProviderEvent::Delta("Let me look.".into())));
        let calls = crate::providers::tests::tool_calls(&events);
        assert_eq!(calls.len(), 2, "{events:?}");
        assert_eq!(calls[0].id, "toolu_1");
        assert_eq!(calls[0].name, "fs__read_file");
        assert_eq!(calls[0].input, json!({"path": "notes.txt"}));
        assert_eq!(calls[1].input, json!({}));
    }

    #[test]
    fn a_tool_use_whose_input_is_not_json_is_passed_on_as_text() {
        let events = decode(&[
            json!({"type": "content_block_start", "index": 0, "content_block":
                {"type": "tool_use", "id": "t", "name": "a__b", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{oops"}}),
            json!({"type": "content_block_stop", "index": 0}),
        ]);
        assert_eq!(
            crate::providers::tests::tool_calls(&events)[0].input,
            Value::String("{oops".into())
        );
    }

    #[test]
    fn a_whole_message_with_tool_use_is_read() {
        let mut decoder = EventDecoder::default();
        let mut out = VecDeque::new();
        let reply = json!({"type": "message", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "t1", "name": "fs__read_file", "input": {"path": "a"}}],
            "usage": {"input_tokens": 1, "output_tokens": 2}});
        assert!(decoder.whole(&reply, &mut out));
        let calls = crate::providers::tests::tool_calls(&out.into_iter().collect::<Vec<_>>());
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].input, json!({"path": "a"}));
    }

    #[test]
    fn tools_and_rounds_are_sent_as_the_api_takes_them() {
        let def = ToolDef {
            server: "fs".into(),
            tool: "read_file".into(),
            description: "Reads".into(),
            input_schema: Value::Null,
            read_only: false,
        };
        assert_eq!(
            tool(&def),
            json!({"name": "fs__read_file", "description": "Reads",
                "input_schema": {"type": "object", "properties": {}}})
        );
        let round = ToolRound {
            text: "Looking.".into(),
            calls: vec![
                ToolCall {
                    id: "t1".into(),
                    name: "fs__read_file".into(),
                    input: json!({"path": "a"}),
                },
                ToolCall {
                    id: "t2".into(),
                    name: "fs__read_file".into(),
                    input: Value::String("{".into()),
                },
            ],
            results: vec![
                crate::model::ToolResult {
                    id: "t1".into(),
                    name: "fs.read_file".into(),
                    output: "text".into(),
                    is_error: false,
                },
                crate::model::ToolResult {
                    id: "t2".into(),
                    name: "fs.read_file".into(),
                    output: "bad".into(),
                    is_error: true,
                },
            ],
        };
        let mut messages = Vec::new();
        push_round(&mut messages, &round);
        assert_eq!(
            messages[0],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "t1", "name": "fs__read_file", "input": {"path": "a"}},
                {"type": "tool_use", "id": "t2", "name": "fs__read_file", "input": {}}]})
        );
        assert_eq!(
            messages[1],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "text"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "bad", "is_error": true}]})
        );
    }
}
