//! The daemon's clock: what every recorded time (messages, events, the usage
//! ledger, approvals) and every "older than"/"since" cutoff reads.
//!
//! The real clock is the wall clock. A test holds a [`ClockHand`] of an
//! adjustable one and moves it forward instead of sleeping until time has
//! passed; the time is then the wall clock plus what the hand added, so it
//! keeps running, never goes back and stays a realistic date.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A cheap, cloneable source of the current time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Nanoseconds added to the wall clock; `None` for the real clock,
    /// which nothing can move.
    ahead: Option<Arc<AtomicI64>>,
}

/// Moves an adjustable [`Clock`] (and every clone of it) forward.
#[derive(Debug, Clone)]
pub struct ClockHand {
    ahead: Arc<AtomicI64>,
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts at the wall clock's time and runs with it, plus
    /// whatever its hand adds.
    pub fn adjustable() -> (Self, ClockHand) {
        let ahead = Arc::new(AtomicI64::new(0));
        let hand = ClockHand {
            ahead: ahead.clone(),
        };
        (Self { ahead: Some(ahead) }, hand)
    }

    /// The current UTC time.
    pub fn now(&self) -> OffsetDateTime {
        let wall = OffsetDateTime::now_utc();
        match &self.ahead {
            None => wall,
            Some(ahead) => wall + time::Duration::nanoseconds(ahead.load(Ordering::Relaxed)),
        }
    }

    /// The current UTC time as RFC 3339, the form every timestamp on the
    /// wire and in the store takes.
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }

    /// The UTC time `back` before now, as RFC 3339 (the form stored
    /// timestamps take, so the two compare as text).
    pub fn rfc3339_ago(&self, back: Duration) -> String {
        // A duration past what `time` can subtract reaches before any record.
        let at = time::Duration::try_from(back)
            .ok()
            .and_then(|back| self.now().checked_sub(back))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        rfc3339(at)
    }
}

impl ClockHand {
    /// Moves the clock forward by `by` (saturating at ~292 years).
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update: an addition that would overflow saturates instead.
        let _ = self
            .ahead
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ahead| {
                Some(ahead.saturating_add(nanos))
            });
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_moves_every_clone_forward_and_the_real_clock_not_at_all() {
        let (clock, hand) = Clock::adjustable();
        let copy = clock.clone();
        let before = copy.now();
        hand.advance(Duration::from_secs(3600));
        assert!(copy.now() - before >= time::Duration::hours(1));
        assert!(clock.now() - OffsetDateTime::now_utc() >= time::Duration::minutes(59));
        let real = Clock::system();
        assert!((real.now() - OffsetDateTime::now_utc()).abs() < time::Duration::minutes(1));
    }

    #[test]
    fn ago_compares_as_text_with_now_and_survives_huge_durations() {
        let (clock, hand) = Clock::adjustable();
        let then = clock.now_rfc3339();
        hand.advance(Duration::from_secs(2));
        assert!(clock.rfc3339_ago(Duration::from_secs(1)) > then);
        assert!(clock.rfc3339_ago(Duration::from_secs(3600)) < then);
        assert!(clock.rfc3339_ago(Duration::MAX).starts_with("1970-"));
        hand.advance(Duration::MAX);
        hand.advance(Duration::MAX);
    }
}
