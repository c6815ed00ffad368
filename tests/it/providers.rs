//! Real providers against fake model servers: what the daemon sends (system
//! prompt, whole context in order, key, headers, model) and what the user sees
//! (streamed text, errors, exit statuses), for the OpenAI and Anthropic
//! protocols, including the awkward things real servers do.

use crate::common;
use crate::common::Harness;

use std::time::Duration;

use common::fake_provider::{
    FakeProvider, Gate, Reply, Step, anthropic_events, data, event, openai_chunks,
};
use common::in_process::InProcess;
use common::{Env, HttpResponse, eventually, pairs, read_rest, sent_turns, transcript};
use serde_json::{Value, json};

/// Short timeouts so failure paths are quick; retries pause 50ms.
const FAST: &str = r#"
[providers]
idle_timeout = "2s"
connect_timeout = "2s"
retry_backoff = "50ms"
"#;

fn daemon(env: Env) -> InProcess {
    InProcess::serve(env.config(FAST), &["--no-tcp"])
}

/// A daemon that never gives up on a silent model server by itself (a
/// 10-minute idle timeout), so only a cancellation can close the upstream
/// connection within a test's patience.
fn patient_daemon() -> InProcess {
    let config = "[providers]\nidle_timeout = \"10m\"\nmax_retries = 0\n";
    InProcess::serve(Env::new().config(config), &["--no-tcp"])
}

fn spawn(daemon: &InProcess, body: Value) -> Value {
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[test]
fn openai_gets_instructions_and_the_whole_conversation_and_the_cli_sees_the_stream() {
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&openai_chunks(&["Hello", ", ", "Ann."])));
    fake.push(Reply::sse(&openai_chunks(&["You said ", "so."])));
    let daemon = daemon(Env::new());
    let base = fake.url("/v1");

    // The key comes from the CLI's environment, not the daemon's.
    let spawned = daemon.env.cli_env(
        &[("OPENAI_API_KEY", "sk-cli-key")],
        &[
            "spawn",
            "ann",
            "--provider",
            "openai",
            "--model",
            "gpt-test",
            "--base-url",
            &base,
            "--api-key-env",
            "OPENAI_API_KEY",
            "--instructions",
            "Be brief.",
        ],
    );
    spawned.ok();
    assert!(spawned.stdout().contains("provider openai, model gpt-test"));

    let first = daemon.cli(&["message", "ann", "hi", "there"]);
    first.ok();
    assert_eq!(first.stdout(), "Hello, Ann.\n");
    let second = daemon.cli(&["message", "ann", "and again"]);
    second.ok();
    assert_eq!(second.stdout(), "You said so.\n");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let sent = &requests[1];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-cli-key"));
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(
        sent_turns(&sent.body),
        pairs(&[
            ("system", "Be brief."),
            ("user", "hi there"),
            ("assistant", "Hello, Ann."),
            ("user", "and again"),
        ])
    );

    // Usage per reply in metadata, summed per agent; the server's model noted.
    let history = daemon.history("ann");
    let reply = &history["messages"][1];
    assert_eq!(reply["metadata"]["usage"]["input_tokens"], 11);
    assert_eq!(reply["metadata"]["usage"]["output_tokens"], 3);
    assert_eq!(reply["metadata"]["finish_reason"], "stop");
    assert_eq!(reply["metadata"]["model"], "fake-model");
    let info = daemon.json("GET", "/agents/ann", None).json();
    assert_eq!(info["usage"]["input_tokens"], 22);
    assert_eq!(info["usage"]["output_tokens"], 5);
    assert_eq!(info["provider"], "openai");
    assert!(info.get("api_key").is_none());
    let list = daemon.cli(&["list"]);
    assert!(list.stdout().contains("22/5"), "{}", list.stdout());
    // The key went upstream and nowhere else.
    assert!(!daemon.log().contains("sk-cli-key"));
    assert!(
        !daemon
            .request("GET", "/agents", None)
            .text()
            .contains("sk-cli-key")
    );
}

