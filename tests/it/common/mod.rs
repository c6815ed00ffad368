//! Test harness: runs the real `orchestration` binary against temporary
//! directories and talks to it over real sockets with raw HTTP/1.1.
#![allow(dead_code)]

pub mod coding;
pub mod fake_anthropic;
pub mod fake_http;
pub mod fake_provider;
pub mod fake_responses;
pub mod in_process;
pub mod tool_calls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use orchestration::model::{AgentInfo, AgentName, Clock, ClockHand, Message};
use orchestration::wire::{Messages, ModelsRequest, SpawnRequest};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_orchestration");

/// How long anything in a test may take to become true before it fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A temporary home for one daemon: runtime, state and config dirs.
#[derive(Clone)]
pub struct Env {
    /// Shared, so an Env outlives the daemon it was lent to (for restarts).
    pub dir: std::sync::Arc<tempfile::TempDir>,
    /// Extra environment for every command run in this env (daemon and CLI).
    pub vars: Vec<(String, String)>,
    /// The clock in-process daemons started in this env (and restarted in
    /// a clone of it) read; a `serve` process reads the wall clock.
    pub clock: Clock,
    /// Moves `clock` forward: see [`Env::advance`].
    hand: ClockHand,
}

impl Env {
    pub fn new() -> Self {
        let (clock, hand) = Clock::adjustable();
        Self {
            dir: std::sync::Arc::new(tempfile::tempdir().expect("tempdir")),
            vars: Vec::new(),
            clock,
            hand,
        }
    }

    /// Lets `by` pass for the in-process daemons of this env at once,
    /// instead of sleeping: what they record from now on is dated `by`
    /// later, and "older than" or "since" counts back from there.
    pub fn advance(&self, by: Duration) {
        self.hand.advance(by);
    }

    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// Writes the config file the daemon and CLI read.
    pub fn config(self, text: &str) -> Self {
        std::fs::write(self.dir.path().join("config.toml"), text).expect("write config");
        self
    }

    /// Runs a CLI command with extra environment variables of its own.
    pub fn cli_env(&self, vars: &[(&str, &str)], args: &[&str]) -> CliOutput {
        let mut command = self.command(args);
        command.envs(vars.iter().copied());
        CliOutput(command.output().expect("run orchestration"))
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("daemon.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.runtime_dir().join("daemon.pid")
    }

    pub fn token_file(&self) -> PathBuf {
        self.runtime_dir().join("http.token")
    }

    /// A command for the binary with every path pointed into this env.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        self.configure(command)
    }

    /// A `sh -c SCRIPT` with this env's environment (for umask and the like).
    pub fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        self.configure(command)
    }

    fn configure(&self, mut command: Command) -> Command {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("ORCHESTRATION_RUNTIME_DIR", self.runtime_dir())
            .env("ORCHESTRATION_STATE_DIR", self.dir.path().join("state"))
            .env("ORCHESTRATION_CONFIG", self.dir.path().join("config.toml"))
            .env("RUST_LOG", "info")
            // Tests start their daemons themselves; tests/service.rs turns this off.
            .env("ORCHESTRATION_NO_AUTOSTART", "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs a CLI command to completion.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        CliOutput(self.command(args).output().expect("run orchestration"))
    }

    /// Runs a CLI command with `input` on its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> CliOutput {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orchestration");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        CliOutput(child.wait_with_output().expect("wait"))
    }
}

pub struct CliOutput(pub Output);

impl CliOutput {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.0.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code(),
            0,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// What a test needs of a running daemon, whether it runs as a child
/// process ([`Daemon`]) or in this one ([`in_process::InProcess`]): a
/// helper written against it serves tests of both kinds.
pub trait Harness {
    fn env(&self) -> &Env;

    /// Its loopback TCP port, if it listens on one.
    fn port(&self) -> Option<u16>;

    /// One request over TCP with the given extra headers (no token added).
    fn tcp_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        let port = self.port().expect("daemon has a TCP port");
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to TCP");
        send(stream, &build_request(method, path, headers, body))
    }

    fn cli(&self, args: &[&str]) -> CliOutput {
        self.env().cli(args)
    }

