//! How an agent's tool activity reads to people: tool calls, their results
//! and approval requests as `message` (and its fan-out) prints them while
//! they stream, and stored tool messages as `history` prints them. Every
//! piece of it came from an agent or a tool, so it is sanitised here.

use serde_json::Value;

use super::approvals::{shorten, visible_one_line};
use super::output;
use crate::model::{Message, TOOL_CALL, TOOL_RESULT, ToolCall, ToolResult};

/// How much of a call's input a streamed line shows.
const CALL_CHARS: usize = 200;
/// How many lines, and characters, of a result a streamed line shows.
const RESULT_LINES: usize = 4;
const RESULT_CHARS: usize = 400;

/// The input keys that say what a call does, most telling first (Claude
/// Code's `command`, `file_path`, `url`, `pattern`; Codex's `cmd`).
const TELLING_KEYS: &[&str] = &[
    "command",
    "cmd",
    "file_path",
    "path",
    "url",
    "pattern",
    "query",
];

/// What a call would do, on one line: its command, file or URL when the
/// input has one, else the input as compact JSON.
pub fn call_summary(input: &Value) -> String {
    let telling =
        TELLING_KEYS
            .iter()
            .find_map(|key| input.get(key))
            .and_then(|value| match value {
                Value::String(text) => Some(text.clone()),
                // Codex sends a command as argv.
                Value::Array(words) => {
                    let words: Option<Vec<&str>> = words.iter().map(Value::as_str).collect();
                    words.map(|words| words.join(" "))
                }
                _ => None,
            });
    let text = match (telling, input) {
        (Some(text), _) => text,
        (None, Value::Null) => String::new(),
        (None, other) => other.to_string(),
    };
    visible_one_line(&text)
}

/// `⚙ Bash: touch made.txt` — a call as it streams.
pub fn call_line(call: &ToolCall) -> String {
    let summary = shorten(&call_summary(&call.input), CALL_CHARS);
    let name = visible_one_line(&call.name);
    if summary.is_empty() {
        format!("⚙ {name}")
    } else {
        format!("⚙ {name}: {summary}")
    }
}

/// `  ↳ first lines of the output` — a result as it streams, shortened
/// (the whole of it is in `history`).
pub fn result_line(result: &ToolResult) -> String {
    let marker = if result.is_error {
        "↳ error: "
    } else {
        "↳ "
    };
    let output = result.output.trim_end();
    if output.is_empty() {
        return format!("  {marker}(no output)");
    }
    let lines: Vec<&str> = output.lines().collect();
    let mut shown = lines
        .iter()
        .take(RESULT_LINES)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let mut cut = lines.len() > RESULT_LINES;
    if shown.chars().count() > RESULT_CHARS {
        shown = shown.chars().take(RESULT_CHARS).collect();
        cut = true;
    }
    let shown = output::visible(&shown).replace('\n', "\n    ");
    let more = if cut {
        format!(
            "\n    … ({} lines in all; `orchestration history` has them)",
            lines.len()
        )
    } else {
        String::new()
    };
    format!("  {marker}{shown}{more}")
}

/// A history entry as `history` prints it: tool calls and results are
/// marked as such (`[tool call] Bash: ls`), other messages as usual.
pub fn history_entry(message: &Message) -> String {
    let Some(kind) = tool_kind(message) else {
        return output::history_entry(message);
    };
    let tool = tool_name(message);
    let body = match kind {
        ToolKind::Call => format!("[tool call] {tool}: {}", stored_call_summary(message)),
        ToolKind::Result if is_error(message) => {
            format!(
                "[tool result, error] {tool}: {}",
                output::visible(&message.content)
            )
        }
        ToolKind::Result => format!(
            "[tool result] {tool}: {}",
            output::visible(&message.content)
        ),
    };
    format!(
        "[{}] {}: {body}",
        output::timestamp(&message.timestamp),
        output::visible(&message.sender)
    )
}

