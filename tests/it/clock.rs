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
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

#[track_caller]
fn at(timestamp: &Value) -> OffsetDateTime {
    let text = timestamp.as_str().expect("a timestamp is a string");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// How far `timestamp` is ahead of the wall clock.
#[track_caller]
fn ahead(timestamp: &Value) -> time::Duration {
    at(timestamp) - OffsetDateTime::now_utc()
}

#[track_caller]
fn said(daemon: &InProcess, name: &str, content: &str) {
    let reply = daemon.say(name, content);
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn messages_events_and_the_ledger_are_dated_by_the_daemons_clock() {
    let env = Env::new();
    let daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0ms"]);
    daemon.spawn_echo("a");
    said(&daemon, "a", "early bird");
    env.advance(TWO_HOURS);
    let mut events = Subscriber::open(&daemon, "/events", &[]);
    said(&daemon, "a", "late owl");

    // History: the first exchange at the wall clock's time, the second
    // two hours on, as the clock says.
    let history = daemon.history("a");
    let stamps: Vec<&Value> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| &m["timestamp"])
        .collect();
    assert_eq!(stamps.len(), 4, "{history}");
    let hour = time::Duration::hours(1);
    assert!(ahead(stamps[0]).abs() < hour, "{history}");
    assert!(ahead(stamps[1]).abs() < hour, "{history}");
    assert!(ahead(stamps[2]) > hour, "{history}");
    assert!(ahead(stamps[3]) > hour, "{history}");

    // The event lines, and the message they carry, by the same clock.
    let seen = events.until(|e| e["type"] == "message" && e["message"]["sender"] == "a");
    let last = seen.last().expect("an event");
    assert!(ahead(&last["ts"]) > hour, "{last}");
    assert_eq!(&last["message"]["timestamp"], stamps[3]);

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
    said(&daemon, "a", "before the restart");
    daemon.stop().expect("the daemon stops");
    let daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0ms"]);
    said(&daemon, "a", "after the restart");
    let history = daemon.history("a");
    let stamps: Vec<OffsetDateTime> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| at(&m["timestamp"]))
        .collect();
    assert_eq!(stamps.len(), 4, "{history}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{history}");
    assert!(stamps[3] - OffsetDateTime::now_utc() > time::Duration::hours(1));
}