#[test]
fn each_delta_is_relayed_before_the_model_has_finished() {
    let fake = FakeProvider::start();
    let gate = Gate::new();
    let blocks = openai_chunks(&["first ", "second"]);
    // Hold everything after the first content chunk until the test says so.
    fake.push(Reply::sse(&blocks).insert(2, Step::Wait(gate.clone())));
    let daemon = daemon(Env::new().var("OPENAI_API_KEY", "k"));
    spawn(
        &daemon,
        json!({"name": "s", "provider": "openai", "base_url": fake.url("/v1")}),
    );
    let mut stream = daemon.stream(
        "/agents/s/message",
        &json!({"content": "go", "stream": true}),
    );
    // `stream` returned after reading the first delta: it arrived while the
    // fake server was still holding the rest of the reply.
    gate.open();
    let rest = read_rest(&mut stream);
    assert!(
        rest.contains(r#"{"type":"delta","content":"second"}"#),
        "{rest}"
    );
    assert!(rest.contains(r#""type":"done""#), "{rest}");
}

#[test]
fn openai_quirks_of_real_servers_are_tolerated() {
    let fake = FakeProvider::start();
    let chunk = |delta: Value| data(&json!({"choices": [{"index": 0, "delta": delta}]}));
    let blocks = vec![
        // An OpenRouter keep-alive comment, CRLF line ends, and a role-only chunk.
        ": OPENROUTER PROCESSING\r\n\r\n".to_owned(),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\r\n\r\n"
            .to_owned(),
        // `choices` absent, null, and empty.
        data(&json!({"id": "x"})),
        data(&json!({"choices": null})),
        data(&json!({"choices": []})),
        // Reasoning arrives before the answer.
        chunk(json!({"reasoning": "thinking it over"})),
        // One event's JSON split over two `data:` lines.
        "data: {\"choices\":[{\"index\":0,\n\
         data: \"delta\":{\"content\":\"Par\"}}]}\n\n"
            .to_owned(),
        // Finish reason on the last content chunk, usage on a later one, no [DONE].
        data(&json!({"choices": [{"index": 0, "delta": {"content": "is."}, "finish_reason": "length"}]})),
        data(&json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})),
    ];
    fake.push(Reply::sse(&blocks));
    let daemon = daemon(Env::new());
    daemon.spawn_at("q", "openai", &fake.url("/v1/"));
    let reply = daemon.say("q", "capital of France?");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let message = &reply.json()["messages"][0];
    assert_eq!(message["content"], "Paris.");
    assert_eq!(message["metadata"]["finish_reason"], "length");
    assert_eq!(message["metadata"]["reasoning"], "thinking it over");
    assert_eq!(message["metadata"]["usage"]["output_tokens"], 2);
    assert!(message["metadata"].get("interrupted").is_none());
    // A trailing slash on the base URL does not double up.
    assert_eq!(fake.last_request().path, "/v1/chat/completions");
}

#[test]
fn upstream_error_bodies_of_every_shape_reach_the_user() {
    let fake = FakeProvider::start();
    let daemon = daemon(Env::new());
    daemon.spawn_at("e", "openai", &fake.url("/v1"));
    let cases = [
        (
            Reply::json(
                401,
                &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
            ),
            "401",
            "Incorrect API key provided",
        ),
        (
            Reply::json(400, &json!({"error": "model not found"})),
            "400",
            "model not found",
        ),
        (
            Reply::json(
                400,
                &json!([{"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}]),
            ),
            "400",
            "API key not valid",
        ),
        (
            Reply::text(404, "no such route, friend"),
            "404",
            "no such route, friend",
        ),
    ];
    for (reply, status, message) in cases {
        fake.push(reply);
        let response = daemon.say("e", "hello");
        assert_eq!(response.status, 502, "{}", response.text());
        let detail = response.detail();
        assert!(detail.contains(status), "{detail}");
        assert!(detail.contains(message), "{detail}");
    }
    // Through the CLI: exit 1 and the upstream's words on stderr.
    fake.push(Reply::json(
        401,
        &json!({"error": {"message": "Incorrect API key provided"}}),
    ));
    let cli = daemon.cli(&["message", "e", "hello"]);
    assert_eq!(cli.code(), 1);
    assert!(cli.stderr().contains("401"), "{}", cli.stderr());
    assert!(cli.stderr().contains("Incorrect API key provided"));

    // The agent is still usable and the human messages are all kept.
    fake.push(Reply::sse(&openai_chunks(&["fine now"])));
    assert_eq!(daemon.say("e", "again").status, 200);
    let humans = transcript(&daemon.history("e"))
        .iter()
        .filter(|(sender, _)| sender == "human")
        .count();
    assert_eq!(humans, 6);
    // Four plain 4xx answers are not retried.
    assert_eq!(fake.requests().len(), 6);
}

#[test]
fn an_error_inside_a_200_stream_keeps_the_partial_reply_marked_interrupted() {
    let fake = FakeProvider::start();
    let mut blocks = openai_chunks(&["Half ", "a "]);
    blocks.truncate(2);
    blocks.push(data(
        &json!({"error": {"message": "Provider overloaded", "code": 503}}),
    ));
    fake.push(Reply::sse(&blocks));
    let daemon = daemon(Env::new());
    daemon.spawn_at("m", "openai", &fake.url("/v1"));
    let response = daemon.say("m", "tell me");
    assert_eq!(response.status, 502);
    assert!(
        response.detail().contains("Provider overloaded"),
        "{}",
        response.detail()
    );
    let history = daemon.history("m");
    let reply = &history["messages"][1];
    assert_eq!(reply["content"], "Half ");
    assert_eq!(reply["metadata"]["interrupted"], true);
    assert_eq!(
        daemon.json("GET", "/agents/m", None).json()["state"],
        "failed"
    );
}

#[test]
fn a_stream_cut_short_is_an_error_and_the_partial_reply_is_kept() {
    let fake = FakeProvider::start();
    let mut blocks = openai_chunks(&["Once ", "upon ", "a time"]);
    blocks.truncate(3);
    fake.push(Reply::sse(&blocks).cut());
    let daemon = daemon(Env::new());
    daemon.spawn_at("t", "openai", &fake.url("/v1"));
    let mut stream = daemon.stream(
        "/agents/t/message",
        &json!({"content": "story", "stream": true}),
    );
    let rest = read_rest(&mut stream);
    let last: Value = rest
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(Value::is_object)
        .expect("a JSON line");
    assert_eq!(last["type"], "error", "{rest}");
    assert_eq!(last["status"], 502);
    assert!(
        last["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("broke mid-reply"),
        "{rest}"
    );
    let reply = &daemon.history("t")["messages"][1];
    assert_eq!(reply["content"], "Once upon ");
    assert_eq!(reply["metadata"]["interrupted"], true);
}

#[test]
fn garbage_from_the_server_is_a_clear_502() {
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&["data: this is not json\n\n"]));
    fake.push(Reply::text(200, "<html>proxy login</html>").header("X-Ignored", "1"));
    let daemon = daemon(Env::new());
    daemon.spawn_at("g", "openai", &fake.url("/v1"));
    let response = daemon.say("g", "hi");
    assert_eq!(response.status, 502);
    assert!(
        response.detail().contains("not JSON"),
        "{}",
        response.detail()
    );
    // Plain text with a 200 is not an event stream either: no finish, so an error.
    let response = daemon.say("g", "hi");
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
}

#[test]
fn rate_limits_and_server_errors_are_retried_before_anything_streams() {
    let fake = FakeProvider::start();
    fake.push(
        Reply::json(429, &json!({"error": {"message": "slow down"}})).header("Retry-After", "0"),
    );
    fake.push(Reply::text(503, "overloaded"));
    fake.push(Reply::sse(&openai_chunks(&["third time lucky"])));
    let daemon = daemon(Env::new());
    daemon.spawn_at("r", "openai", &fake.url("/v1"));
    let response = daemon.say("r", "hi");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json()["messages"][0]["content"],
        "third time lucky"
    );
    assert_eq!(fake.requests().len(), 3);

    // With retries used up, the last error is passed on.
    for _ in 0..3 {
        fake.push(Reply::text(500, "still broken"));
    }
    let response = daemon.say("r", "hi");
    assert_eq!(response.status, 502);
    assert!(response.detail().contains("500") && response.detail().contains("still broken"));
    assert_eq!(fake.requests().len(), 6);
}

#[test]
fn an_unreachable_server_is_a_502_after_retries() {
    let daemon = daemon(Env::new());
    let closed = format!("http://127.0.0.1:{}/v1", common::CLOSED_PORT);
    daemon.spawn_at("n", "openai", &closed);
    let response = daemon.say("n", "anyone?");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("cannot reach 127.0.0.1"),
        "{}",
        response.detail()
    );
    assert!(daemon.log().contains("retrying the upstream request"));
}

#[test]
fn a_server_that_never_answers_is_a_504_and_a_slow_one_is_fine() {
    let fake = FakeProvider::start();
    fake.push(Reply::hang());
    // Each chunk comes 0.5s after the last: 3s in all, beyond the 2s idle
    // timeout, but never 2s of silence, so the reply must complete.
    fake.push(Reply::sse(&openai_chunks(&["a ", "b ", "c"])).slow(Duration::from_millis(500)));
    let daemon = daemon(Env::new());
    daemon.spawn_at("h", "openai", &fake.url("/v1"));
    let response = daemon.say("h", "hello?");
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        response.detail().contains("timed out"),
        "{}",
        response.detail()
    );

    let response = daemon.say("h", "slowly");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["messages"][0]["content"], "a b c");
}

