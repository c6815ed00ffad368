//! The log of refused requests and connections, which anyone who can reach
//! a listener can cause: so no line may repeat what they sent beyond a
//! short escaped prefix, and past a few lines an interval they are counted
//! instead of written, one summary line per interval. A flood of garbage
//! then costs the log a few hundred bytes every ten seconds, not megabytes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one allowance of refusal lines lasts.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Refusals logged one by one in each interval; the rest are counted.
const LINES_PER_INTERVAL: u32 = 5;

/// The characters of a peer-chosen string (a path, a header) a log line
/// may show.
const PREFIX_CHARS: usize = 48;

/// The allowance of refusal lines. One per daemon, shared by the guard and
/// the listeners.
#[derive(Debug)]
pub struct Refusals {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    /// Refusals in this interval not logged one by one.
    counted: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                counted: 0,
            }),
        }
    }
}

impl Refusals {
    /// Records one refusal: `log` writes its line if this interval's
    /// allowance has room, else the refusal is only counted.
    pub fn note(&self, log: impl FnOnce()) {
        let mut window = crate::engine::lock(&self.window);
        if window.started.elapsed() >= INTERVAL {
            window.summarize();
            window.started = Instant::now();
            window.logged = 0;
        }
        if window.logged < LINES_PER_INTERVAL {
            window.logged += 1;
            drop(window);
            log();
        } else {
            window.counted += 1;
        }
    }

    /// Writes the count of what went unlogged, if anything did; run once an
    /// interval and at shutdown, so a count is never lost.
    pub fn flush(&self) {
        crate::engine::lock(&self.window).summarize();
    }
}

impl Window {
    fn summarize(&mut self) {
        if self.counted == 0 {
            return;
        }
        tracing::warn!(
            refused = self.counted,
            interval_s = self.started.elapsed().as_secs(),
            "more requests or connections were refused than are logged one by one; counted only"
        );
        self.counted = 0;
    }
}

/// At most [`PREFIX_CHARS`] characters of `text`, control characters and
/// quotes escaped, and its full length when cut: what a log line may show
/// of something a peer chose.
pub fn prefix(text: &str) -> String {
    let shown: String = text.chars().take(PREFIX_CHARS).collect();
    let escaped = shown.escape_debug().to_string();
    if shown.len() == text.len() {
        escaped
    } else {
        format!("{escaped}… ({} bytes)", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_short_and_escaped() {
        assert_eq!(prefix("/health"), "/health");
        let long = format!("/{}", "a".repeat(16_000));
        let shown = prefix(&long);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.ends_with("(16001 bytes)"), "{shown}");
        assert_eq!(prefix("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    #[test]
    fn past_the_allowance_refusals_are_counted() {
        let refusals = Refusals::default();
        let mut logged = 0;
        for _ in 0..100 {
            refusals.note(|| logged += 1);
        }
        assert_eq!(logged, LINES_PER_INTERVAL);
        assert_eq!(
            crate::engine::lock(&refusals.window).counted,
            100 - u64::from(LINES_PER_INTERVAL)
        );
        refusals.flush();
        assert_eq!(crate::engine::lock(&refusals.window).counted, 0);
    }
}
