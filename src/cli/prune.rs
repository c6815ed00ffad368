//! `orchestration prune`: delete ended conversations older than a
//! duration, over the Unix socket (a control-plane operation). Live and
//! suspended agents' conversations are never touched.

use clap::Args;

use super::{CliError, Ctx, output};
use crate::model::PruneReport;
use crate::wire::PruneRequest;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete ended conversations whose last message is older than this (e.g. 30d, 12h).
    #[arg(long, value_name = "DUR", value_parser = crate::duration::parse)]
    pub older_than: std::time::Duration,
    /// Only say what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(ctx: &Ctx, args: PruneArgs) -> Result<(), CliError> {
    let request = PruneRequest {
        older_than: crate::duration::format(args.older_than),
        dry_run: args.dry_run,
    };
    let report: PruneReport = ctx.client.prune(&request).await?;
    if ctx.json {
        return output::json(&report);
    }
    if report.conversations.is_empty() {
        return output::line(&format!(
            "no ended conversation was last written before {}",
            output::timestamp(&report.cutoff)
        ));
    }
    let rows: Vec<Vec<String>> = report
        .conversations
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.id.to_string(),
                c.message_count.to_string(),
                output::timestamp(&c.last_at),
            ]
        })
        .collect();
    output::print(&output::table(
        &["NAME", "CONVERSATION", "MESSAGES", "LAST"],
        &rows,
    ))?;
    let count = report.conversations.len();
    if report.dry_run {
        return output::line(&format!(
            "{count} conversation(s) would be deleted (dry run: nothing was)"
        ));
    }
    let freed = report.size_before.saturating_sub(report.size_after);
    output::line(&format!(
        "deleted {count} conversation(s); the store shrank by {} KiB",
        freed / 1024
    ))
}
