//! `openai`: the OpenAI chat-completions protocol, which OpenRouter, Gemini's
//! compatibility endpoint, Ollama, vLLM and most local servers also speak.
//!
//! Every reply is streamed (`stream: true`, `stream_options.include_usage`).
//! The decoder tolerates what real servers send: `:` keep-alive comments,
//! chunks without `choices`, `null` content, usage on any chunk or none,
//! reasoning fields, and errors inside a 200 stream. The reply is complete at
//! `data: [DONE]` or once a `finish_reason` has arrived. A server that ignores
//! `stream: true` and answers one `chat.completion` object is read whole.
//!
//! Tools go out as `tools: [{type: "function", function: {name, description,
//! parameters}}]`; a streamed tool call arrives in pieces
//! (`delta.tool_calls[]`: an index, then its id, name and argument text in
//! any number of deltas) and is passed on whole once the reply finishes. A
//! turn's earlier tool rounds are sent back as an assistant message with
//! `tool_calls`, then one `tool` message a result.

use std::collections::{BTreeMap, VecDeque};

use eventsource_stream::Event;
use reqwest::Request;
use serde_json::{Value, json};

use super::endpoint::Endpoint;
use super::http::{Decoder, Flow, Upstream, event_json, push_bounded, sse_reply, stream_error};
use super::{
    Auth, ChatRequest, EventStream, Provider, ProviderError, ProviderEvent, Role, ToolRound,
};
use crate::model::{ToolCall, ToolDef, Usage};

/// The most tool calls one reply may make; more are not read.
const MAX_CALLS: usize = 64;

pub struct OpenAi {
    endpoint: Endpoint,
    upstream: Upstream,
}

impl OpenAi {
    pub fn new(endpoint: Endpoint, upstream: Upstream) -> Self {
        Self { endpoint, upstream }
    }

    fn request(&self, chat: &ChatRequest) -> Result<Request, ProviderError> {
        let mut messages = Vec::with_capacity(chat.turns.len() + 1);
        if let Some(instructions) = &chat.instructions {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        for turn in &chat.turns {
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(json!({"role": role, "content": &*turn.content}));
        }
        for round in &chat.rounds {
            push_round(&mut messages, round);
        }
        let mut body = json!({
            "model": chat.model.as_ref().or(self.endpoint.model.as_ref()),
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        // Only when something (a budget) needs the reply bounded: the
        // server's own default otherwise.
        if let Some(bound) = chat.max_output_tokens {
            body[bound_field(&self.endpoint.base_url)] = Value::from(bound);
        }
        if !chat.tools.is_empty() {
            body["tools"] = Value::Array(chat.tools.iter().map(tool).collect());
        }
        let url = format!("{}/chat/completions", self.endpoint.base_url);
        let builder = self
            .upstream
            .client()?
            .post(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        super::finish_request(builder, &self.endpoint, Auth::Bearer)
    }
}

/// The field that bounds a reply's output: OpenAI's own API takes
/// `max_completion_tokens` (its reasoning models refuse `max_tokens`);
/// compatible servers (Ollama, OpenRouter, Gemini, vLLM) take `max_tokens`.
fn bound_field(base_url: &str) -> &'static str {
    let host = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host.eq_ignore_ascii_case("api.openai.com") {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

#[cfg(test)]
mod bound_tests {
    use super::bound_field;

    #[test]
    fn openai_itself_gets_max_completion_tokens_and_the_rest_max_tokens() {
        assert_eq!(
            bound_field("https://api.openai.com/v1"),
            "max_completion_tokens"
        );
        assert_eq!(bound_field("http://localhost:11434/v1"), "max_tokens");
        assert_eq!(bound_field("https://openrouter.ai/api/v1"), "max_tokens");
        assert_eq!(bound_field("https://api.openai.com.evil/v1"), "max_tokens");
    }
}

impl Provider for OpenAi {
    fn stream(&self, chat: ChatRequest) -> EventStream {
        let decoder = ChunkDecoder {
            reasoning_limit: self.upstream.max_reply_bytes,
            ..ChunkDecoder::default()
        };
        sse_reply(&self.upstream, self.request(&chat), decoder)
    }
}

/// A tool as the chat-completions API declares one.
fn tool(def: &ToolDef) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": def.wire_name(),
            "description": def.description,
            "parameters": super::schema_object(&def.input_schema),
        },
    })
}

/// A tool round as messages: the assistant's calls (and text, if any),
/// then each result as a `tool` message answering its call's id.
fn push_round(messages: &mut Vec<Value>, round: &ToolRound) {
    let calls: Vec<Value> = round
        .calls
        .iter()
        .map(|call| {
            json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": super::arguments_text(&call.input)},
            })
        })
        .collect();
    let content = (!round.text.is_empty()).then_some(round.text.as_str());
    messages.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
    for result in &round.results {
        // The wire has no error flag: the text says so.
        let content = if result.is_error {
            format!("Error: {}", result.output)
        } else {
            result.output.clone()
        };
        messages.push(json!({"role": "tool", "tool_call_id": result.id, "content": content}));
    }
}

