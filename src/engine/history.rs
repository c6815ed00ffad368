//! History: every conversation every agent name has had, kept after the
//! agent is shut down.
//!
//! A name's history is a list of conversations, one per incarnation (spawn)
//! of that name. The current (last) one is what the provider sees as context
//! and what `GET /agents/{name}/history` returns; earlier ones stay readable
//! with `?all=true`. Everything goes through this type so that a persistent
//! store can later take its place without touching the engine's logic.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::{AgentName, Message, lock};

#[derive(Default)]
pub struct History {
    names: Mutex<HashMap<AgentName, Vec<Conversation>>>,
}

struct Conversation {
    agent_id: Uuid,
    messages: Vec<Message>,
}

impl History {
    /// Starts the conversation of a newly spawned agent.
    pub fn begin(&self, name: &AgentName, agent_id: Uuid) {
        lock(&self.names)
            .entry(name.clone())
            .or_default()
            .push(Conversation {
                agent_id,
                messages: Vec::new(),
            });
    }

    pub fn append(&self, name: &AgentName, agent_id: Uuid, message: Message) {
        let mut names = lock(&self.names);
        if let Some(conversation) = find(&mut names, name, agent_id) {
            conversation.messages.push(message);
        }
    }

    /// The whole conversation of one incarnation, oldest first.
    pub fn conversation(&self, name: &AgentName, agent_id: Uuid) -> Vec<Message> {
        let mut names = lock(&self.names);
        find(&mut names, name, agent_id)
            .map(|c| c.messages.clone())
            .unwrap_or_default()
    }

    pub fn len(&self, name: &AgentName, agent_id: Uuid) -> usize {
        let mut names = lock(&self.names);
        find(&mut names, name, agent_id).map_or(0, |c| c.messages.len())
    }

    /// The last `limit` messages (all when `None`) of the name's latest
    /// conversation, or of all its conversations when `all`; oldest first.
    /// `None` when the name never existed.
    pub fn read(&self, name: &AgentName, limit: Option<usize>, all: bool) -> Option<Vec<Message>> {
        let names = lock(&self.names);
        let conversations = names.get(name)?;
        let chosen = if all {
            &conversations[..]
        } else {
            &conversations[conversations.len().saturating_sub(1)..]
        };
        let messages: Vec<&Message> = chosen.iter().flat_map(|c| &c.messages).collect();
        let skip = limit.map_or(0, |n| messages.len().saturating_sub(n));
        Some(messages.into_iter().skip(skip).cloned().collect())
    }
}

fn find<'a>(
    names: &'a mut HashMap<AgentName, Vec<Conversation>>,
    name: &AgentName,
    agent_id: Uuid,
) -> Option<&'a mut Conversation> {
    names
        .get_mut(name)?
        .iter_mut()
        .rev()
        .find(|c| c.agent_id == agent_id)
}
