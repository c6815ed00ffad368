//! What bounds a coding agent (Claude Code, the pinned npm binary from
//! `$ORCHESTRATION_CLAUDE`, against `common::fake_anthropic`): the process
//! cap's bounded queue and its 429, and `agents.turn_timeout`. Without the
//! binary the tests say SKIPPED (a failure under
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).

use std::sync::mpsc;

use crate::common::Harness;
use crate::common::coding::{
    ClaudeSetup, TURN_PATIENCE, child_in, claude, line_of, reply, stream_message,
};

#[test]
fn past_the_process_cap_one_turn_waits_and_the_next_is_refused_with_429() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::with_config(&claude, "[limits]\nmax_agent_processes = 1\n");
    let daemon = setup.daemon();
    for name in ["first", "second", "third"] {
        setup.spawn(&daemon, name, &[]);
    }
    // The first agent's child runs on after its turn, holding the one slot.
    assert_eq!(reply(&daemon.say("first", "hello")), "echo: hello");

    std::thread::scope(|scope| {
        let (answered, answers) = mpsc::channel();
        for name in ["second", "third"] {
            let answered = answered.clone();
            let daemon = &daemon;
            scope.spawn(move || {
                let _ = answered.send((name, daemon.say(name, "my turn")));
            });
        }
        // One of the two waits in the queue (one place: one slot); the other
        // finds the queue full and is refused at once.
        let (refused, response) = answers.recv_timeout(TURN_PATIENCE).expect("an answer");
        assert_eq!(response.status, 429, "{}", response.text());
        assert_eq!(response.json()["code"], "processes_busy");
        // Refused before anything was recorded.
        let history = daemon.json("GET", &format!("/agents/{refused}/history"), None);
        assert!(
            !history.text().contains("my turn"),
            "a refused turn was recorded: {}",
            history.text()
        );
        // The CLI says what to do about it, while the other turn still waits.
        let out = daemon.cli(&["message", refused, "once more"]);
        assert_ne!(out.code(), 0, "{}", out.stdout());
        assert!(
            out.stderr().contains("limits.max_agent_processes"),
            "{}",
            out.stderr()
        );

        // A slot frees when the first agent's child stops: the waiting turn runs.
        daemon.cli(&["shutdown", "first"]).ok();
        let (waited, response) = answers
            .recv_timeout(TURN_PATIENCE)
            .expect("the waiting turn's answer");
        assert_ne!(waited, refused);
        assert_eq!(reply(&response), "echo: my turn");
    });
}

#[test]
fn a_coding_turn_past_turn_timeout_is_interrupted_kept_and_its_child_serves_on() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    // A first turn under the default bound, so a slow start of the CLI on
    // a loaded machine cannot use up the short one below.
    assert_eq!(reply(&daemon.say("coder", "warm up")), "echo: warm up");
    let pid = child_in(&setup.cwd).expect("the Claude Code child");
    setup.reconfigure("[agents]\nturn_timeout = \"2s\"\n");
    assert_eq!(daemon.json("POST", "/reload", None).status, 200);

    // The fake sends the first words, then nothing, ever.
    let mut stream = stream_message(&daemon, "coder", "hang: forever");
    line_of(&mut stream, "delta");
    let error = line_of(&mut stream, "error");
    assert_eq!(error["code"], "interrupted", "{error}");
    assert!(
        error["detail"]
            .as_str()
            .unwrap_or("")
            .contains("agents.turn_timeout (2s)"),
        "{error}"
    );
    let history = daemon.history("coder");
    let kept = history["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .cloned()
        .expect("a reply in history");
    assert_eq!(kept["sender"], "coder", "{kept}");
    assert_eq!(kept["metadata"]["interrupted"], true, "{kept}");
    assert!(
        kept["metadata"]["interrupted_reason"]
            .as_str()
            .unwrap_or("")
            .contains("agents.turn_timeout (2s)"),
        "{kept}"
    );
    let partial = kept["content"].as_str().unwrap_or("");
    assert!(
        !partial.is_empty() && "echo: hang: forever".starts_with(partial),
        "{partial:?}"
    );

    // The same child takes the next turn.
    setup.reconfigure("");
    assert_eq!(daemon.json("POST", "/reload", None).status, 200);
    assert_eq!(
        reply(&daemon.say("coder", "after that")),
        "echo: after that"
    );
    assert_eq!(child_in(&setup.cwd), Some(pid), "the child was replaced");
}
