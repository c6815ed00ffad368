//! What the CLI says in four places that said it wrong: the hint when no
//! daemon runs (dropping --no-autostart only when it was given), a search
//! for a hyphenated word and the line for finding nothing, a `since` that is
//! no date, and `watch`'s lines for an approval asked and answered. The
//! watch test drives the real Claude Code (`$ORCHESTRATION_CLAUDE`) as
//! `approvals` does; without it it says SKIPPED (or fails, with
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::common::coding::{ClaudeSetup, claude, line_of, stream_message};
use crate::common::in_process::InProcess;
use crate::common::{Env, Harness, PATIENCE, read_rest};

#[test]
fn dropping_no_autostart_is_suggested_only_when_it_was_given() {
    let env = Env::new().config("");
    // The harness sets ORCHESTRATION_NO_AUTOSTART=1; an empty value is false.
    let without = env.cli_env(
        &[("ORCHESTRATION_NO_AUTOSTART", "")],
        &["serve", "--status"],
    );
    assert_eq!(without.code(), 3, "{}", without.stderr());
    assert!(
        without.stderr().contains("orchestration serve --daemon"),
        "{}",
        without.stderr()
    );
    assert!(
        !without.stderr().contains("--no-autostart"),
        "{}",
        without.stderr()
    );
    for given in [
        env.cli(&["serve", "--status"]),
        env.cli_env(
            &[("ORCHESTRATION_NO_AUTOSTART", "")],
            &["--no-autostart", "list"],
        ),
    ] {
        assert_eq!(given.code(), 3, "{}", given.stderr());
        assert!(
            given
                .stderr()
                .contains("drop --no-autostart / ORCHESTRATION_NO_AUTOSTART"),
            "{}",
            given.stderr()
        );
    }
}

#[test]
fn a_hyphenated_word_is_searched_as_written_and_nothing_found_is_shown_plainly() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "a", "--provider", "echo"]).ok();
    daemon.cli(&["message", "a", "my key is sk-fake-123"]).ok();
    let found = daemon.cli(&["--json", "search", "sk-fake"]).ok().json();
    let results = found["results"].as_array().expect("results");
    assert!(!results.is_empty(), "{found}");
    assert!(
        results[0]["snippet"]
            .as_str()
            .unwrap_or_default()
            .contains("sk"),
        "{found}"
    );
    let prefix = daemon.cli(&["--json", "search", "sk-fa*"]).ok().json();
    assert!(
        !prefix["results"].as_array().unwrap().is_empty(),
        "{prefix}"
    );

    let http = daemon.request("GET", "/search?q=sk-fake", None);
    assert_eq!(http.status, 200, "{}", http.text());

    let none = daemon.cli(&["search", "\"no-such thing\""]).ok().stdout();
    assert_eq!(none.trim_end(), "nothing found for: \"no-such thing\"");
    assert!(!none.contains('\\'), "{none}");
}

#[test]
fn a_since_that_is_no_date_is_said_to_be_no_date() {
    let daemon = InProcess::start();
    for command in ["search", "usage"] {
        let mut args = vec![command, "--since", "2026-13-01T00:00:00Z"];
        if command == "search" {
            args.push("hello");
        }
        let out = daemon.cli(&args);
        assert_eq!(out.code(), 2, "{}", out.stderr());
        let error = out.stderr();
        assert!(
            error.contains("since \"2026-13-01T00:00:00Z\" is not a valid date and time"),
            "{error}"
        );
        assert!(!error.contains("unknown unit"), "{error}");
    }
    let day = daemon.cli(&["usage", "--since", "2026-01-31"]);
    assert!(
        day.stderr()
            .contains("is not a valid date and time (RFC 3339"),
        "{}",
        day.stderr()
    );
    let unit = daemon.cli(&["usage", "--since", "5x"]);
    assert!(unit.stderr().contains("unknown unit"), "{}", unit.stderr());
    daemon
        .cli(&["usage", "--since", "2026-01-31T12:00:00Z"])
        .ok();
}

#[test]
fn watch_names_the_tool_once_and_prints_the_answer() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut watch = daemon
        .env()
        .command(&["watch", "coder"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watch");
    // Read on a thread, so a line that never comes fails the test after
    // PATIENCE instead of hanging it.
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(watch.stdout.take().expect("watch's stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(PATIENCE)
            .expect("watch printed nothing more")
    };
    // watch prints "spawned" for a live agent only when it spawns, and
    // nothing shows when it has subscribed: messages are sent until one
    // shows up, so it is watching before the approval is asked.
    let subscribed = (0..50).any(|attempt| {
        let text = format!("hello {attempt}");
        daemon.cli(&["message", "coder", &text]).ok();
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_millis(500)).ok())
            .any(|line| line.contains(&format!("> {text}")))
    });
    assert!(subscribed, "watch never showed a message");

    let mut stream = stream_message(&daemon, "coder", "run: touch denied.txt");
    let id = line_of(&mut stream, "approval")["approval"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let asks = loop {
        let line = next();
        if line.contains("asks approval") {
            break line;
        }
    };
    assert!(
        asks.contains(&format!("asks approval {id}: Bash: ")),
        "{asks}"
    );
    assert_eq!(asks.matches("Bash").count(), 1, "{asks}");

    let denied = daemon.json(
        "POST",
        &format!("/approvals/{id}"),
        Some(json!({"decision": "deny", "reason": "not here"})),
    );
    assert_eq!(denied.status, 200, "{}", denied.text());
    read_rest(&mut stream);
    let resolved = loop {
        let line = next();
        if line.contains(&format!("approval {id}")) {
            break line;
        }
    };
    assert!(
        resolved.contains(&format!("approval {id}: denied (not here)")),
        "{resolved}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}
