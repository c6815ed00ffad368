//! `orchestration message`: send an agent a message and print the reply,
//! streamed as it arrives unless `--no-stream` or `--json` is given; or,
//! with `a,b,c`, send the same message to several agents at once (fan-out).

use clap::Args;
use serde::Serialize;

use super::progress::Feedback;
use super::{CliError, Ctx, EndpointOptions, activity, approvals, output, read_prompt};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use tokio::sync::{mpsc, oneshot};

use crate::client::ClientError;
use crate::model::{AgentInfo, AgentName, Approval, Decision};
use crate::wire::{
    ErrorCode, FanOutLine, FanOutRequest, FanOutResult, MessageRequest, Messages, Route, StreamLine,
};

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The agent to talk to; several, comma-separated (a,b,c), get the same message at once.
    #[arg(add = super::complete::live_agent_lists(), value_name = "NAME[,NAME…]")]
    pub name: AgentList,
    /// The message (several words are joined with spaces); `-` reads it from standard input, as
    /// does no message at all when standard input is not a terminal (`echo hi | orchestration
    /// message NAME`). Put `--` before a message that starts with `-`.
    #[arg(num_args = 0.., value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// Wait for the whole reply instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// On a terminal, no line with the reply's time and tokens after it.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// One agent name, or several separated by commas (a name cannot contain one).
#[derive(Debug, Clone)]
pub struct AgentList(pub Vec<AgentName>);

