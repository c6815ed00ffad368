//! Performance benchmark (issue #13): what one CLI call costs next to the
//! binary's own start-up, what an idle daemon holds in memory, and how many
//! messages it acknowledges per second. Runs the real binary against a
//! daemon in a temporary directory (Unix socket only, `echo` provider with no
//! delay, 10 agents) and prints one table; it asserts nothing about time.
//!
//! - `--version`, `list` and `message a hi`: median wall time of each, the
//!   three interleaved round by round so that noise hits them alike, and the
//!   ratios `list ÷ --version` and `message ÷ --version`;
//! - idle daemon RSS: `VmRSS` of `/proc/PID/status` (Linux only);
//! - acknowledged messages/s: `POST /agents/NAME/message` (not streamed)
//!   answered 200, with 1 connection and with 32 concurrent keep-alive
//!   connections spread over the 10 agents, raw HTTP/1.1 over the socket;
//! - restore: a store generated through the store's own write path (110
//!   agents with 20,000 messages of about 4 KiB, and 10,000 agents × 100
//!   short messages), then `serve --daemon` timed until it serves (median
//!   of a few starts) and the daemon's RSS once it does.
//! - bounds: peak RSS above idle (`VmHWM` after resetting it through
//!   `/proc/PID/clear_refs`) while a model server streams a reply without
//!   end (cut at the 4 MiB `limits.max_reply_bytes`), while a 1 MB prompt
//!   fans out to 64 echo agents (streamed), and while an `/events` reader
//!   that reads nothing sits through 1 MB messages; RSS after the fan-out
//!   against before; and the time to send a 1 MB message into a
//!   conversation of 100 × 1 MB messages against one of 2.
//!
//! `cargo bench --bench perf` runs the full set (a few minutes, most of it
//! generating the large stores). Under `cargo test --all-targets` (no
//! `--bench` argument) it runs a few iterations on tiny stores, as a smoke
//! test that keeps it from rotting.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestration::model::{AgentConfig, AgentName, Message, ProviderSpec, Workspace};
use orchestration::store::{Store, Write as StoreWrite};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_orchestration");
const AGENTS: usize = 10;
const CONNECTIONS: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    // `cargo bench --bench perf -- calls` (or `restore`) runs one part.
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["calls", "restore", "bounds"].contains(a))
        .collect();
    let runs = |part: &str| parts.is_empty() || parts.contains(&part);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    if runs("calls") {
        rows.extend(calls(dir.path(), full));
    }
    if runs("restore") {
        for shape in [small_store(full), large_store(full)] {
            let restore = Restore::measure(&dir.path().join(shape.agents.to_string()), shape, full);
            rows.push((restore.label("start to serving"), ms(restore.start)));
            rows.push((restore.label("RSS after restore"), mib(restore.rss)));
        }
    }
    if runs("bounds") {
        rows.extend(bounds(&dir.path().join("bounds"), full));
    }
    let mode = if full {
        ""
    } else {
        " (smoke run: figures are rough)"
    };
    println!("orchestration perf{mode}: {AGENTS} echo agents, Unix socket");
    println!("| what | median |");
    println!("|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}

/// What a CLI call costs, the idle daemon's RSS, and messages per second.
fn calls(dir: &Path, full: bool) -> Vec<(String, String)> {
    let (rounds, throughput_rounds, window) = if full {
        (40, 5, Duration::from_secs(1))
    } else {
        (3, 1, Duration::from_millis(100))
    };
    let daemon = Daemon::start(dir);
    for name in agent_names() {
        daemon.cli(&["spawn", &name, "--provider", "echo"]);
    }

    // One call of each first: page cache, the agents' first exchange.
    for args in CALLS {
        daemon.cli(args);
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CALLS.len()];
    for _ in 0..rounds {
        for (args, samples) in CALLS.iter().zip(&mut samples) {
            let started = Instant::now();
            daemon.cli(args);
            samples.push(started.elapsed());
        }
    }
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();

    std::thread::sleep(Duration::from_millis(200));
    let rss = daemon.rss_kib();

    // Round by round, 1 then 32 connections, so that drift (the agents'
    // conversations grow as the bench runs) and noise hit both alike.
    let (mut singles, mut manys) = (Vec::new(), Vec::new());
    for _ in 0..throughput_rounds {
        singles.push(daemon.throughput(1, window));
        manys.push(daemon.throughput(CONNECTIONS, window));
    }
    let single = median_rate(singles);
    let many = median_rate(manys);

    let ratio = |a: Duration, b: Duration| format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64());
    [
        ("`--version`", ms(medians[0])),
        ("`list` (10 agents)", ms(medians[1])),
        ("`message a hi` (echo, no delay)", ms(medians[2])),
        ("`list` ÷ `--version`", ratio(medians[1], medians[0])),
        ("`message` ÷ `--version`", ratio(medians[2], medians[0])),
        ("idle daemon RSS", mib(rss)),
        ("messages/s, 1 connection", format!("{single:.0}")),
        ("messages/s, 32 connections", format!("{many:.0}")),
        ("32 ÷ 1 connections", format!("{:.2}×", many / single)),
    ]
    .map(|(what, value)| (what.to_owned(), value))
    .to_vec()
}

