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

use orchestration::model::{AgentConfig, AgentName, Message, ProviderSpec};
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
        .filter(|a| ["calls", "restore"].contains(a))
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
        // Unix socket only: a bench must not compete for port 7862.
        std::fs::write(dir.join("config.toml"), "[daemon]\nlisten = \"off\"\n").expect("config");
        let daemon = Self {
            dir: dir.to_owned(),
        };
        daemon.cli(&["serve", "--daemon", "--echo-delay", "0ms"]);
        daemon
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
        let pid = std::fs::read_to_string(self.dir.join("run").join("daemon.pid")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
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
        let body = r#"{"content":"hi","stream":false}"#;
        write!(
            self.writer,
            "POST /agents/{name}/message HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send request");
        let mut status = String::new();
        self.reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "answered {status:?}");
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
