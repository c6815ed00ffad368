//! Coding-agent benchmark: what the daemon adds to a Claude Code turn and
//! to a Codex turn. Runs the real binary and the real CLIs against fake
//! model servers on 127.0.0.1 that answer at once (no model time, so the
//! figures are the CLI's own time plus the daemon's); asserts nothing about
//! time.
//!
//! For each CLI, two sides:
//! - direct: the CLI as the daemon runs it, driven by this bench over its
//!   stdin and stdout — Claude Code as `claude -p --input-format
//!   stream-json …` after the `initialize` control request, one user line
//!   read to its `result`; Codex as `codex app-server` with the same
//!   `CODEX_HOME/config.toml` the daemon writes, `initialize`,
//!   `thread/start`, then one `turn/start` read to its `turn/completed`;
//! - through the daemon: `POST /agents/coder/message` on the Unix socket of
//!   `orchestration serve`, whose agent runs the same CLI against the same
//!   fake, from the request to the last byte of the answer.
//!
//! Each side: one warm-up turn (the child starts), then five warm turns,
//! the two sides' turns alternating; it prints each time, the medians, their
//! ratio (goal ≤ 1.1×) and the difference, the warm-turn overhead the
//! daemon adds (goal ≤ 10 ms). `cargo bench --bench coding_agents -- --turns
//! 21` takes more turns. Each CLI comes from `$ORCHESTRATION_CLAUDE` /
//! `$ORCHESTRATION_CODEX`, else the copy `scripts/test.sh` installs under
//! `target/third-party`, else `claude` / `codex` on PATH; a CLI that is
//! not there is reported SKIPPED and the bench exits 0. Everything it writes
//! is in a temp dir it removes. Under `cargo test --all-targets` (no
//! `--bench` argument) it runs one turn a side, as a smoke test.

#[path = "../tests/it/common/fake_anthropic.rs"]
#[allow(dead_code)]
mod fake_anthropic;
#[path = "../tests/it/common/fake_http.rs"]
#[allow(dead_code)]
mod fake_http;
#[path = "../tests/it/common/fake_responses.rs"]
#[allow(dead_code)]
mod fake_responses;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fake_anthropic::FakeAnthropic;
use fake_responses::FakeResponses;

const BIN: &str = env!("CARGO_BIN_EXE_orchestration");
/// How long a wait for something that must happen may take before the
/// bench fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// The variable that carries the fake's key, on both sides.
const KEY_ENV: &str = "FAKE_BENCH_KEY";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    // `-- --turns N`: more turns a side, for steadier medians on a busy machine.
    let asked = args
        .iter()
        .position(|a| a == "--turns")
        .and_then(|at| args.get(at + 1)?.parse::<usize>().ok())
        .filter(|&n| n > 0);
    let turns = asked.unwrap_or(if full { 5 } else { 1 });
    for cli in [Cli::ClaudeCode, Cli::Codex] {
        match cli.program() {
            Some(program) => compare(cli, &program, turns),
            None => println!(
                "{}: SKIPPED: not installed (set {}, or run `bash scripts/test.sh`, which \
                 installs it under target/third-party)",
                cli.title(),
                cli.variable()
            ),
        }
    }
}

/// One CLI's figures: direct and through the daemon, turns alternating.
fn compare(cli: Cli, program: &Path, turns: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Fake::start(cli);
    let mut direct_cli = Direct::start(cli, program, &fake, dir.path());
    let mut daemon_agent = Daemon::start(cli, program, &fake, dir.path());
    // Turn by turn, alternating, so a change in the machine's load falls on
    // both sides alike.
    let (mut direct, mut daemon) = (Vec::new(), Vec::new());
    for i in 0..turns {
        direct.push(direct_cli.timed_turn(&format!("hello {i}")));
        daemon.push(daemon_agent.timed_turn(&format!("hello {i}")));
    }
    direct_cli.stop();
    daemon_agent.stop();
    let title = cli.title();
    report(&format!("{title} turn, direct"), &direct);
    report(&format!("{title} turn, through the daemon"), &daemon);
    let (direct, daemon) = (median(&direct), median(&daemon));
    println!(
        "{title}: ratio daemon / direct (medians of {turns}): {:.3}x (goal <= 1.1x)",
        daemon.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "{title}: warm-turn overhead of the daemon: {:+.1} ms (goal <= 10 ms)",
        (daemon.as_secs_f64() - direct.as_secs_f64()) * 1000.0
    );
}

#[derive(Debug, Clone, Copy)]
enum Cli {
    ClaudeCode,
    Codex,
}

