//! One MCP server the daemon runs, supervised: started on first use (a
//! child on stdio, or a streamable-HTTP connection), its tool list cached
//! per run, marked failed when it exits or its connection breaks (its calls
//! in flight fail naming why), started again with a backoff, stopped when
//! idle or when its config changes.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientNotification,
    ClientRequest, Implementation, ProtocolVersion, RequestId, ServerResult, Tool,
};
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestHandle, RoleClient, RunningService,
    ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use super::ToolError;
use crate::config::McpServerConfig;
use crate::model::{ServerState, ServerTransport};

/// The longest a server may take to start and list its tools (`npx` may
/// download it first); a start an agent's turn waits for is bounded by
/// `tools.call_timeout` too, whichever is shorter.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The protocol version the daemon asks for in `initialize`: the newest one
/// that still has the handshake every server on npm and PyPI answers.
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::LATEST_WITH_INITIALIZE;
/// A line of a server's stderr longer than this is logged cut here.
const MAX_STDERR_LINE: usize = 4096;
/// The wait before the first restart after a failure; it doubles with each
/// failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a stopped child has to exit after its stdin closes before its
/// process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a call whose connection closed waits to learn how the child
/// exited, for its error message.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// The variables a stdio server gets from the daemon's environment; the
/// rest of its environment is its own `env`.
const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// One configured server and its current run, if any.
pub(crate) struct Server {
    pub name: String,
    pub config: McpServerConfig,
    status: Arc<Mutex<Status>>,
    /// Held while a run is started or stopped, so there is one at a time.
    slot: tokio::sync::Mutex<Option<Run>>,
}

/// What `tools list` shows, readable without waiting for a start.
#[derive(Debug)]
struct Status {
    state: ServerState,
    /// The run the state is about; a late report from an older run is ignored.
    generation: u64,
    /// Starts after a failure.
    restarts: u32,
    /// Failures since the last call that went through: sets the backoff.
    failures: u32,
    failed_at: Option<Instant>,
    /// The run whose failure was counted (each is counted once).
    failed_run: Option<u64>,
    last_error: Option<String>,
    /// The tools the server listed when it last ran.
    tools: Option<Arc<Vec<Tool>>>,
    last_used: Instant,
    in_flight: usize,
}

/// A server's status as `tools list` shows it.
pub(crate) struct Snapshot {
    pub state: ServerState,
    pub tools: Option<Arc<Vec<Tool>>>,
    pub restarts: u32,
    pub last_error: Option<String>,
    pub calls_in_flight: usize,
}

/// A running server: the MCP client, and for stdio the child behind it.
struct Run {
    service: RunningService<RoleClient, Handler>,
    generation: u64,
    /// How the child exited (`None` while it runs; never set for HTTP).
    exit: watch::Receiver<Option<String>>,
    /// Kills the child's process group when the run is dropped.
    _child: Option<ChildGuard>,
    /// Set by `notifications/tools/list_changed`: list again on next use.
    stale: Arc<AtomicBool>,
}

/// How long a start may take, and the setting that says so (none for
/// [`START_TIMEOUT`] itself).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartLimit {
    pub time: Duration,
    pub setting: Option<&'static str>,
}

impl StartLimit {
    /// [`START_TIMEOUT`]: no call waits on this start.
    pub const OWN: Self = Self {
        time: START_TIMEOUT,
        setting: None,
    };

    /// A start a call waits for: no longer than the call may take.
    pub fn for_call(call_timeout: Duration) -> Self {
        if call_timeout < START_TIMEOUT {
            Self {
                time: call_timeout,
                setting: Some("tools.call_timeout"),
            }
        } else {
            Self::OWN
        }
    }
}

/// A start under way: if it is dropped unfinished (its time ran out), the
/// run is marked failed with `abandoned`, so the next use waits the backoff.
struct Starting<'a> {
    server: &'a Server,
    generation: u64,
    abandoned: Option<String>,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Some(why) = self.abandoned.take() {
            self.server.failed(self.generation, why);
        }
    }
}

