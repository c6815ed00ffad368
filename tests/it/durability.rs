//! Nothing is lost: agents and conversations survive a clean stop, `kill -9`
//! between messages, in the middle of a streamed reply and in the middle of a
//! burst, and the next message carries the whole context. A damaged, newer
//! or unwritable store stops the start with a clear error and is left alone.

use crate::common;
use crate::common::Harness;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::fake_provider::{FakeProvider, Gate, Reply, Step, openai_chunks};
use common::{Daemon, Env, eventually, pairs, sent_turns, transcript};
use serde_json::{Value, json};

fn start(env: Env) -> Daemon {
    Daemon::start_in(env, &["--no-tcp"], None)
}

/// Kills the daemon with SIGKILL and gives its Env back for a restart.
fn crash(mut daemon: Daemon) -> Env {
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("reap");
    take_env(daemon)
}

fn stop(mut daemon: Daemon) -> Env {
    assert!(daemon.terminate().success());
    take_env(daemon)
}

fn take_env(daemon: Daemon) -> Env {
    daemon.env.clone()
}

#[test]
fn agents_come_back_after_a_stop_and_after_kill_9_with_their_whole_context() {
    let fake = FakeProvider::start();
    for reply in ["one", "two", "three", "four"] {
        fake.push(Reply::sse(&openai_chunks(&[reply])));
    }
    let daemon = start(Env::new());
    let base = fake.url("/v1");
    daemon
        .env
        .cli_env(
            &[("OPENAI_API_KEY", "sk-durable")],
            &[
                "spawn",
                "keep",
                "--base-url",
                &base,
                "--api-key-env",
                "OPENAI_API_KEY",
                "--instructions",
                "Remember.",
            ],
        )
        .ok();
    daemon.cli(&["message", "keep", "first"]).ok();
    let before = daemon.json("GET", "/agents/keep", None).json();

    // A clean stop: the agent is suspended, not ended.
    let daemon = start(stop(daemon));
    let after = daemon.json("GET", "/agents/keep", None).json();
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(after["usage"], before["usage"]);
    assert_eq!(after["state"], "idle");
    daemon.cli(&["message", "keep", "second"]).ok();

    // kill -9 between messages.
    let daemon = start(crash(daemon));
    daemon.cli(&["message", "keep", "third"]).ok();
    let sent = fake.last_request();
    // The key (the CLI's, stored with the agent) and the whole context survived.
    assert_eq!(sent.header("authorization"), Some("Bearer sk-durable"));
    assert_eq!(
        sent_turns(&sent.body),
        pairs(&[
            ("system", "Remember."),
            ("user", "first"),
            ("assistant", "one"),
            ("user", "second"),
            ("assistant", "two"),
            ("user", "third"),
        ])
    );
    assert_eq!(
        daemon.json("GET", "/agents/keep", None).json()["usage"]["input_tokens"],
        33
    );
    // The store is private.
    let store = daemon.env.dir.path().join("state/store.db");
    let mode = std::fs::metadata(&store)
        .expect("store")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn kill_9_mid_stream_keeps_the_human_message_and_the_next_call_has_it() {
    let fake = FakeProvider::start();
    let gate = Gate::new();
    let mut blocks = openai_chunks(&["partial ", "never"]);
    blocks.truncate(2);
    fake.push(Reply::sse(&blocks).insert(2, Step::Wait(gate.clone())));
    fake.push(Reply::sse(&openai_chunks(&["recovered"])));
    let daemon = start(Env::new());
    daemon.spawn_at("mid", "openai", &fake.url("/v1"));
    let stream = daemon.stream(
        "/agents/mid/message",
        &json!({"content": "tell me", "stream": true}),
    );
    let env = crash(daemon);
    gate.open();
    drop(stream);

    let daemon = start(env);
    // The human message was committed before the provider was called; the
    // unacknowledged partial reply was not.
    assert_eq!(
        transcript(&daemon.history("mid")),
        pairs(&[("human", "tell me")])
    );
    assert_eq!(
        daemon.cli(&["message", "mid", "again"]).ok().stdout(),
        "recovered\n"
    );
    assert_eq!(
        sent_turns(&fake.last_request().body),
        pairs(&[("user", "tell me"), ("user", "again")])
    );
}

/// One request that may meet a daemon killed under it: the response, or
/// `None` when the connection failed or closed before a whole head arrived.
fn try_request(socket: &std::path::Path, path: &str, body: &str) -> Option<common::HttpResponse> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(common::PATIENCE)).ok()?;
    stream
        .write_all(&common::build_request(
            "POST",
            path,
            &[("Host", "localhost")],
            Some(body),
        ))
        .ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| common::parse_response(&raw))
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_message() {
    const SENDERS: usize = 12;
    // Each reply streams for about a quarter of a second: the burst takes
    // seconds, and the kill comes once a third of it has been acknowledged.
    const BEFORE_THE_KILL: usize = 4;
    let daemon = start(Env::new().var("ORCHESTRATION_ECHO_DELAY", "30ms"));
    assert_eq!(
        daemon
            .json(
                "POST",
                "/agents",
                Some(json!({"name": "burst", "provider": "echo"}))
            )
            .status,
        200
    );
    let socket = daemon.env.socket();
    let ready = std::sync::Arc::new(std::sync::Barrier::new(SENDERS));
    let (acks, acked) = std::sync::mpsc::channel();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let (socket, acks, ready) = (socket.clone(), acks.clone(), ready.clone());
            std::thread::spawn(move || {
                let content = format!("message {i} with a few words in it");
                let body = json!({ "content": content }).to_string();
                ready.wait();
                let response = try_request(&socket, "/agents/burst/message", &body);
                // Acknowledged: a 200 whose reply is this message's own.
                if let Some(response) = &response
                    && response.status == 200
                    && serde_json::from_slice::<Value>(&response.body)
                        .is_ok_and(|reply| reply["messages"][0]["content"] == json!(content))
                {
                    let _ = acks.send(content.clone());
                }
                (content, response.map(|r| (r.status, r.text())))
            })
        })
        .collect();
    drop(acks);
    // Kill once some replies have been acknowledged; none within PATIENCE
    // fails the test rather than proving nothing.
    let mut acknowledged: Vec<String> = (0..BEFORE_THE_KILL)
        .map(|n| {
            acked
                .recv_timeout(common::PATIENCE)
                .unwrap_or_else(|e| panic!("only {n} replies acknowledged before the kill: {e}"))
        })
        .collect();
    let env = crash(daemon);
    for sender in senders {
        let (content, answer) = sender.join().expect("a sender panicked");
        // Whatever answer arrived before the kill was a good one.
        if let Some((status, text)) = answer {
            assert_eq!(status, 200, "{content}: {text}");
        }
    }
    // Acknowledged between the first few and the kill.
    acknowledged.extend(acked.try_iter());
    assert!(acknowledged.len() >= BEFORE_THE_KILL);

    let daemon = start(env);
    let history = transcript(&daemon.history("burst"));
    for content in &acknowledged {
        let at = history
            .iter()
            .position(|(sender, text)| sender == "human" && text == content)
            .unwrap_or_else(|| panic!("acknowledged {content:?} is missing: {history:?}"));
        assert_eq!(
            history.get(at + 1),
            Some(&("burst".to_owned(), content.clone())),
            "the acknowledged reply to {content:?} is missing: {history:?}"
        );
    }
    // Never two exchanges interleaved: every reply follows its own message,
    // and no message was recorded twice.
    for (i, (sender, text)) in history.iter().enumerate() {
        if sender == "burst" {
            assert!(i > 0, "{history:?}");
            assert_eq!(history[i - 1], ("human".to_owned(), text.clone()));
        }
    }
    let mut humans: Vec<&String> = history
        .iter()
        .filter(|(sender, _)| sender == "human")
        .map(|(_, text)| text)
        .collect();
    let recorded = humans.len();
    humans.sort();
    humans.dedup();
    assert_eq!(
        humans.len(),
        recorded,
        "a message recorded twice: {history:?}"
    );
    assert!(recorded <= SENDERS, "{history:?}");
    // And the agent carries on.
    daemon.cli(&["message", "burst", "still", "here"]).ok();
}

