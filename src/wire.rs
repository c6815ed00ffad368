//! The wire protocol: request, response, query and stream-line types the
//! daemon parses and the client builds, shared by both. The shapes match
//! the Python daemon this project replaces; unknown request fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod route;
pub use route::{Route, RouteError, UiFile};

use crate::model::{
    AgentBudget, AgentConfig, AgentName, AgentState, Approval, ApprovalMode, BudgetState, Decision,
    Message, ProviderSpec, SearchHit, Secret, ToolCall, ToolResult, Verdict, Workspace,
};

/// The body of `POST /agents`: a new agent's name, and what it runs on.
/// (The endpoint fields are spelled out, not flattened from
/// [`ModelsRequest`]: a flattened field's errors would not name it.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnRequest {
    pub name: AgentName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key itself, as in [`ModelsRequest::api_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A coding agent's working directory (the CLI sends its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Tool patterns a coding agent may run without asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// What a coding agent's other tool calls do: ask (the default),
    /// never (denied), bypass (run without asking; Unix socket only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalMode>,
    /// An API agent's tools: MCP server names from `[mcp_servers.NAME]`,
    /// or `server.tool` for one tool of a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// A spending limit for this agent alone, as `spawn --budget` takes it
    /// (`2usd/day`, `100000tokens/month`, `5usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

impl SpawnRequest {
    /// Agent `name` on `endpoint`, with the provider's defaults for the rest.
    pub fn new(name: AgentName, endpoint: ModelsRequest) -> Self {
        Self {
            name,
            agent_type: None,
            model: None,
            instructions: None,
            provider: endpoint.provider,
            profile: endpoint.profile,
            base_url: endpoint.base_url,
            api_key: endpoint.api_key,
            headers: endpoint.headers,
            cwd: None,
            allow: None,
            approval: None,
            tools: None,
            budget: None,
        }
    }

    /// The agent's config; fails on a `budget` that does not parse (the
    /// sentence says how to write one).
    pub fn into_config(self) -> Result<AgentConfig, String> {
        let budget = self
            .budget
            .as_deref()
            .map(str::parse::<AgentBudget>)
            .transpose()?;
        Ok(AgentConfig {
            name: self.name,
            agent_type: self.agent_type.unwrap_or_else(|| "api".to_owned()),
            instructions: self.instructions,
            provider: ProviderSpec {
                provider: self.provider,
                profile: self.profile,
                model: self.model,
                base_url: self.base_url,
                api_key: self.api_key.map(Secret::new),
                headers: self.headers.unwrap_or_default(),
            },
            workspace: Workspace {
                cwd: self.cwd,
                allow: self.allow.unwrap_or_default(),
                approval: self.approval.unwrap_or_default(),
                session: None,
                tools: self.tools.unwrap_or_default(),
            },
            budget,
        })
    }
}

/// The body of `POST /agents/{name}/task`: a spawn (whose `name`, if
/// given, must be the path's) plus the one prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<AgentName>,
    pub prompt: String,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A coding agent's working directory (the CLI sends its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Tool patterns a coding agent may run without asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// What a coding agent's other tool calls do: ask (the default),
    /// never (denied), bypass (run without asking; Unix socket only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalMode>,
    /// An API agent's tools: MCP server names from `[mcp_servers.NAME]`,
    /// or `server.tool` for one tool of a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// A spending limit for this agent alone, as `spawn --budget` takes it
    /// (`2usd/day`, `100000tokens/month`, `5usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

impl TaskRequest {
    /// The task for the agent `spawn` names, spawned as it asks.
    pub fn new(spawn: SpawnRequest, prompt: String, stream: bool) -> Self {
        Self {
            name: Some(spawn.name),
            prompt,
            stream,
            agent_type: spawn.agent_type,
            model: spawn.model,
            instructions: spawn.instructions,
            provider: spawn.provider,
            profile: spawn.profile,
            base_url: spawn.base_url,
            api_key: spawn.api_key,
            headers: spawn.headers,
            cwd: spawn.cwd,
            allow: spawn.allow,
            approval: spawn.approval,
            tools: spawn.tools,
            budget: spawn.budget,
        }
    }

    /// The spawn half of the task, for agent `name`.
    pub fn spawn(self, name: AgentName) -> SpawnRequest {
        SpawnRequest {
            name,
            agent_type: self.agent_type,
            model: self.model,
            instructions: self.instructions,
            provider: self.provider,
            profile: self.profile,
            base_url: self.base_url,
            api_key: self.api_key,
            headers: self.headers,
            cwd: self.cwd,
            allow: self.allow,
            approval: self.approval,
            tools: self.tools,
            budget: self.budget,
        }
    }
}

/// The body of `POST /models`, and the endpoint half of a spawn: which
/// model server, with which key. A POST, not a query, because it carries
/// the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key itself. There is no `api_key_env`: an older client may still
    /// send one, and it is ignored like any unknown field, because the daemon
    /// never reads an environment variable a request names (the CLI resolves
    /// `--api-key-env` itself and sends the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

impl ModelsRequest {
    /// The provider the request names (no model: a spawn adds its own).
    pub fn into_spec(self) -> ProviderSpec {
        ProviderSpec {
            provider: self.provider,
            profile: self.profile,
            model: None,
            base_url: self.base_url,
            api_key: self.api_key.map(Secret::new),
            headers: self.headers.unwrap_or_default(),
        }
    }
}

/// The body of `POST /agents/{name}/message`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageRequest {
    pub content: String,
    #[serde(default)]
    pub stream: bool,
    /// A key for an agent spawned without one whose key the daemon lacks
    /// (a suspended agent runs again with it). Ignored by an agent that has
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Messages {
    pub messages: Vec<Message>,
}

/// The answer of `POST /agents/{name}/interrupt` (202): whether a turn
/// was running and has been stopped (false: the agent was idle, and
/// nothing happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    pub interrupted: bool,
}