impl std::str::FromStr for AgentList {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let names = text
            .split(',')
            .map(|name| AgentName::parse(name.trim()).map_err(|e| format!("{name:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != names.len() {
            return Err(format!("{text:?} names an agent twice"));
        }
        Ok(Self(names))
    }
}

pub async fn run(ctx: &Ctx, args: MessageArgs) -> Result<(), CliError> {
    let content = read_prompt(&args.prompt)?;
    let name = match args.name.0.as_slice() {
        [one] => one.clone(),
        several => return fan_out(ctx, several, content, args.no_stream, args.quiet).await,
    };
    let mut body = MessageRequest {
        content,
        stream: streams(ctx, args.no_stream),
        api_key: None,
    };
    let route = Route::Message(name.clone());
    let feedback = Feedback::start(&name.to_string(), ctx.json, args.quiet);
    let outcome = match converse(ctx, &route, &body, body.stream, feedback).await {
        // A suspended agent whose key the daemon lacks: send ours, once.
        Err(CliError::Client(ClientError::Api {
            code: ErrorCode::Suspended,
            missing_key: Some(variable),
            ..
        })) if key_from_env(&variable).is_some() => {
            body.api_key = key_from_env(&variable);
            let feedback = Feedback::start(&name.to_string(), ctx.json, args.quiet);
            converse(ctx, &route, &body, body.stream, feedback).await
        }
        other => other,
    };
    match outcome {
        Err(error) if super::is_model_server_answer(&error) => {
            Err(explain_upstream(ctx, &name, error).await)
        }
        Err(error) => {
            let fallback = "`orchestration list` shows the live agents";
            Err(super::suggestion::unknown_agent(ctx, &name, error, true, fallback).await)
        }
        ok => ok,
    }
}

/// The model server refused: the hint names the `models` command that asks
/// this agent's own endpoint, not the default one.
async fn explain_upstream(ctx: &Ctx, name: &AgentName, error: CliError) -> CliError {
    let Ok(info): Result<AgentInfo, _> = ctx.client.agent(name).await else {
        return error;
    };
    let options = EndpointOptions {
        provider: info.profile.is_none().then(|| info.provider.clone()),
        profile: info.profile.clone(),
        base_url: None,
        api_key_env: None,
    };
    let command = options.models_command();
    if info.profile.is_some() {
        return error.with_hint(super::model_server_hint(&command));
    }
    error.with_hint(format!(
        "that is the model server's answer: check the model name (`{command}` lists what the \
         provider's own endpoint offers; for the URL in the error, add --base-url URL and \
         --api-key-env VAR as it was spawned with), the key and the account"
    ))
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
/// to `route` and prints the reply; on a terminal, `feedback` shows the wait.
pub(super) async fn converse<B: Serialize>(
    ctx: &Ctx,
    route: &Route,
    body: &B,
    stream: bool,
    mut feedback: Feedback,
) -> Result<(), CliError> {
    if !stream {
        let reply: Messages = ctx.client.call(route, Some(body)).await?;
        feedback.reply_started();
        if ctx.json {
            return output::json(&reply);
        }
        for message in &reply.messages {
            output::line(&output::visible(&message.content))?;
        }
        feedback.finished(reply.messages.last());
        return Ok(());
    }

    let mut finished = false;
    let mut at_line_start = true;
    let mut reply = None;
    // Approvals answered at this terminal go to `answer_inline`, which
    // asks and answers beside the stream (the stream must go on meanwhile:
    // the approval may be answered elsewhere first).
    let inline = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let (asks, asked) = mpsc::unbounded_channel::<Approval>();
    // Tool activity goes to stderr, so stdout stays the reply; a reply's
    // line is ended first so the two never share one.
    let aside = |at_line_start: &mut bool, text: &str| -> Result<(), CliError> {
        if !*at_line_start {
            output::print("\n")?;
            *at_line_start = true;
        }
        eprint_line(text);
        Ok(())
    };
    // A failed write (a closed stdout above all) ends the stream, as itself.
    let streaming = ctx.client.stream(route, body, |line| match line {
        StreamLine::Queued { ahead } => {
            feedback.queued(ahead);
            Ok(())
        }
        StreamLine::Unknown => Ok(()),
        StreamLine::ToolCall { call } => {
            feedback.reply_started();
            aside(&mut at_line_start, &activity::call_line(&call))
        }
        StreamLine::ToolResult { result } => {
            feedback.reply_started();
            aside(&mut at_line_start, &activity::result_line(&result))
        }
        StreamLine::Approval { approval } => {
            feedback.reply_started();
            aside(&mut at_line_start, &approvals::request_line(&approval))?;
            if inline {
                let _ = asks.send(approval);
            } else {
                eprint_line(&how_to_answer(&approval.id));
            }
            Ok(())
        }
        StreamLine::Delta { content } => {
            feedback.reply_started();
            at_line_start = content.ends_with('\n');
            output::print(&output::visible(&content))
        }
        StreamLine::Message { message } => {
            reply = Some(message);
            Ok(())
        }
        StreamLine::Done => {
            finished = true;
            Ok(())
        }
        StreamLine::Error {
            status,
            code,
            detail,
        } => {
            feedback.reply_started();
            Err(CliError::Client(ClientError::Api {
                status,
                code,
                detail,
                missing_key: None,
            }))
        }
    });
    let streamed: Result<(), CliError> = beside(streaming, answer_inline(ctx, asked)).await;
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

/// Runs `main` to its end with `side` beside it; `side` is dropped
/// unfinished when `main` ends (a question nobody needs answered any more).
async fn beside<T>(
    main: impl std::future::Future<Output = T>,
    side: impl std::future::Future<Output = ()>,
) -> T {
    tokio::pin!(main);
    tokio::pin!(side);
    let mut side_done = false;
    loop {
        tokio::select! {
            out = &mut main => return out,
            () = &mut side, if !side_done => side_done = true,
        }
    }
}

/// Asks at the terminal about each approval the stream brings, one at a
/// time, and answers it through the API. Only `y` or `yes` approves.
async fn answer_inline(ctx: &Ctx, mut asked: mpsc::UnboundedReceiver<Approval>) {
    while let Some(approval) = asked.recv().await {
        let Ok(id) = crate::wire::ApprovalId::parse(&approval.id) else {
            eprint_line(&format!(
                "  the daemon sent an approval id that cannot be answered: {}",
                approvals::visible_one_line(&approval.id)
            ));
            continue;
        };
        let Some(line) = read_answer(&format!("  run it? [y/N] (id {id}) ")).await else {
            return; // stdin closed: answer elsewhere
        };
        let decision = match line.trim().to_lowercase().as_str() {
            "y" | "yes" => Decision::Approve,
            _ => Decision::Deny,
        };
        let reason = (decision == Decision::Deny).then(|| "denied at the terminal".to_owned());
        match approvals::send(ctx, &id, decision, reason).await {
            Ok(answered) => eprint_line(&format!("  {}", approvals::answered_line(&answered))),
            Err(CliError::Client(ClientError::Api {
                code: ErrorCode::AlreadyResolved | ErrorCode::ApprovalNotFound,
                ..
            })) => eprint_line(&format!(
                "  {id} was settled already (answered elsewhere, or it expired)"
            )),
            Err(error) => eprint_line(&format!("  could not answer {id}: {error}")),
        }
    }
}

/// Asks `question` on stderr and reads one line from stdin on a thread of
/// its own (a blocked read must not hold the runtime, and is simply left
/// behind if the turn ends first). `None` at end of input.
async fn read_answer(question: &str) -> Option<String> {
    {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{question}");
        let _ = stderr.flush();
    }
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line);
        let _ = tx.send(matches!(read, Ok(n) if n > 0).then_some(line));
    });
    rx.await.ok().flatten()
}

