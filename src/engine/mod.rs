//! The engine: the registry of live agents, their per-agent work queues, and
//! the history every conversation is kept in.
//!
//! Each agent has one worker task that takes messages from its queue one at
//! a time, in arrival order; different agents' workers run concurrently.
//! Callers get the reply as a stream of [`ExchangeEvent`]s; dropping that
//! stream cancels the exchange, and its partial reply is kept, marked
//! interrupted.

mod agent;
mod approvals;
pub mod budget;
mod coding;
mod context;
mod events;
mod history;
mod registry;
mod tool_loop;
pub mod usage;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::model::{
    AgentConfig, AgentInfo, AgentName, AgentState, Clock, Conversation, Event, Message,
    ProviderSpec, PruneReport, SearchFilter, SearchHit, Secret, ShutdownReport, Usage, UsageFilter,
    UsageGroup, UsageReport,
};
pub use crate::tools::ToolError;
pub use agent::{Exchange, ExchangeEvent};
pub use approvals::{AnswerError, Approvals};

/// Why the approvals pending when the daemon stops are denied.
pub const SHUTTING_DOWN: &str = "the daemon is shutting down";
pub use events::Events;
use history::Totals;
pub use history::{History, Which};

use crate::store::{Store, StoreError, StoredAgent};
use uuid::Uuid;

use crate::providers::{self, ModelsError, ProviderError, ProviderSettings, SetupError};
use agent::{Agent, Identity, Stopping};
use registry::Registry;

use agent::QUEUE_DEPTH;

/// How long shutting an agent down waits for its worker to record a partial reply.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong in the engine. The HTTP status for each is
/// decided in one place, `api::error`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no agent named '{0}' is running")]
    NotFound(AgentName),
    #[error("no agent named '{0}' has ever existed")]
    NoHistory(AgentName),
    #[error("'{0}' has had no conversation {1}")]
    NoConversation(AgentName, Uuid),
    #[error("an agent named '{0}' already exists; shut it down first or pick another name")]
    NameTaken(AgentName),
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("agent '{name}' is suspended: {reason}")]
    Suspended { name: AgentName, reason: SetupError },
    #[error("agent '{0}' has {QUEUE_DEPTH} messages waiting; try again later")]
    QueueFull(AgentName),
    #[error("agent '{0}' was shut down before it could reply")]
    AgentGone(AgentName),
    /// Every coding-agent process slot is taken and as many turns already
    /// wait for one: refused rather than queued without bound.
    #[error(
        "all {max} coding-agent processes (limits.max_agent_processes) are running and {max} more turns are waiting for one; try again later, or shut down an idle coding agent"
    )]
    ProcessesBusy { max: usize },
    #[error("the reply was interrupted: {0}")]
    Interrupted(String),
    #[error("provider error: {0}")]
    Provider(#[from] ProviderError),
    /// A budget has no room for the call (or counts USD and the model has no price).
    #[error("{0}")]
    Budget(#[from] budget::BudgetError),
    #[error("{0}")]
    BadSearch(String),
    #[error("{0}; nothing already saved was lost")]
    Store(#[from] StoreError),
    /// A coding agent's child failed the turn (it exited, or its model
    /// server refused); the next message starts a new child.
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// An agent's tools: a server config does not have, or one that could
    /// not be reached.
    #[error("{0}")]
    Tools(#[from] crate::tools::ToolError),
    /// `tools` on a coding agent, which brings its own tools.
    #[error(
        "'{0}' is a coding agent: it brings its own tools, and --tools (MCP servers the daemon runs) is for API agents"
    )]
    ToolsForCodingAgent(AgentName),
}

/// Filters for [`Engine::list`].
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<AgentState>,
    pub provider: Option<String>,
    /// Also the last incarnation of every name whose agent has ended.
    pub all: bool,
}