/// The answer of `POST /ui/link`: where the web page is, with a one-time
/// login token in the URL's fragment (which a browser never sends to a
/// server), good for `expires_in_s` seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiLink {
    pub url: String,
    pub expires_in_s: u64,
}

/// The answer of `POST /models`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Models {
    pub provider: String,
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub agents: usize,
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
    /// When the config was loaded, and whether the last reload failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigStatus>,
    /// The config's `[[budgets]]` and where each stands (`serve --status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetState>,
}

/// The config the daemon runs with: when it was loaded (at start or by the
/// last good reload), and the error of the last reload if that one failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub path: String,
    pub loaded_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
}

/// The answer of `POST /reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    pub status: String,
    pub config: ConfigStatus,
    /// Suspended agents that run again.
    pub revived: Vec<AgentName>,
    /// Agents that cannot run with the new settings, and why.
    pub suspended: BTreeMap<AgentName, String>,
}

/// One line of a streamed (`application/x-ndjson`) reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamLine {
    /// The message waits behind `ahead` others to the same agent; a later
    /// `queued` line with `ahead: 0` says it is now being sent to the model.
    /// Sent only for a message that had to wait.
    Queued {
        ahead: usize,
    },
    Delta {
        content: String,
    },
    Message {
        message: Message,
    },
    /// An agent that acts started a tool call (it is stored as a
    /// `tool_call` message too).
    #[serde(rename = "tool_call")]
    ToolCall {
        call: ToolCall,
    },
    /// A tool call's result (stored as a `tool_result` message too).
    #[serde(rename = "tool_result")]
    ToolResult {
        result: ToolResult,
    },
    /// A tool call waits for a person's answer: `approve ID` / `deny ID`,
    /// or `y`/`n` at the terminal that sent the message.
    Approval {
        approval: Approval,
    },
    Done,
    /// The exchange failed: the status and code it would have had as a
    /// response of its own.
    Error {
        status: u16,
        #[serde(default)]
        code: ErrorCode,
        detail: String,
    },
    /// A line type this version does not know (from a newer daemon): skipped.
    #[serde(other)]
    Unknown,
}

