//! The user's config file (`config.toml`, SPEC §1): daemon listener, provider
//! timeouts and retries, and user-defined provider profiles.
//!
//! A missing file means "all defaults". A file that exists but does not parse
//! is an error naming the file and the line, never silently ignored: a typo in
//! a profile should not send a key somewhere unexpected.
//!
//! `orchestration config` reads settings by dotted key ([`Config::entries`])
//! and edits the file in place ([`set_key`], [`unset_key`]), keeping the
//! user's comments and layout, and never writing a file that would not load.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{BudgetLimit, BudgetPeriod, BudgetRule, BudgetScope};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub providers: ProvidersConfig,
    pub limits: LimitsConfig,
    pub history: HistoryConfig,
    pub logging: LoggingConfig,
    /// Agents that act: coding agents' executables, approvals.
    pub agents: AgentsConfig,
    /// User profiles; a user profile with a built-in's name replaces it.
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// `[prices."MODEL"]`: what a model costs, overriding the built-in table.
    pub prices: BTreeMap<String, PriceConfig>,
    /// `[mcp_servers.NAME]`: MCP servers whose tools API agents may be given.
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    /// `[tools]`: how API agents' tool calls run.
    pub tools: ToolsConfig,
    /// `[[budgets]]`: spending limits no call may overshoot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The TCP listener (`"127.0.0.1:7862"`), or `"off"`; `serve --port`,
    /// `--listen` and `--no-tcp` win over it.
    pub listen: Option<String>,
    /// `serve --idle-timeout` when the command line gives none, so a daemon
    /// that a CLI call started also goes away when unused. `"0s"`: never.
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text"
    )]
    pub idle_timeout: Option<Duration>,
    /// The log level (`info`, `debug`, or `RUST_LOG` directives such as
    /// `warn,orchestration=debug`); `RUST_LOG` in the environment wins.
    pub log_level: Option<String>,
}

/// How the daemon talks to model servers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Limit on establishing the TCP/TLS connection to a model server.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub connect_timeout: Duration,
    /// Limit on silence: waiting for the response headers, or between two
    /// chunks of a streamed reply (`turn_timeout` bounds the whole reply).
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub idle_timeout: Duration,
    /// Extra attempts after a 429, a 5xx or a connection error, made only
    /// before any part of the reply has streamed.
    pub max_retries: u32,
    /// The first retry's pause; each further one doubles it. A `Retry-After`
    /// header from the server wins.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub retry_backoff: Duration,
    /// `max_tokens` sent to Anthropic, which requires one.
    pub anthropic_max_tokens: u32,
    /// The output bound a call is held to when a budget applies to it
    /// (`max_tokens` sent to the model server): its worst case is its
    /// estimated input plus this.
    pub budget_max_tokens: u32,
    /// Limit on one whole reply, however steadily it streams: past it the
    /// upstream request is stopped and what arrived is kept, marked
    /// interrupted with the reason.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub turn_timeout: Duration,
    /// The context window, in tokens (estimated as bytes / 4): each call
    /// sends the instructions and the newest messages that fit, never the
    /// whole history. A profile's `context_limit` wins for its agents.
    pub context_limit: u64,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_retries: 2,
            retry_backoff: Duration::from_millis(500),
            anthropic_max_tokens: 4096,
            budget_max_tokens: 4096,
            turn_timeout: Duration::from_secs(600),
            context_limit: DEFAULT_CONTEXT_LIMIT,
        }
    }
}

/// How much history is kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Messages kept per agent (per incarnation); older ones are deleted as
    /// new ones arrive. 0, the default, keeps everything.
    pub max_messages_per_agent: usize,
    /// Ended conversations whose last message is older than this are pruned
    /// daily, as `orchestration prune --older-than` does. Unset: kept forever.
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text"
    )]
    pub retention: Option<Duration>,
}

