//! A message of a conversation, and the timestamps every record carries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Clock;

/// The wall clock's UTC time as RFC 3339, the form every timestamp on the
/// wire takes. The daemon's core reads its [`Clock`] instead
/// (`Engine::clock`), which a test can move forward.
pub fn now_rfc3339() -> String {
    Clock::system().now_rfc3339()
}

/// The UTC time `back` before the wall clock's now, as RFC 3339 (the form
/// stored timestamps take, so the two compare as text). The daemon's core
/// uses [`Clock::rfc3339_ago`].
pub fn rfc3339_ago(back: std::time::Duration) -> String {
    Clock::system().rfc3339_ago(back)
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

    /// The message timestamped by `clock` instead of the wall clock: what
    /// the engine records, so a test's clock dates the history.
    pub fn stamped(mut self, clock: &Clock) -> Self {
        self.timestamp = clock.now_rfc3339();
        self
    }

    pub fn is_human(&self) -> bool {
        self.sender == HUMAN
    }
}
