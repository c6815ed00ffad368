//! `orchestration task`: one prompt on a throwaway agent, which is removed
//! afterwards however the exchange ends. Its history stays readable.

use clap::Args;

use super::progress::Feedback;
use super::{AgentOptions, CliError, Ctx, read_prompt};
use crate::model::AgentName;
use crate::wire::{Route, TaskRequest};

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// A name for the throwaway agent; it must not belong to a live agent.
    pub name: AgentName,
    /// The prompt (several words are joined with spaces); `-` reads it from standard input, as
    /// does no prompt at all when standard input is not a terminal. Put `--` before a prompt that
    /// starts with `-`.
    #[arg(num_args = 0.., value_name = "PROMPT")]
    pub prompt: Vec<String>,
    #[command(flatten)]
    pub options: AgentOptions,
    /// Wait for the whole reply instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// On a terminal, no line with the reply's time and tokens after it.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub async fn run(ctx: &Ctx, args: TaskArgs) -> Result<(), CliError> {
    let spawn = args.options.request(&args.name, &ctx.config_file)?;
    let stream = super::message::streams(ctx, args.no_stream);
    let body = TaskRequest::new(spawn, read_prompt(&args.prompt)?, stream);
    let route = Route::Task(args.name.clone());
    let feedback = Feedback::start(&args.name.to_string(), ctx.json, args.quiet);
    super::message::converse(ctx, &route, &body, stream, feedback)
        .await
        .map_err(|error| args.options.endpoint.explain(error, &ctx.config_file))
}
