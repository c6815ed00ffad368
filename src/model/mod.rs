//! The domain types everything else speaks: agent names, messages, agents
//! and their states, usage and its ledger, secrets, provider specs, events, search hits,
//! tool calls and approvals.
//!
//! This is the bottom layer. It depends only on serde, uuid and time; the
//! engine, the providers, the store, the wire protocol and the client all
//! build on it, and it imports none of them.

mod agent;
mod approval;
mod event;
mod message;
mod name;
mod search;
mod tool;
mod usage;

pub use agent::{
    AgentConfig, AgentInfo, AgentState, ApprovalMode, Conversation, ProviderSpec, PruneReport,
    PrunedConversation, Secret, ShutdownReport, Usage, Workspace,
};
pub use approval::{Approval, ApprovalRequest, Decision, Verdict};
pub use event::{Event, EventLine};
pub use message::{HUMAN, Message, now_rfc3339, rfc3339_ago};
pub use name::{AgentName, InvalidName};
pub use search::{SearchFilter, SearchHit};
pub use tool::{
    ServerState, ServerTransport, TOOL_CALL, TOOL_RESULT, ToolCall, ToolDef, ToolInfo, ToolPolicy,
    ToolResult, ToolServerInfo,
};
pub use usage::{PriceSource, UsageBy, UsageFilter, UsageGroup, UsageRecord, UsageReport};