#[test]
fn list_all_clear_and_retention() {
    let env = Env::new().config("[history]\nmax_messages_per_agent = 4\n");
    let daemon = start(env);
    daemon.cli(&["spawn", "gone", "--provider", "echo"]).ok();
    daemon.cli(&["message", "gone", "bye"]).ok();
    daemon.cli(&["shutdown", "gone"]).ok();
    daemon.cli(&["spawn", "kept", "--provider", "echo"]).ok();
    for word in ["a", "b", "c"] {
        daemon.cli(&["message", "kept", word]).ok();
    }
    // Retention: only the newest 4 of kept's 6 messages stay.
    assert_eq!(
        transcript(&daemon.history("kept")),
        pairs(&[("human", "b"), ("kept", "b"), ("human", "c"), ("kept", "c")])
    );

    let daemon = start(stop(daemon));
    assert_eq!(transcript(&daemon.history("kept")).len(), 4);
    let live: Vec<Value> = daemon
        .cli(&["--json", "list"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(live.len(), 1);
    let all = daemon.cli(&["--json", "list", "--all"]).json();
    let gone = all
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "gone"))
        .expect("gone in list --all");
    assert_eq!(gone["state"], "terminated");
    assert_eq!(gone["message_count"], 2);
    assert!(
        daemon
            .cli(&["list", "--all"])
            .stdout()
            .contains("terminated")
    );

    // --clear empties a history for good, live or not.
    // (--yes: without a terminal, --clear asks for it; see first_hour.rs.)
    daemon.cli(&["history", "gone", "--clear", "--yes"]).ok();
    assert_eq!(
        daemon.cli(&["history", "gone"]).stdout(),
        "no messages for 'gone'\n"
    );
    assert_eq!(
        daemon.json("DELETE", "/agents/kept/history", None).status,
        204
    );
    assert_eq!(
        daemon.json("DELETE", "/agents/never/history", None).status,
        404
    );
    let daemon = start(stop(daemon));
    assert_eq!(
        transcript(&daemon.history("kept")),
        Vec::<(String, String)>::new()
    );
    assert_eq!(daemon.cli(&["history", "never"]).code(), 4);
}