#[test]
fn a_client_that_leaves_cancels_the_upstream_request() {
    let fake = FakeProvider::start();
    let mut blocks = openai_chunks(&["partial "]);
    blocks.truncate(2);
    fake.push(Reply::sse(&blocks).insert(2, Step::AwaitClose));
    let daemon = patient_daemon();
    daemon.spawn_at("c", "openai", &fake.url("/v1"));
    let stream = daemon.stream(
        "/agents/c/message",
        &json!({"content": "go", "stream": true}),
    );
    drop(stream);
    eventually("the daemon to hang up on the model server", || {
        fake.closed_by_client() == 1
    });
    eventually("the partial reply to be recorded", || {
        daemon.history("c")["messages"][1]["metadata"]["interrupted"] == true
    });
    assert_eq!(daemon.history("c")["messages"][1]["content"], "partial ");
}

#[test]
fn ctrl_c_in_the_cli_aborts_the_upstream_request() {
    let fake = FakeProvider::start();
    let mut blocks = openai_chunks(&["streaming "]);
    blocks.truncate(2);
    fake.push(Reply::sse(&blocks).insert(2, Step::AwaitClose));
    let daemon = patient_daemon();
    daemon.spawn_at("i", "openai", &fake.url("/v1"));
    let mut child = daemon
        .env
        .command(&["message", "i", "go"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run message");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("the first words");
    assert_eq!(&first, b"streaming ");
    common::signal(child.id() as i32, "INT");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    eventually("the daemon to hang up on the model server", || {
        fake.closed_by_client() == 1
    });
}

#[test]
fn a_missing_key_is_a_400_at_spawn_and_keys_never_cross_profiles() {
    let fake = FakeProvider::start();
    // The daemon has an OpenAI key but nothing else.
    let daemon = daemon(Env::new().var("OPENAI_API_KEY", "sk-daemon"));
    let cli = daemon.cli(&["spawn", "x", "--provider", "anthropic"]);
    assert_eq!(cli.code(), 1);
    assert!(
        cli.stderr().contains("ANTHROPIC_API_KEY"),
        "{}",
        cli.stderr()
    );

    // OpenRouter must not get the OpenAI key: without its own, it cannot start.
    let response = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "o", "profile": "openrouter"})),
    );
    assert_eq!(response.status, 400);
    assert!(
        response.detail().contains("OPENROUTER_API_KEY"),
        "{}",
        response.detail()
    );

    // The daemon's own key goes only to its provider's own URL: a request
    // that names another gets none (tests/trust_boundary.rs tries harder).
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    spawn(
        &daemon,
        json!({"name": "d", "provider": "openai", "base_url": fake.url("/v1")}),
    );
    assert_eq!(daemon.say("d", "hi").status, 200);
    assert_eq!(fake.last_request().header("authorization"), None);

    // `local` needs no key, but has no default model either.
    let response = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "l", "profile": "local"})),
    );
    assert_eq!(response.status, 400);
    assert!(
        response.detail().contains("--model"),
        "{}",
        response.detail()
    );
    // The default provider is openai.
    let cli = daemon.env.cli_env(
        &[("OPENAI_API_KEY", "")],
        &["spawn", "z", "--base-url", "http://127.0.0.1:9/v1"],
    );
    cli.ok();
    assert!(cli.stdout().contains("provider openai"), "{}", cli.stdout());
}

