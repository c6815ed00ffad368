//! The MCP tools: their names, descriptions and argument types (the JSON
//! Schemas clients see are derived from these types), and how a call's
//! arguments become a request to the daemon. No I/O here but reading the
//! config file and the environment for API keys, as `spawn` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::super::{AgentOptions, ApprovalArg, CliError, EndpointOptions};
use crate::model::{AgentName, AgentState, Decision};
use crate::wire::{AnswerRequest, ApprovalId, ApprovalsQuery};
use crate::wire::{
    HistoryQuery, ListQuery, MessageRequest, ModelsRequest, SearchQuery, SpawnRequest, TaskRequest,
};

/// The tools this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolName {
    SpawnAgent,
    ListAgents,
    SendMessage,
    GetHistory,
    RunTask,
    ShutdownAgent,
    ListModels,
    SearchHistory,
    InterruptAgent,
    ListApprovals,
    AnswerApproval,
}

impl ToolName {
    pub const ALL: [ToolName; 11] = [
        Self::SpawnAgent,
        Self::ListAgents,
        Self::SendMessage,
        Self::GetHistory,
        Self::RunTask,
        Self::ShutdownAgent,
        Self::ListModels,
        Self::SearchHistory,
        Self::InterruptAgent,
        Self::ListApprovals,
        Self::AnswerApproval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpawnAgent => "spawn_agent",
            Self::ListAgents => "list_agents",
            Self::SendMessage => "send_message",
            Self::GetHistory => "get_history",
            Self::RunTask => "run_task",
            Self::ShutdownAgent => "shutdown_agent",
            Self::ListModels => "list_models",
            Self::SearchHistory => "search_history",
            Self::InterruptAgent => "interrupt_agent",
            Self::ListApprovals => "list_approvals",
            Self::AnswerApproval => "answer_approval",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.as_str() == name)
    }

    fn description(self) -> &'static str {
        match self {
            Self::SpawnAgent => {
                "Start a new named LLM agent that keeps its conversation between calls. \
                 Talk to it with send_message; it lives until shutdown_agent. \
                 Without provider or profile the daemon's default provider (openai) answers; \
                 provider \"echo\" is an offline test agent that replies with the message it got. \
                 budget caps what the agent may spend (\"2usd/day\", \"50000tokens/month\"); \
                 a call past it is refused until the budget resets."
            }
            Self::ListAgents => {
                "List the live agents with their state, provider, model, message count, \
                 token usage and own budget, if any. With all=true, agents that were shut down are listed too."
            }
            Self::SendMessage => {
                "Send a message to a live agent and return its reply. The agent sees its whole \
                 conversation so far. Messages to one agent are answered one at a time, in order."
            }
            Self::GetHistory => {
                "Read an agent's conversation, oldest first: the messages sent to it and its \
                 replies. Works after the agent was shut down."
            }
            Self::RunTask => {
                "Answer one prompt with a throwaway agent and return the reply; the agent is \
                 removed afterwards whatever happens. For a single question that needs no \
                 follow-up; use spawn_agent and send_message for a conversation. With provider \
                 claude-code or codex it is a coding agent working in cwd, its tool calls allowed \
                 or put to answer_approval as for spawn_agent; base_url, tools and budget work \
                 as spawn_agent's do."
            }
            Self::ShutdownAgent => {
                "Shut an agent down. Its name becomes free again; its history stays readable \
                 with get_history."
            }
            Self::ListModels => {
                "List the models a provider or profile offers (the daemon asks its model server)."
            }
            Self::SearchHistory => {
                "Search every conversation any agent ever had, live or shut down, for words or \
                 phrases; best matches first, each with the agent, the sender, the time and a \
                 snippet. Query syntax: words (all must appear), \"exact phrases\", OR, NOT, prefix*."
            }
            Self::InterruptAgent => {
                "Stop the reply an agent is writing now (a send_message that runs too long). \
                 What it said so far is kept in its history, marked interrupted, and is what the \
                 waiting send_message returns. Messages waiting behind it still run; an idle \
                 agent is left alone. The agent stays live."
            }
            Self::ListApprovals => {
                "List the tool calls that agents which act (Claude Code, Codex) are waiting to \
                 run until a person says yes or no: id, agent, tool, what it would run, where. \
                 Answer one with answer_approval. Unanswered ones are denied after the daemon's \
                 approval_timeout."
            }
            Self::AnswerApproval => {
                "Approve or deny one pending tool call by its id (from list_approvals). Approving \
                 lets the agent run it; denying tells the agent, with the reason if given. Only \
                 answer what the user has decided. An approval is answered once: a second \
                 answer, or one after it timed out, is refused."
            }
        }
    }

    fn input_schema(self) -> Arc<JsonObject> {
        match self {
            Self::SpawnAgent => schema::<SpawnAgentArgs>(),
            Self::ListAgents => schema::<ListAgentsArgs>(),
            Self::SendMessage => schema::<SendMessageArgs>(),
            Self::GetHistory => schema::<GetHistoryArgs>(),
            Self::RunTask => schema::<RunTaskArgs>(),
            Self::ShutdownAgent => schema::<ShutdownAgentArgs>(),
            Self::ListModels => schema::<ListModelsArgs>(),
            Self::SearchHistory => schema::<SearchHistoryArgs>(),
            Self::InterruptAgent => schema::<InterruptAgentArgs>(),
            Self::ListApprovals => schema::<ListApprovalsArgs>(),
            Self::AnswerApproval => schema::<AnswerApprovalArgs>(),
        }
    }

    fn annotations(self) -> ToolAnnotations {
        let (read_only, destructive) = match self {
            Self::ListAgents
            | Self::GetHistory
            | Self::ListModels
            | Self::SearchHistory
            | Self::ListApprovals => (true, false),
            // Approving lets an agent run a command.
            Self::ShutdownAgent | Self::InterruptAgent | Self::AnswerApproval => (false, true),
            Self::SpawnAgent | Self::SendMessage | Self::RunTask => (false, false),
        };
        let mut annotations = ToolAnnotations::new();
        annotations.read_only_hint = Some(read_only);
        annotations.destructive_hint = Some(destructive);
        // Providers are model servers out in the world; the rest is the daemon.
        annotations.open_world_hint = Some(matches!(
            self,
            Self::SendMessage | Self::RunTask | Self::ListModels
        ));
        annotations
    }

    pub fn tool(self) -> Tool {
        Tool::new(self.as_str(), self.description(), self.input_schema())
            .with_annotations(self.annotations())
    }
}

