//! One live agent: its config, its provider, its state, and the worker that
//! handles its messages one at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::coding::{self, Held};
use super::{Engine, EngineError, Events, History, budget, lock, tool_loop, usage};
use crate::model::{
    AgentConfig, AgentInfo, AgentState, Approval, Event, HUMAN, Message, ProviderSpec, Secret,
    ToolCall, ToolResult, Usage,
};
use crate::providers::http::bytes_text;
use crate::providers::{
    self, ChatRequest, ProviderError, ProviderEvent, ProviderSettings, Setup, SetupError,
};
use crate::runtime::Program;

/// What the caller of a message sees, in order: deltas, then one final event.
#[derive(Debug)]
pub enum ExchangeEvent {
    /// The message waits behind this many others; 0: it is being sent now.
    /// Only for a message that had to wait.
    Queued(usize),
    Delta(String),
    /// A coding agent's tool call, already recorded in history.
    ToolCall(ToolCall),
    /// A tool call's result, already recorded in history.
    ToolResult(ToolResult),
    /// A tool call waits for a person's answer (`approve ID` / `deny ID`).
    Approval(Approval),
    /// The finished reply, already recorded in history.
    Reply(Message),
    Failed(EngineError),
}

/// The receiving end of one exchange. Dropping it tells the worker the
/// caller has gone, which cancels the exchange.
pub struct Exchange {
    events: mpsc::UnboundedReceiver<ExchangeEvent>,
    agent: super::AgentName,
}

impl Exchange {
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<ExchangeEvent> {
        self.events.poll_recv(cx).map(|event| {
            event.unwrap_or_else(|| {
                ExchangeEvent::Failed(EngineError::AgentGone(self.agent.clone()))
            })
        })
    }

