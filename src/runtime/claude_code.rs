//! Claude Code as a runtime: one long-lived `claude -p` child speaking
//! stream-json on stdin/stdout, with the control protocol for permission
//! requests (`can_use_tool`) and interrupts. The session is chosen by the
//! daemon (`--session-id`) on the first start and resumed (`--resume`) by
//! every later child, so a restart, a crash or an idle stop continues it.
//! (docs/dev/coding-agents/NOTES.md §3 is the protocol as verified.)

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::child::{Child, ChildError, ChildSpec, Output};
use super::{
    ApprovalMode, BoxFuture, Policy, Runtime, RuntimeError, Spec, Turn, TurnEvent, TurnStream,
};
use crate::model::{ApprovalRequest, ToolCall, ToolResult, Usage, Verdict};

const PROGRAM: &str = "claude";
/// How long the child may take to answer `initialize` (it took 1–2 s on a
/// loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// After an interrupt, how long the turn's `result` may take before the
/// child is stopped instead (it came within milliseconds when verified).
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// TERM after half of this, KILL after all of it.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The longest summary of a tool's input an approval shows.
const SUMMARY_CHARS: usize = 300;
/// The agent's instructions, in its own directory, as the child reads them.
const INSTRUCTIONS_FILE: &str = "claude-instructions.md";

/// Claude Code, for one agent.
pub struct ClaudeCode {
    spec: Spec,
    child: Option<Child>,
    /// The session every child of this agent continues.
    session: Option<String>,
    /// Whether `session` has been started by a child (resume it) or not
    /// yet (create it with `--session-id`).
    started: bool,
    /// `total_cost_usd` of the child's last result: it counts the whole
    /// process, so a turn's cost is the difference.
    cost: f64,
}

impl ClaudeCode {
    pub fn new(spec: Spec) -> Self {
        let session = spec.resume.clone();
        Self {
            started: session.is_some(),
            session,
            spec,
            child: None,
            cost: 0.0,
        }
    }

    /// The command line: the protocol flags, the session, the spec's model,
    /// the file holding its instructions, allow patterns and mode.
    fn args(&self, session: &str, resume: bool, instructions: Option<&Path>) -> Vec<String> {
        let mut args: Vec<String> = self.spec.command.iter().skip(1).cloned().collect();
        args.extend(
            [
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-prompt-tool",
                "stdio",
                "--include-partial-messages",
            ]
            .map(str::to_owned),
        );
        let flag = if resume { "--resume" } else { "--session-id" };
        args.extend([flag.to_owned(), session.to_owned()]);
        if let Some(model) = &self.spec.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        // A file, not the text: one argument may hold at most 128 KiB
        // (Linux's MAX_ARG_STRLEN), and an AGENTS.md can be longer.
        if let Some(path) = instructions {
            args.extend([
                "--append-system-prompt-file".to_owned(),
                path.display().to_string(),
            ]);
        }
        for pattern in &self.spec.policy.allow {
            args.extend(["--allowedTools".to_owned(), pattern.clone()]);
        }
        if self.spec.policy.mode == ApprovalMode::Bypass {
            args.extend([
                "--permission-mode".to_owned(),
                "bypassPermissions".to_owned(),
            ]);
        }
        args
    }

    /// Starts a child for the session: resumes it if a child started it
    /// before, else creates it. A session that was never written (its
    /// first child died before the first turn was saved) is created anew.
    async fn start(&mut self) -> Result<Child, RuntimeError> {
        let session = self
            .session
            .get_or_insert_with(|| Uuid::new_v4().to_string())
            .clone();
        if !self.started {
            let child = self.launch(&session, false).await?;
            self.started = true;
            return Ok(child);
        }
        match self.launch(&session, true).await {
            Err(RuntimeError::Died { stderr, .. }) if stderr.contains("No conversation found") => {
                tracing::info!(agent = %self.spec.agent, %session, "session not saved yet; starting it anew");
                self.launch(&session, false).await
            }
            other => other,
        }
    }

