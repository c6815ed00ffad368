//! What the coding-agent tests share (Claude Code, Codex, approvals): the
//! CLIs `scripts/test.sh` installs, a streamed message and its NDJSON lines,
//! and the agent's child process found by its working directory.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_anthropic::FakeAnthropic;
use super::in_process::InProcess;
use super::{Env, Harness, HttpResponse, eventually, open_request};

/// How long one turn may take before a test fails (a loaded machine starts
/// a coding agent's CLI slowly); not a speed target.
pub const TURN_PATIENCE: Duration = Duration::from_secs(90);

/// The executable `$VAR` names (`scripts/test.sh` sets it), or `None` (the
/// test is skipped) when it names none and third-party tools are not
/// required (`ORCHESTRATION_REQUIRE_THIRD_PARTY=1` makes that a failure).
pub fn installed(var: &str, what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
    assert!(
        !required,
        "{what} is required but {var} names no file; run scripts/test.sh"
    );
    eprintln!(
        "SKIPPED: {what} is not installed, so this test did not run; `bash scripts/test.sh` installs it"
    );
    None
}

/// Claude Code, from `ORCHESTRATION_CLAUDE`.
pub fn claude() -> Option<PathBuf> {
    installed("ORCHESTRATION_CLAUDE", "Claude Code")
}

/// Codex, from `ORCHESTRATION_CODEX`, else `codex` on PATH.
pub fn codex() -> Option<PathBuf> {
    let on_path = || {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join("codex"))
            .find(|candidate| candidate.is_file())
    };
    if std::env::var_os("ORCHESTRATION_CODEX").is_none()
        && let Some(found) = on_path()
    {
        return Some(found);
    }
    installed("ORCHESTRATION_CODEX", "Codex")
}

/// An env whose coding agent `kind` (`claude-code`, `codex`) runs
/// `command`, for the checks that start no child.
pub fn env_with_agent(kind: &str, command: &str) -> Env {
    Env::new().config(&format!("[agents.{kind}]\ncommand = [{command:?}]\n"))
}

/// The reply text of a `say`.
#[track_caller]
pub fn reply(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["messages"][0]["content"]
        .as_str()
        .expect("reply text")
        .to_owned()
}

/// `POST /agents/NAME/message` with `stream: true`, held open to read its
/// lines, each waited for up to [`TURN_PATIENCE`].
pub fn stream_message(daemon: &InProcess, name: &str, content: &str) -> BufReader<UnixStream> {
    let body = json!({"content": content, "stream": true}).to_string();
    let stream = open_request(
        &daemon.env().socket(),
        "POST",
        &format!("/agents/{name}/message"),
        Some(&body),
    );
    stream
        .get_ref()
        .set_read_timeout(Some(TURN_PATIENCE))
        .expect("timeout");
    stream
}

/// The next NDJSON object of a stream (chunk sizes and blank lines skipped).
pub fn next_line(reader: &mut impl BufRead) -> Value {
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read a stream line");
        assert!(n > 0, "the stream ended early");
        if let Ok(value) = serde_json::from_str::<Value>(line.trim())
            && value.is_object()
        {
            return value;
        }
    }
}

/// Reads lines until one of `kind`.
pub fn line_of(reader: &mut impl BufRead, kind: &str) -> Value {
    loop {
        let line = next_line(reader);
        if line["type"] == kind {
            return line;
        }
    }
}

/// The pid of the live process working in `cwd` (an agent's child), once
/// there is one.
pub fn child_in(cwd: &Path) -> Option<i32> {
    let mut found = None;
    eventually("the child to be found", || {
        found = working_in(cwd);
        found.is_some()
    });
    found
}

/// The pid of a live process working in `cwd` now, if any.
pub fn working_in(cwd: &Path) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            // An exited child not yet reaped no longer works anywhere.
            let zombie = status
                .lines()
                .any(|line| line.starts_with("State:") && line.contains('Z'));
            (!zombie && std::fs::read_link(entry.path().join("cwd")).ok()? == cwd).then_some(pid)
        })
}

