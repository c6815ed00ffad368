//! The daemon's clock: what the core records is dated by the clock it is
//! given (`ServeConfig::clock`), and "since" counts back from that clock's
//! now. In-process daemons read their env's clock, which a test moves
//! forward (`Env::advance`) instead of sleeping.

use crate::common;
use crate::events::Subscriber;

use std::time::Duration;

use common::Env;
use common::Harness;
use common::in_process::InProcess;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

#[track_caller]
fn at(timestamp: &str) -> OffsetDateTime {
    OffsetDateTime::parse(timestamp, &Rfc3339).unwrap_or_else(|e| panic!("{timestamp:?}: {e}"))
}

/// How far `timestamp` is ahead of the wall clock.
#[track_caller]
fn ahead(timestamp: &str) -> time::Duration {
    at(timestamp) - OffsetDateTime::now_utc()
}

#[test]
fn messages_events_and_the_ledger_are_dated_by_the_daemons_clock() {
    let env = Env::new();
    let daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0ms"]);
    daemon.spawn_echo("a");
    daemon.said("a", "early bird");
    env.advance(TWO_HOURS);
    let mut events = Subscriber::open(&daemon, "/events", &[]);
    let reply = daemon.said("a", "late owl");

    // History: the first exchange at the wall clock's time, the second
    // two hours on, as the clock says.
    let history = daemon.messages("a");
    let stamps: Vec<&str> = history.iter().map(|m| m.timestamp.as_str()).collect();
    assert_eq!(stamps.len(), 4, "{history:?}");
    let hour = time::Duration::hours(1);
    assert!(ahead(stamps[0]).abs() < hour, "{stamps:?}");
    assert!(ahead(stamps[1]).abs() < hour, "{stamps:?}");
    assert!(ahead(stamps[2]) > hour, "{stamps:?}");
    assert!(ahead(stamps[3]) > hour, "{stamps:?}");
    // The reply as its caller got it is the one recorded.
    assert_eq!(reply.last(), history.last());

    // The event lines, and the message they carry, by the same clock.
    let seen = events.until(|e| e["type"] == "message" && e["message"]["sender"] == "a");
    let last = seen.last().expect("an event");
    assert!(ahead(last["ts"].as_str().expect("ts")) > hour, "{last}");
    assert_eq!(last["message"]["timestamp"], stamps[3]);

    // "Since an hour ago" counts back from the clock: only the late ones.
    let found = daemon.cli(&["--json", "search", "bird", "--since", "1h"]);
    found.ok();
    assert_eq!(found.json()["results"], serde_json::json!([]));
    let found = daemon.cli(&["--json", "search", "bird"]);
    found.ok();
    assert_eq!(found.json()["results"].as_array().map(Vec::len), Some(2));
    let found = daemon.cli(&["--json", "search", "owl", "--since", "1h"]);
    found.ok();
    assert_eq!(found.json()["results"].as_array().map(Vec::len), Some(2));

    let usage = |query: &str| {
        let response = daemon.json("GET", &format!("/usage{query}"), None);
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["total"]["calls"].clone()
    };
    assert_eq!(usage(""), 2);
    assert_eq!(usage("?since=1h"), 1);
}

#[test]
fn a_restart_in_the_same_env_keeps_the_clock_where_it_was_moved() {
    let env = Env::new();
    let mut daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0ms"]);
    daemon.spawn_echo("a");
    env.advance(TWO_HOURS);
    daemon.said("a", "before the restart");
    daemon.stop().expect("the daemon stops");
    let daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0ms"]);
    daemon.said("a", "after the restart");
    let stamps: Vec<OffsetDateTime> = daemon
        .messages("a")
        .iter()
        .map(|m| at(&m.timestamp))
        .collect();
    assert_eq!(stamps.len(), 4, "{stamps:?}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(stamps[3] - OffsetDateTime::now_utc() > time::Duration::hours(1));
}