    /// Spawns the child and waits for its answer to `initialize`.
    async fn launch(&self, session: &str, resume: bool) -> Result<Child, RuntimeError> {
        let Some(program) = self.spec.command.first() else {
            return Err(RuntimeError::Missing {
                program: PROGRAM.into(),
                install: super::Program::ClaudeCode.install().into(),
            });
        };
        let instructions = self.write_instructions()?;
        let spec = ChildSpec {
            label: self.spec.agent.to_string(),
            program: program.clone(),
            args: self.args(session, resume, instructions.as_deref()),
            env: self.spec.env.clone(),
            cwd: self.spec.cwd.clone(),
        };
        let mut child = Child::spawn(&spec).map_err(|error| match error {
            ChildError::NotFound(program) => RuntimeError::Missing {
                program,
                install: super::Program::ClaudeCode.install().into(),
            },
            other => RuntimeError::Start {
                program: PROGRAM.into(),
                reason: other.to_string(),
            },
        })?;
        let initialize = json!({
            "type": "control_request",
            "request_id": "init",
            "request": {"subtype": "initialize"},
        });
        if child.send(&initialize).await.is_err() {
            return Err(died(&mut child).await);
        }
        match tokio::time::timeout(START_TIMEOUT, initialized(&mut child)).await {
            Ok(Ok(())) => Ok(child),
            Ok(Err(ChildGone)) => Err(died(&mut child).await),
            Err(_) => {
                child.stop(STOP_GRACE).await;
                Err(RuntimeError::Start {
                    program: PROGRAM.into(),
                    reason: format!(
                        "it did not answer `initialize` within {}s",
                        START_TIMEOUT.as_secs()
                    ),
                })
            }
        }
    }

    /// Writes the spec's instructions to the agent's own directory (private,
    /// rewritten at every start), for `--append-system-prompt-file`.
    fn write_instructions(&self) -> Result<Option<PathBuf>, RuntimeError> {
        let Some(text) = &self.spec.instructions else {
            return Ok(None);
        };
        super::write_private(&self.spec.state_dir, INSTRUCTIONS_FILE, text)
            .map(Some)
            .map_err(|reason| RuntimeError::Start {
                program: PROGRAM.into(),
                reason,
            })
    }

    /// The turn itself: starts a child if none runs, sends the prompt, and
    /// reports what happens until the turn's `result`.
    async fn run(
        &mut self,
        turn: Turn,
        events: mpsc::UnboundedSender<TurnEvent>,
    ) -> Result<(), RuntimeError> {
        let mut child = match self.child.take() {
            Some(child) => child,
            None => {
                let started = tokio::select! {
                    biased;
                    _ = turn.interrupt.cancelled() => None,
                    started = self.start() => Some(started?),
                };
                let Some(child) = started else {
                    let _ = events.send(TurnEvent::Finish("interrupted".into()));
                    return Ok(());
                };
                self.cost = 0.0;
                child
            }
        };
        if let Some(session) = &self.session {
            let _ = events.send(TurnEvent::Session(session.clone()));
        }
        let user = json!({
            "type": "user",
            "message": {"role": "user", "content": &*turn.prompt},
        });
        if child.send(&user).await.is_err() {
            return Err(died(&mut child).await);
        }
        let mut state = TurnState::new(&self.spec, turn, events);
        let outcome = state.follow(&mut child).await;
        match outcome {
            Followed::Done { cost, session } => {
                if let Some(model) = state.model.take() {
                    state.report(TurnEvent::Metadata(fact("model", json!(model))));
                }
                if let Some(total) = cost {
                    let spent = (total - self.cost).max(0.0);
                    self.cost = total;
                    state.report(TurnEvent::Metadata(fact("cost_usd", json!(spent))));
                }
                if let Some(session) = session.filter(|s| Some(s) != self.session.as_ref()) {
                    self.session = Some(session.clone());
                    state.report(TurnEvent::Session(session));
                }
                let end = state.end();
                self.child = Some(child);
                end
            }
            Followed::Died => Err(died(&mut child).await),
            Followed::Stuck(error) => {
                child.stop(STOP_GRACE).await;
                state.end_stuck(error)
            }
        }
    }
}

