//! Runtimes: how an agent that acts takes a turn. A coding agent (Claude
//! Code, Codex) is a long-lived child process with a session of its own; the
//! engine hands it one prompt at a time and gets back a stream of text
//! deltas, tool calls, tool results and usage, while the runtime asks the
//! [`Approver`] before a tool runs. The runtime knows no HTTP routes, no
//! queue and no store: `engine/agent.rs` does the rest.
//!
//! Contract every runtime keeps:
//! - `turn` starts the child if none runs (resuming `Spec::resume`, or the
//!   session the last child reported), sends the prompt, and streams until
//!   the turn ends; the stream's last item is `TurnEvent::Finish` or an error.
//! - It reports the agent's session/thread id with `TurnEvent::Session` as
//!   soon as it is known, so the engine can store it before the turn ends.
//! - When `Turn::interrupt` fires, it asks the agent to stop (Claude: the
//!   `interrupt` control request; Codex: `turn/interrupt`), keeps streaming
//!   what still arrives, and ends with `Finish("interrupted")`; the child
//!   stays for the next turn. Dropping the stream mid-turn is the caller
//!   giving up: the runtime interrupts or, failing that, stops the child.
//! - A child that dies mid-turn fails the turn with `RuntimeError::Died`
//!   and the tail of its stderr; the next `turn` starts a new child that
//!   resumes the session.
//! - A permission request becomes one `Approver::ask`, unless the spec's
//!   policy allows the tool already (`allow` patterns) or denies without
//!   asking (`ApprovalMode::Never`).

pub mod child;
pub mod claude_code;
pub mod codex;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::{AgentName, ApprovalRequest, ToolCall, ToolResult, Usage, Verdict};

/// One piece of a turn, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// Text to append to the reply.
    Delta(String),
    /// The agent started a tool call.
    ToolCall(ToolCall),
    /// A tool call's result (or its denial).
    ToolResult(ToolResult),
    /// Tokens the turn used, as the agent reports them.
    Usage(Usage),
    /// The agent's own session or thread id: stored with the agent, so a new
    /// child (after a restart, a crash or an idle stop) resumes it.
    Session(String),
    /// Extra facts for the reply's metadata (`cost_usd`, `model`, …).
    Metadata(Map<String, Value>),
    /// The turn is over: `"stop"`, `"interrupted"`, `"error"`, …
    Finish(String),
}

/// How a turn failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The executable is not installed: the spawn refuses with `install`.
    #[error("{program} was not found on PATH; {install}")]
    Missing { program: String, install: String },
    #[error("could not start {program}: {reason}")]
    Start { program: String, reason: String },
    /// The child exited mid-turn; `stderr` is the tail of what it printed.
    #[error("{program} exited during the turn ({status}){}", tail(stderr))]
    Died {
        program: String,
        status: String,
        stderr: String,
    },
    /// It spoke something the runtime cannot follow.
    #[error("{program} sent something unexpected: {reason}")]
    Protocol { program: String, reason: String },
    /// The agent reported the turn failed (its model server refused, …).
    #[error("{0}")]
    Turn(String),
}

fn tail(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; it printed: {}", stderr.trim())
    }
}

/// Writes `text` to `dir/name` for a child to read: `dir` created (0700)
/// if missing, the file private (0600) and rewritten whole — written aside,
/// then renamed, so a reader never sees half of it. Says what failed.
fn write_private(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| format!("could not create {}: {error}", dir.display()))?;
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|error| format!("could not write {}: {error}", path.display()))?;
    Ok(path)
}

/// Whether a tool that no `allow` pattern matches asks or is denied; a
/// model type, so it is stored with the agent.
pub use crate::model::ApprovalMode;

/// What a tool may do without asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Tool names and patterns that run without asking: Claude's
    /// `Bash(git status:*)` style, Codex command prefixes.
    pub allow: Vec<String>,
    pub mode: ApprovalMode,
}

/// Whether an `allow` pattern lets a coding agent run every shell command
/// without asking — as much a shell as `approval: bypass`: Claude Code's
/// `Bash` (bare, `Bash(*)`, `Bash(:*)`, `Bash(sh:*)`) or Codex's
/// `commandExecution`, or a Codex prefix naming a shell (`bash`).
pub fn runs_every_command(pattern: &str) -> bool {
    pattern.trim() == codex::COMMAND_TOOL
        || runs_other_commands(pattern)
        || claude_code::runs_every_command(pattern)
}