/// What one client, or a crowd of them, may take of the daemon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections per listener (the Unix socket and TCP each have
    /// their own, so a TCP flood cannot lock the owner out of the socket).
    /// Past it, new connections get a 503 and are closed.
    pub max_connections: usize,
    /// Time allowed to send a complete request head, counted from when the
    /// connection opens or its previous response ends: this is also the
    /// keep-alive idle timeout. A connection over it is closed.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub header_timeout: Duration,
    /// Time allowed for a whole request body to arrive once its head has.
    /// Past it the request gets a 408 and the connection is closed, so a
    /// client that trickles (or never sends) its body cannot hold a slot.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub body_timeout: Duration,
    /// Provider calls in flight at once, across all agents; more wait their turn.
    pub max_provider_calls: usize,
    /// Bytes of one model reply's text (and of a successful upstream body,
    /// such as a model listing). A reply that passes it is stopped there and
    /// kept, marked interrupted with the reason.
    pub max_reply_bytes: usize,
    /// Agents one `POST /messages` (fan-out) may name.
    pub max_fan_out: usize,
    /// Bytes of message content being handled at once across all agents
    /// (each exchange reserves its prompt's size until it ends); more wait
    /// their turn. A prompt larger than this runs alone.
    pub max_bytes_in_flight: usize,
    /// TCP connections open at once that have not yet sent a request with
    /// the token. They do not take `max_connections` slots; past this cap
    /// the oldest of them is closed, so a crowd of them never keeps an
    /// authenticated client out.
    pub max_unauthenticated: usize,
    /// Time a TCP connection gets to send its first request with the token;
    /// past it, it is closed.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub unauthenticated_timeout: Duration,
    /// `GET /events` streams open at once, across both listeners. Kept
    /// below `max_connections`, so that idle watchers cannot take every
    /// connection and lock the owner's own commands out. Past it, 503.
    pub max_event_streams: usize,
    /// How often an event stream with nothing to say sends a keep-alive
    /// (an SSE `:` comment line, an empty NDJSON line), so that a reader
    /// that vanished is noticed and its stream closed.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub events_keepalive: Duration,
    /// Coding agents' child processes running at once, across all agents;
    /// a turn that needs one more waits for one to stop, in a queue of at
    /// most this many turns; a turn past that queue gets a 429.
    pub max_agent_processes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_provider_calls: 32,
            max_reply_bytes: 4 << 20,
            max_fan_out: 64,
            max_bytes_in_flight: 16 << 20,
            max_unauthenticated: 64,
            unauthenticated_timeout: Duration::from_secs(5),
            max_event_streams: 64,
            events_keepalive: Duration::from_secs(15),
            max_agent_processes: 8,
        }
    }
}

/// `[agents]`: agents that act (coding agents, and API agents with tools).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// How long a tool call that needs permission waits for an answer
    /// before it is denied.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub approval_timeout: Duration,
    /// A coding agent's child process stops after this long without a
    /// turn; the next message starts a new one that resumes the session.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub idle_timeout: Duration,
    /// The most one coding-agent turn may take, tool runs and approvals
    /// included; past it the turn is interrupted (what it said is kept,
    /// marked interrupted) and the child is kept for the next turn.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub turn_timeout: Duration,
    /// `[agents.claude-code]`: how to run Claude Code.
    #[serde(rename = "claude-code")]
    pub claude_code: AgentCommand,
    /// `[agents.codex]`: how to run Codex.
    pub codex: AgentCommand,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            approval_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(600),
            turn_timeout: Duration::from_secs(30 * 60),
            claude_code: AgentCommand::default(),
            codex: AgentCommand::default(),
        }
    }
}

/// How to start one coding agent's CLI.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentCommand {
    /// The executable and leading arguments; unset: the CLI's usual name
    /// (`claude`, `codex`) found on the daemon's `PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Variables added to the child's minimal environment.
    pub env: BTreeMap<String, String>,
}

/// The daemon's own log file (`S/daemon.log`, when it runs in the
/// background with `serve --daemon`). Read at start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Bytes past which the log is rotated, at start and while running:
    /// `daemon.log` becomes `daemon.log.1`, and so on.
    pub max_size: u64,
    /// Rotated files kept (`daemon.log.1` … `daemon.log.N`); older ones
    /// are deleted.
    pub keep: usize,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// `[profiles.NAME]`: a named endpoint that speaks one of the provider protocols.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `openai` (the default) or `anthropic`.
    pub provider: Option<String>,
    pub base_url: Option<String>,
    /// The environment variable holding the key. None: the endpoint needs no key.
    pub api_key_env: Option<String>,
    pub model: Option<String>,
    /// The context window of this profile's model, in tokens; unset: the
    /// model's own where known, else `providers.context_limit`.
    pub context_limit: Option<u64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tools an agent spawned with this profile gets (as `spawn --tools`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// `[mcp_servers.NAME]`: one MCP server, in the shape assistants and
/// editors use: a command run on stdio (`command`, `args`, `env`, `cwd`),
/// or a streamable-HTTP `url` with `headers`. Started on first use.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The server's whole environment besides `PATH`, `HOME` and `LANG`:
    /// it never inherits the daemon's keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The policy of this server's tools that `policies` does not name;
    /// unset: `allow` for a tool annotated read-only, else `ask`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::model::ToolPolicy>,
    /// `[mcp_servers.NAME.policies]`: `TOOL = "allow" | "ask" | "deny"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, crate::model::ToolPolicy>,
}

/// `[tools]`: API agents' tool calls.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// The longest one tool call may take; then it fails as timed out.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub call_timeout: Duration,
    /// A result longer than this is cut there, with a marker saying so.
    pub max_result_bytes: usize,
    /// Model calls one turn may make that end in tool calls; the turn then
    /// ends with a marker.
    pub max_tool_rounds: u32,
    /// A server unused this long is stopped; the next call starts it again.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            max_result_bytes: 256 * 1024,
            max_tool_rounds: 8,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// `[prices."MODEL"]`: USD per million tokens. Cached input and cache
