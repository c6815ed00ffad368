//! `orchestration models`: the models a provider or profile offers, from its
//! `{base}/models` endpoint, asked through the daemon (`POST /models`).

use clap::Args;
use http::Method;

use super::{CliError, Ctx, EndpointOptions, output};
use crate::wire::Models;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub endpoint: EndpointOptions,
}

pub async fn run(ctx: &Ctx, args: ModelsArgs) -> Result<(), CliError> {
    let body = args.endpoint.request(&ctx.config_file)?;
    let listing: Models = ctx
        .client
        .json(Method::POST, "/models", Some(&body))
        .await
        .map_err(|error| args.endpoint.explain(error.into(), &ctx.config_file))?;
    if ctx.json {
        return output::json(&listing);
    }
    if listing.models.is_empty() {
        return output::line(&format!(
            "{} lists no models",
            output::visible(&listing.provider)
        ));
    }
    output::print(&output::visible(&(listing.models.join("\n") + "\n")))
}
