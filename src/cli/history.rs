//! `orchestration history`: an agent's conversation, oldest first.

use std::io::IsTerminal;

use clap::Args;

use super::{CliError, Ctx, activity, output};
use crate::client::ClientError;
use crate::model::{AgentName, Conversation, Message};
use crate::wire::{Conversations, ConversationsQuery, ErrorCode, HistoryQuery, Messages};

/// How `history` prints a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per message: time, sender, text; tool calls and results are marked `[tool call]`
    /// and `[tool result]`.
    Text,
    /// A heading per conversation and a block per message, to paste into an issue or a doc; tool
    /// calls and results are folded into `<details>` blocks.
    Markdown,
    /// The API's `{"messages": […]}`.
    Json,
    /// One message object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The agent (live or shut down).
    #[arg(add = super::complete::all_agents(), required_unless_present = "list")]
    pub name: Option<AgentName>,
    /// List every conversation every name has had (or NAME's): id, state, messages, first and
    /// last time, tokens.
    #[arg(long, conflicts_with_all = ["limit", "clear", "format"])]
    pub list: bool,
    /// How to print: text (the default), markdown, json (as --json) or jsonl.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
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
    let name = args.name.clone();
    let outcome = history(ctx, args).await;
    match (outcome, name) {
        (Err(error), Some(name)) => {
            let fallback = "`orchestration history --list` shows every name with a history";
            Err(super::suggestion::unknown_agent(ctx, &name, error, false, fallback).await)
        }
        (outcome, _) => outcome,
    }
}

async fn history(ctx: &Ctx, args: HistoryArgs) -> Result<(), CliError> {
    if args.list {
        return list(ctx, args.name.as_ref()).await;
    }
    let Some(name) = args.name.clone() else {
        return Err(CliError::Usage(
            "an agent name is required (or --list)".into(),
        ));
    };
    if args.clear {
        return clear(ctx, &name, args.yes).await;
    }
    let format = match (args.format, ctx.json) {
        (Some(format), _) => format,
        (None, true) => Format::Json,
        (None, false) => Format::Text,
    };
    if format == Format::Markdown {
        return markdown(ctx, &name, args.limit, args.all).await;
    }
    if format == Format::Text && args.all {
        return text_by_conversation(ctx, &name, args.limit).await;
    }
    let query = HistoryQuery {
        limit: args.limit,
        all: args.all,
        conversation: None,
    };
    let history: Messages = ctx.client.history(&name, &query).await?;
    match format {
        Format::Json => output::json(&history),
        Format::Jsonl => {
            for message in &history.messages {
                output::line(&serde_json::to_string(message).unwrap_or_default())?;
            }
            Ok(())
        }
        Format::Text | Format::Markdown => {
            if history.messages.is_empty() {
                return output::line(&format!("no messages for '{name}'"));
            }
            for message in &history.messages {
                output::line(&activity::history_entry(message))?;
            }
            Ok(())
        }
    }
}

/// `history --list [NAME]`: one line per conversation.
async fn list(ctx: &Ctx, name: Option<&AgentName>) -> Result<(), CliError> {
    let query = ConversationsQuery {
        agent: name.cloned(),
    };
    let found: Conversations = ctx.client.conversations(&query).await?;
    if ctx.json {
        return output::json(&found);
    }
    if found.conversations.is_empty() {
        return output::line("no conversations");
    }
    let time = |t: &Option<String>| t.as_deref().map_or("-".into(), output::timestamp);
    let rows: Vec<Vec<String>> = found
        .conversations
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                c.id.to_string(),
                c.state.to_string(),
                c.message_count.to_string(),
                time(&c.first_at),
                time(&c.last_at),
                format!("{}/{}", c.usage.input_tokens, c.usage.output_tokens),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "CONVERSATION",
        "STATE",
        "MESSAGES",
        "FIRST",
        "LAST",
        "TOKENS(IN/OUT)",
    ];
    output::print(&output::table(&header, &rows))
}

