//! Full-text search over every conversation ever held: live and ended
//! agents, after a restart and after kill -9, with filters and bad queries.

mod common;

use common::{Daemon, Env};
use serde_json::Value;

fn start(env: Env) -> Daemon {
    Daemon::start_in(env, &["--no-tcp", "--echo-delay", "0ms"], None)
}

fn search(daemon: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json", "search"];
    all.extend_from_slice(args);
    let out = daemon.cli(&all);
    out.ok();
    out.json()
}

fn agents_found(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["agent"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn search_finds_live_and_ended_conversations_after_a_restart_and_kill_9() {
    let env = Env::new();
    let daemon = start(env.clone());
    for name in ["live", "ended"] {
        daemon.cli(&["spawn", name, "--provider", "echo"]).ok();
    }
    daemon
        .cli(&["message", "live", "the zebra crossing is closed"])
        .ok();
    daemon.cli(&["message", "ended", "a zebra at the zoo"]).ok();
    daemon
        .cli(&["message", "ended", "nothing striped here"])
        .ok();
    daemon.cli(&["shutdown", "ended"]).ok();

    let found = search(&daemon, &["zebra"]);
    let mut agents = agents_found(&found);
    agents.sort();
    agents.dedup();
    assert_eq!(agents, ["ended", "live"], "{found}");
    let hit = &found["results"][0];
    for field in [
        "agent",
        "conversation",
        "message_id",
        "timestamp",
        "sender",
        "snippet",
        "rank",
    ] {
        assert!(hit.get(field).is_some(), "{field} missing in {hit}");
    }
    assert!(
        hit["snippet"].as_str().unwrap_or("").contains("**zebra**"),
        "{hit}"
    );
    // Each message is found as itself: the human's and the echoed reply.
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(4),
        "{found}"
    );

    // Filters: one agent, a phrase, a limit, since.
    assert_eq!(
        agents_found(&search(&daemon, &["zebra", "--agent", "live"])),
        ["live", "live"]
    );
    let phrase = search(&daemon, &["\"zebra crossing\""]);
    assert_eq!(agents_found(&phrase), ["live", "live"], "{phrase}");
    assert_eq!(
        agents_found(&search(&daemon, &["zebra", "--limit", "1"])).len(),
        1
    );
    assert_eq!(
        agents_found(&search(&daemon, &["zebra", "--since", "1h"])).len(),
        4
    );
    assert!(
        agents_found(&search(
            &daemon,
            &["zebra", "--since", "2999-01-01T00:00:00Z"]
        ))
        .is_empty()
    );

    // Human output names the agent and shows the match.
    let out = daemon.cli(&["search", "crossing"]);
    out.ok();
    assert!(out.stdout().contains("live (human"), "{}", out.stdout());
    assert!(out.stdout().contains("**crossing**"), "{}", out.stdout());

    // kill -9, then a restart: still found, and new writes are found too.
    let mut daemon = daemon;
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("reap");
    let daemon = start(env.clone());
    assert_eq!(agents_found(&search(&daemon, &["zebra"])).len(), 4);
    daemon.cli(&["message", "live", "one more zebra"]).ok();
    assert_eq!(agents_found(&search(&daemon, &["zebra"])).len(), 6);
}

#[test]
fn bad_searches_are_clear_errors_never_5xx() {
    let daemon = start(Env::new());
    daemon.cli(&["spawn", "a", "--provider", "echo"]).ok();
    daemon.cli(&["message", "a", "hello"]).ok();
    for query in ["\"unbalanced", "AND", "a:b", "NOT"] {
        let response = daemon.request(
            "GET",
            &format!(
                "/search?q={}",
                query
                    .replace('"', "%22")
                    .replace(' ', "+")
                    .replace(':', "%3A")
            ),
            None,
        );
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        assert!(
            response.detail().contains("search query"),
            "{}",
            response.detail()
        );
    }
    assert_eq!(daemon.request("GET", "/search?q=", None).status, 400);
    assert_eq!(
        daemon.request("GET", "/search?q=x&since=-5d", None).status,
        422
    );
    assert_eq!(
        daemon.request("GET", "/search?q=x&agent=..", None).status,
        422
    );
    assert_eq!(daemon.request("POST", "/search?q=x", None).status, 405);
    let out = daemon.cli(&["search", "\"unbalanced"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("search query is not valid"),
        "{}",
        out.stderr()
    );
    let out = daemon.cli(&["search", " "]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let out = daemon.cli(&["search", "x", "--since", "soon"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    // The daemon is still fine.
    assert_eq!(daemon.request("GET", "/health", None).status, 200);
}
