//! The MCP server: lists the tools, runs a call against the daemon, streams
//! a reply as progress notifications, and stops a call its client cancels.
//! Every failure of a call is a tool result marked as an error, so the
//! session always goes on.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::super::{activity, approvals, output};
use super::tools::{Call, ToolError, ToolName, plan};
use crate::autostart::{self, AutostartError};
use crate::client::{Client, ClientError};
use crate::model::{AgentInfo, Message};
use crate::paths::Paths;
use crate::wire::{ErrorCode, Messages, Models, Route, SearchResults, StreamLine};

const INSTRUCTIONS: &str = "\
Named LLM agents that live in a per-user daemon and keep their conversations between calls. \
spawn_agent starts one, send_message talks to it, get_history reads its conversation (also after \
shutdown_agent), list_agents shows what is running, run_task answers one prompt with a throwaway \
agent, list_models shows what a provider offers, interrupt_agent stops a reply in progress. \
Agents that act (Claude Code, Codex) may wait for a person's yes or no before a tool runs: \
list_approvals shows what waits, answer_approval answers it once the user has decided.";

#[derive(Debug, Clone)]
pub struct Server {
    paths: Arc<Paths>,
    /// Start a daemon when a call finds none (not with `--no-autostart`).
    autostart: bool,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("orchestration", crate::VERSION))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        ToolName::parse(name).map(ToolName::tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = ToolName::parse(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool named {:?}", request.name),
                None,
            ));
        };
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| Progress::new(context.peer.clone(), token));
        let arguments = request.arguments.unwrap_or_default();
        // Dropping the call drops its request to the daemon, which cancels
        // the provider call and keeps the partial reply, marked interrupted.
        let outcome = tokio::select! {
            outcome = self.call(tool, arguments, progress) => outcome,
            () = context.ct.cancelled() => Err(ToolError("the call was cancelled".into())),
        };
        Ok(result(outcome).into())
    }
}

/// Every tool, in the order `tools/list` gives them.
pub fn tools() -> Vec<Tool> {
    ToolName::ALL.into_iter().map(ToolName::tool).collect()
}

fn result(outcome: Result<Reply, ToolError>) -> CallToolResult {
    match outcome {
        Ok(reply) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
            result.structured_content = reply.structured;
            result
        }
        Err(ToolError(text)) => CallToolResult::error(vec![ContentBlock::text(text)]),
    }
}

/// A successful call's answer: text for the model, and the API's JSON.
struct Reply {
    text: String,
    structured: Option<Value>,
}

impl Reply {
    fn new(text: String, structured: &impl Serialize) -> Self {
        Self {
            text,
            structured: serde_json::to_value(structured).ok(),
        }
    }
}

impl Server {
    pub fn new(paths: Arc<Paths>, autostart: bool) -> Self {
        Self { paths, autostart }
    }

    async fn call(
        &self,
        tool: ToolName,
        arguments: rmcp::model::JsonObject,
        progress: Option<Progress>,
    ) -> Result<Reply, ToolError> {
        let call = plan(tool, arguments, &self.paths.config_file)?;
        let client = self.connect().await?;
        execute(&client, call, progress).await.map_err(explain)
    }

    /// A client of the daemon, started first if it is not running (and
    /// auto-start is on). Checked on every call: the daemon may have been
    /// stopped since the last one.
    async fn connect(&self) -> Result<Client, ToolError> {
        if self.autostart {
            let paths = Arc::clone(&self.paths);
            tokio::task::spawn_blocking(move || autostart::ensure_running(&paths))
                .await
                .map_err(|e| ToolError(format!("could not start the daemon: {e}")))?
                .map_err(explain_autostart)?;
        }
        Client::new(&self.paths).map_err(explain)
    }
}