impl Runtime for ClaudeCode {
    fn turn<'a>(&'a mut self, turn: Turn) -> TurnStream<'a> {
        let (tx, rx) = mpsc::unbounded_channel();
        drive(Box::pin(self.run(turn, tx)), rx)
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(child) = self.child.take() {
                child.stop(STOP_GRACE).await;
            }
        })
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// The child closed stdout before it should have.
struct ChildGone;

/// Reads until the answer to `initialize`.
async fn initialized(child: &mut Child) -> Result<(), ChildGone> {
    loop {
        match child.next().await {
            None | Some(Err(_)) => return Err(ChildGone),
            Some(Ok(Output::Line(line)))
                if line["type"] == "control_response"
                    && line["response"]["request_id"] == "init" =>
            {
                return Ok(());
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The error for a child that exited: how, and the end of its stderr.
async fn died(child: &mut Child) -> RuntimeError {
    let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => "still running, but its output closed".to_owned(),
    };
    child.stderr_settled().await;
    RuntimeError::Died {
        program: PROGRAM.into(),
        status,
        stderr: child.stderr_tail(),
    }
}

/// How following a turn ended.
enum Followed {
    /// The `result` line came; its cumulative cost and session id.
    Done {
        cost: Option<f64>,
        session: Option<String>,
    },
    /// The child's output closed.
    Died,
    /// It did not finish after an interrupt, or printed what cannot be read.
    Stuck(Option<RuntimeError>),
}

/// A permission request waiting for its verdict.
struct Asking {
    input: Value,
    verdict: BoxFuture<'static, Verdict>,
}

/// One turn as it is followed.
struct TurnState {
    policy: Policy,
    /// Where the agent works, for approvals.
    cwd: String,
    turn: Turn,
    events: mpsc::UnboundedSender<TurnEvent>,
    /// Tool names by call id, so a result names its tool.
    tools: HashMap<String, String>,
    /// Permission requests waiting for an answer, by the child's request id.
    asking: HashMap<String, Asking>,
    interrupted: bool,
    /// The model the CLI says answered (its assistant messages name it).
    model: Option<String>,
    /// The failure the `result` reported.
    failure: Option<String>,
    finish: String,
}

impl TurnState {
    fn new(spec: &Spec, turn: Turn, events: mpsc::UnboundedSender<TurnEvent>) -> Self {
        Self {
            policy: spec.policy.clone(),
            cwd: spec.cwd.display().to_string(),
            turn,
            events,
            tools: HashMap::new(),
            asking: HashMap::new(),
            interrupted: false,
            model: None,
            failure: None,
            finish: "stop".into(),
        }
    }

    fn report(&self, event: TurnEvent) {
        // The receiver lives as long as the turn's stream.
        let _ = self.events.send(event);
    }

    /// Reads the child's lines, answers its permission requests and sends
    /// the interrupt when asked, until the turn's `result`.
    async fn follow(&mut self, child: &mut Child) -> Followed {
        let interrupt = self.turn.interrupt.clone();
        let grace = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                biased;
                _ = interrupt.cancelled(), if !self.interrupted => {
                    self.interrupted = true;
                    // Dropped requests are withdrawn; Claude cancels them too.
                    self.asking.clear();
                    let request = json!({
                        "type": "control_request",
                        "request_id": format!("interrupt-{}", Uuid::new_v4()),
                        "request": {"subtype": "interrupt"},
                    });
                    if child.send(&request).await.is_err() {
                        return Followed::Died;
                    }
                    grace.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
                }
                _ = &mut grace => return Followed::Stuck(None),
                (id, input, verdict) = next_verdict(&mut self.asking) => {
                    if child.send(&permission(&id, input, &verdict)).await.is_err() {
                        return Followed::Died;
                    }
                }
                line = child.next() => match line {
                    None => return Followed::Died,
                    Some(Err(error)) => {
                        return Followed::Stuck(Some(RuntimeError::Protocol {
                            program: PROGRAM.into(),
                            reason: error.to_string(),
                        }));
                    }
                    Some(Ok(Output::Text(_))) => {}
                    Some(Ok(Output::Line(line))) => {
                        if let Some(done) = self.line(child, line).await {
                            return done;
                        }
                    }
                },
            }
        }
    }

    /// One line from the child; `Some` when the turn is over.
    async fn line(&mut self, child: &mut Child, line: Value) -> Option<Followed> {
        // A subagent's own messages are its business; its tool calls still
        // ask for permission through control requests.
        let top_level = line["parent_tool_use_id"].is_null();
        match line["type"].as_str().unwrap_or("") {
            "stream_event" if top_level => self.stream_event(&line["event"]),
            "assistant" if top_level => self.assistant(&line["message"]),
            "user" if top_level => self.tool_results(&line["message"]),
            "control_request" => {
                if let Some(answer) = self.control_request(&line)
                    && child.send(&answer).await.is_err()
                {
                    return Some(Followed::Died);
                }
            }
            "control_cancel_request" => {
                if let Some(id) = line["request_id"].as_str() {
                    self.asking.remove(id);
                }
            }
            "result" => return Some(self.result(&line)),
            _ => {}
        }
        None
    }

    fn stream_event(&self, event: &Value) {
        if event["type"] == "content_block_delta"
            && event["delta"]["type"] == "text_delta"
            && let Some(text) = event["delta"]["text"].as_str()
        {
            self.report(TurnEvent::Delta(text.to_owned()));
        }
    }

    /// A whole assistant message: its tool calls (its text came as deltas).
    fn assistant(&mut self, message: &Value) {
        // `<synthetic>` names a message the CLI made up itself (an error).
        if let Some(model) = message["model"].as_str()
            && !model.is_empty()
            && !model.starts_with('<')
        {
            self.model = Some(model.to_owned());
        }
        for block in blocks(message) {
            if block["type"] != "tool_use" {
                continue;
            }
            let call = ToolCall {
                id: text(&block["id"]),
                name: text(&block["name"]),
                input: block["input"].clone(),
            };
            self.tools.insert(call.id.clone(), call.name.clone());
            self.report(TurnEvent::ToolCall(call));
        }
    }

    /// A user message the CLI wrote: the results of tool calls.
    fn tool_results(&self, message: &Value) {
        for block in blocks(message) {
            if block["type"] != "tool_result" {
                continue;
            }
            let id = text(&block["tool_use_id"]);
            let result = ToolResult {
                name: self.tools.get(&id).cloned().unwrap_or_default(),
                id,
                output: result_text(&block["content"]),
                is_error: block["is_error"].as_bool().unwrap_or(false),
            };
            self.report(TurnEvent::ToolResult(result));
        }
    }

    /// A request from the child: a permission request is decided by the
    /// policy at once, or asked; the answer to anything else is an error.
    fn control_request(&mut self, line: &Value) -> Option<Value> {
        let id = text(&line["request_id"]);
        let request = &line["request"];
        if request["subtype"] != "can_use_tool" {
            return Some(json!({
                "type": "control_response",
                "response": {
                    "subtype": "error",
                    "request_id": id,
                    "error": "not supported by the orchestration daemon",
                },
            }));
        }
        let tool = text(&request["tool_name"]);
        let input = request["input"].clone();
        let policy = &self.policy;
        if policy.mode == ApprovalMode::Bypass || allowed(&policy.allow, &tool, &input) {
            return Some(permission(&id, input, &Verdict::approve()));
        }
        if policy.mode == ApprovalMode::Never || self.interrupted {
            let verdict = Verdict::deny(format!(
                "{tool} is not allowed for this agent (approval: never); ask the user to allow it with --allow"
            ));
            return Some(permission(&id, input, &verdict));
        }
        let ask = ApprovalRequest {
            summary: summary(&tool, &input),
            tool,
            input: input.clone(),
            cwd: Some(self.cwd.clone()),
        };
        let verdict = self.turn.approver.ask(ask);
        self.asking.insert(id, Asking { input, verdict });
        None
    }

    /// The turn's `result`: its usage, and whether it failed.
    fn result(&mut self, line: &Value) -> Followed {
        let count = |key: &str| line["usage"][key].as_u64().unwrap_or(0);
        let (cache_read, cache_write) = (
            count("cache_read_input_tokens"),
            count("cache_creation_input_tokens"),
        );
        // Anthropic counts cache reads and writes apart from `input_tokens`;
        // the ledger's input counts every prompt token, so they are added in.
        self.report(TurnEvent::Usage(Usage {
            input_tokens: count("input_tokens")
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            output_tokens: count("output_tokens"),
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
        }));
        // A turn that wrote no assistant message: the one model it used, if one.
        if self.model.is_none()
            && let Some(models) = line["modelUsage"].as_object()
            && models.len() == 1
        {
            self.model = models.keys().next().cloned();
        }
        if let Some(reason) = line["stop_reason"].as_str() {
            self.finish = reason.to_owned();
        }
        if line["is_error"].as_bool().unwrap_or(false) && !self.interrupted {
            let why = line["result"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| line["subtype"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "the turn failed".into());
            self.failure = Some(why);
        }
        Followed::Done {
            cost: line["total_cost_usd"].as_f64(),
            session: line["session_id"].as_str().map(str::to_owned),
        }
    }

    /// After the `result`: the turn's last event, or its failure.
    fn end(&self) -> Result<(), RuntimeError> {
        if let Some(failure) = &self.failure {
            return Err(RuntimeError::Turn(failure.clone()));
        }
        let finish = if self.interrupted {
            "interrupted"
        } else {
            &self.finish
        };
        self.report(TurnEvent::Finish(finish.to_owned()));
        Ok(())
    }

    /// After a child that had to be stopped: interrupted if that was asked,
    /// else the error.
    fn end_stuck(&self, error: Option<RuntimeError>) -> Result<(), RuntimeError> {
        match error {
            Some(error) => Err(error),
            None => {
                self.report(TurnEvent::Finish("interrupted".into()));
                Ok(())
            }
        }
    }
}

/// Resolves with the first permission request answered (never, if none waits).
fn next_verdict(
    asking: &mut HashMap<String, Asking>,
) -> impl Future<Output = (String, Value, Verdict)> + '_ {
    std::future::poll_fn(move |cx| {
        let mut ready = None;
        for (id, waiting) in asking.iter_mut() {
            if let Poll::Ready(verdict) = waiting.verdict.as_mut().poll(cx) {
                ready = Some((id.clone(), verdict));
                break;
            }
        }
        match ready.and_then(|(id, verdict)| Some((asking.remove(&id)?, id, verdict))) {
            Some((waiting, id, verdict)) => Poll::Ready((id, waiting.input, verdict)),
            None => Poll::Pending,
        }
    })
}

/// The answer to a `can_use_tool` request. An approval must echo the input
/// back as `updatedInput`, or the CLI rejects it.
fn permission(id: &str, input: Value, verdict: &Verdict) -> Value {
    let answer = if verdict.approved() {
        json!({"behavior": "allow", "updatedInput": input})
    } else {
        let reason = verdict.reason.as_deref().unwrap_or("denied");
        json!({"behavior": "deny", "message": format!("The user denied this: {reason}")})
    };
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": id, "response": answer},
    })
}

