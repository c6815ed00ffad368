//! `orchestration tools list|import`: the MCP servers whose tools API agents
//! may be given — their state and tools as the daemon sees them, and adding
//! servers from the `{"mcpServers": {…}}` file assistants and editors use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::approvals::{shorten, visible_one_line};
use super::{CliError, Ctx, output};
use crate::client::{Client, ClientError};
use crate::config::{self, McpServerConfig};
use crate::model::{ServerState, ToolServerInfo};
use crate::paths::Paths;
use crate::wire::{ToolServers, ToolsQuery};

pub const LONG_ABOUT: &str = "\
The MCP servers whose tools API agents may be given (spawn --tools NAME or NAME.TOOL, or tools = \
[...] in a profile), configured as [mcp_servers.NAME] tables in the config file: a command run on \
stdio (command, args, env, cwd) or a streamable-HTTP url (with headers).

`list` shows each server: how it is reached, its state (stopped: not started yet, or stopped when \
idle; running; failed: it exited or could not start, with the last error), how often it was \
restarted, and the tools it listed when it last ran, each with its policy (allow, ask or deny). \
The daemon starts a server on first use, never at its own start; `list --start` starts those not \
running so their tools can be seen before any agent uses them.

`import FILE` reads the JSON file assistants and editors keep their MCP servers in ({\"mcpServers\": \
{NAME: {command, args, env, cwd} or {url, headers}}}, as Claude Desktop, Cursor or VS Code write \
it; VS Code's \"servers\" key too), writes a [mcp_servers.NAME] table for each into the config \
file (keeping its comments), and asks a running daemon to reload. A server the config has already \
is refused unless --force replaces it; a file that does not parse, or a server the daemon could \
not run, changes nothing.";

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub action: ToolsAction,
}

#[derive(Debug, Subcommand)]
pub enum ToolsAction {
    /// Show each configured MCP server: transport, state, restarts, last error and its tools.
    List {
        /// Start the servers that are not running first, to list their tools.
        #[arg(long)]
        start: bool,
    },
    /// Add the servers of an {"mcpServers": {...}} JSON file to the config file, then reload.
    Import {
        /// The JSON file (Claude Desktop's claude_desktop_config.json, Cursor's or VS Code's
        /// mcp.json); `-` reads standard input.
        file: PathBuf,
        /// Replace servers the config file has already.
        #[arg(long)]
        force: bool,
    },
}

pub async fn list(ctx: &Ctx, start: bool) -> Result<(), CliError> {
    let reply: ToolServers = ctx.client.tools(&ToolsQuery { start }).await?;
    if ctx.json {
        return output::json(&reply);
    }
    if reply.servers.is_empty() {
        return output::line(
            "no MCP servers are configured ([mcp_servers.NAME] in the config file, or `orchestration tools import FILE`)",
        );
    }
    let blocks: Vec<String> = reply.servers.iter().map(server_block).collect();
    output::line(&blocks.join("\n\n"))
}

/// One server: a heading line, then one line a tool.
fn server_block(server: &ToolServerInfo) -> String {
    let state = match server.state {
        ServerState::Stopped => "stopped",
        ServerState::Running => "running",
        ServerState::Failed => "failed",
    };
    let transport = match server.transport {
        crate::model::ServerTransport::Stdio => "stdio",
        crate::model::ServerTransport::Http => "http",
    };
    let mut text = format!(
        "{}  {transport}  {state}  restarts {}",
        server.name, server.restarts
    );
    if let Some(error) = &server.last_error {
        text.push_str(&format!("\n  last error: {}", visible_one_line(error)));
    }
    match &server.tools {
        None => text.push_str("\n  (tools not listed yet: it has not run; `tools list --start`)"),
        Some(tools) if tools.is_empty() => text.push_str("\n  (no tools)"),
        Some(tools) => {
            let rows: Vec<Vec<String>> = tools
                .iter()
                .map(|tool| {
                    vec![
                        format!("  {}", visible_one_line(&tool.name)),
                        policy_text(tool.policy).to_owned(),
                        if tool.read_only { "yes" } else { "" }.to_owned(),
                        visible_one_line(&shorten(
                            tool.description.lines().next().unwrap_or_default(),
                            80,
                        )),
                    ]
                })
                .collect();
            text.push('\n');
            let table = output::table(&["  TOOL", "POLICY", "READ-ONLY", "DESCRIPTION"], &rows);
            text.push_str(table.trim_end());
        }
    }
    text
}

fn policy_text(policy: crate::model::ToolPolicy) -> &'static str {
    match policy {
        crate::model::ToolPolicy::Allow => "allow",
        crate::model::ToolPolicy::Ask => "ask",
        crate::model::ToolPolicy::Deny => "deny",
    }
}