/// writes cost the input price unless they have their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// `[[budgets]]`: one spending limit. `scope` is `all`, `agent:NAME` or
/// `profile:NAME`; `period` is `day`, `month` (UTC calendar) or `total`
/// (the default); exactly one of `usd` and `tokens`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub scope: String,
    #[serde(default = "total")]
    pub period: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

fn total() -> String {
    "total".to_owned()
}

impl BudgetConfig {
    /// The budget this entry sets, or why it sets none.
    pub fn rule(&self) -> Result<BudgetRule, String> {
        let scope = self.scope.parse::<BudgetScope>()?;
        let period = self.period.parse::<BudgetPeriod>()?;
        let limit = match (self.usd, self.tokens) {
            (Some(usd), None) => BudgetLimit::Usd(usd),
            (None, Some(tokens)) => BudgetLimit::Tokens(tokens),
            (Some(_), Some(_)) => return Err("give either `usd` or `tokens`, not both".into()),
            (None, None) => return Err("give a limit: `usd = 5.0` or `tokens = 100000`".into()),
        };
        Ok(BudgetRule {
            scope,
            period,
            limit: limit.check()?,
        })
    }

    /// The budgets the config sets, the valid ones (all are, once validated).
    pub fn rules(budgets: &[Self]) -> Vec<BudgetRule> {
        budgets.iter().filter_map(|b| b.rule().ok()).collect()
    }
}

/// Every `[[budgets]]` entry makes sense, and no two count the same scope
/// over the same period in the same unit (one would shadow the other). A
/// `profile:NAME` scope must name a profile or provider: any other name
/// would never match a call.
fn validate_budgets(config: &Config) -> Result<(), String> {
    let mut seen = Vec::new();
    for (index, budget) in config.budgets.iter().enumerate() {
        let name = format!("budgets[{index}] (scope = {:?})", budget.scope);
        let rule = budget.rule().map_err(|why| format!("{name}: {why}"))?;
        if let BudgetScope::Profile(profile) = &rule.scope
            && !crate::profiles::is_profile_or_provider(profile, config)
        {
            return Err(format!(
                "{name}: no profile or provider is named {profile:?} (profiles: {}; providers: {})",
                crate::profiles::known_profiles(config),
                crate::profiles::Kind::NAMES
            ));
        }
        let key = (rule.scope.clone(), rule.period, rule.limit.unit());
        if let Some(first) = seen.iter().position(|k| *k == key) {
            return Err(format!(
                "{name}: budgets[{first}] already limits {} per {} in {}",
                key.0, key.1, key.2
            ));
        }
        seen.push(key);
    }
    Ok(())
}

