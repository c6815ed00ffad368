//! The daemon's core run inside the test process (`daemon::serve_on`): it
//! serves real sockets, two run side by side with their own keys, its
//! shutdown future stops it cleanly with the agents kept, a drain deadline
//! cancels a reply in flight and keeps what streamed, a reload trigger and
//! `POST /shutdown` work, and TCP takes the token it was given.

use crate::common;
use crate::common::Harness;

use std::io::BufRead;
use std::time::Duration;

use common::fake_provider::{FakeProvider, Reply, openai_chunks};
use common::in_process::InProcess;
use common::{Env, eventually, pairs, transcript};
use serde_json::{Value, json};

/// A profile whose key the daemon holds in `MINE_API_KEY`, answered by `fake`.
fn profile_config(fake: &FakeProvider) -> String {
    format!(
        "[providers]\nidle_timeout = \"2s\"\nconnect_timeout = \"2s\"\n\n[profiles.mine]\nbase_url = \"{}\"\napi_key_env = \"MINE_API_KEY\"\nmodel = \"mine-1\"\n",
        fake.url("/v1")
    )
}

#[test]
fn spawn_message_and_history_over_the_socket() {
    let daemon = InProcess::start();
    daemon.spawn_echo("a");
    let reply = daemon.json(
        "POST",
        "/agents/a/message",
        Some(json!({"content": "hello there"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["messages"][0]["content"], "hello there");
    let history = daemon.json("GET", "/agents/a/history", None).json();
    assert_eq!(
        transcript(&history),
        pairs(&[("human", "hello there"), ("a", "hello there")])
    );

    // The real CLI, against the in-process daemon's socket.
    let cli = daemon.cli(&["message", "a", "from the CLI"]);
    cli.ok();
    assert_eq!(cli.stdout(), "from the CLI\n");
    let listed = daemon.cli(&["list"]);
    listed.ok();
    assert!(listed.stdout().contains('a'), "{}", listed.stdout());
    assert!(daemon.log().contains("agent started"), "{}", daemon.log());
}

#[test]
fn a_streamed_reply_arrives_line_by_line() {
    let daemon = InProcess::start();
    daemon.spawn_echo("s");
    let mut reader = daemon.stream(
        "/agents/s/message",
        &json!({"content": "one two three", "stream": true}),
    );
    // The reader stands just past the first delta; the rest arrives as
    // chunks, each holding whole NDJSON lines.
    let mut rest = String::new();
    while reader.read_line(&mut rest).unwrap_or(0) > 0 {}
    let lines: Vec<Value> = rest
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a whole JSON line"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert!(
        types.starts_with(&["delta"]),
        "more deltas follow: {types:?}"
    );
    assert_eq!(types[types.len() - 2..], ["message", "done"], "{types:?}");
    let reply = &lines[lines.len() - 2]["message"]["content"];
    let streamed: String = lines
        .iter()
        .filter(|l| l["type"] == "delta")
        .filter_map(|l| l["content"].as_str())
        .collect();
    assert!(
        reply.as_str().is_some_and(|r| r.ends_with(&streamed)),
        "the deltas after the first ({streamed:?}) end the reply {reply}"
    );
}

#[test]
fn two_daemons_in_one_process_hold_their_own_keys() {
    // Neither key is in this process's environment: each daemon has only
    // the environment it was given.
    assert!(std::env::var_os("MINE_API_KEY").is_none());
    let fake = FakeProvider::start();
    let config = profile_config(&fake);
    let first = InProcess::start_in(
        Env::new().config(&config).var("MINE_API_KEY", "key-first"),
        false,
    );
    let second = InProcess::start_in(
        Env::new().config(&config).var("MINE_API_KEY", "key-second"),
        false,
    );
    let keyless = InProcess::start_in(Env::new().config(&config), false);
    for daemon in [&first, &second] {
        let spawned = daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "m", "profile": "mine"})),
        );
        assert_eq!(spawned.status, 200, "{}", spawned.text());
    }
    let refused = keyless.json(
        "POST",
        "/agents",
        Some(json!({"name": "m", "profile": "mine"})),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.detail().contains("MINE_API_KEY"),
        "{}",
        refused.detail()
    );

    for (daemon, key) in [(&first, "key-first"), (&second, "key-second")] {
        fake.push(Reply::sse(&openai_chunks(&["hi"])));
        let reply = daemon.json("POST", "/agents/m/message", Some(json!({"content": "x"})));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let bearer = format!("Bearer {key}");
        assert_eq!(
            fake.last_request().header("authorization"),
            Some(bearer.as_str())
        );
    }
}

