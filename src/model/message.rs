//! A message of a conversation, and the timestamps every record carries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

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
