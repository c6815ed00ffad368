//! The live agents by name. Every change publishes their count on a watch
//! channel (for sd_notify's STATUS), so no caller has to remember to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::agent::Agent;
use crate::model::AgentName;

pub struct Registry {
    agents: HashMap<AgentName, Arc<Agent>>,
    /// Names a spawn holds while it writes the new agent to the store.
    reserved: HashSet<AgentName>,
    live: watch::Sender<usize>,
}

impl Registry {
    pub fn new() -> Self {
        Self {
            agents: HashMap::new(),
            reserved: HashSet::new(),
            live: watch::Sender::new(0),
        }
    }

    /// Follows the live agent count as agents start and stop.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.live.subscribe()
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn get(&self, name: &AgentName) -> Option<&Arc<Agent>> {
        self.agents.get(name)
    }

    /// Whether `name` is live or held by a spawn in progress.
    pub fn is_taken(&self, name: &AgentName) -> bool {
        self.agents.contains_key(name) || self.reserved.contains(name)
    }

    /// Holds `name` for a spawn in progress (check [`is_taken`](Self::is_taken) first).
    pub fn reserve(&mut self, name: &AgentName) {
        self.reserved.insert(name.clone());
    }

    pub fn release(&mut self, name: &AgentName) {
        self.reserved.remove(name);
    }

    pub fn all(&self) -> Vec<Arc<Agent>> {
        self.agents.values().cloned().collect()
    }

    pub fn insert(&mut self, agent: Arc<Agent>) {
        self.agents.insert(agent.config.name.clone(), agent);
        self.publish();
    }

    pub fn remove(&mut self, name: &AgentName) -> Option<Arc<Agent>> {
        let agent = self.agents.remove(name);
        self.publish();
        agent
    }

    pub fn drain(&mut self) -> Vec<Arc<Agent>> {
        let agents = self.agents.drain().map(|(_, agent)| agent).collect();
        self.publish();
        agents
    }

    fn publish(&self) {
        let len = self.agents.len();
        self.live
            .send_if_modified(|count| std::mem::replace(count, len) != len);
    }
}
