//! The user's config file (`config.toml`, SPEC §1): daemon listener, provider
//! timeouts and retries, and user-defined provider profiles.
//!
//! A missing file means "all defaults". A file that exists but does not parse
//! is an error naming the file and the line, never silently ignored: a typo in
//! a profile should not send a key somewhere unexpected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub providers: ProvidersConfig,
    pub limits: LimitsConfig,
    pub history: HistoryConfig,
    /// User profiles; a user profile with a built-in's name replaces it.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The TCP listener (`"127.0.0.1:7862"`), or `"off"`; `serve --port`,
    /// `--listen` and `--no-tcp` win over it.
    pub listen: Option<String>,
}

/// How the daemon talks to model servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Limit on establishing the TCP/TLS connection to a model server.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Limit on silence: waiting for the response headers, or between two
    /// chunks of a streamed reply. There is no total deadline, so a long
    /// generation that keeps streaming is never cut off.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Extra attempts after a 429, a 5xx or a connection error, made only
    /// before any part of the reply has streamed.
    pub max_retries: u32,
    /// The first retry's pause; each further one doubles it. A `Retry-After`
    /// header from the server wins.
    #[serde(deserialize_with = "duration")]
    pub retry_backoff: Duration,
    /// `max_tokens` sent to Anthropic, which requires one.
    pub anthropic_max_tokens: u32,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_retries: 2,
            retry_backoff: Duration::from_millis(500),
            anthropic_max_tokens: 4096,
        }
    }
}

/// How much history is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Messages kept per agent (per incarnation); older ones are deleted as
    /// new ones arrive. 0, the default, keeps everything.
    pub max_messages_per_agent: usize,
}

/// What one client, or a crowd of them, may take of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections per listener (the Unix socket and TCP each have
    /// their own, so a TCP flood cannot lock the owner out of the socket).
    /// Past it, new connections get a 503 and are closed.
    pub max_connections: usize,
    /// Time allowed to send a complete request head, counted from when the
    /// connection opens or its previous response ends: this is also the
    /// keep-alive idle timeout. A connection over it is closed.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Provider calls in flight at once, across all agents; more wait their turn.
    pub max_provider_calls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            max_provider_calls: 32,
        }
    }
}

/// `[profiles.NAME]`: a named endpoint that speaks one of the provider protocols.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `openai` (the default) or `anthropic`.
    pub provider: Option<String>,
    pub base_url: Option<String>,
    /// The environment variable holding the key. None: the endpoint needs no key.
    pub api_key_env: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

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
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
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

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::duration::parse(&text).map_err(serde::de::Error::custom)
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
    fn typos_are_errors() {
        let error = Config::parse("[profiles.x]\nbase_ulr = \"a\"\n").unwrap_err();
        assert!(error.contains("base_ulr"), "{error}");
        assert!(Config::parse("[providers]\nidle_timeout = \"soon\"").is_err());
    }
}
