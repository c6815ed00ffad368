//! What happened in the daemon: the events `GET /events` streams, in one place.

use serde::{Deserialize, Serialize};

use super::{
    AgentName, AgentState, Approval, BudgetPeriod, BudgetSource, BudgetUnit, Decision, Message,
    ToolCall, ToolResult, Usage,
};

/// One line of `GET /events`: the envelope every event has, and the event.
/// `id` rises by one per event over the daemon's life (a `lagged` line has
/// none: it stands for events this reader never got); `ts` is RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub ts: String,
    /// The agent the event is about; absent for daemon-wide events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentName>,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened: every event type of `GET /events`, in one place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// An agent started: spawned, a task's throwaway agent, or restored at start.
    Spawned {
        provider: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// A `task` agent, gone after its one exchange.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        task: bool,
    },
    /// The agent's state changed.
    State { old: AgentState, new: AgentState },
    /// A message stored in history, exactly as history has it (the human's and the reply).
    Message { message: Message },
    /// A piece of a reply as it streams in.
    Delta { content: String },
    /// Tokens one reply used.
    Usage { usage: Usage },
    /// The agent cannot reach its model (missing key, unknown profile); `reason` says why.
    Suspended { reason: String },
    /// A suspended agent can run again.
    Restored,
    /// With `agent`: that agent was shut down (`restart`: it comes back at
    /// the daemon's next start). Without: the daemon is stopping, and the
    /// stream ends.
    Shutdown {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restart: bool,
    },
    /// An agent asked to run a tool (stored as a `tool_call` message too).
    #[serde(rename = "tool_call")]
    ToolCall { call: ToolCall },
    /// A tool's result (stored as a `tool_result` message too).
    #[serde(rename = "tool_result")]
    ToolResult { result: ToolResult },
    /// A tool call waits for a person's answer (`approve`/`deny`).
    #[serde(rename = "approval_requested")]
    ApprovalRequested { approval: Approval },
    /// An approval was answered, denied at its timeout, or denied at shutdown.
    #[serde(rename = "approval_resolved")]
    ApprovalResolved {
        /// The approval's id (`id` is the event line's own number).
        approval_id: String,
        decision: Decision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A budget's settled spending crossed 80% of its limit, or reached it
    /// (`percent` 80 or 100): once each per budget and period. `agent` is
    /// the agent whose call crossed it.
    Budget {
        scope: String,
        period: BudgetPeriod,
        unit: BudgetUnit,
        source: BudgetSource,
        percent: u8,
        limit: f64,
        spent: f64,
        /// When the period ends (RFC 3339); absent for `total`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resets: Option<String>,
    },
    /// This reader fell behind and `missed` events were dropped for it.
    Lagged { missed: u64 },
    /// A type this client does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_read_back_what_they_write() {
        let line = EventLine {
            id: Some(7),
            ts: "2026-01-01T00:00:00Z".into(),
            agent: Some(AgentName::parse("a").unwrap()),
            event: Event::State {
                old: AgentState::Idle,
                new: AgentState::Processing,
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains(r#""type":"state""#), "{text}");
        assert_eq!(serde_json::from_str::<EventLine>(&text).unwrap(), line);
        let lagged: EventLine =
            serde_json::from_str(r#"{"type":"lagged","missed":3,"ts":"x"}"#).unwrap();
        assert_eq!(lagged.event, Event::Lagged { missed: 3 });
        let future: EventLine =
            serde_json::from_str(r#"{"type":"new_thing","id":1,"ts":"x","x":1}"#).unwrap();
        assert_eq!(future.event, Event::Unknown);
    }
}