#[test]
fn user_profiles_from_config_bring_their_url_key_variable_model_and_headers() {
    let fake = FakeProvider::start();
    let config = format!(
        "{FAST}\n[profiles.mine]\nbase_url = \"{}\"\napi_key_env = \"MINE_API_KEY\"\nmodel = \"mine-1\"\nheaders = {{ \"X-Title\" = \"orchestration-tests\" }}\n",
        fake.url("/api/v1")
    );
    let env = Env::new().config(&config);
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    fake.push(Reply::sse(&openai_chunks(&["hi from mine"])));
    daemon
        .env
        .cli_env(
            &[("MINE_API_KEY", "mine-secret")],
            &["spawn", "u", "--profile", "mine"],
        )
        .ok();
    let out = daemon.cli(&["message", "u", "hello"]);
    out.ok();
    assert_eq!(out.stdout(), "hi from mine\n");
    let sent = fake.last_request();
    assert_eq!(sent.path, "/api/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer mine-secret"));
    assert_eq!(sent.header("x-title"), Some("orchestration-tests"));
    assert_eq!(sent.body["model"], "mine-1");
    let info = daemon.json("GET", "/agents/u", None).json();
    assert_eq!(info["profile"], "mine");
    assert_eq!(info["provider"], "openai");

    // The task command takes --profile as well.
    fake.push(Reply::sse(&openai_chunks(&["task done"])));
    let task = daemon.env.cli_env(
        &[("MINE_API_KEY", "mine-secret")],
        &["task", "tk", "--profile", "mine", "do it"],
    );
    task.ok();
    assert_eq!(task.stdout(), "task done\n");
}

