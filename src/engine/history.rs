//! History: every conversation every agent name has had, kept after the
//! agent is shut down, in the durable [`Store`].
//!
//! A name's history is a list of conversations, one per incarnation (spawn)
//! of that name. The current (last) one is what the provider sees as context
//! and what `GET /agents/{name}/history` returns; earlier ones stay readable
//! with `?all=true`. Messages live in the store only: memory holds each
//! conversation's totals (count, first and last time) and a bounded cache of
//! live context, so it does not grow with history. Every write is on disk
//! before this returns; memory is only updated once the store has it.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::context::ContextCache;
use super::lock;
use crate::model::{
    AgentConfig, AgentInfo, AgentName, Message, PrunedConversation, SearchFilter, SearchHit, Usage,
    UsageFilter, UsageGroup, UsageRecord,
};
use crate::providers::{Role, Turn};
use crate::store::{Store, StoreError, Write};

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
    store: Store,
    context: Mutex<ContextCache>,
    /// Retention: messages kept per incarnation; 0 keeps all.
    max_messages: usize,
}

/// A conversation's totals, as the store keeps them.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub message_count: usize,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

struct Conversation {
    agent_id: Uuid,
    totals: Totals,
    /// What `list --all` shows once the incarnation has ended (boxed: most
    /// conversations are live or few, and this keeps each small).
    ended: Option<Box<AgentInfo>>,
}

impl History {
    /// Stores the session id a coding agent reported with its incarnation.
    pub async fn set_session(&self, agent_id: Uuid, session: &str) -> Result<(), StoreError> {
        self.store
            .write(Write::set_session(agent_id, session))
            .await
    }

