//! `orchestration list`: the live agents, optionally filtered.

use clap::Args;

use super::{CliError, Ctx, output};
use crate::engine::{AgentInfo, AgentState};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only agents in this state: idle, processing, failed or terminated.
    #[arg(long, value_name = "S")]
    pub state: Option<AgentState>,
    /// Only agents of this provider.
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// Also agents that were shut down (the last one of each name), as `terminated`.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    if let Some(state) = args.state {
        query.push(format!("state={state}"));
    }
    if let Some(provider) = &args.provider {
        query.push(format!(
            "provider={}",
            percent_encoding::utf8_percent_encode(provider, percent_encoding::NON_ALPHANUMERIC)
        ));
    }
    if args.all {
        query.push("all=true".to_owned());
    }
    let path = if query.is_empty() {
        "/agents".to_owned()
    } else {
        format!("/agents?{}", query.join("&"))
    };
    let agents: Vec<AgentInfo> = ctx.client.get(&path).await?;
    if ctx.json {
        return output::json(&agents);
    }
    if agents.is_empty() {
        return output::line("no agents");
    }
    output::print(&output::agents_table(&agents))
}