/// A stored tool message as Markdown: a collapsed `<details>` block whose
/// summary says what ran, with the input or output inside a code fence.
/// `None` for any other message.
pub fn markdown_entry(message: &Message) -> Option<String> {
    let kind = tool_kind(message)?;
    let tool = html(&tool_name(message));
    let when = output::timestamp(&message.timestamp);
    let sender = html(&output::visible(&message.sender));
    let (summary, body, language) = match kind {
        ToolKind::Call => {
            let what = html(&shorten(&stored_call_summary(message), CALL_CHARS));
            let input = message
                .metadata
                .get("input")
                .and_then(|input| serde_json::to_string_pretty(input).ok())
                .unwrap_or_else(|| message.content.clone());
            (
                format!("⚙ <b>{sender}</b> · tool call <code>{tool}</code>: {what} · {when}"),
                input,
                "json",
            )
        }
        ToolKind::Result => {
            let error = if is_error(message) { " (error)" } else { "" };
            (
                format!("↳ tool result <code>{tool}</code>{error} · {when}"),
                message.content.clone(),
                "text",
            )
        }
    };
    let body = output::visible(body.trim_end()).into_owned();
    let fence = fence_for(&body);
    Some(format!(
        "<details><summary>{summary}</summary>\n\n{fence}{language}\n{body}\n{fence}\n\n</details>\n\n"
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolKind {
    Call,
    Result,
}

fn tool_kind(message: &Message) -> Option<ToolKind> {
    match message.message_type.as_str() {
        TOOL_CALL => Some(ToolKind::Call),
        TOOL_RESULT => Some(ToolKind::Result),
        _ => None,
    }
}

fn tool_name(message: &Message) -> String {
    let name = message
        .metadata
        .get("tool")
        .and_then(Value::as_str)
        .unwrap_or("tool");
    visible_one_line(name)
}

fn is_error(message: &Message) -> bool {
    message.metadata.get("is_error").and_then(Value::as_bool) == Some(true)
}

/// A stored call's summary: from its `input` metadata, else its content
/// (the input as JSON text).
fn stored_call_summary(message: &Message) -> String {
    match message.metadata.get("input") {
        Some(input) => call_summary(input),
        None => {
            let input = serde_json::from_str(&message.content)
                .unwrap_or_else(|_| Value::String(message.content.clone()));
            call_summary(&input)
        }
    }
}

/// Text safe inside HTML (a `<summary>`): no tag or entity of the agent's
/// can open, close or hide anything in the document it is pasted into.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A code fence longer than any run of backticks in `body`, so the body
/// cannot end the block early.
fn fence_for(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(input: Value) -> ToolCall {
        ToolCall {
            id: "t1".into(),
            name: "Bash".into(),
            input,
        }
    }

    #[test]
    fn a_call_shows_its_command_file_or_json() {
        assert_eq!(
            call_line(&call(
                json!({"command": "touch made.txt", "description": "x"})
            )),
            "⚙ Bash: touch made.txt"
        );
        assert_eq!(
            call_summary(&json!({"cmd": ["git", "status"]})),
            "git status"
        );
        assert_eq!(call_summary(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(call_line(&call(Value::Null)), "⚙ Bash");
        // One line, sanitised.
        assert_eq!(
            call_summary(&json!({"command": "a\nb\u{1b}[2J"})),
            "a⏎b\\u{1b}[2J"
        );
    }

    #[test]
    fn a_result_is_shortened_and_marked() {
        let result = |output: &str, is_error| ToolResult {
            id: "t1".into(),
            name: "Bash".into(),
            output: output.into(),
            is_error,
        };
        assert_eq!(result_line(&result("", false)), "  ↳ (no output)");
        assert_eq!(result_line(&result("nope", true)), "  ↳ error: nope");
        let long: String = (1..=10).map(|n| format!("line {n}\n")).collect();
        let shown = result_line(&result(&long, false));
        assert!(shown.contains("line 4"), "{shown}");
        assert!(!shown.contains("line 5"), "{shown}");
        assert!(shown.contains("10 lines in all"), "{shown}");
        assert!(!result_line(&result("\u{1b}]52;c;x\u{7}", false)).contains('\u{1b}'));
    }

    fn stored(message: Message) -> Message {
        Message {
            timestamp: "2026-01-01T10:00:00Z".into(),
            ..message
        }
    }

    #[test]
    fn stored_tool_messages_are_marked_in_text_and_folded_in_markdown() {
        let tool_call =
            stored(call(json!({"command": "echo ```</summary><script>"})).to_message("coder"));
        let result = stored(
            ToolResult {
                id: "t1".into(),
                name: "Bash".into(),
                output: "```\nout".into(),
                is_error: true,
            }
            .to_message("coder"),
        );
        assert_eq!(
            history_entry(&tool_call),
            "[2026-01-01T10:00:00.000Z] coder: [tool call] Bash: echo ```</summary><script>"
        );
        assert_eq!(
            history_entry(&result),
            "[2026-01-01T10:00:00.000Z] coder: [tool result, error] Bash: ```\nout"
        );
        let folded = markdown_entry(&tool_call).unwrap();
        assert!(folded.starts_with("<details><summary>⚙ <b>coder</b> · tool call <code>Bash</code>: echo ```&lt;/summary&gt;&lt;script&gt;"), "{folded}");
        assert!(folded.contains("\n````json\n"), "{folded}");
        assert!(folded.ends_with("</details>\n\n"), "{folded}");
        let folded = markdown_entry(&result).unwrap();
        assert!(folded.contains("(error)"), "{folded}");
        assert!(folded.contains("````text\n```\nout\n````"), "{folded}");
        let chat = stored(Message::new("human", "hi".into(), Default::default()));
        assert!(markdown_entry(&chat).is_none());
        assert_eq!(history_entry(&chat), output::history_entry(&chat));
    }
}
