//! `GET /events` and `orchestration watch`, against the real binary.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::in_process::InProcess;
use common::{Daemon, Env, Harness, PATIENCE, build_request, eventually, signal};
use serde_json::{Value, json};

/// A raw `GET /events` over the Unix socket, reading the chunked body line by line.
pub(crate) struct Subscriber {
    reader: BufReader<UnixStream>,
    headers: String,
    /// Decoded body bytes not yet returned as a line.
    pending: Vec<u8>,
}

impl Subscriber {
    pub(crate) fn open(daemon: &impl Harness, path: &str, extra: &[(&str, &str)]) -> Self {
        let mut stream = UnixStream::connect(daemon.env().socket()).expect("connect");
        let mut headers = vec![("Host", "localhost")];
        headers.extend_from_slice(extra);
        stream
            .write_all(&build_request("GET", path, &headers, None))
            .expect("write");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Self {
            reader,
            headers: head,
            pending: Vec::new(),
        }
    }

    /// The next line of the decoded body, or `None` at its end.
    pub(crate) fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(
                    String::from_utf8(line)
                        .expect("utf-8")
                        .trim_end()
                        .to_owned(),
                );
            }
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).expect("chunk");
            self.pending.extend_from_slice(&chunk[..size]);
        }
    }

    /// The next NDJSON event.
    pub(crate) fn event(&mut self) -> Option<Value> {
        self.line()
            .map(|line| serde_json::from_str(&line).expect("an event is JSON"))
    }

    /// Events until (and with) the first one `last` accepts.
    pub(crate) fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(event) = self.event() {
            let done = last(&event);
            events.push(event);
            if done {
                return events;
            }
        }
        panic!("the stream ended early: {events:?}");
    }
}

fn is(event: &Value, kind: &str, agent: &str) -> bool {
    event["type"] == kind && event["agent"] == agent
}