/// How to answer an approval from elsewhere (off a terminal, or in a fan-out).
fn how_to_answer(id: &str) -> String {
    let id = approvals::visible_one_line(id);
    format!(
        "  waiting for an answer: `orchestration approve {id}` or `orchestration deny {id} --reason TEXT`"
    )
}

/// One line on stderr; a closed stderr is no reason to stop.
fn eprint_line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// `message a,b,c PROMPT`: the prompt to each agent at once (`POST
/// /messages`). On a terminal the replies stream side by side as labelled
/// lines, one line word by word at a time, after a waiting line on stderr;
/// otherwise each is printed whole under its agent's name, in the command
/// line's order; `--json` prints `{"NAME": {"messages": […]}, …}`. The exit
/// status is the worst of the agents'.
async fn fan_out(
    ctx: &Ctx,
    agents: &[AgentName],
    content: String,
    no_stream: bool,
    quiet: bool,
) -> Result<(), CliError> {
    let mut request = FanOutRequest {
        agents: agents.to_vec(),
        content,
        stream: false,
    };
    if ctx.json || no_stream {
        let results: BTreeMap<AgentName, FanOutResult> = ctx.client.fan_out(&request).await?;
        if ctx.json {
            output::json(&results)?;
        } else {
            for name in agents {
                if let Some(result) = results.get(name) {
                    print_whole(name, result)?;
                }
            }
        }
        return worst(results.values());
    }
    request.stream = true;
    let label = agents
        .iter()
        .map(AgentName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut printer = FanOutPrinter {
        live: std::io::stdout().is_terminal(),
        order: agents.to_vec(),
        width: agents
            .iter()
            .map(|a| a.as_str().chars().count())
            .max()
            .unwrap_or(0),
        open: None,
        pending: BTreeMap::new(),
        results: BTreeMap::new(),
        printed: 0,
        feedback: Feedback::start(&label, ctx.json, quiet),
    };
    ctx.client
        .stream(&Route::FanOut, &request, |line: FanOutLine| {
            let Some(name) = line.agent else {
                return Ok(());
            };
            printer.line(name, line.line)
        })
        .await?;
    printer.end_line()?;
    printer.feedback.finished(None);
    worst(printer.results.values())
}

/// Prints a streamed fan-out as it arrives.
struct FanOutPrinter {
    /// Stdout is a terminal: stream labelled lines; else whole replies in `order`.
    live: bool,
    order: Vec<AgentName>,
    /// The label column's width.
    width: usize,
    /// On a terminal, the agent whose labelled line is being printed word by
    /// word; the others' words wait in `pending` until that line ends, so
    /// lines never interleave mid-line.
    open: Option<AgentName>,
    /// Each agent's text not printed yet.
    pending: BTreeMap<AgentName, String>,
    results: BTreeMap<AgentName, FanOutResult>,
    /// How many of `order` have been printed whole (off a terminal).
    printed: usize,
    feedback: Feedback,
}

impl FanOutPrinter {
    fn line(&mut self, name: AgentName, line: StreamLine) -> Result<(), CliError> {
        match line {
            StreamLine::Queued { .. } | StreamLine::Unknown => Ok(()),
            StreamLine::ToolCall { call } => self.aside(&name, &activity::call_line(&call)),
            StreamLine::ToolResult { result } => self.aside(&name, &activity::result_line(&result)),
            StreamLine::Approval { approval } => {
                let request = approvals::request_line(&approval);
                self.aside(
                    &name,
                    &format!("{request}\n{}", how_to_answer(&approval.id)),
                )
            }
            StreamLine::Delta { content } => {
                self.feedback.reply_started();
                self.pending.entry(name).or_default().push_str(&content);
                self.pump()
            }
            StreamLine::Message { message } => {
                let reply = FanOutResult::Replied(Messages {
                    messages: vec![message],
                });
                self.results.insert(name, reply);
                Ok(())
            }
            StreamLine::Done => {
                self.results
                    .entry(name)
                    .or_insert(FanOutResult::Replied(Messages {
                        messages: Vec::new(),
                    }));
                self.pump()
            }
            StreamLine::Error {
                status,
                code,
                detail,
            } => {
                self.feedback.reply_started();
                if self.live {
                    output::error(&format!("{name}: {detail}"), None);
                }
                let failed = FanOutResult::Failed {
                    status,
                    code,
                    detail,
                };
                self.results.insert(name, failed);
                self.pump()
            }
        }
    }

    /// Tool activity and approvals: at once, on stderr, each line labelled
    /// with its agent; a labelled reply line left open on stdout is ended
    /// first (its next words start a new one).
    fn aside(&mut self, name: &AgentName, text: &str) -> Result<(), CliError> {
        self.feedback.reply_started();
        self.end_line()?;
        let label = format!("{:<w$} │ ", name.as_str(), w = self.width);
        for line in text.lines() {
            eprint_line(&format!("{label}{line}"));
        }
        Ok(())
    }

    /// Prints what can be printed now.
    fn pump(&mut self) -> Result<(), CliError> {
        if self.live {
            self.pump_live()
        } else {
            self.print_ready()
        }
    }

    /// On a terminal: the open agent's words as they come, up to the end of
    /// its line (or its reply); then the next agent with words waiting.
    fn pump_live(&mut self) -> Result<(), CliError> {
        loop {
            let name = match &self.open {
                Some(name) => name.clone(),
                None => {
                    let waiting = self.pending.iter().find(|(_, text)| !text.is_empty());
                    let Some((name, _)) = waiting else {
                        return Ok(());
                    };
                    let name = name.clone();
                    let label = format!("{:<w$} │ ", name.as_str(), w = self.width);
                    output::print(&label)?;
                    self.open = Some(name.clone());
                    name
                }
            };
            let text = self.pending.entry(name.clone()).or_default();
            if let Some(end) = text.find('\n') {
                let shown: String = text.drain(..=end).collect();
                output::print(&output::visible(&shown))?;
                self.open = None;
                continue;
            }
            let shown = std::mem::take(text);
            output::print(&output::visible(&shown))?;
            if !self.results.contains_key(&name) {
                return Ok(()); // more words to come on this line
            }
            output::print("\n")?;
            self.open = None;
        }
    }

    /// Ends a labelled line left open.
    fn end_line(&mut self) -> Result<(), CliError> {
        if self.open.take().is_some() {
            output::print("\n")?;
        }
        Ok(())
    }

    /// Off a terminal: every finished reply whose turn has come, in the
    /// command line's order, so the output is the same run after run.
    fn print_ready(&mut self) -> Result<(), CliError> {
        while let Some(name) = self.order.get(self.printed) {
            let Some(result) = self.results.get(name) else {
                return Ok(());
            };
            match result {
                FanOutResult::Replied(_) => {
                    let reply = self.pending.remove(name).unwrap_or_default();
                    output::line(&format!("{name}:\n{}", output::visible(reply.trim_end())))?;
                }
                FanOutResult::Failed { detail, .. } => {
                    output::error(&format!("{name}: {detail}"), None);
                }
            }
            self.printed += 1;
        }
        Ok(())
    }
}

fn print_whole(name: &AgentName, result: &FanOutResult) -> Result<(), CliError> {
    match result {
        FanOutResult::Replied(reply) => {
            let text: Vec<&str> = reply.messages.iter().map(|m| m.content.as_str()).collect();
            let text = text.join("\n");
            output::line(&format!("{name}:\n{}", output::visible(text.trim_end())))
        }
        FanOutResult::Failed { detail, .. } => {
            output::error(&format!("{name}: {detail}"), None);
            Ok(())
        }
    }
}

/// The worst outcome among the agents' as the command's: the highest exit
/// status any one of them would have had on its own.
fn worst<'a>(results: impl Iterator<Item = &'a FanOutResult>) -> Result<(), CliError> {
    let failures: Vec<CliError> = results
        .filter_map(|result| match result {
            FanOutResult::Failed {
                status,
                code,
                detail,
            } => Some(CliError::Client(ClientError::Api {
                status: *status,
                code: *code,
                detail: detail.clone(),
                missing_key: None,
            })),
            FanOutResult::Replied(_) => None,
        })
        .collect();
    match failures.into_iter().max_by_key(CliError::exit_code) {
        Some(worst) => Err(CliError::Reported(Box::new(worst))),
        None => Ok(()),
    }
}
