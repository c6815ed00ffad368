//! `anthropic`: the Anthropic Messages API (`POST {base}/v1/messages`), streamed.
//!
//! The instructions go in the top-level `system` field, `max_tokens` is
//! always sent (the API requires it: the request's bound when a budget set
//! one, else config `providers.anthropic_max_tokens`),
//! and the named events `message_start`, `content_block_delta`,
//! `message_delta`, `message_stop`, `ping` and `error` are read. The reply is
//! complete at `message_stop`. A server that ignores `stream: true` and
//! answers one `message` object is read whole.

use std::collections::VecDeque;

use eventsource_stream::Event;
use reqwest::Request;
use serde_json::{Value, json};

use super::endpoint::Endpoint;
use super::http::{Decoder, Flow, Upstream, event_json, push_bounded, sse_reply, stream_error};
use super::{Auth, ChatRequest, EventStream, Provider, ProviderError, ProviderEvent, Role, Turn};
use crate::model::Usage;

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
        let messages: Vec<Value> = alternating(&chat.turns)
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
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
    /// The most thinking text kept (`limits.max_reply_bytes`).
    thinking_limit: usize,
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
                self.text(block.and_then(|b| b.get("text")), out);
            }
            "content_block_delta" => self.content_delta(data.get("delta"), out),
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
                // Tool use and block types added later carry no reply text.
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

    fn content_delta(&mut self, delta: Option<&Value>, out: &mut VecDeque<ProviderEvent>) {
        let Some(delta) = delta else {
            return;
        };
        match delta.get("type").and_then(Value::as_str) {
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
}