/// A run, as one call needs it.
pub(crate) struct Connection {
    pub peer: Peer<RoleClient>,
    pub tools: Arc<Vec<Tool>>,
    pub generation: u64,
    pub exit: watch::Receiver<Option<String>>,
}

/// The client side of the MCP session: it answers nothing the daemon does
/// not offer (no sampling, roots or elicitation) and notes a changed tool list.
struct Handler {
    stale: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.stale.store(true, Ordering::Relaxed);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("orchestration", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(PROTOCOL_VERSION)
    }
}

/// The child's process group dies with the run (stopped, failed or dropped).
struct ChildGuard {
    pid: Option<i32>,
    /// Set before the daemon stops the child, so its exit is not a failure.
    stopping: Arc<AtomicBool>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        kill_group(self.pid);
    }
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Counts a call in flight (a server with one is never idle) and marks the
/// server used when the call ends.
pub(crate) struct InFlight {
    status: Arc<Mutex<Status>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut status = lock(&self.status);
        status.in_flight = status.in_flight.saturating_sub(1);
        status.last_used = Instant::now();
    }
}

impl Server {
    pub fn new(name: String, config: McpServerConfig) -> Self {
        Self {
            name,
            config,
            status: Arc::new(Mutex::new(Status {
                state: ServerState::Stopped,
                generation: 0,
                restarts: 0,
                failures: 0,
                failed_at: None,
                failed_run: None,
                last_error: None,
                tools: None,
                last_used: Instant::now(),
                in_flight: 0,
            })),
            slot: tokio::sync::Mutex::new(None),
        }
    }

    pub fn transport(&self) -> ServerTransport {
        if self.config.url.is_some() {
            ServerTransport::Http
        } else {
            ServerTransport::Stdio
        }
    }