    pub async fn next_event(&mut self) -> ExchangeEvent {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Waits for the whole reply.
    pub async fn reply(mut self) -> Result<Message, EngineError> {
        loop {
            match self.next_event().await {
                ExchangeEvent::Queued(_)
                | ExchangeEvent::Delta(_)
                | ExchangeEvent::ToolCall(_)
                | ExchangeEvent::ToolResult(_)
                | ExchangeEvent::Approval(_) => continue,
                ExchangeEvent::Reply(message) => return Ok(message),
                ExchangeEvent::Failed(error) => return Err(error),
            }
        }
    }
}

/// How many messages may wait in one agent's queue before new ones are refused.
pub(super) const QUEUE_DEPTH: usize = 256;

/// An agent's worker, from its first message to its end.
enum Worker {
    NotStarted,
    Running {
        jobs: mpsc::Sender<Job>,
        handle: JoinHandle<()>,
    },
    Stopped,
}

/// What [`Agent::take_worker`] found.
pub(super) enum Stopping {
    /// A worker to wait for; it records the agent's end itself.
    Running(JoinHandle<()>),
    /// No message ever came: the caller records the end.
    NeverStarted,
    /// Stopped already.
    Done,
}

pub(super) struct Job {
    /// Shared, not copied: a fan-out queues one prompt for many agents.
    content: Arc<str>,
    events: mpsc::UnboundedSender<ExchangeEvent>,
    /// It had to wait behind others, and its caller was told so.
    queued: bool,
}

struct Status {
    state: AgentState,
    usage: Usage,
    /// Why the agent is `Suspended`.
    reason: Option<String>,
}

/// Who an agent is: kept across daemon restarts.
pub(super) struct Identity {
    pub id: Uuid,
    pub created_at: String,
    pub usage: Usage,
}

pub(super) struct Agent {
    pub id: Uuid,
    pub config: AgentConfig,
    created_at: String,
    /// A key a message brought for an agent spawned without one of its own
    /// (kept in memory only: the next start asks again).
    brought_key: Mutex<Option<Secret>>,
    status: Mutex<Status>,
    pub(super) cancel: CancellationToken,
    /// The turn running now, if any: cancelling it stops that turn only
    /// (`POST /agents/{name}/interrupt`); messages queued behind it run next.
    turn: Mutex<Option<CancellationToken>>,
    /// Started by the first message, not at spawn or restore: an agent
    /// that is never spoken to costs no task and no queue.
    worker: Mutex<Worker>,
    /// A `task` agent: removed from the registry after its one exchange.
    ephemeral: bool,
    /// Stopped for the daemon's exit, not ended: it comes back on restart.
    kept_for_restart: AtomicBool,
    /// Where its state changes, messages and deltas are reported.
    pub(super) events: Events,
    /// Messages taken and not yet answered, the one in progress included:
    /// how many a new message waits behind.
    unanswered: std::sync::atomic::AtomicUsize,
    /// The coding agent it runs, if it is one (else it calls a model).
    pub coding: Option<Program>,
    /// A coding agent's session id: the stored one, then what it reports.
    pub session: Mutex<Option<String>>,
}

impl Agent {
    pub fn new(config: AgentConfig, identity: Identity, ephemeral: bool, events: Events) -> Self {
        let coding = coding::program(&config);
        let session = Mutex::new(config.workspace.session.clone());
        Self {
            coding,
            session,
            id: identity.id,
            config,
            created_at: identity.created_at,
            brought_key: Mutex::new(None),
            status: Mutex::new(Status {
                state: AgentState::Idle,
                usage: identity.usage,
                reason: None,
            }),
            cancel: CancellationToken::new(),
            turn: Mutex::new(None),
            worker: Mutex::new(Worker::NotStarted),
            ephemeral,
            kept_for_restart: AtomicBool::new(false),
            events,
            unanswered: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// What the API shows; provider and model as the settings in effect
    /// resolve them (a profile's default model can change with a reload).
    pub fn info(&self, history: &History, settings: &ProviderSettings) -> AgentInfo {
        let (provider, model) =
            providers::endpoint::summary(&self.config.provider, &settings.config);
        let status = lock(&self.status);
        AgentInfo {
            name: self.config.name.clone(),
            agent_type: self.config.agent_type.clone(),
            provider: provider.to_owned(),
            state: status.state,
            id: self.id,
            profile: self.config.provider.profile.clone(),
            model,
            created_at: self.created_at.clone(),
            message_count: history.len(&self.config.name, self.id),
            usage: status.usage,
            reason: status.reason.clone(),
            cwd: self.config.workspace.cwd.clone(),
            tools: self.config.workspace.tools.clone(),
            queued: self.waiting().saturating_sub(1),
            budget: self.config.budget.map(|budget| budget.to_string()),
        }
    }

    /// The spawn's provider spec, with a key a message brought if it had none.
    pub(super) fn spec(&self) -> ProviderSpec {
        let mut spec = self.config.provider.clone();
        if spec.api_key.is_none() {
            spec.api_key = lock(&self.brought_key).clone();
        }
        spec
    }

    /// Keeps a key a message brought, if the agent was spawned without one.
    pub fn bring_key(&self, key: Secret) {
        if self.config.provider.api_key.is_none() && !key.expose().is_empty() {
            *lock(&self.brought_key) = Some(key);
        }
    }

    /// Builds the provider for the next call from the settings in effect
    /// now: a profile's endpoint, default model and key are looked up here,
    /// so a reload applies to the next message. An agent that cannot be set
    /// up is `Suspended` with the reason; one that can again is revived.
    pub fn setup(&self, settings: &ProviderSettings) -> Result<Setup, SetupError> {
        self.settle(providers::build(&self.spec(), settings))
    }

    /// Whether the agent can run with the settings in effect (suspending or
    /// reviving it as [`Self::setup`] does): an API agent's provider can be
    /// built, a coding agent's executable and directory are there.
    pub fn check(&self, settings: &ProviderSettings) -> Result<(), SetupError> {
        match self.coding {
            Some(_) => self
                .coding_spec(settings, std::path::PathBuf::new())
                .map(drop),
            None => self.setup(settings).map(drop),
        }
    }

    /// A coding agent's runtime spec from the settings in effect, its
    /// session included; suspends or revives the agent as [`Self::setup`].
    pub fn coding_spec(
        &self,
        settings: &ProviderSettings,
        state_dir: std::path::PathBuf,
    ) -> Result<(Program, crate::runtime::Spec), SetupError> {
        let session = lock(&self.session).clone();
        let mut config = self.config.clone();
        config.provider = self.spec();
        self.settle(coding::spec(&config, settings, session, state_dir))
    }

    /// Suspends the agent for a setup that failed, revives it for one that
    /// worked, and reports either change.
    fn settle<T>(&self, result: Result<T, SetupError>) -> Result<T, SetupError> {
        let mut status = lock(&self.status);
        let old = status.state;
        let event = match &result {
            Ok(_) if status.state == AgentState::Suspended => {
                status.state = AgentState::Idle;
                status.reason = None;
                tracing::info!(agent = %self.config.name, "agent restored: it can reach its model again");
                Some(Event::Restored)
            }
            Err(error) => {
                let reason = error.to_string();
                if status.reason.as_ref() == Some(&reason) {
                    None
                } else {
                    status.state = AgentState::Suspended;
                    status.reason = Some(reason.clone());
                    tracing::warn!(agent = %self.config.name, %reason, "agent suspended");
                    Some(Event::Suspended { reason })
                }
            }
            _ => None,
        };
        let new = status.state;
        drop(status);
        self.report_state(old, new);
        if let Some(event) = event {
            self.emit(event);
        }
        result
    }

    /// Queues a message, starting the worker if this is the first.
    pub fn enqueue(
        self: &Arc<Self>,
        engine: &Engine,
        content: Arc<str>,
    ) -> Result<Exchange, EngineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut worker = lock(&self.worker);
        // Counted under the worker lock, so two callers never see the same position.
        let ahead = self.unanswered.load(Ordering::SeqCst);
        if ahead > 0 {
            let _ = tx.send(ExchangeEvent::Queued(ahead));
        }
        let job = Job {
            content,
            events: tx,
            queued: ahead > 0,
        };
        if let Worker::NotStarted = *worker {
            let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
            let handle = tokio::spawn(run_worker(engine.clone(), self.clone(), queue));
            *worker = Worker::Running { jobs, handle };
        }
        let Worker::Running { jobs, .. } = &*worker else {
            return Err(EngineError::AgentGone(self.config.name.clone()));
        };
        jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => EngineError::QueueFull(self.config.name.clone()),
            mpsc::error::TrySendError::Closed(_) => {
                EngineError::AgentGone(self.config.name.clone())
            }
        })?;
        self.unanswered.fetch_add(1, Ordering::SeqCst);
        Ok(Exchange {
            events: rx,
            agent: self.config.name.clone(),
        })
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops the turn running now, if any; true if there was one still
    /// running. Messages queued behind it are not touched.
    pub fn interrupt(&self) -> bool {
        let Some(turn) = lock(&self.turn).clone() else {
            return false;
        };
        let running = !turn.is_cancelled();
        turn.cancel();
        running
    }

