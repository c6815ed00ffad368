//! `orchestration message`: send an agent a message and print the reply,
//! streamed as it arrives unless `--no-stream` or `--json` is given.

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::{CliError, Ctx, agent_path, output, read_prompt};
use crate::api::wire::{Messages, StreamLine};
use crate::client::ClientError;
use crate::engine::AgentName;

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The agent to talk to.
    pub name: AgentName,
    /// The message (several words are joined with spaces); `-` reads it from standard input.
    /// Put `--` before a message that starts with `-`.
    #[arg(required = true, num_args = 1.., value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// Wait for the whole reply instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
}

pub async fn run(ctx: &Ctx, args: MessageArgs) -> Result<(), CliError> {
    let content = read_prompt(&args.prompt)?;
    let body = serde_json::json!({ "content": content });
    converse(
        ctx,
        &agent_path(&args.name, "/message"),
        body,
        !args.no_stream,
    )
    .await
}

/// Posts `body` (a message or a task) and prints the reply. With `--json`
/// the reply is not streamed and the API's `{"messages": […]}` is printed.
pub(super) async fn converse(
    ctx: &Ctx,
    path: &str,
    mut body: Value,
    stream: bool,
) -> Result<(), CliError> {
    let stream = stream && !ctx.json;
    if let Value::Object(fields) = &mut body {
        fields.insert("stream".into(), Value::Bool(stream));
    }
    if !stream {
        let reply: Messages = ctx.client.json(Method::POST, path, Some(&body)).await?;
        if ctx.json {
            return output::json(&reply);
        }
        for message in &reply.messages {
            output::line(&message.content)?;
        }
        return Ok(());
    }

    let mut finished = false;
    let mut at_line_start = true;
    ctx.client
        .stream(path, &body, |line| match line {
            StreamLine::Delta { content } => {
                at_line_start = content.ends_with('\n');
                output::print(&content).map_err(|e| ClientError::Protocol(e.to_string()))
            }
            StreamLine::Message { .. } => Ok(()),
            StreamLine::Done => {
                finished = true;
                Ok(())
            }
            StreamLine::Error { status, detail } => Err(ClientError::Api { status, detail }),
        })
        .await
        .inspect_err(|_| {
            if !at_line_start {
                let _ = output::print("\n");
            }
        })?;
    if !at_line_start {
        output::print("\n")?;
    }
    if !finished {
        return Err(CliError::Client(ClientError::Connection(
            "the reply stream ended before the reply was complete".into(),
        )));
    }
    Ok(())
}