#[test]
fn anthropic_messages_are_sent_and_streamed() {
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&anthropic_events(&["Bonjour", " Ann"])));
    fake.push(Reply::sse(&anthropic_events(&["Encore"])));
    let daemon = daemon(Env::new());
    daemon
        .env
        .cli_env(
            &[("ANTHROPIC_API_KEY", "ak-cli")],
            &[
                "spawn",
                "claude",
                "--provider",
                "anthropic",
                "--base-url",
                &fake.url(""),
                "--api-key-env",
                "ANTHROPIC_API_KEY",
                "--instructions",
                "Answer in French.",
            ],
        )
        .ok();
    let out = daemon.cli(&["message", "claude", "hello"]);
    out.ok();
    assert_eq!(out.stdout(), "Bonjour Ann\n");
    daemon.cli(&["message", "claude", "again"]).ok();

    let sent = fake.last_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("ak-cli"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.body["system"], "Answer in French.");
    assert_eq!(sent.body["max_tokens"], 4096);
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(
        sent_turns(&sent.body),
        pairs(&[
            ("user", "hello"),
            ("assistant", "Bonjour Ann"),
            ("user", "again")
        ])
    );
    let reply = &daemon.history("claude")["messages"][1];
    assert_eq!(reply["metadata"]["usage"]["input_tokens"], 21);
    assert_eq!(reply["metadata"]["usage"]["output_tokens"], 2);
    assert_eq!(reply["metadata"]["finish_reason"], "end_turn");
}

