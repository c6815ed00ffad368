//! Issue-21 hardening: what another user or a careless client cannot take
//! from the daemon (its log, its connection slots, its disk), and the
//! promises the store and the MCP server keep.

use crate::common;

use common::in_process::InProcess;
use common::{Daemon, Env, Harness};
use serde_json::json;

/// RFC 7235 §2.1: the authentication scheme is case-insensitive.
#[test]
fn the_bearer_scheme_is_matched_whatever_its_case() {
    let daemon = InProcess::start_tcp();
    let host = format!("127.0.0.1:{}", daemon.port.expect("port"));
    let token = daemon.token();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {token}");
        let headers = [("Host", host.as_str()), ("Authorization", auth.as_str())];
        let response = daemon.tcp_request("GET", "/health", &headers, None);
        assert_eq!(response.status, 200, "{scheme}: {}", response.text());
    }
    let basic = format!("Basic {token}");
    let headers = [("Host", host.as_str()), ("Authorization", basic.as_str())];
    assert_eq!(
        daemon.tcp_request("GET", "/health", &headers, None).status,
        401
    );
}

/// The bytes `store.db` and its write-ahead log take, by `stat`.
fn store_bytes(env: &Env) -> u64 {
    let state = env.dir.path().join("state");
    ["store.db", "store.db-wal"]
        .iter()
        .map(|name| std::fs::metadata(state.join(name)).map_or(0, |m| m.len()))
        .sum()
}

/// Pruning gives the pruned pages back to the file system: the file shrinks
/// by (nearly) what the pruned messages took, not by one page.
#[test]
fn prune_shrinks_the_store_file_by_what_it_deleted() {
    const AGENTS: usize = 20;
    const TURNS: usize = 3;
    const SIZE: usize = 27_000;
    let env = Env::new();
    let mut daemon = InProcess::serve(env.clone(), &["--no-tcp", "--echo-delay", "0s"]);
    // One word, so the echo agent answers it in one piece.
    let content = "x".repeat(SIZE);
    for agent in 0..AGENTS {
        let name = format!("old{agent}");
        daemon.spawn_echo(&name);
        for _ in 0..TURNS {
            let sent = daemon.json(
                "POST",
                &format!("/agents/{name}/message"),
                Some(json!({ "content": content })),
            );
            assert_eq!(sent.status, 200, "{}", sent.text());
        }
        assert_eq!(
            daemon
                .request("DELETE", &format!("/agents/{name}"), None)
                .status,
            204
        );
    }
    daemon.spawn_echo("live");
    // A clean stop folds the write-ahead log into the file: what is left is
    // the file itself.
    daemon.stop().expect("stop");
    drop(daemon);
    let before = store_bytes(&env);

    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let pruned = daemon.json("POST", "/prune", Some(json!({ "older_than": "0s" })));
    assert_eq!(pruned.status, 200, "{}", pruned.text());
    assert_eq!(
        pruned.json()["conversations"].as_array().map(Vec::len),
        Some(AGENTS),
        "{}",
        pruned.text()
    );
    let after = store_bytes(&env);
    eprintln!("store: {before} bytes before the prune, {after} after");
    // Every message and its reply, at least, were freed.
    let freed = (AGENTS * TURNS * 2 * SIZE) as u64;
    assert!(
        after + freed * 8 / 10 <= before,
        "the store went from {before} to {after} bytes after pruning {freed} bytes of messages"
    );
}

