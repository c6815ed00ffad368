//! The first hour of a new user (issue #16): errors that say what to do next,
//! pipes that close early, readable output, confirmation before deleting,
//! and finding the daemon from a bare shell.

mod common;

use std::process::Stdio;

use common::{Daemon, Env};

/// Runs a CLI command whose stdout is a pipe nobody reads any more: the
/// reading end is closed before the command starts, so its first write
/// meets EPIPE for certain.
fn run_into_closed_pipe(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    let out = daemon
        .env
        .command(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run orchestration");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let daemon = Daemon::start(&[]);
    daemon.cli(&["spawn", "p", "--provider", "echo"]).ok();
    daemon.cli(&["message", "p", "one two three"]).ok();
    for args in [
        &["history", "p"][..],
        &["--json", "history", "p"],
        &["list"],
        &["--json", "list"],
        &["message", "p", "streamed words here"],
        &["message", "--no-stream", "p", "whole"],
        &["task", "t", "a task", "--provider", "echo"],
        &["spawn", "q", "--provider", "echo"],
        &["models", "--provider", "echo"],
        &["completions", "bash"],
    ] {
        let (code, stderr) = run_into_closed_pipe(&daemon, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // The way people meet it: a pipeline whose reader stops early. (Whether
    // the write races head's exit or not, the status is 0 and stderr clean.)
    let status_file = daemon.env.dir.path().join("status");
    let out = daemon
        .env
        .shell(&format!(
            "for i in 1 2 3 4 5 6; do {bin} message p \"line $i\" >/dev/null; done; \
             {{ {bin} history p; echo $? >{status}; }} | head -1",
            bin = common::BIN,
            status = status_file.display()
        ))
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let status = std::fs::read_to_string(&status_file).expect("status");
    assert_eq!(status.trim(), "0");
}

#[allow(dead_code)]
fn unused(_: Env) {}
