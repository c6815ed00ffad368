//! A bounded cache of live conversations' context (the turns a provider
//! call is given), so an exchange need not read its whole conversation back
//! from the store each time. The store stays the truth: an entry is only
//! ever a copy of what is committed, and anything not cached is read back.

use std::collections::HashMap;

use uuid::Uuid;

use crate::providers::Turn;

/// What all entries together may hold, in bytes of text (roughly).
const BUDGET: usize = 8 << 20;

/// A conversation longer than this is not cached: it is read back from the
/// store for each call (a long one costs a model more than the read). At
/// 256 KiB the perf bench's busiest agent (12,000 short turns) fell out of
/// the cache and every call read its conversation back.
const PER_CONVERSATION: usize = 1 << 20;

#[derive(Default)]
pub struct ContextCache {
    entries: HashMap<Uuid, Entry>,
    bytes: usize,
    /// Ticks on every use, for least-recently-used eviction.
    clock: u64,
    /// Moves on every [`forget`](Self::forget), so a read from the store
    /// that raced with a clear does not put the cleared turns back.
    generation: u64,
}

struct Entry {
    turns: Vec<Turn>,
    bytes: usize,
    used: u64,
}

impl ContextCache {
    /// A copy of the cached turns of incarnation `id`, if cached.
    pub fn get(&mut self, id: Uuid) -> Option<Vec<Turn>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&id)?;
        entry.used = self.clock;
        Some(entry.turns.clone())
    }

    pub fn holds(&self, id: Uuid) -> bool {
        self.entries.contains_key(&id)
    }

    /// Where the cache is now; pass it to [`fill`](Self::fill) after reading
    /// the store.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Caches `turns`, read from the store when the cache was at
    /// `generation`, unless something was forgotten since or they are too long.
    pub fn fill(&mut self, id: Uuid, turns: &[Turn], generation: u64) {
        let bytes = turns.iter().map(size).sum();
        if generation != self.generation || bytes > PER_CONVERSATION {
            return;
        }
        self.clock += 1;
        let entry = Entry {
            turns: turns.to_vec(),
            bytes,
            used: self.clock,
        };
        if let Some(old) = self.entries.insert(id, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        self.evict();
    }

    /// Adds a committed turn to a cached conversation, dropping its oldest
    /// beyond `keep` (0 keeps all), as the store's retention did.
    pub fn push(&mut self, id: Uuid, turn: Turn, keep: usize) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.bytes += size(&turn);
        self.bytes += size(&turn);
        entry.turns.push(turn);
        let excess = entry.turns.len().saturating_sub(keep);
        if keep > 0 && excess > 0 {
            let freed: usize = entry.turns.drain(..excess).map(|t| size(&t)).sum();
            entry.bytes -= freed;
            self.bytes -= freed;
        }
        if entry.bytes > PER_CONVERSATION {
            self.remove(id);
        }
        self.evict();
    }

    /// Drops incarnation `id`'s entry (its history was cleared or it ended).
    pub fn forget(&mut self, id: Uuid) {
        self.generation += 1;
        self.remove(id);
    }

    fn remove(&mut self, id: Uuid) {
        if let Some(entry) = self.entries.remove(&id) {
            self.bytes -= entry.bytes;
        }
    }

    /// Drops the least recently used entries until the cache is in budget.
    fn evict(&mut self) {
        while self.bytes > BUDGET {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(id, _)| *id)
            else {
                return;
            };
            self.remove(oldest);
        }
    }
}

/// An entry's cost: its text and the turn itself.
fn size(turn: &Turn) -> usize {
    turn.content.len() + std::mem::size_of::<Turn>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Role;

    fn turn(text: &str) -> Turn {
        Turn {
            role: Role::User,
            content: text.into(),
        }
    }

    #[test]
    fn a_fill_that_raced_with_a_forget_is_dropped_and_retention_applies() {
        let mut cache = ContextCache::default();
        let id = Uuid::new_v4();
        let seen = cache.generation();
        cache.forget(Uuid::new_v4());
        cache.fill(id, &[turn("a")], seen);
        assert!(!cache.holds(id));
        cache.fill(id, &[turn("a")], cache.generation());
        cache.push(id, turn("b"), 0);
        cache.push(id, turn("c"), 2);
        let texts: Vec<String> = cache
            .get(id)
            .unwrap()
            .into_iter()
            .map(|t| t.content.to_string())
            .collect();
        assert_eq!(texts, ["b", "c"]);
        cache.push(id, turn(&"x".repeat(PER_CONVERSATION)), 0);
        assert!(!cache.holds(id), "too long to keep");
        assert_eq!(cache.bytes, 0);
    }

    #[test]
    fn the_least_recently_used_go_first_when_over_budget() {
        let mut cache = ContextCache::default();
        let big = "x".repeat(PER_CONVERSATION / 2);
        let ids: Vec<Uuid> = (0..(2 * BUDGET / PER_CONVERSATION) + 2)
            .map(|_| Uuid::new_v4())
            .collect();
        for id in &ids {
            cache.fill(*id, &[turn(&big)], cache.generation());
            cache.get(ids[0]);
        }
        assert!(cache.bytes <= BUDGET);
        assert!(cache.holds(ids[0]), "used all along");
        assert!(!cache.holds(ids[1]), "the least recently used");
    }
}