/// The input schema of a tool whose arguments are `T`.
fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::tool::schema_for_input::<T>().unwrap_or_else(|error| {
        // Only a programming error gets here, and a unit test catches it.
        tracing::error!(%error, "a tool's input schema is invalid");
        Arc::new(JsonObject::from_iter([("type".into(), "object".into())]))
    })
}

/// A tool call the client got wrong, or one the daemon refused: the text
/// the model is shown, as a tool result marked as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl From<CliError> for ToolError {
    fn from(error: CliError) -> Self {
        Self(error.to_string())
    }
}

/// What one tool call asks of the daemon.
#[derive(Debug)]
pub enum Call {
    /// `POST /agents`.
    Spawn(SpawnRequest),
    /// `GET /agents?…`.
    List(ListQuery),
    /// `POST /agents/{name}/message`, streamed.
    Message {
        agent: AgentName,
        body: MessageRequest,
    },
    /// `GET /agents/{name}/history?…`.
    History {
        agent: AgentName,
        query: HistoryQuery,
    },
    /// `POST /agents/{name}/task`, streamed.
    Task { agent: AgentName, body: TaskRequest },
    /// `DELETE /agents/{name}`.
    Shutdown(AgentName),
    /// `POST /agents/{name}/interrupt`.
    Interrupt(AgentName),
    /// `POST /models`.
    Models(ModelsRequest),
    /// `GET /search?…`.
    Search(SearchQuery),
    /// `GET /approvals?…`.
    Approvals(ApprovalsQuery),
    /// `POST /approvals/{id}`.
    Answer {
        id: ApprovalId,
        answer: AnswerRequest,
    },
}

