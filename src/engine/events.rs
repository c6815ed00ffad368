//! The event bus: everything the engine reports to `GET /events` goes
//! through [`Events::emit`], onto one bounded broadcast channel.
//!
//! Bounded on purpose: the channel is a ring of [`CAPACITY`] events shared
//! by every subscriber. A subscriber that reads slowly is not waited for:
//! the ring overwrites what it has not read, and its next read says how
//! many events it missed (`lagged`). So no subscriber slows an agent, and
//! the memory events take is at most the ring, whoever subscribes.
//!
//! Bounded in bytes too: no event carries more than [`MAX_EVENT_TEXT`]
//! bytes of text. A longer message is sent with its text cut there and
//! `truncated` and `content_length` (the full length, in bytes) in its
//! metadata, so a reader fetches the rest from history by its id; a longer
//! delta is sent as several. The ring then holds at most about
//! `CAPACITY × MAX_EVENT_TEXT` (16 MiB), whatever the messages' sizes.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::lock;
use crate::model::{AgentName, Clock, Event, EventLine};

/// Events kept for subscribers that are behind.
pub const CAPACITY: usize = 1024;

/// The most text one event carries, in bytes.
pub const MAX_EVENT_TEXT: usize = 16 * 1024;

/// A cheap, cloneable handle to the daemon's event bus.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<EventLine>>,
    /// Dates every line (and, through [`Events::clock`], every approval).
    clock: Clock,
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
    /// A bus dating its lines by the wall clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// A bus dating its lines by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self {
            inner: Arc::new(Inner {
                sender,
                clock,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The clock the lines are dated by.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
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
    /// How many readers follow the events (`GET /events` streams).
    pub fn readers(&self) -> usize {
        self.inner.sender.receiver_count()
    }

    pub fn is_watched(&self) -> bool {
        self.inner.sender.receiver_count() > 0
    }

    fn send(&self, state: &mut State, agent: Option<&AgentName>, event: Event) {
        if !self.is_watched() {
            return;
        }
        match event {
            Event::Delta { content } if content.len() > MAX_EVENT_TEXT => {
                for piece in pieces(&content, MAX_EVENT_TEXT) {
                    let content = piece.to_owned();
                    self.send_one(state, agent, Event::Delta { content });
                }
            }
            Event::Message { mut message } if message.content.len() > MAX_EVENT_TEXT => {
                let length = message.content.len();
                message
                    .content
                    .truncate(floor_char_boundary(&message.content, MAX_EVENT_TEXT));
                message.content.shrink_to_fit();
                message.metadata.insert("truncated".into(), true.into());
                message
                    .metadata
                    .insert("content_length".into(), length.into());
                self.send_one(state, agent, Event::Message { message });
            }
            event => self.send_one(state, agent, event),
        }
    }

    fn send_one(&self, state: &mut State, agent: Option<&AgentName>, event: Event) {
        state.last_id += 1;
        let line = EventLine {
            id: Some(state.last_id),
            ts: self.inner.clock.now_rfc3339(),
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

/// The largest index at most `at` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` in pieces of at most `size` bytes, cut at character boundaries.
fn pieces(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // A character is at most 4 bytes: a piece is never empty.
        let cut = floor_char_boundary(rest, size.max(4));
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    #[tokio::test]
    async fn no_event_carries_more_than_max_event_text() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let long = "é".repeat(MAX_EVENT_TEXT); // two bytes each
        let message = Message::new("a", long.clone(), serde_json::Map::new());
        let id = message.id;
        events.emit(None, Event::Message { message });
        let Event::Message { message } = &rx.recv().await.unwrap().event else {
            panic!("a message event");
        };
        assert_eq!(message.id, id);
        assert_eq!(message.content.len(), MAX_EVENT_TEXT);
        assert_eq!(message.metadata["truncated"], true);
        assert_eq!(message.metadata["content_length"], long.len());
        events.emit(
            None,
            Event::Delta {
                content: long.clone(),
            },
        );
        let mut joined = String::new();
        while let Ok(line) = rx.try_recv() {
            let Event::Delta { content } = &line.event else {
                panic!("a delta");
            };
            assert!(content.len() <= MAX_EVENT_TEXT);
            joined.push_str(content);
        }
        assert_eq!(joined, long);
    }

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
