//! A supervised child process that speaks JSON lines on stdin/stdout: how
//! every coding agent runtime talks to its CLI. Its stdout is read by a task
//! into a bounded channel (each line bounded in bytes), its stderr is logged
//! under the agent's name and its tail kept for error messages, and it runs
//! in a process group of its own so stopping it stops what it started.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child as Process, ChildStdin, Command};
use tokio::sync::mpsc;

/// The longest stdout line a child may print (a tool result can be large);
/// a longer one ends the child's output with an error.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// How much of stderr is kept for an error message.
const STDERR_TAIL_BYTES: usize = 4096;
/// Lines read ahead of the runtime. With the line limit this bounds what a
/// child's output can hold in the daemon: (this + the line being read) ×
/// [`MAX_LINE_BYTES`] = 80 MiB at worst, per child, and
/// `limits.max_agent_processes` bounds the children.
const LINES_AHEAD: usize = 4;

/// How to start a child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// For logs and error messages: the agent's name.
    pub label: String,
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment: the child inherits nothing else.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// Why talking to a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{0} was not found")]
    NotFound(String),
    #[error("could not start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("could not write to {program}: it has exited")]
    Closed { program: String },
    #[error("{program} printed a line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { program: String },
}

/// What the child printed on stdout.
#[derive(Debug)]
pub enum Output {
    Line(Value),
    /// Not JSON: kept for the log, skipped by the runtime.
    Text(String),
}

/// A running child. Dropping it kills the process group.
pub struct Child {
    program: String,
    process: Process,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Result<Output, ChildError>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    /// The task reading stderr: done once the child and all it started have closed it.
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    pid: Option<i32>,
}