/// The most a price may be, in USD per million tokens: far above any
/// model's, low enough that a typo (a price per token given per million
/// the wrong way round) is caught.
const MAX_PRICE: f64 = 100_000.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads the config file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match read_settings_file(path) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and validates a config file's text. Every value a file can set
    /// passes through here (the daemon's start, `config set`, and any later
    /// reload), so nothing out of range ever reaches the code that uses it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self =
            toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that parse but make no sense (a cap of 0, a
    /// timeout of a million years), naming the key. Durations are already
    /// bounded by [`crate::duration::parse`].
    pub fn validate(&self) -> Result<(), String> {
        let limits = &self.limits;
        let providers = &self.providers;
        in_range(
            "limits.max_connections",
            limits.max_connections as u64,
            1,
            MAX_CONNECTIONS,
        )?;
        in_range(
            "limits.max_provider_calls",
            limits.max_provider_calls as u64,
            1,
            MAX_PROVIDER_CALLS,
        )?;
        in_range(
            "limits.max_event_streams",
            limits.max_event_streams as u64,
            1,
            MAX_CONNECTIONS,
        )?;
        not_zero("limits.events_keepalive", limits.events_keepalive)?;
        in_range(
            "limits.max_unauthenticated",
            limits.max_unauthenticated as u64,
            1,
            MAX_CONNECTIONS,
        )?;
        not_zero(
            "limits.unauthenticated_timeout",
            limits.unauthenticated_timeout,
        )?;
        in_range(
            "providers.max_retries",
            providers.max_retries.into(),
            0,
            100,
        )?;
        in_range(
            "providers.anthropic_max_tokens",
            providers.anthropic_max_tokens.into(),
            1,
            10_000_000,
        )?;
        in_range(
            "limits.max_reply_bytes",
            limits.max_reply_bytes as u64,
            MIN_REPLY_BYTES,
            MAX_REPLY_BYTES,
        )?;
        in_range("limits.max_fan_out", limits.max_fan_out as u64, 1, 10_000)?;
        in_range(
            "limits.max_bytes_in_flight",
            limits.max_bytes_in_flight as u64,
            1 << 20,
            MAX_BYTES_IN_FLIGHT,
        )?;
        in_range(
            "providers.context_limit",
            providers.context_limit,
            MIN_CONTEXT_LIMIT,
            MAX_CONTEXT_LIMIT,
        )?;
        not_zero("agents.approval_timeout", self.agents.approval_timeout)?;
        not_zero("agents.idle_timeout", self.agents.idle_timeout)?;
        not_zero("agents.turn_timeout", self.agents.turn_timeout)?;
        in_range(
            "limits.max_agent_processes",
            limits.max_agent_processes as u64,
            1,
            10_000,
        )?;
        for (key, agent) in [
            ("agents.claude-code.command", &self.agents.claude_code),
            ("agents.codex.command", &self.agents.codex),
        ] {
            if agent
                .command
                .as_ref()
                .is_some_and(|command| command.first().is_none_or(|program| program.is_empty()))
            {
                return Err(format!("{key} must name an executable"));
            }
        }
        for (model, price) in &self.prices {
            validate_price(model, price)?;
        }
        validate_budgets(self)?;
        in_range(
            "providers.budget_max_tokens",
            providers.budget_max_tokens.into(),
            1,
            10_000_000,
        )?;
        for (name, server) in &self.mcp_servers {
            validate_mcp_server(name, server)?;
        }
        not_zero("tools.call_timeout", self.tools.call_timeout)?;
        not_zero("tools.idle_timeout", self.tools.idle_timeout)?;
        in_range(
            "tools.max_result_bytes",
            self.tools.max_result_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        in_range(
            "tools.max_tool_rounds",
            u64::from(self.tools.max_tool_rounds),
            1,
            1000,
        )?;
        for (name, profile) in &self.profiles {
            if let Some(limit) = profile.context_limit {
                let key = format!("profiles.{name}.context_limit");
                in_range(&key, limit, MIN_CONTEXT_LIMIT, MAX_CONTEXT_LIMIT)?;
            }
        }
        not_zero("providers.turn_timeout", providers.turn_timeout)?;
        in_range(
            "logging.max_size",
            self.logging.max_size,
            MIN_LOG_SIZE,
            MAX_LOG_SIZE,
        )?;
        in_range("logging.keep", self.logging.keep as u64, 1, 100)?;
        not_zero("limits.header_timeout", limits.header_timeout)?;
        not_zero("limits.body_timeout", limits.body_timeout)?;
        not_zero("providers.connect_timeout", providers.connect_timeout)?;
        not_zero("providers.idle_timeout", providers.idle_timeout)?;
        if let Some(level) = &self.daemon.log_level
            && tracing_subscriber::EnvFilter::try_new(level).is_err()
        {
            return Err(format!(
                "daemon.log_level = {level:?} is not a level (error, warn, info, debug, trace) or RUST_LOG directive"
            ));
        }
        if let Some(listen) = &self.daemon.listen
            && listen != "off"
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "daemon.listen = {listen:?} is not an address like \"127.0.0.1:7862\" or \"off\""
            ));
        }
        Ok(())
    }
}

/// The most connections one listener may be told to hold open.
pub const MAX_CONNECTIONS: u64 = 1_000_000;
/// The smallest and largest `logging.max_size`: 64 KiB and 1 TiB.
pub const MIN_LOG_SIZE: u64 = 64 * 1024;
pub const MAX_LOG_SIZE: u64 = 1 << 40;
/// The most provider calls that may be allowed in flight at once.
pub const MAX_PROVIDER_CALLS: u64 = 100_000;
/// `limits.max_reply_bytes` bounds: a reply must have room for a sentence,
/// and one reply may not take more than a store row can hold (SQLite
/// refuses strings over 1 GB by default).
pub const MIN_REPLY_BYTES: u64 = 1024;
pub const MAX_REPLY_BYTES: u64 = 512 << 20;
pub const MAX_BYTES_IN_FLIGHT: u64 = 16 << 30;
/// The context window when neither profile nor model says: 128k tokens.
pub const DEFAULT_CONTEXT_LIMIT: u64 = 128_000;
pub const MIN_CONTEXT_LIMIT: u64 = 256;
/// Ten million tokens, 40 MB of text: beyond any model's window.
pub const MAX_CONTEXT_LIMIT: u64 = 10_000_000;

/// The most a config or environment file may hold: far beyond any real one.
pub const MAX_SETTINGS_FILE_BYTES: u64 = 1 << 20;

/// Reads a config or environment file; `Ok(None)` when there is none. It is
/// opened without blocking and read only if it is a regular file of at most
/// [`MAX_SETTINGS_FILE_BYTES`]: a FIFO or device put in its place would
/// otherwise hang the daemon's start and every reload on the read.
pub fn read_settings_file(path: &Path) -> io::Result<Option<String>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = non_regular_kind(meta.file_type());
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    if meta.len() > MAX_SETTINGS_FILE_BYTES {
        return Err(too_large());
    }
    let mut text = String::new();
    // Bounded even if the file grows while it is read.
    file.take(MAX_SETTINGS_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SETTINGS_FILE_BYTES {
        return Err(too_large());
    }
    Ok(Some(text))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than {MAX_SETTINGS_FILE_BYTES} bytes"),
    )
}

