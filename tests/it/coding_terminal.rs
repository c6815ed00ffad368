//! `orchestration message` at a real terminal: a coding agent's (Claude
//! Code's, from `$ORCHESTRATION_CLAUDE`) permission request is offered as
//! `[y/N]` inline and the typed answer is the approval's. The terminal is
//! a pseudo-terminal `tests/pty/answer.py` opens (Python's standard `pty`
//! module: `$ORCHESTRATION_MCP_PYTHON`, else `python3` on PATH). Without
//! Claude Code the tests say SKIPPED (a failure under
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::coding::{ClaudeSetup, claude};
use crate::common::in_process::InProcess;
use crate::common::{BIN, Harness};

/// A Python 3 to open the pseudo-terminal with.
fn python() -> PathBuf {
    std::env::var_os("ORCHESTRATION_MCP_PYTHON")
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// `orchestration message coder PROMPT` on a terminal, every `[y/N]`
/// answered `answer`; what the terminal showed, and how it ended.
fn message_at_a_terminal(daemon: &InProcess, answer: &str, prompt: &str) -> (Output, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pty/answer.py");
    let output = daemon
        .env()
        .shell(r#"exec "$PTY_PYTHON" "$PTY_SCRIPT" "$PTY_ANSWER" "$PTY_BIN" message coder "$PTY_PROMPT""#)
        .env("PTY_PYTHON", python())
        .env("PTY_SCRIPT", script)
        .env("PTY_ANSWER", answer)
        .env("PTY_BIN", BIN)
        .env("PTY_PROMPT", prompt)
        .output()
        .expect("run the pseudo-terminal");
    let screen = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, screen)
}

#[test]
fn on_a_terminal_message_offers_the_approval_inline_and_y_runs_the_command() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);

    let (output, screen) = message_at_a_terminal(&daemon, "y", "run: touch yes.txt");
    assert!(
        output.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screen.contains("run it? [y/N]"), "{screen}");
    assert!(screen.contains("approved "), "{screen}");
    assert!(screen.contains("tool said"), "{screen}");
    assert!(!screen.contains("(is_error)"), "{screen}");
    assert!(
        setup.cwd.join("yes.txt").is_file(),
        "the command did not run"
    );
    assert_eq!(
        daemon.json("GET", "/approvals", None).json(),
        serde_json::json!([])
    );
}

#[test]
fn on_a_terminal_anything_but_y_denies_and_the_command_does_not_run() {
    let Some(claude) = claude() else { return };
    let setup = ClaudeSetup::new(&claude);
    let daemon = setup.daemon();
    setup.spawn(&daemon, "coder", &[]);

    let (output, screen) = message_at_a_terminal(&daemon, "n", "run: touch no.txt");
    assert!(
        output.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screen.contains("run it? [y/N]"), "{screen}");
    assert!(screen.contains("denied "), "{screen}");
    assert!(screen.contains("tool said (is_error)"), "{screen}");
    assert!(!setup.cwd.join("no.txt").exists(), "a denied command ran");
}