/// Reads `chat.completion.chunk` events.
#[derive(Default)]
struct ChunkDecoder {
    finished: bool,
    done: bool,
    model_reported: bool,
    reasoning: String,
    /// The most reasoning text kept (`limits.max_reply_bytes`), and the
    /// most argument text kept for one tool call.
    reasoning_limit: usize,
    /// Tool calls being assembled, by their index in the reply.
    calls: BTreeMap<u64, PartialCall>,
}

/// A tool call as its deltas have built it so far.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl Decoder for ChunkDecoder {
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<Flow, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Flow::Stop);
        }
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let chunk = event_json(event)?;
        if let Some(error) = stream_error(&chunk) {
            return Err(error);
        }
        if !self.model_reported
            && let Some(model) = chunk.get("model").and_then(Value::as_str)
        {
            self.model_reported = true;
            out.push_back(ProviderEvent::fact("model", model));
        }
        // Only the first choice is used; `n` is never asked for.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first());
        if let Some(choice) = choice {
            self.choice(choice, out);
        }
        if let Some(usage) = chunk.get("usage").and_then(usage) {
            out.push_back(ProviderEvent::Usage(usage));
        }
        Ok(Flow::Continue)
    }

    fn complete(&self) -> bool {
        self.done || self.finished
    }

    /// A `chat.completion` object: the first choice's `message`, usage.
    fn whole(&mut self, reply: &Value, out: &mut VecDeque<ProviderEvent>) -> bool {
        let choice = reply
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first())
            .filter(|choice| choice.get("message").is_some());
        let Some(choice) = choice else {
            return false;
        };
        if let Some(model) = reply.get("model").and_then(Value::as_str) {
            self.model_reported = true;
            out.push_back(ProviderEvent::fact("model", model));
        }
        self.choice(choice, out);
        if let Some(usage) = reply.get("usage").and_then(usage) {
            out.push_back(ProviderEvent::Usage(usage));
        }
        self.done = true;
        self.flush_calls(out);
        true
    }

    fn finish(&mut self, out: &mut VecDeque<ProviderEvent>) {
        // A reply that ended at `[DONE]` without a finish reason still
        // made its calls; one cut short made none.
        if self.complete() {
            self.flush_calls(out);
        }
        if !self.reasoning.is_empty() {
            let text = std::mem::take(&mut self.reasoning);
            out.push_back(ProviderEvent::fact("reasoning", text));
        }
    }
}

impl ChunkDecoder {
    fn choice(&mut self, choice: &Value, out: &mut VecDeque<ProviderEvent>) {
        let delta = choice.get("delta").or_else(|| choice.get("message"));
        if let Some(delta) = delta {
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push_back(ProviderEvent::Delta(text.to_owned()));
            }
            // DeepSeek and vLLM say `reasoning_content`, OpenRouter `reasoning`.
            for field in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta.get(field).and_then(Value::as_str) {
                    push_bounded(&mut self.reasoning, text, self.reasoning_limit);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.call_delta(position, call);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finished = true;
            self.flush_calls(out);
            out.push_back(ProviderEvent::Finish(reason.to_owned()));
        }
    }

