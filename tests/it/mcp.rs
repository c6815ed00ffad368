//! `orchestration mcp` against a real third-party MCP client: the official
//! Python SDK (`mcp` from PyPI, pinned in `scripts/test.sh`, which installs
//! it into `target/third-party`). `tests/mcp/client.py` drives the server
//! over stdio as an assistant would; these tests give it a daemon (or none)
//! and check what it reports.
//!
//! The Python comes from `$ORCHESTRATION_MCP_PYTHON`. Without it the tests are
//! skipped with a message on stderr, unless `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`
//! (set by `scripts/test.sh`), when they fail.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::json;

use common::coding::claude;
use common::fake_anthropic::FakeAnthropic;
use common::fake_provider::{FakeProvider, Reply, openai_chunks, openai_chunks_with_usage};
use common::in_process::InProcess;
use common::tool_calls::{openai_tool_calls, sent_results};
use common::{BIN, Background, Env, Harness};

fn python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORCHESTRATION_MCP_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
    assert!(
        !required,
        "the MCP Python SDK is required but ORCHESTRATION_MCP_PYTHON is not set; run scripts/test.sh"
    );
    eprintln!(
        "SKIPPED: ORCHESTRATION_MCP_PYTHON is not set, so the MCP client tests did not run; \
         `bash scripts/test.sh` installs the MCP Python SDK and sets it"
    );
    None
}

/// Runs `client.py MODE` in `env` (the MCP server it starts inherits it).
fn client(python: &Path, env: &Env, mode: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    env.shell(r#"exec "$MCP_PYTHON" "$MCP_SCRIPT" "$MCP_MODE""#)
        .env("MCP_PYTHON", python)
        .env("MCP_SCRIPT", script)
        .env("MCP_MODE", mode)
        .env("ORCHESTRATION_BIN", BIN)
        .output()
        .expect("run the MCP client")
}

/// The client's report (one JSON line), after checking it succeeded.
#[track_caller]
fn passed(output: &Output, context: &dyn Fn() -> String) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the MCP client failed ({}):\nstdout: {stdout}\nstderr: {stderr}\n{}",
        output.status,
        context()
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the client's report is not JSON ({e}): {stdout}"));
    eprintln!("MCP client report: {report}");
    report
}

