//! Full-text search over every conversation: what a search asks and what it finds.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AgentName;

/// What a full-text search looks for.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter<'a> {
    /// FTS5 query syntax: words, "phrases", OR, NOT, prefix*.
    pub query: &'a str,
    pub agent: Option<&'a AgentName>,
    /// Only messages at or after this RFC 3339 time.
    pub since: Option<&'a str>,
    pub limit: usize,
}

/// One message that matched a search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHit {
    pub agent: String,
    /// The conversation: the id of the agent incarnation that held it.
    pub conversation: Uuid,
    pub message_id: Uuid,
    pub timestamp: String,
    pub sender: String,
    /// The matching part of the message, each match wrapped in `**`.
    pub snippet: String,
    /// Relevance (bm25; smaller is better). Results come best first.
    pub rank: f64,
}
