//! `orchestration history`: an agent's conversation, oldest first.

use std::io::IsTerminal;

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
    /// Asks first on a terminal; elsewhere --yes is required.
    #[arg(long, conflicts_with_all = ["limit", "all"])]
    pub clear: bool,
    /// With --clear: do not ask for confirmation.
    #[arg(long, short = 'y', requires = "clear")]
    pub yes: bool,
}

pub async fn run(ctx: &Ctx, args: HistoryArgs) -> Result<(), CliError> {
    if args.clear {
        return clear(ctx, &args).await;
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

/// `--clear`: deletes the name's every conversation, once confirmed.
async fn clear(ctx: &Ctx, args: &HistoryArgs) -> Result<(), CliError> {
    let name = &args.name;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage(format!(
                "history --clear deletes every message '{name}' has had, and there is no terminal to confirm it on"
            ))
            .with_hint(format!("`orchestration history {name} --clear --yes` clears without asking")));
        }
        // Also makes an unknown name a 404 before anything is asked.
        let tail = format!(
            "/history{}",
            HistoryQuery {
                limit: None,
                all: true
            }
            .to_query()
        );
        let history: Messages = ctx.client.get(&agent_path(name, &tail)).await?;
        let question = format!(
            "delete all {} message(s) '{name}' has had, for good? [y/N] ",
            history.messages.len()
        );
        if !output::confirm(&question)? {
            return Err(CliError::Failed(format!(
                "nothing was cleared: the history of '{name}' is as it was"
            )));
        }
    }
    ctx.client
        .send::<()>(Method::DELETE, &agent_path(name, "/history"), None)
        .await?;
    if ctx.json {
        return output::json(&serde_json::json!({"name": name, "cleared": true}));
    }
    output::line(&format!("history of '{name}' cleared"))
}