/// Turns a call's arguments into what to ask the daemon, resolving API keys
/// from this process's environment under the CLI's rules.
pub fn plan(tool: ToolName, arguments: JsonObject, config_file: &Path) -> Result<Call, ToolError> {
    match tool {
        ToolName::SpawnAgent => {
            let args: SpawnAgentArgs = parse(arguments)?;
            let name = agent_name(&args.name)?;
            Ok(Call::Spawn(args.options()?.request(&name, config_file)?))
        }
        ToolName::ListAgents => {
            let args: ListAgentsArgs = parse(arguments)?;
            Ok(Call::List(args.query()?))
        }
        ToolName::SendMessage => {
            let args: SendMessageArgs = parse(arguments)?;
            let agent = agent_name(&args.agent)?;
            let body = MessageRequest {
                content: non_empty("content", args.content)?,
                stream: true,
                api_key: None,
            };
            Ok(Call::Message { agent, body })
        }
        ToolName::GetHistory => {
            let args: GetHistoryArgs = parse(arguments)?;
            let agent = agent_name(&args.agent)?;
            let query = HistoryQuery {
                limit: args.limit,
                all: args.all,
                conversation: None,
            };
            Ok(Call::History { agent, query })
        }
        ToolName::RunTask => {
            let args: RunTaskArgs = parse(arguments)?;
            let name = task_name()?;
            let prompt = non_empty("prompt", args.prompt.clone())?;
            let spawn = args.options()?.request(&name, config_file)?;
            let body = TaskRequest::new(spawn, prompt, true);
            Ok(Call::Task { agent: name, body })
        }
        ToolName::ShutdownAgent => {
            let args: ShutdownAgentArgs = parse(arguments)?;
            Ok(Call::Shutdown(agent_name(&args.agent)?))
        }
        ToolName::InterruptAgent => {
            let args: InterruptAgentArgs = parse(arguments)?;
            Ok(Call::Interrupt(agent_name(&args.agent)?))
        }
        ToolName::ListModels => {
            let args: ListModelsArgs = parse(arguments)?;
            Ok(Call::Models(args.endpoint().request(config_file)?))
        }
        ToolName::SearchHistory => {
            let args: SearchHistoryArgs = parse(arguments)?;
            let query = SearchQuery {
                q: non_empty("query", args.query)?,
                agent: args.agent.as_deref().map(agent_name).transpose()?,
                since: None,
                limit: args.limit,
            };
            Ok(Call::Search(query))
        }
        ToolName::ListApprovals => {
            let args: ListApprovalsArgs = parse(arguments)?;
            let agent = args.agent.as_deref().map(agent_name).transpose()?;
            Ok(Call::Approvals(ApprovalsQuery { agent }))
        }
        ToolName::AnswerApproval => {
            let args: AnswerApprovalArgs = parse(arguments)?;
            let id = ApprovalId::parse(&args.id.trim().to_ascii_lowercase())
                .map_err(|e| ToolError(e.to_string()))?;
            let decision = match args.decision.as_str() {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                other => {
                    return Err(ToolError(format!(
                        "decision must be \"approve\" or \"deny\", not {other:?}"
                    )));
                }
            };
            let answer = AnswerRequest {
                decision,
                reason: args.reason,
            };
            Ok(Call::Answer { id, answer })
        }
    }
}

/// Arguments that do not fit the schema are the model's to fix, so they are
/// a tool error saying what is wrong, not a protocol error.
fn parse<T: DeserializeOwned>(arguments: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(serde_json::Value::Object(arguments))
        .map_err(|e| ToolError(format!("invalid arguments: {e}")))
}

fn agent_name(raw: &str) -> Result<AgentName, ToolError> {
    AgentName::parse(raw).map_err(|e| ToolError(format!("invalid agent name {raw:?}: {e}")))
}

fn non_empty(field: &str, text: String) -> Result<String, ToolError> {
    if text.trim().is_empty() {
        return Err(ToolError(format!("{field} must not be empty")));
    }
    Ok(text)
}

/// A fresh name for a `run_task` agent, unique without asking the daemon
/// (41 characters of `[a-z0-9-]`, so always valid).
fn task_name() -> Result<AgentName, ToolError> {
    agent_name(&format!("mcp-task-{}", uuid::Uuid::new_v4().simple()))
}

/// `spawn_agent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnAgentArgs {
    /// The new agent's name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'. It must not belong to a live agent.
    pub name: String,
    /// The provider that answers: "openai" (the default), "anthropic", or "echo" (offline, built in, replies with the message it got). Give provider or profile, not both.
    #[serde(default)]
    pub provider: Option<String>,
    /// A provider profile instead of a provider: built in "openrouter", "local" or "gemini", or one defined in the user's config file.
    #[serde(default)]
    pub profile: Option<String>,
    /// The model to ask for; the provider's or profile's default if absent.
    #[serde(default)]
    pub model: Option<String>,
    /// The agent's instructions, sent as its system prompt with every message.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The provider's API base URL, to use a server other than the provider's own. No API key is sent to a base URL given here.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A coding agent's (claude-code, codex) working directory; relative to, and by default, the MCP server's own working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Tools the agent may use without asking: for a coding agent a tool name ("Read") or a rule like "Bash(git status:*)"; for an API agent an MCP server ("fs") or one of its tools ("fs.read_file").
    #[serde(default)]
    pub allow: Vec<String>,
    /// What a coding agent's other tool calls do: "ask" a person (the default; answer with answer_approval), "never" (denied), or "bypass" (run without asking; the daemon accepts it only when this server reaches it over its Unix socket).
    #[serde(default)]
    #[schemars(extend("enum" = ["ask", "never", "bypass"]))]
    pub approval: Option<String>,
    /// An API agent's tools: MCP servers from the user's config ("fs"), or one tool of a server ("fs.read_file"). Each call runs under its configured policy; calls that ask wait for answer_approval.
    #[serde(default)]
    pub tools: Vec<String>,
    /// This agent's own spending limit, besides the budgets in the user's config: an amount in usd or tokens, per /day, /month (UTC calendar) or /total (the default), e.g. "2usd/day", "50000tokens/month", "5usd". A call that does not fit is refused with an error saying which budget and when it resets.
    #[serde(default)]
    pub budget: Option<String>,
}