fn message(daemon: &impl Harness, name: &str, content: &str) {
    let reply = daemon.json(
        "POST",
        &format!("/agents/{name}/message"),
        Some(json!({"content": content})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn a_subscriber_sees_an_exchange_in_order() {
    let daemon = InProcess::start_flags(&["--echo-delay", "0ms"]);
    let mut events = Subscriber::open(&daemon, "/events", &[]);
    assert!(
        events
            .headers
            .to_lowercase()
            .contains("content-type: application/x-ndjson"),
        "{}",
        events.headers
    );
    daemon.spawn_echo("helper");
    message(&daemon, "helper", "hello there world");
    assert_eq!(daemon.request("DELETE", "/agents/helper", None).status, 204);

    let seen = events.until(|e| is(e, "shutdown", "helper"));
    let ids: Vec<u64> = seen.iter().map(|e| e["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids rise: {ids:?}");
    for event in &seen {
        assert!(event["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
    }
    // The exchange's milestones, in order.
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .filter(|kind| *kind != "state")
        .collect();
    let mut expected = vec!["spawned", "message"];
    expected.extend(std::iter::repeat_n("delta", 3));
    expected.extend(["message", "usage", "shutdown"]);
    assert_eq!(kinds, expected, "{seen:#?}");
    let deltas: String = seen
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["content"].as_str().expect("content"))
        .collect();
    assert_eq!(deltas, "hello there world");

    // The messages are exactly what history holds.
    let history = daemon.request("GET", "/agents/helper/history", None).json();
    let messages: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| &e["message"])
        .collect();
    let stored: Vec<&Value> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .collect();
    assert_eq!(messages, stored);
    assert_eq!(messages[0]["sender"], "human");
    assert!(
        seen.iter()
            .any(|e| e["type"] == "state" && e["old"] == "idle" && e["new"] == "processing")
    );
}

#[test]
fn the_agent_filter_leaves_other_agents_out() {
    let daemon = InProcess::start_flags(&["--echo-delay", "0ms"]);
    let mut events = Subscriber::open(&daemon, "/events?agent=wanted&agent=also", &[]);
    daemon.spawn_echo("other");
    message(&daemon, "other", "not for you");
    daemon.spawn_echo("wanted");
    message(&daemon, "wanted", "for you");
    assert_eq!(daemon.request("DELETE", "/agents/other", None).status, 204);
    assert_eq!(daemon.request("DELETE", "/agents/wanted", None).status, 204);
    let seen = events.until(|e| is(e, "shutdown", "wanted"));
    assert!(seen.iter().all(|e| e["agent"] == "wanted"), "{seen:#?}");
    assert!(seen.iter().any(|e| is(e, "delta", "wanted")));
    // A bad name is refused before the stream starts.
    assert_eq!(
        daemon.request("GET", "/events?agent=.bad", None).status,
        422
    );
}

#[test]
fn server_sent_events_on_request() {
    let daemon = InProcess::start_flags(&["--echo-delay", "0ms"]);
    let mut events = Subscriber::open(&daemon, "/events", &[("Accept", "text/event-stream")]);
    assert!(
        events
            .headers
            .to_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        events.headers
    );
    daemon.spawn_echo("sse");
    let id = events.line().expect("id line");
    let data = events.line().expect("data line");
    assert_eq!(
        events.line().as_deref(),
        Some(""),
        "a blank line ends an event"
    );
    let id: u64 = id
        .strip_prefix("id: ")
        .expect("id: line")
        .parse()
        .expect("numeric id");
    let event: Value =
        serde_json::from_str(data.strip_prefix("data: ").expect("data: line")).expect("JSON");
    assert_eq!(event["id"], id);
    assert_eq!(event["type"], "spawned");
    assert_eq!(event["agent"], "sse");
    assert_eq!(event["provider"], "echo");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 200 messages of 200 KB (200 words of 1 KB: 200 deltas each) flow past a
/// subscriber that reads nothing. Buffering every event for it would take
/// 200 × (200 KB prompt + 200 KB reply + 200 KB of deltas) = 120 MB, more as
/// JSON; the bounded bus keeps the ring (1024 events, about five exchanges).
#[test]
fn a_stuck_subscriber_neither_slows_agents_nor_grows_memory() {
    const MESSAGES: usize = 200;
    let env = Env::new().config("[history]\nmax_messages_per_agent = 2\n");
    let daemon = Daemon::start_in(env, &["--no-tcp", "--echo-delay", "0ms"], None);
    daemon.spawn_echo("big");
    let word = format!("{} ", "x".repeat(999));
    let prompt = word.repeat(200);
    // Warm up allocator and store before measuring.
    message(&daemon, "big", &prompt);
    let before = rss_kib(daemon.pid());

    let mut stuck = Subscriber::open(&daemon, "/events", &[]);
    for _ in 0..MESSAGES {
        message(&daemon, "big", &prompt);
    }
    let after = rss_kib(daemon.pid());
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS before {before} KiB, after {after} KiB, growth {growth_mib} MiB");
    assert!(
        growth_mib < 60,
        "RSS grew by {growth_mib} MiB with a stuck subscriber"
    );

    // Once it reads, it learns what it missed.
    let mut lagged = None;
    for _ in 0..5000 {
        let Some(event) = stuck.event() else { break };
        if event["type"] == "lagged" {
            lagged = Some(event);
            break;
        }
    }
    let lagged = lagged.expect("a lagged line");
    assert!(lagged["missed"].as_u64().expect("missed") > 0, "{lagged}");
}

#[test]
fn stopping_ends_the_stream_at_once() {
    let mut daemon = Daemon::start(&["--drain-timeout", "30s"]);
    let mut events = Subscriber::open(&daemon, "/events", &[]);
    let started = Instant::now();
    daemon.cli(&["serve", "--stop"]).ok();
    let last = events.until(|e| e["type"] == "shutdown" && e.get("agent").is_none());
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(events.line(), None, "the body ends after the shutdown");
    assert!(daemon.wait_exit().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        started.elapsed()
    );
}

#[test]
fn over_tcp_the_token_is_required() {
    let daemon = InProcess::start_tcp();
    let host = format!("127.0.0.1:{}", daemon.port.expect("port"));
    let response = daemon.tcp_request("GET", "/events", &[("Host", &host)], None);
    assert_eq!(response.status, 401);
}

/// Runs `watch ARGS` until the daemon stops, which ends it.
fn watch_until_stopped(args: &[&str], name: &str, prompt: &str) -> (String, i32) {
    let mut daemon = Daemon::start(&["--echo-delay", "0ms"]);
    let child = daemon
        .env
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    eventually("the watcher subscribed", || {
        daemon.log().contains("route=\"events\"")
    });
    daemon.spawn_echo(name);
    message(&daemon, name, prompt);
    assert_eq!(
        daemon
            .request("DELETE", &format!("/agents/{name}"), None)
            .status,
        204
    );
    daemon.cli(&["serve", "--stop"]).ok();
    assert!(daemon.wait_exit().success());
    let output = child.wait_with_output().expect("watch output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (stdout, output.status.code().unwrap_or(-1))
}

#[test]
fn watch_json_prints_the_event_lines() {
    let (stdout, _) = watch_until_stopped(&["--json", "watch"], "helper", "one two");
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["spawned", "message", "delta", "usage", "state", "shutdown"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn watch_prints_a_line_per_event() {
    let (stdout, _) = watch_until_stopped(&["watch", "helper"], "helper", "reply text here");
    assert!(stdout.contains("helper  spawned (echo)"), "{stdout}");
    assert!(stdout.contains("helper  > reply text here"), "{stdout}");
    assert!(stdout.contains("helper  < reply text here"), "{stdout}");
    assert!(stdout.contains("daemon stopping"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour off a terminal: {stdout}"
    );
}

#[test]
fn ctrl_c_ends_watch_with_status_zero() {
    let daemon = InProcess::start();
    let mut child = daemon
        .env
        .command(&["watch"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn watch");
    eventually("the watcher subscribed", || {
        daemon.log().contains("route=\"events\"")
    });
    signal(child.id() as i32, "INT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn watch_without_a_daemon_exits_3_and_starts_none() {
    let env = Env::new();
    let output = env.cli_env(&[("ORCHESTRATION_NO_AUTOSTART", "0")], &["watch"]);
    assert_eq!(output.code(), 3, "{}", output.stderr());
    assert!(
        output.stderr().contains("not running"),
        "{}",
        output.stderr()
    );
    // An auto-start waits until the daemon answers before the command goes
    // on, so had watch started one, its socket would be there by now.
    assert!(!env.socket().exists(), "watch started a daemon");
    assert!(!env.pid_file().exists(), "watch started a daemon");
}

#[test]
fn suspension_and_restoration_are_events() {
    let profile = "[profiles.work]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"WORK_KEY\"\nmodel = \"w\"\n";
    let env = Env::new().config(profile).var("WORK_KEY", "k");
    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let mut events = Subscriber::open(&daemon, "/events?agent=w", &[]);
    let spawned = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "w", "profile": "work"})),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    // The profile vanishes: the agent is suspended, saying why.
    std::fs::write(env.dir.path().join("config.toml"), "").expect("write config");
    daemon.cli(&["serve", "--reload"]).ok();
    let seen = events.until(|e| is(e, "suspended", "w"));
    let suspended = seen.last().expect("suspended");
    assert!(
        suspended["reason"].as_str().unwrap_or("").contains("work"),
        "{suspended}"
    );
    assert!(
        seen.iter()
            .any(|e| e["type"] == "state" && e["new"] == "suspended"),
        "{seen:#?}"
    );
    // It comes back: restored.
    std::fs::write(env.dir.path().join("config.toml"), profile).expect("write config");
    daemon.cli(&["serve", "--reload"]).ok();
    let seen = events.until(|e| is(e, "restored", "w"));
    assert!(
        seen.iter()
            .any(|e| e["type"] == "state" && e["old"] == "suspended" && e["new"] == "idle"),
        "{seen:#?}"
    );
}