#[test]
fn the_shutdown_future_stops_it_and_a_restart_brings_the_agents_back() {
    let mut daemon = InProcess::start();
    daemon.spawn_echo("keep");
    let reply = daemon.json(
        "POST",
        "/agents/keep/message",
        Some(json!({"content": "remember me"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());

    daemon.stop().expect("a clean stop");
    assert!(!daemon.env.socket().exists(), "the socket it bound is gone");
    assert!(daemon.log().contains("stopped"), "{}", daemon.log());

    // Same dirs, same process: the store's lock was released.
    let again = InProcess::start_in(daemon.env.clone(), false);
    let info = again.json("GET", "/agents/keep", None);
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["state"], "idle");
    let history = again.json("GET", "/agents/keep/history", None).json();
    assert_eq!(
        transcript(&history),
        pairs(&[("human", "remember me"), ("keep", "remember me")])
    );
}

#[test]
fn post_shutdown_ends_the_core() {
    let mut daemon = InProcess::start();
    assert_eq!(daemon.json("POST", "/shutdown", None).status, 202);
    daemon.wait_exit().expect("a clean stop");
    assert!(daemon.finished());
}

#[test]
fn a_second_core_on_a_locked_state_dir_is_refused() {
    let daemon = InProcess::start();
    let setup = orchestration::daemon::DaemonSetup::open(orchestration::daemon::ServeConfig::new(
        daemon.env.dir.path().join("state"),
        daemon.env.dir.path().join("config.toml"),
        orchestration::config::Config::default(),
    ));
    let Err(error) = setup else {
        panic!("a second store on the same state dir opened");
    };
    assert!(error.to_string().contains("is locked"), "{error}");
}

#[test]
fn the_reload_trigger_puts_a_new_key_in_effect() {
    let fake = FakeProvider::start();
    let env = Env::new().config(&profile_config(&fake));
    let daemon = InProcess::start_in(env.clone(), false);
    let spawn = || {
        daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "m", "profile": "mine"})),
        )
    };
    assert_eq!(spawn().status, 400);
    std::fs::write(
        env.dir.path().join("environment"),
        "MINE_API_KEY=from-the-file\n",
    )
    .expect("write the environment file");
    daemon.reload.request();
    eventually("the reloaded key lets the agent spawn", || {
        spawn().status == 200
    });
    fake.push(Reply::sse(&openai_chunks(&["hi"])));
    let reply = daemon.json("POST", "/agents/m/message", Some(json!({"content": "x"})));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        fake.last_request().header("authorization"),
        Some("Bearer from-the-file")
    );
}

#[test]
fn tcp_takes_the_token_it_was_given() {
    let daemon = InProcess::start_tcp();
    let health = daemon.tcp_json("GET", "/health", None);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");

    let host = format!("127.0.0.1:{}", daemon.port.expect("port"));
    let without = daemon.tcp_request("GET", "/health", &[("Host", &host)], None);
    assert_eq!(without.status, 401);
    let wrong = daemon.tcp_request(
        "GET",
        "/health",
        &[("Host", &host), ("Authorization", "Bearer not-the-token")],
        None,
    );
    assert_eq!(wrong.status, 401);
    // The control plane stays on the Unix socket.
    assert_eq!(daemon.tcp_json("POST", "/shutdown", None).status, 403);
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
}

#[test]
fn a_short_drain_cancels_a_reply_in_flight_and_keeps_its_start() {
    let mut daemon = InProcess::start_with(Env::new(), false, |config| {
        config.drain_timeout = Duration::ZERO;
        // Slow enough that the reply still streams when the stop comes.
        config.echo_delay = Duration::from_millis(200);
    });
    daemon.spawn_echo("slow");
    // Sixty words at 200ms each: far longer than the stop takes to begin.
    let words = vec!["word"; 60].join(" ");
    let mut reader = daemon.stream(
        "/agents/slow/message",
        &json!({"content": words, "stream": true}),
    );
    daemon.stop().expect("a clean stop");
    let mut rest = String::new();
    while reader.read_line(&mut rest).unwrap_or(0) > 0 {}
    assert!(rest.contains("\"status\":503"), "{rest}");

    // What had streamed is kept, marked interrupted, for the next start.
    let again = InProcess::start_in(daemon.env.clone(), false);
    let history = again.json("GET", "/agents/slow/history", None).json();
    assert_eq!(history["messages"][1]["metadata"]["interrupted"], true);
}
