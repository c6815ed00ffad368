//! Codex as a coding agent: one `codex app-server` child per agent, driven
//! over its JSON-RPC on stdio (one object a line, no `"jsonrpc"` field), with
//! a `CODEX_HOME` of its own under the agent's state dir, so the user's
//! `~/.codex` is never read or edited.
//!
//! The protocol, as verified against Codex 0.171.0 (see
//! `docs/dev/coding-agents/NOTES.md`): `initialize` + `initialized`; then
//! `thread/start` for a new agent or `thread/resume` for one that has a
//! thread (repeating cwd, model, approval policy and sandbox, which a bare
//! resume resets); `turn/start` per prompt, streamed as
//! `item/agentMessage/delta`, `item/started` / `item/completed` (commands,
//! file changes), `thread/tokenUsage/updated`, and ended by
//! `turn/completed`. Permission requests are server requests
//! (`item/commandExecution/requestApproval`, `item/fileChange/requestApproval`)
//! answered `{"decision": "accept" | "decline"}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::child::{Child, ChildError, ChildSpec, Output, find_program};
use super::{
    ApprovalMode, Approver, BoxFuture, Runtime, RuntimeError, Spec, Turn, TurnEvent, TurnStream,
};
use crate::model::{ApprovalRequest, ToolCall, ToolResult, Usage, Verdict};

/// The spec's variable naming the model server (the spawn's `--base-url`,
/// or `[agents.codex] env`): read into `config.toml`, not passed on.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// Where Codex's model calls go unless the spawn names another URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The variable that holds the key unless the spawn names another.
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
/// The tool name of a shell command, as Codex's items call it.
pub const COMMAND_TOOL: &str = "commandExecution";
/// The tool name of a file edit, as Codex's items call it.
pub const FILE_CHANGE_TOOL: &str = "fileChange";

/// The model provider's id in the generated `config.toml`.
const PROVIDER_ID: &str = "orchestration";
/// Codex's own retries of a failed request or stream. It keeps
/// "reconnecting" past these when nothing listens, so a turn also gives up
/// after this many reconnect notices of its own (see [`Turn::reconnects`]).
const RETRIES: u32 = 1;
/// How long `stop` waits after EOF, then after TERM.
const STOP_GRACE: Duration = Duration::from_secs(4);
/// How long a turn whose stream was dropped may take to end after
/// `turn/interrupt` before its child is killed instead.
const SETTLE: Duration = Duration::from_secs(10);
/// Events a turn may have ready ahead of its reader.
const EVENTS_AHEAD: usize = 32;
/// The longest approval summary, in characters.
const SUMMARY_CHARS: usize = 300;

/// Where the child's model calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelServer {
    /// An OpenAI Responses endpoint, `/v1` included (Codex appends `/responses`).
    pub base_url: String,
    /// The variable in the child's environment that holds the key.
    pub key_env: String,
}

impl Default for ModelServer {
    fn default() -> Self {
        Self {
            base_url: OPENAI_BASE_URL.to_owned(),
            key_env: OPENAI_KEY_ENV.to_owned(),
        }
    }
}

/// The Codex runtime of one agent.
pub struct Codex {
    spec: Spec,
    server: ModelServer,
    session: Option<Session>,
    /// The thread the next child resumes: `Spec::resume`, then the last
    /// one a child reported.
    thread: Option<String>,
}

impl Codex {
    pub fn new(spec: Spec, server: ModelServer) -> Self {
        let thread = spec.resume.clone();
        Self {
            spec,
            server,
            session: None,
            thread,
        }
    }

