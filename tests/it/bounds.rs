//! Every buffer on the model side has a byte limit: a reply that never
//! ends, a line that never ends, a reply that takes too long, a huge body
//! sent whole, a long model listing, a key the model echoes back, and the
//! context window each call is given. Figures (RSS, time) are in
//! `benches/perf.rs`; these check what is kept and that the daemon serves on.

use crate::common;
use crate::common::Harness;
use crate::events::Subscriber;

use common::fake_provider::{FakeProvider, Reply, Step, data, openai_chunks};
use common::in_process::InProcess;
use common::{Env, eventually, pairs, sent_turns, transcript};
use serde_json::{Value, json};

fn daemon(config: &str) -> InProcess {
    let config = format!("[providers]\nidle_timeout = \"5s\"\nmax_retries = 0\n{config}\n");
    InProcess::serve(Env::new().config(&config), &["--no-tcp"])
}

fn spawn(daemon: &InProcess, name: &str, fake: &FakeProvider, extra: Value) {
    let mut body = json!({
        "name": name, "provider": "openai", "model": "gpt-test",
        "api_key": "sk-test-key-000", "base_url": fake.url("/v1"),
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
}

/// One OpenAI chunk carrying `text`.
fn chunk(text: &str) -> String {
    data(&json!({
        "id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    }))
}

/// The reply of the last exchange, after it was cut short: in history,
/// marked interrupted, with a reason that mentions `why`.
#[track_caller]
fn assert_kept_interrupted(daemon: &InProcess, name: &str, why: &str) -> String {
    let history = daemon.history(name);
    let reply = history["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .cloned()
        .expect("a reply in history");
    assert_eq!(reply["sender"], name, "{reply}");
    assert_eq!(reply["metadata"]["interrupted"], true, "{reply}");
    let reason = reply["metadata"]["interrupted_reason"]
        .as_str()
        .expect("a reason");
    assert!(reason.contains(why), "{reason}");
    reply["content"].as_str().expect("content").to_owned()
}

/// After a cut: the agent answers the next message as usual.
#[track_caller]
fn assert_serves_on(daemon: &InProcess, fake: &FakeProvider, name: &str) {
    fake.push(Reply::sse(&openai_chunks(&["still ", "here"])));
    let response = daemon.say(name, "are you there?");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["messages"][0]["content"], "still here");
}

#[test]
fn a_reply_that_never_ends_stops_at_max_reply_bytes_and_is_kept() {
    let fake = FakeProvider::start();
    let piece = "y".repeat(1000);
    fake.push(Reply::sse(&[chunk("start ")]).insert(1, Step::Forever(chunk(&piece))));
    let daemon = daemon("[limits]\nmax_reply_bytes = 65536\n");
    spawn(&daemon, "runaway", &fake, json!({}));

    let response = daemon.say("runaway", "talk forever");
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(
        response.text().contains("limits.max_reply_bytes"),
        "{}",
        response.text()
    );
    let kept = assert_kept_interrupted(&daemon, "runaway", "limits.max_reply_bytes (64 KiB)");
    assert_eq!(kept.len(), 65536);
    assert!(kept.starts_with("start yyy"), "{}", &kept[..20]);
    eventually("the upstream request is stopped", || {
        fake.closed_by_client() == 1
    });
    assert_serves_on(&daemon, &fake, "runaway");
}

#[test]
fn a_line_that_never_ends_is_cut_at_the_line_limit() {
    let fake = FakeProvider::start();
    fake.push(
        Reply::sse(&[chunk("partial"), "data: ".to_owned()])
            .insert(2, Step::Forever("x".repeat(64 * 1024))),
    );
    let daemon = daemon("");
    spawn(&daemon, "liner", &fake, json!({}));

    let response = daemon.say("liner", "one long line please");
    assert_eq!(response.status, 503, "{}", response.text());
    let kept = assert_kept_interrupted(&daemon, "liner", "longer than 1 MiB");
    assert_eq!(kept, "partial");
    eventually("the upstream request is stopped", || {
        fake.closed_by_client() == 1
    });
    assert_serves_on(&daemon, &fake, "liner");
}

#[test]
fn a_reply_that_streams_past_turn_timeout_is_cut_and_kept() {
    let fake = FakeProvider::start();
    // Never silent (a keep-alive comment without pause), so only the
    // whole-turn deadline can end it.
    fake.push(
        Reply::sse(&[chunk("so far")]).insert(1, Step::Forever(": keep-alive\n\n".to_owned())),
    );
    let daemon = daemon("turn_timeout = \"300ms\"\n");
    spawn(&daemon, "slow", &fake, json!({}));

    let response = daemon.say("slow", "take your time");
    assert_eq!(response.status, 503, "{}", response.text());
    let kept = assert_kept_interrupted(&daemon, "slow", "providers.turn_timeout (300ms)");
    assert_eq!(kept, "so far");
    eventually("the upstream request is stopped", || {
        fake.closed_by_client() == 1
    });
    assert_serves_on(&daemon, &fake, "slow");
}

#[test]
fn a_huge_reply_sent_whole_is_refused_and_the_daemon_serves_on() {
    let fake = FakeProvider::start();
    let huge = "z".repeat(200 * 1024);
    fake.push(Reply::json(
        200,
        &json!({"object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": huge}, "finish_reason": "stop"}
        ]}),
    ));
    let daemon = daemon("[limits]\nmax_reply_bytes = 65536\n");
    spawn(&daemon, "whole", &fake, json!({}));

    let response = daemon.say("whole", "everything at once");
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(
        response.text().contains("larger than 128 KiB"),
        "{}",
        response.text()
    );
    assert_serves_on(&daemon, &fake, "whole");
}

#[test]
fn a_model_listing_longer_than_an_error_body_is_read_whole() {
    let fake = FakeProvider::start();
    let models: Vec<Value> = (0..2000)
        .map(
            |n| json!({"id": format!("vendor/a-model-with-a-long-name-{n:04}"), "object": "model"}),
        )
        .collect();
    let listing = json!({"object": "list", "data": models});
    assert!(listing.to_string().len() > 64 * 1024);
    fake.push(Reply::json(200, &listing));
    let daemon = daemon("");
    let base = fake.url("/v1");
    let out = daemon.env.cli_env(
        &[("OPENAI_API_KEY", "sk-models")],
        &[
            "models",
            "--base-url",
            &base,
            "--api-key-env",
            "OPENAI_API_KEY",
        ],
    );
    out.ok();
    assert_eq!(out.stdout().lines().count(), 2000);
    assert_eq!(
        out.stdout().lines().last(),
        Some("vendor/a-model-with-a-long-name-1999")
    );
}

#[test]
fn a_reply_that_echoes_the_key_is_scrubbed_before_it_is_kept_or_sent() {
    const KEY: &str = "sk-echoed-secret-4242";
    let fake = FakeProvider::start();
    // The key split across deltas, as a model's tokens would split it.
    fake.push(Reply::sse(&openai_chunks(&[
        "Your key is sk-ech",
        "oed-secr",
        "et-4242, ",
        "right?",
    ])));
    let daemon = daemon("");
    spawn(&daemon, "parrot", &fake, json!({"api_key": KEY}));
    let mut events = Subscriber::open(&daemon, "/events?agent=parrot", &[]);

    let response = daemon.say("parrot", "what is my key?");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!response.text().contains("4242"), "{}", response.text());
    let expected = "Your key is [redacted], right?";
    assert_eq!(response.json()["messages"][0]["content"], expected);
    assert_eq!(
        transcript(&daemon.history("parrot"))[1],
        ("parrot".to_owned(), expected.to_owned())
    );
    let seen = events.until(|e| e["type"] == "message" && e["message"]["sender"] == "parrot");
    for event in &seen {
        assert!(!event.to_string().contains("4242"), "{event}");
    }
    let deltas: String = seen
        .iter()
        .filter(|e| e["type"] == "delta")
        .filter_map(|e| e["content"].as_str())
        .collect();
    assert_eq!(deltas, expected);
    let found = daemon.json("GET", "/search?q=4242", None);
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.json()["results"], json!([]));
}