    /// Marks the agent to survive its worker's end (daemon exit), then stops it.
    pub fn keep_for_restart(&self) {
        if !self.ephemeral {
            self.kept_for_restart.store(true, Ordering::SeqCst);
        }
        self.cancel();
    }

    pub fn is_kept_for_restart(&self) -> bool {
        self.kept_for_restart.load(Ordering::SeqCst)
    }

    /// Marks the worker stopped (no message is taken from now on) and
    /// says what there was to stop.
    pub fn take_worker(&self) -> Stopping {
        match std::mem::replace(&mut *lock(&self.worker), Worker::Stopped) {
            Worker::NotStarted => Stopping::NeverStarted,
            Worker::Running { handle, .. } => Stopping::Running(handle),
            Worker::Stopped => Stopping::Done,
        }
    }

    /// A new state after an exchange; a suspension noticed meanwhile stays.
    pub(super) fn set_state(&self, state: AgentState) {
        let mut status = lock(&self.status);
        let old = status.state;
        if status.state != AgentState::Suspended || state == AgentState::Terminated {
            status.state = state;
        }
        let new = status.state;
        drop(status);
        self.report_state(old, new);
    }

    pub fn state(&self) -> AgentState {
        lock(&self.status).state
    }

    /// Messages taken and not yet answered, the one in progress included.
    pub fn waiting(&self) -> usize {
        self.unanswered.load(Ordering::SeqCst)
    }

    /// Adds a provider call's usage to the agent's totals (recorded already).
    pub(super) fn add_usage(&self, usage: Usage) {
        lock(&self.status).usage.add(usage);
    }

    /// Reports an event about this agent.
    pub fn emit(&self, event: Event) {
        self.events.emit(Some(&self.config.name), event);
    }