async fn execute(
    client: &Client,
    call: Call,
    progress: Option<Progress>,
) -> Result<Reply, ClientError> {
    match call {
        Call::Spawn(body) => {
            let info: AgentInfo = client.spawn(&body).await?;
            Ok(Reply::new(spawned(&info), &info))
        }
        Call::List(query) => {
            let agents: Vec<AgentInfo> = client.list(&query).await?;
            let text = if agents.is_empty() {
                "no agents".to_owned()
            } else {
                output::agents_table(&agents) + &own_budgets(&agents)
            };
            Ok(Reply::new(text, &serde_json::json!({ "agents": agents })))
        }
        Call::Message { agent, body } => {
            converse(client, &Route::Message(agent), &body, progress).await
        }
        Call::Task { agent, body } => converse(client, &Route::Task(agent), &body, progress).await,
        Call::Search(query) => {
            let found: SearchResults = client.search(&query).await?;
            let text = if found.results.is_empty() {
                "nothing found".to_owned()
            } else {
                let hits: Vec<String> = found
                    .results
                    .iter()
                    .map(|hit| {
                        format!(
                            "{} ({}, {}): {}",
                            hit.agent, hit.sender, hit.timestamp, hit.snippet
                        )
                    })
                    .collect();
                hits.join("\n")
            };
            Ok(Reply::new(text, &found))
        }
        Call::History { agent, query } => {
            let history: Messages = client.history(&agent, &query).await?;
            let text = if history.messages.is_empty() {
                format!("no messages for '{agent}'")
            } else {
                let lines: Vec<String> = history
                    .messages
                    .iter()
                    .map(activity::history_entry)
                    .collect();
                lines.join("\n")
            };
            Ok(Reply::new(text, &history))
        }
        Call::Shutdown(agent) => {
            client.shutdown_agent(&agent).await?;
            let text =
                format!("shut down agent '{agent}'; get_history still reads its conversation");
            Ok(Reply::new(
                text,
                &serde_json::json!({ "succeeded": [agent] }),
            ))
        }
        Call::Interrupt(agent) => {
            let answer = client.interrupt(&agent).await?;
            let text = if answer.interrupted {
                format!(
                    "stopped the reply '{agent}' was writing; what it said is kept, marked interrupted"
                )
            } else {
                format!("'{agent}' was not writing a reply; nothing to stop")
            };
            Ok(Reply::new(text, &answer))
        }
        Call::Approvals(query) => {
            let pending = client.approvals(&query).await?;
            let text = if pending.is_empty() {
                "no pending approvals".to_owned()
            } else {
                approvals::listing(&pending)
            };
            Ok(Reply::new(
                text,
                &serde_json::json!({ "approvals": pending }),
            ))
        }
        Call::Answer { id, answer } => {
            let answered = client.answer(&id, &answer).await?;
            Ok(Reply::new(approvals::answered_line(&answered), &answered))
        }
        Call::Models(body) => {
            let listing: Models = client.models(&body).await?;
            let text = if listing.models.is_empty() {
                format!("{} lists no models", listing.provider)
            } else {
                listing.models.join("\n")
            };
            Ok(Reply::new(text, &listing))
        }
    }
}

fn spawned(info: &AgentInfo) -> String {
    let model = info
        .model
        .as_deref()
        .map(|m| format!(", model {m}"))
        .unwrap_or_default();
    let budget = info
        .budget
        .as_deref()
        .map(|b| format!(", budget {b}"))
        .unwrap_or_default();
    format!(
        "spawned agent '{}' (provider {}{model}{budget})",
        info.name, info.provider
    )
}

/// A line for each listed agent with a budget of its own, which the table
/// has no column for.
fn own_budgets(agents: &[AgentInfo]) -> String {
    agents
        .iter()
        .filter_map(|agent| {
            let budget = agent.budget.as_deref()?;
            Some(format!("{} has its own budget: {budget}\n", agent.name))
        })
        .collect()
}