/// A cheap, cloneable handle to the daemon's agents and history.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    agents: Mutex<Registry>,
    history: History,
    /// Replaced whole by a reload; each provider call takes the value in effect.
    settings: RwLock<Arc<ProviderSettings>>,
    /// One permit per provider call in flight (config `limits.max_provider_calls`).
    /// A reload that changes the limit starts a new semaphore; calls already
    /// running finish on the old one.
    provider_slots: RwLock<Arc<Semaphore>>,
    /// One permit per KiB of prompt being handled (`limits.max_bytes_in_flight`);
    /// replaced by a reload like `provider_slots`.
    bytes_in_flight: RwLock<Arc<Semaphore>>,
    /// One permit per coding agent child running (`limits.max_agent_processes`);
    /// replaced by a reload like `provider_slots`.
    agent_processes: RwLock<Arc<Semaphore>>,
    /// Turns waiting for a process slot: at most as many as there are
    /// slots; a turn past that is refused (`ProcessesBusy`, 429).
    process_waiters: std::sync::atomic::AtomicUsize,
    started: Instant,
    events: Events,
    /// Pending permission requests of every agent that acts.
    approvals: Approvals,
    /// Provider calls counted for `GET /metrics`.
    meter: usage::Meter,
    /// The MCP servers API agents' tool calls go to.
    tools: crate::tools::ToolHost,
    /// `[[budgets]]` and the agents' own: what calls may still spend.
    budgets: Arc<budget::Budgets>,
    /// What every recorded time is read from: the wall clock, or a test's.
    clock: Clock,
    /// Provider calls waiting for one of `provider_slots`.
    slot_waiters: AtomicUsize,
}

/// The daemon's state at one moment, as `GET /metrics` shows it.
#[derive(Debug, Clone)]
pub struct Gauges {
    pub agents: Vec<(AgentState, usize)>,
    /// Messages taken by agents and not yet answered.
    pub queued_messages: usize,
    pub provider_calls_in_flight: usize,
    /// Provider calls waiting for a slot (`limits.max_provider_calls`).
    pub provider_calls_waiting: usize,
    pub event_streams: usize,
    pub approvals_pending: usize,
    pub store_bytes: u64,
}

/// What the ledger says `scope` spent since `since`: tokens and USD.
fn spent(history: &History, scope: &crate::model::SpendScope, since: Option<&str>) -> (u64, f64) {
    history.spent(scope, since).unwrap_or_else(|error| {
        tracing::error!(%error, ?scope, "cannot read what a budget spent; counting from 0");
        (0, 0.0)
    })
}

/// Counts one waiter out when its wait ends, however it ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds one ledger group's sums to another.
fn merge(into: &mut UsageGroup, row: &UsageGroup) {
    let source = crate::model::PriceSource::parse(&row.price_source)
        .unwrap_or(crate::model::PriceSource::Unknown);
    into.add(row.calls, row.usage, row.cost_usd, source);
}

/// What a reload did to the agents.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Suspended agents the new settings let run again.
    pub revived: Vec<AgentName>,
    /// Agents that are still (or now) suspended, with why.
    pub suspended: Vec<(AgentName, String)>,
}

impl Engine {
    fn with_history(settings: ProviderSettings, history: History, clock: Clock) -> Self {
        let events = Events::with_clock(clock.clone());
        let tools = crate::tools::ToolHost::new(&settings.config);
        Self {
            inner: Arc::new(Inner {
                agents: Mutex::new(Registry::new()),
                history,
                provider_slots: RwLock::new(Arc::new(Semaphore::new(
                    settings.config.limits.max_provider_calls,
                ))),
                bytes_in_flight: RwLock::new(Arc::new(Semaphore::new(kib(settings
                    .config
                    .limits
                    .max_bytes_in_flight)))),
                agent_processes: RwLock::new(Arc::new(Semaphore::new(
                    settings.config.limits.max_agent_processes,
                ))),
                process_waiters: std::sync::atomic::AtomicUsize::new(0),
                settings: RwLock::new(Arc::new(settings)),
                started: Instant::now(),
                approvals: Approvals::new(events.clone()),
                events,
                meter: usage::Meter::default(),
                tools,
                budgets: Arc::default(),
                clock,
                slot_waiters: AtomicUsize::new(0),
            }),
        }
    }

    /// Puts the config's `[[budgets]]` in effect, seeding new ones with
    /// what the ledger says they spent in their current period (a store
    /// that cannot be read counts as nothing spent, and says so).
    fn configure_budgets(&self, config: &crate::config::Config) {
        let rules = crate::config::BudgetConfig::rules(&config.budgets);
        let history = &self.inner.history;
        self.inner
            .budgets
            .configure(rules, self.now(), |scope, since| {
                spent(history, scope, since)
            });
    }

