//! Two behaviours README states that are not the daemon's JSON errors: a
//! request target over about 64 KiB gets the HTTP parser's bare 414 (not
//! 431 `head_too_large`), and an approval id answered after a restart is
//! unknown (404 `approval_not_found`, exit status 4), not 409. The second
//! drives the real Claude Code (`$ORCHESTRATION_CLAUDE`) as `approvals`
//! does; without it it says SKIPPED (or fails, with
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).

use crate::common::coding::{ClaudeSetup, claude, line_of, stream_message};
use crate::common::in_process::InProcess;
use crate::common::{Harness, read_rest};

#[test]
fn a_request_target_over_64_kib_gets_a_bare_414_and_the_daemon_serves_on() {
    let daemon = InProcess::start();
    let long = format!("/search?q={}", "a".repeat(70 * 1024));
    let refused = daemon.request("GET", &long, None);
    assert_eq!(refused.status, 414, "{}", refused.text());
    assert_eq!(refused.text(), "", "no body");
    // Under the limit, the daemon's own checks answer, in JSON.
    let short = format!("/search?q={}", "a".repeat(60 * 1024));
    assert_eq!(daemon.request("GET", &short, None).status, 200);
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
}

#[test]
fn an_approval_answered_after_a_restart_is_not_found() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let mut daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);
    let mut stream = stream_message(&daemon, "coder", "run: touch never.txt");
    let id = line_of(&mut stream, "approval")["approval"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    daemon.stop().expect("a clean stop");
    read_rest(&mut stream);
    drop(daemon);

    let daemon = setup.daemon();
    let late = daemon.cli(&["approve", &id]);
    assert_eq!(late.code(), 4, "{}", late.stderr());
    let http = daemon.json(
        "POST",
        &format!("/approvals/{id}"),
        Some(serde_json::json!({"decision": "approve"})),
    );
    assert_eq!(http.status, 404, "{}", http.text());
    assert_eq!(http.json()["code"], "approval_not_found", "{}", http.text());
    assert!(!setup.cwd.join("never.txt").exists());
}
