//! The CLI against a third-party OpenAI- and Anthropic-compatible mock
//! server from PyPI, `fakellm` (pinned in `scripts/test.sh`, which installs
//! it into `target/third-party`). Our own fake server (tests/providers.rs)
//! is written from our reading of the protocols; this one was written by
//! someone else, from theirs.
//!
//! The binary comes from `$ORCHESTRATION_FAKELLM`, else `fakellm` on PATH.
//! Without either the test is skipped with a message on stderr, unless
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1` (set by `scripts/test.sh`), when it fails.

use crate::common;
use crate::common::Harness;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::in_process::InProcess;
use common::{Env, PATIENCE};
use serde_json::Value;

const RULES: &str = r#"
rules:
  - name: second_turn
    when:
      turn: 2
      previous_message_contains: "Paris"
    respond:
      content: "You asked me about France a moment ago."
  - name: capital
    when:
      messages_contain: "capital"
    respond:
      content: "Paris is the capital of France."
"#;

struct Fakellm {
    child: Child,
    port: u16,
}

impl Drop for Fakellm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fakellm {
    fn start(binary: PathBuf, dir: &std::path::Path) -> Self {
        let config = dir.join("fakellm.yaml");
        std::fs::write(&config, RULES).expect("write fakellm.yaml");
        // fakellm takes its port on the command line, so one is found free
        // first; the few in-process daemons that bind port 0 meanwhile make
        // a collision unlikely, not impossible (then its start fails loudly).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fakellm");
        let fake = Self { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < PATIENCE * 2, "fakellm did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        fake
    }

    fn url(&self, suffix: &str) -> String {
        format!("http://127.0.0.1:{}{suffix}", self.port)
    }

    /// fakellm's own record of which rules the requests matched.
    fn rule_counts(&self) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let request =
            common::build_request("GET", "/_fakellm/stats", &[("Host", "127.0.0.1")], None);
        common::send(&mut stream, &request).json()["by_rule"].clone()
    }
}

fn fakellm_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORCHESTRATION_FAKELLM") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("fakellm"))
            .find(|candidate| candidate.is_file())
    })
}

#[test]
fn the_cli_talks_to_fakellm_over_both_protocols() {
    let Some(binary) = fakellm_binary() else {
        let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
        assert!(
            !required,
            "fakellm is required but not installed; run scripts/test.sh"
        );
        eprintln!(
            "SKIPPED: fakellm is not installed, so the third-party mock test did not run; \
             `bash scripts/test.sh` installs it"
        );
        return;
    };
    let env = Env::new();
    let fake = Fakellm::start(binary, env.dir.path());
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let key = [("OPENAI_API_KEY", "sk-not-used")];

    let base = fake.url("/v1");
    daemon
        .env
        .cli_env(
            &key,
            &[
                "spawn",
                "gpt",
                "--model",
                "gpt-4o-mini",
                "--base-url",
                &base,
                "--api-key-env",
                "OPENAI_API_KEY",
                "--instructions",
                "Be brief.",
            ],
        )
        .ok();
    let first = daemon.cli(&["message", "gpt", "What is the capital of France?"]);
    first.ok();
    assert_eq!(first.stdout(), "Paris is the capital of France.\n");
    // fakellm answers this only on turn 2 when the previous message (our
    // recorded reply) mentions Paris: the whole conversation went along.
    let second = daemon.cli(&["message", "gpt", "Did I ask you something?"]);
    second.ok();
    assert_eq!(second.stdout(), "You asked me about France a moment ago.\n");

    let anthropic = fake.url("");
    daemon
        .env
        .cli_env(
            &[("ANTHROPIC_API_KEY", "ak-not-used")],
            &[
                "spawn",
                "claude",
                "--provider",
                "anthropic",
                "--base-url",
                &anthropic,
                "--api-key-env",
                "ANTHROPIC_API_KEY",
            ],
        )
        .ok();
    let reply = daemon.cli(&["--json", "message", "claude", "capital of France?"]);
    reply.ok();
    let message = &reply.json()["messages"][0];
    assert_eq!(message["content"], "Paris is the capital of France.");
    assert_eq!(message["metadata"]["finish_reason"], "end_turn");
    assert_eq!(message["metadata"]["usage"]["output_tokens"], 7);

    let rules = fake.rule_counts();
    assert_eq!(rules["capital"], 2, "{rules}");
    assert_eq!(rules["second_turn"], 1, "{rules}");
}