/// A start after an unclean stop says how large the write-ahead log it
/// replays was: SQLite drops frames after a damaged one without a word.
#[test]
fn a_start_after_kill_9_logs_the_size_of_the_write_ahead_log() {
    let env = Env::new();
    let mut daemon = Daemon::start_in(env.clone(), &["--no-tcp", "--echo-delay", "0s"], None);
    daemon.spawn_echo("a");
    let sent = daemon.json(
        "POST",
        "/agents/a/message",
        Some(json!({ "content": "kept across a crash" })),
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("reap");
    let wal = env.dir.path().join("state/store.db-wal");
    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(size > 0, "kill -9 left no write-ahead log to replay");
    drop(daemon);

    let daemon = Daemon::start_in(env.clone(), &["--no-tcp"], None);
    let log = daemon.log();
    assert!(
        log.contains("not closed cleanly") && log.contains(&format!("wal_bytes={size}")),
        "{log}"
    );
    // And the message is there.
    let history = daemon.request("GET", "/agents/a/history", None);
    assert!(
        history.text().contains("kept across a crash"),
        "{}",
        history.text()
    );
}

/// A clean stop leaves no log to replay, and no warning at the next start.
#[test]
fn a_start_after_a_clean_stop_warns_of_nothing() {
    let env = Env::new();
    let mut daemon = Daemon::start_in(env.clone(), &["--no-tcp"], None);
    daemon.spawn_echo("a");
    assert!(daemon.terminate().success());
    drop(daemon);
    let daemon = Daemon::start_in(env, &["--no-tcp"], None);
    assert!(
        !daemon.log().contains("not closed cleanly"),
        "{}",
        daemon.log()
    );
}

/// `orchestration mcp` with its standard input and output as pipes.
struct McpSession {
    child: std::process::Child,
    /// The server's lines, read on a thread of their own so that a
    /// message it never answers fails the test instead of hanging it.
    output: std::sync::mpsc::Receiver<String>,
}

impl McpSession {
    fn start(env: &Env) -> Self {
        let mut child = env
            .command(&["--no-autostart", "mcp"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start orchestration mcp");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, output }
    }

    fn send(&mut self, line: &[u8]) {
        use std::io::Write;
        let input = self.child.stdin.as_mut().expect("stdin");
        input.write_all(line).expect("write to the server");
        input.write_all(b"\n").expect("write to the server");
        input.flush().expect("flush");
    }

    /// The next message the server writes.
    fn answer(&mut self) -> serde_json::Value {
        let line = self
            .output
            .recv_timeout(common::PATIENCE)
            .expect("an answer from the MCP server");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

impl Drop for McpSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Malformed JSON is answered with a parse error, and a line too long to
/// read with an error for its id; neither is dropped, and the session goes on.
#[test]
fn mcp_answers_malformed_and_over_long_lines_and_goes_on() {
    let env = Env::new();
    let mut session = McpSession::start(&env);
    session.send(b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ");
    let parse_error = session.answer();
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");

    session.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}})
        .to_string()
        .as_bytes(),
    );
    let initialized = session.answer();
    assert_eq!(initialized["id"], 2, "{initialized}");
    assert!(
        initialized["result"]["serverInfo"].is_object(),
        "{initialized}"
    );
    session.send(br#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#);

    session.send(b"not json at all");
    assert_eq!(session.answer()["error"]["code"], -32700);

    // 5 MiB of content: over the limit, so refused, but for its id.
    let huge = json!({"jsonrpc": "2.0", "id": "big-1", "method": "tools/call", "params": {
        "name": "send_message",
        "arguments": {"agent": "a", "content": "x".repeat(5 * 1024 * 1024)}}});
    session.send(huge.to_string().as_bytes());
    let too_long = session.answer();
    assert_eq!(too_long["id"], "big-1", "{too_long}");
    assert_eq!(too_long["error"]["code"], -32600, "{too_long}");
    assert!(
        too_long["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longest accepted")),
        "{too_long}"
    );

    session.send(br#"{"jsonrpc": "2.0", "id": 3, "method": "tools/list"}"#);
    let listed = session.answer();
    assert_eq!(listed["id"], 3, "{listed}");
    assert!(listed["result"]["tools"].is_array(), "{listed}");
}

/// A flood of unauthenticated requests with long paths costs the log a few
/// lines and a count, never the paths themselves.
#[test]
fn unauthenticated_requests_are_logged_briefly_and_counted() {
    const REQUESTS: usize = 300;
    let mut daemon = InProcess::start_tcp();
    let host = format!("127.0.0.1:{}", daemon.port.expect("port"));
    let path = format!("/{}", "a".repeat(16_000));
    let before = daemon.log().len();
    for _ in 0..REQUESTS {
        let response = daemon.tcp_request("GET", &path, &[("Host", host.as_str())], None);
        assert_eq!(response.status, 401);
    }
    daemon.stop().expect("stop");
    let log = daemon.log();
    let grown = log.len() - before;
    // A request line apiece would be 300 × 16 KB; a few short lines remain.
    assert!(grown < 8 * 1024, "the log grew {grown} bytes:\n{log}");
    assert!(!log.contains(&"a".repeat(100)), "a path was logged whole");
    assert!(log.contains("request refused: not authenticated"), "{log}");
    assert!(log.contains("counted only"), "{log}");
}

/// A daemonized log is rotated by size while the daemon runs, keeping the
/// configured number of old files.
#[test]
fn the_daemon_log_is_rotated_by_size_while_running() {
    const MAX: u64 = 64 * 1024;
    let env = Env::new().config(&format!(
        "[daemon]\nlisten = \"off\"\n[logging]\nmax_size = {MAX}\nkeep = 2\n"
    ));
    let _guard = common::Background { env: env.clone() };
    env.cli(&["serve", "--daemon"]).ok();
    let state = env.dir.path().join("state");
    let size = |name: &str| std::fs::metadata(state.join(name)).ok().map(|m| m.len());
    // Each request is a line in the log; go on until it has been rotated
    // more often than the files kept.
    let daemon = common::Background { env: env.clone() };
    let mut requests = 0;
    while size("daemon.log.2").is_none() || requests < 3000 {
        assert_eq!(unix_health(&env), 200);
        requests += 1;
        assert!(requests < 100_000, "the log was never rotated");
    }
    assert!(daemon.alive());
    // One line may pass the size before the rotation that follows it.
    for name in ["daemon.log", "daemon.log.1", "daemon.log.2"] {
        let bytes = size(name).unwrap_or_else(|| panic!("{name} is missing"));
        assert!(bytes <= MAX + 4096, "{name} is {bytes} bytes");
    }
    assert_eq!(size("daemon.log.3"), None, "more files kept than asked");
    // The daemon goes on logging into the fresh file.
    env.cli(&["serve", "--stop"]).ok();
    let log = std::fs::read_to_string(state.join("daemon.log")).expect("log");
    assert!(log.contains("stopped"), "{log}");
}

/// One `GET /health` over the Unix socket; its status.
fn unix_health(env: &Env) -> u16 {
    let stream = std::os::unix::net::UnixStream::connect(env.socket()).expect("connect");
    common::send(
        stream,
        &common::build_request("GET", "/health", &[("Host", "localhost")], None),
    )
    .status
}

/// Opens `GET /events` over the Unix socket with extra headers; the reader
/// once the response head has been read, or the refusal's status.
fn open_events_with(
    env: &Env,
    headers: &[(&str, &str)],
) -> Result<std::io::BufReader<std::os::unix::net::UnixStream>, u16> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(env.socket()).expect("connect");
    let mut all = vec![("Host", "localhost")];
    all.extend_from_slice(headers);
    stream
        .write_all(&common::build_request("GET", "/events", &all, None))
        .expect("write");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    let mut reader = std::io::BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        assert!(reader.read_line(&mut line).expect("head") > 0);
    }
    if code == 200 { Ok(reader) } else { Err(code) }
}

/// The next chunk of a chunked response body.
fn next_chunk(reader: &mut std::io::BufReader<std::os::unix::net::UnixStream>) -> String {
    use std::io::{BufRead, Read};
    let mut size = String::new();
    reader.read_line(&mut size).expect("chunk size");
    let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
    let mut chunk = vec![0u8; size + 2];
    reader.read_exact(&mut chunk).expect("chunk");
    chunk.truncate(size);
    String::from_utf8(chunk).expect("UTF-8")
}

/// Event streams have a cap of their own, below the connection cap, so
/// idle watchers cannot lock the owner's commands out; a quiet stream gets
/// keep-alives, and one whose reader vanished is noticed and its place freed.
#[test]
fn event_streams_have_their_own_cap_and_keep_alives() {
    let env = Env::new().config(
        "[limits]\nmax_connections = 8\nmax_event_streams = 2\nevents_keepalive = \"200ms\"\n",
    );
    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let mut ndjson = open_events_with(&env, &[]).expect("the first stream");
    let mut sse =
        open_events_with(&env, &[("Accept", "text/event-stream")]).expect("the second stream");
    // The third is refused with a reason, and the owner's commands still run.
    let refused = daemon.request("GET", "/events", None);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.detail().contains("max_event_streams"),
        "{}",
        refused.text()
    );
    daemon.cli(&["list"]).ok();

    // Nothing happens, so each stream gets its keep-alive line.
    assert_eq!(next_chunk(&mut ndjson), "\n");
    assert_eq!(next_chunk(&mut sse), ":\n\n");
    // A reader that goes away is noticed at the next keep-alive.
    drop(ndjson);
    common::eventually("the vanished reader's place to be free", || {
        open_events_with(&env, &[]).is_ok()
    });
    // Events still come through between keep-alives.
    daemon.spawn_echo("a");
    let mut seen = String::new();
    while !seen.contains("spawned") {
        seen.push_str(&next_chunk(&mut sse));
    }
}

/// Connections without the token have a small allowance of their own and a
/// short time to authenticate: a crowd of them (slow headers, or nothing
/// at all) never keeps a client with the token out.
#[test]
fn unauthenticated_connections_never_keep_an_authenticated_client_out() {
    use std::io::{Read, Write};
    let env = Env::new().config(
        "[limits]\nmax_connections = 4\nmax_unauthenticated = 8\nheader_timeout = \"30s\"\nunauthenticated_timeout = \"1s\"\n",
    );
    let daemon = InProcess::serve(env, &["--port", "0"]);
    let port = daemon.port.expect("port");
    let slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .expect("write");
            stream
        })
        .collect();
    // Far more than max_connections wait, and the owner is served at once.
    assert_eq!(daemon.tcp_json("GET", "/health", None).status, 200);
    // The silent ones are closed: the oldest to make room, the rest once
    // their time to authenticate has passed.
    for mut stream in slow {
        stream
            .set_read_timeout(Some(common::PATIENCE))
            .expect("timeout");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an unauthenticated connection was kept: {other:?}"),
        }
    }
    assert_eq!(daemon.tcp_json("GET", "/health", None).status, 200);
}