    /// One piece of a tool call: its index says which call it adds to (a
    /// whole `message.tool_calls` has none; its position stands in).
    fn call_delta(&mut self, position: usize, call: &Value) {
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        if !self.calls.contains_key(&index) && self.calls.len() >= MAX_CALLS {
            return;
        }
        let limit = self.reasoning_limit;
        let partial = self.calls.entry(index).or_default();
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            id.clone_into(&mut partial.id);
        }
        let function = call.get("function");
        if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
            // Some servers repeat the name in every delta; none split it.
            name.clone_into(&mut partial.name);
        }
        if let Some(text) = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
        {
            push_bounded(&mut partial.arguments, text, limit);
        }
    }

    /// Passes on the calls assembled so far, in index order.
    fn flush_calls(&mut self, out: &mut VecDeque<ProviderEvent>) {
        for (index, partial) in std::mem::take(&mut self.calls) {
            if partial.name.is_empty() {
                continue;
            }
            let id = if partial.id.is_empty() {
                format!("call_{index}")
            } else {
                partial.id
            };
            out.push_back(ProviderEvent::ToolCall(ToolCall {
                id,
                name: partial.name,
                input: super::parse_arguments(&partial.arguments),
            }));
        }
    }
}

/// OpenAI's counts already follow [`Usage`]'s convention: `prompt_tokens`
/// includes the cached ones, `completion_tokens` the reasoning ones.
fn usage(value: &Value) -> Option<Usage> {
    let count = |field: &str| value.get(field).and_then(Value::as_u64);
    let detail = |group: &str, field: &str| {
        value
            .get(group)
            .and_then(|details| details.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let input = count("prompt_tokens");
    let output = count("completion_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
        cache_read_tokens: detail("prompt_tokens_details", "cached_tokens"),
        // OpenAI bills no cache writes; some compatible servers report them.
        cache_write_tokens: detail("prompt_tokens_details", "cache_write_tokens"),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
    })
}

/// `GET {base}/models`, as model ids.
pub async fn models(
    endpoint: &Endpoint,
    upstream: &Upstream,
) -> Result<Vec<String>, ProviderError> {
    let builder = upstream
        .client()?
        .get(format!("{}/models", endpoint.base_url));
    let request = super::finish_request(builder, endpoint, Auth::Bearer)?;
    super::model_ids(upstream.get_json(request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolResult;

    fn decode(chunks: &[Value]) -> Vec<ProviderEvent> {
        let mut decoder = ChunkDecoder {
            reasoning_limit: 1 << 20,
            ..ChunkDecoder::default()
        };
        let mut out = VecDeque::new();
        for chunk in chunks {
            let event = Event {
                data: chunk.to_string(),
                ..Event::default()
            };
            decoder.event(&event, &mut out).unwrap();
        }
        let done = Event {
            data: "[DONE]".into(),
            ..Event::default()
        };
        decoder.event(&done, &mut out).unwrap();
        decoder.finish(&mut out);
        out.into_iter().collect()
    }

    fn delta(calls: Value) -> Value {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    }

    #[test]
    fn streamed_tool_calls_are_assembled_from_their_deltas() {
        let events = decode(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Reading."}}]}),
            delta(json!([{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "fs__read_file", "arguments": ""}}])),
            delta(json!([{"index": 0, "function": {"arguments": "{\"pa"}}])),
            delta(json!([{"index": 1, "id": "call_b", "type": "function",
                "function": {"name": "time__now", "arguments": "{}"}}])),
            delta(json!([{"index": 0, "function": {"arguments": "th\": \"n\\u00e9.txt\"}"}}])),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}),
        ]);
        let calls = crate::providers::tests::tool_calls(&events);
        assert_eq!(calls.len(), 2, "{events:?}");
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].name, "fs__read_file");
        assert_eq!(calls[0].input, json!({"path": "n\u{e9}.txt"}));
        assert_eq!(calls[1].name, "time__now");
        assert_eq!(calls[1].input, json!({}));
        // The calls come before the finish, so the reply's end sees them all.
        let finish = events
            .iter()
            .position(|e| matches!(e, ProviderEvent::Finish(_)))
            .unwrap();
        let last_call = events
            .iter()
            .rposition(|e| matches!(e, ProviderEvent::ToolCall(_)))
            .unwrap();
        assert!(last_call < finish);
    }

    #[test]
    fn a_call_whose_arguments_are_not_json_is_passed_on_as_text() {
        let events = decode(&[
            delta(
                json!([{"index": 0, "id": "c", "function": {"name": "fs__read_file",
                "arguments": "{\"path\": "}}]),
            ),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]);
        let calls = crate::providers::tests::tool_calls(&events);
        assert_eq!(calls[0].input, Value::String("{\"path\": ".into()));
    }

    #[test]
    fn a_reply_cut_short_makes_no_calls() {
        let mut decoder = ChunkDecoder::default();
        let mut out = VecDeque::new();
        let event = Event {
            data: delta(
                json!([{"index": 0, "id": "c", "function": {"name": "x", "arguments": "{}"}}]),
            )
            .to_string(),
            ..Event::default()
        };
        decoder.event(&event, &mut out).unwrap();
        decoder.finish(&mut out);
        assert!(
            crate::providers::tests::tool_calls(&out.into_iter().collect::<Vec<_>>()).is_empty()
        );
    }

    #[test]
    fn a_whole_completion_with_tool_calls_is_read() {
        let mut decoder = ChunkDecoder {
            reasoning_limit: 1 << 20,
            ..ChunkDecoder::default()
        };
        let mut out = VecDeque::new();
        let reply = json!({"object": "chat.completion", "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a__b", "arguments": "{\"x\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "a__c", "arguments": ""}}]},
            "finish_reason": "tool_calls"}]});
        assert!(decoder.whole(&reply, &mut out));
        let calls = crate::providers::tests::tool_calls(&out.into_iter().collect::<Vec<_>>());
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].input, json!({"x": 1}));
        assert_eq!(calls[1].id, "c2");
    }

    #[test]
    fn tools_and_rounds_are_sent_as_the_api_takes_them() {
        let def = ToolDef {
            server: "fs".into(),
            tool: "read_file".into(),
            description: "Reads a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            read_only: true,
        };
        assert_eq!(
            tool(&def),
            json!({"type": "function", "function": {"name": "fs__read_file",
                "description": "Reads a file", "parameters": def.input_schema}})
        );
        let round = ToolRound {
            text: String::new(),
            calls: vec![
                ToolCall {
                    id: "c1".into(),
                    name: "fs__read_file".into(),
                    input: json!({"path": "a"}),
                },
                ToolCall {
                    id: "c2".into(),
                    name: "fs__read_file".into(),
                    input: Value::String("{bad".into()),
                },
            ],
            results: vec![
                ToolResult {
                    id: "c1".into(),
                    name: "fs.read_file".into(),
                    output: "text".into(),
                    is_error: false,
                },
                ToolResult {
                    id: "c2".into(),
                    name: "fs.read_file".into(),
                    output: "bad JSON".into(),
                    is_error: true,
                },
            ],
        };
        let mut messages = Vec::new();
        push_round(&mut messages, &round);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["role"], "assistant");
        assert_eq!(messages[0]["content"], Value::Null);
        assert_eq!(
            messages[0]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a\"}"
        );
        assert_eq!(
            messages[0]["tool_calls"][1]["function"]["arguments"],
            "{bad"
        );
        assert_eq!(
            messages[1],
            json!({"role": "tool", "tool_call_id": "c1", "content": "text"})
        );
        assert_eq!(messages[2]["content"], "Error: bad JSON");
    }
}