#[test]
fn anthropic_errors_before_and_inside_the_stream_and_truncation() {
    let fake = FakeProvider::start();
    fake.push(Reply::json(
        401,
        &json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
    ));
    let mut blocks = anthropic_events(&["Par", "tial"]);
    blocks.truncate(4);
    blocks.push(event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    fake.push(Reply::sse(&blocks));
    // The body ends cleanly, but before `message_stop`.
    let mut cut = anthropic_events(&["cut ", "here"]);
    cut.truncate(5);
    fake.push(Reply::sse(&cut));
    let daemon = daemon(Env::new());
    daemon.spawn_at("a", "anthropic", &fake.url(""));
    let response = daemon.say("a", "one");
    assert_eq!(response.status, 502);
    assert!(response.detail().contains("401") && response.detail().contains("invalid x-api-key"));

    let response = daemon.say("a", "two");
    assert_eq!(response.status, 502);
    assert!(
        response.detail().contains("Overloaded"),
        "{}",
        response.detail()
    );

    let response = daemon.say("a", "three");
    assert_eq!(response.status, 502);
    assert!(
        response.detail().contains("ended before"),
        "{}",
        response.detail()
    );

    let history = transcript(&daemon.history("a"));
    assert_eq!(
        history,
        pairs(&[
            ("human", "one"),
            ("human", "two"),
            ("a", "Par"),
            ("human", "three"),
            ("a", "cut here"),
        ])
    );
    // Consecutive user turns are merged: roles alternate as the API requires.
    fake.push(Reply::sse(&anthropic_events(&["ok"])));
    assert_eq!(daemon.say("a", "four").status, 200);
    let roles: Vec<String> = sent_turns(&fake.last_request().body)
        .into_iter()
        .map(|(role, _)| role)
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
}

#[test]
fn models_are_listed_from_the_endpoint() {
    let fake = FakeProvider::start();
    fake.push(Reply::json(
        200,
        &json!({"object": "list", "data": [{"id": "model-b", "object": "model"}, {"id": "model-a", "object": "model"}]}),
    ));
    fake.push(Reply::json(
        200,
        &json!({"data": [{"id": "claude-x", "type": "model"}]}),
    ));
    fake.push(Reply::json(401, &json!({"error": {"message": "bad key"}})));
    let daemon = daemon(Env::new());
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
    assert_eq!(out.stdout(), "model-a\nmodel-b\n");
    let sent = fake.last_request();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer sk-models"));

    let anthropic = fake.url("");
    let out = daemon.env.cli_env(
        &[("ANTHROPIC_API_KEY", "ak")],
        &[
            "--json",
            "models",
            "--provider",
            "anthropic",
            "--base-url",
            &anthropic,
            "--api-key-env",
            "ANTHROPIC_API_KEY",
        ],
    );
    out.ok();
    assert_eq!(out.json()["models"], json!(["claude-x"]));
    assert_eq!(fake.last_request().path, "/v1/models");

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
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("bad key"), "{}", out.stderr());
}

#[test]
fn echo_still_needs_nothing() {
    let daemon = daemon(Env::new());
    spawn(&daemon, json!({"name": "e", "provider": "echo"}));
    let out = daemon.cli(&["models", "--provider", "echo"]);
    out.ok();
    assert_eq!(out.stdout(), "echo\n");
}

#[test]
fn a_broken_config_file_is_an_error_that_names_it() {
    let env = Env::new().config("[profiles.x]\nbase_ulr = \"http://example\"\n");
    let serve = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(serve.code(), 1);
    assert!(serve.stderr().contains("config.toml"), "{}", serve.stderr());
    assert!(serve.stderr().contains("base_ulr"), "{}", serve.stderr());
    let spawn = env.cli(&["spawn", "x", "--profile", "x"]);
    assert_eq!(spawn.code(), 1);
    assert!(spawn.stderr().contains("base_ulr"), "{}", spawn.stderr());
}

