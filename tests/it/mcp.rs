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

use common::coding::claude;
use common::fake_anthropic::FakeAnthropic;
use common::in_process::InProcess;
use common::{BIN, Background, Env};

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
