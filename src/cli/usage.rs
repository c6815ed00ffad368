//! `orchestration usage`: what the provider calls cost, from the daemon's
//! usage ledger, in total or grouped by agent, profile, model or day.

use clap::Args;

use super::{CliError, Ctx, output};
use crate::model::{AgentName, BudgetSource, BudgetState, UsageBy, UsageGroup, UsageReport};
use crate::wire::UsageQuery;

pub const LONG_ABOUT: &str = "Show what the provider calls cost, from the daemon's usage ledger.

Every provider call is recorded with its input, output, cache-read, cache-write and reasoning tokens, the model that answered, and its cost in USD with where the price came from: config ([prices.\"MODEL\"]), built-in (a table of well-known models), reported (what the coding agent, Claude Code, reported its turn cost, for a model the config does not price), or unknown (no price for that model: the cost is not counted, never taken as zero). A total whose calls are not all priced says how many are not.

After the totals, each budget (the config's [[budgets]] and agents' own, from spawn --budget) with its period, limit, what was spent this period, what calls in flight hold, what is left and when it resets.";

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Group the calls by agent, profile (or provider), model or UTC day.
    #[arg(long, value_name = "WHAT", value_parser = ["agent", "profile", "model", "day"])]
    pub by: Option<String>,
    /// Only calls newer than this: a duration back from now (7d, 12h, 30m) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only this agent's calls (every incarnation the name has had).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<AgentName>,
}

pub async fn run(ctx: &Ctx, args: UsageArgs) -> Result<(), CliError> {
    let by = args
        .by
        .as_deref()
        .map(str::parse::<UsageBy>)
        .transpose()
        .map_err(CliError::Usage)?;
    let query = UsageQuery {
        by,
        since: args.since,
        agent: args.agent,
    };
    let report: UsageReport = ctx.client.usage(&query).await?;
    if ctx.json {
        return output::json(&report);
    }
    if report.total.calls == 0 {
        output::line("no provider calls recorded")?;
        return budgets(&report.budgets);
    }
    let first = by.map_or("", UsageBy::as_str).to_uppercase();
    let mut rows: Vec<Vec<String>> = report
        .groups
        .iter()
        .map(|group| row(group.key.as_deref().unwrap_or("-"), group))
        .collect();
    rows.push(row("total", &report.total));
    let header = [
        if first.is_empty() { " " } else { &first },
        "CALLS",
        "INPUT",
        "OUTPUT",
        "CACHE READ",
        "CACHE WRITE",
        "REASONING",
        "COST USD",
        "PRICE",
    ];
    output::print(&output::table(&header, &rows))?;
    budgets(&report.budgets)
}

/// Each budget's state, after the totals: a blank line, then a table.
fn budgets(budgets: &[BudgetState]) -> Result<(), CliError> {
    if budgets.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = budgets.iter().map(budget_row).collect();
    let header = [
        "BUDGET",
        "PERIOD",
        "UNIT",
        "LIMIT",
        "SPENT",
        "RESERVED",
        "REMAINING",
        "RESETS",
    ];
    output::print(&format!("\n{}", output::table(&header, &rows)))
}

fn budget_row(state: &BudgetState) -> Vec<String> {
    let scope = match state.source {
        BudgetSource::Spawn => format!("{} (own)", state.scope),
        BudgetSource::Config => state.scope.clone(),
    };
    let amount = |value| crate::model::amount(state.unit, value);
    vec![
        output::visible(&scope).into_owned(),
        state.period.to_string(),
        state.unit.to_string(),
        amount(state.limit),
        amount(state.spent),
        amount(state.reserved),
        amount(state.remaining),
        state
            .resets
            .as_deref()
            .map_or("never".to_owned(), output::timestamp),
    ]
}

/// One line a budget, for `serve --status`.
pub fn budget_line(state: &BudgetState) -> String {
    let row = budget_row(state);
    format!(
        "{}/{}: {} of {} {} spent, {} reserved, {} left; resets {}",
        row[0], row[1], row[4], row[3], row[2], row[5], row[6], row[7]
    )
}

fn row(key: &str, group: &UsageGroup) -> Vec<String> {
    let usage = &group.usage;
    let cost = match group.cost_usd {
        None => "unknown".to_owned(),
        // Some calls had no price: the sum is a lower bound.
        Some(cost) if group.unpriced_calls > 0 => format!(">= {cost:.4}"),
        Some(cost) => format!("{cost:.4}"),
    };
    let source = if group.unpriced_calls > 0 && group.cost_usd.is_some() {
        format!("{} ({} unpriced)", group.price_source, group.unpriced_calls)
    } else {
        group.price_source.clone()
    };
    vec![
        output::visible(key).into_owned(),
        group.calls.to_string(),
        usage.input_tokens.to_string(),
        usage.output_tokens.to_string(),
        usage.cache_read_tokens.to_string(),
        usage.cache_write_tokens.to_string(),
        usage.reasoning_tokens.to_string(),
        cost,
        source,
    ]
}