/// An approval's id as a path segment (`POST /approvals/{id}`): six
/// lowercase hex digits, the only shape the daemon hands out, so anything
/// else is refused before it is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApprovalId(String);

/// Why a text is not an approval id (the client's mistake: 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an approval id: ids are six lowercase hex digits, as `orchestration approvals` lists them"
)]
pub struct InvalidApprovalId(pub String);

impl ApprovalId {
    pub const LEN: usize = 6;

    pub fn parse(text: &str) -> Result<Self, InvalidApprovalId> {
        let well_formed = text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidApprovalId(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ApprovalId {
    type Err = InvalidApprovalId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The longest `reason` an answer may carry: it goes to the model and into
/// every event reader's stream, so it stays a sentence, not a document.
pub const MAX_REASON_BYTES: usize = 2048;

/// The body of `POST /approvals/{id}`: the person's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRequest {
    pub decision: Decision,
    /// Why, for a denial (the agent is told); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AnswerRequest {
    /// The verdict this answer gives; an empty reason counts as none.
    pub fn into_verdict(self) -> Verdict {
        Verdict {
            decision: self.decision,
            reason: self.reason.filter(|reason| !reason.trim().is_empty()),
        }
    }
}

/// The answer of `POST /approvals/{id}` (200): the approval as it was
/// pending, with the decision taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    #[serde(flatten)]
    pub approval: Approval,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The query of `GET /approvals`: `?agent=NAME` for one agent's only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalsQuery {
    pub agent: Option<AgentName>,
}

impl Query for ApprovalsQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        if key == "agent" && !value.is_empty() {
            self.agent = Some(agent_param(&value)?);
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        self.agent
            .iter()
            .map(|agent| ("agent", agent.to_string()))
            .collect()
    }
}

/// The body of `POST /messages`: one prompt to several agents at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanOutRequest {
    pub agents: Vec<AgentName>,
    pub content: String,
    #[serde(default)]
    pub stream: bool,
}

/// One line of a streamed fan-out: a reply's line tagged with its agent;
/// the last line, `{"type":"done"}`, has no agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanOutLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentName>,
    #[serde(flatten)]
    pub line: StreamLine,
}

/// One agent's outcome in a fan-out answered whole: its reply, or its error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FanOutResult {
    Replied(Messages),
    Failed {
        status: u16,
        #[serde(default)]
        code: ErrorCode,
        detail: String,
    },
}

/// Every error response's body: `{"detail": "...", "code": "..."}`.
/// Clients decide on `code`; `detail` is for people.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: String,
    /// Absent only from answers that did not come from this daemon's API.
    #[serde(default)]
    pub code: ErrorCode,
    /// The variable whose key an agent lacks, so a client can send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_key: Option<String>,
}

