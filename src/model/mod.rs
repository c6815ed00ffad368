//! The domain types everything else speaks: agent names, messages, agents
//! and their states, usage, secrets, provider specs, events and search hits.
//!
//! This is the bottom layer. It depends only on serde, uuid and time; the
//! engine, the providers, the store, the wire protocol and the client all
//! build on it, and it imports none of them.

mod agent;
mod event;
mod message;
mod name;
mod search;

pub use agent::{
    AgentConfig, AgentInfo, AgentState, Conversation, ProviderSpec, PruneReport,
    PrunedConversation, Secret, ShutdownReport, Usage,
};
pub use event::{Event, EventLine};
pub use message::{HUMAN, Message, now_rfc3339, rfc3339_ago};
pub use name::{AgentName, InvalidName};
pub use search::{SearchFilter, SearchHit};
