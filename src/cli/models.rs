//! `orchestration models`: the models a provider or profile offers, from its
//! `{base}/models` endpoint, asked through the daemon (`POST /models`).

use clap::Args;

use super::{CliError, Ctx, EndpointOptions, output};
use crate::wire::Models;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub endpoint: EndpointOptions,
}

pub async fn run(ctx: &Ctx, args: ModelsArgs) -> Result<(), CliError> {
    let body = args.endpoint.request(&ctx.config_file)?;
    let listing: Models = ctx.client.models(&body).await.map_err(|error| {
        let error = CliError::from(error);
        if super::is_model_server_answer(&error) {
            // Not "list the models": that is what failed.
            return error.with_hint(
                "that is the model server's answer: check the base URL (the URL asked is in \
                     the error), the key and the account",
            );
        }
        args.endpoint.explain(error, &ctx.config_file)
    })?;
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