/// What went wrong, for programs: the `code` of every error body and of
/// every `error` stream line. Stable: a code once published keeps its
/// meaning. A client that meets a code it does not know (from a newer
/// daemon) reads it as [`ErrorCode::Other`] and goes by the status.
///
/// Adding an error: one variant here, one arm in `ApiError::code`, one row
/// in README's table of codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No live agent has that name (or no agent ever had it, for history).
    NotFound,
    /// The agent was shut down while a message waited for its reply.
    AgentGone,
    NameTaken,
    /// The agent exists but cannot run; `missing_key` names the variable
    /// when a key is what it lacks.
    Suspended,
    /// A spawn (or models request) needs a key that neither side has.
    MissingKey,
    UnknownProvider,
    UnknownProfile,
    InvalidProfile,
    InvalidBaseUrl,
    InvalidHeader,
    /// The provider or profile has no default model and none was given.
    NoModel,
    /// The daemon could not set up its HTTP client for the model server.
    SetupFailed,
    InvalidName,
    InvalidBody,
    InvalidQuery,
    /// The full-text index cannot read the search query.
    InvalidSearch,
    QueueFull,
    /// Every coding-agent process slot (`limits.max_agent_processes`) is
    /// taken and as many turns already wait for one.
    ProcessesBusy,
    /// The reply was cut short (the daemon is stopping, or the caller left).
    Interrupted,
    UpstreamUnreachable,
    /// The model server answered with an error status.
    UpstreamStatus,
    UpstreamTimeout,
    /// The model server's answer could not be read.
    UpstreamProtocol,
    /// The model server reported an error mid-reply, or the call failed otherwise.
    UpstreamError,
    /// A reply passed one of the daemon's limits (`limits.max_reply_bytes`,
    /// the stream line length, `providers.turn_timeout`).
    ReplyLimit,
    /// The state store could not be written or read.
    Storage,
    TooLarge,
    HeadTooLarge,
    BodyTimeout,
    BodyUnreadable,
    BadPath,
    NoRoute,
    MethodNotAllowed,
    Unauthorized,
    Forbidden,
    /// The listener is at its connection cap.
    TooManyConnections,
    /// `limits.max_event_streams` event streams are already open.
    TooManyStreams,
    ReloadFailed,
    /// No approval has that id: never asked, or answered so long ago it is forgotten.
    ApprovalNotFound,
    /// The approval was answered already, or it expired (timed out, its
    /// turn ended, the daemon stopped): an approval is answered at most once.
    AlreadyResolved,
    /// An approval id that is not six lowercase hex digits.
    InvalidApprovalId,
    /// A coding agent (`claude-code`, `codex`) where a model server was meant
    /// (listing models).
    NoEndpoint,
    /// A coding agent's executable is not installed where the daemon looks.
    NotInstalled,
    /// A coding agent's `cwd` does not exist, is not a directory, or is not the user's.
    InvalidCwd,
    /// A Claude Code `allow` pattern the CLI would read as several (a space
    /// or comma outside its parentheses), or patterns too long together.
    InvalidAllow,
    /// A coding agent's child exited (or could not start) during the turn;
    /// the next message starts a new one that resumes the session.
    AgentExited,
    /// `approval: bypass` over TCP, or an `allow` pattern that runs every
    /// command without asking (`Bash`, `commandExecution`): accepted on the
    /// Unix socket only.
    BypassRefused,
    /// A budget has no room for the call: the detail names the budget, what
    /// it allows, spent and holds, and when it resets.
    BudgetExceeded,
    /// A budget counts USD and no price is known for the agent's model.
    BudgetUnpriced,
    /// `tools` names an MCP server that config has no `[mcp_servers.NAME]` for.
    UnknownToolServer,
    /// `tools` names a tool its server does not have.
    UnknownTool,
    /// An agent's MCP server could not be started or stopped answering.
    ToolServerUnavailable,
    /// `tools` on a coding agent, which brings its own tools.
    ToolsForCodingAgent,
    /// A code this client does not know, or none at all.
    #[default]
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it is spelled on the wire.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Why a query string does not fit its route (the client's mistake: 422).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    State(String),
    #[error("limit must be a non-negative whole number, not {0:?}")]
    Limit(String),
    #[error("agent: {0}")]
    Agent(String),
    #[error("conversation must be a conversation id (a UUID), not {0:?}")]
    Conversation(String),
    #[error("by: {0}")]
    By(String),
}

/// The query of `GET /conversations`: `?agent=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationsQuery {
    pub agent: Option<AgentName>,
}

impl Query for ConversationsQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        if key == "agent" && !value.is_empty() {
            self.agent = Some(agent_param(&value)?);
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        self.agent
            .iter()
            .map(|agent| ("agent", agent.to_string()))
            .collect()
    }
}