#[test]
fn only_the_newest_messages_that_fit_the_context_window_are_sent() {
    let fake = FakeProvider::start();
    for reply in ["ra", "rb", "rc", "rd"] {
        fake.push(Reply::sse(&openai_chunks(&[&reply.repeat(50)])));
    }
    // 256 tokens: 1024 bytes, 9 of them the instructions'.
    let daemon = daemon("context_limit = 256\n");
    spawn(
        &daemon,
        "window",
        &fake,
        json!({"instructions": "Be brief."}),
    );
    for prompt in ["a", "b", "c", "d"] {
        let response = daemon.say("window", &prompt.repeat(300));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // Newest first: d (300) + rc (100) + c (300) + rb (100) = 800 fit, b
    // (300) does not; a window starts with a question, so rb goes too.
    let sent = sent_turns(&fake.last_request().body);
    assert_eq!(
        sent,
        pairs(&[
            ("system", "Be brief."),
            ("user", &"c".repeat(300)),
            ("assistant", &"rc".repeat(50)),
            ("user", &"d".repeat(300)),
        ])
    );
    // History itself stays complete.
    assert_eq!(transcript(&daemon.history("window")).len(), 8);
}

#[test]
fn a_message_larger_than_the_window_is_still_sent_alone() {
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&openai_chunks(&["one"])));
    fake.push(Reply::sse(&openai_chunks(&["two"])));
    let daemon = daemon("context_limit = 256\n");
    spawn(&daemon, "big", &fake, json!({}));
    daemon.say("big", "first");
    let huge = "h".repeat(4000);
    let response = daemon.say("big", &huge);
    assert_eq!(response.status, 200, "{}", response.text());
    let sent = sent_turns(&fake.last_request().body);
    assert_eq!(sent, pairs(&[("user", &huge)]));
}

