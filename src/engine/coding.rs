//! Coding agents in the engine: the runtime spec an agent's config makes
//! (checked at spawn and again before each turn, so a reload applies), the
//! child a worker keeps between turns, and one turn's exchange: the human
//! message recorded, the runtime's deltas relayed, its tool calls and
//! results recorded as typed messages before anyone hears of them, its
//! permission requests put to the daemon's approvals.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::agent::{
    Agent, End, ExchangeEvent, INTERRUPTED_BY_REQUEST, Reply, Turn, record_human, record_reply,
};
use super::{Approvals, Engine, EngineError, lock, usage};
use crate::model::{
    AgentConfig, AgentName, Approval, ApprovalRequest, Event, HUMAN, Message, Verdict,
};
use crate::profiles::Kind;
use crate::providers::http::Redactor;
use crate::providers::{ProviderSettings, SetupError};
use crate::runtime::child::find_program;
use crate::runtime::{self, Approver, BoxFuture, Policy, Program, Runtime, Spec, TurnEvent};

/// How long a turn cut short by a shutdown or a departed caller may take
/// to end after its interrupt, before the child is given up.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The most of one tool result kept in history (the rest is cut, and the
/// message says so).
const MAX_TOOL_OUTPUT: usize = 256 * 1024;

/// The coding agent `config` runs, if it is one.
pub(super) fn program(config: &AgentConfig) -> Option<Program> {
    match Kind::coding_agent(config.provider.provider.as_deref(), &config.agent_type)? {
        Kind::Codex => Some(Program::Codex),
        _ => Some(Program::ClaudeCode),
    }
}

/// A spawn as stored: a coding agent names its kind as `provider` (`sdk`
/// and a bare `agent_type: "sdk"` become `claude-code`) and has
/// `agent_type` `sdk`, as the Python client reads it.
pub(super) fn normalize(mut config: AgentConfig) -> AgentConfig {
    if let Some(kind) = Kind::coding_agent(config.provider.provider.as_deref(), &config.agent_type)
    {
        config.provider.provider = Some(kind.name().to_owned());
        config.agent_type = "sdk".to_owned();
    }
    config
}

/// The runtime spec of a coding agent under the settings in effect: the
/// executable found, the working directory checked, the child's minimal
/// environment built. `state_dir` is the agent's own directory.
pub(super) fn spec(
    config: &AgentConfig,
    settings: &ProviderSettings,
    session: Option<String>,
    state_dir: PathBuf,
) -> Result<(Program, Spec), SetupError> {
    let program = program(config).ok_or_else(|| {
        SetupError::NoEndpoint(config.provider.provider.clone().unwrap_or_default())
    })?;
    let configured = match program {
        Program::ClaudeCode => &settings.config.agents.claude_code,
        Program::Codex => &settings.config.agents.codex,
    };
    let path = variable(settings, "PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let command = command(program, configured.command.as_deref(), &path)?;
    let cwd = workspace_dir(config.workspace.cwd.as_deref())?;
    check_allow(program, &config.workspace.allow)?;
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), path);
    if let Some(home) = variable(settings, "HOME") {
        env.insert("HOME".to_owned(), home);
    }
    env.insert(
        "LANG".to_owned(),
        variable(settings, "LANG").unwrap_or_else(|| "C.UTF-8".into()),
    );
    // The agent's own key; else the daemon's, but only for the CLI's own
    // endpoint: a key never follows a base URL a request chose.
    let key = config.provider.api_key.clone().or_else(|| {
        config
            .provider
            .base_url
            .is_none()
            .then(|| settings.keys.get(program.key_variable()))
            .flatten()
    });
    if let Some(key) = key {
        env.insert(program.key_variable().to_owned(), key.expose().to_owned());
    }
    if let Some(url) = &config.provider.base_url {
        let variable = match program {
            Program::ClaudeCode => "ANTHROPIC_BASE_URL",
            // Codex's runtime turns it into its CODEX_HOME provider config.
            Program::Codex => "OPENAI_BASE_URL",
        };
        env.insert(variable.to_owned(), url.clone());
    }
    env.extend(configured.env.clone());
    let spec = Spec {
        agent: config.name.clone(),
        command,
        env,
        cwd,
        model: config.provider.model.clone(),
        instructions: config.instructions.clone(),
        resume: session,
        policy: Policy {
            allow: config.workspace.allow.clone(),
            mode: config.workspace.approval,
        },
        state_dir,
    };
    Ok((program, spec))
}

