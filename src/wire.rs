//! The wire protocol: request, response, query and stream-line types the
//! daemon parses and the client builds, shared by both. The shapes match
//! the Python daemon this project replaces; unknown request fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AgentConfig, AgentName, AgentState, Message, ProviderSpec, SearchHit, Secret};

/// The body of `POST /agents` (spawn), `POST /agents/{name}/task` and
/// `POST /models`. `prompt` and `stream` only matter for a task; `name` is
/// optional there. The daemon parses it; the CLI builds it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AgentRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<AgentName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key itself. There is no `api_key_env`: an older client may still
    /// send one, and it is ignored like any unknown field, because the daemon
    /// never reads an environment variable a request names (the CLI resolves
    /// `--api-key-env` itself and sends the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl AgentRequest {
    pub fn into_config(self, name: AgentName) -> AgentConfig {
        AgentConfig {
            name,
            agent_type: self.agent_type.clone().unwrap_or_else(|| "api".to_owned()),
            instructions: self.instructions.clone(),
            provider: self.into_spec(),
        }
    }

    /// The provider half of the request (all `POST /models` looks at).
    pub fn into_spec(self) -> ProviderSpec {
        ProviderSpec {
            provider: self.provider,
            profile: self.profile,
            model: self.model,
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
    Done,
    Error {
        status: u16,
        detail: String,
    },
    /// A line type this version does not know (from a newer daemon): skipped.
    #[serde(other)]
    Unknown,
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
    Failed { status: u16, detail: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: String,
    /// The variable whose key an agent lacks, so a client can send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_key: Option<String>,
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
}

/// The query of `GET /conversations`: `?agent=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationsQuery {
    pub agent: Option<AgentName>,
}

impl ConversationsQuery {
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            if key == "agent" && !value.is_empty() {
                let name = agent_param(&value)?;
                parsed.agent = Some(name);
            }
        }
        Ok(parsed)
    }

    pub fn to_query(&self) -> String {
        match &self.agent {
            Some(agent) => encode_query(&[("agent", agent.to_string())]),
            None => String::new(),
        }
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

impl ListQuery {
    /// Reads a query string; unknown keys are ignored, as the Python daemon did.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            match key.as_str() {
                "state" if !value.is_empty() => {
                    parsed.state = Some(value.parse().map_err(QueryError::State)?);
                }
                "provider" if !value.is_empty() => parsed.provider = Some(value),
                "all" => parsed.all = flag(&value),
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The query string (with its `?`, or empty) that [`ListQuery::parse`] reads back.
    pub fn to_query(&self) -> String {
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
        encode_query(&pairs)
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

impl HistoryQuery {
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            match key.as_str() {
                "limit" if !value.is_empty() => {
                    let limit = value.parse().map_err(|_| QueryError::Limit(value))?;
                    parsed.limit = Some(limit);
                }
                "all" => parsed.all = flag(&value),
                "conversation" if !value.is_empty() => {
                    let id = value.parse().map_err(|_| QueryError::Conversation(value))?;
                    parsed.conversation = Some(id);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    pub fn to_query(&self) -> String {
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
        encode_query(&pairs)
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

impl SearchQuery {
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            match key.as_str() {
                "q" => parsed.q = value,
                "agent" if !value.is_empty() => {
                    parsed.agent = Some(agent_param(&value)?);
                }
                "since" if !value.is_empty() => parsed.since = Some(value),
                "limit" if !value.is_empty() => {
                    let limit = value.parse().map_err(|_| QueryError::Limit(value))?;
                    parsed.limit = Some(limit);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    pub fn to_query(&self) -> String {
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
        encode_query(&pairs)
    }
}

/// The query of `GET /events`: `?agent=NAME`, repeatable; none means every agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    pub agents: Vec<AgentName>,
}

impl EventsQuery {
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (key, value) in query_pairs(query) {
            if key == "agent" && !value.is_empty() {
                let name = agent_param(&value)?;
                if !parsed.agents.contains(&name) {
                    parsed.agents.push(name);
                }
            }
        }
        Ok(parsed)
    }

    pub fn to_query(&self) -> String {
        let pairs: Vec<(&str, String)> = self
            .agents
            .iter()
            .map(|name| ("agent", name.to_string()))
            .collect();
        encode_query(&pairs)
    }

    /// Whether a reader with this query gets an event about `agent`
    /// (daemon-wide events, with no agent, go to every reader).
    pub fn wants(&self, agent: Option<&AgentName>) -> bool {
        match agent {
            Some(agent) => self.agents.is_empty() || self.agents.contains(agent),
            None => true,
        }
    }
}

/// The answer of `GET /search`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
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

fn encode_query(pairs: &[(&str, String)]) -> String {
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