#[test]
fn a_large_message_event_carries_a_truncated_body_with_its_id_and_length() {
    let daemon = InProcess::serve(Env::new(), &["--no-tcp", "--echo-delay", "0ms"]);
    daemon.spawn_echo("big");
    let mut events = Subscriber::open(&daemon, "/events?agent=big", &[]);
    let prompt = "w".repeat(100_000);
    let response = daemon.say("big", &prompt);
    assert_eq!(response.status, 200, "{}", response.text());

    let seen = events.until(|e| e["type"] == "message" && e["message"]["sender"] == "big");
    let messages: Vec<&Value> = seen.iter().filter(|e| e["type"] == "message").collect();
    let stored = daemon.history("big");
    assert_eq!(messages.len(), 2, "the prompt and the reply");
    for (event, kept) in messages.iter().zip(stored["messages"].as_array().unwrap()) {
        let message = &event["message"];
        assert_eq!(message["id"], kept["id"]);
        assert_eq!(message["metadata"]["truncated"], true, "{message}");
        assert_eq!(message["metadata"]["content_length"], 100_000);
        assert_eq!(message["content"].as_str().unwrap().len(), 16 * 1024);
        assert_eq!(
            kept["content"].as_str().unwrap().len(),
            100_000,
            "history is whole"
        );
    }
    // The reply's text comes whole through its deltas, in pieces.
    let deltas: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "delta")
        .filter_map(|e| e["content"].as_str())
        .collect();
    assert!(deltas.iter().all(|d| d.len() <= 16 * 1024));
    assert_eq!(deltas.concat(), prompt);
}

#[test]
fn a_fan_out_names_at_most_max_fan_out_agents_and_large_prompts_all_get_through() {
    let config = "[limits]\nmax_fan_out = 3\nmax_bytes_in_flight = 1048576\n";
    let daemon = InProcess::serve(
        Env::new().config(config),
        &["--no-tcp", "--echo-delay", "0ms"],
    );
    for name in ["a", "b", "c", "d"] {
        daemon.spawn_echo(name);
    }
    let too_many = daemon.json(
        "POST",
        "/messages",
        Some(json!({"agents": ["a", "b", "c", "d"], "content": "hi"})),
    );
    assert_eq!(too_many.status, 422, "{}", too_many.text());
    assert!(
        too_many.text().contains("limits.max_fan_out"),
        "{}",
        too_many.text()
    );
    // Each prompt takes most of the bytes allowed in flight: they run one
    // after another, and every one gets its answer.
    let prompt = "p".repeat(900_000);
    let replies = daemon.json(
        "POST",
        "/messages",
        Some(json!({"agents": ["a", "b", "c"], "content": prompt})),
    );
    assert_eq!(replies.status, 200, "{}", &replies.text()[..200]);
    let replies = replies.json();
    for name in ["a", "b", "c"] {
        assert_eq!(
            replies[name]["messages"][0]["content"]
                .as_str()
                .map(str::len),
            Some(900_000),
            "{name}"
        );
    }
}
