//! `openai`: the OpenAI chat-completions protocol, which OpenRouter, Gemini's
//! compatibility endpoint, Ollama, vLLM and most local servers also speak.
//!
//! Every reply is streamed (`stream: true`, `stream_options.include_usage`).
//! The decoder tolerates what real servers send: `:` keep-alive comments,
//! chunks without `choices`, `null` content, usage on any chunk or none,
//! reasoning fields, and errors inside a 200 stream. The reply is complete at
//! `data: [DONE]` or once a `finish_reason` has arrived. A server that ignores
//! `stream: true` and answers one `chat.completion` object is read whole.

use std::collections::VecDeque;

use eventsource_stream::Event;
use reqwest::Request;
use serde_json::{Value, json};

use super::endpoint::Endpoint;
use super::http::{Decoder, Flow, Upstream, event_json, push_bounded, sse_reply, stream_error};
use super::{Auth, ChatRequest, EventStream, Provider, ProviderError, ProviderEvent, Role};
use crate::model::Usage;

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

/// Reads `chat.completion.chunk` events.
#[derive(Default)]
struct ChunkDecoder {
    finished: bool,
    done: bool,
    model_reported: bool,
    reasoning: String,
    /// The most reasoning text kept (`limits.max_reply_bytes`).
    reasoning_limit: usize,
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
        true
    }

    fn finish(&mut self, out: &mut VecDeque<ProviderEvent>) {
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
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finished = true;
            out.push_back(ProviderEvent::Finish(reason.to_owned()));
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