    /// The provider settings in effect now.
    pub fn settings(&self) -> Arc<ProviderSettings> {
        read(&self.inner.settings).clone()
    }

    /// Puts new settings (config, keys, connection pool) in effect for every
    /// provider call that starts from now on; calls in flight finish with
    /// the old ones. Every suspended agent is tried again, and every live
    /// one re-checked, so the report says who runs and who cannot.
    pub fn reload(&self, settings: ProviderSettings) -> ReloadReport {
        let limit = settings.config.limits.max_provider_calls;
        if limit != self.settings().config.limits.max_provider_calls {
            *write(&self.inner.provider_slots) = Arc::new(Semaphore::new(limit));
        }
        let bytes = settings.config.limits.max_bytes_in_flight;
        if bytes != self.settings().config.limits.max_bytes_in_flight {
            *write(&self.inner.bytes_in_flight) = Arc::new(Semaphore::new(kib(bytes)));
        }
        let processes = settings.config.limits.max_agent_processes;
        if processes != self.settings().config.limits.max_agent_processes {
            *write(&self.inner.agent_processes) = Arc::new(Semaphore::new(processes));
        }
        self.inner.tools.reconfigure(&settings.config);
        self.configure_budgets(&settings.config);
        *write(&self.inner.settings) = Arc::new(settings);
        let settings = self.settings();
        let mut report = ReloadReport::default();
        for agent in lock(&self.inner.agents).all() {
            let was_suspended = agent.state() == AgentState::Suspended;
            match agent.check(&settings) {
                Ok(()) if was_suspended => report.revived.push(agent.config.name.clone()),
                Ok(()) => {}
                Err(error) => report
                    .suspended
                    .push((agent.config.name.clone(), error.to_string())),
            }
        }
        report
    }

    /// An engine backed by `store`, dating what it records by `clock`:
    /// every agent that was live when the daemon last stopped comes back
    /// under its name, with its config; ended agents' histories stay
    /// readable. Only agent rows are read: the messages stay in the store
    /// until someone asks for them.
    pub fn restore(
        settings: ProviderSettings,
        store: Store,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let stored = store.load()?;
        let max_messages = settings.config.history.max_messages_per_agent;
        let engine = Self::with_history(settings, History::new(store, max_messages), clock);
        engine.configure_budgets(&engine.settings().config);
        let mut restored = 0;
        for agent in stored {
            let name = agent.config.name.clone();
            let totals = Totals {
                message_count: agent.message_count,
                first_at: agent.first_at.clone(),
                last_at: agent.last_at.clone(),
            };
            if !agent.live {
                let info = engine.ended_info(&agent);
                engine
                    .inner
                    .history
                    .insert(&name, agent.id, totals, Some(info));
                continue;
            }
            engine.inner.history.insert(&name, agent.id, totals, None);
            // Never ended by a start: one that cannot reach its model comes
            // back suspended, with its id, history and the reason.
            engine.revive(agent);
            restored += 1;
        }
        tracing::info!(agents = restored, "agents restored");
        Ok(engine)
    }

    /// Starts a stored live agent again under its old identity: running if
    /// its provider can be set up, else suspended with the reason.
    fn revive(&self, stored: StoredAgent) {
        let identity = Identity {
            id: stored.id,
            created_at: stored.created_at.clone(),
            usage: stored.usage,
        };
        // What this incarnation spent in its budget's current period.
        let seed = stored.config.budget.map(|budget| {
            let since = budget.period.start(self.now()).map(budget::since_text);
            let scope = crate::model::SpendScope::AgentId(stored.id);
            (budget, spent(&self.inner.history, &scope, since.as_deref()))
        });
        let agent = {
            let mut agents = lock(&self.inner.agents);
            self.start(&mut agents, stored.config, identity, false)
        };
        if let Some((budget, seed)) = seed {
            let now = self.now();
            let budgets = &self.inner.budgets;
            budgets.add_agent(agent.id, budget, &agent.config.name, now, seed);
        }
        let _ = agent.check(&self.settings());
    }