    /// State, last tools, restarts and last error, as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let status = lock(&self.status);
        Snapshot {
            state: status.state,
            tools: status.tools.clone(),
            restarts: status.restarts,
            last_error: status.last_error.clone(),
            calls_in_flight: status.in_flight,
        }
    }

    /// A call was sent: the server is not idle until it is answered.
    pub fn begin_call(&self) -> InFlight {
        let mut status = lock(&self.status);
        status.in_flight += 1;
        status.last_used = Instant::now();
        InFlight {
            status: self.status.clone(),
        }
    }

    /// The running server, started first if it is not (after the backoff
    /// if it failed), with its tools listed. A start dropped before it is
    /// done (its time ran out) counts as a failure, for `abandoned`.
    async fn connect(
        self: &Arc<Self>,
        idle_timeout: Duration,
        abandoned: &str,
    ) -> Result<Connection, ToolError> {
        let mut slot = self.slot.lock().await;
        if let Some(run) = slot.as_ref() {
            if let Some(why) = run.broken().or_else(|| self.failure_of(run.generation)) {
                self.failed(run.generation, why);
                *slot = None;
            } else {
                return self.connection(run).await;
            }
        }
        self.wait_backoff().await;
        let generation = self.next_generation();
        let mut starting = Starting {
            server: self,
            generation,
            abandoned: Some(abandoned.to_owned()),
        };
        let run = match self.start(generation).await {
            Ok(run) => run,
            Err(why) => {
                self.failed(generation, why.clone());
                return Err(self.unavailable(why));
            }
        };
        // A run whose tools cannot be listed is of no use: dropped (killed).
        let connection = self.connection(&run).await?;
        starting.abandoned = None;
        self.started(generation);
        tokio::spawn(reap_when_idle(
            Arc::downgrade(self),
            generation,
            idle_timeout,
        ));
        *slot = Some(run);
        Ok(connection)
    }

    /// [`Self::connect`], bounded by `limit`: past it, the server is
    /// unavailable (and, if it was starting, failed: the next use waits
    /// the backoff).
    pub async fn connect_within(
        self: &Arc<Self>,
        idle_timeout: Duration,
        limit: StartLimit,
    ) -> Result<Connection, ToolError> {
        let why = format!(
            "it did not start and list its tools within {}{}",
            crate::duration::format(limit.time),
            limit
                .setting
                .map_or(String::new(), |key| format!(" ({key})")),
        );
        tokio::time::timeout(limit.time, self.connect(idle_timeout, &why))
            .await
            .unwrap_or_else(|_| Err(self.unavailable(why)))
    }

    /// The connection to `run`, its tools listed again if they changed.
    async fn connection(&self, run: &Run) -> Result<Connection, ToolError> {
        let cached = lock(&self.status).tools.clone();
        let stale = run.stale.swap(false, Ordering::Relaxed);
        let tools = match cached {
            Some(tools) if !stale && lock(&self.status).state == ServerState::Running => tools,
            _ => {
                let listed = match run.service.peer().list_all_tools().await {
                    Ok(listed) => listed,
                    Err(ServiceError::McpError(error)) => {
                        let why = format!("listing its tools failed: {}", error.message);
                        self.failed(run.generation, why.clone());
                        return Err(self.unavailable(why));
                    }
                    Err(error) => return Err(self.lost(run.generation, &run.exit, &error).await),
                };
                let listed = Arc::new(listed);
                lock(&self.status).tools = Some(listed.clone());
                listed
            }
        };
        Ok(Connection {
            peer: run.service.peer().clone(),
            tools,
            generation: run.generation,
            exit: run.exit.clone(),
        })
    }

    fn next_generation(&self) -> u64 {
        let mut status = lock(&self.status);
        status.generation += 1;
        status.generation
    }

    /// A start (and tool listing) went through.
    fn started(&self, generation: u64) {
        let mut status = lock(&self.status);
        if status.generation != generation {
            return;
        }
        if status.state == ServerState::Failed {
            status.restarts += 1;
        }
        status.state = ServerState::Running;
        status.last_used = Instant::now();
        tracing::info!(server = %self.name, "MCP server started");
    }

    /// Run `generation` failed: exited, its connection broke, or it could
    /// not start. Reported once however many notice it.
    pub fn failed(&self, generation: u64, why: String) {
        mark_failed(&self.status, &self.name, generation, why);
    }

    /// Why run `generation` was marked failed, if it was (a broken HTTP
    /// connection has no process whose exit would say so).
    fn failure_of(&self, generation: u64) -> Option<String> {
        let status = lock(&self.status);
        (status.failed_run == Some(generation)).then(|| {
            status
                .last_error
                .clone()
                .unwrap_or_else(|| "it failed".to_owned())
        })
    }

    /// A call went through: the next failure waits the shortest backoff.
    pub fn succeeded(&self) {
        lock(&self.status).failures = 0;
    }

    /// Waits out the backoff after a failure: 1 s, doubling with each
    /// failure in a row, 60 s at most.
    async fn wait_backoff(&self) {
        let until = {
            let status = lock(&self.status);
            match (status.state, status.failed_at) {
                (ServerState::Failed, Some(at)) => {
                    let doublings = status.failures.saturating_sub(1).min(6);
                    Some(at + (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF))
                }
                _ => None,
            }
        };
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    pub fn unavailable(&self, why: String) -> ToolError {
        ToolError::Unavailable {
            server: self.name.clone(),
            why,
        }
    }

    /// Starts a run: the child or the HTTP connection, then the MCP handshake.
    async fn start(&self, generation: u64) -> Result<Run, String> {
        let stale = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            stale: stale.clone(),
        };
        if let Some(url) = &self.config.url {
            let transport = http_transport(url, &self.config.headers)?;
            let service = handler
                .serve(transport)
                .await
                .map_err(|error| format!("could not connect to {url}: {error}"))?;
            let (_tx, exit) = watch::channel(None);
            return Ok(Run {
                service,
                generation,
                exit,
                _child: None,
                stale,
            });
        }
        let (mut process, guard) = self.spawn()?;
        let (stdin, stdout) = match (process.stdin.take(), process.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => return Err("its standard input or output could not be opened".into()),
        };
        if let Some(stderr) = process.stderr.take() {
            tokio::spawn(log_stderr(stderr, self.name.clone()));
        }
        let (tx, exit) = watch::channel(None);
        tokio::spawn(watch_exit(
            process,
            tx,
            guard.stopping.clone(),
            self.status.clone(),
            self.name.clone(),
            generation,
        ));
        let mut exited = exit.clone();
        let service = tokio::select! {
            service = handler.serve((stdout, stdin)) => service.map_err(|error| {
                format!("the MCP handshake failed: {error}")
            })?,
            // A child that dies before answering `initialize` says how.
            Ok(status) = exited.wait_for(Option::is_some) => {
                return Err(format!("it exited ({}) before the MCP handshake", status.as_deref().unwrap_or("")));
            }
        };
        Ok(Run {
            service,
            generation,
            exit,
            _child: Some(guard),
            stale,
        })
    }

    /// The child: exactly its `env` plus `PATH`, `HOME` and `LANG`, in a
    /// process group of its own, stdin and stdout piped, in `cwd` if given.
    fn spawn(&self) -> Result<(tokio::process::Child, ChildGuard), String> {
        let program = self.config.command.as_deref().unwrap_or_default();
        let mut command = Command::new(program);
        command
            .args(&self.config.args)
            .env_clear()
            .envs(inherited_env())
            .envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.config.cwd {
            command.current_dir(cwd);
        }
        let process = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!("{program:?} was not found"),
            _ => format!("could not start {program:?}: {error}"),
        })?;
        let pid = process.id().and_then(|pid| i32::try_from(pid).ok());
        tracing::info!(server = %self.name, program, pid, "MCP server process started");
        let guard = ChildGuard {
            pid,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        Ok((process, guard))
    }

    /// Stops the run if there is one (the daemon stops, the config changed,
    /// or it was idle): stdin closed, then the process group killed.
    pub async fn stop(&self) {
        let mut slot = self.slot.lock().await;
        self.stop_locked(&mut slot).await;
    }

    async fn stop_locked(&self, slot: &mut Option<Run>) {
        let Some(mut run) = slot.take() else {
            return;
        };
        if let Some(child) = &run._child {
            child.stopping.store(true, Ordering::Relaxed);
        }
        {
            let mut status = lock(&self.status);
            if status.generation == run.generation && status.state == ServerState::Running {
                status.state = ServerState::Stopped;
            }
        }
        // Closing the transport closes the child's stdin: a polite stop.
        let _ = tokio::time::timeout(STOP_GRACE, run.service.close()).await;
        let _ = tokio::time::timeout(STOP_GRACE, run.exit.wait_for(Option::is_some)).await;
        tracing::info!(server = %self.name, "MCP server stopped");
        // Dropping the run kills whatever is left of the process group.
    }

    /// Stops the run `generation` if nothing used it for `idle`; `false`
    /// once that run is gone (nothing more to watch).
    async fn stop_if_idle(&self, generation: u64, idle: Duration) -> Option<Instant> {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().map(|run| run.generation) != Some(generation) {
            return None;
        }
        let due = {
            let status = lock(&self.status);
            if status.in_flight > 0 {
                Instant::now() + idle
            } else {
                status.last_used + idle
            }
        };
        if due > Instant::now() {
            return Some(due);
        }
        tracing::info!(server = %self.name, idle = %crate::duration::format(idle), "stopping an idle MCP server");
        self.stop_locked(&mut slot).await;
        None
    }

    /// Why a call on `connection` could not complete, as the caller is told:
    /// the connection closed (and, for a child, how it exited).
    pub async fn lost(
        &self,
        generation: u64,
        exit: &watch::Receiver<Option<String>>,
        error: &ServiceError,
    ) -> ToolError {
        let mut exit = exit.clone();
        let exited = tokio::time::timeout(EXIT_WAIT, exit.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|status| status.ok().and_then(|status| status.clone()));
        let why = match exited {
            Some(status) => format!("its process exited ({status})"),
            None => format!("its connection closed ({error})"),
        };
        self.failed(generation, why.clone());
        self.unavailable(why)
    }
}