/// The most bytes the `allow` patterns of one agent may take together:
/// Claude Code gets each as an argument of its command line, which the
/// kernel bounds (128 KiB an argument, about 2 MiB in all).
pub const MAX_ALLOW_BYTES: usize = 64 * 1024;

/// Programs that run whatever command they are given: a shell, or a
/// command that runs another verbatim. A command prefix naming one allows
/// every command. (Build tools and interpreters run code too; allowing
/// them is a judgement the user makes, not a loophole in a pattern.)
const COMMAND_RUNNERS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "fish", "busybox", "env", "exec", "eval", "command",
    "builtin", "xargs", "sudo", "doas", "su", "nohup", "nice", "timeout", "time", "setsid",
    "stdbuf", "watch",
];

/// Whether a command prefix starts with a program that runs any other
/// (its name, or a path to it).
pub fn runs_other_commands(prefix: &str) -> bool {
    let first = prefix.split_whitespace().next().unwrap_or("");
    let name = first.rsplit('/').next().unwrap_or(first);
    COMMAND_RUNNERS.contains(&name)
}

/// Everything a runtime needs to start (and restart) its child.
#[derive(Debug, Clone)]
pub struct Spec {
    pub agent: AgentName,
    /// The executable and any leading arguments (`[agents.claude-code] command`, or found on PATH).
    pub command: Vec<String>,
    /// The child's whole environment: nothing of the daemon's is inherited.
    pub env: BTreeMap<String, String>,
    /// Where the agent works; must exist.
    pub cwd: PathBuf,
    pub model: Option<String>,
    /// Appended to the agent's system prompt / developer instructions.
    pub instructions: Option<String>,
    /// The session or thread to resume, if the agent had one.
    pub resume: Option<String>,
    pub policy: Policy,
    /// A directory the runtime may keep files in (Codex's `CODEX_HOME`),
    /// private to this agent and kept across restarts.
    pub state_dir: PathBuf,
}

/// One turn's inputs.
pub struct Turn {
    pub prompt: Arc<str>,
    pub approver: Arc<dyn Approver>,
    /// Fires on `POST /agents/{name}/interrupt`, Ctrl-C or an MCP cancel.
    pub interrupt: CancellationToken,
}

pub type TurnStream<'a> = Pin<Box<dyn Stream<Item = Result<TurnEvent, RuntimeError>> + Send + 'a>>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Asks a person whether a tool may run (the engine's approvals behind it).
pub trait Approver: Send + Sync {
    /// Resolves when the approval is answered, times out (denied), or the
    /// daemon shuts down (denied).
    fn ask(&self, request: ApprovalRequest) -> BoxFuture<'static, Verdict>;
}

/// A coding agent's side of its turns. One value per agent, held by the
/// engine for the agent's life; it starts its child lazily.
pub trait Runtime: Send {
    /// Runs one turn (see the module's contract).
    fn turn<'a>(&'a mut self, turn: Turn) -> TurnStream<'a>;
    /// Stops the child, if any (TERM, then KILL after a grace): idle stop,
    /// shutdown, daemon exit. The next turn starts a new one.
    fn stop(&mut self) -> BoxFuture<'_, ()>;
    /// Whether a child is running now (for `limits.max_agent_processes`).
    fn is_running(&self) -> bool;
}

/// The coding agents the daemon can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    ClaudeCode,
    Codex,
}

impl Program {
    /// The executable's usual name, looked up on the daemon's `PATH`.
    pub fn executable(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude",
            Self::Codex => "codex",
        }
    }

    /// How a user installs it, for the error that says it is missing.
    pub fn install(self) -> &'static str {
        match self {
            Self::ClaudeCode => {
                "install it with `npm install -g @anthropic-ai/claude-code`, or name it in the config file: [agents.claude-code] command = [\"/path/to/claude\"]"
            }
            Self::Codex => {
                "install it with `npm install -g @openai/codex`, or name it in the config file: [agents.codex] command = [\"/path/to/codex\"]"
            }
        }
    }

    /// The variable the child reads its API key from.
    pub fn key_variable(self) -> &'static str {
        match self {
            Self::ClaudeCode => "ANTHROPIC_API_KEY",
            Self::Codex => "OPENAI_API_KEY",
        }
    }
}

/// A runtime for `program`; its child starts with the first turn.
pub fn new(program: Program, spec: Spec) -> Result<Box<dyn Runtime>, RuntimeError> {
    match program {
        Program::ClaudeCode => Ok(Box::new(claude_code::ClaudeCode::new(spec))),
        Program::Codex => Ok(Box::new(codex::Codex::from_spec(spec))),
    }
}