/// A variable of the daemon's environment (its own process's, for a core
/// run without one, as in tests).
fn variable(settings: &ProviderSettings, name: &str) -> Option<String> {
    settings
        .keys
        .setting(name)
        .map(str::to_owned)
        .or_else(|| std::env::var(name).ok())
        .filter(|value| !value.is_empty())
}

/// The executable and its leading arguments: the configured command, else
/// the usual name, found on `path`.
fn command(
    program: Program,
    configured: Option<&[String]>,
    path: &str,
) -> Result<Vec<String>, SetupError> {
    let (mut command, looked) = match configured {
        Some(command) if !command.is_empty() => (
            command.to_vec(),
            format!("[agents.{}] command", Kind::from(program).name()),
        ),
        _ => (
            vec![program.executable().to_owned()],
            "on the daemon's PATH".to_owned(),
        ),
    };
    let Some(found) = find_program(&command[0], Some(path)) else {
        return Err(SetupError::NotInstalled {
            program: command[0].clone(),
            looked,
            install: program.install().to_owned(),
        });
    };
    command[0] = found.display().to_string();
    Ok(command)
}

impl From<Program> for Kind {
    fn from(program: Program) -> Self {
        match program {
            Program::ClaudeCode => Kind::ClaudeCode,
            Program::Codex => Kind::Codex,
        }
    }
}

/// A coding agent's `allow` patterns, as its CLI will read them: within
/// what a command line holds, and for Claude Code (which gets them as
/// `--allowedTools`) each one pattern to the CLI as to the daemon.
fn check_allow(program: Program, allow: &[String]) -> Result<(), SetupError> {
    let total: usize = allow.iter().map(String::len).sum();
    if total > runtime::MAX_ALLOW_BYTES {
        return Err(SetupError::AllowTooLong {
            total,
            max: runtime::MAX_ALLOW_BYTES,
        });
    }
    if program != Program::ClaudeCode {
        return Ok(());
    }
    for pattern in allow {
        if let Some(why) = runtime::claude_code::pattern_problem(pattern) {
            return Err(SetupError::BadAllow {
                pattern: pattern.clone(),
                why: why.to_owned(),
            });
        }
    }
    Ok(())
}

/// A coding agent's working directory: absolute, there, a directory, the
/// user's own.
fn workspace_dir(cwd: Option<&str>) -> Result<PathBuf, SetupError> {
    let bad = |path: &str, why: &str| SetupError::BadCwd {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let Some(cwd) = cwd else {
        return Err(bad(
            "",
            "is missing: a coding agent needs a working directory (`cwd`, --cwd DIR)",
        ));
    };
    let path = Path::new(cwd);
    if !path.is_absolute() {
        return Err(bad(cwd, "is not an absolute path"));
    }
    let meta = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => bad(cwd, "does not exist"),
        _ => bad(cwd, &format!("cannot be read: {error}")),
    })?;
    if !meta.is_dir() {
        return Err(bad(cwd, "is not a directory"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(bad(cwd, "is not owned by the daemon's user"));
    }
    Ok(path.to_path_buf())
}

/// A worker's coding agent: its runtime (and child, while one runs) and
/// the process slot that child holds.
pub(super) struct Held {
    runtime: Box<dyn Runtime>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub fn is_running(&self) -> bool {
        self.runtime.is_running()
    }

    /// Stops the child (TERM, then KILL after a grace) and frees its slot.
    pub async fn stop(&mut self) {
        self.runtime.stop().await;
        self.slot = None;
    }
}

/// Puts a runtime's permission requests to the daemon's approvals, and
/// tells the turn that asked (which tells its caller, in order).
struct EngineApprover {
    approvals: Approvals,
    agent: AgentName,
    timeout: Duration,
    asked: mpsc::UnboundedSender<Approval>,
}

impl Approver for EngineApprover {
    fn ask(&self, request: ApprovalRequest) -> BoxFuture<'static, Verdict> {
        let approvals = self.approvals.clone();
        let agent = self.agent.clone();
        let timeout = self.timeout;
        let asked = self.asked.clone();
        Box::pin(async move {
            approvals
                .ask_notify(&agent, request, timeout, |approval| {
                    let _ = asked.send(approval.clone());
                })
                .await
        })
    }
}

