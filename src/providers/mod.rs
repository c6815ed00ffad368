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

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::model::{ProviderSpec, Secret, ToolCall, ToolDef, ToolResult, Usage};

use crate::profiles::{Kind, ProfileError};
pub use anthropic::Anthropic;
pub use echo::Echo;
pub use endpoint::Endpoint;
pub use http::Upstream;
pub use openai::OpenAi;

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub role: Role,
    /// Shared, not copied: the engine hands every call the whole
    /// conversation, and a cached one is passed on without copying its text.
    pub content: std::sync::Arc<str>,
}

/// Everything a provider needs for one reply.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    /// The agent's instructions, sent as the system prompt.
    pub instructions: Option<String>,
    /// The whole conversation, oldest first, ending with the new user turn.
    pub turns: Vec<Turn>,
    /// The most output tokens the reply may take, when something (a budget)
    /// needs a bound; `None`: the provider's own default (Anthropic's is
    /// `providers.anthropic_max_tokens`).
    pub max_output_tokens: Option<u32>,
    /// The tools the model may call (none: a plain chat call).
    pub tools: Vec<ToolDef>,
    /// This turn's tool rounds so far, after `turns`: what the model said
    /// and asked to run, and what came back.
    pub rounds: Vec<ToolRound>,
}

/// One round of a tool loop: the model's reply that asked for tools, and
/// their results, sent back in the order of the calls.
#[derive(Debug, Clone, Default)]
pub struct ToolRound {
    /// Text the model wrote before its calls (often empty).
    pub text: String,
    /// The calls, with `name` the wire name the model used.
    pub calls: Vec<ToolCall>,
    pub results: Vec<ToolResult>,
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
    /// A complete tool call (its arguments assembled from the stream's
    /// deltas), `name` as the model sent it (the wire name).
    ToolCall(ToolCall),
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
    /// A limit of the daemon's (reply size, line length) stopped the
    /// reply: what arrived is kept, marked interrupted with this reason.
    #[error("{0}")]
    Limit(String),
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

/// Daemon-wide provider settings: the config (profiles, timeouts), the keys
/// the daemon holds, and the one connection pool every remote provider
/// shares. A reload replaces the whole value; calls in flight keep theirs.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Pause between the echo provider's words, so streaming is visible.
    pub echo_delay: Duration,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub upstream: Upstream,
}

impl ProviderSettings {
    pub fn new(config: Config, keys: Keys, echo_delay: Duration) -> Result<Self, SetupError> {
        Ok(Self {
            echo_delay,
            upstream: Upstream::new(config.providers.clone(), config.limits.max_reply_bytes)?,
            config: Arc::new(config),
            keys: Arc::new(keys),
        })
    }
}

/// The environment the daemon reads keys from: the one it was given (under
/// `serve`, its process environment) overlaid by the service's environment
/// file (`KEY=value` lines), which a reload reads again, so a rotated key
/// takes effect without a restart.
/// Only the variables a provider or profile names are ever looked up here.
#[derive(Clone, Default)]
pub struct Keys {
    vars: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are secrets.
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Keys").field("names", &names).finish()
    }
}

impl Keys {
    /// `base` (the daemon's environment; `serve` passes its process
    /// environment), then `file`'s lines over it (a missing file adds nothing).
    pub fn load(
        base: &std::collections::HashMap<String, String>,
        file: &std::path::Path,
    ) -> Result<Self, EnvironmentError> {
        let mut vars = base.clone();
        match crate::config::read_settings_file(file) {
            Ok(Some(text)) => {
                vars.extend(parse_environment_file(&text).map_err(|(line, why)| {
                    EnvironmentError::Line {
                        path: file.to_owned(),
                        line,
                        why,
                    }
                })?)
            }
            Ok(None) => {}
            Err(source) => {
                return Err(EnvironmentError::Read {
                    path: file.to_owned(),
                    source,
                });
            }
        }
        Ok(Self { vars })
    }

    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// A non-empty value of `variable`.
    pub fn get(&self, variable: &str) -> Option<Secret> {
        self.vars
            .get(variable)
            .filter(|value| !value.is_empty())
            .map(|value| Secret::new(value.clone()))
    }

    /// A setting from this environment (not a key), such as `RUST_LOG`.
    pub fn setting(&self, variable: &str) -> Option<&str> {
        self.vars.get(variable).map(String::as_str)
    }
}

/// `KEY=value` lines as systemd's `EnvironmentFile=` reads them: blank lines
/// and `#`/`;` comments skipped, an optional `export `, values optionally in
/// single or double quotes. A line that is none of these is an error.
/// Why the environment file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {why}", path.display())]
    Line {
        path: std::path::PathBuf,
        line: usize,
        why: String,
    },
}

fn parse_environment_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((index + 1, "expected KEY=value".into()));
        };
        let name = name.trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err((index + 1, format!("{name:?} is not a variable name")));
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        pairs.push((name.to_owned(), unquoted.to_owned()));
    }
    Ok(pairs)
}