impl Cli {
    fn title(self) -> &'static str {
        match self {
            Self::ClaudeCode => "Claude Code",
            Self::Codex => "Codex",
        }
    }

    /// The daemon's provider name, and its `[agents.NAME]` table.
    fn provider(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Self::ClaudeCode => "ORCHESTRATION_CLAUDE",
            Self::Codex => "ORCHESTRATION_CODEX",
        }
    }

    /// Where `scripts/test.sh` installs it.
    fn installed(self) -> &'static str {
        match self {
            Self::ClaudeCode => {
                "target/third-party/npm/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
            }
            Self::Codex => {
                "target/third-party/npm/node_modules/@openai/codex-linux-x64/vendor/\
                 x86_64-unknown-linux-musl/bin/codex"
            }
        }
    }

    fn command_name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude",
            Self::Codex => "codex",
        }
    }

    /// The CLI, if installed where the tests look or on PATH.
    fn program(self) -> Option<PathBuf> {
        let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(self.installed());
        std::env::var_os(self.variable())
            .map(PathBuf::from)
            .into_iter()
            .chain([installed])
            .chain(std::env::var_os("PATH").iter().flat_map(|path| {
                std::env::split_paths(path)
                    .map(|dir| dir.join(self.command_name()))
                    .collect::<Vec<_>>()
            }))
            .find(|path| path.is_file())
    }

    /// The child's environment, as the daemon's config below gives it:
    /// offline, a home of its own.
    fn child_env(self, home: &Path) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HOME", home.display().to_string()),
            ("TMPDIR", home.display().to_string()),
            ("LANG", "C.UTF-8".to_owned()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
        ];
        if let Self::ClaudeCode = self {
            env.extend([
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
                ("DISABLE_TELEMETRY", "1".to_owned()),
                ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
            ]);
        }
        env
    }
}

/// The fake model server a CLI talks to.
enum Fake {
    Anthropic(FakeAnthropic),
    Responses(FakeResponses),
}

impl Fake {
    fn start(cli: Cli) -> Self {
        match cli {
            Cli::ClaudeCode => Self::Anthropic(FakeAnthropic::start()),
            Cli::Codex => Self::Responses(FakeResponses::start()),
        }
    }

    /// What a spawn's `--base-url` names.
    fn url(&self) -> String {
        match self {
            Self::Anthropic(fake) => fake.url(),
            Self::Responses(fake) => fake.base_url(),
        }
    }
}

fn fresh_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// The CLI driven directly, warm (one turn taken).
struct Direct {
    child: Child,
    cli: Driven,
    /// Codex's thread; none for Claude Code.
    thread: Option<String>,
}

impl Direct {
    fn start(cli: Cli, program: &Path, fake: &Fake, dir: &Path) -> Self {
        let home = fresh_dir(dir, "direct-home");
        let cwd = fresh_dir(dir, "direct-cwd");
        let mut command = Command::new(program);
        command
            .env_clear()
            .envs(cli.child_env(&home))
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match cli {
            Cli::ClaudeCode => {
                command
                    .args([
                        "-p",
                        "--input-format",
                        "stream-json",
                        "--output-format",
                        "stream-json",
                        "--verbose",
                        "--permission-prompt-tool",
                        "stdio",
                        "--include-partial-messages",
                        "--session-id",
                        &uuid::Uuid::new_v4().to_string(),
                    ])
                    .env("ANTHROPIC_BASE_URL", fake.url())
                    .env("ANTHROPIC_API_KEY", "sk-fake");
            }
            Cli::Codex => {
                let codex_home = fresh_dir(&home, "codex-home");
                std::fs::write(codex_home.join("config.toml"), codex_config(&fake.url()))
                    .expect("write config.toml");
                command
                    .arg("app-server")
                    .env("CODEX_HOME", &codex_home)
                    .env(KEY_ENV, "sk-fake");
            }
        }
        let mut child = command.spawn().expect("start the CLI");
        let mut cli_io = Driven {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
        };
        let thread = match cli {
            Cli::ClaudeCode => {
                cli_io.send(&json!({"type": "control_request", "request_id": "init",
                                    "request": {"subtype": "initialize"}}));
                cli_io.until(|line| line["type"] == "control_response");
                None
            }
            Cli::Codex => Some(cli_io.open_codex_thread(&cwd)),
        };
        let mut direct = Self {
            child,
            cli: cli_io,
            thread,
        };
        direct.turn("warm up");
        direct
    }

    fn turn(&mut self, prompt: &str) {
        match &self.thread {
            None => {
                self.cli
                    .send(&json!({"type": "user", "message": {"role": "user", "content": prompt}}));
                self.cli.until(|line| line["type"] == "result");
            }
            Some(thread) => {
                let input = json!([{"type": "text", "text": prompt, "text_elements": []}]);
                self.cli.send(&json!({"method": "turn/start", "id": "turn",
                                      "params": {"threadId": thread, "input": input}}));
                self.cli.until(|line| line["method"] == "turn/completed");
            }
        }
    }

