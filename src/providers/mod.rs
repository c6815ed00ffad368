//! Providers: the models an agent talks to, behind one streaming trait.
//!
//! A provider turns a [`ChatRequest`] into a stream of [`ProviderEvent`]s.
//! Streaming is the only interface; a non-streaming reply is the same stream
//! collected by the engine. Dropping the stream must cancel the upstream work.

mod echo;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Map, Value};

use crate::engine::{AgentConfig, Usage};

pub use echo::Echo;

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// Everything a provider needs for one reply.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    /// The agent's instructions, sent as the system prompt.
    pub instructions: Option<String>,
    /// The whole conversation, oldest first, ending with the new user turn.
    pub turns: Vec<Turn>,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// Text to append to the reply.
    Delta(String),
    Usage(Usage),
    /// Why the model stopped (`"stop"`, `"length"`, …).
    Finish(String),
    /// Extra facts for the reply's metadata.
    Metadata(Map<String, Value>),
}

/// How a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("upstream answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("upstream timed out: {0}")]
    Timeout(String),
    #[error("upstream failed: {0}")]
    Other(String),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

pub trait Provider: Send + Sync {
    /// Starts a reply. The stream ends after the last event; an upstream
    /// failure is its last item.
    fn stream(&self, request: ChatRequest) -> EventStream;
}

/// Daemon-wide provider settings.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Pause between the echo provider's words, so streaming is visible.
    pub echo_delay: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            echo_delay: Duration::from_millis(20),
        }
    }
}

/// Why an agent's provider could not be set up (the client's mistake: 400).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error("unknown provider {0:?}; known providers: {KNOWN}")]
    UnknownProvider(String),
    #[error("unknown profile {0:?}; no profiles are defined yet")]
    UnknownProfile(String),
}

const KNOWN: &str = "echo";

/// The provider used when a spawn names none.
pub const DEFAULT_PROVIDER: &str = "echo";

/// Builds the provider an agent's config asks for.
pub fn build(
    config: &AgentConfig,
    settings: &ProviderSettings,
) -> Result<Arc<dyn Provider>, SetupError> {
    if let Some(profile) = &config.profile {
        return Err(SetupError::UnknownProfile(profile.clone()));
    }
    match config.provider.as_str() {
        "echo" => Ok(Arc::new(Echo::new(settings.echo_delay))),
        other => Err(SetupError::UnknownProvider(other.to_owned())),
    }
}