    /// The runtime the engine makes: the model server is the spec's
    /// [`BASE_URL_ENV`] (else OpenAI's), the key is in `OPENAI_API_KEY`.
    pub fn from_spec(mut spec: Spec) -> Self {
        let base_url = spec
            .env
            .remove(BASE_URL_ENV)
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| OPENAI_BASE_URL.to_owned());
        let server = ModelServer {
            base_url,
            key_env: super::Program::Codex.key_variable().to_owned(),
        };
        Self::new(spec, server)
    }

    /// The thread id the agent has now, if any.
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// The child's process id, while one runs.
    pub fn pid(&self) -> Option<i32> {
        self.session
            .as_ref()
            .and_then(|session| session.child.pid())
    }

    /// `CODEX_HOME`: private to this agent, kept across restarts (threads
    /// live there), never under `/tmp` unless the state dir is.
    pub fn codex_home(state_dir: &Path) -> PathBuf {
        state_dir.join("codex-home")
    }

    fn program(&self) -> String {
        self.spec
            .command
            .first()
            .cloned()
            .unwrap_or_else(|| "codex".to_owned())
    }

    /// A live session with its thread open, starting a child if none runs.
    async fn session(&mut self, events: &mpsc::Sender<Item>) -> Result<&mut Session, RuntimeError> {
        self.settle_left_turn().await;
        if let Some(session) = self.session.as_mut()
            && let Some(status) = session.child.exit_status()
        {
            tracing::info!(agent = %self.spec.agent, status, "codex exited between turns");
            self.session = None;
        }
        if self.session.is_none() {
            let session = self.start().await?;
            self.thread = Some(session.thread.clone());
            let _ = events
                .send(Ok(TurnEvent::Session(session.thread.clone())))
                .await;
            self.session = Some(session);
        }
        let program = self.program();
        self.session.as_mut().ok_or(RuntimeError::Protocol {
            program,
            reason: "no session".into(),
        })
    }

    /// Ends a turn whose stream was dropped (the caller gave up): interrupt
    /// it and read to its end, or kill the child if that does not work.
    async fn settle_left_turn(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(open) = session.open_turn.take() else {
            return;
        };
        let settled = match open {
            OpenTurn::Starting => false,
            OpenTurn::Running(turn) => {
                tokio::time::timeout(SETTLE, session.interrupt_and_drain(&turn))
                    .await
                    .is_ok_and(|drained| drained.is_ok())
            }
        };
        if !settled {
            tracing::info!(agent = %self.spec.agent, "a dropped codex turn did not end; stopping the child");
            self.session = None;
        }
    }

    /// Starts `codex app-server`, introduces ourselves, and opens the thread.
    async fn start(&mut self) -> Result<Session, RuntimeError> {
        let program = self.program();
        let path = self.spec.env.get("PATH").map(String::as_str);
        let Some(found) = find_program(&program, path) else {
            return Err(RuntimeError::Missing {
                program,
                install: super::Program::Codex.install().to_owned(),
            });
        };
        let home = Self::codex_home(&self.spec.state_dir);
        write_codex_home(&home, &self.server).map_err(|reason| RuntimeError::Start {
            program: program.clone(),
            reason,
        })?;
        let mut env = self.spec.env.clone();
        env.insert("CODEX_HOME".into(), home.display().to_string());
        let mut args: Vec<String> = self.spec.command.iter().skip(1).cloned().collect();
        args.push("app-server".into());
        let child = Child::spawn(&ChildSpec {
            label: self.spec.agent.to_string(),
            program: found.display().to_string(),
            args,
            env,
            cwd: self.spec.cwd.clone(),
        })
        .map_err(|error| RuntimeError::Start {
            program: program.clone(),
            reason: error.to_string(),
        })?;
        let mut session = Session {
            child,
            program,
            thread: String::new(),
            model: None,
            next_id: 0,
            open_turn: None,
        };
        session
            .call(
                "initialize",
                json!({
                    "clientInfo": {"name": "orchestration", "title": null, "version": env!("CARGO_PKG_VERSION")},
                    "capabilities": null,
                }),
            )
            .await?
            .map_err(|error| session.protocol(format!("initialize failed: {error}")))?;
        session.notify("initialized").await?;
        let opened = match self.thread.clone() {
            Some(thread) => match session
                .call("thread/resume", self.resume_params(&thread))
                .await?
            {
                Ok(result) => result,
                // The first child died before Codex wrote the thread: there
                // is nothing to resume, so a new thread is the same thread.
                Err(error) if error.contains("no rollout found") => {
                    tracing::info!(agent = %self.spec.agent, thread, "codex has no such thread; starting a new one");
                    session.open_thread(self.start_params()).await?
                }
                Err(error) => {
                    return Err(session.protocol(format!("thread/resume failed: {error}")));
                }
            },
            None => session.open_thread(self.start_params()).await?,
        };
        let Some(thread) = opened["thread"]["id"].as_str() else {
            return Err(session.protocol("the thread has no id".into()));
        };
        session.thread = thread.to_owned();
        session.model = opened["model"].as_str().map(str::to_owned);
        Ok(session)
    }

    /// What both `thread/start` and `thread/resume` repeat: a bare resume
    /// falls back to the config's read-only sandbox.
    fn thread_settings(&self) -> Map<String, Value> {
        let (approval, sandbox) = match self.spec.policy.mode {
            ApprovalMode::Bypass => ("never", "danger-full-access"),
            // Every command asks; the policy answers before a person does.
            ApprovalMode::Ask | ApprovalMode::Never => ("untrusted", "workspace-write"),
        };
        let mut params = Map::new();
        params.insert("cwd".into(), json!(self.spec.cwd.display().to_string()));
        params.insert("approvalPolicy".into(), json!(approval));
        params.insert("sandbox".into(), json!(sandbox));
        if let Some(model) = &self.spec.model {
            params.insert("model".into(), json!(model));
        }
        params
    }

    fn start_params(&self) -> Value {
        let mut params = self.thread_settings();
        if let Some(instructions) = &self.spec.instructions {
            params.insert("developerInstructions".into(), json!(instructions));
        }
        Value::Object(params)
    }

    fn resume_params(&self, thread: &str) -> Value {
        let mut params = self.thread_settings();
        params.insert("threadId".into(), json!(thread));
        params.insert("excludeTurns".into(), json!(true));
        Value::Object(params)
    }

    /// One turn, its events sent to `events`; an error ends it.
    async fn drive(&mut self, turn: Turn, events: &mpsc::Sender<Item>) -> Result<(), RuntimeError> {
        let policy = self.spec.policy.clone();
        let cwd = self.spec.cwd.display().to_string();
        let result = {
            let session = self.session(events).await?;
            let mut state = TurnState::new(turn, policy, cwd, events);
            state.run(session).await
        };
        if let Err(RuntimeError::Died { .. }) = &result {
            // The next turn starts a new child, which resumes the thread.
            self.session = None;
        }
        result
    }
}

impl Runtime for Codex {
    fn turn<'a>(&'a mut self, turn: Turn) -> TurnStream<'a> {
        let (events, received) = mpsc::channel(EVENTS_AHEAD);
        let driver = async move {
            if let Err(error) = self.drive(turn, &events).await {
                let _ = events.send(Err(error)).await;
            }
        };
        Box::pin(Driven {
            driver: Some(Box::pin(driver)),
            received,
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(session) = self.session.take() {
                session.child.stop(STOP_GRACE).await;
            }
        })
    }

    fn is_running(&self) -> bool {
        self.session.is_some()
    }
}

