//! `orchestration message`: send an agent a message and print the reply,
//! streamed as it arrives unless `--no-stream` or `--json` is given.

use clap::Args;
use http::Method;
use serde::Serialize;

use super::progress::Feedback;
use super::{CliError, Ctx, agent_path, output, read_prompt};
use crate::api::wire::{MessageRequest, Messages, StreamLine};
use crate::client::ClientError;
use crate::engine::AgentName;

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The agent to talk to.
    #[arg(add = super::complete::live_agents())]
    pub name: AgentName,
    /// The message (several words are joined with spaces); `-` reads it from standard input.
    /// Put `--` before a message that starts with `-`.
    #[arg(required = true, num_args = 1.., value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// Wait for the whole reply instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// On a terminal, no line with the reply's time and tokens after it.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub async fn run(ctx: &Ctx, args: MessageArgs) -> Result<(), CliError> {
    let mut body = MessageRequest {
        content: read_prompt(&args.prompt)?,
        stream: streams(ctx, args.no_stream),
        api_key: None,
    };
    let path = agent_path(&args.name, "/message");
    let feedback = Feedback::start(&args.name.to_string(), ctx.json, args.quiet);
    match converse(ctx, &path, &body, body.stream, feedback).await {
        // A suspended agent whose key the daemon lacks: send ours, once.
        Err(CliError::Client(ClientError::Api {
            missing_key: Some(variable),
            ..
        })) if key_from_env(&variable).is_some() => {
            body.api_key = key_from_env(&variable);
            let feedback = Feedback::start(&args.name.to_string(), ctx.json, args.quiet);
            converse(ctx, &path, &body, body.stream, feedback).await
        }
        other => other,
    }
}

fn key_from_env(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|key| !key.is_empty())
}

/// Whether a reply is streamed: not with `--no-stream`, nor with `--json`
/// (which prints the API's `{"messages": […]}` once the reply is complete).
pub(super) fn streams(ctx: &Ctx, no_stream: bool) -> bool {
    !no_stream && !ctx.json
}

/// Posts `body` (a message or a task, whose `stream` field is `stream`)
/// and prints the reply; on a terminal, `feedback` shows the wait.
pub(super) async fn converse<B: Serialize>(
    ctx: &Ctx,
    path: &str,
    body: &B,
    stream: bool,
    mut feedback: Feedback,
) -> Result<(), CliError> {
    if !stream {
        let reply: Messages = ctx.client.json(Method::POST, path, Some(body)).await?;
        feedback.reply_started();
        if ctx.json {
            return output::json(&reply);
        }
        for message in &reply.messages {
            output::line(&message.content)?;
        }
        feedback.finished(reply.messages.last());
        return Ok(());
    }

    let mut finished = false;
    let mut at_line_start = true;
    // A failed write (a closed stdout above all) ends the stream; it is
    // reported as itself, not as the stream's failure.
    let mut write_error = None;
    let mut reply = None;
    let streamed = ctx
        .client
        .stream(path, body, |line| match line {
            StreamLine::Delta { content } => {
                feedback.reply_started();
                at_line_start = content.ends_with('\n');
                output::print(&content).map_err(|e| {
                    let text = e.to_string();
                    write_error = Some(e);
                    ClientError::Protocol(text)
                })
            }
            StreamLine::Message { message } => {
                reply = Some(message);
                Ok(())
            }
            StreamLine::Done => {
                finished = true;
                Ok(())
            }
            StreamLine::Error { status, detail } => {
                feedback.reply_started();
                Err(ClientError::Api {
                    status,
                    detail,
                    missing_key: None,
                })
            }
        })
        .await;
    if let Some(error) = write_error {
        return Err(error);
    }
    streamed.inspect_err(|_| {
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
    feedback.finished(reply.as_ref());
    Ok(())
}