/// Posts a message or task with `"stream": true` and gathers the reply,
/// passing each piece on as a progress notification when the client asked
/// for progress.
async fn converse<B: Serialize>(
    client: &Client,
    route: &Route,
    body: &B,
    progress: Option<Progress>,
) -> Result<Reply, ClientError> {
    let (lines, received) = mpsc::unbounded_channel::<StreamLine>();
    // The closure owns the sender: when the stream ends, gathering ends too.
    let stream = client.stream(route, body, move |line| match line {
        StreamLine::Error {
            status,
            code,
            detail,
        } => Err(ClientError::Api {
            status,
            code,
            detail,
            missing_key: None,
        }),
        line => {
            let _ = lines.send(line);
            Ok(())
        }
    });
    let (streamed, gathered) = tokio::join!(stream, gather(received, progress));
    streamed?;
    let (messages, finished) = gathered;
    if !finished {
        return Err(ClientError::Connection(
            "the reply stream ended before the reply was complete".into(),
        ));
    }
    Ok(reply(messages))
}

/// Collects a streamed reply's messages, reporting each delta as progress;
/// also says whether the stream got as far as `done`.
async fn gather(
    mut received: mpsc::UnboundedReceiver<StreamLine>,
    mut progress: Option<Progress>,
) -> (Vec<Message>, bool) {
    let mut messages = Vec::new();
    let mut finished = false;
    while let Some(line) = received.recv().await {
        match line {
            StreamLine::Delta { content } => {
                if let Some(progress) = progress.as_mut() {
                    progress.report(content).await;
                }
            }
            StreamLine::Message { message } => messages.push(message),
            StreamLine::Done => finished = true,
            StreamLine::Error { .. }
            | StreamLine::Queued { .. }
            | StreamLine::ToolCall { .. }
            | StreamLine::ToolResult { .. }
            | StreamLine::Approval { .. }
            | StreamLine::Unknown => {}
        }
    }
    (messages, finished)
}

fn reply(messages: Vec<Message>) -> Reply {
    let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let text = text.join("\n");
    Reply::new(text, &Messages { messages })
}

/// Progress notifications for one call: each carries a piece of the reply
/// as its message, and the characters received so far as its progress.
struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    characters: usize,
}

impl Progress {
    fn new(peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        Self {
            peer,
            token,
            characters: 0,
        }
    }

    async fn report(&mut self, content: String) {
        self.characters += content.chars().count();
        let param = ProgressNotificationParam::new(self.token.clone(), self.characters as f64)
            .with_message(content);
        if let Err(error) = self.peer.notify_progress(param).await {
            tracing::debug!(%error, "could not send a progress notification");
        }
    }
}

/// The daemon's message, with a hint in the tools' terms where one helps.
fn explain(error: ClientError) -> ToolError {
    let hint = match &error {
        ClientError::Unreachable { .. } => Some(
            "start it with `orchestration serve --daemon`, or let this server start it (drop --no-autostart / ORCHESTRATION_NO_AUTOSTART)",
        ),
        ClientError::Api {
            code: ErrorCode::NotFound | ErrorCode::AgentGone,
            ..
        } => Some("list_agents shows the live agents"),
        ClientError::Api {
            code: ErrorCode::NameTaken,
            ..
        } => Some("shutdown_agent frees the name, or pick another"),
        ClientError::Api {
            code: ErrorCode::ApprovalNotFound | ErrorCode::AlreadyResolved,
            ..
        } => Some("list_approvals shows the ones still pending"),
        ClientError::Api {
            code: ErrorCode::BudgetExceeded,
            ..
        } => Some(
            "a budget has no room for this call until it resets (the error says when); its owner can raise the limit in the config file",
        ),
        ClientError::Api {
            code: ErrorCode::BudgetUnpriced,
            ..
        } => Some(
            "a USD budget applies and the model has no price: the owner must add [prices.\"MODEL\"] to the config file",
        ),
        _ => None,
    };
    with_hint(error.to_string(), hint)
}

fn explain_autostart(error: AutostartError) -> ToolError {
    with_hint(
        error.to_string(),
        Some(
            "`orchestration serve` runs the daemon in the foreground, where its errors are easy to see",
        ),
    )
}

fn with_hint(message: String, hint: Option<&str>) -> ToolError {
    match hint {
        Some(hint) => ToolError(format!("{message} (hint: {hint})")),
        None => ToolError(message),
    }
}