#[test]
fn a_damaged_store_is_reported_and_left_alone() {
    let env = Env::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let garbage = b"SQLite format 3\0 but then nothing sensible at all".repeat(200);
    std::fs::write(state.join("store.db"), &garbage).expect("plant garbage");
    let out = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("store.db"), "{}", out.stderr());
    assert!(out.stderr().contains("damaged"), "{}", out.stderr());
    assert!(out.stderr().contains("move it aside"), "{}", out.stderr());
    assert_eq!(
        std::fs::read(state.join("store.db")).expect("still there"),
        garbage
    );
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let daemon = start(Env::new());
    daemon.cli(&["spawn", "x", "--provider", "echo"]).ok();
    let env = stop(daemon);
    let store = env.dir.path().join("state/store.db");
    let connection = rusqlite::Connection::open(&store).expect("open");
    connection
        .execute_batch("PRAGMA user_version = 99;")
        .expect("bump");
    drop(connection);
    let out = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("schema version 99"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("newer orchestration"),
        "{}",
        out.stderr()
    );
}

#[test]
fn an_unwritable_store_is_a_clear_error() {
    let daemon = start(Env::new());
    daemon.cli(&["spawn", "x", "--provider", "echo"]).ok();
    let env = stop(daemon);
    let store = env.dir.path().join("state/store.db");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let mut command = env.command(&["serve", "--no-tcp"]);
    if nix::unistd::geteuid().is_root() {
        // Root ignores modes: run as nobody, who then owns the tree.
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(env.dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        command.uid(65534).gid(65534);
    }
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > common::PATIENCE {
            let _ = child.kill();
            panic!("serve started on an unwritable store");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("store.db"), "{stderr}");
    assert!(stderr.contains("writable"), "{stderr}");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let daemon = start(Env::new());
    let other_runtime = daemon.env.dir.path().join("other-run");
    let out = daemon
        .env
        .command(&["serve", "--no-tcp"])
        .env("ORCHESTRATION_RUNTIME_DIR", &other_runtime)
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another daemon is using the state dir"),
        "{stderr}"
    );
    eventually("the first daemon still answers", || {
        daemon.request("GET", "/health", None).status == 200
    });
}