    /// One request over the Unix socket.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        let stream = UnixStream::connect(self.env().socket()).expect("connect to socket");
        send(
            stream,
            &build_request(method, path, &[("Host", "localhost")], body),
        )
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        let body = body.map(|b| b.to_string());
        self.request(method, path, body.as_deref())
    }

    /// Sends `content` to agent `name` and waits for the whole reply
    /// (`POST /agents/{name}/message`, not streamed).
    fn say(&self, name: &str, content: &str) -> HttpResponse {
        self.json(
            "POST",
            &format!("/agents/{name}/message"),
            Some(serde_json::json!({ "content": content })),
        )
    }

    /// Agent `name`'s history (`GET /agents/{name}/history`), as JSON.
    #[track_caller]
    fn history(&self, name: &str) -> Value {
        self.json("GET", &format!("/agents/{name}/history"), None)
            .json()
    }

    /// Spawns an `echo` agent and checks that it was.
    #[track_caller]
    fn spawn_echo(&self, name: &str) {
        let spawned = self.json(
            "POST",
            "/agents",
            Some(serde_json::json!({"name": name, "provider": "echo"})),
        );
        assert_eq!(spawned.status, 200, "{}", spawned.text());
    }

    /// Spawns `request` (`POST /agents`), checks that it was, and returns
    /// the agent as the daemon describes it.
    #[track_caller]
    fn spawn(&self, request: &SpawnRequest) -> AgentInfo {
        let body = serde_json::to_value(request).expect("a spawn request is JSON");
        let spawned = self.json("POST", "/agents", Some(body));
        assert_eq!(spawned.status, 200, "{}", spawned.text());
        serde_json::from_value(spawned.json()).expect("the answer is an agent")
    }

    /// Spawns agent `name` of `provider` (`openai`, `anthropic`) on the
    /// model server at `base_url` (a fake one's), with the key `k`.
    #[track_caller]
    fn spawn_at(&self, name: &str, provider: &str, base_url: &str) -> AgentInfo {
        let endpoint = ModelsRequest {
            provider: Some(provider.to_owned()),
            base_url: Some(base_url.to_owned()),
            api_key: Some("k".to_owned()),
            ..ModelsRequest::default()
        };
        let name = AgentName::parse(name).expect("a valid agent name");
        self.spawn(&SpawnRequest::new(name, endpoint))
    }

    /// [`Self::say`], checked to succeed: the reply's messages.
    #[track_caller]
    fn said(&self, name: &str, content: &str) -> Vec<Message> {
        let reply = self.say(name, content);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let messages: Messages =
            serde_json::from_value(reply.json()).expect("the answer is messages");
        messages.messages
    }

    /// Agent `name`'s current conversation, as messages.
    #[track_caller]
    fn messages(&self, name: &str) -> Vec<Message> {
        let history: Messages =
            serde_json::from_value(self.history(name)).expect("a history is messages");
        history.messages
    }

    /// The bearer token TCP requests need.
    fn token(&self) -> String;

    /// A request over TCP as a well-behaved client: loopback Host and the token.
    fn tcp_json(&self, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        let host = format!("127.0.0.1:{}", self.port().expect("port"));
        let auth = format!("Bearer {}", self.token());
        let body = body.map(|b| b.to_string());
        self.tcp_request(
            method,
            path,
            &[("Host", &host), ("Authorization", &auth)],
            body.as_deref(),
        )
    }

    /// Opens a streamed request over the Unix socket and returns the reader
    /// just after the first delta, so a test can act mid-reply.
    fn stream(&self, path: &str, body: &Value) -> BufReader<UnixStream> {
        open_stream(&self.env().socket(), path, body)
    }
}

impl Harness for Daemon {
    fn env(&self) -> &Env {
        &self.env
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.env.token_file())
            .expect("token file")
            .trim()
            .to_owned()
    }

    fn port(&self) -> Option<u16> {
        self.port
    }
}

impl Harness for in_process::InProcess {
    fn env(&self) -> &Env {
        &self.env
    }

    fn token(&self) -> String {
        self.token.clone().expect("the daemon listens on TCP")
    }

    fn port(&self) -> Option<u16> {
        self.port
    }
}

/// A running daemon; killed (SIGKILL) if the test did not stop it.
pub struct Daemon {
    pub env: Env,
    pub child: Child,
    pub port: Option<u16>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `serve --no-tcp` plus `extra`, waiting until it answers.
    pub fn start(extra: &[&str]) -> Self {
        let mut args = vec!["--no-tcp"];
        args.extend_from_slice(extra);
        Self::start_in(Env::new(), &args, None)
    }

    /// Starts a daemon that also listens on a free loopback TCP port.
    pub fn start_tcp(extra: &[&str]) -> Self {
        Self::start_tcp_in(Env::new(), extra)
    }

    /// Starts `serve --port 0` plus `extra` in `env`: the daemon binds a
    /// free port itself (no port is found free first and then raced for),
    /// and `port` is read back from the running process.
    pub fn start_tcp_in(env: Env, extra: &[&str]) -> Self {
        let mut args = vec!["--port", "0"];
        args.extend_from_slice(extra);
        Self::start_in(env, &args, Some(0))
    }

