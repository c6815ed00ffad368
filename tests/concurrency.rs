//! Ordering and cancellation: one agent's messages never interleave,
//! different agents run side by side, and a client that goes away mid-stream
//! cancels its exchange without hurting the daemon.

mod common;

use std::io::BufRead;

use common::{Daemon, eventually, read_rest, transcript};
use serde_json::json;

#[test]
fn concurrent_messages_to_one_agent_never_interleave() {
    let daemon = Daemon::start(&["--echo-delay", "2ms"]);
    assert_eq!(
        daemon
            .json(
                "POST",
                "/agents",
                Some(json!({"name": "q", "provider": "echo"}))
            )
            .status,
        200
    );
    std::thread::scope(|scope| {
        for i in 0..12 {
            let daemon = &daemon;
            scope.spawn(move || {
                let content = format!("message {i} with several words in it");
                let stream = i % 2 == 0;
                let r = daemon.json(
                    "POST",
                    "/agents/q/message",
                    Some(json!({"content": content, "stream": stream})),
                );
                assert_eq!(r.status, 200, "{}", r.text());
            });
        }
    });
    let history = transcript(&daemon.json("GET", "/agents/q/history", None).json());
    assert_eq!(history.len(), 24);
    for pair in history.chunks(2) {
        assert_eq!(pair[0].0, "human");
        assert_eq!(pair[1].0, "q");
        assert_eq!(
            pair[0].1, pair[1].1,
            "a reply must follow its own message: {history:?}"
        );
    }
}

#[test]
fn messages_from_one_client_are_answered_in_order() {
    let daemon = Daemon::start(&["--echo-delay", "1ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "o", "provider": "echo"})),
    );
    for i in 0..5 {
        daemon.json(
            "POST",
            "/agents/o/message",
            Some(json!({"content": format!("n{i}")})),
        );
    }
    let humans: Vec<String> = transcript(&daemon.json("GET", "/agents/o/history", None).json())
        .into_iter()
        .filter(|(sender, _)| sender == "human")
        .map(|(_, content)| content)
        .collect();
    assert_eq!(humans, ["n0", "n1", "n2", "n3", "n4"]);
}

#[test]
fn different_agents_run_concurrently() {
    let daemon = Daemon::start(&["--echo-delay", "100ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "slow", "provider": "echo"})),
    );
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "quick", "provider": "echo"})),
    );
    let long_prompt = vec!["word"; 100].join(" ");
    let _slow = daemon.stream(
        "/agents/slow/message",
        &json!({"content": long_prompt, "stream": true}),
    );
    // While `slow` is mid-reply, `quick` answers a short message.
    let r = daemon.json(
        "POST",
        "/agents/quick/message",
        Some(json!({"content": "hi"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        daemon.json("GET", "/agents/slow", None).json()["state"],
        "processing"
    );
}

#[test]
fn a_client_dropped_mid_stream_leaves_a_partial_reply_marked_interrupted() {
    let daemon = Daemon::start(&["--echo-delay", "50ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "d", "provider": "echo"})),
    );
    let prompt = vec!["token"; 200].join(" ");
    let mut reader = daemon.stream(
        "/agents/d/message",
        &json!({"content": prompt, "stream": true}),
    );
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    drop(reader);

    eventually("the interrupted reply is recorded", || {
        transcript(&daemon.json("GET", "/agents/d/history", None).json()).len() == 2
    });
    let history = daemon.json("GET", "/agents/d/history", None).json();
    let reply = &history["messages"][1];
    assert_eq!(reply["sender"], "d");
    assert_eq!(reply["metadata"]["interrupted"], true);
    let partial = reply["content"].as_str().expect("content");
    assert!(
        !partial.is_empty() && prompt.starts_with(partial) && partial.len() < prompt.len(),
        "{partial:?}"
    );

    // The daemon and the agent carry on.
    assert_eq!(
        daemon.json("GET", "/agents/d", None).json()["state"],
        "idle"
    );
    let next = daemon.json(
        "POST",
        "/agents/d/message",
        Some(json!({"content": "again"})),
    );
    assert_eq!(next.status, 200);
    assert_eq!(
        next.json()["messages"][0]["metadata"]["context_messages"],
        3
    );
}

#[test]
fn shutting_an_agent_down_mid_reply_records_the_partial_and_ends_the_stream() {
    let daemon = Daemon::start(&["--echo-delay", "50ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "s", "provider": "echo"})),
    );
    let prompt = vec!["w"; 200].join(" ");
    let mut reader = daemon.stream(
        "/agents/s/message",
        &json!({"content": prompt, "stream": true}),
    );
    assert_eq!(daemon.json("DELETE", "/agents/s", None).status, 204);

    // DELETE waited for the worker, so the partial reply is already recorded.
    let history = daemon.json("GET", "/agents/s/history", None).json();
    assert_eq!(history["messages"][1]["metadata"]["interrupted"], true);

    let rest = read_rest(&mut reader);
    assert!(rest.contains("\"type\":\"error\""), "{rest}");
    assert!(rest.contains("\"status\":503"), "{rest}");
}

#[test]
fn a_task_whose_client_leaves_is_still_removed() {
    let daemon = Daemon::start(&["--echo-delay", "50ms"]);
    let prompt = vec!["w"; 200].join(" ");
    let reader = daemon.stream(
        "/agents/eph/task",
        &json!({"provider": "echo", "prompt": prompt, "stream": true}),
    );
    assert_eq!(daemon.json("GET", "/agents/eph", None).status, 200);
    drop(reader);
    eventually("the task agent is gone", || {
        daemon.json("GET", "/agents/eph", None).status == 404
    });
    assert_eq!(
        daemon.json("GET", "/agents/eph/history", None).json()["messages"][1]["metadata"]["interrupted"],
        true
    );
}

#[test]
fn a_non_streaming_client_that_leaves_also_cancels_its_exchange() {
    let daemon = Daemon::start(&["--echo-delay", "50ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "n", "provider": "echo"})),
    );
    let body = json!({"content": vec!["w"; 200].join(" ")}).to_string();
    let mut stream = std::os::unix::net::UnixStream::connect(daemon.env.socket()).expect("connect");
    std::io::Write::write_all(
        &mut stream,
        &common::build_request(
            "POST",
            "/agents/n/message",
            &[("Host", "localhost")],
            Some(&body),
        ),
    )
    .expect("write");
    eventually("the agent is processing", || {
        daemon.json("GET", "/agents/n", None).json()["state"] == "processing"
    });
    drop(stream);
    eventually("the interrupted reply is recorded", || {
        transcript(&daemon.json("GET", "/agents/n/history", None).json()).len() == 2
    });
    let history = daemon.json("GET", "/agents/n/history", None).json();
    assert_eq!(history["messages"][1]["metadata"]["interrupted"], true);
    assert_eq!(
        daemon.json("GET", "/agents/n", None).json()["state"],
        "idle"
    );
}

#[test]
fn concurrent_spawns_of_one_name_create_exactly_one_agent() {
    let daemon = Daemon::start(&[]);
    let socket = daemon.env.socket();
    let spawns: Vec<_> = (0..16)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
                let body = json!({"name": "twin", "provider": "echo"}).to_string();
                common::send(
                    stream,
                    &common::build_request(
                        "POST",
                        "/agents",
                        &[("Host", "localhost")],
                        Some(&body),
                    ),
                )
                .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = spawns
        .into_iter()
        .map(|s| s.join().expect("join"))
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(
        daemon
            .json("GET", "/agents", None)
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