impl Run {
    /// Why this run can no longer be used, if it cannot.
    fn broken(&self) -> Option<String> {
        if let Some(status) = self.exit.borrow().as_ref() {
            return Some(format!("its process exited ({status})"));
        }
        self.service
            .is_closed()
            .then(|| "its connection closed".to_owned())
    }
}

impl Connection {
    /// Sends one `tools/call`; the answer is awaited on the returned
    /// [`Pending`], whose drop before the answer (a timeout, a cancelled
    /// turn) sends `notifications/cancelled` for it.
    pub async fn send(
        &self,
        tool: &str,
        arguments: Option<serde_json::Map<String, Value>>,
    ) -> Result<Pending, ServiceError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = self
            .peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await?;
        Ok(Pending {
            cancel: CancelOnDrop {
                peer: self.peer.clone(),
                id: Some(handle.id.clone()),
            },
            handle: Some(handle),
        })
    }
}

/// A `tools/call` sent and not yet answered.
pub(crate) struct Pending {
    handle: Option<RequestHandle<RoleClient>>,
    cancel: CancelOnDrop,
}

impl Pending {
    pub async fn response(mut self) -> Result<CallToolResult, ServiceError> {
        let Some(handle) = self.handle.take() else {
            return Err(ServiceError::UnexpectedResponse);
        };
        let answer = handle.await_response().await;
        self.cancel.id = None;
        match answer? {
            ServerResult::CallToolResult(result) => Ok(result),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}

/// Tells the server a request it was sent is no longer wanted.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let peer = self.peer.clone();
        let notification = CancelledNotification::new(CancelledNotificationParam::new(
            Some(id),
            Some("the call timed out or its turn was cancelled".to_owned()),
        ));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = peer
                    .send_notification(ClientNotification::CancelledNotification(notification))
                    .await;
            });
        }
    }
}

