//! `orchestration approvals`, `approve ID` and `deny ID`: the pending
//! permission requests of agents that act, and the answers to them; also
//! how one request is shown wherever it appears (`message` prints it too).

use clap::Args;

use super::{CliError, Ctx, output};
use crate::model::{AgentName, Approval, Decision};
use crate::wire::{AnswerRequest, Answered, ApprovalId, ApprovalsQuery};

/// How much of a summary the table shows; `--json` has all of it.
const SUMMARY_CHARS: usize = 72;

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Only this agent's pending approvals.
    #[arg(long, value_name = "NAME", add = super::complete::live_agents())]
    pub agent: Option<AgentName>,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The approval's id, as `orchestration approvals` lists it (six hex digits).
    #[arg(value_name = "ID", value_parser = approval_id)]
    pub id: ApprovalId,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    /// The approval's id, as `orchestration approvals` lists it (six hex digits).
    #[arg(value_name = "ID", value_parser = approval_id)]
    pub id: ApprovalId,
    /// Why: the agent is told, and may try another way.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// An id as typed: case does not matter, the daemon's are lowercase.
fn approval_id(text: &str) -> Result<ApprovalId, String> {
    ApprovalId::parse(&text.trim().to_ascii_lowercase()).map_err(|e| e.to_string())
}

/// `approvals`: the pending ones, oldest first.
pub async fn list(ctx: &Ctx, args: ApprovalsArgs) -> Result<(), CliError> {
    let query = ApprovalsQuery { agent: args.agent };
    let pending: Vec<Approval> = ctx.client.approvals(&query).await?;
    if ctx.json {
        return output::json(&pending);
    }
    if pending.is_empty() {
        return output::line("no pending approvals");
    }
    output::print(&listing(&pending))?;
    output::line(
        "answer with `orchestration approve ID` or `orchestration deny ID [--reason TEXT]`",
    )
}

/// `approve ID`.
pub async fn approve(ctx: &Ctx, args: ApproveArgs) -> Result<(), CliError> {
    answer(ctx, &args.id, Decision::Approve, None).await
}

/// `deny ID [--reason TEXT]`.
pub async fn deny(ctx: &Ctx, args: DenyArgs) -> Result<(), CliError> {
    answer(ctx, &args.id, Decision::Deny, args.reason).await
}

async fn answer(
    ctx: &Ctx,
    id: &ApprovalId,
    decision: Decision,
    reason: Option<String>,
) -> Result<(), CliError> {
    let answered = send(ctx, id, decision, reason).await?;
    if ctx.json {
        return output::json(&answered);
    }
    output::line(&answered_line(&answered))
}

/// Sends one answer (also `message`'s inline `y`/`n`).
pub async fn send(
    ctx: &Ctx,
    id: &ApprovalId,
    decision: Decision,
    reason: Option<String>,
) -> Result<Answered, CliError> {
    let request = AnswerRequest { decision, reason };
    Ok(ctx.client.answer(id, &request).await?)
}

/// `approved 3f9c2a: coder may run Bash: touch made.txt`.
pub fn answered_line(answered: &Answered) -> String {
    let approval = &answered.approval;
    let what = format!(
        "{} {}: {}",
        approval.agent,
        visible_one_line(&approval.request.tool),
        summary(approval)
    );
    match answered.decision {
        Decision::Approve => format!("approved {}: {what}", approval.id),
        Decision::Deny => match &answered.reason {
            Some(reason) => format!(
                "denied {}: {what} (reason: {})",
                approval.id,
                visible_one_line(reason)
            ),
            None => format!("denied {}: {what}", approval.id),
        },
    }
}

/// One request as `message` shows it when it arrives:
/// `coder asks to run Bash: touch made.txt (in /src/x) [id 3f9c2a]`.
pub fn request_line(approval: &Approval) -> String {
    let cwd = approval
        .request
        .cwd
        .as_deref()
        .map(|cwd| format!(" (in {})", visible_one_line(cwd)))
        .unwrap_or_default();
    format!(
        "{} asks to run {}: {}{cwd} [id {}]",
        approval.agent,
        visible_one_line(&approval.request.tool),
        summary(approval),
        approval.id
    )
}

/// The table of pending approvals as of now (also MCP's `list_approvals`).
pub fn listing(pending: &[Approval]) -> String {
    table(pending, now())
}

