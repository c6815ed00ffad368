//! Request and response bodies that only the HTTP API uses. The shapes match
//! the Python daemon this project replaces; unknown request fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{AgentConfig, AgentName, Message, Secret};
use crate::providers::ProviderSpec;

/// The body of `POST /agents` (spawn) and `POST /agents/{name}/task`.
/// `prompt` and `stream` only matter for a task; `name` is optional there.
#[derive(Debug, Default, Deserialize)]
pub struct AgentRequest {
    pub name: Option<AgentName>,
    pub agent_type: Option<String>,
    pub provider: Option<String>,
    pub profile: Option<String>,
    pub model: Option<String>,
    pub instructions: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub prompt: Option<String>,
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
            api_key_env: self.api_key_env,
            headers: self.headers.unwrap_or_default(),
        }
    }
}

/// The body of `POST /agents/{name}/message`.
#[derive(Debug, Deserialize)]
pub struct MessageRequest {
    pub content: String,
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Serialize, Deserialize)]
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
}

/// One line of a streamed (`application/x-ndjson`) reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamLine {
    Delta { content: String },
    Message { message: Message },
    Done,
    Error { status: u16, detail: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: String,
}