/// A daemon whose Claude Code is `claude`, with a home and temp dir of its
/// own inside the env (so nothing is written outside it), the agent's
/// working directory, and the fake model server it talks to.
pub struct ClaudeSetup {
    pub env: Env,
    pub cwd: PathBuf,
    pub fake: FakeAnthropic,
}

impl ClaudeSetup {
    pub fn new(claude: &Path) -> Self {
        Self::with_config(claude, "")
    }

    /// [`Self::new`], with `extra` appended to the config file.
    pub fn with_config(claude: &Path, extra: &str) -> Self {
        let env = Env::new();
        let cwd = env.dir.path().join("project");
        std::fs::create_dir_all(&cwd).expect("dir");
        let config = format!(
            "\n{}# extra\n{extra}\n",
            claude_agent_config(claude, env.dir.path())
        );
        Self {
            env: env.config(&config),
            cwd,
            fake: FakeAnthropic::start(),
        }
    }

    /// Replaces what [`Self::with_config`] appended to the config file with
    /// `extra` (the daemon reads it at its next reload).
    pub fn reconfigure(&self, extra: &str) {
        let file = self.env.dir.path().join("config.toml");
        let text = std::fs::read_to_string(&file).expect("read the config");
        let (base, _) = text
            .split_once("# extra\n")
            .expect("the config's extra part");
        std::fs::write(&file, format!("{base}# extra\n{extra}\n")).expect("write the config");
    }

    pub fn daemon(&self) -> InProcess {
        InProcess::serve(self.env.clone(), &["--no-tcp"])
    }

    /// Whether a session file Claude Code keeps under its HOME has `text`.
    pub fn session_files_contain(&self, text: &str) -> bool {
        let projects = self.env.dir.path().join("home/.claude/projects");
        let Ok(dirs) = std::fs::read_dir(projects) else {
            return false;
        };
        dirs.flatten()
            .filter_map(|dir| std::fs::read_dir(dir.path()).ok())
            .flat_map(|files| files.flatten())
            .filter_map(|file| std::fs::read_to_string(file.path()).ok())
            .any(|content| content.contains(text))
    }

    /// `spawn NAME --provider claude-code` at the fake, in the project
    /// directory, plus `extra` options.
    pub fn spawn(&self, daemon: &InProcess, name: &str, extra: &[&str]) {
        spawn_claude(daemon, name, &self.fake, &self.cwd, extra);
    }
}

/// The `[agents.claude-code]` table that runs `claude` with a home and
/// temp dir of its own under `dir` (made here), so it writes nothing
/// outside it, and sends nothing but its model calls.
pub fn claude_agent_config(claude: &Path, dir: &Path) -> String {
    let home = dir.join("home");
    let tmp = dir.join("tmp");
    for dir in [&home, &tmp] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    format!(
        r#"[agents.claude-code]
command = [{claude:?}]
env = {{ HOME = {home:?}, TMPDIR = {tmp:?}, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_TELEMETRY = "1", CLAUDE_CODE_MAX_RETRIES = "0" }}
"#,
        claude = claude.display().to_string(),
        home = home.display().to_string(),
        tmp = tmp.display().to_string(),
    )
}

/// `spawn NAME --provider claude-code` at `fake`, working in `cwd`, plus
/// `extra` options.
pub fn spawn_claude(
    daemon: &InProcess,
    name: &str,
    fake: &FakeAnthropic,
    cwd: &Path,
    extra: &[&str],
) {
    let args = claude_spawn_args(name, fake, cwd, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    daemon
        .env()
        .cli_env(&[("FAKE_ANTHROPIC_KEY", "sk-fake")], &args)
        .ok();
}

/// The arguments of [`spawn_claude`], for a test that checks how the spawn
/// ends (its key is `FAKE_ANTHROPIC_KEY`).
pub fn claude_spawn_args(
    name: &str,
    fake: &FakeAnthropic,
    cwd: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "spawn",
        name,
        "--provider",
        "claude-code",
        "--base-url",
        &fake.url(),
        "--api-key-env",
        "FAKE_ANTHROPIC_KEY",
        "--cwd",
        &cwd.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}