/// The table `approvals` prints: id, agent, tool, summary, age.
fn table(pending: &[Approval], now: time::OffsetDateTime) -> String {
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|approval| {
            vec![
                approval.id.clone(),
                approval.agent.to_string(),
                visible_one_line(&approval.request.tool),
                shorten(&summary(approval), SUMMARY_CHARS),
                age(&approval.requested_at, now),
            ]
        })
        .collect();
    output::table(&["ID", "AGENT", "TOOL", "SUMMARY", "AGE"], &rows)
}

/// What the request would do, shown beside its tool: the summary, without
/// the tool's name when the runtime put it in front already (`Bash: ls`).
fn summary(approval: &Approval) -> String {
    let request = &approval.request;
    let text = request
        .summary
        .strip_prefix(&format!("{}: ", request.tool))
        .unwrap_or(&request.summary);
    visible_one_line(text)
}

/// Text from an agent on one line: sanitised, and line breaks shown as `⏎`
/// so a multi-line command cannot pass for several rows or prompts.
pub fn visible_one_line(text: &str) -> String {
    output::visible(text)
        .replace("\r\n", "⏎")
        .replace(['\n', '\r'], "⏎")
        .replace('\t', " ")
}

/// At most `most` characters, the cut marked with `…`.
pub fn shorten(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let kept: String = text.chars().take(most.saturating_sub(1)).collect();
    format!("{kept}…")
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// How long ago `requested_at` was, in the largest whole unit (`42s`,
/// `3m`, `2h`); the time as it came if it does not parse.
fn age(requested_at: &str, now: time::OffsetDateTime) -> String {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let Ok(at) = time::OffsetDateTime::parse(requested_at, rfc3339) else {
        return output::escape_controls(requested_at).into_owned();
    };
    let seconds = (now - at).whole_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ApprovalRequest;

    fn approval(summary: &str) -> Approval {
        Approval {
            id: "3f9c2a".into(),
            agent: AgentName::parse("coder").unwrap(),
            request: ApprovalRequest {
                tool: "Bash".into(),
                summary: summary.into(),
                input: serde_json::json!({"command": summary}),
                cwd: Some("/src/x".into()),
            },
            requested_at: "2026-01-01T10:00:00Z".into(),
        }
    }

    fn at(text: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn ids_are_read_in_any_case_but_only_as_six_hex_digits() {
        assert_eq!(approval_id("3F9C2A").unwrap().as_str(), "3f9c2a");
        assert_eq!(approval_id(" 3f9c2a ").unwrap().as_str(), "3f9c2a");
        assert!(approval_id("3f9c2").is_err());
        assert!(approval_id("xyzxyz").is_err());
    }

    #[test]
    fn the_table_is_sanitised_one_line_a_request() {
        let text = table(
            &[approval("rm -rf x\n\u{1b}]0;pwned\u{7}echo hi")],
            at("2026-01-01T10:03:30Z"),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[1].starts_with("3f9c2a  coder  Bash"), "{text}");
        assert!(
            lines[1].contains("rm -rf x⏎\\u{1b}]0;pwned\\u{7}echo hi"),
            "{text}"
        );
        assert!(lines[1].ends_with("3m"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = at("2026-01-02T10:00:00Z");
        assert_eq!(age("2026-01-02T09:59:18Z", now), "42s");
        assert_eq!(age("2026-01-02T08:00:00Z", now), "2h");
        assert_eq!(age("2026-01-01T09:00:00Z", now), "1d");
        assert_eq!(age("2026-01-02T10:00:05Z", now), "0s");
        assert_eq!(age("soon", now), "soon");
    }

    #[test]
    fn long_summaries_are_shortened_in_the_table_only() {
        let long = "x".repeat(200);
        assert_eq!(shorten(&long, 10).chars().count(), 10);
        assert!(shorten(&long, 10).ends_with('…'));
        assert_eq!(shorten("short", 10), "short");
    }

    #[test]
    fn a_request_line_names_the_agent_tool_command_place_and_id() {
        let expected = "coder asks to run Bash: touch made.txt (in /src/x) [id 3f9c2a]";
        assert_eq!(request_line(&approval("touch made.txt")), expected);
        // A summary that names its tool already does not name it twice.
        assert_eq!(request_line(&approval("Bash: touch made.txt")), expected);
    }
}