    fn report_state(&self, old: AgentState, new: AgentState) {
        if old != new {
            self.emit(Event::State { old, new });
        }
    }
}

/// The agent's worker: takes jobs in arrival order until the agent is shut
/// down, then refuses whatever is still queued.
pub(super) async fn run_worker(engine: Engine, agent: Arc<Agent>, mut jobs: mpsc::Receiver<Job>) {
    // A coding agent's runtime and its child, kept between turns.
    let mut held: Option<Held> = None;
    loop {
        let running = held.as_ref().is_some_and(Held::is_running);
        let idle_timeout = engine.settings().config.agents.idle_timeout;
        let job = tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => break,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
            // No turn for a while: the child goes, the session stays.
            _ = tokio::time::sleep(idle_timeout), if running => {
                if let Some(held) = held.as_mut() {
                    tracing::info!(agent = %agent.config.name, "coding agent idle; its child stops until the next message");
                    held.stop().await;
                }
                continue;
            }
        };
        let prompt_bytes = job.content.len();
        if job.queued {
            let _ = job.events.send(ExchangeEvent::Queued(0));
        }
        // A caller that left while its message waited gets nothing run for it.
        let result = if job.events.is_closed() {
            Err(EngineError::Interrupted("the client disconnected".into()))
        } else {
            // Boxed: an idle worker then holds only this loop's state, not
            // room for a whole exchange, which matters with 10,000 agents.
            match agent.coding {
                Some(_) => {
                    Box::pin(coding::exchange(
                        &engine,
                        &agent,
                        job.content,
                        &job.events,
                        &mut held,
                    ))
                    .await
                }
                None => Box::pin(exchange(&engine, &agent, job.content, &job.events)).await,
            }
        };
        if agent.ephemeral {
            // Deregister before answering, so a caller that sees the reply
            // never finds the task agent still listed.
            engine.deregister(&agent);
        }
        let last = match result {
            Ok(message) => ExchangeEvent::Reply(message),
            Err(error) => ExchangeEvent::Failed(error),
        };
        let _ = job.events.send(last);
        engine.settle(prompt_bytes);
        agent.unanswered.fetch_sub(1, Ordering::SeqCst);
        if agent.ephemeral {
            break;
        }
    }
    if let Some(mut held) = held {
        held.stop().await;
    }
    finish(&engine, &agent).await;
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job
            .events
            .send(ExchangeEvent::Failed(EngineError::AgentGone(
                agent.config.name.clone(),
            )));
    }
}

/// The end of an agent's life: terminated, its end recorded unless it is
/// only stopped for the daemon's exit, and reported.
pub(super) async fn finish(engine: &Engine, agent: &Agent) {
    agent.set_state(AgentState::Terminated);
    engine.budgets().remove_agent(agent.id);
    if !agent.is_kept_for_restart() {
        engine.record_end(agent).await;
    }
    agent.emit(Event::Shutdown {
        restart: agent.is_kept_for_restart(),
    });
}

/// Why a turn stopped when it was interrupted by request.
pub(super) const INTERRUPTED_BY_REQUEST: &str = "interrupted by request";

/// The running turn's handle, published in `Agent::turn` for as long as
/// the exchange runs; dropping it (however the exchange ends) clears it.
pub(super) struct Turn<'a> {
    agent: &'a Agent,
    pub token: CancellationToken,
}

impl<'a> Turn<'a> {
    pub fn start(agent: &'a Agent) -> Self {
        let token = CancellationToken::new();
        *lock(&agent.turn) = Some(token.clone());
        Self { agent, token }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *lock(&self.agent.turn) = None;
    }
}

/// How an exchange's stream ended.
pub(super) enum End {
    Complete,
    /// Cut short (the caller left, the agent was shut down, a limit was
    /// reached): what arrived is kept, marked interrupted with the reason.
    Interrupted(String),
    /// The model server or the coding agent failed the turn.
    Failed(EngineError),
    /// The call was refused before it was made (a budget had no room):
    /// nothing to record, and the agent stays idle.
    Refused(EngineError),
}

/// The reply as it builds up from provider events.
#[derive(Default)]
pub(super) struct Reply {
    pub text: String,
    pub metadata: Map<String, Value>,
    pub usage: Option<Usage>,
    /// The tools the model asked for in this call, in order.
    pub calls: Vec<ToolCall>,
}