/// What the byte limits hold: peak RSS under a runaway reply, a large
/// fan-out and a stalled event reader, and the cost of a long history.
fn bounds(dir: &Path, full: bool) -> Vec<(String, String)> {
    let (big, fan_out, stalled_messages, history) = if full {
        (1_000_000, 64, 50, 50)
    } else {
        (20_000, 4, 3, 3)
    };
    let mut rows = Vec::new();
    let mb = |bytes: usize| format!("{:.0} MB", bytes as f64 / 1e6);
    let mut rss = |what: String, kib: Option<u64>| rows.push((what, mib(kib)));

    // A reply without end, from a real HTTP server on 127.0.0.1.
    let runaway = Endless::start();
    let daemon = Daemon::start_in(&dir.join("runaway"), "");
    daemon.cli(&[
        "spawn",
        "runaway",
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        &runaway.url(),
    ]);
    let idle = daemon.rss_kib();
    daemon.reset_peak();
    let answered =
        Connection::open(&daemon.socket()).post("/agents/runaway/message", &json_message("go"));
    assert!(
        answered.starts_with("HTTP/1.1 503"),
        "answered {answered:?}"
    );
    rss(
        "runaway reply (cut at 4 MiB): peak RSS above idle".into(),
        diff(daemon.peak_kib(), idle),
    );
    drop(daemon);

    // One prompt to many echo agents at once, streamed back.
    let daemon = Daemon::start_in(&dir.join("fan-out"), "");
    let names: Vec<String> = (0..fan_out).map(|i| format!("f{i}")).collect();
    for name in &names {
        daemon.cli(&["spawn", name, "--provider", "echo"]);
    }
    let request = serde_json::json!({"agents": names, "content": "f".repeat(big), "stream": true});
    let start = daemon.rss_kib();
    // Once first, so the figures are of a daemon that has done it before
    // (its store's page caches filled).
    Connection::open(&daemon.socket()).post("/messages", &request.to_string());
    std::thread::sleep(Duration::from_secs(1));
    let before = daemon.rss_kib();
    daemon.reset_peak();
    Connection::open(&daemon.socket()).post("/messages", &request.to_string());
    let peak = daemon.peak_kib();
    std::thread::sleep(Duration::from_secs(1));
    let after = daemon.rss_kib();
    rss(
        format!(
            "fan-out {} × {fan_out} agents: peak RSS above before",
            mb(big)
        ),
        diff(peak, before),
    );
    rss(
        format!("fan-out {} × {fan_out} agents: RSS at start", mb(big)),
        start,
    );
    rss(
        format!(
            "fan-out {} × {fan_out} agents: RSS after a first one",
            mb(big)
        ),
        before,
    );
    rss(
        format!("fan-out {} × {fan_out} agents: RSS 1 s after", mb(big)),
        after,
    );
    drop(daemon);

    // An event reader that never reads, while large messages flow.
    let daemon = Daemon::start_in(
        &dir.join("stalled"),
        "[history]\nmax_messages_per_agent = 4\n",
    );
    daemon.cli(&["spawn", "s", "--provider", "echo"]);
    let mut sender = Connection::open(&daemon.socket());
    sender.post("/agents/s/message", &json_message("warm up"));
    let idle = daemon.rss_kib();
    daemon.reset_peak();
    let stalled = daemon.stalled_reader();
    let prompt = json_message(&"s".repeat(big));
    for _ in 0..stalled_messages {
        sender.post("/agents/s/message", &prompt);
    }
    rss(
        format!(
            "stalled /events reader, {stalled_messages} × {} messages: peak RSS above idle",
            mb(big)
        ),
        diff(daemon.peak_kib(), idle),
    );
    drop(stalled);
    drop(daemon);

    // The time a message takes as the conversation grows.
    let daemon = Daemon::start_in(&dir.join("history"), "");
    let prompt = json_message(&"h".repeat(big));
    let mut short = Vec::new();
    for i in 0..5 {
        let name = format!("short{i}");
        daemon.cli(&["spawn", &name, "--provider", "echo"]);
        let mut connection = Connection::open(&daemon.socket());
        let path = format!("/agents/{name}/message");
        connection.post(&path, &prompt);
        let started = Instant::now();
        connection.post(&path, &prompt);
        short.push(started.elapsed());
    }
    daemon.cli(&["spawn", "long", "--provider", "echo"]);
    let mut connection = Connection::open(&daemon.socket());
    for _ in 0..history {
        connection.post("/agents/long/message", &prompt);
    }
    let mut long = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        connection.post("/agents/long/message", &prompt);
        long.push(started.elapsed());
    }
    let (short, long) = (median(short), median(long));
    let n = 2 * history;
    rows.push((
        format!("send {} into 2 × {} history", mb(big), mb(big)),
        ms(short),
    ));
    rows.push((
        format!("send {} into {n} × {} history", mb(big), mb(big)),
        ms(long),
    ));
    rows.push((
        format!("{n}-message ÷ 2-message send"),
        format!("{:.2}×", long.as_secs_f64() / short.as_secs_f64()),
    ));
    rows
}

