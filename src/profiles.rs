//! The provider kinds and profiles a spawn can name, built in or from the
//! config file, and which environment variable holds each one's key.
//!
//! The CLI reads this to know which key to send with a spawn; the daemon's
//! `providers::endpoint` builds on it to resolve where a request goes.

use std::collections::BTreeMap;

use crate::config::{Config, ProfileConfig};

/// Why a spawn's provider or profile does not name one that exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown provider {0:?}; known providers: {known}", known = Kind::NAMES)]
    UnknownProvider(String),
    #[error("unknown profile {name:?}; known profiles: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("{0}")]
    BadProfile(String),
}

/// The wire protocol an agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
    Echo,
    /// Claude Code, run by the daemon as a child (`sdk` is its alias, as
    /// the Python client names it).
    ClaudeCode,
    /// Codex's app-server, run by the daemon as a child.
    Codex,
}

impl Kind {
    pub const NAMES: &'static str = "openai, anthropic, echo, claude-code, codex";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            "echo" => Some(Self::Echo),
            "claude-code" | "sdk" => Some(Self::ClaudeCode),
            "codex" => Some(Self::Codex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Echo => "echo",
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
        }
    }

    /// A coding agent: a child process the daemon runs, not a model
    /// endpoint it calls.
    pub fn is_coding_agent(self) -> bool {
        matches!(self, Self::ClaudeCode | Self::Codex)
    }

    /// The coding agent a spawn names: its provider, or, with none,
    /// `agent_type: "sdk"` (the Python client's way to ask for Claude Code).
    pub fn coding_agent(provider: Option<&str>, agent_type: &str) -> Option<Self> {
        match provider {
            Some(name) => Self::parse(name).filter(|kind| kind.is_coding_agent()),
            None if agent_type == "sdk" => Some(Self::ClaudeCode),
            None => None,
        }
    }

    /// The provider's own defaults, used when no profile is named.
    fn defaults(self) -> Defaults {
        match self {
            Self::OpenAi => Defaults {
                base_url: "https://api.openai.com/v1",
                api_key_env: Some("OPENAI_API_KEY"),
                model: Some("gpt-4o-mini"),
            },
            Self::Anthropic => Defaults {
                base_url: "https://api.anthropic.com",
                api_key_env: Some("ANTHROPIC_API_KEY"),
                model: Some("claude-sonnet-4-5"),
            },
            Self::Echo => Defaults {
                base_url: "",
                api_key_env: None,
                model: None,
            },
            // The CLI's own endpoint and model; the key, if the user has
            // one in the CLI's environment, goes to the child.
            Self::ClaudeCode => Defaults {
                base_url: "",
                api_key_env: Some("ANTHROPIC_API_KEY"),
                model: None,
            },
            Self::Codex => Defaults {
                base_url: "",
                api_key_env: Some("OPENAI_API_KEY"),
                model: None,
            },
        }
    }
}

struct Defaults {
    base_url: &'static str,
    api_key_env: Option<&'static str>,
    model: Option<&'static str>,
}

/// The built-in profiles (SPEC §5). All speak the OpenAI protocol.
const BUILT_IN: [(&str, Defaults); 3] = [
    (
        "openrouter",
        Defaults {
            base_url: "https://openrouter.ai/api/v1",
            api_key_env: Some("OPENROUTER_API_KEY"),
            model: Some("openai/gpt-4o-mini"),
        },
    ),
    (
        "local",
        Defaults {
            base_url: "http://localhost:11434/v1",
            api_key_env: None,
            model: None,
        },
    ),
    (
        "gemini",
        Defaults {
            base_url: "https://generativelanguage.googleapis.com/v1beta/openai/",
            api_key_env: Some("GEMINI_API_KEY"),
            model: Some("gemini-2.5-flash"),
        },
    ),
];

/// A profile as resolution sees it, whether built in or from config.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: Kind,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub model: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// The context window the user set for this profile, in tokens.
    pub context_limit: Option<u64>,
}

impl Profile {
    fn from_defaults(kind: Kind, defaults: &Defaults) -> Self {
        Self {
            kind,
            base_url: defaults.base_url.to_owned(),
            api_key_env: defaults.api_key_env.map(str::to_owned),
            model: defaults.model.map(str::to_owned),
            headers: BTreeMap::new(),
            context_limit: None,
        }
    }