#[test]
fn idle_exit_does_not_wait_for_live_agents_and_they_come_back() {
    const IDLE: std::time::Duration = std::time::Duration::from_secs(2);
    let env = Env::new().var("ORCHESTRATION_ECHO_DELAY", "20ms");
    let mut daemon = Daemon::start_in(env, &["--no-tcp", "--idle-timeout", "2s"], None);
    // An open event stream is a connection: it holds the daemon up while
    // the test sets up, however slowly the machine runs.
    let holder = daemon.stream_events();
    daemon.cli(&["spawn", "sleeper", "--provider", "echo"]).ok();
    // A reply streaming for 200 × 20ms = 4s, beyond the 2s idle timeout.
    let words = vec!["word"; 200].join(" ");
    let started = std::time::Instant::now();
    let mut stream = daemon.stream(
        "/agents/sleeper/message",
        &json!({"content": words, "stream": true}),
    );
    drop(holder);
    // Past the idle timeout with only the reply's connection open: while
    // the test still holds that connection, the daemon must be there.
    let mut seen = String::new();
    while started.elapsed() < IDLE + IDLE / 2 {
        let n = std::io::BufRead::read_line(&mut stream, &mut seen).expect("read");
        assert!(n > 0, "the reply ended early: {seen}");
    }
    assert!(
        daemon.child.try_wait().expect("try_wait").is_none(),
        "exited mid-stream"
    );
    // The whole reply arrives: it was never cut off by the idle timeout.
    let rest = common::read_rest(&mut stream);
    assert!(rest.contains(r#""type":"done""#), "{rest}");
    drop(stream);
    // Then, with a live agent but no connection, it stops by itself, cleanly.
    assert!(daemon.wait_exit().success());
    assert!(daemon.log().contains("idle"), "{}", daemon.log());
    assert!(!daemon.env.socket().exists());
    let daemon = start(daemon.env.clone());
    assert_eq!(daemon.json("GET", "/agents/sleeper", None).status, 200);
    let history = transcript(&daemon.history("sleeper"));
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], ("sleeper".to_owned(), words));
}

#[test]
fn a_full_disk_is_a_507_and_loses_nothing_already_saved() {
    // No file may grow past 2 MiB (1 MiB where the shell counts 512-byte
    // blocks): the store's WAL hits that like a full disk. SIGXFSZ is
    // ignored so the write fails with an error instead of killing the daemon.
    let env = Env::new();
    let log = env.dir.path().join("full.log");
    let script = format!(
        "ulimit -f 2048; trap '' XFSZ; exec '{}' serve --no-tcp",
        common::BIN
    );
    let mut child = env
        .shell(&script)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    eventually("the daemon to answer", || {
        std::os::unix::net::UnixStream::connect(env.socket()).is_ok()
    });
    let call = |method: &str, path: &str, body: Option<Value>| {
        let stream = std::os::unix::net::UnixStream::connect(env.socket()).expect("connect");
        let body = body.map(|b| b.to_string());
        common::send(
            stream,
            &common::build_request(method, path, &[("Host", "localhost")], body.as_deref()),
        )
    };
    assert_eq!(
        call(
            "POST",
            "/agents",
            Some(json!({"name": "full", "provider": "echo"}))
        )
        .status,
        200
    );
    let big = "x".repeat(300 * 1024);
    let mut saved = Vec::new();
    let mut refusal = None;
    for i in 0..20 {
        let content = format!("{i}{big}");
        let response = call(
            "POST",
            "/agents/full/message",
            Some(json!({ "content": content })),
        );
        if response.status == 200 {
            saved.push(content);
            continue;
        }
        refusal = Some(response);
        break;
    }
    let refusal = refusal.expect("the size limit was never hit");
    assert_eq!(refusal.status, 507, "{}", refusal.text());
    assert!(
        refusal.detail().contains("cannot save"),
        "{}",
        refusal.detail()
    );
    assert!(!saved.is_empty());
    // Still serving.
    assert_eq!(call("GET", "/health", None).status, 200);
    common::signal(child.id() as i32, "TERM");
    let _ = child.wait();

    // Without the limit, everything acknowledged is there, in order.
    let daemon = start(env);
    let history = transcript(&daemon.history("full"));
    for (i, content) in saved.iter().enumerate() {
        assert_eq!(history[2 * i], ("human".to_owned(), content.clone()));
        assert_eq!(history[2 * i + 1], ("full".to_owned(), content.clone()));
    }
}