#[test]
fn listing_models_needs_no_model_even_where_an_agent_would() {
    let fake = FakeProvider::start();
    fake.push(Reply::json(200, &json!({"data": [{"id": "m1"}]})));
    let config = format!("[profiles.bare]\nbase_url = \"{}\"\n", fake.url("/v1"));
    let daemon = InProcess::serve(Env::new().config(&config), &["--no-tcp"]);
    let out = daemon.cli(&["models", "--profile", "bare"]);
    out.ok();
    assert_eq!(out.stdout(), "m1\n");
    // A spawn on it still needs one, and says how to give it.
    let spawn = daemon.cli(&["spawn", "b", "--profile", "bare"]);
    assert_eq!(spawn.code(), 1);
    assert!(spawn.stderr().contains("--model"), "{}", spawn.stderr());
}

/// A reply that arrives as one JSON document although `stream: true` was
/// asked for (proxies and mock servers do this) is read whole, usage
/// included, on both wires; an error body answered the same way stays an
/// error.
#[test]
fn servers_that_ignore_stream_true_answer_one_json_reply_and_it_counts() {
    let fake = FakeProvider::start();
    fake.push(Reply::json(
        200,
        &json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "plain-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Whole at once."}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        }),
    ));
    fake.push(Reply::json(
        200,
        &json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "plain-claude",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Tout "},
                {"type": "text", "text": "ensemble."}
            ],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 9, "output_tokens": 4}
        }),
    ));
    // An error body with a 200 and a JSON type is still an error.
    fake.push(Reply::json(
        200,
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    // JSON that is neither a reply nor an error is a protocol error.
    fake.push(Reply::json(200, &json!({"object": "list", "data": []})));
    let daemon = daemon(Env::new());
    daemon.spawn_at("o", "openai", &fake.url("/v1"));
    daemon.spawn_at("a", "anthropic", &fake.url(""));

    let out = daemon.cli(&["message", "o", "hi"]);
    out.ok();
    assert_eq!(out.stdout(), "Whole at once.\n");
    let reply = &daemon.history("o")["messages"][1];
    assert_eq!(reply["metadata"]["usage"]["input_tokens"], 7);
    assert_eq!(reply["metadata"]["usage"]["output_tokens"], 3);
    assert_eq!(reply["metadata"]["finish_reason"], "stop");
    assert_eq!(reply["metadata"]["model"], "plain-model");
    let info = daemon.json("GET", "/agents/o", None).json();
    assert_eq!(info["state"], "idle");
    assert_eq!(info["usage"]["input_tokens"], 7);
    assert_eq!(info["usage"]["output_tokens"], 3);

    let out = daemon.cli(&["message", "a", "salut"]);
    out.ok();
    assert_eq!(out.stdout(), "Tout ensemble.\n");
    let reply = &daemon.history("a")["messages"][1];
    assert_eq!(reply["metadata"]["usage"]["input_tokens"], 9);
    assert_eq!(reply["metadata"]["usage"]["output_tokens"], 4);
    assert_eq!(reply["metadata"]["finish_reason"], "end_turn");
    assert_eq!(reply["metadata"]["model"], "plain-claude");
    assert_eq!(reply["metadata"]["reasoning"], "hmm");
    let info = daemon.json("GET", "/agents/a", None).json();
    assert_eq!(info["state"], "idle");
    assert_eq!(info["usage"]["input_tokens"], 9);
    let list = daemon.cli(&["list"]);
    assert!(list.stdout().contains("7/3"), "{}", list.stdout());
    assert!(list.stdout().contains("9/4"), "{}", list.stdout());

    let response = daemon.say("a", "again");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("Overloaded"),
        "{}",
        response.detail()
    );
    let response = daemon.say("o", "again");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("expected an event stream"),
        "{}",
        response.detail()
    );
}