fn non_regular_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "{key} = {value} is out of range; it must be from {min} to {max}"
    ))
}

fn not_zero(key: &str, value: Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err(format!("{key} must be longer than 0"));
    }
    Ok(())
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::duration::parse(&text).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn optional_duration_text<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => duration_text(duration, serializer),
        None => serializer.serialize_none(),
    }
}

fn duration_text<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::duration::format(*duration))
}

/// The keys every `[profiles.NAME]` may set (besides `headers.NAME`).
const PROFILE_KEYS: &[&str] = &[
    "provider",
    "base_url",
    "api_key_env",
    "model",
    "context_limit",
];

impl Config {
    /// Every setting as `(dotted.key, value)`, defaults included; an unset
    /// optional setting is `null`.
    pub fn entries(&self) -> Vec<(String, serde_json::Value)> {
        let mut entries = Vec::new();
        if let Ok(value) = serde_json::to_value(self) {
            flatten("", &value, &mut entries);
        }
        entries
    }
}

/// A price is a finite number of USD per million tokens, 0 to [`MAX_PRICE`].
/// A server's name is part of every tool name (`NAME.tool`, `NAME__tool`
/// on the wire): letters, digits, `-` and `_`, at most 32.
fn validate_mcp_server(name: &str, server: &McpServerConfig) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "mcp_servers.{name:?}: a server name is 1-32 letters, digits, '-' or '_'"
        ));
    }
    match (&server.command, &server.url) {
        (Some(_), Some(_)) => Err(format!(
            "mcp_servers.{name}: give either `command` (stdio) or `url` (HTTP), not both"
        )),
        (None, None) => Err(format!(
            "mcp_servers.{name}: give `command` (a server run on stdio) or `url` (streamable HTTP)"
        )),
        (Some(command), None) if command.is_empty() => {
            Err(format!("mcp_servers.{name}.command must not be empty"))
        }
        (None, Some(url)) if !(url.starts_with("http://") || url.starts_with("https://")) => Err(
            format!("mcp_servers.{name}.url = {url:?} must be an http:// or https:// URL"),
        ),
        _ => Ok(()),
    }
}

fn validate_price(model: &str, price: &PriceConfig) -> Result<(), String> {
    if model.is_empty() {
        return Err("prices: a model name must not be empty".into());
    }
    let fields = [
        ("input", Some(price.input)),
        ("output", Some(price.output)),
        ("cache_read", price.cache_read),
        ("cache_write", price.cache_write),
    ];
    for (field, value) in fields {
        if let Some(value) = value
            && !(value.is_finite() && (0.0..=MAX_PRICE).contains(&value))
        {
            return Err(format!(
                "prices.\"{model}\".{field} = {value} must be USD per million tokens, 0 to {MAX_PRICE}"
            ));
        }
    }
    Ok(())
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    let serde_json::Value::Object(map) = value else {
        out.push((prefix.to_owned(), value.clone()));
        return;
    };
    for (key, value) in map {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        flatten(&key, value, out);
    }
}

/// Why `config set`/`unset` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Not a key this version knows.
    #[error("{0}")]
    Key(String),
    /// The value does not fit the key, or the result would not load.
    #[error("{0}")]
    Value(String),
    /// The file as it is does not parse.
    #[error("{0}")]
    File(String),
}

/// What a dotted key names, and so what its value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Integer,
    Text,
}

fn key_kind(key: &str) -> Result<KeyKind, EditError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(EditError::Key(format!(
            "{key:?} is not a config key; keys look like providers.idle_timeout"
        )));
    }
    if let ["profiles", _, "context_limit"] = parts[..] {
        return Ok(KeyKind::Integer);
    }
    if let ["profiles", _, field] = parts[..]
        && PROFILE_KEYS.contains(&field)
    {
        return Ok(KeyKind::Text);
    }
    if let ["profiles", _, "headers", _] = parts[..] {
        return Ok(KeyKind::Text);
    }
    match Config::default()
        .entries()
        .into_iter()
        .find(|(k, _)| k == key)
    {
        Some((_, serde_json::Value::Number(_))) => Ok(KeyKind::Integer),
        Some(_) => Ok(KeyKind::Text),
        None => Err(EditError::Key(format!(
            "unknown config key {key:?}; `orchestration config list` shows them (profiles.NAME.{{{}}} and profiles.NAME.headers.HEADER too)",
            PROFILE_KEYS.join(",")
        ))),
    }
}

/// Whether `key` is a setting this version knows (it may still be unset).
pub fn is_known_key(key: &str) -> bool {
    key_kind(key).is_ok()
}

