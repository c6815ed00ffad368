//! The live agents by name. Every change publishes their count on a watch
//! channel (for sd_notify's STATUS), so no caller has to remember to.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::agent::Agent;
use crate::model::AgentName;

pub struct Registry {
    agents: HashMap<AgentName, Arc<Agent>>,
    live: watch::Sender<usize>,
}

impl Registry {
    pub fn new() -> Self {
        Self {
            agents: HashMap::new(),
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

    pub fn contains(&self, name: &AgentName) -> bool {
        self.agents.contains_key(name)
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
