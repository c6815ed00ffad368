//! Ordering and cancellation: one agent's messages never interleave,
//! different agents run side by side, and a client that goes away mid-stream
//! cancels its exchange without hurting the daemon.

use crate::common;
use crate::common::Harness;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Barrier;

use common::in_process::InProcess;
use common::{Env, eventually, read_rest, transcript};
use serde_json::json;

#[test]
fn concurrent_messages_to_one_agent_never_interleave() {
    const SENDERS: usize = 12;
    let daemon = InProcess::start_flags(&["--echo-delay", "2ms"]);
    daemon.spawn_echo("q");
    // Every sender connects first, then all send at once: the agent's queue
    // really has several messages from different connections in it.
    let ready = Barrier::new(SENDERS);
    let sent: Vec<String> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|i| {
                let (daemon, ready) = (&daemon, &ready);
                scope.spawn(move || {
                    let content = format!("message {i} with several words in it");
                    let stream = i % 2 == 0;
                    let body = json!({"content": content, "stream": stream}).to_string();
                    let connection = UnixStream::connect(daemon.env.socket()).expect("connect");
                    ready.wait();
                    let r = common::send(
                        connection,
                        &common::build_request(
                            "POST",
                            "/agents/q/message",
                            &[("Host", "localhost")],
                            Some(&body),
                        ),
                    );
                    assert_eq!(r.status, 200, "{i}: {}", r.text());
                    // Each caller gets its own message's reply, whole.
                    let reply = if stream {
                        let lines = r.lines();
                        assert_eq!(
                            lines.last().map(|l| l["type"].clone()),
                            Some(json!("done")),
                            "{i}: {}",
                            r.text()
                        );
                        lines
                            .iter()
                            .find(|l| l["type"] == "message")
                            .map(|l| l["message"]["content"].clone())
                    } else {
                        Some(r.json()["messages"][0]["content"].clone())
                    };
                    assert_eq!(reply, Some(json!(content)), "{i}: {}", r.text());
                    content
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().expect("a sender failed"))
            .collect()
    });
    let history = transcript(&daemon.json("GET", "/agents/q/history", None).json());
    assert_eq!(history.len(), 2 * SENDERS, "{history:?}");
    for pair in history.chunks(2) {
        assert_eq!(pair[0].0, "human");
        assert_eq!(pair[1].0, "q");
        assert_eq!(
            pair[0].1, pair[1].1,
            "a reply must follow its own message: {history:?}"
        );
    }
    // Every message was handled exactly once.
    let mut recorded: Vec<String> = history
        .iter()
        .filter(|(sender, _)| sender == "human")
        .map(|(_, content)| content.clone())
        .collect();
    let mut sent = sent;
    recorded.sort();
    sent.sort();
    assert_eq!(recorded, sent);
}