/// `text` (a config file's contents) with `key` set to `raw`: an integer
/// for numeric settings, a string for the rest. Comments and layout stay.
/// Fails, changing nothing, if the result would not load.
pub fn set_key(text: &str, key: &str, raw: &str) -> Result<String, EditError> {
    let value: toml_edit::Value = match key_kind(key)? {
        KeyKind::Integer => raw
            .trim()
            .parse::<i64>()
            .map_err(|_| EditError::Value(format!("{key} takes a whole number, not {raw:?}")))?
            .into(),
        KeyKind::Text => raw.into(),
    };
    let mut document = parse_document(text)?;
    let parts: Vec<&str> = key.split('.').collect();
    let Some((last, tables)) = parts.split_last() else {
        return Err(EditError::Key(format!("{key:?} is not a config key")));
    };
    let mut table: &mut dyn toml_edit::TableLike = document.as_table_mut();
    let mut path = String::new();
    for part in tables {
        path = if path.is_empty() {
            (*part).to_owned()
        } else {
            format!("{path}.{part}")
        };
        if !table.contains_key(part) {
            let mut new_table = toml_edit::Table::new();
            // `[profiles.work]`, not an empty `[profiles]` above it.
            new_table.set_implicit(true);
            table.insert(part, toml_edit::Item::Table(new_table));
        }
        table = table
            .get_mut(part)
            .and_then(toml_edit::Item::as_table_like_mut)
            .ok_or_else(|| {
                EditError::File(format!("{path} is set to a value in the file, not a table"))
            })?;
    }
    match table.get_mut(last).and_then(toml_edit::Item::as_value_mut) {
        // In place, so the comment above the key and the spacing stay.
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = value;
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(last, toml_edit::value(value));
        }
    }
    let edited = document.to_string();
    Config::parse(&edited)
        .map_err(|error| EditError::Value(format!("{key} = {raw:?} would not load: {error}")))?;
    Ok(edited)
}

/// `text` without `key` (and without tables that leaves empty), and
/// whether it was there.
pub fn unset_key(text: &str, key: &str) -> Result<(String, bool), EditError> {
    key_kind(key)?;
    let mut document = parse_document(text)?;
    let parts: Vec<&str> = key.split('.').collect();
    let removed = remove_path(document.as_table_mut(), &parts);
    Ok((document.to_string(), removed))
}

/// `text` with a `[mcp_servers.NAME]` table for each of `servers` (as
/// `orchestration tools import` adds them), and the names it replaced. A
/// server the file names already is refused unless `replace`; the result
/// must load, or nothing changes. A new server's tables go together after
/// the last `mcp_servers` table (or at the end of the file), a replaced
/// one's where it was.
pub fn add_mcp_servers(
    text: &str,
    servers: &BTreeMap<String, McpServerConfig>,
    replace: bool,
) -> Result<(String, Vec<String>), EditError> {
    let mut document = parse_document(text)?;
    let root = document.as_table_mut();
    let end = root
        .get("mcp_servers")
        .and_then(last_position)
        .or_else(|| {
            root.iter()
                .filter_map(|(_, item)| last_position(item))
                .max()
        })
        .unwrap_or(0);
    if !root.contains_key("mcp_servers") {
        let mut table = toml_edit::Table::new();
        // `[mcp_servers.NAME]`, not an empty `[mcp_servers]` above them.
        table.set_implicit(true);
        root.insert("mcp_servers", toml_edit::Item::Table(table));
    }
    let table = root
        .get_mut("mcp_servers")
        .and_then(toml_edit::Item::as_table_mut)
        .ok_or_else(|| EditError::File("mcp_servers is set to a value, not a table".into()))?;
    let mut replaced = Vec::new();
    for (name, server) in servers {
        let old = table.get(name);
        if old.is_some() && !replace {
            return Err(EditError::Value(format!(
                "mcp_servers.{name} is already configured (--force replaces it)"
            )));
        }
        let at = old
            .and_then(toml_edit::Item::as_table)
            .and_then(toml_edit::Table::position)
            .unwrap_or(end);
        if old.is_some() {
            replaced.push(name.clone());
        }
        let body = toml::to_string(server)
            .map_err(|error| EditError::Value(format!("mcp_servers.{name}: {error}")))?;
        let mut body = parse_document(&body)?.as_table().clone();
        place(&mut body, at);
        table.insert(name, toml_edit::Item::Table(body));
    }
    let edited = document.to_string();
    Config::parse(&edited).map_err(EditError::Value)?;
    Ok((edited, replaced))
}

/// The last place in the file a table at or under `item` takes.
fn last_position(item: &toml_edit::Item) -> Option<isize> {
    match item {
        toml_edit::Item::Table(table) => table
            .iter()
            .filter_map(|(_, child)| last_position(child))
            .chain(table.position())
            .max(),
        toml_edit::Item::ArrayOfTables(array) => array
            .iter()
            .flat_map(|table| {
                table
                    .iter()
                    .filter_map(|(_, child)| last_position(child))
                    .chain(table.position())
            })
            .max(),
        _ => None,
    }
}