/// Whether an allow pattern lets `tool` run with `input`: a bare tool name,
/// `Tool(exact command)` or `Tool(prefix:*)` (Claude's own rule syntax,
/// which the CLI also enforces through `--allowedTools`). A command that
/// chains or substitutes others never matches a prefix here.
pub fn allowed(patterns: &[String], tool: &str, input: &Value) -> bool {
    let command = input["command"].as_str().unwrap_or("");
    patterns.iter().any(|pattern| {
        let Some((name, rule)) = pattern
            .strip_suffix(')')
            .and_then(|rest| rest.split_once('('))
        else {
            return pattern == tool;
        };
        if name != tool || command.is_empty() {
            return false;
        }
        let chained = ["&&", "||", ";", "|", "`", "$(", "\n", ">", "<"]
            .iter()
            .any(|operator| command.contains(operator));
        match rule.strip_suffix(":*") {
            Some(prefix) => {
                !chained && (command == prefix || command.starts_with(&format!("{prefix} ")))
            }
            None => command == rule,
        }
    })
}

/// Why Claude Code would read `pattern` otherwise than the daemon does, if
/// it would. The CLI splits `--allowedTools` on spaces and commas outside
/// parentheses, so `Read,Bash` would allow every command while the
/// daemon's own matcher saw one pattern matching nothing. A pattern is a
/// tool name, optionally followed by one `(…)` specifier holding no
/// parentheses of its own.
pub fn pattern_problem(pattern: &str) -> Option<&'static str> {
    let (name, specifier) = match pattern.split_once('(') {
        Some((name, rest)) => (name, Some(rest)),
        None => (pattern, None),
    };
    if name.is_empty() {
        return Some("names no tool");
    }
    // A NUL cannot be in an argument at all: every start would fail.
    if pattern.contains(char::is_control) {
        return Some("holds a control character");
    }
    if name.contains(|c: char| c.is_whitespace() || c == ',' || c == ')') {
        return Some(
            "holds a space or comma outside parentheses, which Claude Code reads as several patterns; pass each as its own --allow",
        );
    }
    // No specifier: a bare tool name.
    let specifier = specifier?;
    let Some(inner) = specifier.strip_suffix(')') else {
        return Some("has a `(` without its closing `)` at the end");
    };
    if inner.contains(['(', ')']) {
        return Some(
            "has parentheses inside its specifier, which Claude Code may read as several patterns",
        );
    }
    None
}

