//! Approvals answered from anywhere: `GET /approvals`, `POST
//! /approvals/{id}`, `orchestration approvals|approve|deny`, the lines
//! `message` prints while it waits, history's export of tool messages,
//! the timeout and the daemon's shutdown. The end-to-end tests drive the
//! real Claude Code (`$ORCHESTRATION_CLAUDE`) against the fake Anthropic
//! server, as `coding_agents` does; without the binary they say SKIPPED
//! (or fail, with `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`). The refusals
//! need no binary.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::common::coding::{ClaudeSetup, claude, line_of, stream_message};
use crate::common::in_process::InProcess;
use crate::common::{Harness, eventually, open_events, read_rest};

/// The approval a streamed message is waiting for.
fn asked(stream: &mut BufReader<UnixStream>) -> Value {
    line_of(stream, "approval")["approval"].clone()
}

/// The reply text the rest of a stream carries.
fn streamed_reply(rest: &str) -> String {
    rest.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(|line| line["type"] == "message")
        .and_then(|line| line["message"]["content"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no reply in: {rest}"))
}

fn answer(daemon: &InProcess, id: &str, body: Value) -> crate::common::HttpResponse {
    daemon.json("POST", &format!("/approvals/{id}"), Some(body))
}

#[test]
fn unknown_and_malformed_ids_are_refused_with_their_codes_and_exit_statuses() {
    let daemon = InProcess::start_tcp();
    let listed = daemon.json("GET", "/approvals", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json(), json!([]));
    let filtered = daemon.json("GET", "/approvals?agent=coder", None);
    assert_eq!(filtered.json(), json!([]));
    assert_eq!(daemon.json("GET", "/approvals?agent=.x", None).status, 422);

    let unknown = answer(&daemon, "abcdef", json!({"decision": "approve"}));
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.json()["code"], "approval_not_found");
    let malformed = answer(&daemon, "ABCDEF", json!({"decision": "approve"}));
    assert_eq!(malformed.status, 422, "{}", malformed.text());
    assert_eq!(malformed.json()["code"], "invalid_approval_id");
    let bad_body = answer(&daemon, "abcdef", json!({"decision": "maybe"}));
    assert_eq!(bad_body.status, 422);
    assert_eq!(bad_body.json()["code"], "invalid_body");
    let long_reason = "x".repeat(4096);
    let too_long = answer(
        &daemon,
        "abcdef",
        json!({"decision": "deny", "reason": long_reason}),
    );
    assert_eq!(
        too_long.json()["code"],
        "invalid_body",
        "{}",
        too_long.text()
    );

    // Data plane: the token answers approvals over TCP too.
    let over_tcp = daemon.tcp_json(
        "POST",
        "/approvals/abcdef",
        Some(json!({"decision": "deny"})),
    );
    assert_eq!(over_tcp.status, 404, "{}", over_tcp.text());
    assert_eq!(over_tcp.json()["code"], "approval_not_found");

    // The CLI: an unknown id exits 4, a malformed one 2 (before sending).
    let out = daemon.cli(&["approve", "abcdef"]);
    assert_eq!(out.code(), 4, "{}", out.stderr());
    assert!(
        out.stderr().contains("no approval 'abcdef'"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("orchestration approvals"),
        "{}",
        out.stderr()
    );
    let out = daemon.cli(&["deny", "nope", "--reason", "x"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let out = daemon.cli(&["approvals"]);
    out.ok();
    assert_eq!(out.stdout().trim(), "no pending approvals");
    let out = daemon.cli(&["--json", "approvals", "--agent", "coder"]);
    out.ok();
    assert_eq!(out.json(), json!([]));

    // README's table of codes has the three.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for row in [
        "| `approval_not_found` | 404 |",
        "| `already_resolved` | 409 |",
        "| `invalid_approval_id` | 422 |",
    ] {
        assert!(readme.contains(row), "README lacks {row}");
    }
}

#[test]
fn a_command_approved_from_another_terminal_runs_in_the_cwd_and_is_exported() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);

    // `message` off a terminal: it says how to answer and keeps waiting.
    let message = daemon
        .env()
        .command(&["message", "coder", "run: touch made.txt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start message");
    let mut id = String::new();
    eventually("the approval is pending", || {
        let listed = daemon.json("GET", "/approvals", None).json();
        match listed[0]["id"].as_str() {
            Some(found) => {
                id = found.to_owned();
                true
            }
            None => false,
        }
    });
    let listed = daemon.cli(&["approvals"]);
    listed.ok();
    let table = listed.stdout();
    assert!(table.starts_with("ID"), "{table}");
    let row = table
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {table}"));
    assert!(row.contains("coder"), "{row}");
    assert!(row.contains("Bash"), "{row}");
    assert!(row.contains("touch made.txt"), "{row}");
    let json = daemon.cli(&["--json", "approvals", "--agent", "coder"]);
    assert_eq!(json.json()[0]["id"], id.as_str());
    assert_eq!(json.json()[0]["cwd"], setup.cwd.display().to_string());

    let approved = daemon.cli(&["approve", &id]);
    approved.ok();
    assert!(
        approved
            .stdout()
            .starts_with(&format!("approved {id}: coder Bash: touch made.txt")),
        "{}",
        approved.stdout()
    );
    let out = message.wait_with_output().expect("message ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(setup.cwd.join("made.txt").is_file(), "{stderr}");
    assert!(stdout.starts_with("tool said"), "{stdout}");
    assert!(stderr.contains("⚙ Bash: touch made.txt"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "coder asks to run Bash: touch made.txt (in {})",
            setup.cwd.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`orchestration approve {id}`")),
        "{stderr}"
    );
    assert!(stderr.contains("  ↳ "), "{stderr}");
    assert!(
        !stdout.contains("⚙"),
        "tool activity stays off stdout: {stdout}"
    );

    // A second answer is refused: 409 on the API, exit 1 on the CLI.
    let again = answer(&daemon, &id, json!({"decision": "deny"}));
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["code"], "already_resolved");
    let out = daemon.cli(&["deny", &id]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("already answered"),
        "{}",
        out.stderr()
    );

    // The history shows the call and its result, marked or folded.
    let text = daemon.cli(&["history", "coder"]);
    text.ok();
    assert!(
        text.stdout()
            .contains("coder: [tool call] Bash: touch made.txt"),
        "{}",
        text.stdout()
    );
    assert!(
        text.stdout().contains("coder: [tool result] Bash: "),
        "{}",
        text.stdout()
    );
    let markdown = daemon.cli(&["history", "coder", "--format", "markdown"]);
    markdown.ok();
    let markdown = markdown.stdout();
    assert!(
        markdown.contains(
            "<details><summary>⚙ <b>coder</b> · tool call <code>Bash</code>: touch made.txt"
        ),
        "{markdown}"
    );
    assert!(
        markdown.contains("↳ tool result <code>Bash</code>"),
        "{markdown}"
    );
    assert_eq!(
        markdown.matches("<details>").count(),
        markdown.matches("</details>").count()
    );
}

#[test]
fn a_denial_with_a_reason_reaches_the_model_and_nothing_runs() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut events = open_events(&daemon.env().socket());
    let mut stream = stream_message(&daemon, "coder", "run: touch denied.txt");
    let approval = asked(&mut stream);
    let id = approval["id"].as_str().expect("an id").to_owned();
    let out = daemon.cli(&["deny", &id, "--reason", "not in this repo"]);
    out.ok();
    assert!(
        out.stdout().contains("(reason: not in this repo)"),
        "{}",
        out.stdout()
    );
    let text = streamed_reply(&read_rest(&mut stream));
    assert!(text.starts_with("tool said (is_error)"), "{text}");
    assert!(text.contains("not in this repo"), "{text}");
    assert!(!setup.cwd.join("denied.txt").exists());
    let resolved = line_of(&mut events, "approval_resolved");
    assert_eq!(resolved["approval_id"], id.as_str());
    assert_eq!(resolved["decision"], "deny");
    assert_eq!(resolved["reason"], "not in this repo");
    assert_eq!(daemon.json("GET", "/approvals", None).json(), json!([]));
}

#[test]
fn an_unanswered_approval_is_denied_at_its_timeout() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::with_config(&claude, "[agents]\napproval_timeout = \"1s\"\n");
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut events = open_events(&daemon.env().socket());
    let mut stream = stream_message(&daemon, "coder", "run: touch late.txt");
    let id = asked(&mut stream)["id"].as_str().expect("an id").to_owned();
    let resolved = line_of(&mut events, "approval_resolved");
    assert_eq!(resolved["approval_id"], id.as_str());
    assert_eq!(resolved["decision"], "deny");
    assert!(
        resolved["reason"]
            .as_str()
            .is_some_and(|r| r.contains("approval_timeout")),
        "{resolved}"
    );
    let text = streamed_reply(&read_rest(&mut stream));
    assert!(text.contains("approval_timeout"), "{text}");
    assert!(!setup.cwd.join("late.txt").exists());
    // Too late now: expired is settled.
    let late = answer(&daemon, &id, json!({"decision": "approve"}));
    assert_eq!(late.status, 409, "{}", late.text());
}

#[test]
fn a_pending_approval_is_denied_at_shutdown_and_the_turn_records_it() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let mut daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut events = open_events(&daemon.env().socket());
    let mut stream = stream_message(&daemon, "coder", "run: touch never.txt");
    let id = asked(&mut stream)["id"].as_str().expect("an id").to_owned();
    daemon.stop().expect("a clean stop");
    let resolved = line_of(&mut events, "approval_resolved");
    assert_eq!(resolved["approval_id"], id.as_str());
    assert_eq!(resolved["reason"], "the daemon is shutting down");
    let rest = read_rest(&mut stream);
    assert!(rest.contains("shutting down"), "{rest}");
    assert!(!setup.cwd.join("never.txt").exists());
    drop(daemon);

    let daemon = setup.daemon();
    let history = daemon.history("coder");
    let denied = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["message_type"] == "tool_result")
        .unwrap_or_else(|| panic!("no tool result recorded: {history}"));
    assert_eq!(denied["metadata"]["is_error"], true, "{denied}");
    assert!(
        denied["content"]
            .as_str()
            .is_some_and(|c| c.contains("the daemon is shutting down")),
        "{denied}"
    );
}