/// Writes a turn's human message, then shows it to the watchers and marks
/// the agent busy: an API exchange and a coding turn begin alike.
pub(super) async fn record_human(
    engine: &Engine,
    agent: &Agent,
    human: Message,
) -> Result<(), EngineError> {
    // A copy for the event stream only when someone watches: a message may be 1 MiB.
    let watched = agent.events.is_watched().then(|| human.clone());
    engine
        .history_store()
        .append(&agent.config.name, agent.id, &human, None)
        .await?;
    if let Some(message) = watched {
        agent.emit(Event::Message { message });
    }
    agent.set_state(AgentState::Processing);
    Ok(())
}

/// One exchange: record the human message, stream the provider's reply to
/// the caller, record the reply (partial ones marked interrupted).
async fn exchange(
    engine: &Engine,
    agent: &Agent,
    content: Arc<str>,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
) -> Result<Message, EngineError> {
    let history = engine.history_store();
    let name = &agent.config.name;
    let turn = Turn::start(agent);
    // Resolved now, so a reload since the last message applies; an agent
    // that cannot reach its model refuses before anything is recorded.
    let setup = agent
        .setup(&engine.settings())
        .map_err(|reason| EngineError::Suspended {
            name: name.clone(),
            reason,
        })?;
    // Room for the prompt among the bytes all exchanges hold at once, so
    // a fan-out of large prompts runs a few at a time, not all together.
    let _bytes = tokio::select! {
        biased;
        _ = agent.cancel.cancelled() => {
            return Err(EngineError::Interrupted("the agent was shut down".into()));
        }
        _ = events.closed() => {
            return Err(EngineError::Interrupted("the client disconnected".into()));
        }
        _ = turn.token.cancelled() => {
            return Err(EngineError::Interrupted(INTERRUPTED_BY_REQUEST.into()));
        }
        permit = engine.bytes_in_flight(content.len()) => permit,
    };
    // A call no budget could fit any more is refused before anything is recorded.
    check_budgets(engine, agent, &setup, &content)?;
    // On disk before the provider hears of it.
    let human = Message::new(HUMAN, content.to_string(), Map::new()).stamped(engine.clock());
    drop(content);
    record_human(engine, agent, human).await?;

    // The agent's tools, its servers started if need be; a server that
    // cannot start fails the turn, its message kept.
    let toolbox = match tool_loop::Toolbox::offer(engine, agent, events, &turn.token).await {
        Ok(toolbox) => toolbox,
        Err(end) => {
            drop(turn);
            return record_reply(engine, agent, Reply::default(), end, None).await;
        }
    };
    let settings = engine.settings();
    let instructions = agent.config.instructions.clone();
    // The window, less what the instructions take: they are always sent.
    let window = context_bytes(setup.context_limit)
        .saturating_sub(instructions.as_ref().map_or(0, String::len));
    let request = ChatRequest {
        model: setup.model.clone(),
        instructions,
        turns: history.context(agent.id, window)?,
        max_output_tokens: None,
        tools: toolbox.defs(),
        rounds: Vec::new(),
    };
    let limits = ReplyLimits {
        max_bytes: settings.config.limits.max_reply_bytes,
        turn_timeout: settings.config.providers.turn_timeout,
    };
    drop(settings);
    let mut reply = Reply::default();
    let model = Model {
        engine,
        agent,
        setup: &setup,
        events,
        turn: &turn.token,
        limits: &limits,
    };
    let (end, call) = if toolbox.is_empty() {
        model.call(request, &mut reply).await
    } else {
        tool_loop::run(&model, &toolbox, request, &mut reply).await
    };
    // The turn is over: an interrupt from now on finds nothing to stop.
    drop(turn);
    record_reply(engine, agent, reply, end, call).await
}

/// The budgets' view of the agent's calls to `model`.
pub(super) fn payer(engine: &Engine, agent: &Agent, model: Option<&str>) -> budget::Payer {
    let config = &engine.settings().config;
    let (provider, _) = providers::endpoint::summary(&agent.config.provider, config);
    budget::Payer {
        agent: agent.config.name.clone(),
        id: agent.id,
        profile: agent
            .config
            .provider
            .profile
            .clone()
            .unwrap_or_else(|| provider.to_owned()),
        provider: provider.to_owned(),
        model: model.unwrap_or(provider).to_owned(),
    }
}

