//! `orchestration models`: the models a provider or profile offers, from its
//! `{base}/models` endpoint, asked through the daemon (`POST /models`).

use clap::Args;
use reqwest::Method;

use super::{CliError, Ctx, output, read_api_key};
use crate::api::wire::Models;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The provider to ask: `openai` (the default), `anthropic` or `echo`.
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// A provider profile: built in `openrouter`, `local`, `gemini`, or one from the config file.
    #[arg(long, value_name = "P")]
    pub profile: Option<String>,
    /// Ask this API base URL instead of the provider's or profile's.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Read the API key from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

pub async fn run(ctx: &Ctx, args: ModelsArgs) -> Result<(), CliError> {
    let mut body = serde_json::Map::new();
    let fields = [
        ("provider", &args.provider),
        ("profile", &args.profile),
        ("base_url", &args.base_url),
        ("api_key_env", &args.api_key_env),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            body.insert(key.into(), value.clone().into());
        }
    }
    let key = read_api_key(
        args.provider.as_deref(),
        args.profile.as_deref(),
        args.api_key_env.as_deref(),
        &ctx.config_file,
    )?;
    if let Some(key) = key {
        body.insert("api_key".into(), key.into());
    }
    let listing: Models = ctx
        .client
        .json(Method::POST, "/models", Some(&body))
        .await?;
    if ctx.json {
        return output::json(&listing);
    }
    if listing.models.is_empty() {
        return output::line(&format!("{} lists no models", listing.provider));
    }
    output::print(&(listing.models.join("\n") + "\n"))
}