impl SpawnAgentArgs {
    fn options(&self) -> Result<AgentOptions, ToolError> {
        let mut options = agent_options(
            &self.provider,
            &self.profile,
            &self.model,
            &self.instructions,
            &self.base_url,
        );
        options.cwd = self.cwd.as_deref().map(PathBuf::from);
        options.allow = self.allow.clone();
        options.approval = self.approval.as_deref().map(approval_mode).transpose()?;
        options.tools = self.tools.clone();
        options.budget = self.budget.clone();
        Ok(options)
    }
}

/// `spawn_agent`'s `approval`, spelled as the CLI's `--approval` is.
fn approval_mode(raw: &str) -> Result<ApprovalArg, ToolError> {
    match raw {
        "ask" => Ok(ApprovalArg::Ask),
        "never" => Ok(ApprovalArg::Never),
        "bypass" => Ok(ApprovalArg::Bypass),
        other => Err(ToolError(format!(
            "approval must be \"ask\", \"never\" or \"bypass\", not {other:?}"
        ))),
    }
}

/// The CLI's options for an agent a tool call spawns. Never `api_key_env`:
/// a tool call must not pick which of the user's variables is sent where.
fn agent_options(
    provider: &Option<String>,
    profile: &Option<String>,
    model: &Option<String>,
    instructions: &Option<String>,
    base_url: &Option<String>,
) -> AgentOptions {
    AgentOptions {
        endpoint: EndpointOptions {
            provider: provider.clone(),
            profile: profile.clone(),
            base_url: base_url.clone(),
            api_key_env: None,
        },
        model: model.clone(),
        instructions: instructions.clone(),
        tools: Vec::new(),
        cwd: None,
        allow: Vec::new(),
        approval: None,
        budget: None,
    }
}

/// `list_agents`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAgentsArgs {
    /// Only agents in this state.
    #[serde(default)]
    #[schemars(extend("enum" = ["idle", "processing", "failed", "suspended", "terminated"]))]
    pub state: Option<String>,
    /// Only agents of this provider (e.g. "openai", "anthropic", "echo").
    #[serde(default)]
    pub provider: Option<String>,
    /// Also list agents that were shut down (the last one of each name), as terminated.
    #[serde(default)]
    pub all: bool,
}

impl ListAgentsArgs {
    fn query(&self) -> Result<ListQuery, ToolError> {
        let state = match &self.state {
            Some(state) => Some(state.parse::<AgentState>().map_err(ToolError)?),
            None => None,
        };
        Ok(ListQuery {
            state,
            provider: self.provider.clone(),
            all: self.all,
        })
    }
}

/// `send_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageArgs {
    /// The name of the live agent to talk to (see list_agents).
    pub agent: String,
    /// The message to send.
    pub content: String,
}

/// `get_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetHistoryArgs {
    /// The agent's name; it may have been shut down.
    pub agent: String,
    /// Only the last this many messages; all of them if absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Also the conversations of earlier agents that had this name, oldest first.
    #[serde(default)]
    pub all: bool,
}

/// `search_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchHistoryArgs {
    /// What to look for: words (all must appear), "exact phrases", OR, NOT, prefix*.
    pub query: String,
    /// Only this agent's conversations (every one its name has had).
    #[serde(default)]
    pub agent: Option<String>,
    /// At most this many results (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `run_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunTaskArgs {
    /// The prompt to answer.
    pub prompt: String,
    /// The provider that answers: "openai" (the default), "anthropic", or "echo" (offline, built in, replies with the message it got). Give provider or profile, not both.
    #[serde(default)]
    pub provider: Option<String>,
    /// A provider profile instead of a provider: built in "openrouter", "local" or "gemini", or one defined in the user's config file.
    #[serde(default)]
    pub profile: Option<String>,
    /// The model to ask for; the provider's or profile's default if absent.
    #[serde(default)]
    pub model: Option<String>,
    /// The agent's instructions, sent as its system prompt with every message.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The provider's API base URL, to use a server other than the provider's own. No API key is sent to a base URL given here.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A coding agent's (provider claude-code or codex) working directory; relative to, and by default, the MCP server's own working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Tools the agent may use without asking: for a coding agent a tool name ("Read") or a rule like "Bash(git status:*)"; for an API agent an MCP server ("fs") or one of its tools ("fs.read_file").
    #[serde(default)]
    pub allow: Vec<String>,
    /// What a coding agent's other tool calls do: "ask" a person (the default; answer with answer_approval while the task runs), "never" (denied), or "bypass" (run without asking; the daemon accepts it only when this server reaches it over its Unix socket).
    #[serde(default)]
    #[schemars(extend("enum" = ["ask", "never", "bypass"]))]
    pub approval: Option<String>,
    /// An API agent's tools: MCP servers from the user's config ("fs"), or one tool of a server ("fs.read_file"). Each call runs under its configured policy; calls that ask wait for answer_approval while the task runs.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The task agent's own spending limit, besides the budgets in the user's config: an amount in usd or tokens, per /day, /month (UTC calendar) or /total (the default), e.g. "2usd/day", "50000tokens/month", "5usd". A call that does not fit is refused with an error saying which budget and when it resets.
    #[serde(default)]
    pub budget: Option<String>,
}