#[test]
fn messages_from_one_client_are_answered_in_order() {
    let daemon = InProcess::start_flags(&["--echo-delay", "1ms"]);
    daemon.spawn_echo("o");
    for i in 0..5 {
        let r = daemon.json(
            "POST",
            "/agents/o/message",
            Some(json!({"content": format!("n{i}")})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["messages"][0]["content"], format!("n{i}"));
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
    let daemon = InProcess::start_flags(&["--echo-delay", "100ms"]);
    daemon.spawn_echo("slow");
    daemon.spawn_echo("quick");
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
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["messages"][0]["content"], "hi");
    assert_eq!(
        daemon.json("GET", "/agents/slow", None).json()["state"],
        "processing"
    );
}

#[test]
fn a_client_dropped_mid_stream_leaves_a_partial_reply_marked_interrupted() {
    let daemon = InProcess::start_flags(&["--echo-delay", "50ms"]);
    daemon.spawn_echo("d");
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
    let daemon = InProcess::start_flags(&["--echo-delay", "50ms"]);
    daemon.spawn_echo("s");
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
    let daemon = InProcess::start_flags(&["--echo-delay", "50ms"]);
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
    let daemon = InProcess::start_flags(&["--echo-delay", "50ms"]);
    daemon.spawn_echo("n");
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
    let daemon = InProcess::start();
    let socket = daemon.env.socket();
    let ready = std::sync::Arc::new(Barrier::new(16));
    let spawns: Vec<_> = (0..16)
        .map(|_| {
            let socket = socket.clone();
            let ready = ready.clone();
            std::thread::spawn(move || {
                let stream = UnixStream::connect(socket).expect("connect");
                ready.wait();
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

/// Sends a streamed message on a connection of its own and returns that
/// connection once the response head arrived: a streamed reply's head is
/// sent as soon as the message is in the agent's queue.
fn enqueue(daemon: &InProcess, agent: &str, content: &str) -> BufReader<UnixStream> {
    try_enqueue(daemon, agent, content).unwrap_or_else(|status| panic!("{content}: {status}"))
}

/// [`enqueue`], or the status line of a refusal.
fn try_enqueue(
    daemon: &InProcess,
    agent: &str,
    content: &str,
) -> Result<BufReader<UnixStream>, String> {
    let mut connection = UnixStream::connect(daemon.env.socket()).expect("connect");
    connection
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    let body = json!({"content": content, "stream": true}).to_string();
    // A refused connection may be closed before the request is written.
    let _ = connection.write_all(&common::build_request(
        "POST",
        &format!("/agents/{agent}/message"),
        &[("Host", "localhost")],
        Some(&body),
    ));
    let mut reader = BufReader::new(connection);
    let mut status = String::new();
    reader.read_line(&mut status).expect("a response head");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(status);
    }
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("a response head");
        assert!(n > 0, "{content}: the head ended early");
        if line == "\r\n" {
            return Ok(reader);
        }
    }
}

/// [`enqueue`] under a connection limit: a connection the daemon has not
/// finished closing yet may still hold a slot for a moment.
fn enqueue_when_a_slot_is_free(
    daemon: &InProcess,
    agent: &str,
    content: &str,
) -> BufReader<UnixStream> {
    let mut queued = None;
    eventually("a free connection slot", || {
        queued = try_enqueue(daemon, agent, content).ok();
        queued.is_some()
    });
    queued.expect("queued")
}

/// A prompt the echo provider takes far longer than any test to answer.
fn endless_prompt() -> String {
    vec!["word"; 2000].join(" ")
}

#[test]
fn past_256_waiting_messages_an_agent_answers_429() {
    let daemon = InProcess::start_flags(&["--echo-delay", "50ms"]);
    daemon.spawn_echo("busy");
    daemon.spawn_echo("other");
    // The worker has taken this one off the queue and is busy with it.
    let _first = daemon.stream(
        "/agents/busy/message",
        &json!({"content": endless_prompt(), "stream": true}),
    );
    let _waiting: Vec<_> = (0..256)
        .map(|i| enqueue(&daemon, "busy", &format!("waiting {i}")))
        .collect();
    for stream in [false, true] {
        let refused = daemon.json(
            "POST",
            "/agents/busy/message",
            Some(json!({"content": "one too many", "stream": stream})),
        );
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert!(
            refused.detail().contains("256 messages waiting"),
            "{}",
            refused.detail()
        );
    }
    // The CLI says so too, as a failed operation.
    let out = daemon.cli(&["message", "busy", "from the CLI"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("256 messages waiting"),
        "{}",
        out.stderr()
    );
    // Only that agent is full: another one answers at once.
    let r = daemon.json(
        "POST",
        "/agents/other/message",
        Some(json!({"content": "hi"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A refused message was never recorded.
    let humans: Vec<String> = transcript(&daemon.json("GET", "/agents/busy/history", None).json())
        .into_iter()
        .filter(|(sender, _)| sender == "human")
        .map(|(_, content)| content)
        .collect();
    assert_eq!(humans, [endless_prompt()]);
}

#[test]
fn a_waiting_message_whose_client_leaves_is_dropped_unsent() {
    // Three connections at most, so a slot coming free shows that the daemon
    // has seen a client leave (and dropped what it was waiting for).
    let env = Env::new().config("[limits]\nmax_connections = 3\n");
    let daemon = InProcess::serve(env, &["--no-tcp", "--echo-delay", "50ms"]);
    daemon.spawn_echo("f");
    let prompt = endless_prompt();
    let first = enqueue_when_a_slot_is_free(&daemon, "f", &prompt);
    let leaving = enqueue_when_a_slot_is_free(&daemon, "f", "never sent");
    let mut staying = enqueue_when_a_slot_is_free(&daemon, "f", "sent after all");
    assert_eq!(
        daemon.request("GET", "/health", None).status,
        503,
        "every slot is taken"
    );
    drop(leaving);
    eventually("the daemon to see the waiting client leave", || {
        daemon.request("GET", "/health", None).status == 200
    });
    // The first reply ends (its client leaves); the queue moves on.
    drop(first);
    let rest = read_rest(&mut staying);
    assert!(rest.contains(r#""type":"done""#), "{rest}");
    // The long prompt shortened, so a failure prints something readable.
    let history: Vec<(String, String)> =
        transcript(&daemon.json("GET", "/agents/f/history", None).json())
            .into_iter()
            .map(|(sender, content)| {
                let short = if content.starts_with("word word") {
                    "word word …".to_owned()
                } else {
                    content
                };
                (sender, short)
            })
            .collect();
    let humans: Vec<&str> = history
        .iter()
        .filter(|(sender, _)| sender == "human")
        .map(|(_, content)| content.as_str())
        .collect();
    // Never recorded, so never sent: a message is on disk before the provider hears of it.
    assert_eq!(humans, ["word word …", "sent after all"], "{history:?}");
    assert_eq!(
        history.last(),
        Some(&("f".to_owned(), "sent after all".to_owned())),
        "{history:?}"
    );
}