    fn from_config(name: &str, config: &ProfileConfig) -> Result<Self, ProfileError> {
        let kind = match config.provider.as_deref() {
            None => Kind::OpenAi,
            Some(provider) => match Kind::parse(provider) {
                Some(Kind::Echo | Kind::ClaudeCode | Kind::Codex) | None => {
                    return Err(ProfileError::BadProfile(format!(
                        "profile {name:?} names provider {provider:?}; a profile speaks openai or anthropic"
                    )));
                }
                Some(kind) => kind,
            },
        };
        let defaults = kind.defaults();
        Ok(Self {
            kind,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| defaults.base_url.to_owned()),
            api_key_env: config.api_key_env.clone(),
            model: config.model.clone(),
            headers: config.headers.clone(),
            context_limit: config.context_limit,
        })
    }

    /// Looks up a profile by name: the user's config first, then the built-ins.
    pub fn named(name: &str, config: &Config) -> Result<Self, ProfileError> {
        if let Some(profile) = config.profiles.get(name) {
            return Self::from_config(name, profile);
        }
        BUILT_IN
            .iter()
            .find(|(built_in, _)| *built_in == name)
            .map(|(_, defaults)| Self::from_defaults(Kind::OpenAi, defaults))
            .ok_or_else(|| ProfileError::UnknownProfile {
                name: name.to_owned(),
                known: known_profiles(config),
            })
    }

    /// The profile a spawn selects: the named profile, or the provider's defaults.
    pub fn select(
        provider: Option<&str>,
        profile: Option<&str>,
        config: &Config,
    ) -> Result<Self, ProfileError> {
        let kind = match provider {
            Some(name) => Some(
                Kind::parse(name).ok_or_else(|| ProfileError::UnknownProvider(name.to_owned()))?,
            ),
            None => None,
        };
        let Some(profile_name) = profile else {
            let kind = kind.unwrap_or(Kind::OpenAi);
            return Ok(Self::from_defaults(kind, &kind.defaults()));
        };
        let selected = Self::named(profile_name, config)?;
        if let Some(kind) = kind.filter(|k| *k != selected.kind) {
            return Err(ProfileError::BadProfile(format!(
                "profile {profile_name:?} speaks {}, not {}",
                selected.kind.name(),
                kind.name()
            )));
        }
        Ok(selected)
    }
}

/// Every profile name a spawn may use, for error messages and docs.
pub fn known_profiles(config: &Config) -> String {
    let mut names: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
    names.extend(config.profiles.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// Whether usage is ever counted under `name` (a `profile:NAME` budget's
/// scope): a profile, built in or the config's, or a provider, which is
/// what an agent spawned without a profile counts under.
pub fn is_profile_or_provider(name: &str, config: &Config) -> bool {
    config.profiles.contains_key(name)
        || BUILT_IN.iter().any(|(built_in, _)| *built_in == name)
        || Kind::parse(name).is_some_and(|kind| kind.name() == name)
}

/// The variable a client should read the key from for a spawn: the one the
/// provider or profile names, and only when the spawn keeps that provider's
/// or profile's own base URL (a key never follows a URL the user typed).
pub fn key_variable(
    provider: Option<&str>,
    profile: Option<&str>,
    base_url: Option<&str>,
    config: &Config,
) -> Option<String> {
    let profile = Profile::select(provider, profile, config).ok()?;
    let own_url = base_url
        .is_none_or(|url| url.trim_end_matches('/') == profile.base_url.trim_end_matches('/'));
    profile.api_key_env.filter(|_| own_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_name_their_own_variables() {
        let config = Config::default();
        let variable = |profile| key_variable(None, Some(profile), None, &config);
        assert_eq!(
            variable("openrouter").as_deref(),
            Some("OPENROUTER_API_KEY")
        );
        assert_eq!(variable("gemini").as_deref(), Some("GEMINI_API_KEY"));
        assert_eq!(variable("local"), None);
        assert_eq!(
            key_variable(Some("anthropic"), None, None, &config).as_deref(),
            Some("ANTHROPIC_API_KEY")
        );
        let url = |base_url| key_variable(Some("openai"), None, Some(base_url), &config);
        assert_eq!(
            url("https://api.openai.com/v1/").as_deref(),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(url("http://elsewhere/v1"), None);
    }

    #[test]
    fn a_profile_cannot_be_given_a_conflicting_provider() {
        let error =
            Profile::select(Some("anthropic"), Some("openrouter"), &Config::default()).unwrap_err();
        assert!(error.to_string().contains("speaks openai"), "{error}");
    }
}