/// The body of `POST /prune`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneRequest {
    /// Ended conversations whose last message is older than this go
    /// (`30d`, `12h`: a duration back from now).
    pub older_than: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer of `GET /conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversations {
    pub conversations: Vec<crate::model::Conversation>,
}

/// The query of `GET /agents`: `?state=&provider=&all`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub state: Option<AgentState>,
    pub provider: Option<String>,
    /// Also the last incarnation of every name whose agent has ended.
    pub all: bool,
}

impl Query for ListQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        match key {
            "state" if !value.is_empty() => {
                self.state = Some(value.parse().map_err(QueryError::State)?);
            }
            "provider" if !value.is_empty() => self.provider = Some(value),
            "all" => self.all = flag(&value),
            _ => {}
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(state) = self.state {
            pairs.push(("state", state.to_string()));
        }
        if let Some(provider) = &self.provider {
            pairs.push(("provider", provider.clone()));
        }
        if self.all {
            pairs.push(("all", "true".to_owned()));
        }
        pairs
    }
}

/// The query of `GET /agents/{name}/history`: `?limit=&all&conversation=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only the last N messages.
    pub limit: Option<usize>,
    /// Also the conversations of earlier agents of this name.
    pub all: bool,
    /// Only this conversation (an incarnation's id, from `GET /conversations`).
    pub conversation: Option<uuid::Uuid>,
}

impl Query for HistoryQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        match key {
            "limit" if !value.is_empty() => self.limit = Some(limit_param(value)?),
            "all" => self.all = flag(&value),
            "conversation" if !value.is_empty() => {
                let id = value.parse().map_err(|_| QueryError::Conversation(value))?;
                self.conversation = Some(id);
            }
            _ => {}
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if self.all {
            pairs.push(("all", "true".to_owned()));
        }
        if let Some(id) = self.conversation {
            pairs.push(("conversation", id.to_string()));
        }
        pairs
    }
}

/// The query of `GET /search`: `?q=&agent=&since=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words, "exact phrases", OR, NOT, prefix* (SQLite FTS5 syntax).
    pub q: String,
    pub agent: Option<AgentName>,
    /// A duration back from now (`7d`, `12h`) or an RFC 3339 time.
    pub since: Option<String>,
    pub limit: Option<usize>,
}

impl Query for SearchQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        match key {
            "q" => self.q = value,
            "agent" if !value.is_empty() => self.agent = Some(agent_param(&value)?),
            "since" if !value.is_empty() => self.since = Some(value),
            "limit" if !value.is_empty() => self.limit = Some(limit_param(value)?),
            _ => {}
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("q", self.q.clone())];
        if let Some(agent) = &self.agent {
            pairs.push(("agent", agent.to_string()));
        }
        if let Some(since) = &self.since {
            pairs.push(("since", since.clone()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        pairs
    }
}

/// The query of `GET /events`: `?agent=NAME`, repeatable; none means every agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    pub agents: Vec<AgentName>,
}

impl Query for EventsQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        if key == "agent" && !value.is_empty() {
            let name = agent_param(&value)?;
            if !self.agents.contains(&name) {
                self.agents.push(name);
            }
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        self.agents
            .iter()
            .map(|name| ("agent", name.to_string()))
            .collect()
    }
}

impl EventsQuery {
    /// Whether a reader with this query gets an event about `agent`
    /// (daemon-wide events, with no agent, go to every reader).
    pub fn wants(&self, agent: Option<&AgentName>) -> bool {
        match agent {
            Some(agent) => self.agents.is_empty() || self.agents.contains(agent),
            None => true,
        }
    }
}

/// The query of `GET /usage`: `?by=agent|profile|model|day&since=&agent=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub by: Option<crate::model::UsageBy>,
    /// A duration back from now (`7d`, `12h`) or an RFC 3339 time.
    pub since: Option<String>,
    pub agent: Option<AgentName>,
}