/// One turn of a coding agent: record the human message, run the turn on
/// the agent's runtime (starting a child if none runs), relay and record
/// what happens, and record the reply.
pub(super) async fn exchange(
    engine: &Engine,
    agent: &Agent,
    content: Arc<str>,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
    held: &mut Option<Held>,
) -> Result<Message, EngineError> {
    let history = engine.history_store();
    let name = &agent.config.name;
    let turn = Turn::start(agent);
    let settings = engine.settings();
    let state_dir = history
        .state_dir()
        .join("agents")
        .join(agent.id.to_string());
    // Checked now, so a reload (command, env) applies to the next child,
    // and an agent whose executable went away refuses before recording.
    let (program, spec) =
        agent
            .coding_spec(&settings, state_dir)
            .map_err(|reason| EngineError::Suspended {
                name: name.clone(),
                reason,
            })?;
    // A turn's usage is known only after it: a turn is refused when a
    // budget has nothing left, so it overshoots by one turn at most.
    let payer = super::agent::payer(engine, agent, agent.config.provider.model.as_deref());
    check_turn(engine, program, &payer)?;
    // A turn that needs a child and finds every process slot taken waits
    // in a bounded queue, or is refused before anything is recorded.
    let mut slot = None;
    if held.as_ref().is_none_or(|held| held.slot.is_none()) {
        let waited = tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => Err("the agent was shut down"),
            _ = events.closed() => Err("the client disconnected"),
            _ = turn.token.cancelled() => Err(INTERRUPTED_BY_REQUEST),
            slot = engine.process_slot() => Ok(slot),
        };
        match waited {
            Ok(got) => slot = got?,
            Err(reason) => return Err(EngineError::Interrupted(reason.into())),
        }
    }
    // On disk before the agent hears of it.
    let human = Message::new(HUMAN, content.to_string(), Map::new()).stamped(engine.clock());
    record_human(engine, agent, human).await?;

    // The child holds the agent's key; a command may print it (`env`), and
    // the model may repeat it: it reaches no stream, event or history.
    let redactor = Redactor::of(spec.env.get(program.key_variable()).cloned());
    let mut reply = Reply::default();
    if !held.as_ref().is_some_and(Held::is_running) {
        // A new child takes the settings and the session in effect now.
        match runtime::new(program, spec) {
            Ok(runtime) => {
                *held = Some(Held {
                    runtime,
                    slot: None,
                })
            }
            Err(error) => {
                drop(turn);
                let end = End::Failed(EngineError::Runtime(error));
                return record_reply(engine, agent, reply, end, None).await;
            }
        }
    }
    let Some(held) = held.as_mut() else {
        drop(turn);
        let end = End::Interrupted("the coding agent's runtime is gone".into());
        return record_reply(engine, agent, reply, end, None).await;
    };
    if held.slot.is_none() {
        held.slot = slot;
    }
    let (asked, approvals_asked) = mpsc::unbounded_channel();
    let approver = Arc::new(EngineApprover {
        approvals: engine.approvals().clone(),
        agent: name.clone(),
        timeout: settings.config.agents.approval_timeout,
        asked,
    });
    let max_bytes = settings.config.limits.max_reply_bytes;
    let turn_timeout = settings.config.agents.turn_timeout;
    drop(settings);
    let started = std::time::Instant::now();
    let end = run_turn(
        engine,
        agent,
        held,
        runtime::Turn {
            prompt: content,
            approver,
            interrupt: turn.token.clone(),
        },
        events,
        approvals_asked,
        &mut reply,
        Limits {
            max_bytes,
            turn_timeout,
            redactor,
        },
    )
    .await;
    drop(turn);
    if !held.is_running() {
        held.slot = None;
    }
    // The turn's usage as the coding agent reported it goes in the ledger
    // like an API call's.
    let mut call = usage::Call::new(
        &engine.settings().config,
        &agent.config,
        agent.id,
        agent.config.provider.model.as_deref(),
        &reply.metadata,
        reply.usage,
    )
    .stamped(engine.clock())
    .took(started.elapsed(), None);
    reported_cost(&mut call.record, &reply.metadata);
    // Budgets count what the ledger row says, so a restart (which seeds
    // them from the ledger) counts the same.
    let spent = call.record.clone();
    let recorded = record_reply(engine, agent, reply, end, Some(call)).await;
    let now = engine.now();
    super::agent::warn(agent, engine.budgets().charge(&payer, &spent, now));
    recorded
}

