//! The first hour, second pass: where a new user still had to guess —
//! prompts from a pipe, empty prompts, names, read-only config files,
//! conversations that ran together, and a log that repeated itself.

use crate::common;

use common::in_process::InProcess;
use common::{Daemon, Env, Harness};

#[test]
fn a_piped_prompt_needs_no_dash_and_an_empty_one_is_refused_however_it_comes() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "p", "--provider", "echo"]).ok();
    let piped = daemon.env.cli_with_stdin(&["message", "p"], "hi from a pipe\n");
    assert_eq!(piped.ok().stdout(), "hi from a pipe\n");
    let task = daemon
        .env
        .cli_with_stdin(&["task", "t", "--provider", "echo"], "a piped task\n");
    assert_eq!(task.ok().stdout(), "a piped task\n");

    for (args, input) in [
        (&["message", "p", ""][..], ""),
        (&["message", "p", "  "], ""),
        (&["message", "p"], ""),
        (&["message", "p", "-"], "\n"),
        (&["task", "t", "", "--provider", "echo"], ""),
    ] {
        let out = daemon.env.cli_with_stdin(args, input);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        assert!(out.stderr().contains("is empty"), "{args:?}: {}", out.stderr());
    }
    // Nothing empty was sent.
    let history = daemon.cli(&["--json", "history", "p"]).json();
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_name_with_a_non_ascii_letter_says_ascii() {
    let daemon = InProcess::start();
    let out = daemon.cli(&["spawn", "café", "--provider", "echo"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("only contain ASCII letters"),
        "{}",
        out.stderr()
    );
}

#[test]
fn config_set_leaves_a_read_only_file_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mine = "# mine, read-only on purpose\n[providers]\nmax_retries = 2\n";
    let env = Env::new().config(mine);
    let file = env.dir.path().join("config.toml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    for args in [
        &["config", "set", "providers.max_retries", "1"][..],
        &["config", "unset", "providers.max_retries"],
    ] {
        let out = env.cli(args);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr());
        assert!(out.stderr().contains("is read-only"), "{}", out.stderr());
        assert!(
            out.stderr().contains(&file.display().to_string()),
            "{}",
            out.stderr()
        );
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), mine);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.cli(&["config", "set", "providers.max_retries", "1"]).ok();
    assert!(
        std::fs::read_to_string(&file)
            .expect("read")
            .contains("max_retries = 1"),
    );
}

#[test]
fn history_all_as_text_separates_the_conversations() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "h", "--provider", "echo"]).ok();
    daemon.cli(&["message", "h", "first life"]).ok();
    daemon.cli(&["shutdown", "h"]).ok();
    daemon.cli(&["spawn", "h", "--provider", "echo"]).ok();
    daemon.cli(&["message", "h", "second life"]).ok();
    let ids: Vec<String> = daemon.cli(&["--json", "history", "--list", "h"]).json()["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);

    let out = daemon.cli(&["history", "h", "--all"]);
    let text = out.ok().stdout();
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("── conversation "))
        .collect();
    assert_eq!(headings.len(), 2, "{text}");
    assert!(headings[0].contains(&ids[0]) && headings[1].contains(&ids[1]), "{text}");
    let first = text.find("first life").expect("first");
    let second = text.find("second life").expect("second");
    let between = &text[first..second];
    assert!(between.contains(&ids[1]), "{text}");

    // --limit counts from the end, across conversations.
    let limited = daemon.cli(&["history", "h", "--all", "--limit", "2"]);
    let limited = limited.ok().stdout();
    assert!(!limited.contains("first life"), "{limited}");
    assert!(limited.contains("second life"), "{limited}");
    // Without --all, no heading: as before.
    assert!(!daemon.cli(&["history", "h"]).ok().stdout().contains("──"));
}

#[test]
fn a_new_store_says_once_that_it_was_created() {
    let daemon = Daemon::start(&[]);
    daemon.cli(&["list"]).ok();
    let log = daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("store created") || l.contains("schema migrated"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("from=0"), "{}", lines[0]);
}
