//! Tool calls and their results: what an agent that acts asked to run and
//! what came back, as every layer above speaks them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Message;

/// `message_type` of a stored tool call.
pub const TOOL_CALL: &str = "tool_call";
/// `message_type` of a stored tool result.
pub const TOOL_RESULT: &str = "tool_result";

/// A tool the model asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The id the model (or the coding agent) gave the call; its result carries the same.
    pub id: String,
    /// The tool's name as the agent knows it (`Bash`, `commandExecution`, `fs.read_file`).
    pub name: String,
    /// The arguments, as the agent sent them.
    #[serde(default)]
    pub input: Value,
}

/// What a tool call gave back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub id: String,
    /// The tool's name, repeated so a result reads on its own.
    #[serde(default)]
    pub name: String,
    /// The output as text (untrusted: printed sanitised, scrubbed of keys).
    pub output: String,
    /// The tool failed, was denied, or timed out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

/// A tool as the model is offered it: the daemon's `server.tool` name is
/// sent on the wire as `server__tool` (OpenAI and Anthropic accept only
/// `[A-Za-z0-9_-]` in a tool name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// The MCP server's name from `[mcp_servers.NAME]`.
    pub server: String,
    /// The tool's name as that server lists it.
    pub tool: String,
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of the arguments, as the server declares it.
    #[serde(default)]
    pub input_schema: Value,
    /// The server annotates it `readOnlyHint: true`.
    #[serde(default)]
    pub read_only: bool,
}

impl ToolDef {
    /// `server.tool`: how history, approvals, `--allow` and `--tools` name it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.server, self.tool)
    }

    /// The name sent to the model: `server__tool`, any character outside
    /// `[A-Za-z0-9_-]` as `_`, at most 64 bytes.
    pub fn wire_name(&self) -> String {
        let name: String = format!("{}__{}", self.server, self.tool)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.chars().take(64).collect()
    }
}

/// What a tool call does before it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolPolicy {
    /// Runs without asking.
    Allow,
    /// Waits for a person's answer (a pending approval).
    #[default]
    Ask,
    /// Refused; the model is told so.
    Deny,
}

/// Where an MCP server is in its life, as `tools list` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Not running: never used yet, stopped when idle, or by a reload.
    #[default]
    Stopped,
    Running,
    /// It exited, its connection broke or it could not start; the next use
    /// starts it again (after a backoff).
    Failed,
}

/// How the daemon talks to an MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerTransport {
    /// A child process speaking on its standard input and output.
    Stdio,
    /// Streamable HTTP at a URL.
    Http,
}

/// One configured MCP server as `GET /tools` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolServerInfo {
    pub name: String,
    pub transport: ServerTransport,
    pub state: ServerState,
    /// The tools it listed when it last ran; absent if it never has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolInfo>>,
    /// Starts after a failure.
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Tool calls sent to it and not answered yet.
    #[serde(default)]
    pub calls_in_flight: usize,
}

/// One tool of a server, with the policy config gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub policy: ToolPolicy,
    #[serde(default)]
    pub read_only: bool,
}

impl ToolCall {
    /// The call as a stored message: `content` is the input as JSON text, so
    /// search finds it; `metadata` has `tool`, `tool_use_id` and `input`.
    pub fn to_message(&self, sender: &str) -> Message {
        let mut metadata = Map::new();
        metadata.insert("tool".into(), Value::from(self.name.clone()));
        metadata.insert("tool_use_id".into(), Value::from(self.id.clone()));
        metadata.insert("input".into(), self.input.clone());
        let mut message = Message::new(sender, self.input.to_string(), metadata);
        message.message_type = TOOL_CALL.to_owned();
        message
    }
}

impl ToolResult {
    /// The result as a stored message: `content` is the output; `metadata`
    /// has `tool`, `tool_use_id` and `is_error`.
    pub fn to_message(&self, sender: &str) -> Message {
        let mut metadata = Map::new();
        metadata.insert("tool".into(), Value::from(self.name.clone()));
        metadata.insert("tool_use_id".into(), Value::from(self.id.clone()));
        metadata.insert("is_error".into(), Value::Bool(self.is_error));
        let mut message = Message::new(sender, self.output.clone(), metadata);
        message.message_type = TOOL_RESULT.to_owned();
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_results_become_typed_messages() {
        let call = ToolCall {
            id: "t1".into(),
            name: "Bash".into(),
            input: serde_json::json!({"command": "ls"}),
        };
        let message = call.to_message("coder");
        assert_eq!(message.message_type, TOOL_CALL);
        assert_eq!(message.metadata["tool"], "Bash");
        assert!(message.content.contains("ls"));
        let result = ToolResult {
            id: "t1".into(),
            name: "Bash".into(),
            output: "a.txt".into(),
            is_error: false,
        };
        let message = result.to_message("coder");
        assert_eq!(message.message_type, TOOL_RESULT);
        assert_eq!(message.content, "a.txt");
        assert_eq!(message.metadata["is_error"], false);
    }
}