/// Refuses a turn when a budget that applies has nothing left, or counts
/// USD while the turn's cost cannot be known (no price for the model, and
/// a runtime that does not report its cost: Codex).
fn check_turn(
    engine: &Engine,
    program: Program,
    payer: &super::budget::Payer,
) -> Result<(), EngineError> {
    if !engine.budgets().applies(payer) {
        return Ok(());
    }
    let config = &engine.settings().config;
    let priced = usage::price_of(&payer.provider, &payer.model, config).is_some()
        || program == Program::ClaudeCode;
    // The least a turn can spend: one token, one nano-USD.
    let least = super::budget::Worst {
        tokens: 1,
        usd: priced.then_some(1e-9),
    };
    let now = engine.now();
    Ok(engine.budgets().check(payer, &least, now)?)
}

/// A turn's ledger row costed from the cost the coding agent reported
/// (Claude Code's), unless `[prices."MODEL"]` prices the model: the CLI
/// knows what its own models cost better than the daemon's built-in table,
/// whose prefix match prices a newer model (`claude-opus-4-8`) at an older
/// one's list price (`claude-opus-4`, three times as much).
fn reported_cost(record: &mut crate::model::UsageRecord, reply: &Map<String, Value>) {
    if record.price_source == crate::model::PriceSource::Config {
        return;
    }
    let Some(cost) = reply
        .get("cost_usd")
        .and_then(Value::as_f64)
        .filter(|cost| cost.is_finite() && *cost >= 0.0)
    else {
        return;
    };
    record.cost_usd = Some(cost);
    record.price_source = crate::model::PriceSource::Reported;
}

/// Streams one turn of the runtime into `reply`. A shutdown, a departed
/// caller or a full reply interrupts the turn and waits a while for its
/// end; an interrupt by request is the runtime's to finish.
#[allow(clippy::too_many_arguments)]
async fn run_turn(
    engine: &Engine,
    agent: &Agent,
    held: &mut Held,
    turn: runtime::Turn,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
    mut asked: mpsc::UnboundedReceiver<Approval>,
    reply: &mut Reply,
    limits: Limits,
) -> End {
    let mut scrub = Scrub {
        redactor: limits.redactor,
        held: String::new(),
    };
    let end = follow_turn(
        engine,
        agent,
        held,
        turn,
        events,
        &mut asked,
        reply,
        (limits.max_bytes, limits.turn_timeout),
        &mut scrub,
    )
    .await;
    // Text held back in case a key started in it: scrubbed and sent now.
    let rest = scrub.redactor.scrub(&std::mem::take(&mut scrub.held));
    if !rest.is_empty() {
        reply.relay(agent, events, rest);
    }
    end
}

