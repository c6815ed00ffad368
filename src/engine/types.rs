//! The engine's data: messages, agent states and configs, token usage, and
//! the AgentInfo view that the API returns.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::AgentName;
use crate::providers::ProviderSpec;

/// The current UTC time as RFC 3339, the form every timestamp on the wire takes.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The UTC time `back` before now, as RFC 3339 (the form stored timestamps
/// take, so the two compare as text).
pub fn rfc3339_ago(back: std::time::Duration) -> String {
    let at = time::OffsetDateTime::now_utc() - back;
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// `sender` of a message the user wrote.
pub const HUMAN: &str = "human";

/// One entry of a conversation, exactly as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    /// `"human"` or the agent's name.
    pub sender: String,
    pub content: String,
    pub message_type: String,
    pub timestamp: String,
    pub metadata: Map<String, Value>,
}

impl Message {
    pub fn new(sender: &str, content: String, metadata: Map<String, Value>) -> Self {
        Self {
            id: Uuid::new_v4(),
            sender: sender.to_owned(),
            content,
            message_type: "chat".to_owned(),
            timestamp: now_rfc3339(),
            metadata,
        }
    }

    pub fn is_human(&self) -> bool {
        self.sender == HUMAN
    }
}

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
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
}
