//! The engine: the registry of live agents, their per-agent work queues, and
//! the history every conversation is kept in.
//!
//! Each agent has one worker task that takes messages from its queue one at
//! a time, in arrival order; different agents' workers run concurrently.
//! Callers get the reply as a stream of [`ExchangeEvent`]s; dropping that
//! stream cancels the exchange, and its partial reply is kept, marked
//! interrupted.

mod agent;
mod history;
mod name;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

pub use agent::{Exchange, ExchangeEvent};
pub use history::History;
pub use name::{AgentName, InvalidName, MAX_NAME_LEN};
pub use types::{AgentConfig, AgentInfo, AgentState, HUMAN, Message, Secret, Usage, now_rfc3339};

use crate::providers::{
    self, ModelsError, ProviderError, ProviderSettings, ProviderSpec, SetupError,
};
use agent::Agent;

/// How many messages may wait in one agent's queue before new ones are refused.
const QUEUE_DEPTH: usize = 256;

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
    #[error("an agent named '{0}' already exists; shut it down first or pick another name")]
    NameTaken(AgentName),
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("agent '{0}' has {QUEUE_DEPTH} messages waiting; try again later")]
    QueueFull(AgentName),
    #[error("agent '{0}' was shut down before it could reply")]
    AgentGone(AgentName),
    #[error("the reply was interrupted: {0}")]
    Interrupted(String),
    #[error("provider error: {0}")]
    Provider(#[from] ProviderError),
}

/// Filters for [`Engine::list`].
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<AgentState>,
    pub provider: Option<String>,
}

/// The outcome of shutting every agent down.
#[derive(Debug, Default, serde::Serialize)]
pub struct ShutdownReport {
    pub succeeded: Vec<AgentName>,
    pub failed: BTreeMap<AgentName, String>,
}

/// A cheap, cloneable handle to the daemon's agents and history.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    agents: Mutex<HashMap<AgentName, Arc<Agent>>>,
    history: History,
    settings: ProviderSettings,
    /// One permit per provider call in flight (config `limits.max_provider_calls`).
    provider_slots: Arc<Semaphore>,
    started: Instant,
}

impl Engine {
    pub fn new(settings: ProviderSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                agents: Mutex::new(HashMap::new()),
                history: History::default(),
                provider_slots: Arc::new(Semaphore::new(
                    settings.config.limits.max_provider_calls.max(1),
                )),
                settings,
                started: Instant::now(),
            }),
        }
    }

    /// Waits for a free provider-call slot; the call holds it until dropped.
    async fn provider_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.provider_slots.clone().acquire_owned().await.ok()
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn live_count(&self) -> usize {
        lock(&self.inner.agents).len()
    }

    pub fn spawn(&self, config: AgentConfig) -> Result<AgentInfo, EngineError> {
        self.spawn_agent(config, false)
            .map(|agent| agent.info(&self.inner.history))
    }

    fn spawn_agent(&self, config: AgentConfig, ephemeral: bool) -> Result<Arc<Agent>, EngineError> {
        let mut agents = lock(&self.inner.agents);
        // A taken name is reported before any provider problem: it is the
        // first thing the caller has to fix.
        if agents.contains_key(&config.name) {
            return Err(EngineError::NameTaken(config.name));
        }
        let setup = providers::build(&config.provider, &self.inner.settings)?;
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_DEPTH);
        let agent = Arc::new(Agent::new(config, setup, jobs_tx, ephemeral));
        self.inner.history.begin(&agent.config.name, agent.id);
        agents.insert(agent.config.name.clone(), agent.clone());
        drop(agents);
        let worker = tokio::spawn(agent::run_worker(self.clone(), agent.clone(), jobs_rx));
        agent.set_worker(worker);
        tracing::info!(agent = %agent.config.name, provider = agent.provider_name(), "agent spawned");
        Ok(agent)
    }

    pub fn list(&self, filter: &ListFilter) -> Vec<AgentInfo> {
        let agents: Vec<Arc<Agent>> = lock(&self.inner.agents).values().cloned().collect();
        let mut infos: Vec<AgentInfo> = agents
            .iter()
            .map(|a| a.info(&self.inner.history))
            .filter(|info| filter.state.is_none_or(|s| info.state == s))
            .filter(|info| filter.provider.as_ref().is_none_or(|p| &info.provider == p))
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    pub fn get(&self, name: &AgentName) -> Result<AgentInfo, EngineError> {
        Ok(self.live(name)?.info(&self.inner.history))
    }

    fn live(&self, name: &AgentName) -> Result<Arc<Agent>, EngineError> {
        lock(&self.inner.agents)
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(name.clone()))
    }

    /// The models offered by the endpoint a spawn with this config would use.
    pub async fn models(&self, spec: &ProviderSpec) -> Result<Vec<String>, EngineError> {
        providers::models(spec, &self.inner.settings)
            .await
            .map_err(|error| match error {
                ModelsError::Setup(error) => EngineError::Setup(error),
                ModelsError::Provider(error) => EngineError::Provider(error),
            })
    }

    /// Queues a message for a live agent; the reply arrives on the returned stream.
    pub fn send(&self, name: &AgentName, content: String) -> Result<Exchange, EngineError> {
        self.live(name)?.enqueue(content)
    }

    /// Spawns an ephemeral agent, gives it one prompt, and removes it once
    /// that exchange ends, however it ends.
    pub fn task(&self, config: AgentConfig, prompt: String) -> Result<Exchange, EngineError> {
        let agent = self.spawn_agent(config, true)?;
        agent.enqueue(prompt).inspect_err(|_| {
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
        stop(&agent).await.map_err(EngineError::Interrupted)
    }

    pub async fn shutdown_all(&self) -> ShutdownReport {
        let agents: Vec<Arc<Agent>> = lock(&self.inner.agents).drain().map(|(_, a)| a).collect();
        for agent in &agents {
            agent.cancel();
        }
        let mut report = ShutdownReport::default();
        for agent in agents {
            let name = agent.config.name.clone();
            match stop(&agent).await {
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
        all: bool,
    ) -> Result<Vec<Message>, EngineError> {
        self.inner
            .history
            .read(name, limit, all)
            .ok_or_else(|| EngineError::NoHistory(name.clone()))
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

async fn stop(agent: &Agent) -> Result<(), String> {
    agent.cancel();
    let result = match agent.take_worker() {
        Some(worker) => match tokio::time::timeout(AGENT_STOP_TIMEOUT, worker).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "did not stop within {}s",
                AGENT_STOP_TIMEOUT.as_secs()
            )),
        },
        None => Ok(()),
    };
    tracing::info!(agent = %agent.config.name, "agent shut down");
    result
}

/// Locks a std mutex, shrugging off poisoning: every critical section here
/// leaves the data consistent, so a panic elsewhere must not wedge the daemon.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