impl Query for UsageQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        match key {
            "by" if !value.is_empty() => self.by = Some(value.parse().map_err(QueryError::By)?),
            "since" if !value.is_empty() => self.since = Some(value),
            "agent" if !value.is_empty() => self.agent = Some(agent_param(&value)?),
            _ => {}
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(by) = self.by {
            pairs.push(("by", by.to_string()));
        }
        if let Some(since) = &self.since {
            pairs.push(("since", since.clone()));
        }
        if let Some(agent) = &self.agent {
            pairs.push(("agent", agent.to_string()));
        }
        pairs
    }
}

/// The query of `GET /tools`: `?start=true` starts the servers that are
/// not running, so their tools can be seen before an agent uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolsQuery {
    pub start: bool,
}

impl Query for ToolsQuery {
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        if key == "start" {
            self.start = flag(&value);
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        if self.start {
            vec![("start", "true".to_owned())]
        } else {
            Vec::new()
        }
    }
}

/// The answer of `GET /tools`: every configured MCP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolServers {
    pub servers: Vec<crate::model::ToolServerInfo>,
}

/// The answer of `GET /search`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
}

/// A route's query string as a typed value. Each query says how it takes
/// one decoded `key=value` pair and which pairs it is; parsing, printing
/// and encoding are the same for all of them, so `to_query` always prints
/// what `parse` reads back (a test sends every route through both).
pub trait Query: Default {
    /// Takes one decoded pair. Unknown keys are ignored, as the Python
    /// daemon did; an empty value means the parameter was not given.
    fn take(&mut self, key: &str, value: String) -> Result<(), QueryError>;

    /// The pairs this value is, in the order they are printed.
    fn pairs(&self) -> Vec<(&'static str, String)>;

    /// Reads a query string (without its `?`).
    fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            parsed.take(&key, value)?;
        }
        Ok(parsed)
    }

    /// The query string, with its `?`, or empty when there is nothing to say.
    fn to_query(&self) -> String {
        encode_query(&self.pairs())
    }
}

/// A `limit=N` query parameter.
fn limit_param(value: String) -> Result<usize, QueryError> {
    value.parse().map_err(|_| QueryError::Limit(value))
}

/// An `agent=NAME` query parameter.
fn agent_param(value: &str) -> Result<AgentName, QueryError> {
    AgentName::parse(value).map_err(|e| QueryError::Agent(e.to_string()))
}

/// A boolean query parameter: `?all`, `?all=1`, `?all=true` and `?all=yes` are true.
fn flag(value: &str) -> bool {
    matches!(value, "" | "1" | "true" | "yes")
}

/// A query string's `key=value` pairs, percent- and `+`-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn encode_query(pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(key, value)| {
            let value =
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC);
            format!("{key}={value}")
        })
        .collect();
    format!("?{}", encoded.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_back_what_they_write() {
        let list = ListQuery {
            state: Some(AgentState::Idle),
            provider: Some("a b&c=d".into()),
            all: true,
        };
        assert_eq!(
            ListQuery::parse(list.to_query().trim_start_matches('?')).unwrap(),
            list
        );
        let history = HistoryQuery {
            limit: Some(7),
            ..HistoryQuery::default()
        };
        assert_eq!(history.to_query(), "?limit=7");
        assert_eq!(HistoryQuery::parse("limit=7").unwrap(), history);
        assert_eq!(HistoryQuery::default().to_query(), "");
        assert!(HistoryQuery::parse("limit=x").is_err());
        let events = EventsQuery {
            agents: vec![
                AgentName::parse("a").unwrap(),
                AgentName::parse("b.c").unwrap(),
            ],
        };
        assert_eq!(events.to_query(), "?agent=a&agent=b%2Ec");
        assert_eq!(
            EventsQuery::parse(events.to_query().trim_start_matches('?')).unwrap(),
            events
        );
        assert_eq!(EventsQuery::default().to_query(), "");
        assert!(EventsQuery::parse("agent=%2Ebad").is_err());
    }
}
