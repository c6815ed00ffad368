//! Tool calls in tests: model replies that ask for tools, on both wires,
//! for the fake model servers (each call's argument text is streamed in
//! small pieces that split JSON tokens, and the calls' pieces are
//! interleaved, as real servers may send them); and the MCP servers that
//! run them: where `scripts/test.sh` installed them, and their processes.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::fake_provider::{data, event};

/// A tool call a scripted reply makes: its id, the wire name
/// (`server__tool`), and its argument text as the model sends it (which
/// need not be valid JSON).
pub type Call<'a> = (&'a str, &'a str, &'a str);

/// The argument text in pieces of at most 5 bytes (ASCII text in tests).
fn pieces(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(5)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect()
}

/// OpenAI chunks asking for `calls`: each call's head (index, id, name)
/// first, then the argument pieces round-robin across the calls, a
/// `tool_calls` finish, a usage chunk (11 in, 3 out) and `[DONE]`.
pub fn openai_tool_calls(calls: &[Call]) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        data(&json!({
            "id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }))
    };
    let mut blocks = vec![chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    for (index, (id, name, _)) in calls.iter().enumerate() {
        blocks.push(chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
    }
    let split: Vec<Vec<String>> = calls.iter().map(|(_, _, args)| pieces(args)).collect();
    let longest = split.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for (index, parts) in split.iter().enumerate() {
            if let Some(part) = parts.get(step) {
                blocks.push(chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
        }
    }
    blocks.push(chunk(json!({}), json!("tool_calls")));
    blocks.push(data(&json!({
        "id": "c1", "object": "chat.completion.chunk", "model": "fake-model", "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    })));
    blocks.push("data: [DONE]\n\n".to_owned());
    blocks
}

/// Anthropic events asking for `calls` after `text` (if any): one
/// `tool_use` block a call, its `input_json_delta` pieces interleaved with
/// the other blocks', a `tool_use` stop (21 in, 3 out).
pub fn anthropic_tool_uses(text: &str, calls: &[Call]) -> Vec<String> {
    let mut blocks = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_t", "type": "message", "role": "assistant", "model": "fake-claude",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 21, "output_tokens": 1}}}),
    )];
    let first = usize::from(!text.is_empty());
    if !text.is_empty() {
        blocks.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ));
        blocks.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
        ));
        blocks.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    for (offset, (id, name, _)) in calls.iter().enumerate() {
        blocks.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": first + offset,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
    }
    let split: Vec<Vec<String>> = calls.iter().map(|(_, _, args)| pieces(args)).collect();
    let longest = split.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for (offset, parts) in split.iter().enumerate() {
            if let Some(part) = parts.get(step) {
                blocks.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": first + offset,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        }
    }
    for offset in 0..calls.len() {
        blocks.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": first + offset}),
        ));
    }
    blocks.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 3}}),
    ));
    blocks.push(event("message_stop", &json!({"type": "message_stop"})));
    blocks
}

/// The tool results a chat request sends back, in order, as (call id,
/// text, is_error), whichever wire it is: OpenAI `tool` messages (an
/// error's text starts `Error: `) or Anthropic `tool_result` blocks.
pub fn sent_results(body: &Value) -> Vec<(String, String, bool)> {
    let mut results = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        if message["role"] == "tool" {
            let text = message["content"].as_str().unwrap_or_default().to_owned();
            let id = message["tool_call_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let error = text.starts_with("Error: ");
            results.push((id, text, error));
        }
        for block in message["content"].as_array().into_iter().flatten() {
            if block["type"] == "tool_result" {
                results.push((
                    block["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                    block["content"].as_str().unwrap_or_default().to_owned(),
                    block["is_error"] == true,
                ));
            }
        }
    }
    results
}

/// The path a `scripts/test.sh` variable names (an MCP server, or the
/// Python that has the MCP SDK), or `None`: the test skips, saying so on
/// stderr, or fails under `ORCHESTRATION_REQUIRE_THIRD_PARTY=1`.
pub fn installed(var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() != Ok("1"),
            "${var} does not name an installed test tool; run scripts/test.sh"
        );
        eprintln!("SKIPPED: ${var} is not set (scripts/test.sh installs the MCP servers)");
    }
    found
}

/// A unique `KEY=VALUE` for a test to put in its servers' `env`, so that
/// [`pids_with`] finds their processes and no other test's.
pub fn marker() -> String {
    format!("ORCHESTRATION_TEST_MARK={}", uuid::Uuid::new_v4())
}

/// The pids of processes whose environment holds `marker`: what a test may
/// signal or wait for.
pub fn pids_with(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
                .unwrap_or(false)
        })
        // A zombie has no environment left to read, so it is not listed.
        .collect()
}