/// What a coding turn's output is held to.
struct Limits {
    max_bytes: usize,
    /// `agents.turn_timeout`: the most the whole turn may take.
    turn_timeout: Duration,
    redactor: Redactor,
}

/// The agent's key scrubbed from the turn's text, and the end of the reply
/// text held back while a key could be starting in it.
struct Scrub {
    redactor: Redactor,
    held: String,
}

impl Scrub {
    /// Scrubs an event; a delta may come out shorter, or not at all yet.
    fn event(&mut self, event: TurnEvent) -> Option<TurnEvent> {
        if self.redactor.is_empty() {
            return Some(event);
        }
        match event {
            TurnEvent::Delta(text) => {
                self.held.push_str(&text);
                self.held = self.redactor.scrub(&self.held);
                let cut = self.redactor.unfinished(&self.held);
                (cut > 0).then(|| TurnEvent::Delta(self.held.drain(..cut).collect()))
            }
            TurnEvent::ToolCall(mut call) => {
                let text = call.input.to_string();
                let clean = self.redactor.scrub(&text);
                if clean != text {
                    call.input = serde_json::from_str(&clean).unwrap_or(Value::String(clean));
                }
                Some(TurnEvent::ToolCall(call))
            }
            TurnEvent::ToolResult(mut result) => {
                result.output = self.redactor.scrub(&result.output);
                Some(TurnEvent::ToolResult(result))
            }
            other => Some(other),
        }
    }

    fn error(&self, error: runtime::RuntimeError) -> runtime::RuntimeError {
        use runtime::RuntimeError;
        match error {
            RuntimeError::Died {
                program,
                status,
                stderr,
            } => RuntimeError::Died {
                program,
                status,
                stderr: self.redactor.scrub(&stderr),
            },
            RuntimeError::Turn(why) => RuntimeError::Turn(self.redactor.scrub(&why)),
            other => other,
        }
    }
}

/// Reads the turn's stream until it ends (see [`run_turn`]); `limits` are
/// the reply's bytes and the turn's time.
#[allow(clippy::too_many_arguments)]
async fn follow_turn(
    engine: &Engine,
    agent: &Agent,
    held: &mut Held,
    turn: runtime::Turn,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
    asked: &mut mpsc::UnboundedReceiver<Approval>,
    reply: &mut Reply,
    (max_bytes, turn_timeout): (usize, Duration),
    scrub: &mut Scrub,
) -> End {
    let interrupt: CancellationToken = turn.interrupt.clone();
    let mut stream = held.runtime.turn(turn);
    // Why the turn was cut short by the daemon, if it was.
    let mut stopping: Option<String> = None;
    let grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace);
    let deadline = tokio::time::sleep(turn_timeout);
    tokio::pin!(deadline);
    let mut finish = None;
    loop {
        let item = tokio::select! {
            biased;
            _ = agent.cancel.cancelled(), if stopping.is_none() => {
                stop(&mut stopping, "the agent was shut down", &interrupt, grace.as_mut());
                continue;
            }
            _ = events.closed(), if stopping.is_none() => {
                stop(&mut stopping, "the client disconnected", &interrupt, grace.as_mut());
                continue;
            }
            // The runtime's own interrupt, as a Ctrl-C: the child stays.
            _ = &mut deadline, if stopping.is_none() => {
                let reason = format!(
                    "the turn took longer than agents.turn_timeout ({})",
                    crate::duration::format(turn_timeout)
                );
                stop(&mut stopping, &reason, &interrupt, grace.as_mut());
                continue;
            }
            _ = &mut grace => break,
            item = stream.next() => item,
            // After the stream: a tool call the runtime reported before it
            // asked reaches the caller (stored first) before the request.
            Some(approval) = asked.recv() => {
                let _ = events.send(ExchangeEvent::Approval(approval));
                continue;
            }
        };
        match item {
            None => break,
            Some(Err(error)) => return End::Failed(EngineError::Runtime(scrub.error(error))),
            Some(Ok(TurnEvent::Finish(reason))) => {
                finish = Some(reason);
            }
            Some(Ok(event)) => {
                let Some(event) = scrub.event(event) else {
                    continue;
                };
                if let Err(error) = apply(engine, agent, event, events, reply).await {
                    stop(
                        &mut stopping,
                        "the store failed",
                        &interrupt,
                        grace.as_mut(),
                    );
                    drop(stream);
                    return End::Failed(error);
                }
                if reply.text.len() >= max_bytes && stopping.is_none() {
                    let reason = format!(
                        "the reply reached limits.max_reply_bytes ({})",
                        crate::providers::http::bytes_text(max_bytes)
                    );
                    stop(&mut stopping, &reason, &interrupt, grace.as_mut());
                }
            }
        }
    }
    if let Some(reason) = stopping {
        return End::Interrupted(reason);
    }
    match finish.as_deref() {
        Some("interrupted") => End::Interrupted(INTERRUPTED_BY_REQUEST.into()),
        Some(reason) => {
            reply
                .metadata
                .insert("finish_reason".into(), Value::from(reason));
            End::Complete
        }
        // The stream ended without its last event: the runtime broke its contract.
        None => End::Interrupted("the coding agent ended the turn without finishing it".into()),
    }
}

