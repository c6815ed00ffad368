//! History: every conversation every agent name has had, kept after the
//! agent is shut down, in memory and in the durable [`Store`].
//!
//! A name's history is a list of conversations, one per incarnation (spawn)
//! of that name. The current (last) one is what the provider sees as context
//! and what `GET /agents/{name}/history` returns; earlier ones stay readable
//! with `?all=true`. Every write goes to the store first and is on disk
//! before this returns; memory is only updated once the store has it.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::lock;
use crate::model::{AgentConfig, AgentInfo, AgentName, Message, SearchFilter, SearchHit, Usage};
use crate::store::{Prunable, Store, StoreError};

/// Which of a name's conversations a read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The current (last) one.
    Last,
    All,
    /// The one of this incarnation.
    One(Uuid),
}

/// One conversation as `GET /conversations` lists it, before the engine
/// adds the live state.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    pub name: AgentName,
    pub agent_id: Uuid,
    pub message_count: usize,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    /// Set once the incarnation has ended.
    pub ended: Option<AgentInfo>,
}

pub struct History {
    names: Mutex<HashMap<AgentName, Vec<Conversation>>>,
    store: Mutex<Store>,
    /// Retention: messages kept per incarnation; 0 keeps all.
    max_messages: usize,
}

struct Conversation {
    agent_id: Uuid,
    messages: Vec<Message>,
    /// What `list --all` shows once the incarnation has ended.
    ended: Option<AgentInfo>,
}

impl History {
    pub fn new(store: Store, max_messages: usize) -> Self {
        Self {
            names: Mutex::new(HashMap::new()),
            store: Mutex::new(store),
            max_messages,
        }
    }

    /// Runs one store write; the store's lock serialises writers. A write
    /// waits for fsync, so on the daemon's multi-threaded runtime the worker
    /// says it is blocking and its other tasks move to another thread
    /// instead of stalling behind a slow disk.
    fn write<T>(
        &self,
        action: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| action(&mut lock(&self.store)))
    }

    /// Starts the conversation of a newly spawned agent.
    pub fn begin(
        &self,
        config: &AgentConfig,
        agent_id: Uuid,
        created_at: &str,
    ) -> Result<(), StoreError> {
        self.write(|store| store.add_agent(agent_id, config, created_at))?;
        self.insert(&config.name, agent_id, Vec::new(), None);
        Ok(())
    }

    /// Puts a conversation loaded from the store back in memory.
    pub fn insert(
        &self,
        name: &AgentName,
        agent_id: Uuid,
        messages: Vec<Message>,
        ended: Option<AgentInfo>,
    ) {
        lock(&self.names)
            .entry(name.clone())
            .or_default()
            .push(Conversation {
                agent_id,
                messages,
                ended,
            });
    }

    /// Records a message (and the usage it cost) for good: on disk first.
    pub fn append(
        &self,
        name: &AgentName,
        agent_id: Uuid,
        message: Message,
        usage: Option<Usage>,
    ) -> Result<(), StoreError> {
        self.write(|store| store.add_message(agent_id, &message, usage))?;
        let trim = {
            let mut names = lock(&self.names);
            let Some(conversation) = find(&mut names, name, agent_id) else {
                return Ok(());
            };
            conversation.messages.push(message);
            let excess = conversation
                .messages
                .len()
                .saturating_sub(self.max_messages);
            if self.max_messages > 0 && excess > 0 {
                conversation.messages.drain(..excess);
                true
            } else {
                false
            }
        };
        if trim {
            self.write(|store| store.trim(agent_id, self.max_messages))?;
        }
        Ok(())
    }

    /// Marks an incarnation ended, keeping `info` for `list --all`.
    pub fn end(&self, name: &AgentName, info: AgentInfo) {
        let agent_id = info.id;
        if let Err(error) = self.write(|store| store.end_agent(agent_id)) {
            tracing::error!(agent = %name, %error, "cannot record that the agent ended");
        }
        if let Some(conversation) = find(&mut lock(&self.names), name, agent_id) {
            conversation.ended = Some(info);
        }
    }

    /// Forgets every message the name ever had. False if it never existed.
    pub fn clear(&self, name: &AgentName) -> Result<bool, StoreError> {
        if !lock(&self.names).contains_key(name) {
            return Ok(false);
        }
        self.write(|store| store.clear_history(name))?;
        if let Some(conversations) = lock(&self.names).get_mut(name) {
            for conversation in conversations {
                conversation.messages.clear();
            }
        }
        Ok(true)
    }

    /// Ended conversations last written before `cutoff`; with `dry_run`
    /// false they are deleted, on disk first, then from memory (a name left
    /// with no conversation is forgotten). Returns the store's size before
    /// and after.
    pub fn prune(
        &self,
        cutoff: &str,
        dry_run: bool,
    ) -> Result<(Vec<Prunable>, u64, u64), StoreError> {
        let found = blocking(|| lock(&self.store).prunable(cutoff))?;
        let before = lock(&self.store).size();
        if dry_run || found.is_empty() {
            return Ok((found, before, before));
        }
        let ids: Vec<Uuid> = found.iter().map(|p| p.id).collect();
        self.write(|store| store.prune(&ids))?;
        let after = lock(&self.store).size();
        let mut names = lock(&self.names);
        names.retain(|_, conversations| {
            conversations.retain(|c| c.ended.is_none() || !ids.contains(&c.agent_id));
            !conversations.is_empty()
        });
        Ok((found, before, after))
    }

    /// Full-text search over every conversation in the store.
    pub fn search(&self, filter: &SearchFilter) -> Result<Vec<SearchHit>, StoreError> {
        blocking(|| lock(&self.store).search(filter))
    }

    /// Every conversation every name has had, oldest name first, each name's
    /// in spawn order.
    pub fn conversations(&self, name: Option<&AgentName>) -> Vec<ConversationSummary> {
        let names = lock(&self.names);
        let mut out: Vec<ConversationSummary> = names
            .iter()
            .filter(|(n, _)| name.is_none_or(|wanted| wanted == *n))
            .flat_map(|(n, conversations)| {
                conversations.iter().map(|c| ConversationSummary {
                    name: n.clone(),
                    agent_id: c.agent_id,
                    message_count: c.messages.len(),
                    first_at: c.messages.first().map(|m| m.timestamp.clone()),
                    last_at: c.messages.last().map(|m| m.timestamp.clone()),
                    ended: c.ended.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The last ended incarnation of every name, for `list --all`.
    pub fn ended(&self) -> Vec<AgentInfo> {
        lock(&self.names)
            .values()
            .filter_map(|conversations| conversations.last()?.ended.clone())
            .collect()
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
    pub fn read(
        &self,
        name: &AgentName,
        limit: Option<usize>,
        which: Which,
    ) -> Option<Vec<Message>> {
        let names = lock(&self.names);
        let conversations = names.get(name)?;
        let chosen = match which {
            Which::All => &conversations[..],
            Which::Last => &conversations[conversations.len().saturating_sub(1)..],
            Which::One(id) => {
                let at = conversations.iter().position(|c| c.agent_id == id)?;
                &conversations[at..=at]
            }
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

/// Runs store I/O; on the daemon's multi-threaded runtime the worker says it
/// is blocking, so its other tasks move to another thread instead of
/// stalling behind a slow disk.
fn blocking<T>(run: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}