    /// Starts `serve` plus `serve_args` in `env`; `port` is the TCP port it
    /// was told, `Some(0)` for one it picks (then read back once it is ready).
    pub fn start_in(env: Env, serve_args: &[&str], port: Option<u16>) -> Self {
        let log = env.dir.path().join("daemon.log");
        let mut args = vec!["serve"];
        args.extend_from_slice(serve_args);
        let child = env
            .command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn daemon");
        let mut daemon = Self {
            env,
            child,
            port,
            log,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited early with {status}:\n{}", self.log());
            }
            let answering = UnixStream::connect(self.env.socket()).is_ok()
                && self.request("GET", "/health", None).status == 200;
            let tcp_ready = self.port.is_none() || self.env.token_file().exists();
            if answering && tcp_ready {
                if self.port == Some(0) {
                    let port = listening_port(self.child.id());
                    self.port = Some(port.expect("the daemon listens on a TCP port"));
                }
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "daemon not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Opens `GET /events` and returns it once its head arrived: an open
    /// connection, which keeps a daemon with an idle timeout from exiting.
    pub fn stream_events(&self) -> BufReader<UnixStream> {
        open_events(&self.env.socket())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "daemon did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon that forked into the background (`serve --daemon`, auto-start):
/// not our child, so it is found through its PID file and killed on drop.
pub struct Background {
    pub env: Env,
}

impl Background {
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.env.pid_file())
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    pub fn alive(&self) -> bool {
        self.pid().is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.env.dir.path().join("state/daemon.log")).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Sends a signal by name (`TERM`, `INT`, `KILL`, …).
pub fn signal(pid: i32, name: &str) {
    let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().expect("signal name");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill");
}

/// A loopback port nothing listens on, for tests of a model server that
/// is down. Port 1 is privileged and nothing here serves it, so connecting
/// is refused at once; and unlike a port found free and released, the
/// kernel never hands it to a daemon binding port 0 at the same time.
pub const CLOSED_PORT: u16 = 1;

/// The loopback TCP port process `pid` listens on (it was started with
/// `--port 0`, so only it knows): its socket inodes, looked up in the
/// kernel's table of listening TCP sockets.
pub fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    // Columns: sl local_address rem_address st ... inode (the tenth).
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let listening = columns.get(3) == Some(&"0A");
        let ours = columns
            .get(9)
            .is_some_and(|inode| inodes.iter().any(|i| i == inode));
        if !(listening && ours) {
            return None;
        }
        let (_, port) = columns.get(1)?.split_once(':')?;
        u16::from_str_radix(port, 16).ok()
    })
}

pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        fake_http::header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
    /// The `detail` of an error body.
    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .expect("detail is a string")
            .to_owned()
    }
    /// An NDJSON body's lines.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect()
    }
}

/// Writes a request and reads the whole response (the request asked for `Connection: close`).
pub fn send<S: Read + Write>(mut stream: S, request: &[u8]) -> HttpResponse {
    // The daemon may answer (413) and close before the whole request is
    // written; what it said is still there to read.
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        // A size that does not parse is a broken response, not its end.
        let size = usize::from_str_radix(size_text.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
}

/// Opens a streamed message and returns the reader after the first delta line,
/// so a test can drop it mid-reply.
pub fn open_stream(socket: &Path, path: &str, body: &Value) -> BufReader<UnixStream> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .write_all(&build_request(
            "POST",
            path,
            &[("Host", "localhost")],
            Some(&body.to_string()),
        ))
        .expect("write");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read line");
        assert!(n > 0, "stream closed before the first delta");
        if line.contains("\"delta\"") {
            return reader;
        }
    }
}

/// Sends one request over the socket and returns the connection once a
/// `200` status line has arrived, the rest of the answer still to read.
pub fn open_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> BufReader<UnixStream> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .write_all(&build_request(method, path, &[("Host", "localhost")], body))
        .expect("write");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    reader
}

/// Opens `GET /events` and returns it once its head arrived.
pub fn open_events(socket: &Path) -> BufReader<UnixStream> {
    let mut reader = open_request(socket, "GET", "/events", None);
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        let n = reader.read_line(&mut line).expect("head");
        assert!(n > 0, "the event stream closed in its head");
    }
    reader
}

/// Reads a stream until the daemon closes it.
pub fn read_rest(reader: &mut BufReader<UnixStream>) -> String {
    let mut rest = String::new();
    while reader.read_line(&mut rest).unwrap_or(0) > 0 {}
    rest
}

/// Polls `check` until it returns true.
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A history's (sender, content) pairs.
pub fn transcript(history: &Value) -> Vec<(String, String)> {
    history["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().expect("sender").to_owned(),
                m["content"].as_str().expect("content").to_owned(),
            )
        })
        .collect()
}

/// Owned (a, b) pairs, to compare with transcripts and sent turns.
pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The (role, content) turns of a chat request a fake provider received.
pub fn sent_turns(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
