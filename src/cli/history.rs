//! `orchestration history`: an agent's conversation, oldest first.

use clap::Args;
use reqwest::Method;

use super::{CliError, Ctx, agent_path, output};
use crate::api::wire::{HistoryQuery, Messages};
use crate::engine::AgentName;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The agent (live or shut down).
    #[arg(add = super::complete::all_agents())]
    pub name: AgentName,
    /// Only the last N messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Include the conversations of earlier agents that had this name.
    #[arg(long)]
    pub all: bool,
    /// Delete every message this name has had, for good (a live agent keeps running, with no context).
    #[arg(long, conflicts_with_all = ["limit", "all"])]
    pub clear: bool,
}

pub async fn run(ctx: &Ctx, args: HistoryArgs) -> Result<(), CliError> {
    if args.clear {
        ctx.client
            .send::<()>(Method::DELETE, &agent_path(&args.name, "/history"), None)
            .await?;
        return output::line(&format!("history of '{}' cleared", args.name));
    }
    let query = HistoryQuery {
        limit: args.limit,
        all: args.all,
    };
    let tail = format!("/history{}", query.to_query());
    let history: Messages = ctx.client.get(&agent_path(&args.name, &tail)).await?;
    if ctx.json {
        return output::json(&history);
    }
    if history.messages.is_empty() {
        return output::line(&format!("no messages for '{}'", args.name));
    }
    for message in &history.messages {
        output::line(&output::history_entry(message))?;
    }
    Ok(())
}