fn mark_failed(status: &Mutex<Status>, name: &str, generation: u64, why: String) {
    let mut status = lock(status);
    if status.generation != generation || status.failed_run == Some(generation) {
        return;
    }
    status.failed_run = Some(generation);
    tracing::warn!(server = %name, why = %why, "MCP server failed");
    status.state = ServerState::Failed;
    status.failures = status.failures.saturating_add(1);
    status.failed_at = Some(Instant::now());
    status.last_error = Some(why);
}

/// The daemon's `PATH`, `HOME` and `LANG`, those that are set.
fn inherited_env() -> BTreeMap<String, String> {
    INHERITED_ENV
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect()
}

/// The streamable-HTTP transport for `url`, sending `headers` with every
/// request (reqwest with rustls, as every HTTP client of the daemon).
fn http_transport(
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<StreamableHttpClientTransport<reqwest::Client>, String> {
    let mut custom = HashMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::try_from(name.as_str())
            .map_err(|_| format!("header name {name:?} is not valid"))?;
        let value = http::HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        custom.insert(name, value);
    }
    // The only failure is "already installed", which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .build()
        .map_err(|error| format!("could not build an HTTP client: {error}"))?;
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(custom);
    Ok(StreamableHttpClientTransport::with_client(client, config))
}

/// Waits for the child to exit: says how on `exit`, and marks the run
/// failed unless the daemon was stopping it.
async fn watch_exit(
    mut process: tokio::process::Child,
    exit: watch::Sender<Option<String>>,
    stopping: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    name: String,
    generation: u64,
) {
    let how = match process.wait().await {
        Ok(code) => describe(code),
        Err(error) => format!("unknown status: {error}"),
    };
    // Said first: whoever sees the run failed can then say how it exited.
    let _ = exit.send(Some(how.clone()));
    if !stopping.load(Ordering::Relaxed) {
        mark_failed(
            &status,
            &name,
            generation,
            format!("its process exited ({how})"),
        );
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

/// Logs the child's stderr line by line under its name, each line cut at
/// [`MAX_STDERR_LINE`] bytes (the rest of a longer one is skipped). A
/// server that floods its stderr must not rotate the daemon's log away nor
/// take a core: past [`STDERR_LINES_PER_INTERVAL`] lines an interval the
/// rest are counted, one summary line per interval, and read no faster
/// than [`STDERR_THROTTLE`] a buffer (the child then waits on its pipe).
async fn log_stderr(stderr: impl AsyncRead + Unpin, name: String) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut allowance = StderrAllowance::new();
    loop {
        line.clear();
        let mut skipping = false;
        loop {
            // Only before a read from the pipe, not before each line of a
            // buffer already read.
            if allowance.spent() && reader.buffer().is_empty() {
                tokio::time::sleep(STDERR_THROTTLE).await;
            }
            let Ok(available) = reader.fill_buf().await else {
                allowance.summarize(&name);
                return;
            };
            if available.is_empty() {
                if line.is_empty() {
                    allowance.summarize(&name);
                    return;
                }
                break;
            }
            let (taken, done) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            if !skipping {
                let room = MAX_STDERR_LINE.saturating_sub(line.len());
                line.extend_from_slice(&available[..taken.min(room)]);
                skipping = line.len() >= MAX_STDERR_LINE;
            }
            reader.consume(taken);
            if done {
                break;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() && allowance.take(&name) {
            tracing::info!(server = %name, "{}", text.escape_debug());
        }
    }
}

/// Lines of one server's stderr logged one by one in each interval.
const STDERR_LINES_PER_INTERVAL: u32 = 50;
/// How long one allowance of stderr lines lasts.
const STDERR_INTERVAL: Duration = Duration::from_secs(10);
/// The pause before each read of a server's stderr once its allowance is
/// spent: at most one buffer (8 KiB) every 10 ms.
const STDERR_THROTTLE: Duration = Duration::from_millis(10);

/// One server's allowance of stderr lines in the current interval.
struct StderrAllowance {
    started: tokio::time::Instant,
    logged: u32,
    /// Lines in this interval not logged.
    counted: u64,
}

impl StderrAllowance {
    fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            logged: 0,
            counted: 0,
        }
    }

    /// Whether this line may be logged; if not, it is counted. A new
    /// interval first writes the last one's count.
    fn take(&mut self, name: &str) -> bool {
        if self.started.elapsed() >= STDERR_INTERVAL {
            self.summarize(name);
            *self = Self::new();
        }
        if self.logged < STDERR_LINES_PER_INTERVAL {
            self.logged += 1;
            return true;
        }
        self.counted += 1;
        false
    }

    /// Whether this interval's lines are all logged (and the interval not
    /// over yet): what follows is read slowly.
    fn spent(&self) -> bool {
        self.logged >= STDERR_LINES_PER_INTERVAL && self.started.elapsed() < STDERR_INTERVAL
    }

    fn summarize(&mut self, name: &str) {
        if self.counted == 0 {
            return;
        }
        tracing::warn!(
            server = %name,
            lines = self.counted,
            "the MCP server wrote more to stderr than the log takes; these lines were not logged"
        );
        self.counted = 0;
    }
}

/// Stops the run `generation` once it has been idle for `idle`.
async fn reap_when_idle(server: Weak<Server>, generation: u64, idle: Duration) {
    let mut due = Instant::now() + idle;
    loop {
        tokio::time::sleep_until(due.into()).await;
        let Some(server) = server.upgrade() else {
            return;
        };
        match server.stop_if_idle(generation, idle).await {
            Some(next) => due = next,
            None => return,
        }
    }
}

/// A poisoned lock still holds usable state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
