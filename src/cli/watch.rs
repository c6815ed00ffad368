//! `orchestration watch`: a live tail of what the agents do (`GET /events`),
//! one line per event, like `journalctl -f`.

use std::collections::HashMap;
use std::io::IsTerminal;

use clap::Args;

use super::{CliError, Ctx, output};
use crate::client::ClientError;
use crate::model::{AgentName, Event, EventLine, Message};
use crate::wire::EventsQuery;

pub const LONG_ABOUT: &str = "\
Follow what the agents do, live: spawns, messages, replies as they stream in, token usage, \
state changes and shutdowns, one line per event (times in UTC), until Ctrl-C or the daemon \
stops. With names, only those agents' events. With --json, the daemon's NDJSON event lines as \
received (GET /events).

watch never starts a daemon: with none running there is nothing to watch, and it exits with \
status 3. An open watch counts as a connection, so it keeps an idle daemon from exiting \
(daemon.idle_timeout). A watcher that cannot keep up is told how many events it missed; it \
never slows an agent down.";

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only these agents (live or not yet spawned); all of them without.
    #[arg(value_name = "NAME", add = super::complete::live_agents())]
    pub names: Vec<AgentName>,
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<(), CliError> {
    let query = EventsQuery { agents: args.names };
    let mut printer = Printer::new(ctx.json);
    let watching = ctx.client.events(&query, |line| printer.line(line));
    let outcome = tokio::select! {
        outcome = watching => outcome,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    printer.close_line();
    match outcome {
        Ok(()) => Ok(()),
        Err(error @ CliError::Client(ClientError::Unreachable { .. })) => Err(error.with_hint(
            "watch does not start a daemon just to watch it idle: start one with \
             `orchestration serve --daemon` (or run any other command), then watch again",
        )),
        Err(error) => Err(error),
    }
}

/// Turns event lines into what the user sees.
struct Printer {
    json: bool,
    colour: bool,
    /// The agent whose reply is being printed as it streams, on a line not yet ended.
    open: Option<AgentName>,
    /// Each agent's reply text streamed so far.
    streamed: HashMap<AgentName, String>,
    /// The name column's width: the longest name seen.
    width: usize,
}

impl Printer {
    fn new(json: bool) -> Self {
        let colour = crate::colour::wanted(std::io::stdout().is_terminal());
        Self {
            json,
            colour,
            open: None,
            streamed: HashMap::new(),
            width: 0,
        }
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), CliError> {
        if self.json {
            return output::line(&String::from_utf8_lossy(raw));
        }
        let Ok(line) = serde_json::from_slice::<EventLine>(raw) else {
            // A line this version cannot read: skip it rather than stop watching.
            return Ok(());
        };
        self.event(line)
    }

    fn event(&mut self, line: EventLine) -> Result<(), CliError> {
        let time = output::clock(&line.ts);
        let Some(agent) = line.agent else {
            let text = match line.event {
                Event::Shutdown { .. } => "daemon stopping".to_owned(),
                Event::Lagged { missed } => {
                    format!("missed {missed} events: this watcher read too slowly")
                }
                _ => return Ok(()),
            };
            self.close_line();
            return output::line(&format!("{time} {}", self.dim(&text)));
        };
        let text = match line.event {
            Event::Delta { content } => return self.delta(&time, &agent, &content),
            Event::Message { message } => match self.message(&agent, message) {
                Some(text) => text,
                None => return Ok(()),
            },
            Event::Spawned {
                provider,
                model,
                task,
            } => {
                let model = model.map(|m| format!(" {m}")).unwrap_or_default();
                let task = if task { ", task" } else { "" };
                let about = format!("{provider}{model}");
                format!("spawned ({}{task})", output::visible(&about))
            }
            Event::State { old, new } => self.dim(&format!("{old} → {new}")),
            Event::Usage { usage } => self.dim(&format!(
                "usage: {} tokens in, {} out",
                usage.input_tokens, usage.output_tokens
            )),
            Event::Suspended { reason } => format!("suspended: {}", output::visible(&reason)),
            Event::Restored => "restored: it can reach its model again".to_owned(),
            Event::Shutdown { restart: false } => "shut down".to_owned(),
            Event::Shutdown { restart: true } => {
                "stopped with the daemon (it comes back at the next start)".to_owned()
            }
            Event::Lagged { missed } => format!("missed {missed} events"),
            Event::Budget {
                scope,
                period,
                unit,
                percent,
                limit,
                spent,
                resets,
                ..
            } => format!(
                "budget {}/{period} {percent}% spent: {} of {} {unit} (resets {})",
                output::visible(&scope),
                crate::model::amount(unit, spent),
                crate::model::amount(unit, limit),
                resets.as_deref().unwrap_or("never")
            ),
            Event::ToolCall { call } => format!(
                "tool call {}: {}",
                output::visible(&call.name),
                output::visible(&call.input.to_string())
            ),
            Event::ToolResult { result } => {
                let outcome = if result.is_error { "failed" } else { "result" };
                format!(
                    "tool {outcome} {}: {}",
                    output::visible(&result.name),
                    output::visible(&result.output)
                )
            }
            Event::ApprovalRequested { approval } => {
                // Most runtimes begin the summary with the tool (`Bash: ls`).
                let request = &approval.request;
                let about = if request.summary.starts_with(&request.tool) {
                    request.summary.clone()
                } else {
                    format!("{} {}", request.tool, request.summary)
                };
                format!("asks approval {}: {}", approval.id, output::visible(&about))
            }
            Event::ApprovalResolved {
                approval_id,
                decision,
                reason,
            } => {
                let reason = reason.map(|r| format!(" ({})", output::visible(&r)));
                let decision = match decision {
                    crate::model::Decision::Approve => "approved",
                    crate::model::Decision::Deny => "denied",
                };
                format!(
                    "approval {approval_id}: {decision}{}",
                    reason.unwrap_or_default()
                )
            }
            Event::Unknown => return Ok(()),
        };
        self.close_line();
        let prefix = self.prefix(&time, &agent);
        output::line(&format!("{prefix}{text}"))
    }

    /// A piece of a reply, printed as it arrives, on the agent's open line.
    fn delta(&mut self, time: &str, agent: &AgentName, content: &str) -> Result<(), CliError> {
        self.streamed
            .entry(agent.clone())
            .or_default()
            .push_str(content);
        if self.open.as_ref() != Some(agent) {
            self.close_line();
            let prefix = self.prefix(time, agent);
            output::print(&format!("{prefix}< "))?;
            self.open = Some(agent.clone());
        }
        output::print(&output::visible(content))
    }

    /// What to print for a stored message: the human's in full; a reply
    /// only if it was not already shown as it streamed (then its line just ends).
    fn message(&mut self, agent: &AgentName, message: Message) -> Option<String> {
        if message.is_human() {
            self.streamed.remove(agent);
            return Some(format!("> {}", output::visible(&message.content)));
        }
        let streamed = self.streamed.remove(agent).unwrap_or_default();
        let interrupted = message.metadata.get("interrupted").is_some();
        let mark = if interrupted { " (interrupted)" } else { "" };
        if streamed == message.content {
            if self.open.as_ref() == Some(agent) {
                self.open = None;
                let _ = output::line(mark);
                return None;
            }
            return Some(self.dim(&format!("< (reply complete){mark}")));
        }
        Some(format!("< {}{mark}", output::visible(&message.content)))
    }

    /// Ends a line a streaming reply left open.
    fn close_line(&mut self) {
        if self.open.take().is_some() {
            let _ = output::line("");
        }
    }

    fn prefix(&mut self, time: &str, agent: &AgentName) -> String {
        self.width = self.width.max(agent.as_str().chars().count());
        let name = format!("{:<width$}", agent.as_str(), width = self.width);
        let name = if self.colour {
            let colours = [32, 33, 34, 35, 36, 31];
            let hash = agent
                .as_str()
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
            format!("\x1b[{}m{name}\x1b[0m", colours[hash % colours.len()])
        } else {
            name
        };
        format!("{} {name}  ", self.dim(time))
    }

    fn dim(&self, text: &str) -> String {
        if self.colour {
            format!("\x1b[2m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    #[test]
    fn an_approval_resolved_line_has_one_id_and_is_read() {
        let line = EventLine {
            id: Some(7),
            ts: "2026-01-01T00:00:00Z".into(),
            agent: Some(AgentName::parse("coder").unwrap()),
            event: Event::ApprovalResolved {
                approval_id: "1d0fea".into(),
                decision: Decision::Deny,
                reason: Some("not here".into()),
            },
        };
        // The event's number and the approval's id are two keys, once each.
        let raw = serde_json::to_string(&line).unwrap();
        assert_eq!(raw.matches("\"id\":").count(), 1, "{raw}");
        assert!(raw.contains("\"approval_id\":\"1d0fea\""), "{raw}");
        let read: EventLine = serde_json::from_str(&raw).expect("read");
        assert_eq!(read, line);
    }
}
