//! `orchestration models`: the models a provider or profile offers, from its
//! `{base}/models` endpoint, asked through the daemon (`POST /models`).

use clap::Args;
use reqwest::Method;

use super::{CliError, Ctx, output, provider_fields};
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
    let body = provider_fields(
        &[
            ("provider", &args.provider),
            ("profile", &args.profile),
            ("base_url", &args.base_url),
            ("api_key_env", &args.api_key_env),
        ],
        &ctx.config_file,
    )?;
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
