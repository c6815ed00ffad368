//! The event bus: everything the engine reports to `GET /events` goes
//! through [`Events::emit`], onto one bounded broadcast channel.
//!
//! Bounded on purpose: the channel is a ring of [`CAPACITY`] events shared
//! by every subscriber. A subscriber that reads slowly is not waited for:
//! the ring overwrites what it has not read, and its next read says how
//! many events it missed (`lagged`). So no subscriber slows an agent, and
//! the memory events take is at most the ring, whoever subscribes.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::lock;
use crate::model::{AgentName, Event, EventLine, now_rfc3339};

/// Events kept for subscribers that are behind.
pub const CAPACITY: usize = 1024;

/// A cheap, cloneable handle to the daemon's event bus.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<EventLine>>,
    /// The last id given out, and whether the daemon's `shutdown` was sent.
    /// Ids are assigned and sent under this lock, so every subscriber sees
    /// them strictly increasing.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_id: u64,
    stopping: bool,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self {
            inner: Arc::new(Inner {
                sender,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Reports an event about `agent` (or the daemon, for `None`) to every
    /// subscriber. Never blocks; costs nothing when no one subscribes.
    pub fn emit(&self, agent: Option<&AgentName>, event: Event) {
        let mut state = lock(&self.inner.state);
        self.send(&mut state, agent, event);
    }

    /// Builds the event only if someone will read it (a message event
    /// copies the whole message).
    pub fn emit_with(&self, agent: Option<&AgentName>, event: impl FnOnce() -> Event) {
        if self.is_watched() {
            self.emit(agent, event());
        }
    }

    /// Whether anyone subscribes now.
    pub fn is_watched(&self) -> bool {
        self.inner.sender.receiver_count() > 0
    }

    fn send(&self, state: &mut State, agent: Option<&AgentName>, event: Event) {
        if !self.is_watched() {
            return;
        }
        state.last_id += 1;
        let line = EventLine {
            id: Some(state.last_id),
            ts: now_rfc3339(),
            agent: agent.cloned(),
            event,
        };
        // Fails only when no one subscribes, and then no one misses it.
        let _ = self.inner.sender.send(Arc::new(line));
    }

    /// Reports, once, that the daemon is stopping. When this returns, the
    /// event is in every current subscriber's queue.
    pub fn stopping(&self) {
        let mut state = lock(&self.inner.state);
        if !state.stopping {
            state.stopping = true;
            self.send(&mut state, None, Event::Shutdown { restart: false });
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventLine>> {
        self.inner.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_much_it_missed() {
        let events = Events::new();
        let mut rx = events.subscribe();
        for _ in 0..CAPACITY + 10 {
            events.emit(None, Event::Restored);
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        let next = rx.recv().await.unwrap();
        assert_eq!(next.id, Some(11));
    }

    #[tokio::test]
    async fn stopping_is_sent_once() {
        let events = Events::new();
        let mut rx = events.subscribe();
        events.stopping();
        events.stopping();
        assert_eq!(
            rx.recv().await.unwrap().event,
            Event::Shutdown { restart: false }
        );
        assert!(rx.try_recv().is_err());
    }
}
