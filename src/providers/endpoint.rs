//! Where an agent's requests go: the provider protocol, base URL, model,
//! headers and key, resolved from the spawn request, the profile it names
//! (built in or from config) and the provider's defaults.
//!
//! Key rule: a key is only ever sent to the endpoint its provider or profile
//! names. The CLI resolves the key from its own environment and sends it with
//! the spawn; the daemon falls back to its own environment, reading only the
//! variable that provider or profile names, and only when the request keeps
//! that provider's or profile's own base URL. A request that names another
//! `base_url` gets no key unless it carries one itself (`api_key`). The
//! daemon never reads a variable a request names.

use std::collections::BTreeMap;

use super::{Keys, SetupError};
use crate::config::Config;
use crate::model::{ProviderSpec, Secret};
use crate::profiles::{Kind, Profile};

/// A fully resolved endpoint, ready to build a provider from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: Kind,
    /// Without a trailing slash.
    pub base_url: String,
    pub model: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub api_key: Option<Secret>,
    /// The context window in tokens: the profile's, else the model's where
    /// known, else `providers.context_limit`.
    pub context_limit: u64,
}

impl Endpoint {
    /// Resolves a spawn's endpoint against the config in effect and the
    /// keys the daemon holds.
    pub fn resolve(
        config: &ProviderSpec,
        settings: &Config,
        keys: &Keys,
    ) -> Result<Self, SetupError> {
        let profile = Profile::select(
            config.provider.as_deref(),
            config.profile.as_deref(),
            settings,
        )?;
        if profile.kind.is_coding_agent() {
            return Err(SetupError::NoEndpoint(profile.kind.name().to_owned()));
        }
        let mut headers = profile.headers;
        headers.extend(config.headers.clone());
        check_headers(&headers)?;
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| profile.base_url.clone())
            .trim_end_matches('/')
            .to_owned();
        if profile.kind != Kind::Echo {
            check_base_url(&base_url)?;
        }
        // The daemon's own key belongs to the profile's URL, and goes nowhere else.
        let own_url = base_url == profile.base_url.trim_end_matches('/');
        let api_key = match &config.api_key {
            Some(key) if !key.expose().is_empty() => Some(key.clone()),
            _ if own_url => profile.api_key_env.as_deref().and_then(|v| keys.get(v)),
            _ => None,
        };
        // The profile's own endpoint needs the key it names; a URL the request
        // chose may need none (a local server), and says so itself if it does.
        if own_url
            && api_key.is_none()
            && let Some(variable) = profile.api_key_env
        {
            return Err(SetupError::MissingKey {
                what: describe(config),
                variable,
            });
        }
        // No model is not an error here: listing the models needs none.
        // An agent does: `providers::build` asks for one.
        let model = config.model.clone().or(profile.model);
        let context_limit = profile
            .context_limit
            .or_else(|| model.as_deref().and_then(known_window))
            .unwrap_or(settings.providers.context_limit);
        Ok(Self {
            kind: profile.kind,
            base_url,
            model,
            headers,
            api_key,
            context_limit,
        })
    }
}

/// The protocol name and model a spawn resolves to, without checking keys
/// or URLs (for describing agents that are no longer running).
pub fn summary(spec: &ProviderSpec, config: &Config) -> (&'static str, Option<String>) {
    match Profile::select(spec.provider.as_deref(), spec.profile.as_deref(), config) {
        Ok(profile) => (profile.kind.name(), spec.model.clone().or(profile.model)),
        Err(_) => (
            spec.provider
                .as_deref()
                .and_then(Kind::parse)
                .map_or(super::DEFAULT_PROVIDER, Kind::name),
            spec.model.clone(),
        ),
    }
}

/// The context windows (tokens) of model families whose window is
/// published, by the model name's start after any `vendor/` prefix (as
/// OpenRouter names them). The longest matching start wins.
const KNOWN_WINDOWS: &[(&str, u64)] = &[
    ("claude-", 200_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("gemini-1.5", 1_048_576),
    ("gemini-2", 1_048_576),
];

/// The published context window of `model`, if its family is known.
fn known_window(model: &str) -> Option<u64> {
    let name = model.rsplit('/').next().unwrap_or(model);
    KNOWN_WINDOWS
        .iter()
        .filter(|(start, _)| name.starts_with(start))
        .max_by_key(|(start, _)| start.len())
        .map(|(_, window)| *window)
}

fn check_base_url(base_url: &str) -> Result<(), SetupError> {
    match reqwest::Url::parse(base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(SetupError::BadBaseUrl(base_url.to_owned())),
    }
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), SetupError> {
    for (name, value) in headers {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(SetupError::BadHeader(name.clone()));
        }
    }
    Ok(())
}