impl RunTaskArgs {
    /// As `spawn_agent`'s, so a task is any agent a spawn could be: a
    /// coding agent working where the work is, or an API agent on its own
    /// server, with tools and a budget.
    fn options(&self) -> Result<AgentOptions, ToolError> {
        let mut options = agent_options(
            &self.provider,
            &self.profile,
            &self.model,
            &self.instructions,
            &self.base_url,
        );
        options.cwd = self.cwd.as_deref().map(PathBuf::from);
        options.allow = self.allow.clone();
        options.approval = self.approval.as_deref().map(approval_mode).transpose()?;
        options.tools = self.tools.clone();
        options.budget = self.budget.clone();
        Ok(options)
    }
}

/// `shutdown_agent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownAgentArgs {
    /// The name of the live agent to shut down.
    pub agent: String,
}

/// `interrupt_agent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterruptAgentArgs {
    /// The name of the live agent whose reply in progress to stop.
    pub agent: String,
}

/// `list_approvals`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListApprovalsArgs {
    /// Only this agent's pending approvals.
    #[serde(default)]
    pub agent: Option<String>,
}

/// `answer_approval`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerApprovalArgs {
    /// The approval's id, six hex digits, as list_approvals gives it.
    pub id: String,
    /// "approve" lets the tool call run; "deny" refuses it.
    #[schemars(extend("enum" = ["approve", "deny"]))]
    pub decision: String,
    /// Why, for a denial: the agent is told, and may try another way.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `list_models`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListModelsArgs {
    /// The provider to ask: "openai" (the default), "anthropic" or "echo". Give provider or profile, not both.
    #[serde(default)]
    pub provider: Option<String>,
    /// A provider profile to ask instead: "openrouter", "local", "gemini", or one from the user's config file.
    #[serde(default)]
    pub profile: Option<String>,
}

impl ListModelsArgs {
    fn endpoint(&self) -> EndpointOptions {
        EndpointOptions {
            provider: self.provider.clone(),
            profile: self.profile.clone(),
            base_url: None,
            api_key_env: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::wire::Route;

    use super::*;

    fn config() -> std::path::PathBuf {
        // Missing: the built-in providers and profiles only.
        std::env::temp_dir().join("orchestration-mcp-tests-no-such-config.toml")
    }

    fn call(tool: ToolName, arguments: Value) -> Result<Call, ToolError> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object");
        };
        plan(tool, arguments, &config())
    }

    fn error(tool: ToolName, arguments: Value) -> String {
        call(tool, arguments)
            .expect_err("the call should be refused")
            .0
    }

    fn wire(request: &impl serde::Serialize) -> Value {
        serde_json::to_value(request).unwrap()
    }