/// The worst case of a call of `input_tokens` estimated input and
/// `output_tokens` of output bound, at the model's price if known.
pub(super) fn worst_case(
    engine: &Engine,
    payer: &budget::Payer,
    input_tokens: u64,
    output_tokens: u64,
) -> budget::Worst {
    let config = &engine.settings().config;
    let price = usage::price_of(&payer.provider, &payer.model, config);
    budget::Worst::of(input_tokens, output_tokens, price.map(|(price, _)| price))
}

/// Tokens estimated from bytes of text: four a token, rounded up.
fn estimated_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The output bound of a call a budget applies to.
fn output_bound(engine: &Engine) -> u32 {
    engine.settings().config.providers.budget_max_tokens
}

/// Who pays for the agent's next call, when some budget applies to it;
/// None lets the call through unbudgeted.
fn budgeted_payer(engine: &Engine, agent: &Agent, setup: &Setup) -> Option<budget::Payer> {
    let payer = payer(engine, agent, setup.model.as_deref());
    engine.budgets().applies(&payer).then_some(payer)
}

/// Refuses a message no budget that applies could fit: the call would
/// send at least the instructions and the message.
fn check_budgets(
    engine: &Engine,
    agent: &Agent,
    setup: &Setup,
    content: &str,
) -> Result<(), EngineError> {
    let Some(payer) = budgeted_payer(engine, agent, setup) else {
        return Ok(());
    };
    let instructions = agent.config.instructions.as_ref().map_or(0, String::len);
    let input = estimated_tokens(instructions + content.len());
    let least = worst_case(engine, &payer, input, output_bound(engine).into());
    let now = engine.now();
    Ok(engine.budgets().check(&payer, &least, now)?)
}

/// Holds the call's worst case against every budget that applies to it:
/// its estimated input, and its output bound, which `request` is given
/// when any does. Refused if one lacks the room.
fn reserve_budgets(
    engine: &Engine,
    agent: &Agent,
    setup: &Setup,
    request: &mut ChatRequest,
) -> Result<Option<budget::Hold>, EngineError> {
    let Some(payer) = budgeted_payer(engine, agent, setup) else {
        return Ok(None);
    };
    let bound = output_bound(engine);
    let bound = request
        .max_output_tokens
        .map_or(bound, |asked| asked.min(bound));
    request.max_output_tokens = Some(bound);
    let input = estimated_tokens(request_bytes(request));
    let worst = worst_case(engine, &payer, input, bound.into());
    let now = engine.now();
    Ok(engine.budgets().reserve(&payer, &worst, now)?)
}

/// The bytes of text a request sends: instructions, turns, tool rounds.
fn request_bytes(request: &ChatRequest) -> usize {
    let instructions = request.instructions.as_ref().map_or(0, String::len);
    let turns: usize = request.turns.iter().map(|turn| turn.content.len()).sum();
    let rounds: usize = request
        .rounds
        .iter()
        .map(|round| {
            let calls: usize = round
                .calls
                .iter()
                .map(|call| call.name.len() + call.input.to_string().len())
                .sum();
            let results: usize = round.results.iter().map(|r| r.output.len()).sum();
            round.text.len() + calls + results
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|tool| {
            tool.qualified().len() + tool.description.len() + tool.input_schema.to_string().len()
        })
        .sum();
    instructions + turns + rounds + tools
}

/// Reports each budget warning as an event about the agent whose call crossed it.
pub(super) fn warn(agent: &Agent, warnings: Vec<Event>) {
    for warning in warnings {
        agent.emit(warning);
    }
}

/// What every model call of one turn shares.
pub(super) struct Model<'a> {
    pub engine: &'a Engine,
    pub agent: &'a Agent,
    pub setup: &'a Setup,
    pub events: &'a mpsc::UnboundedSender<ExchangeEvent>,
    pub turn: &'a CancellationToken,
    pub limits: &'a ReplyLimits,
}

