//! tools: the MCP servers the daemon runs so API agents can call their tools
//! (the client side of MCP, on `rmcp`): started on first use, supervised,
//! stopped when idle; each call bounded in time and in the bytes it returns.
//!
//! The engine's tool loop asks this module two things: which tools an agent
//! may be offered ([`ToolHost::offer`]) and what one call gave back
//! ([`ToolHost::call`]). `server` is one supervised server. It imports
//! `model`, `config` and `duration` only.

mod result;
mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, McpServerConfig, ToolsConfig};
use crate::model::{ToolDef, ToolInfo, ToolPolicy, ToolServerInfo};
use server::{Server, StartLimit};

pub use server::PROTOCOL_VERSION;

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
    servers: BTreeMap<String, Arc<Server>>,
    tools: ToolsConfig,
}

impl ToolHost {
    /// A host for `config`'s servers; none is started until first used.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Settings {
                servers: config
                    .mcp_servers
                    .iter()
                    .map(|(name, server)| (name.clone(), new_server(name, server)))
                    .collect(),
                tools: config.tools.clone(),
            })),
        }
    }

    /// A reload: servers removed or changed are stopped (a changed one
    /// starts again on its next use, with its new config).
    pub fn reconfigure(&self, config: &Config) {
        let mut settings = self.settings();
        settings.tools = config.tools.clone();
        let mut gone = Vec::new();
        let old = std::mem::take(&mut settings.servers);
        for (name, server) in old {
            match config.mcp_servers.get(&name) {
                Some(new) if *new == server.config => {
                    settings.servers.insert(name, server);
                }
                _ => gone.push(server),
            }
        }
        for (name, server) in &config.mcp_servers {
            settings
                .servers
                .entry(name.clone())
                .or_insert_with(|| new_server(name, server));
        }
        drop(settings);
        for server in gone {
            // Stopping waits for the child; a reload does not.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { server.stop().await });
                }
                // No runtime (never so in the daemon): dropping the server
                // drops its run, which kills the process group.
                Err(_) => drop(server),
            }
        }
    }

    /// The tools `wanted` names (server names, or `server.tool`), starting
    /// the servers that are not running (each start bounded by
    /// `tools.call_timeout` as well as its own 60 s: a turn waits for it).
    pub async fn offer(&self, wanted: &[String]) -> Result<Vec<OfferedTool>, ToolError> {
        let (idle, limit) = {
            let settings = self.settings();
            (
                settings.tools.idle_timeout,
                StartLimit::for_call(settings.tools.call_timeout),
            )
        };
        let mut offered: Vec<OfferedTool> = Vec::new();
        for name in wanted {
            let (server_name, only) = match name.split_once('.') {
                Some((server, tool)) => (server, Some(tool)),
                None => (name.as_str(), None),
            };
            let server = self.server(server_name)?;
            let connection = server.connect_within(idle, limit).await?;
            let mut matched = false;
            for tool in connection.tools.iter() {
                if only.is_some_and(|only| tool.name != only) {
                    continue;
                }
                matched = true;
                let def = tool_def(&server.name, tool);
                if !offered.iter().any(|o| o.def == def) {
                    let policy = policy(&server.config, &def);
                    offered.push(OfferedTool { def, policy });
                }
            }
            if let Some(tool) = only
                && !matched
            {
                return Err(ToolError::UnknownTool {
                    server: server.name.clone(),
                    tool: tool.to_owned(),
                });
            }
        }
        Ok(offered)
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
        let server = self.server(server)?;
        let (limits, idle) = {
            let settings = self.settings();
            (settings.tools.clone(), settings.tools.idle_timeout)
        };
        let arguments = match input {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Ok(CallOutcome {
                    output: format!("the arguments must be a JSON object, not {other}"),
                    is_error: true,
                });
            }
        };
        let work = async {
            let start = StartLimit::for_call(limits.call_timeout);
            let connection = server.connect_within(idle, start).await?;
            if !connection.tools.iter().any(|t| t.name == tool) {
                return Err(ToolError::UnknownTool {
                    server: server.name.clone(),
                    tool: tool.to_owned(),
                });
            }
            let lost = |error| server.lost(connection.generation, &connection.exit, error);
            let pending = match connection.send(tool, arguments).await {
                Ok(pending) => pending,
                Err(error) => return Err(lost(&error).await),
            };
            let _in_flight = server.begin_call();
            // Dropping `pending` (timed out, or the turn cancelled) sends
            // `notifications/cancelled` for it.
            let answer = tokio::time::timeout(limits.call_timeout, pending.response())
                .await
                .map_err(|_| ToolError::Timeout(crate::duration::format(limits.call_timeout)))?;
            match answer {
                Ok(result) => {
                    server.succeeded();
                    Ok(result::flatten(&result, limits.max_result_bytes))
                }
                Err(rmcp::ServiceError::McpError(error)) => {
                    server.succeeded();
                    Ok(CallOutcome {
                        output: format!("the server refused the call: {}", error.message),
                        is_error: true,
                    })
                }
                Err(error) => Err(lost(&error).await),
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ToolError::Cancelled),
            outcome = work => outcome,
        }
    }

    /// Every configured server: its state, restarts, last error and the
    /// tools it listed when it last ran. With `start`, servers not running
    /// are started first, so their tools can be seen before any agent uses
    /// them (one that cannot start shows as failed, with why).
    pub async fn servers(&self, start: bool) -> Vec<ToolServerInfo> {
        let (servers, idle) = {
            let settings = self.settings();
            let servers: Vec<Arc<Server>> = settings.servers.values().cloned().collect();
            (servers, settings.tools.idle_timeout)
        };
        if start {
            let starts = servers.iter().map(|server| async move {
                let _ = server.connect_within(idle, StartLimit::OWN).await;
            });
            futures_util::future::join_all(starts).await;
        }
        servers.iter().map(|server| server_info(server)).collect()
    }

    /// Whether `server` has `tool`, as far as is known without starting
    /// it: `None` until the server has run once and listed its tools.
    pub fn has_tool(&self, server: &str, tool: &str) -> Option<bool> {
        let server = self.server(server).ok()?;
        let tools = server.snapshot().tools?;
        Some(tools.iter().any(|listed| listed.name == tool))
    }

    /// Stops every server (the daemon is stopping).
    pub async fn stop_all(&self) {
        let servers: Vec<Arc<Server>> = self.settings().servers.values().cloned().collect();
        futures_util::future::join_all(servers.iter().map(|server| server.stop())).await;
    }

    fn server(&self, name: &str) -> Result<Arc<Server>, ToolError> {
        self.settings()
            .servers
            .get(name)
            .cloned()
            .ok_or_else(|| ToolError::UnknownServer(name.to_owned()))
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn new_server(name: &str, config: &McpServerConfig) -> Arc<Server> {
    Arc::new(Server::new(name.to_owned(), config.clone()))
}

/// `[mcp_servers.NAME.policies]` for the tool, else the server's `policy`,
/// else `allow` for a tool annotated read-only and `ask` for the rest.
fn policy(config: &McpServerConfig, def: &ToolDef) -> ToolPolicy {
    if let Some(policy) = config.policies.get(&def.tool) {
        return *policy;
    }
    if let Some(policy) = config.policy {
        return policy;
    }
    if def.read_only {
        ToolPolicy::Allow
    } else {
        ToolPolicy::Ask
    }
}

fn tool_def(server: &str, tool: &rmcp::model::Tool) -> ToolDef {
    ToolDef {
        server: server.to_owned(),
        tool: tool.name.to_string(),
        description: tool.description.as_deref().unwrap_or_default().to_owned(),
        input_schema: Value::Object((*tool.input_schema).clone()),
        read_only: tool
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.read_only_hint)
            .unwrap_or(false),
    }
}

fn server_info(server: &Server) -> ToolServerInfo {
    let snapshot = server.snapshot();
    ToolServerInfo {
        name: server.name.clone(),
        transport: server.transport(),
        state: snapshot.state,
        tools: snapshot.tools.map(|tools| {
            tools
                .iter()
                .map(|tool| {
                    let def = tool_def(&server.name, tool);
                    ToolInfo {
                        policy: policy(&server.config, &def),
                        name: def.tool,
                        description: def.description,
                        read_only: def.read_only,
                    }
                })
                .collect()
        }),
        restarts: snapshot.restarts,
        last_error: snapshot.last_error,
        calls_in_flight: snapshot.calls_in_flight,
    }
}