pub(super) fn describe(config: &ProviderSpec) -> String {
    match (&config.profile, &config.provider) {
        (Some(profile), _) => format!("profile {profile}"),
        (None, Some(provider)) => format!("provider {provider}"),
        (None, None) => "provider openai".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProfileConfig;

    fn spec(provider: &str, base_url: Option<&str>, api_key: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            provider: Some(provider.into()),
            base_url: base_url.map(str::to_owned),
            api_key: api_key.map(|key| Secret::new(key.to_owned())),
            model: Some("m".into()),
            ..ProviderSpec::default()
        }
    }

    #[test]
    fn a_daemon_key_goes_only_to_its_own_url() {
        let keys = Keys::from_pairs([("WORK_KEY", "daemon-secret")]);
        let mut config = Config::default();
        config.profiles.insert(
            "work".into(),
            ProfileConfig {
                base_url: Some("http://127.0.0.1:9/v1/".into()),
                api_key_env: Some("WORK_KEY".into()),
                ..ProfileConfig::default()
            },
        );
        let mut own = spec("openai", None, None);
        own.profile = Some("work".into());
        own.provider = None;
        let endpoint = Endpoint::resolve(&own, &config, &keys).unwrap();
        assert_eq!(endpoint.api_key.unwrap().expose(), "daemon-secret");
        // The profile's own URL spelled out (trailing slash or not) is still its own.
        own.base_url = Some("http://127.0.0.1:9/v1".into());
        assert!(
            Endpoint::resolve(&own, &config, &keys)
                .unwrap()
                .api_key
                .is_some()
        );
        // Any other URL gets no daemon key, and needs none to be set up.
        own.base_url = Some("http://127.0.0.1:9/elsewhere".into());
        assert!(
            Endpoint::resolve(&own, &config, &keys)
                .unwrap()
                .api_key
                .is_none()
        );
        // A key the request carries goes where the request says.
        own.api_key = Some(Secret::new("client-key".into()));
        let endpoint = Endpoint::resolve(&own, &config, &keys).unwrap();
        assert_eq!(endpoint.api_key.unwrap().expose(), "client-key");
    }

    #[test]
    fn the_context_window_is_the_profiles_else_the_models_else_the_default() {
        let keys = Keys::default();
        let mut config = Config::default();
        config.providers.context_limit = 5000;
        let window = |config: &Config, spec: &ProviderSpec| {
            Endpoint::resolve(spec, config, &keys)
                .unwrap()
                .context_limit
        };
        let mut local = spec("openai", Some("http://127.0.0.1:9/v1"), None);
        assert_eq!(window(&config, &local), 5000, "an unknown model");
        local.model = Some("anthropic/claude-sonnet-4-5".into());
        assert_eq!(window(&config, &local), 200_000);
        config.profiles.insert(
            "small".into(),
            ProfileConfig {
                base_url: Some("http://127.0.0.1:9/v1".into()),
                context_limit: Some(1000),
                ..ProfileConfig::default()
            },
        );
        local.profile = Some("small".into());
        assert_eq!(window(&config, &local), 1000, "the profile's wins");
    }

    #[test]
    fn a_custom_url_needs_no_key_but_the_providers_own_does() {
        let config = Config::default();
        let keys = Keys::from_pairs([("OTHER_KEY", "x")]);
        let custom = spec("anthropic", Some("http://127.0.0.1:9"), None);
        let endpoint = Endpoint::resolve(&custom, &config, &keys).unwrap();
        assert!(endpoint.api_key.is_none());
        let error = Endpoint::resolve(&spec("anthropic", None, None), &config, &keys).unwrap_err();
        assert!(matches!(error, SetupError::MissingKey { .. }), "{error}");
    }
}