    #[test]
    fn the_tools_are_exactly_these_with_object_schemas() {
        let names: Vec<&str> = ToolName::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "spawn_agent",
                "list_agents",
                "send_message",
                "get_history",
                "run_task",
                "shutdown_agent",
                "list_models",
                "search_history",
                "interrupt_agent",
                "list_approvals",
                "answer_approval",
            ]
        );
        let required = |tool: ToolName| -> Vec<String> {
            let schema = Value::Object(tool.input_schema().as_ref().clone());
            assert_eq!(schema["type"], "object", "{schema}");
            assert_eq!(schema["additionalProperties"], false, "{schema}");
            for (field, property) in schema["properties"].as_object().unwrap() {
                assert!(
                    property["description"]
                        .as_str()
                        .is_some_and(|d| d.len() > 10),
                    "{} {field} has no description",
                    tool.as_str()
                );
            }
            serde_json::from_value(schema["required"].clone()).unwrap_or_default()
        };
        assert_eq!(required(ToolName::SpawnAgent), ["name"]);
        assert!(required(ToolName::ListAgents).is_empty());
        assert_eq!(required(ToolName::SendMessage), ["agent", "content"]);
        assert_eq!(required(ToolName::GetHistory), ["agent"]);
        assert_eq!(required(ToolName::RunTask), ["prompt"]);
        assert_eq!(required(ToolName::ShutdownAgent), ["agent"]);
        assert!(required(ToolName::ListModels).is_empty());
        assert_eq!(required(ToolName::SearchHistory), ["query"]);
        assert_eq!(required(ToolName::InterruptAgent), ["agent"]);
        assert!(required(ToolName::ListApprovals).is_empty());
        assert_eq!(required(ToolName::AnswerApproval), ["id", "decision"]);
        for tool in ToolName::ALL {
            assert_eq!(ToolName::parse(tool.as_str()), Some(tool));
        }
        assert_eq!(
            ToolName::parse("search_history"),
            Some(ToolName::SearchHistory)
        );
    }

    #[test]
    fn the_state_enum_is_every_state() {
        let schema = Value::Object(ToolName::ListAgents.input_schema().as_ref().clone());
        let states: Vec<String> = AgentState::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(schema["properties"]["state"]["enum"], json!(states));
    }

    #[test]
    fn spawn_agent_maps_onto_the_spawn_request() {
        let Call::Spawn(request) = call(
            ToolName::SpawnAgent,
            json!({"name": "scratch", "provider": "echo", "model": "m1", "instructions": "Be brief."}),
        )
        .unwrap() else {
            panic!("not a spawn");
        };
        assert_eq!(
            wire(&request),
            json!({"name": "scratch", "provider": "echo", "model": "m1", "instructions": "Be brief."})
        );
    }

    #[test]
    fn a_base_url_named_in_a_call_gets_no_key() {
        // Whatever OPENAI_API_KEY holds here, it never follows a typed URL.
        let Call::Spawn(request) = call(
            ToolName::SpawnAgent,
            json!({"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}),
        )
        .unwrap() else {
            panic!("not a spawn");
        };
        assert_eq!(request.api_key, None);
        assert_eq!(request.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        // Nor can a call name the variable to send.
        let refused = error(
            ToolName::SpawnAgent,
            json!({"name": "x", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "HOME"}),
        );
        assert!(refused.contains("api_key_env"), "{refused}");
    }

    #[test]
    fn bad_arguments_are_tool_errors_that_say_what_is_wrong() {
        assert!(error(ToolName::SpawnAgent, json!({})).contains("`name`"));
        assert!(error(ToolName::SpawnAgent, json!({"name": "-x"})).contains("-x"));
        assert!(error(ToolName::SendMessage, json!({"agent": "a"})).contains("`content`"));
        assert!(
            error(ToolName::SendMessage, json!({"agent": "a", "content": " "})).contains("empty")
        );
        assert!(
            error(ToolName::GetHistory, json!({"agent": "a", "limit": -1})).contains("invalid")
        );
        assert!(error(ToolName::ListAgents, json!({"state": "asleep"})).contains("asleep"));
        assert!(error(ToolName::RunTask, json!({"provider": "echo"})).contains("`prompt`"));
    }

    #[test]
    fn send_message_streams_to_the_agents_message_route() {
        let Call::Message { agent, body } = call(
            ToolName::SendMessage,
            json!({"agent": "scratch", "content": "hello there"}),
        )
        .unwrap() else {
            panic!("not a message");
        };
        assert_eq!(Route::Message(agent).target(), "/agents/scratch/message");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"content": "hello there", "stream": true})
        );
    }

    #[test]
    fn queries_carry_their_filters() {
        let Call::List(query) = call(
            ToolName::ListAgents,
            json!({"state": "idle", "provider": "echo", "all": true}),
        )
        .unwrap() else {
            panic!("not a list");
        };
        assert_eq!(
            Route::ListAgents(query).target(),
            "/agents?state=idle&provider=echo&all=true"
        );
        let Call::List(query) = call(ToolName::ListAgents, json!({})).unwrap() else {
            panic!("not a list");
        };
        assert_eq!(Route::ListAgents(query).target(), "/agents");
        let Call::History { agent, query } = call(
            ToolName::GetHistory,
            json!({"agent": "scratch", "limit": 3, "all": true}),
        )
        .unwrap() else {
            panic!("not a history");
        };
        assert_eq!(
            Route::History(agent, query).target(),
            "/agents/scratch/history?limit=3&all=true"
        );
    }

    #[test]
    fn run_task_names_a_fresh_agent_and_streams() {
        let plan_task = || {
            let Call::Task { agent, body } = call(
                ToolName::RunTask,
                json!({"prompt": "one shot", "provider": "echo", "instructions": "Be brief."}),
            )
            .unwrap() else {
                panic!("not a task");
            };
            (agent, wire(&body))
        };
        let (agent, body) = plan_task();
        let name = body["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("mcp-task-"), "{name}");
        assert_eq!(agent.as_str(), name);
        assert_eq!(body["prompt"], "one shot");
        assert_eq!(body["stream"], true);
        assert_eq!(body["provider"], "echo");
        assert_eq!(body["instructions"], "Be brief.");
        assert_ne!(plan_task().1["name"], body["name"], "names are unique");
    }

    #[test]
    fn shutdown_and_models_map_onto_their_routes() {
        let Call::Shutdown(agent) =
            call(ToolName::ShutdownAgent, json!({"agent": "scratch"})).unwrap()
        else {
            panic!("not a shutdown");
        };
        assert_eq!(agent.as_str(), "scratch");
        let Call::Interrupt(agent) =
            call(ToolName::InterruptAgent, json!({"agent": "busy"})).unwrap()
        else {
            panic!("not an interrupt");
        };
        assert_eq!(agent.as_str(), "busy");
        let Call::Models(request) =
            call(ToolName::ListModels, json!({"provider": "echo"})).unwrap()
        else {
            panic!("not models");
        };
        assert_eq!(wire(&request), json!({"provider": "echo"}));
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;

    #[test]
    fn search_history_maps_to_the_search_route() {
        let arguments = serde_json::json!({"query": "zebra crossing", "agent": "ops", "limit": 3});
        let serde_json::Value::Object(arguments) = arguments else {
            unreachable!()
        };
        let Ok(Call::Search(query)) = plan(
            ToolName::SearchHistory,
            arguments,
            std::path::Path::new("/nonexistent"),
        ) else {
            panic!("not a search");
        };
        assert_eq!(
            crate::wire::Route::Search(query).target(),
            "/search?q=zebra%20crossing&agent=ops&limit=3"
        );
        let bad = serde_json::json!({"query": " "});
        let serde_json::Value::Object(bad) = bad else {
            unreachable!()
        };
        assert!(plan(ToolName::SearchHistory, bad, std::path::Path::new("/x")).is_err());
    }
}

#[cfg(test)]
mod approval_tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::wire::Route;

    fn call(tool: ToolName, arguments: Value) -> Result<Call, ToolError> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object");
        };
        plan(tool, arguments, Path::new("/nonexistent"))
    }

    #[test]
    fn approvals_map_onto_their_routes() {
        let Ok(Call::Approvals(query)) = call(ToolName::ListApprovals, json!({"agent": "coder"}))
        else {
            panic!("not a list");
        };
        assert_eq!(Route::Approvals(query).target(), "/approvals?agent=coder");
        let Ok(Call::Answer { id, answer }) = call(
            ToolName::AnswerApproval,
            json!({"id": "3F9C2A", "decision": "deny", "reason": "not there"}),
        ) else {
            panic!("not an answer");
        };
        assert_eq!(Route::Answer(id).target(), "/approvals/3f9c2a");
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"decision": "deny", "reason": "not there"})
        );
    }

    #[test]
    fn bad_answers_are_tool_errors() {
        let refused = |arguments| call(ToolName::AnswerApproval, arguments).unwrap_err().0;
        assert!(refused(json!({"id": "3f9c2a", "decision": "maybe"})).contains("maybe"));
        assert!(
            refused(json!({"id": "../x", "decision": "approve"})).contains("not an approval id")
        );
        assert!(refused(json!({"decision": "approve"})).contains("`id`"));
    }
}