/// The file assistants and editors keep MCP servers in.
#[derive(Debug, Deserialize)]
struct ServersFile {
    #[serde(rename = "mcpServers", alias = "servers")]
    servers: BTreeMap<String, ImportedServer>,
}

/// One entry: stdio (`command`…) or HTTP (`url`…). Fields other clients
/// keep (`disabled`, `autoApprove`, …) are ignored.
#[derive(Debug, Deserialize)]
struct ImportedServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl ImportedServer {
    fn into_config(self, name: &str) -> Result<McpServerConfig, CliError> {
        if let Some(kind) = self.kind.as_deref()
            && !matches!(
                kind,
                "stdio" | "http" | "streamable-http" | "streamableHttp"
            )
        {
            return Err(CliError::Usage(format!(
                "mcpServers.{name}: type {kind:?} is not supported (stdio or streamable HTTP only)"
            )));
        }
        Ok(McpServerConfig {
            command: self.command,
            args: self.args,
            env: self.env,
            cwd: self.cwd,
            url: self.url,
            headers: self.headers,
            policy: None,
            policies: BTreeMap::new(),
        })
    }
}

/// `tools import FILE`: the servers of `file` into the config file, then
/// a reload if a daemon runs. Needs no daemon.
pub fn import(paths: &Paths, file: &Path, force: bool, json: bool) -> Result<(), CliError> {
    let text = read_input(file)?;
    let parsed: ServersFile = serde_json::from_str(&text).map_err(|error| {
        CliError::Usage(format!(
            "{}: not an {{\"mcpServers\": {{…}}}} file: {error}",
            file.display()
        ))
    })?;
    let mut servers = BTreeMap::new();
    for (name, server) in parsed.servers {
        let config = server.into_config(&name)?;
        servers.insert(name, config);
    }
    if servers.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: its mcpServers object is empty",
            file.display()
        )));
    }
    let config_file = &paths.config_file;
    let current = super::config::read(config_file)?;
    let edited = config::add_mcp_servers(&current, &servers, force)
        .map_err(|error| super::config::invalid(config_file, error))?;
    super::config::write(config_file, &edited)?;
    let names: Vec<&String> = servers.keys().collect();
    let reloaded = reload_if_running(paths)?;
    if json {
        return output::json(&serde_json::json!({
            "added": names,
            "config": config_file.display().to_string(),
            "reloaded": reloaded,
        }));
    }
    let mut text = String::new();
    for (name, server) in &servers {
        let how = match (&server.command, &server.url) {
            (Some(command), _) => format!("stdio: {command}"),
            (_, Some(url)) => format!("http: {url}"),
            _ => String::new(),
        };
        text.push_str(&format!(
            "added mcp_servers.{name} ({})\n",
            visible_one_line(&how)
        ));
    }
    text.push_str(&format!("in {}", config_file.display()));
    if reloaded {
        text.push_str("; the daemon reloaded it");
    }
    output::line(&text)
}

fn read_input(file: &Path) -> Result<String, CliError> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|error| CliError::Failed(format!("cannot read standard input: {error}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
        .map_err(|error| CliError::Failed(format!("cannot read {}: {error}", file.display())))
}

/// Asks the daemon, if one runs, to load the new config; `true` if it did.
/// None running is fine: it reads the file when it starts.
fn reload_if_running(paths: &Paths) -> Result<bool, CliError> {
    let client = Client::new(paths)?;
    match super::block_on(client.reload())? {
        Ok(_) => Ok(true),
        Err(ClientError::Unreachable { .. }) => Ok(false),
        Err(ClientError::Api { detail, .. }) => Err(CliError::Failed(format!(
            "the config file was written, but the daemon did not reload it: {detail}"
        ))),
        Err(error) => Err(error.into()),
    }
}
