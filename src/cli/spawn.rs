//! `orchestration spawn`: start a named agent.

use clap::Args;

use super::{AgentOptions, CliError, Ctx, output};
use crate::client::ClientError;
use crate::model::{AgentInfo, AgentName};
use crate::wire::ErrorCode;

#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// The agent's name: 1–64 of ASCII letters, digits, '.', '_', '-', not starting with '.' or '-'.
    #[arg(
        value_name = "NAME",
        required_unless_present = "name_flag",
        conflicts_with = "name_flag"
    )]
    pub name: Option<AgentName>,
    /// The agent's name (same as the positional NAME).
    #[arg(long = "name", id = "name_flag", value_name = "NAME")]
    pub name_flag: Option<AgentName>,
    #[command(flatten)]
    pub options: AgentOptions,
}

pub async fn run(ctx: &Ctx, args: SpawnArgs) -> Result<(), CliError> {
    let Some(name) = args.name.or(args.name_flag) else {
        return Err(CliError::Usage("an agent name is required".into()));
    };
    let body = args.options.request(&name, &ctx.config_file)?;
    let info: AgentInfo = match ctx.client.spawn(&body).await {
        Ok(info) => info,
        Err(
            taken @ ClientError::Api {
                code: ErrorCode::NameTaken,
                ..
            },
        ) => {
            return Err(CliError::from(taken).with_hint(format!(
                "`orchestration message {name} …` talks to the running agent; `orchestration list` shows every live one"
            )));
        }
        Err(error) => {
            return Err(args
                .options
                .endpoint
                .explain(error.into(), &ctx.config_file));
        }
    };
    default_model_note(&args.options, &info);
    if ctx.json {
        return output::json(&info);
    }
    let model = info
        .model
        .as_deref()
        .map(|m| format!(", model {}", output::visible(m)))
        .unwrap_or_default();
    let tools = if info.tools.is_empty() {
        String::new()
    } else {
        format!(", tools {}", output::visible(&info.tools.join(", ")))
    };
    output::line(&format!(
        "spawned agent '{}' ({}{model}{tools})",
        info.name,
        output::endpoint(&info)
    ))
}

/// A typed `--base-url` without `--model` gets the provider's (or
/// profile's) default model, which that server may not have: say so now,
/// on stderr, rather than let the first message fail.
fn default_model_note(options: &AgentOptions, info: &AgentInfo) {
    let (Some(url), None, Some(model)) = (
        options.endpoint.base_url.as_deref(),
        options.model.as_deref(),
        info.model.as_deref(),
    ) else {
        return;
    };
    let models = options.endpoint.models_command();
    eprintln!(
        "note: no --model given, so '{}' asks {} for {}, the default of {}; if that server \
         has no such model, spawn it again with --model M (`{models}` lists them)",
        info.name,
        output::visible(url),
        output::visible(model),
        output::endpoint(info),
    );
}