#[cfg(test)]
mod coding_spawn_tests {
    use serde_json::{Value, json};

    use super::*;

    fn spawn(arguments: Value) -> Result<SpawnRequest, ToolError> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object");
        };
        match plan(ToolName::SpawnAgent, arguments, Path::new("/nonexistent"))? {
            Call::Spawn(request) => Ok(request),
            other => panic!("not a spawn: {other:?}"),
        }
    }

    fn wire(request: &SpawnRequest) -> Value {
        serde_json::to_value(request).expect("a spawn request serializes")
    }

    #[test]
    fn a_coding_agent_gets_its_cwd_allow_and_approval() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        let request = spawn(json!({
            "name": "coder",
            "provider": "claude-code",
            "cwd": dir.path(),
            "allow": ["Read", "Bash(git status:*)"],
            "approval": "never",
        }))
        .expect("a spawn");
        let body = wire(&request);
        assert_eq!(body["cwd"], real.display().to_string(), "{body}");
        assert_eq!(body["allow"], json!(["Read", "Bash(git status:*)"]));
        assert_eq!(body["approval"], "never");
        // Bypass is passed on: the daemon decides by the transport.
        let bypass = spawn(json!({"name": "c", "provider": "codex", "approval": "bypass"}));
        assert_eq!(wire(&bypass.expect("a spawn"))["approval"], "bypass");
    }

    #[test]
    fn a_coding_agent_works_in_the_servers_cwd_unless_told() {
        let here = std::fs::canonicalize(".").expect("this process's cwd");
        let request = spawn(json!({"name": "coder", "provider": "claude-code"})).expect("a spawn");
        assert_eq!(wire(&request)["cwd"], here.display().to_string());
        // A chat agent has no working directory, and sends none of these.
        let chat = wire(&spawn(json!({"name": "chat", "provider": "echo"})).expect("a spawn"));
        for field in ["cwd", "allow", "approval"] {
            assert!(chat.get(field).is_none(), "{chat}");
        }
    }

    #[test]
    fn run_task_takes_a_coding_agents_cwd_allow_and_approval() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        let task = |arguments: Value| {
            let Value::Object(arguments) = arguments else {
                panic!("arguments must be an object");
            };
            match plan(ToolName::RunTask, arguments, Path::new("/nonexistent")) {
                Ok(Call::Task { body, .. }) => {
                    Ok(serde_json::to_value(&body).expect("a task serializes"))
                }
                Ok(other) => panic!("not a task: {other:?}"),
                Err(error) => Err(error.0),
            }
        };
        let body = task(json!({
            "prompt": "fix it",
            "provider": "codex",
            "cwd": dir.path(),
            "allow": ["cargo test"],
            "approval": "never",
        }))
        .expect("a task");
        assert_eq!(body["cwd"], real.display().to_string(), "{body}");
        assert_eq!(body["allow"], json!(["cargo test"]));
        assert_eq!(body["approval"], "never");
        assert_eq!(body["prompt"], "fix it");
        let mode = task(json!({"prompt": "p", "provider": "codex", "approval": "yolo"}));
        assert!(mode.expect_err("refused").contains("yolo"));
        let missing = task(json!({"prompt": "p", "provider": "codex", "cwd": "/nonexistent/t"}));
        assert!(missing.expect_err("refused").contains("/nonexistent/t"));
    }

    #[test]
    fn bad_coding_arguments_are_tool_errors() {
        let refused = |arguments| spawn(arguments).expect_err("refused").0;
        let mode = refused(json!({"name": "c", "provider": "claude-code", "approval": "yolo"}));
        assert!(mode.contains("yolo") && mode.contains("bypass"), "{mode}");
        let missing = refused(json!({
            "name": "c",
            "provider": "claude-code",
            "cwd": "/nonexistent/orchestration-mcp-cwd",
        }));
        assert!(
            missing.contains("/nonexistent/orchestration-mcp-cwd"),
            "{missing}"
        );
        let not_a_list = refused(json!({"name": "c", "allow": "Read"}));
        assert!(not_a_list.contains("invalid arguments"), "{not_a_list}");
    }
}