/// Cuts the turn short for `reason`: the runtime is asked to interrupt, and
/// given [`STOP_GRACE`] to end the turn.
fn stop(
    stopping: &mut Option<String>,
    reason: &str,
    interrupt: &CancellationToken,
    grace: std::pin::Pin<&mut tokio::time::Sleep>,
) {
    *stopping = Some(reason.to_owned());
    interrupt.cancel();
    grace.reset(tokio::time::Instant::now() + STOP_GRACE);
}

/// One event of the turn: text relayed, tool activity recorded then
/// relayed, usage and facts kept for the reply, the session stored.
async fn apply(
    engine: &Engine,
    agent: &Agent,
    event: TurnEvent,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
    reply: &mut Reply,
) -> Result<(), EngineError> {
    let name = &agent.config.name;
    let history = engine.history_store();
    match event {
        TurnEvent::Delta(text) => reply.relay(agent, events, text),
        TurnEvent::ToolCall(call) => {
            let message = call.to_message(name.as_str()).stamped(engine.clock());
            history.append(name, agent.id, &message, None).await?;
            agent
                .events
                .emit_with(Some(name), || Event::ToolCall { call: call.clone() });
            let _ = events.send(ExchangeEvent::ToolCall(call));
        }
        TurnEvent::ToolResult(mut result) => {
            let cut = cut(&mut result.output, MAX_TOOL_OUTPUT);
            let mut message = result.to_message(name.as_str()).stamped(engine.clock());
            if cut {
                message
                    .metadata
                    .insert("truncated".into(), Value::Bool(true));
            }
            history.append(name, agent.id, &message, None).await?;
            agent.events.emit_with(Some(name), || Event::ToolResult {
                result: result.clone(),
            });
            let _ = events.send(ExchangeEvent::ToolResult(result));
        }
        TurnEvent::Usage(usage) => match reply.usage.as_mut() {
            Some(total) => total.add(usage),
            None => reply.usage = Some(usage),
        },
        TurnEvent::Session(session) => remember_session(engine, agent, session).await,
        TurnEvent::Metadata(facts) => reply.metadata.extend(facts),
        TurnEvent::Finish(_) => {}
    }
    Ok(())
}

/// Stores a session id the agent reported, if it is new, so the next child
/// (after a restart too) resumes it.
async fn remember_session(engine: &Engine, agent: &Agent, session: String) {
    if lock(&agent.session).as_ref() == Some(&session) {
        return;
    }
    match engine.history_store().set_session(agent.id, &session).await {
        Ok(()) => *lock(&agent.session) = Some(session),
        Err(error) => {
            tracing::error!(agent = %agent.config.name, %error, "cannot store the coding agent's session id; a restart would start a new session");
        }
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary; true if it cut.
fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}