/// Whether `pattern` lets Claude Code run every shell command without
/// asking: `Bash` bare, or with a specifier that is empty or starts with a
/// wildcard (`Bash(*)`, `Bash(:*)`), or a prefix (`:*`, `*`) naming a
/// shell or a command that runs another (`Bash(sh:*)`, `Bash(env *)`).
pub fn runs_every_command(pattern: &str) -> bool {
    let pattern = pattern.trim();
    let (name, specifier) = match pattern.split_once('(') {
        Some((name, rest)) => (name, rest.strip_suffix(')').unwrap_or(rest)),
        None => (pattern, ""),
    };
    if !name.trim().eq_ignore_ascii_case("Bash") {
        return false;
    }
    let specifier = specifier.trim();
    if specifier.is_empty() || specifier.starts_with(['*', ':']) {
        return true;
    }
    specifier
        .strip_suffix(":*")
        .or_else(|| specifier.strip_suffix('*'))
        .is_some_and(super::runs_other_commands)
}

/// One line a person can judge a tool call by: the command, the file, or
/// the input itself.
fn summary(tool: &str, input: &Value) -> String {
    let line = ["command", "file_path", "path", "url", "pattern"]
        .iter()
        .find_map(|key| input[*key].as_str().map(str::to_owned))
        .unwrap_or_else(|| input.to_string());
    let line: String = line.chars().take(SUMMARY_CHARS).collect();
    format!("{tool}: {line}")
}

