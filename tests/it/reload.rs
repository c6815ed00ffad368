//! Reload without a restart (SIGHUP, `serve --reload`), agents that follow
//! their profile, and agents that a start suspends instead of ending.

use crate::common;
use crate::common::Harness;

use common::fake_provider::{FakeProvider, Reply, openai_chunks};
use common::{Daemon, Env, read_rest, signal};
use serde_json::{Value, json};

fn start(env: Env) -> Daemon {
    Daemon::start_in(env, &["--no-tcp"], None)
}

fn profile(url: &str) -> String {
    format!("[profiles.work]\nbase_url = \"{url}\"\napi_key_env = \"WORK_KEY\"\nmodel = \"w\"\n")
}

fn info(daemon: &Daemon, name: &str) -> Value {
    daemon.json("GET", &format!("/agents/{name}"), None).json()
}

fn write_config(env: &Env, text: &str) {
    std::fs::write(env.dir.path().join("config.toml"), text).expect("write config");
}

fn write_environment(env: &Env, text: &str) {
    std::fs::write(env.dir.path().join("environment"), text).expect("write environment");
}

#[test]
fn sighup_during_ten_streamed_replies_lets_every_one_finish() {
    let daemon = Daemon::start(&["--echo-delay", "30ms"]);
    let pid = daemon.request("GET", "/health", None).json()["pid"].clone();
    let prompt = "one two three four five six seven eight nine ten eleven twelve";
    let mut streams = Vec::new();
    for i in 0..10 {
        let name = format!("e{i}");
        daemon.cli(&["spawn", &name, "--provider", "echo"]).ok();
        streams.push(daemon.stream(
            &format!("/agents/{name}/message"),
            &json!({"content": prompt, "stream": true}),
        ));
    }
    // Every reply has started streaming; now the reload.
    signal(daemon.pid(), "HUP");
    for stream in &mut streams {
        let rest = read_rest(stream);
        assert!(rest.contains("\"type\":\"done\""), "{rest}");
        assert!(!rest.contains("\"error\""), "{rest}");
    }
    common::eventually("the reload to be logged", || {
        daemon.log().contains("reloaded the config")
    });
    assert_eq!(daemon.request("GET", "/health", None).json()["pid"], pid);
    for i in 0..10 {
        let history = daemon.cli(&["--json", "history", &format!("e{i}")]);
        let messages = history.json()["messages"].clone();
        assert_eq!(messages[1]["content"], prompt, "e{i}");
        assert!(messages[1]["metadata"].get("interrupted").is_none());
    }
}

#[test]
fn a_reload_moves_a_profile_and_rotates_its_key_for_the_next_message() {
    let old = FakeProvider::start();
    let new = FakeProvider::start();
    let env = Env::new().config(&profile(&old.url("/v1")));
    write_environment(&env, "WORK_KEY=key-before\n");
    let daemon = start(env.clone());
    // A spawn that brings no key: the daemon's (environment file) is used.
    let spawned = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "w", "profile": "work"})),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    let id = spawned.json()["id"].clone();
    old.push(Reply::sse(&openai_chunks(&["before"])));
    assert_eq!(daemon.say("w", "hi").status, 200);
    assert_eq!(
        old.last_request().header("authorization"),
        Some("Bearer key-before")
    );

    write_config(&env, &profile(&new.url("/v2")));
    write_environment(&env, "# rotated\nWORK_KEY=key-after\n");
    let out = daemon.cli(&["serve", "--reload"]);
    out.ok();
    assert!(out.stdout().contains("reloaded"), "{}", out.stdout());

    new.push(Reply::sse(&openai_chunks(&["after"])));
    assert_eq!(daemon.say("w", "hi").status, 200);
    let sent = new.last_request();
    assert_eq!(sent.path, "/v2/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer key-after"));
    // The same agent, its conversation whole, the same daemon.
    assert_eq!(old.requests().len(), 1);
    let after = info(&daemon, "w");
    assert_eq!(after["id"], id);
    assert_eq!(after["message_count"], 4);
    let status = daemon.cli(&["--json", "serve", "--status"]);
    assert_eq!(status.json()["pid"], daemon.pid());
    assert!(
        status.json()["config"]["loaded_at"].is_string(),
        "{}",
        status.stdout()
    );
}