#[test]
fn an_mcp_client_uses_every_tool_and_the_cli_sees_the_same_agents() {
    let Some(python) = python() else { return };
    // A loopback port nobody listens on: the provider failure the client checks.
    let dead = format!("http://127.0.0.1:{}/v1", common::CLOSED_PORT);
    let daemon = InProcess::serve(Env::new().var("MCP_DEAD_URL", &dead), &["--no-tcp"]);
    let output = client(&python, &daemon.env, "scenario");
    let report = passed(&output, &|| daemon.log());
    assert!(
        report["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("mcp ")),
        "{report}"
    );
    assert!(report["protocol"].is_string(), "{report}");
}

#[test]
fn a_cancelled_call_cancels_the_reply_and_keeps_it_interrupted() {
    let Some(python) = python() else { return };
    let daemon = InProcess::start_flags(&["--echo-delay", "500ms"]);
    let output = client(&python, &daemon.env, "cancel");
    passed(&output, &|| daemon.log());
}

#[test]
fn without_a_daemon_calls_fail_as_tool_errors_or_start_one() {
    let Some(python) = python() else { return };
    // The harness turns auto-start off: every call says how to start a daemon.
    let env = Env::new();
    passed(&client(&python, &env, "unreachable"), &String::new);
    assert!(!env.socket().exists(), "a daemon was started");

    let env = env.var("ORCHESTRATION_NO_AUTOSTART", "0");
    let started = Background { env: env.clone() };
    let output = client(&python, &env, "autostart");
    passed(&output, &|| started.log());
    assert!(started.alive(), "the auto-started daemon is not running");
    env.cli(&["serve", "--stop"]).ok();
    assert!(!started.alive(), "serve --stop left the daemon running");
}

/// A daemon whose Claude Code is `claude`, talking to `fake`, with a home,
/// temp dir and project of its own inside the env; the project's path.
fn coding_daemon(claude: &Path, fake: &FakeAnthropic) -> (InProcess, PathBuf) {
    let env = Env::new();
    let home = env.dir.path().join("home");
    let tmp = env.dir.path().join("tmp");
    let project = env.dir.path().join("project");
    for dir in [&home, &tmp, &project] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    // The key comes from the configured environment: a spawn_agent call
    // that names a base URL sends none. So does the URL, for run_task,
    // which names none.
    let config = format!(
        r#"
[agents.claude-code]
command = [{claude:?}]
env = {{ HOME = {home:?}, TMPDIR = {tmp:?}, ANTHROPIC_API_KEY = "sk-fake", ANTHROPIC_BASE_URL = {url:?}, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_TELEMETRY = "1", CLAUDE_CODE_MAX_RETRIES = "0" }}
"#,
        claude = claude.display().to_string(),
        home = home.display().to_string(),
        tmp = tmp.display().to_string(),
        url = fake.url(),
    );
    let project = std::fs::canonicalize(&project).expect("canonical project");
    let env = env
        .config(&config)
        .var("MCP_FAKE_URL", &fake.url())
        .var("MCP_PROJECT", &project.display().to_string());
    (InProcess::serve(env, &["--no-tcp"]), project)
}

#[test]
fn a_coding_agent_spawned_over_mcp_runs_a_command_approved_over_mcp() {
    let Some(python) = python() else { return };
    let Some(claude) = claude() else { return };
    let fake = FakeAnthropic::start();
    let (daemon, project) = coding_daemon(&claude, &fake);
    let output = client(&python, &daemon.env, "approve");
    passed(&output, &|| daemon.log());
    assert!(project.join("x.txt").is_file(), "the command did not run");
}

#[test]
fn run_task_over_mcp_is_a_coding_agent_with_its_cwd_allow_and_approval() {
    let Some(python) = python() else { return };
    let Some(claude) = claude() else { return };
    let fake = FakeAnthropic::start();
    let (daemon, project) = coding_daemon(&claude, &fake);
    let output = client(&python, &daemon.env, "task");
    passed(&output, &|| daemon.log());
    assert!(
        project.join("allowed.txt").is_file(),
        "the allowed command did not run"
    );
    assert!(!project.join("never.txt").exists(), "a refused command ran");
}

/// A reply of "fine" that reports a call's worst case under the config
/// below: 3 tokens in, 100 out, 0.503 USD.
fn worst_case_reply() -> Reply {
    Reply::sse(&openai_chunks_with_usage(
        "gpt-test",
        &["fine"],
        Some(json!({"prompt_tokens": 3, "completion_tokens": 100})),
    ))
}

#[test]
fn spawn_agent_and_run_task_take_a_budget_and_run_task_a_base_url() {
    let Some(python) = python() else { return };
    let fake = FakeProvider::start();
    // An output bound of 100 and a price that makes a call's worst case
    // (3 tokens in, 100 out) cost 0.503 USD.
    let config = format!(
        "[providers]\nmax_retries = 0\nbudget_max_tokens = 100\n\n\
         [profiles.fake]\nbase_url = \"{}\"\nmodel = \"gpt-test\"\n\n\
         [prices.\"gpt-test\"]\ninput = 1000.0\noutput = 5000.0\n",
        fake.url("/v1")
    );
    // The first message to the capped agent, then the task on base_url:
    // every refused call is refused before it reaches the server.
    fake.push(worst_case_reply()).push(worst_case_reply());
    let env = Env::new()
        .config(&config)
        .var("MCP_FAKE_URL", &fake.url("/v1"));
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let output = client(&python, &daemon.env, "budget");
    passed(&output, &|| daemon.log());

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "a refused call reached the model server");
    for request in &requests {
        assert_eq!(request.body["model"], "gpt-test", "{}", request.body);
        assert_eq!(
            request.header("authorization"),
            None,
            "a key was sent where none is configured"
        );
    }
    let info = daemon.json("GET", "/agents/capped", None).json();
    assert_eq!(info["budget"], "1usd/day", "{info}");
    let usage = daemon.json("GET", "/usage", None).json();
    let own = usage["budgets"]
        .as_array()
        .expect("a budgets array")
        .iter()
        .find(|b| b["scope"] == "agent:capped")
        .expect("capped's own budget")
        .clone();
    assert_eq!(own["source"], "spawn", "{own}");
    assert_eq!(own["spent"], json!(0.503), "{own}");
}

#[test]
fn run_task_gives_its_agent_tools_on_the_server_its_base_url_names() {
    let Some(python) = python() else { return };
    let Some(server) = crate::common::tool_calls::installed("ORCHESTRATION_MCP_FILESYSTEM") else {
        return;
    };
    let fake = FakeProvider::start();
    let env = Env::new();
    let root = env.dir.path().join("files");
    std::fs::create_dir_all(&root).expect("files dir");
    // Canonical: the server compares the paths it is asked for with its root's real path.
    let root = std::fs::canonicalize(&root).expect("canonical root");
    let notes = root.join("notes.txt");
    std::fs::write(&notes, "hello from notes").expect("notes");
    let config = format!(
        "[mcp_servers.fs]\ncommand = {}\nargs = [{}]\n",
        json!(server.display().to_string()),
        json!(root.display().to_string()),
    );
    let arguments = json!({"path": notes.display().to_string()}).to_string();
    fake.push(Reply::sse(&openai_tool_calls(&[(
        "call_1",
        "fs__read_text_file",
        &arguments,
    )])))
    .push(Reply::sse(&openai_chunks(&[
        "It says: ",
        "hello from notes",
    ])));
    let env = env.config(&config).var("MCP_FAKE_URL", &fake.url("/v1"));
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let output = client(&python, &daemon.env, "tools");
    passed(&output, &|| daemon.log());

    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        2,
        "the tool round did not go back to the model"
    );
    let offered = requests[0].body["tools"].to_string();
    assert!(offered.contains("fs__read_text_file"), "{offered}");
    let results = sent_results(&requests[1].body);
    assert_eq!(results.len(), 1, "{}", requests[1].body);
    assert!(results[0].1.contains("hello from notes"), "{results:?}");
}