fn blocks(message: &Value) -> impl Iterator<Item = &Value> {
    message["content"].as_array().into_iter().flatten()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A tool result's content as text: a string, or text blocks joined.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn fact(key: &str, value: Value) -> Map<String, Value> {
    let mut facts = Map::new();
    facts.insert(key.to_owned(), value);
    facts
}

/// A turn's work: it reports on a channel, and ends with its error, if any.
type Work<'a> = Pin<Box<dyn Future<Output = Result<(), RuntimeError>> + Send + 'a>>;

/// The turn's work as a stream: the work runs as the stream is polled,
/// and what it reports comes out in order; its error, if any, comes last.
fn drive<'a>(work: Work<'a>, events: mpsc::UnboundedReceiver<TurnEvent>) -> TurnStream<'a> {
    struct Driver<'a> {
        work: Option<Work<'a>>,
        events: mpsc::UnboundedReceiver<TurnEvent>,
        error: Option<RuntimeError>,
    }
    let driver = Driver {
        work: Some(work),
        events,
        error: None,
    };
    Box::pin(futures_util::stream::unfold(
        driver,
        |mut driver| async move {
            loop {
                if let Some(work) = driver.work.as_mut() {
                    tokio::select! {
                        biased;
                        Some(event) = driver.events.recv() => return Some((Ok(event), driver)),
                        outcome = work => {
                            driver.work = None;
                            driver.error = outcome.err();
                        }
                    }
                    continue;
                }
                if let Ok(event) = driver.events.try_recv() {
                    return Some((Ok(event), driver));
                }
                let error = driver.error.take()?;
                return Some((Err(error), driver));
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_patterns_match_tools_and_command_prefixes() {
        let patterns = vec!["Read".to_owned(), "Bash(touch:*)".to_owned()];
        let bash = |command: &str| json!({"command": command});
        assert!(allowed(&patterns, "Read", &json!({"file_path": "a"})));
        assert!(allowed(&patterns, "Bash", &bash("touch made.txt")));
        assert!(allowed(&patterns, "Bash", &bash("touch")));
        assert!(!allowed(&patterns, "Bash", &bash("touchy x")));
        assert!(!allowed(&patterns, "Bash", &bash("touch a && rm -rf b")));
        assert!(!allowed(&patterns, "Bash", &bash("touch $(rm x)")));
        assert!(!allowed(&patterns, "Write", &json!({"file_path": "a"})));
        let exact = vec!["Bash(git status)".to_owned()];
        assert!(allowed(&exact, "Bash", &bash("git status")));
        assert!(!allowed(&exact, "Bash", &bash("git status --short")));
    }

    #[test]
    fn patterns_claude_would_split_are_refused_and_shells_are_recognised() {
        for good in [
            "Read",
            "Bash(git status:*)",
            "Bash(npm run test)",
            "mcp__fs__read",
        ] {
            assert_eq!(pattern_problem(good), None, "{good}");
        }
        for bad in [
            "Read,Bash",
            "Read Bash",
            "",
            "(x)",
            "Bash(a) Bash(b)",
            "Bash(a",
            "Bash(a(b))",
            "Bash(x),Read",
            "Bash(ls\0)",
            "Read\n",
        ] {
            assert!(pattern_problem(bad).is_some(), "{bad:?}");
        }
        for shell in [
            "Bash",
            "Bash(*)",
            "Bash(:*)",
            "Bash()",
            "bash",
            " Bash(* rm)",
            "Bash(sh:*)",
            "Bash(/bin/bash -c:*)",
            "Bash(env *)",
            "Bash(xargs:*)",
        ] {
            assert!(runs_every_command(shell), "{shell:?}");
        }
        for narrow in [
            "Bash(git status:*)",
            "Read",
            "Bash(ls)",
            "Bash(env)",
            "Bash(shellcheck:*)",
        ] {
            assert!(!runs_every_command(narrow), "{narrow:?}");
        }
    }

    #[test]
    fn a_denial_tells_the_model_why_and_an_approval_echoes_the_input() {
        let input = json!({"command": "ls"});
        let yes = permission("r1", input.clone(), &Verdict::approve());
        assert_eq!(yes["response"]["request_id"], "r1");
        assert_eq!(yes["response"]["response"]["updatedInput"], input);
        let no = permission("r2", input, &Verdict::deny("not today"));
        assert_eq!(no["response"]["response"]["behavior"], "deny");
        assert!(
            no["response"]["response"]["message"]
                .as_str()
                .unwrap()
                .contains("not today")
        );
    }

    #[test]
    fn tool_results_read_as_text() {
        assert_eq!(result_text(&json!("plain")), "plain");
        assert_eq!(
            result_text(&json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            "a\nb"
        );
        assert_eq!(summary("Bash", &json!({"command": "ls -l"})), "Bash: ls -l");
    }
}
