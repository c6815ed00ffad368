//! Coding agents: Claude Code held by the daemon as a named agent, driven
//! as a real child (the pinned npm binary from `$ORCHESTRATION_CLAUDE`)
//! against a fake Anthropic server on 127.0.0.1 (`common::fake_anthropic`).
//! Without the binary the tests that need it say SKIPPED, unless
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1` (set by `scripts/test.sh`), when
//! they fail. Spawn checks, the TCP refusal of `bypass` and the Python
//! client's `agent_type: "sdk"` need no binary.

use serde_json::json;

use crate::common::coding::{
    ClaudeSetup as Setup, child_in, claude, env_with_agent, line_of, reply, stream_message,
    working_in,
};
use crate::common::in_process::InProcess;
use crate::common::{Harness, eventually, open_events, read_rest};

#[test]
fn turns_keep_their_context_and_a_restarted_daemon_resumes_the_session() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let info = daemon.json("GET", "/agents/coder", None).json();
    assert_eq!(info["provider"], "claude-code");
    assert_eq!(info["agent_type"], "sdk");
    assert_eq!(info["cwd"], setup.cwd.display().to_string());
    assert_eq!(reply(&daemon.say("coder", "hello one")), "echo: hello one");
    assert_eq!(
        reply(&daemon.say("coder", "second turn")),
        "echo: second turn"
    );
    let sent = setup.fake.last_conversation().join("\n");
    assert!(sent.contains("hello one"), "{sent}");
    drop(daemon);

    let daemon = setup.daemon();
    assert_eq!(
        reply(&daemon.say("coder", "third turn")),
        "echo: third turn"
    );
    let sent = setup.fake.last_conversation().join("\n");
    for earlier in ["hello one", "echo: hello one", "second turn", "third turn"] {
        assert!(sent.contains(earlier), "{earlier:?} not resumed in: {sent}");
    }
    let history = daemon.history("coder");
    let usage = &history["messages"][1]["metadata"]["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap_or(0) > 0, "{history}");
}

#[test]
fn an_allowed_command_runs_in_the_cwd_and_its_call_and_result_are_history() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &["--allow", "Bash(touch:*)"]);
    let out = daemon.cli(&["message", "coder", "run: touch made_by_claude.txt"]);
    out.ok();
    assert!(out.stdout().contains("tool said"), "{}", out.stdout());
    assert!(setup.cwd.join("made_by_claude.txt").is_file());

    let history = daemon.history("coder");
    let messages = history["messages"].as_array().expect("messages");
    let call = messages
        .iter()
        .find(|m| m["message_type"] == "tool_call")
        .expect("a tool call in history");
    assert_eq!(call["metadata"]["tool"], "Bash");
    assert_eq!(
        call["metadata"]["input"]["command"],
        "touch made_by_claude.txt"
    );
    let result = messages
        .iter()
        .find(|m| m["message_type"] == "tool_result")
        .expect("a tool result in history");
    assert_eq!(
        result["metadata"]["tool_use_id"],
        call["metadata"]["tool_use_id"]
    );
    assert_eq!(result["metadata"]["is_error"], false);
    // The result's own words are searchable.
    let word = result["content"]
        .as_str()
        .and_then(|text| {
            text.split(|c: char| !c.is_alphanumeric())
                .find(|w| w.len() > 3)
        })
        .expect("a word in the tool result")
        .to_owned();
    let hits = daemon
        .json("GET", &format!("/search?q={word}"), None)
        .json();
    assert!(
        hits["results"]
            .as_array()
            .expect("results")
            .iter()
            .any(|hit| hit["message_id"] == result["id"]),
        "search for {word:?} missed the tool result: {hits}"
    );
}

#[test]
fn with_approval_never_a_command_does_not_run_and_the_model_is_told() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &["--approval", "never"]);
    let text = reply(&daemon.say("coder", "run: touch denied.txt"));
    assert!(text.starts_with("tool said (is_error)"), "{text}");
    assert!(text.contains("not allowed"), "{text}");
    assert!(!setup.cwd.join("denied.txt").exists());
}

#[test]
fn a_command_that_asks_is_a_pending_approval_an_event_and_a_stream_line() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut events = open_events(&daemon.env().socket());
    let mut stream = stream_message(&daemon, "coder", "run: touch asked.txt");
    let call = line_of(&mut stream, "tool_call");
    assert_eq!(call["call"]["name"], "Bash");
    let asked = line_of(&mut stream, "approval");
    let approval = &asked["approval"];
    assert_eq!(approval["agent"], "coder");
    assert_eq!(approval["tool"], "Bash");
    assert_eq!(approval["cwd"], setup.cwd.display().to_string());
    assert!(
        approval["summary"]
            .as_str()
            .unwrap_or("")
            .contains("touch asked.txt"),
        "{approval}"
    );
    let event = line_of(&mut events, "approval_requested");
    assert_eq!(event["approval"]["id"], approval["id"]);
    assert!(!setup.cwd.join("asked.txt").exists());

    // Interrupting the turn withdraws the request; the child stays.
    let interrupted = daemon.json("POST", "/agents/coder/interrupt", None);
    assert_eq!(interrupted.status, 202);
    let resolved = line_of(&mut events, "approval_resolved");
    assert_eq!(resolved["approval_id"], approval["id"]);
    assert_eq!(resolved["decision"], "deny");
    let rest = read_rest(&mut stream);
    assert!(!setup.cwd.join("asked.txt").exists(), "{rest}");
    assert_eq!(reply(&daemon.say("coder", "and now")), "echo: and now");
}

#[test]
fn an_interrupted_turn_keeps_its_partial_reply_and_the_next_turn_runs() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut stream = stream_message(&daemon, "coder", "slow: a long story");
    line_of(&mut stream, "delta");
    let interrupted = daemon.json("POST", "/agents/coder/interrupt", None);
    assert_eq!(interrupted.json()["interrupted"], true);
    let message = line_of(&mut stream, "message");
    assert_eq!(message["message"]["metadata"]["interrupted"], true);
    let partial = message["message"]["content"].as_str().expect("content");
    assert!(
        !partial.is_empty() && "echo: slow: a long story".starts_with(partial),
        "{partial:?}"
    );
    assert_eq!(
        reply(&daemon.say("coder", "after that")),
        "echo: after that"
    );
}

#[test]
fn a_child_killed_mid_turn_fails_that_turn_and_the_next_resumes_the_session() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    assert_eq!(
        reply(&daemon.say("coder", "remember me")),
        "echo: remember me"
    );
    // Claude Code writes its session file behind the turn's answer; a kill
    // before that write loses the turn from its own record, which no
    // daemon can bring back. The daemon's part is to resume the session.
    eventually("Claude Code to write the first turn to its session", || {
        setup.session_files_contain("echo: remember me")
    });
    let mut stream = stream_message(&daemon, "coder", "slow: a story to cut");
    line_of(&mut stream, "delta");
    let pid = child_in(&setup.cwd).expect("the Claude Code child, working in the project dir");
    crate::common::signal(pid, "KILL");
    let error = line_of(&mut stream, "error");
    assert_eq!(error["status"], 502, "{error}");
    assert_eq!(error["code"], "agent_exited", "{error}");
    assert!(
        error["detail"].as_str().unwrap_or("").contains("signal 9"),
        "{error}"
    );
    assert_eq!(
        reply(&daemon.say("coder", "still there?")),
        "echo: still there?"
    );
    let sent = setup.fake.last_conversation().join("\n");
    assert!(
        sent.contains("remember me"),
        "the session was not resumed: {sent}"
    );
}

#[test]
fn an_idle_child_stops_and_the_next_message_resumes_its_session() {
    let Some(claude) = claude() else { return };
    let setup = Setup::with_config(&claude, "[agents]\nidle_timeout = \"1s\"\n");
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    assert_eq!(
        reply(&daemon.say("coder", "before the pause")),
        "echo: before the pause"
    );
    eventually("the idle child to stop", || {
        working_in(&setup.cwd).is_none()
    });
    assert_eq!(
        reply(&daemon.say("coder", "after the pause")),
        "echo: after the pause"
    );
    let sent = setup.fake.last_conversation().join("\n");
    assert!(
        sent.contains("before the pause"),
        "the session was not resumed: {sent}"
    );
}

#[test]
fn shutting_the_agent_down_stops_its_child() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    assert_eq!(reply(&daemon.say("coder", "hello")), "echo: hello");
    assert!(child_in(&setup.cwd).is_some());
    daemon.cli(&["shutdown", "coder"]).ok();
    eventually("the child to stop", || working_in(&setup.cwd).is_none());
}

#[test]
fn fan_out_reaches_echo_and_claude_code_agents_alike() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    daemon.cli(&["spawn", "parrot", "--provider", "echo"]).ok();
    let answer = daemon.json(
        "POST",
        "/messages",
        Some(json!({"agents": ["coder", "parrot"], "content": "hello both"})),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let results = answer.json();
    assert_eq!(
        results["coder"]["messages"][0]["content"], "echo: hello both",
        "{results}"
    );
    assert_eq!(
        results["parrot"]["messages"][0]["content"], "hello both",
        "{results}"
    );
}

#[test]
fn a_missing_executable_is_refused_at_spawn_with_the_install_line() {
    let env = env_with_agent("claude-code", "/nonexistent/bin/claude");
    let dir = env.dir.path().display().to_string();
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let out = daemon.cli(&["spawn", "coder", "--provider", "claude-code", "--cwd", &dir]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr()
            .contains("npm install -g @anthropic-ai/claude-code"),
        "{}",
        out.stderr()
    );
    let listed = daemon.json("GET", "/agents", None).json();
    assert_eq!(listed, json!([]), "nothing was spawned");
}

#[test]
fn a_cwd_that_is_not_a_directory_of_ours_is_refused_at_spawn() {
    let env = env_with_agent("claude-code", "/bin/true");
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "").expect("file");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    for (cwd, why) in [
        (file.display().to_string(), "is not a directory"),
        ("/nonexistent/project".to_owned(), "does not exist"),
        ("relative/dir".to_owned(), "not an absolute path"),
    ] {
        let answer = daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "coder", "provider": "claude-code", "cwd": cwd})),
        );
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.json()["code"], "invalid_cwd");
        assert!(answer.detail().contains(why), "{}", answer.detail());
    }
}

#[test]
fn the_python_clients_sdk_spawn_is_a_claude_code_agent() {
    let env = env_with_agent("claude-code", "/bin/true");
    let dir = env.dir.path().display().to_string();
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let answer = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "py", "agent_type": "sdk", "cwd": dir})),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let info = answer.json();
    assert_eq!(info["provider"], "claude-code");
    assert_eq!(info["agent_type"], "sdk");
    assert_eq!(info["cwd"], dir);
}

#[test]
fn bypass_is_refused_over_tcp_and_accepted_on_the_socket() {
    let env = env_with_agent("claude-code", "/bin/true");
    let dir = env.dir.path().display().to_string();
    let daemon = InProcess::start_in(env, true);
    let spawn = |name: &str| json!({"name": name, "provider": "claude-code", "cwd": dir, "approval": "bypass"});
    let refused = daemon.tcp_json("POST", "/agents", Some(spawn("over-tcp")));
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["code"], "bypass_refused");
    let task = daemon.tcp_json(
        "POST",
        "/agents/over-tcp/task",
        Some(json!({"prompt": "hi", "provider": "claude-code", "cwd": dir, "approval": "bypass"})),
    );
    assert_eq!(task.status, 403, "{}", task.text());
    let asked = daemon.tcp_json(
        "POST",
        "/agents",
        Some(json!({"name": "asks", "provider": "claude-code", "cwd": dir})),
    );
    assert_eq!(asked.status, 200, "{}", asked.text());
    let accepted = daemon.json("POST", "/agents", Some(spawn("on-socket")));
    assert_eq!(accepted.status, 200, "{}", accepted.text());
}

#[test]
fn the_agents_key_printed_by_a_command_reaches_no_history_or_stream() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &["--allow", "Bash(env)"]);
    let mut stream = stream_message(&daemon, "coder", "run: env");
    let said = read_rest(&mut stream);
    assert!(!said.contains("sk-fake"), "the key was streamed: {said}");
    let history = daemon.history("coder").to_string();
    assert!(
        !history.contains("sk-fake"),
        "the key is in history: {history}"
    );
    // The command did print it: it was scrubbed, not missing.
    assert!(
        history.contains("ANTHROPIC_API_KEY=[redacted]"),
        "{history}"
    );
}