/// Finds `program` on `path` (a `PATH` value) unless it names a file already.
pub fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let candidate = PathBuf::from(program);
        return is_executable(&candidate).then_some(candidate);
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Child {
    /// Starts the child with exactly `spec.env`, in `spec.cwd`, in a new
    /// process group.
    pub fn spawn(spec: &ChildSpec) -> Result<Self, ChildError> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut process = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ChildError::NotFound(spec.program.clone()),
            _ => ChildError::Spawn {
                program: spec.program.clone(),
                reason: error.to_string(),
            },
        })?;
        let pid = process.id().and_then(|pid| i32::try_from(pid).ok());
        let stdin = process.stdin.take();
        let (tx, lines) = mpsc::channel(LINES_AHEAD);
        if let Some(stdout) = process.stdout.take() {
            tokio::spawn(read_lines(stdout, tx, spec.program.clone()));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = process
            .stderr
            .take()
            .map(|pipe| tokio::spawn(read_stderr(pipe, stderr.clone(), spec.label.clone())));
        tracing::info!(agent = %spec.label, program = %spec.program, pid, "child started");
        Ok(Self {
            program: spec.program.clone(),
            process,
            stdin,
            lines,
            stderr,
            stderr_task,
            pid,
        })
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Writes one JSON line to the child's stdin.
    pub async fn send(&mut self, value: &Value) -> Result<(), ChildError> {
        let closed = || ChildError::Closed {
            program: self.program.clone(),
        };
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(closed());
        };
        let mut line = value.to_string();
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            self.stdin = None;
            return Err(closed());
        }
        Ok(())
    }

    /// The next thing the child printed; `None` once its stdout is closed
    /// (it exited or closed it).
    pub async fn next(&mut self) -> Option<Result<Output, ChildError>> {
        self.lines.recv().await
    }

    /// The last few KiB the child printed on stderr, as text.
    pub fn stderr_tail(&self) -> String {
        let tail = lock(&self.stderr);
        let bytes: Vec<u8> = tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits, a second at most, until stderr is read to its end: after the
    /// child exited, so that [`Self::stderr_tail`] has its last words.
    pub async fn stderr_settled(&mut self) {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }

    /// Whether the process has exited, and how ("exit status 1", "signal 9").
    pub fn exit_status(&mut self) -> Option<String> {
        match self.process.try_wait() {
            Ok(Some(status)) => Some(describe(status)),
            _ => None,
        }
    }

    /// Waits for the process to exit and says how.
    pub async fn wait(&mut self) -> String {
        match self.process.wait().await {
            Ok(status) => describe(status),
            Err(error) => format!("unknown status: {error}"),
        }
    }

    /// Stops the child: closes stdin (most CLIs exit on EOF), then TERM to
    /// its process group, then KILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.stdin = None;
        if tokio::time::timeout(grace / 2, self.process.wait())
            .await
            .is_ok()
        {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(grace / 2, self.process.wait())
            .await
            .is_ok()
        {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.process.wait().await;
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Whatever the child started dies with it.
        if matches!(self.process.try_wait(), Ok(None)) {
            self.signal(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A poisoned lock still holds a usable byte buffer.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

/// Reads stdout line by line, each bounded, until EOF or the runtime goes.
async fn read_lines(
    stdout: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Result<Output, ChildError>>,
    program: String,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(LineError::TooLong) => {
                let _ = tx
                    .send(Err(ChildError::LineTooLong {
                        program: program.clone(),
                    }))
                    .await;
                return;
            }
            Err(LineError::Io) => return,
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let output = match serde_json::from_str::<Value>(text) {
            Ok(value) => Output::Line(value),
            Err(_) => Output::Text(text.to_owned()),
        };
        if tx.send(Ok(output)).await.is_err() {
            return;
        }
    }
}

enum LineError {
    TooLong,
    Io,
}

/// One line into `line` (newline included), at most [`MAX_LINE_BYTES`].
async fn read_bounded_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    line: &mut Vec<u8>,
) -> Result<usize, LineError> {
    loop {
        let available = reader.fill_buf().await.map_err(|_| LineError::Io)?;
        if available.is_empty() {
            return Ok(line.len());
        }
        let (taken, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if line.len() + taken > MAX_LINE_BYTES {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if done {
            return Ok(line.len());
        }
    }
}

/// Logs stderr under the agent's name and keeps its tail.
async fn read_stderr(
    stderr: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<u8>>>,
    label: String,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line).await {
            Ok(0) | Err(LineError::Io) => return,
            Ok(_) => {}
            // An endless line: keep its start, drop the rest.
            Err(LineError::TooLong) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let shown: String = text.chars().take(512).collect();
        tracing::debug!(agent = %label, stderr = %shown.escape_debug(), "child stderr");
        let mut kept = lock(&tail);
        kept.extend(text.as_bytes());
        kept.push_back(b'\n');
        while kept.len() > STDERR_TAIL_BYTES {
            kept.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str) -> ChildSpec {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/usr/bin:/bin".into());
        ChildSpec {
            label: "test".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env,
            cwd: std::env::temp_dir(),
        }
    }

    #[tokio::test]
    async fn lines_go_both_ways_and_stderr_is_kept() {
        let mut child = Child::spawn(&spec(
            "echo starting >&2; while read line; do echo \"$line\"; done; echo bye >&2",
        ))
        .unwrap();
        child.send(&serde_json::json!({"n": 1})).await.unwrap();
        match child.next().await {
            Some(Ok(Output::Line(value))) => assert_eq!(value["n"], 1),
            other => panic!("{other:?}"),
        }
        child.stdin = None;
        assert!(child.next().await.is_none());
        assert_eq!(child.wait().await, "exit status 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tail = child.stderr_tail();
        assert!(tail.contains("starting") && tail.contains("bye"), "{tail}");
    }

    #[tokio::test]
    async fn the_environment_is_only_what_was_given() {
        let mut child = Child::spawn(&spec("env")).unwrap();
        let mut seen = Vec::new();
        while let Some(Ok(Output::Text(line))) = child.next().await {
            seen.push(line);
        }
        assert!(
            seen.iter().all(|line| line.starts_with("PATH=")
                || line.starts_with("PWD=")
                || line.starts_with("SHLVL=")
                || line.starts_with("_=")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn stop_ends_a_child_that_ignores_eof_and_term() {
        let mut child = Child::spawn(&spec("trap '' TERM; while true; do sleep 1; done")).unwrap();
        assert!(child.exit_status().is_none());
        child.stop(Duration::from_millis(400)).await;
    }

    #[test]
    fn programs_are_found_on_the_path_given() {
        assert!(find_program("sh", Some("/usr/bin:/bin")).is_some());
        assert!(find_program("no-such-program-here", Some("/usr/bin:/bin")).is_none());
        assert!(find_program("sh", None).is_none());
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let mut missing = spec("");
        missing.program = "/nonexistent/claude".into();
        assert!(matches!(
            Child::spawn(&missing),
            Err(ChildError::NotFound(_))
        ));
    }
}