/// Why an agent's provider could not be set up (the client's mistake: 400).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
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
    /// A coding agent has no model endpoint of the daemon's to call or list.
    #[error(
        "{0} is a coding agent the daemon runs as a child, not a model server it calls; it has no models to list here"
    )]
    NoEndpoint(String),
    /// A coding agent's executable is not installed where the daemon looks.
    #[error("{program} was not found ({looked}); {install}")]
    NotInstalled {
        program: String,
        looked: String,
        install: String,
    },
    /// A coding agent's working directory is unusable.
    #[error("cwd {path:?} {why}")]
    BadCwd { path: String, why: String },
    /// A coding agent's `allow` patterns its CLI would read otherwise than
    /// the daemon, or more of them than a command line holds.
    #[error("allow pattern {pattern:?} {why}")]
    BadAllow { pattern: String, why: String },
    #[error(
        "the allow patterns take {total} bytes together; at most {max} are accepted (each is an argument of the coding agent's command line)"
    )]
    AllowTooLong { total: usize, max: usize },
}

/// The provider used when a spawn names neither provider nor profile.
pub const DEFAULT_PROVIDER: &str = "openai";

/// A ready provider and the facts about it an agent reports.
pub struct Setup {
    pub provider: Arc<dyn Provider>,
    /// The model in effect: the spawn's, else the profile's, else the provider's default.
    pub model: Option<String>,
    /// The context window, in tokens.
    pub context_limit: u64,
}

/// Builds the provider an agent's config asks for.
pub fn build(spec: &ProviderSpec, settings: &ProviderSettings) -> Result<Setup, SetupError> {
    let endpoint = Endpoint::resolve(spec, &settings.config, &settings.keys)?;
    if endpoint.model.is_none() && endpoint.kind != Kind::Echo {
        return Err(SetupError::NoModel(endpoint::describe(spec)));
    }
    let model = endpoint.model.clone();
    let context_limit = endpoint.context_limit;
    let provider: Arc<dyn Provider> = match endpoint.kind {
        Kind::Echo => Arc::new(Echo::new(settings.echo_delay)),
        Kind::OpenAi => Arc::new(OpenAi::new(endpoint, settings.upstream.clone())),
        Kind::Anthropic => Arc::new(Anthropic::new(endpoint, settings.upstream.clone())),
        Kind::ClaudeCode | Kind::Codex => {
            return Err(SetupError::NoEndpoint(endpoint.kind.name().to_owned()));
        }
    };
    Ok(Setup {
        provider,
        model,
        context_limit,
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
    let endpoint = Endpoint::resolve(spec, &settings.config, &settings.keys)?;
    let upstream = &settings.upstream;
    let ids = match endpoint.kind {
        Kind::Echo => vec!["echo".to_owned()],
        Kind::OpenAi => openai::models(&endpoint, upstream).await?,
        Kind::Anthropic => anthropic::models(&endpoint, upstream).await?,
        Kind::ClaudeCode | Kind::Codex => {
            return Err(SetupError::NoEndpoint(endpoint.kind.name().to_owned()).into());
        }
    };
    Ok(ids)
}

/// A tool's argument schema as both wires need it: a JSON Schema object
/// (a server that declares none gets an object taking no arguments).
fn schema_object(schema: &Value) -> Value {
    if schema.is_object() {
        schema.clone()
    } else {
        serde_json::json!({"type": "object", "properties": {}})
    }
}

/// A tool call's argument text as the model sent it: parsed when it is
/// JSON (empty means no arguments), else kept as a string, which the tool
/// loop answers with an error result instead of running the tool.
pub fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A call's arguments as text again, for sending the call back in a later
/// round: text that was not JSON goes back as it came.
fn arguments_text(input: &Value) -> String {
    match input {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The tool calls among decoded events: what both wires' decoder tests check.
    pub(super) fn tool_calls(events: &[ProviderEvent]) -> Vec<ToolCall> {
        events
            .iter()
            .filter_map(|event| match event {
                ProviderEvent::ToolCall(call) => Some(call.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_environment_file_that_does_not_load_says_where_and_keeps_why() {
        use std::error::Error;
        let dir = tempfile::tempdir().unwrap();
        let base = std::collections::HashMap::new();
        let file = dir.path().join("environment");
        assert!(
            Keys::load(&base, &file).is_ok(),
            "a missing file adds nothing"
        );
        std::fs::write(&file, "A=1\nnot a line\n").unwrap();
        let error = Keys::load(&base, &file).unwrap_err();
        assert!(
            matches!(error, EnvironmentError::Line { line: 2, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:2: ", file.display()))
        );
        let error = Keys::load(&base, dir.path()).unwrap_err();
        assert!(matches!(error, EnvironmentError::Read { .. }), "{error}");
        assert!(error.source().is_some());
    }

    #[test]
    fn environment_files_read_as_systemd_reads_them() {
        let text =
            "# keys\nOPENAI_API_KEY=sk-1\n\nexport WORK_KEY=\"quoted value\"\n; old\nX='single'\n";
        let pairs = parse_environment_file(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("OPENAI_API_KEY".to_owned(), "sk-1".to_owned()),
                ("WORK_KEY".to_owned(), "quoted value".to_owned()),
                ("X".to_owned(), "single".to_owned()),
            ]
        );
        assert_eq!(
            parse_environment_file("A=1\nnot a line\n").unwrap_err().0,
            2
        );
        assert!(parse_environment_file("1A=x").is_err());
        let keys = Keys::from_pairs([("A", "x"), ("EMPTY", "")]);
        assert!(keys.get("EMPTY").is_none());
        assert_eq!(keys.get("A").unwrap().expose(), "x");
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("\"A\"") && !shown.contains("\"x\""),
            "{shown}"
        );
    }
}