    fn timed_turn(&mut self, prompt: &str) -> Duration {
        let started = Instant::now();
        self.turn(prompt);
        started.elapsed()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$CODEX_HOME/config.toml` as the daemon writes it for an agent: one
/// model provider at the fake, on the Responses wire, one retry.
fn codex_config(url: &str) -> String {
    format!(
        "model_provider = \"orchestration\"\n\n[model_providers.orchestration]\n\
         name = \"orchestration\"\nbase_url = {url:?}\nenv_key = {KEY_ENV:?}\n\
         wire_api = \"responses\"\nrequest_max_retries = 1\nstream_max_retries = 1\n"
    )
}

/// A CLI this bench drives over its stdin and stdout.
struct Driven {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driven {
    fn send(&mut self, line: &Value) {
        writeln!(self.stdin, "{line}").expect("write to the CLI");
        self.stdin.flush().expect("flush");
    }

    /// Reads lines until one `done` accepts, and returns it.
    fn until(&mut self, done: impl Fn(&Value) -> bool) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read the CLI");
            assert!(n > 0, "the CLI exited");
            if let Ok(line) = serde_json::from_str::<Value>(&line)
                && done(&line)
            {
                return line;
            }
        }
    }

    /// Codex's handshake, as the daemon does it: `initialize`,
    /// `initialized`, `thread/start` in `cwd`; returns the thread's id.
    fn open_codex_thread(&mut self, cwd: &Path) -> String {
        self.send(&json!({"method": "initialize", "id": 0, "params": {
            "clientInfo": {"name": "bench", "title": null, "version": "0"},
            "capabilities": null}}));
        self.until(|line| line["id"] == 0);
        self.send(&json!({"method": "initialized"}));
        self.send(&json!({"method": "thread/start", "id": 1, "params": {
            "cwd": cwd.display().to_string(), "approvalPolicy": "untrusted",
            "sandbox": "workspace-write", "model": "fake-model"}}));
        let opened = self.until(|line| line["id"] == 1);
        opened["result"]["thread"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("thread/start gave no thread: {opened}"))
            .to_owned()
    }
}

/// A daemon with a coding agent, warm (one turn taken, so its child runs).
struct Daemon {
    serve: Child,
    socket: PathBuf,
    stop: Command,
}

impl Daemon {
    fn start(cli: Cli, program: &Path, fake: &Fake, dir: &Path) -> Self {
        let home = fresh_dir(dir, "daemon-home");
        let cwd = fresh_dir(dir, "daemon-cwd");
        let root = fresh_dir(dir, "daemon");
        let env_table = cli
            .child_env(&home)
            .into_iter()
            .filter(|(name, _)| !["PATH", "LANG"].contains(name))
            .map(|(name, value)| format!("{name} = {value:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[agents.{}]\ncommand = [{:?}]\nenv = {{ {env_table} }}\n",
                cli.provider(),
                program.display().to_string()
            ),
        )
        .expect("config");
        let command = |args: &[&str]| {
            let mut command = Command::new(BIN);
            command
                .args(args)
                .env("ORCHESTRATION_RUNTIME_DIR", root.join("run"))
                .env("ORCHESTRATION_STATE_DIR", root.join("state"))
                .env("ORCHESTRATION_CONFIG", &config)
                .env("ORCHESTRATION_NO_AUTOSTART", "1")
                .env(KEY_ENV, "sk-fake")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        };
        let serve = command(&["serve", "--no-tcp"])
            .spawn()
            .expect("start the daemon");
        let socket = root.join("run/daemon.sock");
        let deadline = Instant::now() + PATIENCE;
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = fake.url();
        let cwd_arg = cwd.display().to_string();
        let spawned = command(&[
            "spawn",
            "coder",
            "--provider",
            cli.provider(),
            "--model",
            "fake-model",
            "--base-url",
            &url,
            "--api-key-env",
            KEY_ENV,
            "--cwd",
            &cwd_arg,
        ])
        .status()
        .expect("spawn");
        assert!(spawned.success(), "spawn failed");
        message(&socket, "warm up");
        Self {
            serve,
            socket,
            stop: command(&["serve", "--stop"]),
        }
    }

    fn timed_turn(&mut self, prompt: &str) -> Duration {
        let started = Instant::now();
        message(&self.socket, prompt);
        started.elapsed()
    }

    fn stop(mut self) {
        let _ = self.stop.status();
        let _ = self.serve.wait();
    }
}

/// `POST /agents/coder/message`, read to the end of its answer.
fn message(socket: &Path, content: &str) {
    let body = json!({"content": content}).to_string();
    let mut stream = UnixStream::connect(socket).expect("connect");
    write!(
        stream,
        "POST /agents/coder/message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") && !answer.contains("\"type\":\"error\""),
        "the turn failed: {answer}"
    );
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(what: &str, times: &[Duration]) {
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.1}", t.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{what}: median {:.1} ms of [{}] ms",
        median(times).as_secs_f64() * 1000.0,
        ms.join(", ")
    );
}
