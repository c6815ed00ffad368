//! Providers: the models an agent talks to, behind one streaming trait.
//!
//! A provider turns a [`ChatRequest`] into a stream of [`ProviderEvent`]s.
//! Streaming is the only interface; a non-streaming reply is the same stream
//! collected by the engine. Dropping the stream must cancel the upstream work.

mod anthropic;
mod echo;
pub mod endpoint;
pub mod http;
mod openai;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::engine::{Secret, Usage};

pub use anthropic::Anthropic;
pub use echo::Echo;
pub use endpoint::{Endpoint, Kind, Profile};
pub use http::Upstream;
pub use openai::OpenAi;

/// What a spawn asks of its provider, before defaults are filled in.
#[derive(Debug, Clone, Default)]
pub struct ProviderSpec {
    /// `None` means the profile's protocol, else [`DEFAULT_PROVIDER`].
    pub provider: Option<String>,
    pub profile: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub headers: BTreeMap<String, String>,
}

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

/// How a provider call failed. The API maps `Timeout` to 504 and every
/// other variant to 502, with this text as the detail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("the model server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the model server timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Connect(String),
    #[error("the model server sent an unusable reply: {0}")]
    Protocol(String),
    #[error("the model server reported an error mid-reply: {0}")]
    Stream(String),
    #[error("the upstream request failed: {0}")]
    Other(String),
}

impl ProviderEvent {
    /// One fact for the reply's metadata.
    pub fn fact(key: &str, value: impl Into<Value>) -> Self {
        let mut facts = Map::new();
        facts.insert(key.to_owned(), value.into());
        Self::Metadata(facts)
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

pub trait Provider: Send + Sync {
    /// Starts a reply. The stream ends after the last event; an upstream
    /// failure is its last item.
    fn stream(&self, request: ChatRequest) -> EventStream;
}

/// Daemon-wide provider settings: the config (profiles, timeouts) and the
/// one connection pool every remote provider shares.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Pause between the echo provider's words, so streaming is visible.
    pub echo_delay: Duration,
    pub config: Arc<Config>,
    pub upstream: Upstream,
}

impl ProviderSettings {
    pub fn new(config: Config, echo_delay: Duration) -> Result<Self, SetupError> {
        Ok(Self {
            echo_delay,
            upstream: Upstream::new(config.providers.clone())?,
            config: Arc::new(config),
        })
    }
}

/// Why an agent's provider could not be set up (the client's mistake: 400).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error("unknown provider {0:?}; known providers: {known}", known = Kind::NAMES)]
    UnknownProvider(String),
    #[error("unknown profile {name:?}; known profiles: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("{0}")]
    BadProfile(String),
    #[error(
        "{what} needs an API key, and none was given: {variable} is set neither where the command ran nor in the daemon's environment"
    )]
    MissingKey { what: String, variable: String },
    #[error("base_url {0:?} is not an http:// or https:// URL")]
    BadBaseUrl(String),
    #[error("header {0:?} is not a valid HTTP header")]
    BadHeader(String),
    #[error("{0} has no default model; pass --model (or `model` in the spawn request)")]
    NoModel(String),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// The provider used when a spawn names neither provider nor profile.
pub const DEFAULT_PROVIDER: &str = "openai";

/// A ready provider and the facts about it an agent reports.
pub struct Setup {
    pub provider: Arc<dyn Provider>,
    /// The protocol's name (`openai` for every OpenAI-compatible profile).
    pub provider_name: &'static str,
    /// The model in effect: the spawn's, else the profile's, else the provider's default.
    pub model: Option<String>,
}

/// Builds the provider an agent's config asks for.
pub fn build(spec: &ProviderSpec, settings: &ProviderSettings) -> Result<Setup, SetupError> {
    let endpoint = Endpoint::resolve(spec, &settings.config)?;
    let model = endpoint.model.clone();
    let provider_name = endpoint.kind.name();
    let provider: Arc<dyn Provider> = match endpoint.kind {
        Kind::Echo => Arc::new(Echo::new(settings.echo_delay)),
        Kind::OpenAi => Arc::new(OpenAi::new(endpoint, settings.upstream.clone())),
        Kind::Anthropic => Arc::new(Anthropic::new(endpoint, settings.upstream.clone())),
    };
    Ok(Setup {
        provider,
        provider_name,
        model,
    })
}

/// Why listing models failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The models the endpoint a spawn request would use offers.
pub async fn models(
    spec: &ProviderSpec,
    settings: &ProviderSettings,
) -> Result<Vec<String>, ModelsError> {
    let endpoint = Endpoint::resolve(spec, &settings.config)?;
    let upstream = &settings.upstream;
    let ids = match endpoint.kind {
        Kind::Echo => vec!["echo".to_owned()],
        Kind::OpenAi => openai::models(&endpoint, upstream).await?,
        Kind::Anthropic => anthropic::models(&endpoint, upstream).await?,
    };
    Ok(ids)
}

/// Adds the key and the endpoint's headers, and builds the request.
fn finish_request(
    mut builder: reqwest::RequestBuilder,
    endpoint: &Endpoint,
    auth: Auth,
) -> Result<reqwest::Request, ProviderError> {
    if let Some(key) = &endpoint.api_key {
        builder = match auth {
            Auth::Bearer => builder.bearer_auth(key.expose()),
            Auth::XApiKey => builder.header("x-api-key", key.expose()),
        };
    }
    for (name, value) in &endpoint.headers {
        builder = builder.header(name, value);
    }
    // The error names the URL at most, never a header value.
    builder
        .build()
        .map_err(|error| ProviderError::Other(format!("cannot build the request: {error}")))
}

/// How a protocol presents its key.
enum Auth {
    Bearer,
    XApiKey,
}

/// The ids in a model listing: `{"data":[{"id":…}]}` (OpenAI, Anthropic,
/// OpenRouter, Gemini) or `{"models":[{"name":…}]}` (Ollama's native form).
fn model_ids(listing: Value) -> Result<Vec<String>, ProviderError> {
    let entries = listing
        .get("data")
        .or_else(|| listing.get("models"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ProviderError::Protocol(format!(
                "expected a model listing, got: {}",
                http::excerpt(&listing.to_string())
            ))
        })?;
    let mut ids: Vec<String> = entries
        .iter()
        .filter_map(|entry| entry.get("id").or_else(|| entry.get("name")))
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    ids.sort();
    Ok(ids)
}
