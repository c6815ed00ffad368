//! Human output is safe on a terminal and reads the same everywhere: text
//! from models, tools and the network has its control characters made
//! visible (`--raw` opts out; `--json` stays exact), and every timestamp is
//! printed by one formatter, to the millisecond.

use crate::common;

use common::fake_provider::{FakeProvider, Reply, data, openai_chunks};
use common::in_process::InProcess;
use common::{Env, Harness};

/// Sets the window title, writes the clipboard (OSC 52), clears the screen,
/// a C1 CSI, an OSC 8 link, and a carriage return that would overwrite the line.
const HOSTILE: &str = "title\x1b]0;pwned\x07 clip\x1b]52;c;aGk=\x07 clear\x1b[2J c1\u{9b}31m \
                       link\x1b]8;;http://x\x1b\\ cr\rover";

/// No byte of an escape sequence that a terminal would act on.
fn assert_inert(what: &str, text: &str) {
    for c in ['\x1b', '\x07', '\r', '\u{9b}'] {
        assert!(!text.contains(c), "{what}: raw {c:?} in {text:?}");
    }
}

#[test]
fn control_characters_from_models_are_made_visible_and_json_stays_exact() {
    let daemon = InProcess::start();
    // A model name set through the API reaches `list` and `spawn`.
    daemon
        .cli(&[
            "spawn",
            "e",
            "--provider",
            "echo",
            "--model",
            "m\x1b]0;t\x07",
        ])
        .ok();
    // The echo provider sends the message back: the reply carries every sequence.
    let reply = daemon.cli(&["message", "e", HOSTILE]);
    assert_inert("message", &reply.ok().stdout());
    assert!(
        reply.stdout().contains("clip\\u{1b}]52;c;aGk=\\u{7}"),
        "{:?}",
        reply.stdout()
    );
    assert!(
        reply.stdout().contains("cr\\u{d}over"),
        "{:?}",
        reply.stdout()
    );
    assert_inert(
        "message --no-stream",
        &daemon
            .cli(&["message", "--no-stream", "e", HOSTILE])
            .ok()
            .stdout(),
    );

    for args in [
        &["history", "e"][..],
        &["history", "e", "--format", "markdown"],
        &["list"],
        &["search", "clip"],
        &["task", "t", HOSTILE, "--provider", "echo"],
    ] {
        let out = daemon.cli(args);
        assert_inert(&format!("{args:?}"), &out.ok().stdout());
        assert!(
            out.stdout().contains("\\u{1b}"),
            "{args:?}: {:?}",
            out.stdout()
        );
    }

    // --raw is the opt-out; --json and jsonl keep the text exact.
    let raw = daemon.cli(&["--raw", "message", "e", HOSTILE]);
    assert_eq!(raw.ok().stdout(), format!("{HOSTILE}\n"));
    let json = daemon.cli(&["--json", "history", "e"]).json();
    assert_eq!(json["messages"][1]["content"], HOSTILE);
    let jsonl = daemon.cli(&["history", "e", "--format", "jsonl"]);
    assert!(
        jsonl.ok().stdout().contains("\\u001b]52"),
        "{}",
        jsonl.stdout()
    );
    let listed = daemon.cli(&["--json", "list"]).json();
    assert_eq!(listed[0]["model"], "m\x1b]0;t\x07");
}

#[test]
fn a_model_servers_mid_stream_error_is_made_visible_too() {
    let fake = FakeProvider::start();
    let failing = || {
        let mut blocks = openai_chunks(&["partial "]);
        blocks.truncate(2);
        blocks.push(data(
            &serde_json::json!({"error": {"message": "bad\x1b]0;pwned\x07 request\x1b[2J"}}),
        ));
        Reply::sse(&blocks)
    };
    let env = Env::new().config("[providers]\nmax_retries = 0\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let base = fake.url("/v1");
    daemon
        .cli(&["spawn", "f", "--base-url", &base, "--model", "m"])
        .ok();
    for args in [
        &["message", "f", "hi"][..],
        &["--raw", "message", "f", "hi"],
    ] {
        fake.push(failing());
        let out = daemon.cli(args);
        assert_eq!(out.code(), 1, "{}", out.stderr());
        assert!(out.stdout().starts_with("partial"), "{}", out.stdout());
        assert_inert(&format!("{args:?}"), &out.stderr());
        assert!(
            out.stderr().contains("bad\\u{1b}]0;pwned"),
            "{}",
            out.stderr()
        );
    }
}

#[test]
fn watch_shows_control_characters_visibly() {
    let mut daemon = InProcess::start();
    let watch = daemon
        .env
        .command(&["watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    common::eventually("the watcher subscribed", || {
        daemon.log().contains("route=\"events\"")
    });
    daemon.cli(&["spawn", "w", "--provider", "echo"]).ok();
    daemon.cli(&["message", "w", HOSTILE]).ok();
    daemon.stop().expect("stop");
    let out = watch.wait_with_output().expect("watch output");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_inert("watch", &screen);
    assert!(screen.contains("w  > title\\u{1b}]0;pwned"), "{screen:?}");
}

/// `2025-01-31T01:10:44.709Z`.
fn is_millisecond_timestamp(stamp: &str) -> bool {
    stamp.len() == 24
        && stamp.ends_with('Z')
        && stamp.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .is_ok()
}

#[test]
fn every_human_timestamp_is_to_the_millisecond() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "s", "--provider", "echo"]).ok();
    daemon.cli(&["message", "s", "findable words"]).ok();
    let search = daemon.cli(&["search", "findable"]);
    let header = search
        .ok()
        .stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    // `s (human, 2025-01-31T01:10:44.709Z)`
    let stamp = header
        .rsplit_once(", ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_default();
    assert!(is_millisecond_timestamp(stamp), "{header}");

    let status = daemon.cli(&["serve", "--status"]);
    let loaded = status
        .ok()
        .stdout()
        .lines()
        .find_map(|l| {
            l.split_once("(loaded ")
                .map(|(_, rest)| rest.trim_end_matches(')').to_owned())
        })
        .unwrap_or_else(|| panic!("no config line: {}", status.stdout()));
    assert!(is_millisecond_timestamp(&loaded), "{loaded}");
}