fn json_message(content: &str) -> String {
    serde_json::json!({"content": content, "stream": false}).to_string()
}

fn diff(after: Option<u64>, before: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// A model server that answers every request with an OpenAI event stream
/// that never ends (64 KiB of text an event), until the client hangs up.
struct Endless {
    port: u16,
}

impl Endless {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || Self::serve(stream));
            }
        });
        Self { port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn serve(stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let event = format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": "x".repeat(64 * 1024)}}]})
        );
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        let mut stream = stream;
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        while stream.write_all(chunk.as_bytes()).is_ok() {}
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    )
}

/// The shape of a generated store: live `echo` agents, each with the same
/// number of messages of about `bytes` bytes.
#[derive(Clone, Copy)]
struct Shape {
    agents: usize,
    messages_each: usize,
    bytes: usize,
}

/// 110 agents, 20,000 messages, about 80 MB of text (the issue's case).
fn small_store(full: bool) -> Shape {
    if full {
        Shape {
            agents: 110,
            messages_each: 182,
            bytes: 4000,
        }
    } else {
        Shape {
            agents: 3,
            messages_each: 4,
            bytes: 400,
        }
    }
}

/// 10,000 agents × 100 messages: a million messages.
fn large_store(full: bool) -> Shape {
    if full {
        Shape {
            agents: 10_000,
            messages_each: 100,
            bytes: 60,
        }
    } else {
        Shape {
            agents: 20,
            messages_each: 2,
            bytes: 60,
        }
    }
}

/// A daemon's start on a generated store.
struct Restore {
    shape: Shape,
    /// Median `serve --daemon` until it serves.
    start: Duration,
    rss: Option<u64>,
}

impl Restore {
    fn measure(dir: &Path, shape: Shape, full: bool) -> Self {
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("state dir mode");
        generate(&state, shape);
        let mut starts = Vec::new();
        let mut rss = None;
        for _ in 0..if full { 5 } else { 1 } {
            let started = Instant::now();
            let daemon = Daemon::start(dir);
            starts.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(200));
            rss = daemon.rss_kib();
        }
        Self {
            shape,
            start: median(starts),
            rss,
        }
    }

    fn label(&self, what: &str) -> String {
        let Shape {
            agents,
            messages_each,
            bytes,
        } = self.shape;
        let text = (agents * messages_each * bytes) as f64 / 1e6;
        format!("restore {agents} agents × {messages_each} messages ({text:.0} MB text): {what}")
    }
}

/// Fills `state/store.db` through the store's own write path (many writes
/// to a transaction), with text varied enough to index like prose.
fn generate(state: &Path, shape: Shape) {
    const WORDS: [&str; 16] = [
        "agent", "daemon", "socket", "reply", "model", "token", "stream", "history", "store",
        "commit", "context", "prompt", "search", "durable", "quick", "brown",
    ];
    let store = Store::open(state).expect("open the store");
    let spec = ProviderSpec {
        provider: Some("echo".into()),
        ..ProviderSpec::default()
    };
    let ids: Vec<Uuid> = (0..shape.agents).map(|_| Uuid::new_v4()).collect();
    let spawns = ids.iter().enumerate().map(|(i, id)| {
        let config = AgentConfig {
            name: AgentName::parse(&format!("agent{i}")).expect("name"),
            agent_type: "api".into(),
            instructions: None,
            provider: spec.clone(),
            workspace: Workspace::default(),
            budget: None,
        };
        StoreWrite::add_agent(*id, &config, "2026-01-01T00:00:00Z").expect("agent")
    });
    store.write_all(spawns).expect("agents");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut text = move || {
        let mut out = String::with_capacity(shape.bytes + 16);
        while out.len() < shape.bytes {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
            out.push(' ');
        }
        out
    };
    let writes = ids.iter().enumerate().flat_map(|(i, id)| {
        let sender = format!("agent{i}");
        (0..shape.messages_each)
            .map(|m| {
                let from = if m % 2 == 0 { "human" } else { &sender };
                let message = Message::new(from, text(), serde_json::Map::new());
                StoreWrite::add_message(*id, &message, None, 0).expect("message")
            })
            .collect::<Vec<_>>()
    });
    store.write_all(writes).expect("messages");
}

