//! An agent as the daemon and its clients see it: its state, what it was
//! spawned with, what it has used, and the conversations it has held.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AgentName;

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Idle,
    Processing,
    /// The last exchange failed upstream; the agent still takes messages.
    Failed,
    /// Alive, with its id and history, but it cannot call its model: its key
    /// is missing, or its profile or provider is unknown (AgentInfo `reason`
    /// says which). The message, reload or start that brings what it lacks
    /// revives it.
    Suspended,
    Terminated,
}

impl AgentState {
    pub const ALL: [AgentState; 5] = [
        Self::Idle,
        Self::Processing,
        Self::Failed,
        Self::Suspended,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Processing => "processing",
            Self::Failed => "failed",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?}; expected one of idle, processing, failed, suspended, terminated"
                )
            })
    }
}

/// Token counts, for one reply or summed over an agent's life.
///
/// One convention whatever the provider (OpenTelemetry's): `input_tokens`
/// counts every prompt token, the cached ones (`cache_read_tokens`) and the
/// ones written to the cache (`cache_write_tokens`) included;
/// `output_tokens` counts every generated token, reasoning
/// (`reasoning_tokens`) included. The three finer counts default to 0, so
/// rows and clients from before they existed read fine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
    }
}

/// A secret (API key) that never prints: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that must send it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything an agent was spawned with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: AgentName,
    pub agent_type: String,
    pub instructions: Option<String>,
    /// Which model server answers, and how to reach it.
    pub provider: ProviderSpec,
    /// Where a coding agent works and what it may do (unused by API agents).
    pub workspace: Workspace,
    /// Its own spending limit (`spawn --budget`), besides `[[budgets]]`.
    pub budget: Option<super::AgentBudget>,
}

/// Whether a coding agent's tool call that no `allow` pattern matches asks
/// a person, is denied, or runs without asking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// Ask a person (the default).
    #[default]
    Ask,
    /// Deny without asking.
    Never,
    /// Run everything without asking (Claude's `bypassPermissions`, Codex's
    /// `danger-full-access` + `never`): accepted over the Unix socket only.
    Bypass,
}

/// A coding agent's working directory, permission policy and session: kept
/// with the agent, so a restarted daemon resumes the same session there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspace {
    /// The directory it works in (absolute; checked at spawn).
    pub cwd: Option<String>,
    /// Tool patterns that run without asking.
    pub allow: Vec<String>,
    pub approval: ApprovalMode,
    /// The coding agent's own session or thread id, once it has one.
    pub session: Option<String>,
    /// An API agent's tools: MCP server names (`fs`) or single tools
    /// (`fs.read_file`), as `spawn --tools` or a profile's `tools` gave them.
    pub tools: Vec<String>,
}

/// What the API shows of an agent. Never carries the key or headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: AgentName,
    pub agent_type: String,
    pub provider: String,
    pub state: AgentState,
    /// Identifies this incarnation of the name; a re-spawned name gets a new one.
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    pub created_at: String,
    pub message_count: usize,
    pub usage: Usage,
    /// Why a `suspended` agent cannot run.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// A coding agent's working directory.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cwd: Option<String>,
    /// An API agent's tools (MCP servers, or `server.tool`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tools: Vec<String>,
    /// Messages waiting behind the one being answered.
    #[serde(default)]
    pub queued: usize,
    /// Its own budget, as spawned (`2usd/day`); `[[budgets]]` may apply too.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget: Option<String>,
}

/// What a spawn asks of its provider, before defaults are filled in.
#[derive(Debug, Clone, Default)]
pub struct ProviderSpec {
    /// `None` means the profile's protocol, else [`DEFAULT_PROVIDER`].
    pub provider: Option<String>,
    pub profile: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub headers: BTreeMap<String, String>,
}

/// One conversation: an incarnation of a name, and what it holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    pub name: AgentName,
    /// The incarnation's agent id.
    pub id: Uuid,
    pub state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub message_count: usize,
    /// When its first and last messages were written (none: no messages).
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    pub usage: Usage,
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Conversations last written before this went.
    pub cutoff: String,
    pub conversations: Vec<PrunedConversation>,
    /// The store file's size in bytes before and after.
    pub size_before: u64,
    pub size_after: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PrunedConversation {
    pub name: String,
    pub id: Uuid,
    pub last_at: String,
    pub message_count: usize,
}

/// The outcome of shutting every agent down.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ShutdownReport {
    pub succeeded: Vec<AgentName>,
    pub failed: BTreeMap<AgentName, String>,
}