/// `--format markdown`: a heading per conversation (the current one, or
/// every one with --all), a block per message with its sender and time.
async fn markdown(
    ctx: &Ctx,
    name: &AgentName,
    limit: Option<usize>,
    all: bool,
) -> Result<(), CliError> {
    let mut text = String::new();
    for (conversation, messages) in conversations(ctx, name, limit, all).await? {
        text.push_str(&markdown_conversation(&conversation, &messages));
    }
    output::print(&text)
}

/// Text with `--all`: each conversation under a line that names it, so
/// two conversations never run together.
async fn text_by_conversation(
    ctx: &Ctx,
    name: &AgentName,
    limit: Option<usize>,
) -> Result<(), CliError> {
    let mut text = String::new();
    for (conversation, messages) in conversations(ctx, name, limit, true).await? {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "── conversation {} ({}, {} messages) ──\n",
            conversation.id, conversation.state, conversation.message_count
        ));
        for message in &messages {
            text.push_str(&activity::history_entry(message));
            text.push('\n');
        }
    }
    output::print(&text)
}

/// The name's current conversation (every one with `all`) with its
/// messages; `limit` counts messages from the end, across conversations.
async fn conversations(
    ctx: &Ctx,
    name: &AgentName,
    limit: Option<usize>,
    all: bool,
) -> Result<Vec<(Conversation, Vec<Message>)>, CliError> {
    let query = ConversationsQuery {
        agent: Some(name.clone()),
    };
    let found: Conversations = ctx.client.conversations(&query).await?;
    let Some(last) = found.conversations.len().checked_sub(1) else {
        return Err(CliError::Client(ClientError::Api {
            status: 404,
            code: ErrorCode::NotFound,
            detail: format!("no agent named '{name}' has ever existed"),
            missing_key: None,
        }));
    };
    let chosen = if all {
        &found.conversations[..]
    } else {
        &found.conversations[last..]
    };
    let mut parts: Vec<(Conversation, Vec<Message>)> = Vec::new();
    for conversation in chosen {
        let query = HistoryQuery {
            conversation: Some(conversation.id),
            ..HistoryQuery::default()
        };
        let history: Messages = ctx.client.history(name, &query).await?;
        parts.push((conversation.clone(), history.messages));
    }
    let mut skip = limit.map_or(0, |n| {
        parts
            .iter()
            .map(|(_, m)| m.len())
            .sum::<usize>()
            .saturating_sub(n)
    });
    for (_, messages) in &mut parts {
        let shown = skip.min(messages.len());
        skip -= shown;
        messages.drain(..shown);
    }
    Ok(parts)
}

fn markdown_conversation(conversation: &Conversation, messages: &[Message]) -> String {
    let mut text = format!(
        "## {} — conversation {}\n\n_{} messages, {}_\n\n",
        conversation.name, conversation.id, conversation.message_count, conversation.state
    );
    for message in messages {
        if let Some(folded) = activity::markdown_entry(message) {
            text.push_str(&folded);
            continue;
        }
        let interrupted = message
            .metadata
            .get("interrupted")
            .and_then(|v| v.as_bool())
            == Some(true);
        text.push_str(&format!(
            "**{}** · {}{}\n\n{}\n\n",
            output::visible(&message.sender),
            output::timestamp(&message.timestamp),
            if interrupted { " · _interrupted_" } else { "" },
            output::visible(message.content.trim_end())
        ));
    }
    text
}

/// `--clear`: deletes the name's every conversation, once confirmed.
async fn clear(ctx: &Ctx, name: &AgentName, yes: bool) -> Result<(), CliError> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage(format!(
                "history --clear deletes every message '{name}' has had, and there is no terminal to confirm it on"
            ))
            .with_hint(format!("`orchestration history {name} --clear --yes` clears without asking")));
        }
        // Also makes an unknown name a 404 before anything is asked.
        let query = HistoryQuery {
            all: true,
            ..HistoryQuery::default()
        };
        let history: Messages = ctx.client.history(name, &query).await?;
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
    ctx.client.clear_history(name).await?;
    if ctx.json {
        return output::json(&serde_json::json!({"name": name, "cleared": true}));
    }
    output::line(&format!("history of '{name}' cleared"))
}
