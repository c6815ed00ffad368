//! Approvals: a tool call that needs a person's yes before it runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AgentName;

/// What an agent asks permission for (the runtime fills it in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The tool's name (`Bash`, `commandExecution`, `fs.write_file`).
    pub tool: String,
    /// One line a person can judge: the command, the file, the URL.
    pub summary: String,
    /// The tool's input as the agent sent it.
    #[serde(default)]
    pub input: Value,
    /// Where it would run, for coding agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A pending approval as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Short and unique among the daemon's approvals, for typing: `approve 3f9c2a`.
    pub id: String,
    pub agent: AgentName,
    #[serde(flatten)]
    pub request: ApprovalRequest,
    pub requested_at: String,
}

/// The answer to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

/// How an approval ended: what the runtime is told, and what
/// `approval_resolved` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    /// Why, for a denial: the person's reason, or "timed out", "the daemon
    /// is shutting down", "not allowed by the agent's policy".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    pub fn approve() -> Self {
        Self {
            decision: Decision::Approve,
            reason: None,
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            reason: Some(reason.into()),
        }
    }

    pub fn approved(&self) -> bool {
        self.decision == Decision::Approve
    }
}