#[cfg(test)]
mod budget_tests {
    use serde_json::{Value, json};

    use super::*;

    fn planned(tool: ToolName, arguments: Value) -> Value {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object");
        };
        match plan(tool, arguments, Path::new("/nonexistent")) {
            Ok(Call::Spawn(request)) => serde_json::to_value(&request).expect("serializes"),
            Ok(Call::Task { body, .. }) => serde_json::to_value(&body).expect("serializes"),
            Ok(other) => panic!("not a spawn or task: {other:?}"),
            Err(error) => panic!("refused: {}", error.0),
        }
    }

    #[test]
    fn spawn_agent_sends_its_budget_as_written() {
        let body = planned(
            ToolName::SpawnAgent,
            json!({"name": "capped", "provider": "echo", "budget": "2usd/day"}),
        );
        assert_eq!(body["budget"], "2usd/day", "{body}");
        // The daemon judges it, so a bad one is refused with its sentence.
        let body = planned(
            ToolName::SpawnAgent,
            json!({"name": "capped", "provider": "echo", "budget": "lots"}),
        );
        assert_eq!(body["budget"], "lots", "{body}");
        let none = planned(
            ToolName::SpawnAgent,
            json!({"name": "free", "provider": "echo"}),
        );
        assert!(none.get("budget").is_none(), "{none}");
    }

    #[test]
    fn run_task_takes_base_url_tools_and_budget_as_spawn_agent_does() {
        let arguments = json!({
            "prompt": "p",
            "provider": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "tools": ["fs", "fs.read_text_file"],
            "allow": ["fs"],
            "budget": "50000tokens/month",
        });
        let task = planned(ToolName::RunTask, arguments.clone());
        let mut spawn_arguments = arguments;
        let spawn_object = spawn_arguments.as_object_mut().expect("an object");
        spawn_object.remove("prompt");
        spawn_object.insert("name".into(), json!("x"));
        let spawn = planned(ToolName::SpawnAgent, spawn_arguments);
        for field in ["provider", "base_url", "tools", "allow", "budget"] {
            assert_eq!(task[field], spawn[field], "{field}: {task} / {spawn}");
        }
        assert_eq!(task["base_url"], "http://127.0.0.1:9/v1");
        assert_eq!(task["tools"], json!(["fs", "fs.read_text_file"]));
        assert_eq!(task["budget"], "50000tokens/month");
        // No key follows a base URL a call names, for a task as for a spawn.
        assert!(task.get("api_key").is_none(), "{task}");
    }
}