#[test]
fn a_failed_agent_still_takes_messages_and_is_idle_after_the_next_good_reply() {
    let fake = FakeProvider::start();
    // A 400 is not retried: one request, one failure.
    fake.push(Reply::json(
        400,
        &json!({"error": {"message": "context too long"}}),
    ));
    fake.push(Reply::sse(&openai_chunks(&["better ", "now"])));
    let daemon = daemon(Env::new());
    daemon.spawn_at("f", "openai", &fake.url("/v1"));
    let failed = daemon.say("f", "first");
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert!(
        failed.detail().contains("context too long"),
        "{}",
        failed.detail()
    );
    assert_eq!(
        daemon.json("GET", "/agents/f", None).json()["state"],
        "failed"
    );
    let listed = daemon.cli(&["list", "--state", "failed"]);
    assert!(listed.ok().stdout().contains("f "), "{}", listed.stdout());

    let good = daemon.say("f", "second");
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.json()["messages"][0]["content"], "better now");
    assert_eq!(
        daemon.json("GET", "/agents/f", None).json()["state"],
        "idle"
    );
    assert_eq!(
        daemon.cli(&["list", "--state", "failed"]).stdout(),
        "no agents\n"
    );
    // The failed exchange's message stayed in the context.
    assert_eq!(
        sent_turns(&fake.last_request().body),
        pairs(&[("user", "first"), ("user", "second")])
    );
    assert_eq!(
        transcript(&daemon.history("f")),
        pairs(&[("human", "first"), ("human", "second"), ("f", "better now")])
    );
}

/// `say`, failing the test instead of hanging if no answer comes within PATIENCE.
fn say_within_patience(daemon: &InProcess, name: &str, content: &str) -> HttpResponse {
    let stream = std::os::unix::net::UnixStream::connect(daemon.env.socket()).expect("connect");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    let body = json!({ "content": content }).to_string();
    let request = common::build_request(
        "POST",
        &format!("/agents/{name}/message"),
        &[("Host", "localhost")],
        Some(&body),
    );
    let mut stream = stream;
    std::io::Write::write_all(&mut stream, &request).expect("write");
    let mut raw = Vec::new();
    let read = std::io::Read::read_to_end(&mut stream, &mut raw);
    assert!(
        read.is_ok() && !raw.is_empty(),
        "no answer within {:?} ({read:?}): the daemon is waiting out the Retry-After",
        common::PATIENCE
    );
    common::parse_response(&raw)
}

#[test]
fn a_retry_after_beyond_30s_fails_at_once_and_one_within_it_is_honoured() {
    let fake = FakeProvider::start();
    let daemon = daemon(Env::new());
    daemon.spawn_at("r", "openai", &fake.url("/v1"));

    // An hour, on a 429: the error is passed on, not waited out or retried early.
    fake.push(
        Reply::json(429, &json!({"error": {"message": "come back in an hour"}}))
            .header("Retry-After", "3600"),
    );
    let response = say_within_patience(&daemon, "r", "hi");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("429") && response.detail().contains("come back in an hour"),
        "{}",
        response.detail()
    );
    assert_eq!(fake.requests().len(), 1, "retried despite the Retry-After");

    // Just over the limit, on a 503.
    fake.push(Reply::text(503, "down for maintenance").header("Retry-After", "31"));
    let response = say_within_patience(&daemon, "r", "hi");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("503") && response.detail().contains("down for maintenance"),
        "{}",
        response.detail()
    );
    assert_eq!(fake.requests().len(), 2, "retried despite the Retry-After");

    // Within the limit it is honoured, and the retry answers.
    fake.push(
        Reply::json(429, &json!({"error": {"message": "a moment"}})).header("Retry-After", "1"),
    );
    fake.push(Reply::sse(&openai_chunks(&["worth the wait"])));
    let response = say_within_patience(&daemon, "r", "hi");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["messages"][0]["content"], "worth the wait");
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    // The retry came after the server's pause (arrival times at the fake, not
    // a measure of speed: waiting less than asked would be the bug).
    assert!(
        requests[3].arrived.duration_since(requests[2].arrived) >= Duration::from_secs(1),
        "the retry did not wait out Retry-After: 1"
    );
}