const CALLS: [&[&str]; 3] = [&["--version"], &["list"], &["message", "a", "hi"]];

fn agent_names() -> Vec<String> {
    (0..AGENTS)
        .map(|i| match i {
            0 => "a".to_owned(),
            i => format!("agent{i}"),
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn median_rate(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A daemon in `dir`, stopped when dropped (also when the bench panics).
struct Daemon {
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        Self::start_in(dir, "")
    }

    /// A daemon in `dir` with `config` after the `[daemon]` table.
    fn start_in(dir: &Path, config: &str) -> Self {
        std::fs::create_dir_all(dir).expect("dir");
        // Unix socket only: a bench must not compete for port 7862.
        let config = format!("[daemon]\nlisten = \"off\"\n{config}");
        std::fs::write(dir.join("config.toml"), config).expect("config");
        let daemon = Self {
            dir: dir.to_owned(),
        };
        daemon.cli(&["serve", "--daemon", "--echo-delay", "0ms"]);
        daemon
    }

    fn pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(self.dir.join("run").join("daemon.pid")).ok()?;
        Some(pid.trim().to_owned())
    }

    /// Resets the daemon's peak RSS (`VmHWM`) to its current RSS.
    fn reset_peak(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// The daemon's peak RSS in KiB since the last [`reset_peak`](Self::reset_peak).
    fn peak_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// A `GET /events` connection that is never read.
    fn stalled_reader(&self) -> UnixStream {
        let mut stream = UnixStream::connect(self.socket()).expect("connect");
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("request");
        // Answered once the subscription is in place.
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).expect("status line");
        stream
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join("daemon.sock")
    }

    fn cli(&self, args: &[&str]) {
        let path = |name: &str| self.dir.join(name);
        let status = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("ORCHESTRATION_RUNTIME_DIR", path("run"))
            .env("ORCHESTRATION_STATE_DIR", path("state"))
            .env("ORCHESTRATION_CONFIG", path("config.toml"))
            .env("HOME", path("home"))
            .env("ORCHESTRATION_NO_AUTOSTART", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run orchestration");
        assert!(status.success(), "orchestration {args:?} failed");
    }

    /// The daemon's resident set in KiB, where `/proc` tells it.
    fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Messages acknowledged per second over `connections` keep-alive
    /// connections, each sending one message after another for `window`.
    fn throughput(&self, connections: usize, window: Duration) -> f64 {
        let names = agent_names();
        let started = Instant::now();
        let acknowledged: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..connections)
                .map(|i| {
                    let name = &names[i % names.len()];
                    let socket = self.socket();
                    scope.spawn(move || {
                        let mut connection = Connection::open(&socket);
                        let mut done = 0;
                        while started.elapsed() < window {
                            connection.message(name);
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        acknowledged as f64 / started.elapsed().as_secs_f64()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cli(&["serve", "--stop"]);
    }
}

/// One keep-alive HTTP/1.1 connection to the daemon's socket.
struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    fn open(socket: &Path) -> Self {
        let writer = UnixStream::connect(socket).expect("connect to the daemon");
        let reader = BufReader::new(writer.try_clone().expect("clone socket"));
        Self { reader, writer }
    }

    /// Sends `hi` to `name` (not streamed) and reads the whole answer,
    /// which must be 200.
    fn message(&mut self, name: &str) {
        let status = self.post(
            &format!("/agents/{name}/message"),
            r#"{"content":"hi","stream":false}"#,
        );
        assert!(status.starts_with("HTTP/1.1 200"), "answered {status:?}");
    }

    /// POSTs `body` to `path` and reads the whole answer; returns its status line.
    fn post(&mut self, path: &str, body: &str) -> String {
        write!(
            self.writer,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send request");
        let mut status = String::new();
        self.reader.read_line(&mut status).expect("status line");
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).expect("header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("header line");
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("content-length"));
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        if chunked {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).expect("chunk size");
                let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
                self.skip(size + 2);
                if size == 0 {
                    break;
                }
            }
        } else {
            self.skip(length.expect("a length or chunks"));
        }
        status
    }

    fn skip(&mut self, bytes: usize) {
        let copied = std::io::copy(
            &mut (&mut self.reader).take(bytes as u64),
            &mut std::io::sink(),
        )
        .expect("read body");
        assert_eq!(copied, bytes as u64, "body cut short");
    }
}
