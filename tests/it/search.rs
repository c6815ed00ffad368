//! Full-text search over every conversation ever held: live and ended
//! agents, after a restart and after kill -9, with filters and bad queries.

use crate::common;

use common::in_process::InProcess;
use common::{Daemon, Env, Harness};
use serde_json::Value;

const FLAGS: &[&str] = &["--no-tcp", "--echo-delay", "0ms"];

/// A daemon in this process, for what needs no process of its own.
fn start(env: Env) -> InProcess {
    InProcess::serve(env, FLAGS)
}

/// `serve` as a child process: for a kill -9, a signal or its log.
fn start_process(env: Env) -> Daemon {
    Daemon::start_in(env, FLAGS, None)
}

fn search(daemon: &impl Harness, args: &[&str]) -> Value {
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
    let daemon = start_process(env.clone());
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
    let daemon = start_process(env.clone());
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

#[test]
fn history_lists_every_conversation_and_exports_in_four_formats() {
    let daemon = start(Env::new());
    daemon.cli(&["spawn", "w", "--provider", "echo"]).ok();
    daemon.cli(&["message", "w", "first life"]).ok();
    daemon.cli(&["shutdown", "w"]).ok();
    daemon.cli(&["spawn", "w", "--provider", "echo"]).ok();
    daemon.cli(&["message", "w", "second life"]).ok();
    daemon.cli(&["spawn", "other", "--provider", "echo"]).ok();

    // --list: every conversation of every name, with the API's JSON under --json.
    let listed = daemon.cli(&["--json", "history", "--list"]);
    listed.ok();
    let conversations = listed.json()["conversations"].clone();
    let rows: Vec<(String, String, u64)> = conversations
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["state"].as_str().unwrap_or("").to_owned(),
                c["message_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("other".to_owned(), "idle".to_owned(), 0),
            ("w".to_owned(), "terminated".to_owned(), 2),
            ("w".to_owned(), "idle".to_owned(), 2),
        ],
        "{conversations}"
    );
    assert!(conversations[1]["first_at"].is_string());
    let human = daemon.cli(&["history", "--list", "w"]);
    human.ok();
    assert_eq!(human.stdout().lines().count(), 3, "{}", human.stdout());
    assert!(human.stdout().contains("terminated"), "{}", human.stdout());

    // One conversation by its id, through the API.
    let first_id = conversations[1]["id"].as_str().expect("id").to_owned();
    let one = daemon.request(
        "GET",
        &format!("/agents/w/history?conversation={first_id}"),
        None,
    );
    assert_eq!(one.json()["messages"][0]["content"], "first life");
    let missing = daemon.request(
        "GET",
        "/agents/w/history?conversation=00000000-0000-0000-0000-000000000000",
        None,
    );
    assert_eq!(missing.status, 404);
    assert_eq!(
        daemon
            .request("GET", "/agents/w/history?conversation=nope", None)
            .status,
        422
    );

    // Formats: text, json, jsonl, markdown (one heading per conversation).
    let text = daemon.cli(&["history", "w", "--format", "text"]);
    assert_eq!(text.stdout().lines().count(), 2, "{}", text.stdout());
    let json = daemon.cli(&["history", "w", "--format", "json"]);
    assert_eq!(json.json()["messages"].as_array().map(Vec::len), Some(2));
    let jsonl = daemon.cli(&["history", "w", "--all", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["content"], "first life");
    let markdown = daemon.cli(&["history", "w", "--all", "--format", "markdown"]);
    markdown.ok();
    let md = markdown.stdout();
    assert_eq!(
        md.matches("\n## ").count() + usize::from(md.starts_with("## ")),
        2,
        "{md}"
    );
    assert!(md.contains("**human** · "), "{md}");
    assert!(md.contains("second life"), "{md}");
    let last_only = daemon
        .cli(&["history", "w", "--format", "markdown"])
        .stdout();
    assert!(!last_only.contains("first life"), "{last_only}");
    let limited = daemon.cli(&[
        "history", "w", "--all", "--format", "markdown", "--limit", "1",
    ]);
    assert_eq!(
        limited.stdout().matches("**").count(),
        2,
        "{}",
        limited.stdout()
    );
    // Bad input: an unknown format is a usage error; a name that never existed, 4.
    assert_eq!(daemon.cli(&["history", "w", "--format", "yaml"]).code(), 2);
    assert_eq!(
        daemon
            .cli(&["history", "ghost", "--format", "markdown"])
            .code(),
        4
    );
    assert_eq!(daemon.cli(&["history", "ghost"]).code(), 4);
}

#[test]
fn prune_deletes_only_old_ended_conversations_and_gives_space_back() {
    let env = Env::new();
    let daemon = start(env.clone());
    let big = "x".repeat(200_000);
    for name in ["old", "live"] {
        daemon.cli(&["spawn", name, "--provider", "echo"]).ok();
        let sent = daemon.json(
            "POST",
            &format!("/agents/{name}/message"),
            Some(serde_json::json!({"content": format!("findme {big}")})),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    daemon.cli(&["shutdown", "old"]).ok();
    // Both conversations are now a minute old.
    env.advance(std::time::Duration::from_secs(60));

    // A dry run lists the ended one only, and deletes nothing.
    let dry = daemon.cli(&["--json", "prune", "--older-than", "1s", "--dry-run"]);
    dry.ok();
    let dry_report = dry.json();
    let listed: Vec<&str> = dry_report["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(listed, ["old"], "{}", dry.stdout());
    assert_eq!(daemon.cli(&["history", "old"]).code(), 0);
    // Too young to go: nothing is deleted.
    let young = daemon.cli(&["prune", "--older-than", "1h"]);
    young.ok();
    assert!(
        young.stdout().contains("no ended conversation"),
        "{}",
        young.stdout()
    );

    let done = daemon.cli(&["--json", "prune", "--older-than", "1s"]);
    done.ok();
    let report = done.json();
    assert_eq!(report["conversations"][0]["name"], "old");
    assert!(
        report["size_after"].as_u64() < report["size_before"].as_u64(),
        "no space given back: {report}"
    );
    // Gone from history, search and the conversation list; the live one stays.
    assert_eq!(daemon.cli(&["history", "old"]).code(), 4);
    assert_eq!(
        agents_found(&search(&daemon, &["findme"])),
        ["live", "live"]
    );
    assert_eq!(daemon.cli(&["history", "live"]).code(), 0);
    // Control plane: refused over TCP even with the token.
    let mut daemon = daemon;
    daemon.stop().expect("the daemon stops");
    let daemon = InProcess::start_in(env.clone(), true);
    let refused = daemon.tcp_json(
        "POST",
        "/prune",
        Some(serde_json::json!({"older_than": "1s"})),
    );
    assert_eq!(refused.status, 403);
    // And after a restart the pruned conversation is still gone.
    assert_eq!(daemon.cli(&["history", "old"]).code(), 4);
    // Bad input: a negative or unknown duration.
    assert_eq!(daemon.cli(&["prune", "--older-than=-5d"]).code(), 2);
    assert_eq!(daemon.cli(&["prune", "--older-than", "soon"]).code(), 2);
    let bad = daemon.json(
        "POST",
        "/prune",
        Some(serde_json::json!({"older_than": "forever"})),
    );
    assert_eq!(bad.status, 422);
}

#[test]
fn a_history_retention_prunes_ended_conversations_by_itself() {
    let env = Env::new();
    let mut daemon = start(env.clone());
    daemon.cli(&["spawn", "gone", "--provider", "echo"]).ok();
    daemon.cli(&["message", "gone", "bye"]).ok();
    daemon.cli(&["shutdown", "gone"]).ok();
    daemon.cli(&["spawn", "kept", "--provider", "echo"]).ok();
    daemon.cli(&["message", "kept", "hi"]).ok();
    daemon.stop().expect("the daemon stops");
    // A minute later (the env's clock, shared by both daemons), the
    // ended conversation is past a retention of 30 s; the live one is not
    // ended, so it stays whatever its age.
    env.advance(std::time::Duration::from_secs(60));
    let env = env.config("[history]\nretention = \"30s\"\n");
    let daemon = start(env);
    common::eventually("the retention prune to run", || {
        daemon.cli(&["history", "gone"]).code() == 4
    });
    assert_eq!(daemon.cli(&["history", "kept"]).code(), 0);
    assert!(
        daemon.log().contains("history retention"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_fan_out_asks_every_agent_at_once_and_one_failure_stops_no_other() {
    let env = Env::new().config("[providers]\nmax_retries = 0\nconnect_timeout = \"2s\"\n");
    let daemon = start(env);
    daemon.cli(&["spawn", "a", "--provider", "echo"]).ok();
    daemon.cli(&["spawn", "b", "--provider", "echo"]).ok();
    // An agent whose model server is not there: its message fails with a 502.
    let down = daemon.json(
        "POST",
        "/agents",
        Some(
            serde_json::json!({"name": "c", "provider": "openai", "model": "m",
                                "base_url": "http://127.0.0.1:9/v1"}),
        ),
    );
    assert_eq!(down.status, 200, "{}", down.text());

    // Not a terminal: each reply whole under its name; the error on stderr; exit 1.
    let out = daemon.cli(&["message", "a,b,c", "same", "question"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stdout().contains("a:\nsame question\n"),
        "{}",
        out.stdout()
    );
    assert!(
        out.stdout().contains("b:\nsame question\n"),
        "{}",
        out.stdout()
    );
    assert!(out.stderr().contains("c: "), "{}", out.stderr());

    // --json: the API's map of results.
    let json = daemon.cli(&["--json", "message", "a,b,c", "again"]);
    assert_eq!(json.code(), 1);
    let results = json.json();
    assert_eq!(results["a"]["messages"][0]["content"], "again");
    assert_eq!(results["b"]["messages"][0]["content"], "again");
    assert_eq!(results["c"]["status"], 502, "{results}");

    // An unknown name is that name's failure (404, so exit 4); the others answer.
    let unknown = daemon.cli(&["message", "a,ghost", "hello"]);
    assert_eq!(unknown.code(), 4, "{}", unknown.stderr());
    assert!(
        unknown.stdout().contains("a:\nhello"),
        "{}",
        unknown.stdout()
    );

    // The API streams every agent's lines tagged with its name, then one done.
    let streamed = daemon.json(
        "POST",
        "/messages",
        Some(serde_json::json!({"agents": ["a", "b"], "content": "x y z", "stream": true})),
    );
    assert_eq!(streamed.status, 200);
    let lines = streamed.lines();
    for agent in ["a", "b"] {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["agent"] == agent).collect();
        assert!(mine.iter().any(|l| l["type"] == "delta"), "{lines:?}");
        assert_eq!(mine.last().map(|l| l["type"].clone()), Some("done".into()));
        let reply = mine
            .iter()
            .find(|l| l["type"] == "message")
            .expect("a reply");
        assert_eq!(reply["message"]["content"], "x y z");
    }
    let last = lines.last().expect("lines");
    assert_eq!(last["type"], "done");
    assert!(last.get("agent").is_none(), "{last}");
    // Bad requests: no agents, an agent twice, a bad name.
    for body in [
        serde_json::json!({"agents": [], "content": "x"}),
        serde_json::json!({"agents": ["a", "a"], "content": "x"}),
        serde_json::json!({"agents": ["-x"], "content": "x"}),
    ] {
        assert_eq!(daemon.json("POST", "/messages", Some(body)).status, 422);
    }
    assert_eq!(daemon.cli(&["message", "a,a", "x"]).code(), 2);
    // b took part in three fan-outs: three exchanges in its history.
    assert_eq!(
        daemon.json("GET", "/agents/b/history", None).json()["messages"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
}

#[test]
fn a_trimmed_conversation_starts_at_its_oldest_kept_message() {
    let env = Env::new().config("[history]\nmax_messages_per_agent = 2\n");
    let daemon = start(env);
    daemon.spawn_echo("t");
    for word in ["one", "two", "three"] {
        let sent = daemon.json(
            "POST",
            "/agents/t/message",
            Some(serde_json::json!({"content": word})),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
    }
    let history = daemon.json("GET", "/agents/t/history", None).json();
    let kept = history["messages"].as_array().expect("messages").clone();
    assert_eq!(kept.len(), 2, "{history}");
    assert_eq!(kept[0]["content"], "three", "{history}");
    let listed = daemon.json("GET", "/conversations", None).json();
    let conversation = &listed["conversations"][0];
    assert_eq!(conversation["message_count"], 2, "{listed}");
    assert_eq!(conversation["first_at"], kept[0]["timestamp"], "{listed}");
    assert_eq!(conversation["last_at"], kept[1]["timestamp"], "{listed}");
}
