//! `orchestration list`: the live agents, optionally filtered.

use clap::Args;

use super::{CliError, Ctx, output};
use crate::model::{AgentInfo, AgentState};
use crate::wire::ListQuery;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only agents in this state: idle, processing, failed, suspended or terminated.
    #[arg(long, value_name = "S", add = super::complete::states())]
    pub state: Option<AgentState>,
    /// Only agents of this provider.
    #[arg(long, value_name = "P", add = super::complete::providers())]
    pub provider: Option<String>,
    /// Also agents that were shut down (the last one of each name), as `terminated`.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let query = ListQuery {
        state: args.state,
        provider: args.provider,
        all: args.all,
    };
    let agents: Vec<AgentInfo> = ctx.client.list(&query).await?;
    if ctx.json {
        return output::json(&agents);
    }
    if agents.is_empty() {
        return output::line("no agents");
    }
    output::print(&output::agents_table(&agents))?;
    for agent in &agents {
        if let Some(reason) = &agent.reason {
            let reason = output::visible(reason);
            output::line(&format!("{} is {}: {reason}", agent.name, agent.state))?;
        }
        if !agent.tools.is_empty() {
            let tools = output::visible(&agent.tools.join(", ")).into_owned();
            output::line(&format!("{} has tools: {tools}", agent.name))?;
        }
    }
    Ok(())
}
