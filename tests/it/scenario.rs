//! The seed scenario end to end, once through the CLI over the Unix socket
//! and once with raw HTTP over the loopback TCP listener.

use crate::common;
use crate::common::Harness;

use common::{Daemon, transcript};
use serde_json::json;

#[test]
fn scenario_over_the_unix_socket_with_the_cli() {
    let mut daemon = Daemon::start(&[]);

    let spawned = daemon.cli(&[
        "spawn",
        "--name",
        "alice",
        "--provider",
        "echo",
        "--instructions",
        "be brief",
    ]);
    spawned.ok();
    assert_eq!(spawned.stdout(), "spawned agent 'alice' (provider echo)\n");

    let list = daemon.cli(&["list"]);
    list.ok();
    assert!(list.stdout().starts_with("NAME"), "{}", list.stdout());
    assert!(list.stdout().contains("alice"), "{}", list.stdout());

    let first = daemon.cli(&["message", "alice", "hello there"]);
    first.ok();
    assert_eq!(first.stdout(), "hello there\n");
    let second = daemon.cli(&["message", "alice", "what did I say?"]);
    second.ok();
    assert_eq!(second.stdout(), "what did I say?\n");

    let history = daemon.cli(&["--json", "history", "alice"]);
    history.ok();
    let history = history.json();
    assert_eq!(
        transcript(&history),
        [
            ("human".into(), "hello there".into()),
            ("alice".into(), "hello there".into()),
            ("human".into(), "what did I say?".into()),
            ("alice".into(), "what did I say?".into()),
        ]
    );
    // The second reply was made with the first exchange as context.
    let last = &history["messages"][3];
    assert_eq!(last["metadata"]["context_messages"], 3);
    assert_eq!(last["metadata"]["instructions"], true);
    assert_eq!(last["message_type"], "chat");

    let limited = daemon.cli(&["history", "alice", "--limit", "2"]);
    limited.ok();
    let stdout = limited.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("] human: what did I say?"), "{lines:?}");
    assert!(lines[1].ends_with("] alice: what did I say?"), "{lines:?}");

    daemon.cli(&["shutdown", "alice"]).ok();
    let after = daemon.cli(&["--json", "history", "alice"]);
    after.ok();
    assert_eq!(transcript(&after.json()).len(), 4);
    assert_eq!(daemon.cli(&["--json", "list"]).json(), json!([]));
    assert_eq!(daemon.json("GET", "/health", None).json()["agents"], 0);

    let stop = daemon.cli(&["serve", "--stop"]);
    stop.ok();
    assert!(daemon.wait_exit().success());
    assert!(!daemon.env.pid_file().exists(), "PID file left behind");
    assert!(!daemon.env.socket().exists(), "socket left behind");
}

#[test]
fn scenario_over_tcp_with_the_token() {
    let mut daemon = Daemon::start_tcp(&[]);

    let spawned = daemon.tcp_json(
        "POST",
        "/agents",
        Some(json!({"name": "bob", "provider": "echo"})),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    assert_eq!(spawned.json()["state"], "idle");
    assert!(spawned.json().get("api_key").is_none());

    let listed = daemon.tcp_json("GET", "/agents", None).json();
    assert_eq!(listed[0]["name"], "bob");

    let reply = daemon.tcp_json(
        "POST",
        "/agents/bob/message",
        Some(json!({"content": "one two"})),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["messages"][0]["content"], "one two");
    assert_eq!(reply.json()["messages"][0]["sender"], "bob");

    let streamed = daemon.tcp_json(
        "POST",
        "/agents/bob/message",
        Some(json!({"content": "three four five", "stream": true})),
    );
    assert_eq!(streamed.status, 200);
    assert_eq!(
        streamed.header("content-type"),
        Some("application/x-ndjson")
    );
    let lines = streamed.lines();
    let deltas: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "delta")
        .map(|l| l["content"].as_str().expect("content"))
        .collect();
    assert_eq!(deltas, ["three ", "four ", "five"]);
    let n = lines.len();
    assert_eq!(lines[n - 2]["type"], "message");
    assert_eq!(lines[n - 2]["message"]["content"], "three four five");
    assert_eq!(lines[n - 2]["message"]["metadata"]["context_messages"], 3);
    assert_eq!(lines[n - 1], json!({"type": "done"}));

    let history = daemon.tcp_json("GET", "/agents/bob/history?limit=3", None);
    assert_eq!(
        transcript(&history.json()),
        [
            ("bob".into(), "one two".into()),
            ("human".into(), "three four five".into()),
            ("bob".into(), "three four five".into()),
        ]
    );

    assert_eq!(daemon.tcp_json("DELETE", "/agents/bob", None).status, 204);
    assert_eq!(
        transcript(&daemon.tcp_json("GET", "/agents/bob/history", None).json()).len(),
        4
    );
    assert_eq!(daemon.tcp_json("GET", "/agents", None).json(), json!([]));
    assert_eq!(daemon.tcp_json("GET", "/health", None).json()["agents"], 0);

    // Stopping the daemon is a control-plane operation: not over TCP.
    let refused = daemon.tcp_json("POST", "/shutdown", None);
    assert_eq!(refused.status, 403);
    assert!(
        refused.detail().contains("Unix socket"),
        "{}",
        refused.detail()
    );

    assert!(daemon.terminate().success());
    assert!(!daemon.env.pid_file().exists());
    assert!(!daemon.env.socket().exists());
    assert!(!daemon.env.token_file().exists());
}

#[test]
fn the_cli_falls_back_to_tcp_when_the_socket_is_gone() {
    let daemon = Daemon::start_tcp(&[]);
    daemon.cli(&["spawn", "carol", "--provider", "echo"]).ok();
    std::fs::remove_file(daemon.env.socket()).expect("remove socket");

    // The address comes from the daemon's own record, R/http.address.
    let out = daemon
        .env
        .command(&["message", "carol", "over tcp"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tcp\n");
}
