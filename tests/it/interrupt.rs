//! `POST /agents/{name}/interrupt`: the turn running now stops, what the
//! model had said is kept (marked interrupted) and given to the waiting
//! caller, messages queued behind it run next, and the agent serves on.
//! The model is a fake provider holding its reply mid-stream until the
//! daemon closes the connection.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::common;
use crate::events::Subscriber;

use common::fake_provider::{FakeProvider, Reply, Step, openai_chunks};
use common::in_process::InProcess;
use common::{Env, Harness, HttpResponse, build_request, eventually, read_rest, send, transcript};
use serde_json::{Value, json};

fn daemon(tcp: bool) -> InProcess {
    let env = Env::new().config("[providers]\nmax_retries = 0\n");
    let flags: &[&str] = if tcp { &[] } else { &["--no-tcp"] };
    InProcess::serve(env, flags)
}

fn spawn(daemon: &InProcess, name: &str, fake: &FakeProvider) {
    let body = json!({
        "name": name, "provider": "openai", "model": "gpt-test",
        "api_key": "sk-test-key-000", "base_url": fake.url("/v1"),
    });
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
}

/// A reply that says `said`, then holds until the daemon hangs up.
fn held(said: &str) -> Reply {
    // The role chunk, then `said`; the rest never comes.
    let blocks = openai_chunks(&[said]);
    Reply::sse(&blocks[..2]).insert(2, Step::AwaitClose)
}

fn interrupt(daemon: &InProcess, name: &str) -> HttpResponse {
    daemon.json("POST", &format!("/agents/{name}/interrupt"), None)
}

/// The last message in the agent's history.
fn last_message(daemon: &InProcess, name: &str) -> Value {
    let history = daemon
        .json("GET", &format!("/agents/{name}/history"), None)
        .json();
    history["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .cloned()
        .expect("a message in history")
}

#[track_caller]
fn assert_interrupted_by_request(message: &Value, said: &str) {
    assert_eq!(message["content"], said, "{message}");
    assert_eq!(message["metadata"]["interrupted"], true, "{message}");
    let reason = message["metadata"]["interrupted_reason"]
        .as_str()
        .expect("a reason");
    assert!(reason.contains("interrupted by request"), "{reason}");
}

/// Sends a streamed message over the socket and returns once the response
/// head has arrived: the daemon answers the head only after the message is
/// queued, so the caller knows it is in line.
fn queue_streamed(socket: PathBuf, path: &str, content: &str) -> BufReader<UnixStream> {
    let body = json!({"content": content, "stream": true}).to_string();
    common::open_request(&socket, "POST", path, Some(&body))
}

#[test]
fn a_streamed_turn_stops_its_partial_is_kept_and_the_agent_serves_on() {
    let fake = FakeProvider::start();
    fake.push(held("so far "));
    let daemon = daemon(false);
    spawn(&daemon, "a", &fake);

    let mut reader = daemon.stream(
        "/agents/a/message",
        &json!({"content": "talk", "stream": true}),
    );
    let response = interrupt(&daemon, "a");
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json(), json!({"interrupted": true}));

    // The caller gets the partial reply as its reply, then the end.
    let rest = read_rest(&mut reader);
    let message_line = rest
        .lines()
        .find(|line| line.contains("\"type\":\"message\""))
        .unwrap_or_else(|| panic!("no message line in {rest}"));
    let line: Value = serde_json::from_str(message_line).expect("a JSON line");
    assert_interrupted_by_request(&line["message"], "so far ");
    assert!(rest.contains("\"type\":\"done\""), "{rest}");

    // The upstream request was cancelled, the partial is in history.
    eventually("the upstream request is stopped", || {
        fake.closed_by_client() == 1
    });
    assert_interrupted_by_request(&last_message(&daemon, "a"), "so far ");
    assert_eq!(
        daemon.json("GET", "/agents/a", None).json()["state"],
        "idle"
    );

    // The next message runs as usual.
    fake.push(Reply::sse(&openai_chunks(&["back ", "again"])));
    let next = daemon.say("a", "again?");
    assert_eq!(next.status, 200, "{}", next.text());
    let reply = &next.json()["messages"][0];
    assert_eq!(reply["content"], "back again");
    assert!(reply["metadata"].get("interrupted").is_none(), "{reply}");
}

