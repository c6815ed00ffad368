//! `orchestration mcp`: an MCP (Model Context Protocol) server on standard
//! input and output, for assistants and editors. It is a client of the
//! daemon like every other subcommand; stdout carries only the protocol.

mod server;
mod tools;
mod transport;

use std::sync::Arc;

use clap::Args;
use rmcp::ServiceExt;

use super::{CliError, block_on};
use crate::paths::Paths;

pub const LONG_ABOUT: &str = "\
Serve the Model Context Protocol on standard input and output, so that an assistant or editor can \
spawn agents, talk to them and read their histories through tools: spawn_agent, list_agents, \
send_message, get_history, run_task, shutdown_agent, list_models, search_history, \
interrupt_agent (stops the reply an agent is writing; the waiting send_message returns what it \
said so far), list_approvals and answer_approval (tool calls waiting for a yes or no). \
spawn_agent and run_task start a coding agent (provider claude-code or codex) with its cwd \
(relative to, and by default, this server's working directory), allow and approval, as `spawn` \
does.

An MCP client starts it. To register it with an assistant's command line: \
`claude mcp add orchestration -- orchestration mcp`. In an editor's JSON configuration: \
{\"mcpServers\": {\"orchestration\": {\"command\": \"orchestration\", \"args\": [\"mcp\"]}}}

Like every other command it talks to the daemon, and the first tool call that finds none starts \
one (unless --no-autostart). API keys come from this process's environment and travel in each \
request, as with `spawn`; a tool call cannot name a key variable, and a base_url it names gets no \
key.

A failed call (an unknown agent, a missing key, a provider error, an unreachable daemon) is a tool \
result marked as an error, and the session goes on. With a progress token, send_message and \
run_task stream the reply as progress notifications. A client that cancels one of them cancels \
the provider call, as Ctrl-C does in `message`; the partial reply stays in the history, marked \
interrupted. A line that is not JSON gets a JSON-RPC parse error (-32700); a line over 4 MiB is not \
read, and gets an error (-32600) for its request id.

Standard output carries only the protocol; logs go to standard error (RUST_LOG sets the level, \
default warn).";

#[derive(Debug, Args)]
pub struct McpArgs {}

/// Serves MCP on stdio until the client closes standard input.
pub fn run(_args: McpArgs, paths: Paths, no_autostart: bool) -> Result<(), CliError> {
    init_logging();
    let server = server::Server::new(Arc::new(paths), !no_autostart);
    block_on(async move {
        let service = server
            .serve(transport::stdio())
            .await
            .map_err(|e| CliError::Failed(format!("the MCP session did not start: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| CliError::Failed(format!("the MCP session ended abnormally: {e}")))?;
        Ok(())
    })?
}

/// Logs go to stderr (stdout is the protocol); `RUST_LOG` sets the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
