//! An API agent's MCP servers misbehaving inside a turn, seen from both
//! ends: a call cut short (by `tools.call_timeout`, or by an interrupt)
//! reaches the server as MCP cancellation, a server killed mid-call is an
//! error result the model is told and is started again for the next turn,
//! and a server that never answers `initialize` fails the turn within
//! `tools.call_timeout`.
//!
//! The server is `tests/mcp/slow_server.py`, on the official MCP Python SDK
//! (`$ORCHESTRATION_MCP_PYTHON`, installed by `scripts/test.sh`; without it
//! these tests say SKIPPED, or fail under
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`): it writes its pid, and notes
//! in files when a `wait` call starts and when it is cancelled. The model
//! is the fake server (real HTTP on 127.0.0.1); the daemon runs in-process.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::fake_provider::{FakeProvider, Reply, openai_chunks};
use crate::common::in_process::InProcess;
use crate::common::tool_calls::{installed, marker, openai_tool_calls, pids_with, sent_results};
use crate::common::{Env, Harness, eventually, signal};

/// The fixture server, beside the Python drivers of `tests/mcp/`.
const SLOW_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/slow_server.py");

/// A daemon whose config runs the fixture as `[mcp_servers.slow]` (plus
/// `extra`), the files it writes, the fake model, and an agent `worker`
/// given the server's tools.
struct Slow {
    daemon: InProcess,
    files: PathBuf,
    fake: FakeProvider,
    /// In the server's `env`, to find its processes by.
    mark: String,
}

impl Slow {
    /// `None` when the MCP SDK is not installed (the test skips).
    fn start(extra: &str) -> Option<Self> {
        let python = installed("ORCHESTRATION_MCP_PYTHON")?;
        let env = Env::new();
        let files = env.dir.path().join("slow");
        std::fs::create_dir_all(&files).expect("the fixture's dir");
        let file = |name: &str| toml_string(&files.join(name));
        let mark = marker();
        let (key, value) = mark.split_once('=').expect("KEY=VALUE");
        let config = format!(
            "{extra}\n[mcp_servers.slow]\ncommand = {}\nargs = [{}]\n\
             env = {{ {key} = \"{value}\", SLOW_SERVER_PID = {}, SLOW_SERVER_STARTED = {}, SLOW_SERVER_CANCELLED = {} }}\n",
            toml_string(&python),
            toml_string(Path::new(SLOW_SERVER)),
            file("pid"),
            file("started"),
            file("cancelled"),
        );
        let fake = FakeProvider::start();
        let daemon = InProcess::serve(env.config(&config), &["--no-tcp"]);
        let spawned = daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "worker", "provider": "openai", "model": "m",
                "base_url": fake.url("/v1"), "tools": ["slow"]})),
        );
        assert_eq!(spawned.status, 200, "{}", spawned.text());
        Some(Self {
            daemon,
            files,
            fake,
            mark,
        })
    }

    /// Scripts the model's next two replies: a call `id` of `tool` with
    /// `args`, then the text `answer`.
    fn script(&self, id: &str, tool: &str, args: Value, answer: &str) {
        let args = args.to_string();
        self.fake
            .push(Reply::sse(&openai_tool_calls(&[(id, tool, &args)])))
            .push(Reply::sse(&openai_chunks(&[answer])));
    }

    fn exists(&self, name: &str) -> bool {
        self.files.join(name).exists()
    }

    /// The text of the fixture's file `name`, once it is there.
    fn wait_for(&self, name: &str) -> String {
        let path = self.files.join(name);
        eventually(&format!("the MCP server to write {name}"), || path.exists());
        std::fs::read_to_string(&path).expect("the fixture's file")
    }

    /// The server's pid, as its current run wrote it.
    fn pid(&self) -> i32 {
        self.wait_for("pid").trim().parse().expect("a pid")
    }

    /// The turn's one tool result is an error saying `text`: stored, and
    /// sent to the model in its next request.
    #[track_caller]
    fn assert_told(&self, text: &str) {
        let results = self.results();
        assert!(
            results.len() == 1 && results[0].1 && results[0].0.contains(text),
            "{results:?}"
        );
        let sent = sent_results(&self.fake.requests()[1].body);
        assert!(
            sent.len() == 1 && sent[0].2 && sent[0].1.contains(text),
            "{sent:?}"
        );
    }

    /// The worker's stored tool results as (content, is_error).
    fn results(&self) -> Vec<(String, bool)> {
        self.daemon.history("worker")["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["message_type"] == "tool_result")
            .map(|m| {
                (
                    m["content"].as_str().unwrap_or_default().to_owned(),
                    m["metadata"]["is_error"] == true,
                )
            })
            .collect()
    }
}

fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a TOML basic string")
}

#[test]
fn a_call_past_call_timeout_is_cancelled_at_the_server() {
    let Some(slow) = Slow::start("[tools]\ncall_timeout = \"2s\"") else {
        return;
    };
    // Started first with its own 60 s: Python with the SDK may take more
    // than the 2 s a turn would give its start.
    let started = slow.daemon.json("GET", "/tools?start=true", None).json();
    assert_eq!(started["servers"][0]["state"], "running", "{started}");
    slow.script("c1", "slow__wait", json!({"seconds": 3600}), "too slow");
    let replied = slow.daemon.say("worker", "wait for an hour");
    assert_eq!(replied.status, 200, "{}", replied.text());
    assert_eq!(slow.wait_for("cancelled"), "cancelled");
    slow.assert_told("tools.call_timeout (2s)");
    // The server goes on serving.
    slow.script("c2", "slow__echo", json!({"text": "still here"}), "ok");
    assert_eq!(slow.daemon.say("worker", "echo").status, 200);
    assert_eq!(slow.results()[1], ("still here".to_owned(), false));
}

#[test]
fn an_interrupt_during_a_call_cancels_it_at_the_server_and_ends_the_turn() {
    let Some(slow) = Slow::start("") else {
        return;
    };
    slow.script("c1", "slow__wait", json!({"seconds": 3600}), "never sent");
    std::thread::scope(|scope| {
        let turn = scope.spawn(|| slow.daemon.say("worker", "wait for an hour"));
        slow.wait_for("started");
        assert!(!slow.exists("cancelled"));
        let stopped = slow.daemon.json("POST", "/agents/worker/interrupt", None);
        assert_eq!(stopped.status, 202, "{}", stopped.text());
        let replied = turn.join().expect("the turn");
        assert_eq!(replied.json()["code"], "interrupted", "{}", replied.text());
    });
    assert_eq!(slow.wait_for("cancelled"), "cancelled");
    let results = slow.results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].1 && results[0].0.contains("cancelled"),
        "{results:?}"
    );
    assert_eq!(slow.fake.requests().len(), 1, "no model call after it");
}

#[test]
fn a_server_killed_mid_call_is_an_error_result_and_the_next_turn_restarts_it() {
    let Some(slow) = Slow::start("") else {
        return;
    };
    slow.script("c1", "slow__wait", json!({"seconds": 3600}), "it died");
    let first = std::thread::scope(|scope| {
        let turn = scope.spawn(|| slow.daemon.say("worker", "wait for an hour"));
        slow.wait_for("started");
        let pid = slow.pid();
        signal(pid, "KILL");
        let replied = turn.join().expect("the turn");
        assert_eq!(replied.status, 200, "{}", replied.text());
        assert_eq!(replied.json()["messages"][0]["content"], "it died");
        pid
    });
    // Recorded, and the model was told, naming how the server ended.
    slow.assert_told("killed by signal 9");
    let tools = slow.daemon.json("GET", "/tools", None).json();
    assert_eq!(tools["servers"][0]["state"], "failed", "{tools}");

    // The next turn's call starts it again.
    std::fs::remove_file(slow.files.join("pid")).expect("remove the old pid");
    slow.script("c2", "slow__echo", json!({"text": "back"}), "ok");
    let replied = slow.daemon.say("worker", "echo");
    assert_eq!(replied.status, 200, "{}", replied.text());
    assert_eq!(slow.results()[1], ("back".to_owned(), false));
    let second = slow.pid();
    assert_ne!(second, first, "a new process");
    assert_eq!(pids_with(&slow.mark), [second], "the old one is gone");
    let tools = slow.daemon.json("GET", "/tools", None).json();
    assert_eq!(tools["servers"][0]["state"], "running", "{tools}");
    assert_eq!(tools["servers"][0]["restarts"], 1, "{tools}");
}

/// `sleep` reads nothing and answers nothing: a server that never answers
/// `initialize`.
#[test]
fn a_server_that_never_answers_fails_the_turn_within_call_timeout() {
    let mark = marker();
    let (key, value) = mark.split_once('=').expect("KEY=VALUE");
    let fake = FakeProvider::start();
    let env = Env::new().config(&format!(
        "[tools]\ncall_timeout = \"1s\"\n\
         [mcp_servers.mute]\ncommand = \"sleep\"\nargs = [\"3600\"]\nenv = {{ {key} = \"{value}\" }}\n"
    ));
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let spawned = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "worker", "provider": "openai", "model": "m",
            "base_url": fake.url("/v1"), "tools": ["mute"]})),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    let replied = daemon.say("worker", "hello");
    assert_eq!(replied.status, 502, "{}", replied.text());
    assert_eq!(replied.json()["code"], "tool_server_unavailable");
    assert!(
        replied
            .detail()
            .contains("did not start and list its tools within 1s (tools.call_timeout)"),
        "{}",
        replied.text()
    );
    assert!(fake.requests().is_empty(), "the model was never called");
    // Marked failed, saying why; its process is gone.
    let tools = daemon.json("GET", "/tools", None).json();
    let mute = &tools["servers"][0];
    assert_eq!(mute["state"], "failed", "{tools}");
    assert!(
        mute["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("tools.call_timeout"),
        "{tools}"
    );
    eventually("the server's process to be gone", || {
        pids_with(&mark).is_empty()
    });
}

#[test]
fn a_server_that_floods_its_stderr_is_logged_a_little_and_counted() {
    let Some(python) = installed("ORCHESTRATION_MCP_PYTHON") else {
        return;
    };
    let env = Env::new();
    let pid_file = env.dir.path().join("noisy.pid");
    let config = format!(
        "[mcp_servers.noisy]\ncommand = {}\nargs = [{}]\n\
         env = {{ SLOW_SERVER_NOISE = \"20000\", SLOW_SERVER_PID = {} }}\n",
        toml_string(&python),
        toml_string(Path::new(SLOW_SERVER)),
        toml_string(&pid_file),
    );
    let daemon = InProcess::serve(env.config(&config), &["--no-tcp"]);
    // It starts, all its noise written, and lists its tools.
    let listed = daemon.json("GET", "/tools?start=true", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        listed.json()["servers"][0]["state"],
        "running",
        "{}",
        listed.text()
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the server wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    // Its stderr ends with it: the count of what was not logged is written.
    signal(pid, "KILL");
    eventually("the count of unlogged lines", || {
        daemon.log().contains("these lines were not logged")
    });
    let log = daemon.log();
    let logged = log.lines().filter(|line| line.contains("noise ")).count();
    assert_eq!(logged, 50, "{log}");
    let summary = log
        .lines()
        .find(|line| line.contains("these lines were not logged"))
        .expect("the summary");
    assert!(
        summary.contains("server=noisy") || summary.contains("server=\"noisy\""),
        "{summary}"
    );
    assert!(summary.contains("lines=19950"), "{summary}");
}

#[test]
fn a_tool_its_server_did_not_list_is_refused_at_spawn_once_the_list_is_known() {
    let Some(slow) = Slow::start("") else {
        return;
    };
    let spawn = |name: &str, tool: &str| {
        slow.daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": name, "provider": "openai", "model": "m",
                "base_url": slow.fake.url("/v1"), "tools": [tool]})),
        )
    };
    // Not started yet: a spawn starts no server, so the name is checked at
    // the first turn.
    assert_eq!(spawn("early", "slow.nosuch").status, 200);
    let listed = slow.daemon.json("GET", "/tools?start=true", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    let refused = spawn("typo", "slow.nosuch");
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["code"], "unknown_tool", "{}", refused.text());
    assert!(refused.text().contains("nosuch"), "{}", refused.text());
    assert_eq!(slow.daemon.json("GET", "/agents/typo", None).status, 404);
    assert_eq!(spawn("right", "slow.echo").status, 200);
}