    /// What `list --all` shows of an ended incarnation loaded from the store.
    fn ended_info(&self, stored: &StoredAgent) -> AgentInfo {
        let (provider, model) =
            providers::endpoint::summary(&stored.config.provider, &self.settings().config);
        AgentInfo {
            name: stored.config.name.clone(),
            agent_type: stored.config.agent_type.clone(),
            provider: provider.to_owned(),
            state: AgentState::Terminated,
            id: stored.id,
            profile: stored.config.provider.profile.clone(),
            model,
            created_at: stored.created_at.clone(),
            message_count: stored.message_count,
            usage: stored.usage,
            reason: None,
            cwd: stored.config.workspace.cwd.clone(),
            tools: stored.config.workspace.tools.clone(),
            queued: 0,
            budget: stored.config.budget.map(|budget| budget.to_string()),
        }
    }

    /// Records in history that `agent` has ended, with its last state.
    async fn record_end(&self, agent: &Agent) {
        let info = agent.info(&self.inner.history, &self.settings());
        self.inner.history.end(&agent.config.name, info).await;
    }

    /// Room for one more coding agent child, held while it runs: at once
    /// if a slot is free, else after a wait in a queue of at most
    /// `limits.max_agent_processes` turns; a turn that finds that queue
    /// full is refused at once. `None` if the slots were replaced by a
    /// reload while it waited (the child then runs outside the count).
    async fn process_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, EngineError> {
        let slots = read(&self.inner.agent_processes).clone();
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Ok(Some(slot));
        }
        let max = self.settings().config.limits.max_agent_processes;
        let waiters = &self.inner.process_waiters;
        if waiters
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(EngineError::ProcessesBusy { max });
        }
        // Leaves the queue however the wait ends (a slot, or the caller gone).
        let _waiting = Waiting(waiters);
        Ok(slots.acquire_owned().await.ok())
    }

    /// Waits for a free provider-call slot; the call holds it until
    /// dropped. Counted as waiting meanwhile (a cancelled wait included).
    async fn provider_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = read(&self.inner.provider_slots).clone();
        let waiters = &self.inner.slot_waiters;
        waiters.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(waiters);
        slots.acquire_owned().await.ok()
    }

    /// Waits until `bytes` more of prompt may be in flight; held until
    /// dropped. A prompt larger than the whole allowance waits for all of
    /// it, then runs alone.
    async fn bytes_in_flight(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let budget = read(&self.inner.bytes_in_flight).clone();
        let total = kib(self.settings().config.limits.max_bytes_in_flight);
        let wanted = kib(bytes.max(1)).min(total);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        budget.acquire_many_owned(wanted).await.ok()
    }

    /// After an exchange with a prompt of `bytes`: once a burst of large
    /// prompts is over (nothing in flight any more), gives the memory it
    /// freed back to the system. glibc's allocator keeps freed blocks of
    /// this size in its arenas, so without this a 64 MB fan-out left the
    /// daemon 64 MB larger for good.
    fn settle(&self, bytes: usize) {
        const LARGE: usize = 256 * 1024;
        let budget = read(&self.inner.bytes_in_flight).clone();
        let total = kib(self.settings().config.limits.max_bytes_in_flight);
        if bytes >= LARGE && budget.available_permits() >= total {
            tokio::task::spawn_blocking(give_memory_back);
        }
    }

    /// The event bus (`GET /events`).
    /// Every agent's pending approvals.
    pub fn approvals(&self) -> &Approvals {
        &self.inner.approvals
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The clock every recorded time is read from (messages, events, the
    /// ledger, approvals, agents' creation) and every "older than" or
    /// "since" is measured against.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The current time by the engine's clock (a budget's window, say).
    pub fn now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }

    /// The MCP servers API agents' tools run on.
    pub fn tools(&self) -> &crate::tools::ToolHost {
        &self.inner.tools
    }

    /// The counters behind `GET /metrics`.
    pub fn meter(&self) -> &usage::Meter {
        &self.inner.meter
    }

    /// What calls may still spend.
    pub fn budgets(&self) -> &Arc<budget::Budgets> {
        &self.inner.budgets
    }

    /// Every budget and where it stands now.
    pub fn budget_states(&self) -> Vec<crate::model::BudgetState> {
        self.inner.budgets.states(self.now())
    }

    /// `GET /usage`: the ledger's total over the filter's calls and, when
    /// grouped, each group's, most expensive first (then most tokens).
    pub fn usage(&self, filter: &UsageFilter) -> Result<UsageReport, EngineError> {
        let rows = self.inner.history.usage(filter)?;
        let mut total = UsageGroup::default();
        let mut groups: Vec<UsageGroup> = Vec::new();
        for (key, row) in rows {
            merge(&mut total, &row);
            if filter.by.is_none() {
                continue;
            }
            match groups.last_mut() {
                // Rows come ordered by key: one key's sources are adjacent.
                Some(last) if last.key == key => merge(last, &row),
                _ => groups.push(UsageGroup { key, ..row }),
            }
        }
        groups.sort_by(|a, b| {
            let cost = |g: &UsageGroup| g.cost_usd.unwrap_or(0.0);
            let tokens = |g: &UsageGroup| g.usage.input_tokens + g.usage.output_tokens;
            cost(b)
                .total_cmp(&cost(a))
                .then(tokens(b).cmp(&tokens(a)))
                .then(a.key.cmp(&b.key))
        });
        Ok(UsageReport {
            by: filter.by,
            since: filter.since.map(str::to_owned),
            agent: filter.agent.map(str::to_owned),
            total,
            groups,
            budgets: self.budget_states(),
        })
    }

    /// What the daemon is doing now, for `GET /metrics`.
    pub fn gauges(&self) -> Gauges {
        let agents = lock(&self.inner.agents).all();
        let mut by_state: Vec<(AgentState, usize)> = AgentState::ALL
            .into_iter()
            .map(|state| (state, 0))
            .collect();
        let mut queued = 0;
        for agent in &agents {
            let state = agent.state();
            if let Some((_, count)) = by_state.iter_mut().find(|(s, _)| *s == state) {
                *count += 1;
            }
            queued += agent.waiting();
        }
        let slots = read(&self.inner.provider_slots).clone();
        let most = self.settings().config.limits.max_provider_calls;
        Gauges {
            agents: by_state,
            queued_messages: queued,
            provider_calls_in_flight: most.saturating_sub(slots.available_permits()),
            provider_calls_waiting: self.inner.slot_waiters.load(Ordering::Relaxed),
            event_streams: self.inner.events.readers(),
            approvals_pending: self.inner.approvals.list(None).len(),
            store_bytes: self.inner.history.store_size(),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn live_count(&self) -> usize {
        lock(&self.inner.agents).len()
    }

    /// Follows the live agent count as agents start and stop.
    pub fn watch_live(&self) -> tokio::sync::watch::Receiver<usize> {
        lock(&self.inner.agents).watch()
    }

    pub async fn spawn(&self, config: AgentConfig) -> Result<AgentInfo, EngineError> {
        let agent = self.spawn_agent(config, false).await?;
        Ok(agent.info(&self.inner.history, &self.settings()))
    }

    /// Reserves the name, writes the new incarnation to the store, then
    /// publishes the agent. The registry is locked only to reserve and to
    /// publish, never across the write, so `/health` and `list` do not wait
    /// for the disk. Runs as its own task: a caller that goes away cannot
    /// leave a stored incarnation without a live agent.
    async fn spawn_agent(
        &self,
        config: AgentConfig,
        ephemeral: bool,
    ) -> Result<Arc<Agent>, EngineError> {
        let engine = self.clone();
        let config =
            tool_loop::with_profile_tools(coding::normalize(config), &self.settings().config);
        let spawning = tokio::spawn(async move { engine.spawn_now(config, ephemeral).await });
        spawning
            .await
            .unwrap_or_else(|error| Err(EngineError::Interrupted(error.to_string())))
    }

    async fn spawn_now(
        &self,
        config: AgentConfig,
        ephemeral: bool,
    ) -> Result<Arc<Agent>, EngineError> {
        let reservation = self.reserve(&config)?;
        let identity = Identity {
            id: Uuid::new_v4(),
            created_at: self.inner.clock.now_rfc3339(),
            usage: Usage::default(),
        };
        // On disk before the caller hears the agent exists. A failed write
        // drops the reservation: no agent is left behind.
        self.inner
            .history
            .begin(&config, identity.id, &identity.created_at)
            .await?;
        // A new incarnation has spent nothing yet.
        if let Some(budget) = config.budget {
            let now = self.now();
            let budgets = &self.inner.budgets;
            budgets.add_agent(identity.id, budget, &config.name, now, (0, 0.0));
        }
        let mut agents = lock(&self.inner.agents);
        reservation.publish(&mut agents);
        Ok(self.start(&mut agents, config, identity, ephemeral))
    }

    /// Holds `config`'s name for a spawn in progress: no other spawn can
    /// take it until the reservation is published or dropped.
    fn reserve(&self, config: &AgentConfig) -> Result<Reservation, EngineError> {
        let mut agents = lock(&self.inner.agents);
        // A taken name is reported before any provider problem: it is the
        // first thing the caller has to fix.
        if agents.is_taken(&config.name) {
            return Err(EngineError::NameTaken(config.name.clone()));
        }
        // Refused now if it could not run: a spawn is never suspended. (No
        // I/O but a coding agent's stat of its cwd and executable: checked
        // under the lock, so a refused spawn never holds the name.)
        match coding::program(config) {
            Some(_) => drop(coding::spec(
                config,
                &self.settings(),
                None,
                std::path::PathBuf::new(),
            )?),
            None => drop(providers::build(&config.provider, &self.settings())?),
        }
        let coding = coding::program(config).is_some();
        tool_loop::check(config, &self.settings().config, self.tools(), coding)?;
        agents.reserve(&config.name);
        Ok(Reservation {
            engine: self.clone(),
            name: Some(config.name.clone()),
        })
    }

    /// Registers an agent in `agents` (the locked registry); its worker
    /// starts with its first message.
    fn start(
        &self,
        agents: &mut Registry,
        config: AgentConfig,
        identity: Identity,
        ephemeral: bool,
    ) -> Arc<Agent> {
        let agent = Arc::new(Agent::new(
            config,
            identity,
            ephemeral,
            self.inner.events.clone(),
        ));
        agents.insert(agent.clone());
        self.inner.events.emit_with(Some(&agent.config.name), || {
            let (provider, model) =
                providers::endpoint::summary(&agent.config.provider, &self.settings().config);
            Event::Spawned {
                provider: provider.to_owned(),
                model,
                task: ephemeral,
            }
        });
        tracing::info!(agent = %agent.config.name, "agent started");
        agent
    }

    pub fn list(&self, filter: &ListFilter) -> Vec<AgentInfo> {
        let agents: Vec<Arc<Agent>> = lock(&self.inner.agents).all();
        let settings = self.settings();
        let mut infos: Vec<AgentInfo> = agents
            .iter()
            .map(|a| a.info(&self.inner.history, &settings))
            .filter(|info| filter.state.is_none_or(|s| info.state == s))
            .filter(|info| filter.provider.as_ref().is_none_or(|p| &info.provider == p))
            .collect();
        if filter.all {
            let live: std::collections::HashSet<AgentName> =
                infos.iter().map(|i| i.name.clone()).collect();
            infos.extend(
                self.inner
                    .history
                    .ended()
                    .into_iter()
                    .filter(|info| !live.contains(&info.name))
                    .filter(|info| filter.state.is_none_or(|s| info.state == s))
                    .filter(|info| filter.provider.as_ref().is_none_or(|p| &info.provider == p)),
            );
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    pub fn get(&self, name: &AgentName) -> Result<AgentInfo, EngineError> {
        Ok(self.live(name)?.info(&self.inner.history, &self.settings()))
    }

    fn live(&self, name: &AgentName) -> Result<Arc<Agent>, EngineError> {
        lock(&self.inner.agents)
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(name.clone()))
    }

    /// The models offered by the endpoint a spawn with this config would use.
    pub async fn models(&self, spec: &ProviderSpec) -> Result<Vec<String>, EngineError> {
        providers::models(spec, &self.settings())
            .await
            .map_err(|error| match error {
                ModelsError::Setup(error) => EngineError::Setup(error),
                ModelsError::Provider(error) => EngineError::Provider(error),
            })
    }

    /// Queues a message for a live agent; the reply arrives on the returned
    /// stream. `key` is a key the client brought, kept for an agent that was
    /// spawned without one (a suspended agent whose key was missing runs
    /// again with it). A suspended agent that still cannot run refuses at
    /// once, naming what it lacks.
    pub fn send(
        &self,
        name: &AgentName,
        content: Arc<str>,
        key: Option<Secret>,
    ) -> Result<Exchange, EngineError> {
        let agent = self.live(name)?;
        if let Some(key) = key {
            agent.bring_key(key);
        }
        agent
            .check(&self.settings())
            .map_err(|reason| EngineError::Suspended {
                name: name.clone(),
                reason,
            })?;
        agent.enqueue(self, content)
    }

    /// Stops the turn a live agent is running now, if any (true if it was
    /// running); what arrived is kept, marked interrupted, and messages
    /// queued behind it run next.
    pub fn interrupt(&self, name: &AgentName) -> Result<bool, EngineError> {
        let interrupted = self.live(name)?.interrupt();
        if interrupted {
            tracing::info!(agent = %name, "turn interrupted by request");
        }
        Ok(interrupted)
    }

    /// Spawns an ephemeral agent, gives it one prompt, and removes it once
    /// that exchange ends, however it ends.
    pub async fn task(&self, config: AgentConfig, prompt: String) -> Result<Exchange, EngineError> {
        let agent = self.spawn_agent(config, true).await?;
        agent.enqueue(self, prompt.into()).inspect_err(|_| {
            self.deregister(&agent);
            agent.cancel();
        })
    }

    /// Shuts one agent down: it leaves the registry at once, its running
    /// exchange is cancelled (the partial reply recorded), and waiting
    /// messages are refused. Its history stays readable.
    pub async fn shutdown_agent(&self, name: &AgentName) -> Result<(), EngineError> {
        let agent = lock(&self.inner.agents)
            .remove(name)
            .ok_or_else(|| EngineError::NotFound(name.clone()))?;
        self.stop(&agent).await.map_err(EngineError::Interrupted)
    }

    pub async fn shutdown_all(&self) -> ShutdownReport {
        let agents = lock(&self.inner.agents).drain();
        for agent in &agents {
            agent.cancel();
        }
        // All at once, so a daemon stop takes one AGENT_STOP_TIMEOUT at most
        // however many agents are stuck (the service's TimeoutStopSec counts on it).
        let results =
            futures_util::future::join_all(agents.iter().map(|agent| self.stop(agent))).await;
        let mut report = ShutdownReport::default();
        for (agent, result) in agents.iter().zip(results) {
            let name = agent.config.name.clone();
            match result {
                Ok(()) => report.succeeded.push(name),
                Err(reason) => {
                    report.failed.insert(name, reason);
                }
            }
        }
        report.succeeded.sort();
        report
    }

    pub fn history(
        &self,
        name: &AgentName,
        limit: Option<usize>,
        which: Which,
    ) -> Result<Vec<Message>, EngineError> {
        self.inner
            .history
            .read(name, limit, which)?
            .ok_or_else(|| match which {
                Which::One(id) => EngineError::NoConversation(name.clone(), id),
                _ => EngineError::NoHistory(name.clone()),
            })
    }

    /// Every conversation every name has had (or one name's), with the
    /// state of the agent that holds it: a live agent's own, else
    /// `terminated`.
    pub fn conversations(&self, name: Option<&AgentName>) -> Vec<Conversation> {
        let live: std::collections::HashMap<Uuid, Arc<Agent>> = lock(&self.inner.agents)
            .all()
            .into_iter()
            .map(|agent| (agent.id, agent))
            .collect();
        let settings = self.settings();
        self.inner
            .history
            .conversations(name)
            .into_iter()
            .map(|summary| {
                let holder = live
                    .get(&summary.agent_id)
                    .map(|agent| agent.info(&self.inner.history, &settings));
                let info = holder.or(summary.ended);
                Conversation {
                    name: summary.name,
                    id: summary.agent_id,
                    state: info.as_ref().map_or(AgentState::Terminated, |i| i.state),
                    provider: info.as_ref().map(|i| i.provider.clone()),
                    message_count: summary.message_count,
                    first_at: summary.first_at,
                    last_at: summary.last_at,
                    usage: info.map(|i| i.usage).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Messages matching a full-text query across every conversation ever
    /// held, live or ended, most relevant first.
    pub fn search(&self, filter: &SearchFilter) -> Result<Vec<SearchHit>, EngineError> {
        if filter.query.trim().is_empty() {
            return Err(EngineError::BadSearch("the search query is empty".into()));
        }
        self.inner.history.search(filter).map_err(|error| match error {
            StoreError::Query(reason) => EngineError::BadSearch(format!(
                "the search query is not valid ({reason}); use words, \"exact phrases\", OR, NOT, or prefix*"
            )),
            other => EngineError::Store(other),
        })
    }

    /// Removes ended conversations last written before `cutoff` (RFC 3339);
    /// never a live or suspended agent's. With `dry_run`, only says which.
    pub fn prune(&self, cutoff: &str, dry_run: bool) -> Result<PruneReport, EngineError> {
        let (found, size_before, size_after) = self.inner.history.prune(cutoff, dry_run)?;
        Ok(PruneReport {
            dry_run,
            cutoff: cutoff.to_owned(),
            conversations: found,
            size_before,
            size_after,
        })
    }

    /// Deletes every message the name ever had (the agent, if live, keeps
    /// running with an empty context).
    pub fn clear_history(&self, name: &AgentName) -> Result<(), EngineError> {
        if self.inner.history.clear(name)? {
            Ok(())
        } else {
            Err(EngineError::NoHistory(name.clone()))
        }
    }

    /// Stops every agent for the daemon's exit, without ending them: with a
    /// store, they come back on the next start.
    pub async fn suspend_all(&self) -> ShutdownReport {
        // Before the agents are stopped, so each turn that asked hears the
        // denial (and records it) rather than being cut off unanswered.
        self.inner.approvals.deny_all(SHUTTING_DOWN);
        let agents: Vec<Arc<Agent>> = lock(&self.inner.agents).all();
        for agent in &agents {
            agent.keep_for_restart();
        }
        let report = self.shutdown_all().await;
        // After the agents, whose turns may still have been calling tools:
        // no MCP server outlives the daemon.
        self.inner.tools.stop_all().await;
        report
    }

    /// Removes `agent` from the registry if that name still belongs to it.
    fn deregister(&self, agent: &Agent) {
        let mut agents = lock(&self.inner.agents);
        if agents
            .get(&agent.config.name)
            .is_some_and(|a| a.id == agent.id)
        {
            agents.remove(&agent.config.name);
        }
    }

    fn history_store(&self) -> &History {
        &self.inner.history
    }
}

/// A name held by a spawn in progress; dropped unpublished (the write
/// failed, or the spawn panicked), it frees the name.
struct Reservation {
    engine: Engine,
    /// `None` once published.
    name: Option<AgentName>,
}

impl Reservation {
    /// Gives the name up to the agent about to be inserted in `agents`.
    fn publish(mut self, agents: &mut Registry) {
        if let Some(name) = self.name.take() {
            agents.release(&name);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            lock(&self.engine.inner.agents).release(&name);
        }
    }
}

impl Engine {
    /// Stops an agent's worker (waiting a while for it to record a partial
    /// reply), or, if it never had one, records the agent's end here.
    async fn stop(&self, agent: &Agent) -> Result<(), String> {
        agent.cancel();
        let result = match agent.take_worker() {
            Stopping::Running(worker) => {
                match tokio::time::timeout(AGENT_STOP_TIMEOUT, worker).await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(format!(
                        "did not stop within {}s",
                        AGENT_STOP_TIMEOUT.as_secs()
                    )),
                }
            }
            Stopping::NeverStarted => {
                agent::finish(self, agent).await;
                Ok(())
            }
            Stopping::Done => Ok(()),
        };
        if agent.is_kept_for_restart() {
            tracing::info!(agent = %agent.config.name, "agent stopped for the daemon's exit; it comes back at the next start");
        } else {
            tracing::info!(agent = %agent.config.name, "agent shut down");
        }
        result
    }
}

/// Returns the allocator's free memory to the system, where the allocator
/// keeps it otherwise (glibc).
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only releases free pages
    // of the allocator's own heaps, under the allocator's locks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Bytes as whole KiB, rounded up: the unit of the bytes-in-flight semaphore.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks a std mutex, shrugging off poisoning: every critical section here
/// leaves the data consistent, so a panic elsewhere must not wedge the daemon.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
