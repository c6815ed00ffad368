//! Coding-agent benchmark: what the daemon adds to a Claude Code turn.
//! Runs the real binary and the real Claude Code CLI against a fake
//! Anthropic server on 127.0.0.1 that answers at once (no model time, so
//! the figures are the CLI's own time plus the daemon's); asserts nothing
//! about time.
//!
//! - direct: the CLI as the daemon runs it (`claude -p --input-format
//!   stream-json …`, the `initialize` control request), driven by this
//!   bench over its stdin and stdout: one user line, read to its `result`;
//! - through the daemon: `POST /agents/coder/message` on the Unix socket of
//!   `orchestration serve`, whose agent runs the same CLI with the same
//!   fake, from the request to the last byte of the answer.
//!
//! Each side: one warm-up turn (the child starts), then five warm turns,
//! the two sides' turns alternating; it prints each time, the medians, their ratio (goal ≤ 1.1×) and the
//! difference, the warm-turn overhead the daemon adds (goal ≤ 10 ms).
//! `cargo bench --bench coding_agents -- --turns 21` takes more turns.
//! Claude Code comes from `$ORCHESTRATION_CLAUDE`, else the copy
//! `scripts/test.sh` installs under `target/third-party`, else `claude` on
//! PATH; when there is none it says SKIPPED and exits 0. Everything it
//! writes is in a temp dir it removes. Under `cargo test --all-targets`
//! (no `--bench` argument) it runs one turn a side, as a smoke test.

#[path = "../tests/it/common/fake_anthropic.rs"]
#[allow(dead_code)]
mod fake_anthropic;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fake_anthropic::FakeAnthropic;

const BIN: &str = env!("CARGO_BIN_EXE_orchestration");
/// How long a wait for something that must happen may take before the
/// bench fails.
const PATIENCE: Duration = Duration::from_secs(60);

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
    let Some(claude) = claude() else {
        println!(
            "coding agents: SKIPPED: Claude Code is not installed (set ORCHESTRATION_CLAUDE, or run \
             `bash scripts/test.sh`, which installs it under target/third-party)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeAnthropic::start();
    let mut direct_cli = Direct::start(&claude, &fake, dir.path());
    let mut daemon_agent = Daemon::start(&claude, &fake, dir.path());
    // Turn by turn, alternating, so a change in the machine's load falls on
    // both sides alike.
    let (mut direct, mut daemon) = (Vec::new(), Vec::new());
    for i in 0..turns {
        direct.push(direct_cli.timed_turn(&format!("hello {i}")));
        daemon.push(daemon_agent.timed_turn(&format!("hello {i}")));
    }
    direct_cli.stop();
    daemon_agent.stop();
    report("Claude Code turn, direct", &direct);
    report("Claude Code turn, through the daemon", &daemon);
    let (direct, daemon) = (median(&direct), median(&daemon));
    println!(
        "ratio daemon / direct (medians of {turns}): {:.3}x (goal <= 1.1x)",
        daemon.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "warm-turn overhead of the daemon: {:+.1} ms (goal <= 10 ms)",
        (daemon.as_secs_f64() - direct.as_secs_f64()) * 1000.0
    );
}

/// Claude Code, if installed where the tests look or on PATH.
fn claude() -> Option<PathBuf> {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/third-party/npm/node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    std::env::var_os("ORCHESTRATION_CLAUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([installed])
        .chain(std::env::var_os("PATH").iter().flat_map(|path| {
            std::env::split_paths(path)
                .map(|dir| dir.join("claude"))
                .collect::<Vec<_>>()
        }))
        .find(|path| path.is_file())
}

/// The child's environment, as the daemon's config below gives it: offline,
/// a home of its own, the fake's URL and key.
fn child_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        ("TMPDIR", home.display().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
    ]
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
}

impl Direct {
    fn start(claude: &Path, fake: &FakeAnthropic, dir: &Path) -> Self {
        let home = fresh_dir(dir, "direct-home");
        let cwd = fresh_dir(dir, "direct-cwd");
        let mut child = Command::new(claude)
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
            .env_clear()
            .envs(child_env(&home))
            .env("ANTHROPIC_BASE_URL", fake.url())
            .env("ANTHROPIC_API_KEY", "sk-fake")
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Claude Code");
        let mut cli = Driven {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
        };
        cli.send(&json!({"type": "control_request", "request_id": "init",
                         "request": {"subtype": "initialize"}}));
        cli.until(|line| line["type"] == "control_response");
        cli.turn("warm up");
        Self { child, cli }
    }

    fn timed_turn(&mut self, prompt: &str) -> Duration {
        let started = Instant::now();
        self.cli.turn(prompt);
        started.elapsed()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CLI this bench drives over its stdin and stdout.
struct Driven {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driven {
    fn send(&mut self, line: &Value) {
        writeln!(self.stdin, "{line}").expect("write to Claude Code");
        self.stdin.flush().expect("flush");
    }

    /// Reads lines until one `done` accepts.
    fn until(&mut self, done: impl Fn(&Value) -> bool) {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read Claude Code");
            assert!(n > 0, "Claude Code exited");
            if serde_json::from_str::<Value>(&line).is_ok_and(|line| done(&line)) {
                return;
            }
        }
    }

    /// One turn: the user line, then everything up to its `result`.
    fn turn(&mut self, prompt: &str) {
        self.send(&json!({"type": "user", "message": {"role": "user", "content": prompt}}));
        self.until(|line| line["type"] == "result");
    }
}

/// A daemon with a Claude Code agent, warm (one turn taken, so its child
/// runs).
struct Daemon {
    serve: Child,
    socket: PathBuf,
    stop: Command,
}

impl Daemon {
    fn start(claude: &Path, fake: &FakeAnthropic, dir: &Path) -> Self {
        let home = fresh_dir(dir, "daemon-home");
        let cwd = fresh_dir(dir, "daemon-cwd");
        let root = fresh_dir(dir, "daemon");
        let env_table = child_env(&home)
            .into_iter()
            .filter(|(name, _)| !["PATH", "LANG"].contains(name))
            .map(|(name, value)| format!("{name} = {value:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[agents.claude-code]\ncommand = [{:?}]\nenv = {{ {env_table} }}\n",
                claude.display().to_string()
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
                .env("FAKE_ANTHROPIC_KEY", "sk-fake")
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
            "claude-code",
            "--base-url",
            &url,
            "--api-key-env",
            "FAKE_ANTHROPIC_KEY",
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
        answer.starts_with("HTTP/1.1 200"),
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