#[test]
fn a_broken_config_on_reload_changes_nothing_and_says_where() {
    let fake = FakeProvider::start();
    let env = Env::new().config(&profile(&fake.url("/v1")));
    write_environment(&env, "WORK_KEY=k\n");
    let daemon = start(env.clone());
    daemon
        .json(
            "POST",
            "/agents",
            Some(json!({"name": "w", "profile": "work"})),
        )
        .json();
    let loaded = daemon.cli(&["--json", "serve", "--status"]).json()["config"]["loaded_at"].clone();

    write_config(
        &env,
        "[profiles.work]\nbase_url = \"http://127.0.0.1:9/v1\"\nbogus = 1\n",
    );
    let out = daemon.cli(&["serve", "--reload"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("config.toml"), "{}", out.stderr());
    assert!(out.stderr().contains("line 3"), "{}", out.stderr());
    // The old profile is still in effect.
    fake.push(Reply::sse(&openai_chunks(&["still here"])));
    assert_eq!(daemon.say("w", "hi").status, 200);
    assert_eq!(fake.requests().len(), 1);
    let status = daemon.cli(&["--json", "serve", "--status"]).json();
    assert_eq!(status["config"]["loaded_at"], loaded);
    assert!(
        status["config"]["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("bogus")),
        "{status}"
    );
    assert!(
        daemon
            .cli(&["serve", "--status"])
            .stdout()
            .contains("last reload FAILED")
    );
    // A broken environment file is refused the same way, and so is a SIGHUP.
    write_config(&env, &profile(&fake.url("/v1")));
    write_environment(&env, "WORK_KEY=k\nthis is not an assignment\n");
    let out = daemon.cli(&["serve", "--reload"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("environment:2"), "{}", out.stderr());
    signal(daemon.pid(), "HUP");
    common::eventually("the failed reload to be logged", || {
        daemon.log().matches("reload failed").count() >= 3
    });
    assert_eq!(daemon.request("GET", "/health", None).status, 200);
    // Reload is control plane: not on TCP, even with the token.
}

#[test]
fn reload_is_refused_over_tcp() {
    let daemon = Daemon::start_tcp(&[]);
    let response = daemon.tcp_json("POST", "/reload", None);
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(daemon.request("POST", "/reload", None).status, 200);
}

#[test]
fn a_start_without_the_key_suspends_the_agent_and_the_key_revives_it() {
    let fake = FakeProvider::start();
    let with_key = Env::new()
        .config(&profile(&fake.url("/v1")))
        .var("WORK_KEY", "the-key");
    let daemon = start(with_key.clone());
    let id = daemon
        .json(
            "POST",
            "/agents",
            Some(json!({"name": "w", "profile": "work"})),
        )
        .json()["id"]
        .clone();
    fake.push(Reply::sse(&openai_chunks(&["first"])));
    assert_eq!(daemon.say("w", "hi").status, 200);
    let mut daemon = daemon;
    assert!(daemon.terminate().success());

    // Restart without the key: the agent is there, suspended, saying why.
    let mut without = with_key.clone();
    without.vars.retain(|(name, _)| name != "WORK_KEY");
    let daemon = start(without.clone());
    let suspended = info(&daemon, "w");
    assert_eq!(suspended["state"], "suspended", "{suspended}");
    assert_eq!(suspended["id"], id);
    assert!(
        suspended["reason"]
            .as_str()
            .unwrap_or("")
            .contains("WORK_KEY"),
        "{suspended}"
    );
    assert!(daemon.cli(&["list"]).stdout().contains("WORK_KEY"));
    let refused = daemon.say("w", "hi");
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["code"], "suspended");
    assert_eq!(refused.json()["missing_key"], "WORK_KEY");
    assert_eq!(
        info(&daemon, "w")["message_count"],
        2,
        "nothing recorded for a refusal"
    );
    // A CLI whose environment has the key sends it, and the agent runs.
    fake.push(Reply::sse(&openai_chunks(&["revived"])));
    let out = daemon
        .env
        .cli_env(&[("WORK_KEY", "cli-key")], &["message", "w", "again"]);
    out.ok();
    assert_eq!(out.stdout(), "revived\n");
    assert_eq!(
        fake.last_request().header("authorization"),
        Some("Bearer cli-key")
    );
    assert_eq!(info(&daemon, "w")["state"], "idle");
    // Without the key in the CLI either: a clear refusal, exit 1, a hint.
    let mut daemon = daemon;
    assert!(daemon.terminate().success());
    let daemon = start(without.clone());
    let out = daemon.cli(&["message", "w", "hi"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("WORK_KEY"), "{}", out.stderr());
    assert!(out.stderr().contains("hint:"), "{}", out.stderr());
    // A reload that provides the key (the environment file) revives it too.
    write_environment(&without, "WORK_KEY=from-file\n");
    let reloaded = daemon.cli(&["--json", "serve", "--reload"]);
    reloaded.ok();
    assert_eq!(reloaded.json()["revived"], json!(["w"]));
    assert_eq!(info(&daemon, "w")["state"], "idle");
    let mut daemon = daemon;
    assert!(daemon.terminate().success());

    // A start that has the key: idle, the same id, the whole history.
    std::fs::remove_file(without.dir.path().join("environment")).expect("rm environment");
    let daemon = start(with_key.clone());
    let back = info(&daemon, "w");
    assert_eq!(back["state"], "idle");
    assert_eq!(back["id"], id);
    let history = daemon.json("GET", "/agents/w/history", None).json();
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["hi", "first", "again", "revived"]);
}

#[test]
fn a_vanished_profile_suspends_until_a_reload_brings_it_back() {
    let fake = FakeProvider::start();
    let env = Env::new()
        .config(&profile(&fake.url("/v1")))
        .var("WORK_KEY", "k");
    let mut daemon = start(env.clone());
    assert_eq!(
        daemon
            .json(
                "POST",
                "/agents",
                Some(json!({"name": "w", "profile": "work"}))
            )
            .status,
        200
    );
    assert!(daemon.terminate().success());
    write_config(&env, "");
    let daemon = start(env.clone());
    let suspended = info(&daemon, "w");
    assert_eq!(suspended["state"], "suspended");
    assert!(
        suspended["reason"].as_str().unwrap_or("").contains("work"),
        "{suspended}"
    );
    let listed = daemon
        .cli(&["--json", "list", "--state", "suspended"])
        .json();
    assert_eq!(listed[0]["name"], "w");
    write_config(&env, &profile(&fake.url("/v1")));
    daemon.cli(&["serve", "--reload"]).ok();
    assert_eq!(info(&daemon, "w")["state"], "idle");
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    assert_eq!(daemon.say("w", "hi").status, 200);
}

#[test]
fn common_signals_never_kill_the_daemon_uncleanly() {
    for (name, stops) in [("USR1", false), ("USR2", false), ("QUIT", true)] {
        let mut daemon = Daemon::start(&[]);
        daemon.cli(&["spawn", "a", "--provider", "echo"]).ok();
        signal(daemon.pid(), name);
        if stops {
            let status = daemon.wait_exit();
            assert!(status.success(), "SIG{name}: {status}\n{}", daemon.log());
            assert!(
                !daemon.env.pid_file().exists(),
                "SIG{name} left the PID file"
            );
            assert!(!daemon.env.socket().exists(), "SIG{name} left the socket");
        } else {
            common::eventually("the signal to be noted", || {
                daemon
                    .log()
                    .contains(&format!("SIG{name} received and ignored"))
            });
            assert_eq!(daemon.request("GET", "/agents/a", None).status, 200);
        }
    }
}

#[test]
fn a_reload_sets_the_idle_timeout_and_an_idle_daemon_leaves() {
    let env = Env::new();
    let mut daemon = start(env.clone());
    daemon.cli(&["spawn", "kept", "--provider", "echo"]).ok();
    write_config(&env, "[daemon]\nidle_timeout = \"1s\"\n");
    daemon.cli(&["serve", "--reload"]).ok();
    let status = daemon.wait_exit();
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(daemon.log().contains("idle"), "{}", daemon.log());
    // Nothing was lost by leaving.
    let daemon = start(env);
    assert_eq!(info(&daemon, "kept")["state"], "idle");
}

#[test]
fn a_reload_changes_the_log_level_from_the_config_or_the_environment_file() {
    // RUST_LOG empty: the config's level decides.
    let env = Env::new().var("RUST_LOG", "");
    let daemon = start(env.clone());
    daemon.cli(&["spawn", "e", "--provider", "echo"]).ok();
    daemon.cli(&["message", "e", "quiet"]).ok();
    assert!(!daemon.log().contains("DEBUG"), "{}", daemon.log());
    write_config(&env, "[daemon]\nlog_level = \"debug\"\n");
    daemon.cli(&["serve", "--reload"]).ok();
    daemon.cli(&["message", "e", "loud"]).ok();
    common::eventually("debug lines after the reload", || {
        daemon.log().contains("DEBUG")
    });
    // RUST_LOG in the environment file wins over the config.
    write_environment(&env, "RUST_LOG=warn\n");
    daemon.cli(&["serve", "--reload"]).ok();
    let before = daemon.log().len();
    daemon.cli(&["message", "e", "hushed"]).ok();
    daemon.cli(&["list"]).ok();
    let after = daemon.log();
    assert!(!after[before..].contains("DEBUG"), "{}", &after[before..]);
    assert!(!after[before..].contains(" INFO "), "{}", &after[before..]);
}