type Item = Result<TurnEvent, RuntimeError>;

/// A turn's stream: polls the driver (which owns the runtime for the turn)
/// and hands on what it sent. Dropping it drops the driver mid-turn; the
/// next turn settles what was left (see [`Codex::settle_left_turn`]).
struct Driven<'a> {
    driver: Option<BoxFuture<'a, ()>>,
    received: mpsc::Receiver<Item>,
}

impl Stream for Driven<'_> {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        if let Some(driver) = this.driver.as_mut()
            && driver.as_mut().poll(cx).is_ready()
        {
            this.driver = None;
        }
        // Once the driver is done its sender is gone, so this ends after
        // the last event.
        this.received.poll_recv(cx)
    }
}

/// Where a turn whose stream may be dropped stands.
enum OpenTurn {
    /// `turn/start` sent, its id not known yet.
    Starting,
    Running(String),
}

/// One running `codex app-server` with its thread open.
struct Session {
    child: Child,
    program: String,
    thread: String,
    model: Option<String>,
    next_id: u64,
    open_turn: Option<OpenTurn>,
}

/// One thing the child printed.
enum Incoming {
    /// The answer to one of our requests: its result, or its error's message.
    Response {
        id: String,
        outcome: Result<Value, String>,
    },
    /// The child asks us (a permission request).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
}

impl Incoming {
    /// Codex's own request ids are numbers that can equal ours, so a
    /// response is an id without a method.
    fn parse(mut line: Value) -> Option<Self> {
        let id = line.get_mut("id").map(Value::take);
        let method = line
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let params = line
            .get_mut("params")
            .map(Value::take)
            .unwrap_or(Value::Null);
        match (method, id) {
            (Some(method), Some(id)) => Some(Self::Request { id, method, params }),
            (Some(method), None) => Some(Self::Notification { method, params }),
            (None, Some(id)) => {
                let id = match id {
                    Value::String(id) => id,
                    other => other.to_string(),
                };
                let outcome = match line.get_mut("error") {
                    Some(error) => Err(error["message"]
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_owned)),
                    None => Ok(line
                        .get_mut("result")
                        .map(Value::take)
                        .unwrap_or(Value::Null)),
                };
                Some(Self::Response { id, outcome })
            }
            (None, None) => None,
        }
    }
}

impl Session {
    fn protocol(&self, reason: String) -> RuntimeError {
        RuntimeError::Protocol {
            program: self.program.clone(),
            reason,
        }
    }

    fn closed(&self, error: ChildError) -> RuntimeError {
        RuntimeError::Start {
            program: self.program.clone(),
            reason: error.to_string(),
        }
    }

    async fn send(&mut self, line: Value) -> Result<(), RuntimeError> {
        match self.child.send(&line).await {
            Ok(()) => Ok(()),
            // Its stdin closed: it exited, and reading says how.
            Err(ChildError::Closed { .. }) => Err(self.died().await),
            Err(error) => Err(self.closed(error)),
        }
    }

    async fn notify(&mut self, method: &str) -> Result<(), RuntimeError> {
        self.send(json!({"method": method})).await
    }

    /// Sends a request; returns its id.
    async fn request(&mut self, method: &str, params: Value) -> Result<String, RuntimeError> {
        self.next_id += 1;
        let id = format!("o{}", self.next_id);
        self.send(json!({"method": method, "id": id, "params": params}))
            .await?;
        Ok(id)
    }