/// Gives `table` and the tables under it the place `at`. A table parsed
/// from another text keeps that text's places, which would print its
/// `[...env]` or `[...headers]` near the top of this file, even between
/// `[[budgets]]` entries; tables of equal place print in the order they
/// are nested, so these stay together right after the table at `at`.
fn place(table: &mut toml_edit::Table, at: isize) {
    table.set_position(Some(at));
    for (_, child) in table.iter_mut() {
        if let Some(child) = child.as_table_mut() {
            place(child, at);
        }
    }
}

fn remove_path(table: &mut dyn toml_edit::TableLike, parts: &[&str]) -> bool {
    match parts {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => {
            let Some(child) = table
                .get_mut(first)
                .and_then(toml_edit::Item::as_table_like_mut)
            else {
                return false;
            };
            let removed = remove_path(child, rest);
            if removed && child.is_empty() {
                table.remove(first);
            }
            removed
        }
    }
}

fn parse_document(text: &str) -> Result<toml_edit::DocumentMut, EditError> {
    text.parse::<toml_edit::DocumentMut>().map_err(|error| {
        EditError::File(format!("does not parse: {}", error.to_string().trim_end()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles_and_durations() {
        let config = Config::parse(
            r#"
            [providers]
            idle_timeout = "2s"
            [profiles.work]
            base_url = "http://127.0.0.1:9/v1"
            api_key_env = "WORK_KEY"
            headers = { "X-Title" = "orchestration" }
            "#,
        )
        .unwrap();
        assert_eq!(config.providers.idle_timeout, Duration::from_secs(2));
        assert_eq!(config.providers.max_retries, 2);
        let work = &config.profiles["work"];
        assert_eq!(work.api_key_env.as_deref(), Some("WORK_KEY"));
        assert_eq!(work.headers["X-Title"], "orchestration");
    }

    #[test]
    fn the_example_config_parses() {
        let config = Config::parse(include_str!("../contrib/config.example.toml")).unwrap();
        let defaults = ProvidersConfig::default();
        assert_eq!(config.providers.idle_timeout, defaults.idle_timeout);
        assert_eq!(config.providers.retry_backoff, defaults.retry_backoff);
        assert_eq!(config.profiles["lmstudio"].api_key_env, None);
    }

    #[test]
    fn set_keeps_comments_and_types_values() {
        let text = "# my settings\n[providers]\n# slow network\nidle_timeout = \"2s\"\n";
        let edited = set_key(text, "providers.idle_timeout", "5m").unwrap();
        assert!(edited.contains("# slow network"), "{edited}");
        assert!(edited.contains("idle_timeout = \"5m\""), "{edited}");
        let edited = set_key(&edited, "limits.max_connections", "64").unwrap();
        assert!(edited.contains("max_connections = 64"), "{edited}");
        let edited = set_key(&edited, "profiles.work.base_url", "http://h/v1").unwrap();
        assert!(edited.contains("[profiles.work]"), "{edited}");
        assert!(!edited.contains("[profiles]\n"), "{edited}");
        let config = Config::parse(&edited).unwrap();
        assert_eq!(config.providers.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.limits.max_connections, 64);
        assert_eq!(
            config.profiles["work"].base_url.as_deref(),
            Some("http://h/v1")
        );
    }

    #[test]
    fn set_refuses_what_would_not_load() {
        assert!(set_key("", "providers.idle_timeout", "soon").is_err());
        assert!(set_key("", "limits.max_connections", "many").is_err());
        assert!(set_key("", "providers.idle_timout", "5s").is_err());
        assert!(set_key("", "profiles.x.base_ulr", "a").is_err());
        assert!(set_key("providers = 3\n", "providers.idle_timeout", "5s").is_err());
        assert!(set_key("[broken\n", "providers.idle_timeout", "5s").is_err());
    }

    #[test]
    fn unset_removes_the_key_and_emptied_tables() {
        let text = set_key("", "profiles.work.base_url", "http://h/v1").unwrap();
        let (text, removed) = unset_key(&text, "profiles.work.base_url").unwrap();
        assert!(removed);
        assert!(!text.contains("work"), "{text:?}");
        let (_, removed) = unset_key(&text, "providers.idle_timeout").unwrap();
        assert!(!removed);
    }

    #[test]
    fn entries_list_every_setting() {
        let entries = Config::default().entries();
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("providers.idle_timeout"), Some(serde_json::json!("2m")));
        assert_eq!(get("limits.max_connections"), Some(serde_json::json!(512)));
        assert_eq!(get("daemon.listen"), Some(serde_json::Value::Null));
    }

    /// `[section]\nleaf = value`, for a dotted key; text values quoted.
    fn file_setting(key: &str, value: &str) -> String {
        let (section, leaf) = key.rsplit_once('.').unwrap();
        let value = if value.parse::<i128>().is_ok() {
            value.to_owned()
        } else {
            format!("{value:?}")
        };
        format!("[{section}]\n{leaf} = {value}\n")
    }

    #[test]
    fn every_value_out_of_range_is_an_error_naming_its_key() {
        let huge = "18446744073709551615";
        for (key, value) in [
            ("limits.max_connections", "0"),
            ("limits.max_connections", huge),
            ("limits.max_connections", "2305843009213693952"),
            ("limits.max_provider_calls", "0"),
            ("limits.max_provider_calls", "2305843009213693952"),
            ("limits.header_timeout", "0s"),
            ("limits.header_timeout", "10000000000000000000"),
            ("limits.body_timeout", "0ms"),
            ("limits.body_timeout", "400d"),
            ("providers.connect_timeout", "0s"),
            ("providers.idle_timeout", "9999999h"),
            ("providers.retry_backoff", "18446744073709551615ms"),
            ("providers.max_retries", "1000"),
            ("providers.max_retries", huge),
            ("providers.anthropic_max_tokens", "0"),
            ("daemon.idle_timeout", "10000000000000000000s"),
            ("daemon.listen", "nowhere"),
            ("daemon.log_level", "info,[[bad"),
            ("history.retention", "10000000000000000000s"),
            ("providers.anthropic_max_tokens", "18446744073709551615"),
            ("providers.connect_timeout", "18446744073709551615ms"),
            ("limits.body_timeout", "18446744073709551615"),
            ("history.max_messages_per_agent", "-1"),
            ("limits.max_reply_bytes", "0"),
            ("limits.max_reply_bytes", "1023"),
            ("limits.max_reply_bytes", huge),
            ("limits.max_fan_out", "0"),
            ("limits.max_bytes_in_flight", "1000"),
            ("limits.max_bytes_in_flight", huge),
            ("providers.turn_timeout", "0s"),
            ("providers.context_limit", "0"),
            ("providers.context_limit", "100000000"),
            ("profiles.p.context_limit", "1"),
            ("limits.max_event_streams", "0"),
            ("limits.max_unauthenticated", "0"),
            ("limits.unauthenticated_timeout", "0s"),
            ("limits.events_keepalive", "0s"),
            ("logging.max_size", "1000"),
            ("logging.max_size", huge),
            ("logging.keep", "0"),
            ("logging.keep", "101"),
        ] {
            let leaf = key.rsplit('.').next().unwrap();
            let error =
                Config::parse(&file_setting(key, value)).expect_err(&format!("{key} = {value}"));
            assert!(error.contains(leaf), "{key} = {value}: {error}");
            // `config set` goes through the same check and changes nothing.
            assert!(set_key("", key, value).is_err(), "config set {key} {value}");
        }
        for (key, value) in [
            ("limits.max_connections", "1"),
            ("limits.max_connections", "1000000"),
            ("limits.body_timeout", "365d"),
            ("providers.retry_backoff", "0s"),
            ("daemon.idle_timeout", "0s"),
            ("daemon.listen", "off"),
            ("daemon.listen", "[::1]:7862"),
            ("limits.max_reply_bytes", "1024"),
            ("limits.max_fan_out", "1"),
            ("providers.turn_timeout", "300ms"),
            ("providers.context_limit", "256"),
            ("profiles.p.context_limit", "2000000"),
            ("logging.max_size", "65536"),
            ("logging.keep", "1"),
        ] {
            Config::parse(&file_setting(key, value))
                .unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
            set_key("", key, value).unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
        }
    }

    #[test]
    fn budgets_are_checked_naming_the_entry() {
        let config = Config::parse(
            "[[budgets]]\nscope = \"all\"\nperiod = \"day\"\nusd = 2.5\n\
             [[budgets]]\nscope = \"agent:x\"\ntokens = 1000\n",
        )
        .unwrap();
        let rules = BudgetConfig::rules(&config.budgets);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].period, BudgetPeriod::Total);
        for (text, expected) in [
            (
                "scope = \"everyone\"\nusd = 1",
                "budgets[0] (scope = \"everyone\")",
            ),
            ("scope = \"all\"\nperiod = \"week\"\nusd = 1", "week"),
            ("scope = \"all\"\nusd = 1\ntokens = 5", "not both"),
            ("scope = \"all\"", "give a limit"),
            ("scope = \"all\"\nusd = -1.0", "usd = -1"),
            ("scope = \"all\"\nusd = nan", "usd = NaN"),
            ("scope = \"all\"\ntokens = 0", "tokens = 0"),
        ] {
            let error = Config::parse(&format!("[[budgets]]\n{text}\n")).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        let twice =
            "[[budgets]]\nscope = \"all\"\nusd = 1\n[[budgets]]\nscope = \"all\"\nusd = 2\n";
        let error = Config::parse(twice).unwrap_err();
        assert!(
            error.contains("budgets[1]") && error.contains("budgets[0]"),
            "{error}"
        );
        assert!(Config::parse("[[budgets]]\nscope = \"all\"\nusd = 1\nlimit = 2\n").is_err());
    }

    #[test]
    fn typos_are_errors() {
        let error = Config::parse("[profiles.x]\nbase_ulr = \"a\"\n").unwrap_err();
        assert!(error.contains("base_ulr"), "{error}");
        assert!(Config::parse("[providers]\nidle_timeout = \"soon\"").is_err());
    }
}