impl Model<'_> {
    /// One provider call: waits for a provider-call slot (not past a cancel
    /// or a departed client) and streams the reply into `reply`. Every
    /// model call a turn makes, each round of a tool loop too, goes
    /// through here; the call's ledger row comes back with how it ended
    /// (none if it never started).
    pub async fn call(
        &self,
        request: ChatRequest,
        reply: &mut Reply,
    ) -> (End, Option<usage::Call>) {
        let (agent, events) = (self.agent, self.events);
        let slot = tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => Err("the agent was shut down"),
            _ = events.closed() => Err("the client disconnected"),
            _ = self.turn.cancelled() => Err(INTERRUPTED_BY_REQUEST),
            slot = self.engine.provider_slot() => Ok(slot),
        };
        let _slot = match slot {
            Ok(slot) => slot,
            Err(reason) => return (End::Interrupted(reason.into()), None),
        };
        // The call's worst case, held against its budgets until it is
        // settled below: every round of a tool loop is reserved on its own.
        let mut request = request;
        let hold = match reserve_budgets(self.engine, agent, self.setup, &mut request) {
            Ok(hold) => hold,
            Err(refused) => return (End::Refused(refused), None),
        };
        // When the provider call began, for its duration and the ledger.
        let started = std::time::Instant::now();
        let end = stream_reply(
            agent,
            self.setup,
            request,
            reply,
            events,
            self.turn,
            self.limits,
        )
        .await;
        let call = call_of(self.engine, agent, self.setup, reply, &end, started);
        // Settled with what the ledger row says the call spent, whether or
        // not the row then commits: the provider was paid either way.
        if let Some(hold) = hold {
            warn(agent, hold.settle(&call.record, self.engine.now()));
        }
        (end, Some(call))
    }
}

/// Records the reply of an exchange that ended with `end` (a cut-short one
/// marked interrupted, and only if it said something), then acknowledges
/// it: on disk before the caller hears of it.
pub(super) async fn record_reply(
    engine: &Engine,
    agent: &Agent,
    mut reply: Reply,
    end: End,
    call: Option<usage::Call>,
) -> Result<Message, EngineError> {
    let history = engine.history_store();
    let name = &agent.config.name;
    if let Some(usage) = reply.usage {
        reply.metadata.insert(
            "usage".into(),
            serde_json::to_value(usage).unwrap_or_default(),
        );
    }
    let (state, outcome) = match end {
        End::Complete => (AgentState::Idle, Ok(())),
        End::Interrupted(reason) => {
            mark_interrupted(&mut reply.metadata, &reason);
            // Stopped on request, with something said: the caller gets what
            // arrived as its reply. Anything else cut short is an error.
            let asked = reason == INTERRUPTED_BY_REQUEST && !reply.text.is_empty();
            let outcome = if asked {
                Ok(())
            } else {
                Err(EngineError::Interrupted(reason))
            };
            (AgentState::Idle, outcome)
        }
        End::Failed(error) => {
            mark_interrupted(&mut reply.metadata, &error.to_string());
            (AgentState::Failed, Err(error))
        }
        End::Refused(error) => (AgentState::Idle, Err(error)),
    };
    let message = Message::new(name.as_str(), reply.text, reply.metadata).stamped(engine.clock());
    // A complete reply is always recorded; a cut-short one only if it said
    // something. On disk before the caller is answered.
    if outcome.is_ok() || !message.content.is_empty() {
        let record = call.as_ref().map(|call| call.record.clone());
        let appended = history
            .append_call(name, agent.id, &message, reply.usage, record)
            .await;
        if let Some(call) = &call {
            engine.meter().observe(call, appended.is_ok());
        }
        if let Err(error) = appended {
            agent.set_state(AgentState::Failed);
            return Err(error.into());
        }
        if let Some(usage) = reply.usage {
            lock(&agent.status).usage.add(usage);
        }
        agent.events.emit_with(Some(name), || Event::Message {
            message: message.clone(),
        });
        if let Some(usage) = reply.usage {
            agent.emit(Event::Usage { usage });
        }
    } else if let Some(call) = &call {
        // Nothing was recorded: only the call's time counts.
        engine.meter().observe(call, false);
    }
    agent.set_state(state);
    tracing::debug!(agent = %name, state = %state, "exchange finished");
    outcome.map(|()| message)
}

