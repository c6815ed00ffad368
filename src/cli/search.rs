//! `orchestration search`: full-text search over every conversation ever
//! held, live or ended, most relevant first.

use clap::Args;

use super::approvals::visible_one_line;
use super::{CliError, Ctx, output};
use crate::model::AgentName;
use crate::wire::{SearchQuery, SearchResults};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for: words (all must appear), "exact phrases", OR, NOT, prefix*. A word
    /// with punctuation in it (sk-fake, example.com) is searched as the phrase it spells.
    #[arg(required = true, num_args = 1.., value_name = "QUERY")]
    pub query: Vec<String>,
    /// Only this agent's conversations (every one the name has had).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<AgentName>,
    /// Only messages newer than this: a duration back from now (7d, 12h, 30m) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most this many results (default 20).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub async fn run(ctx: &Ctx, args: SearchArgs) -> Result<(), CliError> {
    let query = SearchQuery {
        q: args.query.join(" "),
        agent: args.agent,
        since: args.since,
        limit: args.limit,
    };
    if query.q.trim().is_empty() {
        return Err(CliError::Usage("the search query is empty".into()));
    }
    let found: SearchResults = ctx.client.search(&query).await?;
    if ctx.json {
        return output::json(&found);
    }
    if found.results.is_empty() {
        // As typed: Debug formatting would show its quotes as \".
        return output::line(&format!(
            "nothing found for: {}",
            visible_one_line(&query.q)
        ));
    }
    for hit in &found.results {
        output::line(&format!(
            "{} ({}, {})\n  {}",
            hit.agent,
            output::visible(&hit.sender),
            output::timestamp(&hit.timestamp),
            output::visible(&hit.snippet)
        ))?;
    }
    Ok(())
}