#[test]
fn a_plain_caller_gets_the_partial_and_events_show_it() {
    let fake = FakeProvider::start();
    fake.push(held("half a "));
    let daemon = daemon(false);
    spawn(&daemon, "j", &fake);
    let mut events = Subscriber::open(&daemon, "/events?agent=j", &[]);

    let socket = daemon.env().socket();
    let caller = std::thread::spawn(move || {
        let body = json!({"content": "talk"}).to_string();
        let stream = UnixStream::connect(socket).expect("connect");
        send(
            stream,
            &build_request(
                "POST",
                "/agents/j/message",
                &[("Host", "localhost")],
                Some(&body),
            ),
        )
    });
    // Interrupt once the model has said something.
    events.until(|event| event["type"] == "delta");
    let response = interrupt(&daemon, "j");
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json(), json!({"interrupted": true}));

    let answered = caller.join().expect("the caller thread");
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert_interrupted_by_request(&answered.json()["messages"][0], "half a ");

    // The stored reply's event carries the flag; the state goes back to idle.
    let seen = events.until(|event| event["type"] == "state" && event["new"] == "idle");
    let stored = seen
        .iter()
        .find(|event| event["type"] == "message" && event["message"]["sender"] == "j")
        .unwrap_or_else(|| panic!("no message event in {seen:?}"));
    assert_interrupted_by_request(&stored["message"], "half a ");
    assert_eq!(
        transcript(&daemon.json("GET", "/agents/j/history", None).json()).len(),
        2
    );
}

#[test]
fn a_message_queued_behind_the_turn_still_runs() {
    let fake = FakeProvider::start();
    fake.push(held("first "));
    fake.push(Reply::sse(&openai_chunks(&["second ", "reply"])));
    let daemon = daemon(false);
    spawn(&daemon, "q", &fake);

    let mut first = daemon.stream(
        "/agents/q/message",
        &json!({"content": "one", "stream": true}),
    );
    let mut second = queue_streamed(daemon.env().socket(), "/agents/q/message", "two");
    let response = interrupt(&daemon, "q");
    assert_eq!(response.json(), json!({"interrupted": true}));

    let first = read_rest(&mut first);
    assert!(first.contains("interrupted by request"), "{first}");
    let second = read_rest(&mut second);
    assert!(second.contains("\"type\":\"done\""), "{second}");
    assert!(!second.contains("interrupted"), "{second}");

    let history = daemon.json("GET", "/agents/q/history", None).json();
    let contents: Vec<String> = transcript(&history)
        .into_iter()
        .map(|(_, content)| content)
        .collect();
    assert_eq!(contents, ["one", "first ", "two", "second reply"]);
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn an_idle_agent_is_left_alone() {
    let daemon = daemon(false);
    daemon.spawn_echo("calm");
    let response = interrupt(&daemon, "calm");
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json(), json!({"interrupted": false}));

    let reply = daemon.say("calm", "hello there");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["messages"][0]["content"], "hello there");
    // After a finished turn there is nothing to stop either.
    assert_eq!(
        interrupt(&daemon, "calm").json(),
        json!({"interrupted": false})
    );
    assert!(
        last_message(&daemon, "calm")["metadata"]
            .get("interrupted")
            .is_none()
    );
}

#[test]
fn an_unknown_agent_is_not_found() {
    let daemon = daemon(false);
    let response = interrupt(&daemon, "nobody");
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.json()["code"], "not_found");
    let wrong = daemon.json("GET", "/agents/nobody/interrupt", None);
    assert_eq!(wrong.status, 405, "{}", wrong.text());
}

#[test]
fn it_works_over_tcp_with_the_token_only() {
    let fake = FakeProvider::start();
    fake.push(held("over tcp "));
    let daemon = daemon(true);
    spawn(&daemon, "t", &fake);

    let mut reader = daemon.stream(
        "/agents/t/message",
        &json!({"content": "talk", "stream": true}),
    );
    let port = daemon.port().expect("a TCP port");
    let host = format!("127.0.0.1:{port}");
    let refused = daemon.tcp_request("POST", "/agents/t/interrupt", &[("Host", &host)], None);
    assert_eq!(refused.status, 401, "{}", refused.text());

    let response = daemon.tcp_json("POST", "/agents/t/interrupt", None);
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json(), json!({"interrupted": true}));
    let rest = read_rest(&mut reader);
    assert!(rest.contains("interrupted by request"), "{rest}");
    assert_interrupted_by_request(&last_message(&daemon, "t"), "over tcp ");
}