/// The provider call an exchange made, for the ledger and the metrics.
fn call_of(
    engine: &Engine,
    agent: &Agent,
    setup: &Setup,
    reply: &Reply,
    end: &End,
    started: std::time::Instant,
) -> usage::Call {
    let failure = match end {
        End::Failed(EngineError::Provider(error)) => Some(error),
        _ => None,
    };
    usage::Call::new(
        &engine.settings().config,
        &agent.config,
        agent.id,
        setup.model.as_deref(),
        &reply.metadata,
        reply.usage,
    )
    .stamped(engine.clock())
    .took(started.elapsed(), failure)
}

/// What one reply may take: `limits.max_reply_bytes` of text and
/// `providers.turn_timeout` of time.
pub(super) struct ReplyLimits {
    max_bytes: usize,
    turn_timeout: std::time::Duration,
}

/// A context window in tokens as bytes of text (a token is about four bytes).
fn context_bytes(tokens: u64) -> usize {
    usize::try_from(tokens.saturating_mul(4)).unwrap_or(usize::MAX)
}

/// Streams the provider's reply into `reply`, relaying deltas to the caller,
/// until it ends, fails, reaches a limit, is interrupted by request, or the
/// agent or the caller goes away. Returning drops the stream, which cancels
/// the upstream request if still running.
async fn stream_reply(
    agent: &Agent,
    setup: &Setup,
    request: ChatRequest,
    reply: &mut Reply,
    events: &mpsc::UnboundedSender<ExchangeEvent>,
    turn: &CancellationToken,
    limits: &ReplyLimits,
) -> End {
    let mut stream = setup.provider.stream(request);
    let deadline = tokio::time::sleep(limits.turn_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => break End::Interrupted("the agent was shut down".into()),
            _ = events.closed() => break End::Interrupted("the client disconnected".into()),
            _ = turn.cancelled() => break End::Interrupted(INTERRUPTED_BY_REQUEST.into()),
            _ = &mut deadline => break End::Interrupted(format!(
                "the reply took longer than providers.turn_timeout ({})",
                crate::duration::format(limits.turn_timeout)
            )),
            item = stream.next() => match item {
                None => break End::Complete,
                Some(Ok(event)) => {
                    if reply.apply(agent, event, events, limits.max_bytes) {
                        break End::Interrupted(format!(
                            "the reply reached limits.max_reply_bytes ({}); the rest was not read",
                            bytes_text(limits.max_bytes)
                        ));
                    }
                }
                Some(Err(ProviderError::Limit(reason))) => break End::Interrupted(reason),
                Some(Err(error)) => break End::Failed(EngineError::Provider(error)),
            },
        }
    }
}

impl Reply {
    /// Reply text: added to the reply, sent to the caller and the watchers.
    /// A caller that went away is noticed by whoever drives the turn.
    pub(super) fn relay(
        &mut self,
        agent: &Agent,
        events: &mpsc::UnboundedSender<ExchangeEvent>,
        text: String,
    ) {
        self.text.push_str(&text);
        agent
            .events
            .emit_with(Some(&agent.config.name), || Event::Delta {
                content: text.clone(),
            });
        let _ = events.send(ExchangeEvent::Delta(text));
    }

    /// Adds one provider event to the reply; true when the text has reached
    /// `max_bytes` (the text is cut there, at a character boundary).
    fn apply(
        &mut self,
        agent: &Agent,
        event: ProviderEvent,
        events: &mpsc::UnboundedSender<ExchangeEvent>,
        max_bytes: usize,
    ) -> bool {
        match event {
            ProviderEvent::Delta(mut text) => {
                let room = max_bytes.saturating_sub(self.text.len());
                let full = text.len() > room;
                if full {
                    let mut cut = room;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                // A closed channel is noticed by the select loop next turn.
                self.relay(agent, events, text);
                return full;
            }
            ProviderEvent::Usage(usage) => self.usage = Some(usage),
            ProviderEvent::Finish(reason) => {
                self.metadata
                    .insert("finish_reason".into(), Value::from(reason));
            }
            ProviderEvent::Metadata(facts) => self.metadata.extend(facts),
            // Run by the tool loop once the reply is complete; ignored
            // when no tools were offered.
            ProviderEvent::ToolCall(call) => self.calls.push(call),
        }
        false
    }
}

pub(super) fn mark_interrupted(metadata: &mut Map<String, Value>, reason: &str) {
    metadata.insert("interrupted".into(), Value::Bool(true));
    metadata.insert("interrupted_reason".into(), Value::from(reason));
}
