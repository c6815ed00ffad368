//! `orchestration shutdown`: stop one agent or all of them.

use clap::Args;

use super::{CliError, Ctx, output};
use crate::model::{AgentName, ShutdownReport};

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ShutdownArgs {
    /// The agent to shut down.
    #[arg(add = super::complete::live_agents())]
    pub name: Option<AgentName>,
    /// Shut down every live agent.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(ctx: &Ctx, args: ShutdownArgs) -> Result<(), CliError> {
    let Some(name) = args.name else {
        return shutdown_all(ctx).await;
    };
    if let Err(error) = ctx.client.shutdown_agent(&name).await {
        let fallback = "`orchestration list` shows the live agents";
        return Err(
            super::suggestion::unknown_agent(ctx, &name, error.into(), true, fallback).await,
        );
    }
    if ctx.json {
        return output::json(&serde_json::json!({"succeeded": [name], "failed": {}}));
    }
    output::line(&format!("shut down agent '{name}'"))
}

async fn shutdown_all(ctx: &Ctx) -> Result<(), CliError> {
    let report: ShutdownReport = ctx.client.shutdown_all().await?;
    if ctx.json {
        output::json(&report)?;
    } else if report.succeeded.is_empty() && report.failed.is_empty() {
        output::line("no agents were running")?;
    } else if !report.succeeded.is_empty() {
        output::line(&format!(
            "shut down {} agent(s): {}",
            report.succeeded.len(),
            report
                .succeeded
                .iter()
                .map(AgentName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    if report.failed.is_empty() {
        return Ok(());
    }
    let failures: Vec<String> = report
        .failed
        .iter()
        .map(|(n, why)| format!("'{n}': {why}"))
        .collect();
    Err(CliError::Failed(format!(
        "could not shut down {}",
        failures.join("; ")
    )))
}
