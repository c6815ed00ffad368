//! Feedback on a terminal while a model thinks: a line on stderr saying
//! whom we wait for and for how long (and, while the message waits behind
//! others to the same agent, how many), erased when the reply starts, and a
//! dim line after it with the time and tokens it took. Only when stderr is
//! a terminal and output is not `--json`; scripts see none of it.

use crate::model::Message;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the waiting line is redrawn.
const TICK: Duration = Duration::from_millis(100);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Carriage return and erase the line.
const ERASE: &str = "\r\x1b[2K";

/// What a conversation shows besides the reply.
pub struct Feedback {
    /// Stderr is a terminal and the output is not JSON.
    enabled: bool,
    quiet: bool,
    agent: String,
    started: Instant,
    waiting: Option<Waiting>,
}

impl Feedback {
    /// Starts showing the waiting line, if stderr is a terminal and not `json`.
    pub fn start(agent: &str, json: bool, quiet: bool) -> Self {
        let enabled = !json && std::io::stderr().is_terminal();
        Self {
            enabled,
            quiet,
            agent: agent.to_owned(),
            started: Instant::now(),
            waiting: enabled.then(|| Waiting::start(agent.to_owned())),
        }
    }

    /// The message waits behind `ahead` others (0: it is being sent now).
    pub fn queued(&mut self, ahead: usize) {
        if let Some(waiting) = &self.waiting {
            waiting.set_ahead(ahead);
        }
    }

    /// The reply started (or failed): erase the waiting line.
    pub fn reply_started(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            waiting.stop();
        }
    }

    /// The reply is complete: the dim line with its time and tokens.
    pub fn finished(&mut self, reply: Option<&Message>) {
        self.reply_started();
        if !self.enabled || self.quiet {
            return;
        }
        let mut summary = format!(
            "{}: {:.1}s",
            self.agent,
            self.started.elapsed().as_secs_f64()
        );
        let usage = reply.and_then(|m| m.metadata.get("usage"));
        let tokens = |key| usage.and_then(|u| u.get(key)).and_then(|n| n.as_u64());
        if let (Some(input), Some(output)) = (tokens("input_tokens"), tokens("output_tokens")) {
            summary.push_str(&format!(", {input} tokens in, {output} out"));
        }
        // `enabled` means stderr is a terminal.
        let colour = crate::colour::wanted(true);
        let line = if colour {
            format!("\x1b[2m{summary}\x1b[0m\n")
        } else {
            format!("{summary}\n")
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl Drop for Feedback {
    fn drop(&mut self) {
        self.reply_started();
    }
}

/// What the waiting line shows; `active` false once it is erased.
struct Line {
    active: bool,
    /// Messages ahead of ours in the agent's queue.
    ahead: usize,
}

/// The waiting line, redrawn by a thread until stopped. The flag and the
/// drawing share one lock, so nothing is drawn after the line is erased.
struct Waiting {
    active: Arc<Mutex<Line>>,
}

impl Waiting {
    fn start(agent: String) -> Self {
        let active = Arc::new(Mutex::new(Line {
            active: true,
            ahead: 0,
        }));
        let flag = Arc::clone(&active);
        let started = Instant::now();
        std::thread::spawn(move || {
            for frame in FRAMES.iter().cycle() {
                {
                    let state = flag.lock().unwrap_or_else(PoisonError::into_inner);
                    if !state.active {
                        return;
                    }
                    let what = match state.ahead {
                        0 => "waiting for the model…".to_owned(),
                        n => format!("queued behind {n} message(s)…"),
                    };
                    let line = format!(
                        "{ERASE}{frame} {agent}: {what} {}s",
                        started.elapsed().as_secs()
                    );
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(line.as_bytes());
                    let _ = stderr.flush();
                }
                std::thread::sleep(TICK);
            }
        });
        Self { active }
    }

    fn set_ahead(&self, ahead: usize) {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ahead = ahead;
    }

    fn stop(self) {
        let mut state = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if state.active {
            state.active = false;
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(ERASE.as_bytes());
            let _ = stderr.flush();
        }
    }
}
