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
file (keeping its comments; a symbolic link is followed and its target edited), and asks a \
running daemon to reload if it runs with that config file. A server the config has already is \
refused unless --force replaces it; a file that does not parse, is not a regular file or is larger \
than 1 MiB (standard input too), or a server the daemon could not run, changes nothing.";

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
    let (edited, replaced) = config::add_mcp_servers(&current, &servers, force)
        .map_err(|error| super::config::invalid(config_file, error))?;
    super::config::write(config_file, &edited, "tools import")?;
    let reload = reload_if_running(paths, config_file)?;
    if json {
        let added: Vec<&String> = servers.keys().filter(|n| !replaced.contains(n)).collect();
        let daemon_config = match &reload {
            Reload::OtherFile(path) => Some(path),
            Reload::Done | Reload::NoDaemon => None,
        };
        return output::json(&serde_json::json!({
            "added": added,
            "replaced": replaced,
            "config": config_file.display().to_string(),
            "reloaded": matches!(reload, Reload::Done),
            "daemon_config": daemon_config,
        }));
    }
    let mut text = String::new();
    for (name, server) in &servers {
        let how = match (&server.command, &server.url) {
            (Some(command), _) => format!("stdio: {command}"),
            (_, Some(url)) => format!("http: {url}"),
            _ => String::new(),
        };
        let verb = if replaced.contains(name) {
            "replaced"
        } else {
            "added"
        };
        text.push_str(&format!(
            "{verb} mcp_servers.{name} ({})\n",
            visible_one_line(&how)
        ));
    }
    text.push_str(&format!("in {}", config_file.display()));
    match reload {
        Reload::Done => text.push_str("; the daemon reloaded it"),
        Reload::NoDaemon => {}
        Reload::OtherFile(path) => text.push_str(&format!(
            "; the running daemon uses another config file, {}, and was not reloaded",
            visible_one_line(&path)
        )),
    }
    output::line(&text)
}

/// The most an import file may hold: far beyond any real one.
const MAX_IMPORT_BYTES: u64 = config::MAX_SETTINGS_FILE_BYTES;

/// The import file's text, read as the config file is: a regular file of
/// at most [`MAX_IMPORT_BYTES`] (a FIFO or a device like /dev/zero would
/// hang the command or fill its memory), or at most that much of standard
/// input.
fn read_input(file: &Path) -> Result<String, CliError> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), MAX_IMPORT_BYTES + 1),
            &mut text,
        )
        .map_err(|error| CliError::Failed(format!("cannot read standard input: {error}")))?;
        if text.len() as u64 > MAX_IMPORT_BYTES {
            return Err(CliError::Failed(format!(
                "cannot read standard input: it is larger than {MAX_IMPORT_BYTES} bytes"
            )));
        }
        return Ok(text);
    }
    let cannot = |why: String| CliError::Failed(format!("cannot read {}: {why}", file.display()));
    match config::read_settings_file(file) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(cannot("no such file".into())),
        Err(error) => Err(cannot(error.to_string())),
    }
}

/// What became of the daemon after the config file was edited.
enum Reload {
    /// It runs with this config file and loaded the edit.
    Done,
    /// None runs: it reads the file when it starts.
    NoDaemon,
    /// It runs with the config file at this path (ORCHESTRATION_CONFIG
    /// differs between it and this command), so a reload would not load
    /// the edit.
    OtherFile(String),
}

/// Asks the daemon, if one runs with `config_file`, to load it.
fn reload_if_running(paths: &Paths, config_file: &Path) -> Result<Reload, CliError> {
    let client = Client::new(paths)?;
    let health = match super::block_on(client.health())? {
        Ok(health) => health,
        Err(ClientError::Unreachable { .. }) => return Ok(Reload::NoDaemon),
        Err(error) => return Err(error.into()),
    };
    if let Some(status) = health.config
        && !same_file(Path::new(&status.path), config_file)
    {
        return Ok(Reload::OtherFile(status.path));
    }
    match super::block_on(client.reload())? {
        Ok(_) => Ok(Reload::Done),
        Err(ClientError::Unreachable { .. }) => Ok(Reload::NoDaemon),
        Err(ClientError::Api { detail, .. }) => Err(CliError::Failed(format!(
            "the config file was written, but the daemon did not reload it: {detail}"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Whether two paths name one file (through links, or `..`).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
