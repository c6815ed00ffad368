//! Every route's statuses and error shapes (SPEC §3), over the Unix socket.

use crate::common;
use crate::common::Harness;

use common::in_process::InProcess;
use common::{send, transcript};
use serde_json::{Value, json};
use std::os::unix::net::UnixStream;

#[track_caller]
fn assert_error(response: &common::HttpResponse, status: u16, fragment: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let detail = response.detail();
    assert!(
        detail.contains(fragment),
        "detail {detail:?} lacks {fragment:?}"
    );
}

#[test]
fn health_reports_the_daemon() {
    let daemon = InProcess::start();
    let health = daemon.json("GET", "/health", None).json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agents"], 0);
    assert_eq!(health["pid"], daemon.pid());
    assert!(health["version"].is_string());
    assert!(health["uptime_s"].is_u64());
}

#[test]
fn spawn_statuses() {
    let daemon = InProcess::start();
    // Unknown fields from older clients are ignored.
    let ok = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "a", "provider": "echo", "cwd": "/tmp", "credentials": {"x": 1}, "model": "m1"})),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let info = ok.json();
    assert_eq!(info["name"], "a");
    assert_eq!(info["agent_type"], "api");
    assert_eq!(info["provider"], "echo");
    assert_eq!(info["model"], "m1");
    assert_eq!(info["state"], "idle");
    assert_eq!(info["message_count"], 0);

    assert_error(
        &daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "a", "provider": "echo"})),
        ),
        409,
        "already exists",
    );
    assert_error(
        &daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "b", "provider": "nope"})),
        ),
        400,
        "unknown provider",
    );
    assert_error(
        &daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "b", "profile": "nope"})),
        ),
        400,
        "unknown profile",
    );
    assert_error(
        &daemon.json("POST", "/agents", Some(json!({"provider": "echo"}))),
        422,
        "name",
    );
    assert_error(
        &daemon.json("POST", "/agents", Some(json!({"name": 5}))),
        422,
        "`name`",
    );
    assert_error(
        &daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "x", "headers": [1]})),
        ),
        422,
        "`headers`",
    );
    assert_error(
        &daemon.json("POST", "/agents", Some(json!([1, 2]))),
        422,
        "invalid",
    );
    assert_error(
        &daemon.request("POST", "/agents", Some("{not json")),
        422,
        "invalid request body",
    );
    assert_error(&daemon.request("POST", "/agents", Some("")), 422, "empty");
    assert_error(
        &daemon.request("POST", "/agents", Some("{\"name\":\"z\"} trailing")),
        422,
        "trailing",
    );
    for bad in ["", ".dot", "-dash", "sp ace", "a/b", "ü", &"n".repeat(65)] {
        assert_error(
            &daemon.json("POST", "/agents", Some(json!({"name": bad}))),
            422,
            "name",
        );
    }
    assert_eq!(
        daemon
            .json("GET", "/agents", None)
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn list_filters() {
    let daemon = InProcess::start();
    daemon.spawn_echo("one");
    daemon.spawn_echo("two");
    let names = |path: &str| -> Vec<String> {
        let r = daemon.json("GET", path, None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|a| a["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names("/agents"), ["one", "two"]);
    assert_eq!(names("/agents/"), ["one", "two"]);
    assert_eq!(names("/agents?state=idle"), ["one", "two"]);
    assert_eq!(names("/agents?state=processing"), Vec::<String>::new());
    assert_eq!(names("/agents?provider=echo&state=idle"), ["one", "two"]);
    assert_eq!(names("/agents?provider=openai"), Vec::<String>::new());
    assert_error(
        &daemon.json("GET", "/agents?state=sleeping", None),
        422,
        "unknown state",
    );
}

#[test]
fn agent_routes_404_and_422() {
    let daemon = InProcess::start();
    assert_error(&daemon.json("GET", "/agents/ghost", None), 404, "ghost");
    assert_error(&daemon.json("DELETE", "/agents/ghost", None), 404, "ghost");
    assert_error(
        &daemon.json(
            "POST",
            "/agents/ghost/message",
            Some(json!({"content": "hi"})),
        ),
        404,
        "ghost",
    );
    assert_error(
        &daemon.json("GET", "/agents/ghost/history", None),
        404,
        "ghost",
    );
    // The name segment is decoded, then validated: no traversal, no NUL; an
    // encoded `/` is not a name at all, but a path that is not canonical.
    assert_error(&daemon.json("GET", "/agents/a%2Fb", None), 400, "/");
    assert_error(&daemon.json("GET", "/agents/..%2F..%2Fetc", None), 400, "/");
    assert_error(
        &daemon.json("GET", "/agents/.hidden/history", None),
        422,
        "name",
    );
    assert_error(&daemon.json("GET", "/agents/a%00b", None), 422, "name");
    assert_error(&daemon.json("GET", "/nope", None), 404, "no route");
    assert_error(
        &daemon.json("GET", "/agents/a/b/c/d", None),
        404,
        "no route",
    );
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let daemon = InProcess::start();
    let r = daemon.json("PUT", "/agents", None);
    assert_error(&r, 405, "PUT");
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
    assert_eq!(
        daemon.json("POST", "/health", None).header("allow"),
        Some("GET")
    );
    assert_eq!(
        daemon.json("GET", "/shutdown", None).header("allow"),
        Some("POST")
    );
    assert_eq!(daemon.json("GET", "/agents/x/message", None).status, 405);
    assert_eq!(
        daemon.json("PATCH", "/agents/x", None).header("allow"),
        Some("GET, DELETE")
    );
}

#[test]
fn message_statuses_and_shapes() {
    let daemon = InProcess::start();
    daemon.spawn_echo("m");
    assert_error(
        &daemon.json("POST", "/agents/m/message", Some(json!({}))),
        422,
        "content",
    );
    assert_error(
        &daemon.json("POST", "/agents/m/message", Some(json!({"content": 7}))),
        422,
        "`content`",
    );
    assert_error(
        &daemon.json(
            "POST",
            "/agents/m/message",
            Some(json!({"content": "x", "stream": "yes"})),
        ),
        422,
        "`stream`",
    );

    let reply = daemon.json(
        "POST",
        "/agents/m/message/",
        Some(json!({"content": "trailing slash", "extra": 1})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let messages = reply.json()["messages"]
        .as_array()
        .expect("messages")
        .clone();
    assert_eq!(messages.len(), 1, "replies only");
    let message = &messages[0];
    assert_eq!(message["sender"], "m");
    assert_eq!(message["content"], "trailing slash");
    assert_eq!(message["message_type"], "chat");
    assert!(uuid_like(&message["id"]), "{message}");
    let timestamp = message["timestamp"].as_str().expect("timestamp");
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "{timestamp}"
    );
    assert_eq!(message["metadata"]["finish_reason"], "stop");

    let info = daemon.json("GET", "/agents/m/", None).json();
    assert_eq!(info["message_count"], 2);
    assert_eq!(info["usage"]["output_tokens"], 2);
}

fn uuid_like(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
}

#[test]
fn history_limits_and_errors() {
    let daemon = InProcess::start();
    daemon.spawn_echo("h");
    for text in ["a", "b", "c"] {
        assert_eq!(
            daemon
                .json("POST", "/agents/h/message", Some(json!({"content": text})))
                .status,
            200
        );
    }
    let all = daemon.json("GET", "/agents/h/history", None).json();
    assert_eq!(transcript(&all).len(), 6);
    let last = daemon
        .json("GET", "/agents/h/history/?limit=2", None)
        .json();
    assert_eq!(
        transcript(&last),
        [("human".into(), "c".into()), ("h".into(), "c".into())]
    );
    assert_eq!(
        transcript(&daemon.json("GET", "/agents/h/history?limit=0", None).json()).len(),
        0
    );
    assert_eq!(
        transcript(
            &daemon
                .json("GET", "/agents/h/history?limit=99", None)
                .json()
        )
        .len(),
        6
    );
    assert_error(
        &daemon.json("GET", "/agents/h/history?limit=abc", None),
        422,
        "limit",
    );
    assert_error(
        &daemon.json("GET", "/agents/h/history?limit=-1", None),
        422,
        "limit",
    );
}

#[test]
fn respawn_starts_fresh_and_keeps_the_old_history() {
    let daemon = InProcess::start();
    daemon.spawn_echo("r");
    daemon.json(
        "POST",
        "/agents/r/message",
        Some(json!({"content": "first life"})),
    );
    assert_eq!(daemon.json("DELETE", "/agents/r", None).status, 204);
    daemon.spawn_echo("r");
    let reply = daemon
        .json(
            "POST",
            "/agents/r/message",
            Some(json!({"content": "second life"})),
        )
        .json();
    // Fresh conversation: only the new human message was context.
    assert_eq!(reply["messages"][0]["metadata"]["context_messages"], 1);
    let current = daemon.json("GET", "/agents/r/history", None).json();
    assert_eq!(
        transcript(&current),
        [
            ("human".into(), "second life".into()),
            ("r".into(), "second life".into())
        ]
    );
    let everything = daemon
        .json("GET", "/agents/r/history?all=true", None)
        .json();
    assert_eq!(transcript(&everything).len(), 4);
    assert_eq!(
        transcript(&everything)[0],
        ("human".into(), "first life".into())
    );
}

#[test]
fn task_runs_once_and_leaves_no_agent() {
    let daemon = InProcess::start();
    let r = daemon.json(
        "POST",
        "/agents/t1/task",
        Some(json!({"provider": "echo", "prompt": "do it", "cwd": "/"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["messages"][0]["content"], "do it");
    assert_error(&daemon.json("GET", "/agents/t1", None), 404, "t1");
    assert_eq!(
        transcript(&daemon.json("GET", "/agents/t1/history", None).json()).len(),
        2
    );

    // Streamed, with a matching name in the body.
    let s = daemon.json(
        "POST",
        "/agents/t2/task/",
        Some(json!({"name": "t2", "provider": "echo", "prompt": "go on", "stream": true})),
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.lines().last(), Some(&json!({"type": "done"})));
    assert_eq!(daemon.json("GET", "/agents", None).json(), json!([]));

    assert_error(
        &daemon.json(
            "POST",
            "/agents/t3/task",
            Some(json!({"name": "other", "prompt": "x"})),
        ),
        422,
        "name",
    );
    assert_error(
        &daemon.json("POST", "/agents/t3/task", Some(json!({"provider": "echo"}))),
        422,
        "prompt",
    );
    assert_error(
        &daemon.json(
            "POST",
            "/agents/t3/task",
            Some(json!({"provider": "bad", "prompt": "x"})),
        ),
        400,
        "provider",
    );
    assert_error(&daemon.json("GET", "/agents/t3", None), 404, "t3");
    daemon.spawn_echo("live");
    assert_error(
        &daemon.json("POST", "/agents/live/task", Some(json!({"prompt": "x"}))),
        409,
        "already exists",
    );
    // The live agent was not touched by the refused task.
    assert_eq!(
        daemon.json("GET", "/agents/live", None).json()["message_count"],
        0
    );
}

#[test]
fn shutdown_all_reports() {
    let daemon = InProcess::start();
    assert_eq!(
        daemon.json("DELETE", "/agents", None).json(),
        json!({"succeeded": [], "failed": {}})
    );
    daemon.spawn_echo("x1");
    daemon.spawn_echo("x2");
    let report = daemon.json("DELETE", "/agents/", None);
    assert_eq!(report.status, 200);
    assert_eq!(
        report.json(),
        json!({"succeeded": ["x1", "x2"], "failed": {}})
    );
    assert_eq!(daemon.json("GET", "/health", None).json()["agents"], 0);
}

#[test]
fn oversized_and_hostile_bodies() {
    let daemon = InProcess::start();
    daemon.spawn_echo("big");
    let huge = format!("{{\"content\": \"{}\"}}", "a".repeat(1024 * 1024 + 10));
    assert_error(
        &daemon.request("POST", "/agents/big/message", Some(&huge)),
        413,
        "limit",
    );

    // A Content-Length far beyond the limit is refused before any body is sent.
    let stream = UnixStream::connect(daemon.env.socket()).expect("connect");
    let head = "POST /agents HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 99999999999\r\n\r\n";
    let r = send(stream, head.as_bytes());
    assert_eq!(r.status, 413);

    // A chunked body that grows past the limit is cut off while reading.
    let stream = UnixStream::connect(daemon.env.socket()).expect("connect");
    let mut raw = b"POST /agents HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(send(stream, &raw).status, 413);

    // Deep nesting is an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_error(
        &daemon.request("POST", "/agents", Some(&deep)),
        422,
        "invalid",
    );
    let deep_object = format!(
        "{{\"name\":\"d\",\"headers\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert_eq!(
        daemon.request("POST", "/agents", Some(&deep_object)).status,
        422
    );

    // Garbage that is not HTTP at all gets a 400 (or nothing) and the
    // connection closed: read_to_end returns instead of timing out.
    let mut garbage = UnixStream::connect(daemon.env.socket()).expect("connect");
    garbage
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    std::io::Write::write_all(&mut garbage, b"\x00\x01\x02 not http\r\n\r\n").expect("write");
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut garbage, &mut sink).expect("closed, not left hanging");
    let answer = String::from_utf8_lossy(&sink);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Through all of that the daemon kept serving.
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
    let ok = daemon.json(
        "POST",
        "/agents/big/message",
        Some(json!({"content": "still here"})),
    );
    assert_eq!(ok.status, 200);
}