    /// A request and its answer, outside a turn: whatever else arrives
    /// meanwhile is logged and passed over.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, String>, RuntimeError> {
        let id = self.request(method, params).await?;
        loop {
            match self.next().await? {
                Incoming::Response {
                    id: answered,
                    outcome,
                } if answered == id => return Ok(outcome),
                Incoming::Request { id, method, .. } => self.refuse(id, &method).await?,
                _ => {}
            }
        }
    }

    async fn open_thread(&mut self, params: Value) -> Result<Value, RuntimeError> {
        self.call("thread/start", params)
            .await?
            .map_err(|error| self.protocol(format!("thread/start failed: {error}")))
    }

    /// Answers a server request we do not serve, so Codex does not wait.
    async fn refuse(&mut self, id: Value, method: &str) -> Result<(), RuntimeError> {
        tracing::debug!(program = %self.program, method, "refusing a codex request");
        self.send(json!({
            "id": id,
            "error": {"code": -32601, "message": format!("orchestration does not serve {method}")},
        }))
        .await
    }

    async fn answer(&mut self, id: Value, accept: bool) -> Result<(), RuntimeError> {
        let decision = if accept { "accept" } else { "decline" };
        self.send(json!({"id": id, "result": {"decision": decision}}))
            .await
    }

    /// The next JSON object the child printed.
    async fn next(&mut self) -> Result<Incoming, RuntimeError> {
        loop {
            match self.child.next().await {
                None => return Err(self.died().await),
                Some(Err(error)) => return Err(self.protocol(error.to_string())),
                Some(Ok(Output::Text(text))) => {
                    tracing::debug!(program = %self.program, line = %text.escape_debug(), "codex printed a non-JSON line");
                }
                Some(Ok(Output::Line(line))) => {
                    if let Some(incoming) = Incoming::parse(line) {
                        return Ok(incoming);
                    }
                }
            }
        }
    }

    /// Its stdout closed: it is exiting (or gone); how, and what it said.
    async fn died(&mut self) -> RuntimeError {
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => "closed its output".to_owned(),
        };
        self.child.stderr_settled().await;
        RuntimeError::Died {
            program: self.program.clone(),
            status,
            stderr: without_colour(&self.child.stderr_tail()),
        }
    }

    /// Interrupts `turn` and reads to its `turn/completed`, declining what
    /// it still asks.
    async fn interrupt_and_drain(&mut self, turn: &str) -> Result<(), RuntimeError> {
        let params = json!({"threadId": self.thread, "turnId": turn});
        self.request("turn/interrupt", params).await?;
        loop {
            match self.next().await? {
                Incoming::Request { id, method, .. } if is_approval(&method) => {
                    self.answer(id, false).await?;
                }
                Incoming::Request { id, method, .. } => self.refuse(id, &method).await?,
                Incoming::Notification { method, params }
                    if method == "turn/completed" && params["turn"]["id"] == turn =>
                {
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

/// Codex colours its log lines even into a pipe; an error message should
/// not carry terminal escapes.
fn without_colour(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            plain.push(c);
            continue;
        }
        // CSI: ESC [ parameters, then one final byte in @..~.
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    plain
}

fn is_approval(method: &str) -> bool {
    matches!(
        method,
        "item/commandExecution/requestApproval" | "item/fileChange/requestApproval"
    )
}

/// A pending approval's answer, or `None` once Codex withdrew it.
type Pending = BoxFuture<'static, (Value, Option<Verdict>)>;

/// One turn in flight.
struct TurnState<'e> {
    prompt: Arc<str>,
    approver: Arc<dyn Approver>,
    interrupt: CancellationToken,
    policy: super::Policy,
    cwd: String,
    events: &'e mpsc::Sender<Item>,
    start_id: String,
    turn_id: Option<String>,
    interrupted: bool,
    /// Why the turn failed, when we ended it ourselves.
    failure: Option<String>,
    /// The last error Codex reported without retrying.
    error: Option<String>,
    /// "Reconnecting" notices: Codex keeps reconnecting forever when
    /// nothing listens, so the turn gives up after [`RETRIES`] of its own.
    reconnects: u32,
    usage: Option<Usage>,
    wrote_text: bool,
    /// Tool calls by item id: file changes' approvals name no files, their item does.
    calls: HashMap<String, ToolCall>,
    pending: FuturesUnordered<Pending>,
    /// Withdraws a pending approval, by Codex's request id.
    withdraw: HashMap<String, CancellationToken>,
}

impl<'e> TurnState<'e> {
    fn new(turn: Turn, policy: super::Policy, cwd: String, events: &'e mpsc::Sender<Item>) -> Self {
        Self {
            prompt: turn.prompt,
            approver: turn.approver,
            interrupt: turn.interrupt,
            policy,
            cwd,
            events,
            start_id: String::new(),
            turn_id: None,
            interrupted: false,
            failure: None,
            error: None,
            reconnects: 0,
            usage: None,
            wrote_text: false,
            calls: HashMap::new(),
            pending: FuturesUnordered::new(),
            withdraw: HashMap::new(),
        }
    }

    async fn emit(&mut self, event: TurnEvent) {
        let _ = self.events.send(Ok(event)).await;
    }

    async fn run(&mut self, session: &mut Session) -> Result<(), RuntimeError> {
        let input = json!([{"type": "text", "text": &*self.prompt, "text_elements": []}]);
        let params = json!({"threadId": session.thread, "input": input});
        session.open_turn = Some(OpenTurn::Starting);
        self.start_id = session.request("turn/start", params).await?;
        loop {
            let interrupt = self.interrupt.clone();
            tokio::select! {
                incoming = session.next() => {
                    if let Some(end) = self.handle(session, incoming?).await? {
                        session.open_turn = None;
                        return end;
                    }
                }
                () = interrupt.cancelled(), if !self.interrupted => {
                    self.interrupted = true;
                    self.stop_turn(session).await?;
                }
                Some((id, verdict)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.withdraw.remove(&id.to_string());
                    if let Some(verdict) = verdict {
                        session.answer(id, verdict.approved()).await?;
                    }
                }
            }
        }
    }

    /// Asks Codex to end the turn, and withdraws what it was waiting for.
    async fn stop_turn(&mut self, session: &mut Session) -> Result<(), RuntimeError> {
        for token in self.withdraw.values() {
            token.cancel();
        }
        let Some(turn) = self.turn_id.clone() else {
            // Sent once `turn/start` says which turn it is.
            return Ok(());
        };
        let params = json!({"threadId": session.thread, "turnId": turn});
        session.request("turn/interrupt", params).await?;
        Ok(())
    }

    /// Handles one line; `Some` once the turn is over.
    async fn handle(
        &mut self,
        session: &mut Session,
        incoming: Incoming,
    ) -> Result<Option<Result<(), RuntimeError>>, RuntimeError> {
        match incoming {
            Incoming::Response { id, outcome } if id == self.start_id => match outcome {
                Ok(result) => {
                    let Some(turn) = result["turn"]["id"].as_str() else {
                        return Err(session.protocol("turn/start gave no turn id".into()));
                    };
                    self.turn_id = Some(turn.to_owned());
                    session.open_turn = Some(OpenTurn::Running(turn.to_owned()));
                    if self.interrupted {
                        self.stop_turn(session).await?;
                    }
                }
                Err(error) => {
                    session.open_turn = None;
                    return Ok(Some(Err(RuntimeError::Turn(error))));
                }
            },
            Incoming::Response { .. } => {}
            Incoming::Request { id, method, params } => {
                self.request(session, id, &method, params).await?;
            }
            Incoming::Notification { method, params } => {
                if !self.ours(session, &params) {
                    return Ok(None);
                }
                return self.notification(session, &method, params).await;
            }
        }
        Ok(None)
    }

    /// Whether a notification is about this turn (or its thread, when it
    /// names no turn).
    fn ours(&self, session: &Session, params: &Value) -> bool {
        if let Some(thread) = params["threadId"].as_str()
            && thread != session.thread
        {
            return false;
        }
        match (params["turnId"].as_str(), &self.turn_id) {
            (Some(turn), Some(ours)) => turn == ours,
            _ => true,
        }
    }

    async fn notification(
        &mut self,
        session: &mut Session,
        method: &str,
        params: Value,
    ) -> Result<Option<Result<(), RuntimeError>>, RuntimeError> {
        match method {
            "item/agentMessage/delta" => {
                if let Some(delta) = params["delta"].as_str().filter(|d| !d.is_empty()) {
                    self.wrote_text = true;
                    self.emit(TurnEvent::Delta(delta.to_owned())).await;
                }
            }
            "item/started" => self.item_started(&params["item"]).await,
            "item/completed" => self.item_completed(&params["item"]).await,
            "thread/tokenUsage/updated" => {
                let last = &params["tokenUsage"]["last"];
                let usage = self.usage.get_or_insert_with(Usage::default);
                let count = |key: &str| last[key].as_u64().unwrap_or(0);
                // OpenAI's convention, which the ledger keeps: input counts
                // the cached tokens, output the reasoning ones.
                usage.add(Usage {
                    input_tokens: count("inputTokens"),
                    output_tokens: count("outputTokens"),
                    cache_read_tokens: count("cachedInputTokens"),
                    cache_write_tokens: count("cacheWriteInputTokens"),
                    reasoning_tokens: count("reasoningOutputTokens"),
                });
            }
            "error" => self.error(session, &params).await?,
            "serverRequest/resolved" => {
                if let Some(token) = self.withdraw.remove(&params["requestId"].to_string()) {
                    token.cancel();
                }
            }
            "turn/completed"
                if self.turn_id.is_some()
                    && params["turn"]["id"].as_str() == self.turn_id.as_deref() =>
            {
                return Ok(self.completed(session, &params["turn"]).await);
            }
            _ => {}
        }
        Ok(None)
    }

    /// Codex reports a failed model call; with `willRetry` it is
    /// reconnecting, which it never stops doing on its own when nothing
    /// listens.
    async fn error(&mut self, session: &mut Session, params: &Value) -> Result<(), RuntimeError> {
        let error = &params["error"];
        let mut message = error["message"]
            .as_str()
            .unwrap_or("the model call failed")
            .to_owned();
        if let Some(details) = error["additionalDetails"].as_str() {
            message = format!("{message} ({details})");
        }
        if params["willRetry"] != true {
            self.error = Some(message);
            return Ok(());
        }
        self.reconnects += 1;
        if self.reconnects > RETRIES && self.failure.is_none() && !self.interrupted {
            self.failure = Some(format!("gave up reaching the model server: {message}"));
            self.interrupted = true;
            self.stop_turn(session).await?;
        }
        Ok(())
    }

    async fn completed(
        &mut self,
        session: &Session,
        turn: &Value,
    ) -> Option<Result<(), RuntimeError>> {
        if let Some(usage) = self.usage.take() {
            self.emit(TurnEvent::Usage(usage)).await;
        }
        if let Some(model) = &session.model {
            let mut metadata = Map::new();
            metadata.insert("model".into(), json!(model));
            self.emit(TurnEvent::Metadata(metadata)).await;
        }
        if let Some(failure) = self.failure.take() {
            return Some(Err(RuntimeError::Turn(failure)));
        }
        let finish = match turn["status"].as_str() {
            Some("completed") => "stop",
            Some("interrupted") => "interrupted",
            Some("failed") => {
                let error = &turn["error"];
                let message = error["message"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| self.error.take())
                    .unwrap_or_else(|| "the turn failed".to_owned());
                return Some(Err(RuntimeError::Turn(message)));
            }
            Some(other) => other,
            None => "stop",
        };
        self.emit(TurnEvent::Finish(finish.to_owned())).await;
        Some(Ok(()))
    }

    async fn item_started(&mut self, item: &Value) {
        let Some(id) = item["id"].as_str() else {
            return;
        };
        let input = match item["type"].as_str() {
            Some("agentMessage") => {
                // A second message in one turn (text, a command, more text)
                // reads as a new paragraph.
                if self.wrote_text {
                    self.emit(TurnEvent::Delta("\n\n".into())).await;
                    self.wrote_text = false;
                }
                return;
            }
            Some(COMMAND_TOOL) => (COMMAND_TOOL, command_input(item)),
            Some(FILE_CHANGE_TOOL) => (FILE_CHANGE_TOOL, file_change_input(item)),
            _ => return,
        };
        let call = ToolCall {
            id: id.to_owned(),
            name: input.0.to_owned(),
            input: input.1,
        };
        self.calls.insert(id.to_owned(), call.clone());
        self.emit(TurnEvent::ToolCall(call)).await;
    }

    async fn item_completed(&mut self, item: &Value) {
        let Some(id) = item["id"].as_str() else {
            return;
        };
        let status = item["status"].as_str().unwrap_or("completed");
        let (name, output) = match item["type"].as_str() {
            Some(COMMAND_TOOL) => (COMMAND_TOOL, command_output(item, status)),
            Some(FILE_CHANGE_TOOL) => (FILE_CHANGE_TOOL, file_change_output(item, status)),
            _ => return,
        };
        self.calls.remove(id);
        let failed_exit = item["exitCode"].as_i64().is_some_and(|code| code != 0);
        self.emit(TurnEvent::ToolResult(ToolResult {
            id: id.to_owned(),
            name: name.to_owned(),
            output,
            is_error: status != "completed" || failed_exit,
        }))
        .await;
    }

    /// A server request: a permission request is answered by the policy or
    /// a person; anything else is refused so Codex does not wait on it.
    async fn request(
        &mut self,
        session: &mut Session,
        id: Value,
        method: &str,
        params: Value,
    ) -> Result<(), RuntimeError> {
        let request = match method {
            "item/commandExecution/requestApproval" => self.command_request(&params),
            "item/fileChange/requestApproval" => self.file_change_request(&params),
            _ => return session.refuse(id, method).await,
        };
        if self.interrupted {
            return session.answer(id, false).await;
        }
        match decide(&self.policy, &request) {
            Some(accept) => session.answer(id, accept).await,
            None => {
                let token = CancellationToken::new();
                self.withdraw.insert(id.to_string(), token.clone());
                let asked = self.approver.ask(request);
                self.pending.push(Box::pin(async move {
                    tokio::select! {
                        verdict = asked => (id, Some(verdict)),
                        () = token.cancelled() => (id, None),
                    }
                }));
                Ok(())
            }
        }
    }

    fn command_request(&self, params: &Value) -> ApprovalRequest {
        let command = params["command"].as_str().unwrap_or_default();
        let script = script_of(command);
        let cwd = params["cwd"].as_str().unwrap_or(&self.cwd).to_owned();
        let mut input = Map::new();
        input.insert("command".into(), json!(script));
        input.insert("cwd".into(), json!(cwd));
        if let Some(reason) = params["reason"].as_str() {
            input.insert("reason".into(), json!(reason));
        }
        ApprovalRequest {
            tool: COMMAND_TOOL.to_owned(),
            summary: summarize(&script),
            input: Value::Object(input),
            cwd: Some(cwd),
        }
    }

    fn file_change_request(&self, params: &Value) -> ApprovalRequest {
        let item = params["itemId"].as_str().unwrap_or_default();
        let input = self
            .calls
            .get(item)
            .map_or_else(|| json!({}), |call| call.input.clone());
        let files: Vec<&str> = input["changes"]
            .as_array()
            .map(|changes| changes.iter().filter_map(|c| c["path"].as_str()).collect())
            .unwrap_or_default();
        let summary = if files.is_empty() {
            params["reason"].as_str().unwrap_or("edit files").to_owned()
        } else {
            format!("edit {}", files.join(", "))
        };
        ApprovalRequest {
            tool: FILE_CHANGE_TOOL.to_owned(),
            summary: summarize(&summary),
            input,
            cwd: Some(self.cwd.clone()),
        }
    }
}

/// The policy's answer without asking: `Some(true)` runs, `Some(false)`
/// declines, `None` asks a person.
fn decide(policy: &super::Policy, request: &ApprovalRequest) -> Option<bool> {
    if policy.mode == ApprovalMode::Bypass || allowed(&policy.allow, request) {
        return Some(true);
    }
    match policy.mode {
        ApprovalMode::Never => Some(false),
        _ => None,
    }
}

/// Whether an `allow` pattern covers the request: the tool's name covers
/// all its calls; otherwise a pattern is a command prefix in words
/// (`git status` covers `git status --short`), and only a simple command
/// can match one — anything a shell would treat specially (`;`, `&&`, `|`,
/// `>`, `$(`, …) asks, so `git status; rm -rf ~` is never let through.
fn allowed(allow: &[String], request: &ApprovalRequest) -> bool {
    if allow.iter().any(|pattern| pattern == &request.tool) {
        return true;
    }
    if request.tool != COMMAND_TOOL {
        return false;
    }
    let Some(argv) = request.input["command"].as_str().and_then(simple_argv) else {
        return false;
    };
    allow.iter().any(|pattern| {
        simple_argv(pattern).is_some_and(|words| !words.is_empty() && argv.starts_with(&words))
    })
}

/// The script of a `/bin/bash -lc '…'` wrapper (how Codex shows every
/// command), or the command as it is.
fn script_of(command: &str) -> String {
    let mut parts = command.splitn(3, ' ');
    let (Some(shell), Some(flag), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return command.to_owned();
    };
    let shell_name = shell.rsplit('/').next().unwrap_or(shell);
    if !matches!(shell_name, "bash" | "sh" | "zsh") || !matches!(flag, "-c" | "-lc") {
        return command.to_owned();
    }
    match shell_words(rest, Quoting::Posix) {
        Some(words) if words.len() == 1 => words.into_iter().next().unwrap_or_default(),
        _ => command.to_owned(),
    }
}

/// How [`shell_words`] reads what a shell would do more with than split.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Quoting {
    /// A simple command only: anything the shell would expand, redirect,
    /// chain or escape (`;`, `|`, `$`, `\`, a newline, …) refuses the text.
    Simple,
    /// POSIX quoting and backslash escapes, for unwrapping `bash -lc '…'`;
    /// other characters are taken as they are.
    Posix,
}

/// A simple command's words, or `None` if the shell would do more than run
/// one program with these arguments.
fn simple_argv(script: &str) -> Option<Vec<String>> {
    shell_words(script, Quoting::Simple)
}

/// Splits `text` into shell words as `quoting` says; `None` if a quote is
/// left open, or if `Quoting::Simple` meets anything but a simple command.
fn shell_words(text: &str, quoting: Quoting) -> Option<Vec<String>> {
    const SPECIAL: &[char] = &[
        ';', '&', '|', '<', '>', '(', ')', '$', '`', '*', '?', '[', ']', '{', '}', '~', '#', '=',
        '!', '\n', '\r',
    ];
    let simple = quoting == Quoting::Simple;
    let mut words = Vec::new();
    // `Some` once a word has begun, so `''` is an (empty) word.
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\n' if !simple => words.extend(word.take()),
            '\'' => {
                let word = word.get_or_insert_default();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                let word = word.get_or_insert_default();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' | '!' if simple => return None,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' if simple => return None,
            '\\' => word.get_or_insert_default().push(chars.next()?),
            c if simple && SPECIAL.contains(&c) => return None,
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// One line a person can judge, bounded.
fn summarize(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= SUMMARY_CHARS {
        return line;
    }
    let mut short: String = line.chars().take(SUMMARY_CHARS - 1).collect();
    short.push('…');
    short
}

fn command_input(item: &Value) -> Value {
    let command = item["command"].as_str().unwrap_or_default();
    json!({"command": script_of(command), "cwd": item["cwd"]})
}

fn command_output(item: &Value, status: &str) -> String {
    if let Some(output) = item["aggregatedOutput"].as_str() {
        return output.to_owned();
    }
    match status {
        "declined" => "declined: the command did not run".to_owned(),
        "completed" => String::new(),
        other => format!("the command {other}"),
    }
}

fn file_change_input(item: &Value) -> Value {
    let changes: Vec<Value> = item["changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .map(|change| json!({"path": change["path"], "kind": change["kind"]["type"], "diff": change["diff"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({ "changes": changes })
}

fn file_change_output(item: &Value, status: &str) -> String {
    let count = item["changes"].as_array().map_or(0, Vec::len);
    match status {
        "completed" => format!("applied {count} change(s)"),
        "declined" => "declined: the files were not changed".to_owned(),
        other => format!("the change {other}"),
    }
}

/// Writes `$CODEX_HOME/config.toml` (private, rewritten at every start):
/// one model provider at the spawn's URL, reading the key from the
/// spawn's variable, on the Responses wire, with bounded retries.
fn write_codex_home(home: &Path, server: &ModelServer) -> Result<(), String> {
    super::write_private(home, "config.toml", &codex_config(server)).map(drop)
}

fn codex_config(server: &ModelServer) -> String {
    let mut provider = toml::Table::new();
    provider.insert("name".into(), PROVIDER_ID.into());
    provider.insert("base_url".into(), server.base_url.clone().into());
    provider.insert("env_key".into(), server.key_env.clone().into());
    provider.insert("wire_api".into(), "responses".into());
    provider.insert("request_max_retries".into(), i64::from(RETRIES).into());
    provider.insert("stream_max_retries".into(), i64::from(RETRIES).into());
    let mut providers = toml::Table::new();
    providers.insert(PROVIDER_ID.into(), provider.into());
    let mut config = toml::Table::new();
    config.insert("model_provider".into(), PROVIDER_ID.into());
    config.insert("model_providers".into(), providers.into());
    let body = toml::to_string(&config).unwrap_or_default();
    format!(
        "# Written by orchestration at every start of this agent's Codex; edits are lost.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Policy;

    fn command(script: &str) -> ApprovalRequest {
        ApprovalRequest {
            tool: COMMAND_TOOL.into(),
            summary: script.into(),
            input: json!({"command": script}),
            cwd: None,
        }
    }

    fn allow(patterns: &[&str]) -> Policy {
        Policy {
            allow: patterns.iter().map(|p| (*p).to_owned()).collect(),
            mode: ApprovalMode::Ask,
        }
    }

    #[test]
    fn bash_wrappers_unwrap_to_their_script() {
        assert_eq!(
            script_of("/bin/bash -lc 'echo hi > made.txt && pwd'"),
            "echo hi > made.txt && pwd"
        );
        assert_eq!(script_of("/bin/bash -lc 'echo it'\\''s'"), "echo it's");
        assert_eq!(script_of("bash -c \"ls -la\""), "ls -la");
        assert_eq!(script_of("git status"), "git status");
        assert_eq!(script_of("/bin/bash -lc 'open"), "/bin/bash -lc 'open");
        assert_eq!(script_of(""), "");
    }

    #[test]
    fn one_splitter_reads_simple_commands_strictly_and_wrapped_scripts_posix_style() {
        let words = |list: &[&str]| Some(list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>());
        // Alike in both: blanks split, quotes join, `''` is an empty word.
        for quoting in [Quoting::Simple, Quoting::Posix] {
            assert_eq!(
                shell_words("ls  'a file'\t\"b c\"", quoting),
                words(&["ls", "a file", "b c"])
            );
            assert_eq!(shell_words("x '' y", quoting), words(&["x", "", "y"]));
            assert_eq!(shell_words("", quoting), words(&[]));
            assert_eq!(shell_words("ls 'open", quoting), None);
            assert_eq!(shell_words("ls \"open", quoting), None);
        }
        // Only POSIX unwrapping takes escapes, newlines and special characters.
        let posix = |text| shell_words(text, Quoting::Posix);
        let simple = |text| shell_words(text, Quoting::Simple);
        assert_eq!(posix("a\\ b"), words(&["a b"]));
        assert_eq!(
            posix("\"say \\\"hi\\\" \\$x \\q\""),
            words(&["say \"hi\" $x \\q"])
        );
        assert_eq!(posix("a\nb"), words(&["a", "b"]));
        assert_eq!(posix("ls; rm ~"), words(&["ls;", "rm", "~"]));
        assert_eq!(posix("a\\"), None);
        for text in [
            "a\\ b", "\"\\$x\"", "\"$x\"", "a\nb", "a\rb", "ls; rm", "rm ~",
        ] {
            assert_eq!(simple(text), None, "{text:?}");
        }
    }

    #[test]
    fn allow_patterns_are_word_prefixes_of_simple_commands_only() {
        let policy = allow(&["git status", "ls"]);
        assert_eq!(decide(&policy, &command("git status")), Some(true));
        assert_eq!(decide(&policy, &command("git  status --short")), Some(true));
        assert_eq!(decide(&policy, &command("ls 'a file'")), Some(true));
        assert_eq!(decide(&policy, &command("git statusx")), None);
        assert_eq!(decide(&policy, &command("git")), None);
        assert_eq!(decide(&policy, &command("lsof")), None);
        for sneaky in [
            "git status; rm -rf ~",
            "git status && rm x",
            "ls | sh",
            "ls > /etc/passwd",
            "ls $(rm x)",
            "ls `rm x`",
            "ls \"$(rm x)\"",
            "ls\nrm x",
            "ls 'unclosed",
            "ls \\; rm",
        ] {
            assert_eq!(decide(&policy, &command(sneaky)), None, "{sneaky:?}");
        }
    }

    #[test]
    fn tool_names_never_and_bypass_decide_without_asking() {
        assert_eq!(
            decide(&allow(&["commandExecution"]), &command("rm -rf x; y")),
            Some(true)
        );
        let never = Policy {
            allow: vec!["echo".into()],
            mode: ApprovalMode::Never,
        };
        assert_eq!(decide(&never, &command("touch x")), Some(false));
        assert_eq!(decide(&never, &command("echo x")), Some(true));
        let bypass = Policy {
            allow: Vec::new(),
            mode: ApprovalMode::Bypass,
        };
        assert_eq!(decide(&bypass, &command("anything; at all")), Some(true));
        let file = ApprovalRequest {
            tool: FILE_CHANGE_TOOL.into(),
            summary: "edit a".into(),
            input: json!({}),
            cwd: None,
        };
        assert_eq!(decide(&allow(&["ls"]), &file), None);
        assert_eq!(decide(&allow(&["fileChange"]), &file), Some(true));
    }

    #[test]
    fn lines_are_told_apart_by_id_and_method() {
        let response = Incoming::parse(json!({"id": "o1", "result": {"x": 1}}));
        assert!(matches!(response, Some(Incoming::Response { id, outcome: Ok(_) }) if id == "o1"));
        let error = Incoming::parse(json!({"id": 3, "error": {"code": -1, "message": "no"}}));
        assert!(
            matches!(error, Some(Incoming::Response { id, outcome: Err(m) }) if id == "3" && m == "no")
        );
        let request = Incoming::parse(json!({"id": 0, "method": "item/x", "params": {}}));
        assert!(matches!(request, Some(Incoming::Request { .. })));
        let note = Incoming::parse(json!({"method": "warning"}));
        assert!(matches!(note, Some(Incoming::Notification { .. })));
        assert!(Incoming::parse(json!({"what": 1})).is_none());
    }

    #[test]
    fn the_config_names_the_spawns_url_and_key_variable() {
        let text = codex_config(&ModelServer {
            base_url: "http://127.0.0.1:9/v1".into(),
            key_env: "WORK_KEY\"".into(),
        });
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let provider = &parsed["model_providers"]["orchestration"];
        assert_eq!(parsed["model_provider"].as_str(), Some("orchestration"));
        assert_eq!(provider["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(provider["env_key"].as_str(), Some("WORK_KEY\""));
        assert_eq!(provider["wire_api"].as_str(), Some("responses"));
        assert_eq!(provider["request_max_retries"].as_integer(), Some(1));
    }

    #[test]
    fn colour_codes_are_stripped_from_stderr() {
        assert_eq!(
            without_colour("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m no bwrap\n"),
            "2026 ERROR no bwrap\n"
        );
        assert_eq!(without_colour("plain"), "plain");
        assert_eq!(without_colour("cut \u{1b}["), "cut ");
    }

    #[test]
    fn summaries_are_one_bounded_line() {
        assert_eq!(summarize("a\n  b"), "a b");
        let long = "x".repeat(1000);
        assert_eq!(summarize(&long).chars().count(), SUMMARY_CHARS);
    }
}