    /// The state dir the store lives in.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.store.dir()
    }

    pub fn new(store: Store, max_messages: usize) -> Self {
        Self {
            names: Mutex::new(HashMap::new()),
            store,
            context: Mutex::new(ContextCache::default()),
            max_messages,
        }
    }

    /// Starts the conversation of a newly spawned agent.
    pub async fn begin(
        &self,
        config: &AgentConfig,
        agent_id: Uuid,
        created_at: &str,
    ) -> Result<(), StoreError> {
        let write = Write::add_agent(agent_id, config, created_at)?;
        self.store.write(write).await?;
        self.insert(&config.name, agent_id, Totals::default(), None);
        Ok(())
    }

    /// Registers a conversation loaded from the store.
    pub fn insert(
        &self,
        name: &AgentName,
        agent_id: Uuid,
        totals: Totals,
        ended: Option<AgentInfo>,
    ) {
        lock(&self.names)
            .entry(name.clone())
            // Most names have one conversation: room for exactly that.
            .or_insert_with(|| Vec::with_capacity(1))
            .push(Conversation {
                agent_id,
                totals,
                ended: ended.map(Box::new),
            });
    }

    /// Records a message (and the usage it cost) for good: on disk first.
    pub async fn append(
        &self,
        name: &AgentName,
        agent_id: Uuid,
        message: &Message,
        usage: Option<Usage>,
    ) -> Result<(), StoreError> {
        self.append_call(name, agent_id, message, usage, None).await
    }

    /// Records a reply and, with it in the same transaction, the ledger row
    /// of the provider call that produced it.
    pub async fn append_call(
        &self,
        name: &AgentName,
        agent_id: Uuid,
        message: &Message,
        usage: Option<Usage>,
        call: Option<UsageRecord>,
    ) -> Result<(), StoreError> {
        let mut write = Write::add_message(agent_id, message, usage, self.max_messages)?;
        if let Some(record) = call {
            write = write.with_call(record);
        }
        // Copied for the cache only if the conversation is cached; tool
        // calls and results are never context (see `Store::turns`).
        let turn = (lock(&self.context).holds(agent_id) && !is_tool_message(message))
            .then(|| turn(&message.sender, &message.content));
        self.store.write(write).await?;
        if let Some(turn) = turn {
            lock(&self.context).push(agent_id, turn, self.max_messages);
        }
        {
            let mut names = lock(&self.names);
            let Some(conversation) = find(&mut names, name, agent_id) else {
                return Ok(());
            };
            let totals = &mut conversation.totals;
            totals.message_count += 1;
            totals
                .first_at
                .get_or_insert_with(|| message.timestamp.clone());
            totals.last_at = Some(message.timestamp.clone());
            if self.max_messages > 0 && totals.message_count > self.max_messages {
                // The oldest messages went in the same transaction, and with
                // them the first one's time: unknown here until asked for
                // (`conversations` reads it), so a full conversation costs
                // no store read per message.
                totals.message_count = self.max_messages;
                totals.first_at = None;
            }
        }
        Ok(())
    }

    /// The context a provider call is given: the incarnation's newest
    /// messages whose text fits in `budget` bytes (the newest always),
    /// oldest first, from the cache or else from the store. Reading stops at
    /// the window, so a call costs the window, not the whole history.
    pub fn context(&self, agent_id: Uuid, budget: usize) -> Result<Vec<Turn>, StoreError> {
        let generation = {
            let mut cache = lock(&self.context);
            if let Some(turns) = cache.get(agent_id) {
                return Ok(newest_within(turns, budget));
            }
            cache.generation()
        };
        let read = blocking(|| self.store.turns(agent_id, budget))?;
        let turns: Vec<Turn> = read
            .turns
            .into_iter()
            .map(|(sender, content)| turn(&sender, &content))
            .collect();
        // The cache holds whole conversations only: a window cut from a
        // longer one could not serve a later, larger window.
        if !read.whole {
            return Ok(starting_with_the_user(turns));
        }
        lock(&self.context).fill(agent_id, &turns, generation);
        Ok(turns)
    }

    /// Marks an incarnation ended, keeping `info` for `list --all`.
    pub async fn end(&self, name: &AgentName, info: AgentInfo) {
        let agent_id = info.id;
        if let Err(error) = self.store.write(Write::end_agent(agent_id)).await {
            tracing::error!(agent = %name, %error, "cannot record that the agent ended");
        }
        lock(&self.context).forget(agent_id);
        if let Some(conversation) = find(&mut lock(&self.names), name, agent_id) {
            conversation.ended = Some(Box::new(info));
        }
    }

    /// Forgets every message the name ever had. False if it never existed.
    pub fn clear(&self, name: &AgentName) -> Result<bool, StoreError> {
        if !lock(&self.names).contains_key(name) {
            return Ok(false);
        }
        blocking(|| self.store.write_blocking(Write::clear_history(name)))?;
        if let Some(conversations) = lock(&self.names).get_mut(name) {
            let mut cache = lock(&self.context);
            for conversation in conversations {
                conversation.totals = Totals::default();
                cache.forget(conversation.agent_id);
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
    ) -> Result<(Vec<PrunedConversation>, u64, u64), StoreError> {
        let found = blocking(|| self.store.prunable(cutoff))?;
        let before = self.store.size();
        if dry_run || found.is_empty() {
            return Ok((found, before, before));
        }
        let ids: Vec<Uuid> = found.iter().map(|p| p.id).collect();
        blocking(|| self.store.write_blocking(Write::prune(&ids)))?;
        let after = self.store.size();
        let mut names = lock(&self.names);
        names.retain(|_, conversations| {
            conversations.retain(|c| c.ended.is_none() || !ids.contains(&c.agent_id));
            !conversations.is_empty()
        });
        Ok((found, before, after))
    }

    /// Full-text search over every conversation in the store.
    pub fn search(&self, filter: &SearchFilter) -> Result<Vec<SearchHit>, StoreError> {
        blocking(|| self.store.search(filter))
    }

    /// The usage ledger's sums the filter covers, one row per group and
    /// price source.
    pub fn usage(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<(Option<String>, UsageGroup)>, StoreError> {
        blocking(|| self.store.usage(filter))
    }

    /// What the ledger's calls of `scope` since `since` spent (tokens, USD).
    pub fn spent(
        &self,
        scope: &crate::model::SpendScope,
        since: Option<&str>,
    ) -> Result<(u64, f64), StoreError> {
        blocking(|| self.store.spent(scope, since))
    }

    /// The bytes the store takes on disk.
    pub fn store_size(&self) -> u64 {
        self.store.size()
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
                    message_count: c.totals.message_count,
                    first_at: c.totals.first_at.clone(),
                    last_at: c.totals.last_at.clone(),
                    ended: c.ended.as_deref().cloned(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        for summary in &mut out {
            if summary.message_count > 0 && summary.first_at.is_none() {
                // Trimmed since it was counted (see `append`).
                summary.first_at = blocking(|| self.store.first_at(summary.agent_id))
                    .ok()
                    .flatten();
            }
        }
        out
    }

    /// The last ended incarnation of every name, for `list --all`.
    pub fn ended(&self) -> Vec<AgentInfo> {
        lock(&self.names)
            .values()
            .filter_map(|conversations| conversations.last()?.ended.as_deref().cloned())
            .collect()
    }

    pub fn len(&self, name: &AgentName, agent_id: Uuid) -> usize {
        let mut names = lock(&self.names);
        find(&mut names, name, agent_id).map_or(0, |c| c.totals.message_count)
    }

    /// The last `limit` messages (all when `None`) of the name's latest
    /// conversation, or of all its conversations when `all`; oldest first,
    /// read from the store. `None` when the name (or the conversation
    /// asked for) never existed.
    pub fn read(
        &self,
        name: &AgentName,
        limit: Option<usize>,
        which: Which,
    ) -> Result<Option<Vec<Message>>, StoreError> {
        let ids: Vec<Uuid> = {
            let names = lock(&self.names);
            let Some(conversations) = names.get(name) else {
                return Ok(None);
            };
            let mut ids = conversations.iter().map(|c| c.agent_id);
            match which {
                Which::All => ids.collect(),
                Which::Last => ids.next_back().into_iter().collect(),
                Which::One(id) if conversations.iter().any(|c| c.agent_id == id) => vec![id],
                Which::One(_) => return Ok(None),
            }
        };
        blocking(|| {
            // Newest conversation first, so a limit takes from the end.
            let mut out: Vec<Message> = Vec::new();
            let mut remaining = limit;
            for id in ids.into_iter().rev() {
                if remaining == Some(0) {
                    break;
                }
                let mut messages = self.store.messages(id, remaining)?;
                if let Some(left) = &mut remaining {
                    *left = left.saturating_sub(messages.len());
                }
                messages.append(&mut out);
                out = messages;
            }
            Ok(Some(out))
        })
    }
}

/// The newest `turns` whose text fits in `budget` bytes (the newest always).
fn newest_within(mut turns: Vec<Turn>, budget: usize) -> Vec<Turn> {
    let mut used = 0usize;
    let fitting = turns
        .iter()
        .rev()
        .take_while(|turn| {
            used = used.saturating_add(turn.content.len());
            used <= budget
        })
        .count()
        .max(1);
    let cut = turns.len().saturating_sub(fitting);
    if cut == 0 {
        return turns;
    }
    starting_with_the_user(turns.split_off(cut))
}

/// A window cut from a conversation starts with a user turn: a reply
/// without its question misleads a model, and some APIs (Anthropic's)
/// refuse a conversation that starts with the assistant.
fn starting_with_the_user(mut turns: Vec<Turn>) -> Vec<Turn> {
    let replies = turns
        .iter()
        .take_while(|turn| turn.role == Role::Assistant)
        .count();
    if replies < turns.len() {
        turns.drain(..replies);
    }
    turns
}

/// A tool call or result: kept in history, never sent back as context.
fn is_tool_message(message: &Message) -> bool {
    [crate::model::TOOL_CALL, crate::model::TOOL_RESULT].contains(&message.message_type.as_str())
}

fn turn(sender: &str, content: &str) -> Turn {
    let role = if sender == crate::model::HUMAN {
        Role::User
    } else {
        Role::Assistant
    };
    Turn {
        role,
        content: content.into(),
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
