//! SPEC §4, adversarially: other users, browsers and DNS rebinding on TCP,
//! connection floods and slowloris clients, and API keys that must never
//! leak.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::fake_provider::{FakeProvider, Gate, Reply, Step, openai_chunks};
use common::in_process::InProcess;
use common::{Daemon, Env, Harness, PATIENCE, eventually, parse_response};
use serde_json::json;

/// The uid of `nobody`, the second local user the tests borrow when root.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn another_uid_is_refused_even_when_the_socket_is_opened_up() {
    if !is_root() {
        assert!(
            std::env::var("ORCHESTRATION_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
            "ORCHESTRATION_REQUIRE_SYSTEMD=1 but not root: the peer-credential test cannot run"
        );
        eprintln!(
            "SKIPPED: not root, so no second uid to test peer credentials with; run the suite as root to cover the Unix-socket rule"
        );
        return;
    }
    let daemon = Daemon::start(&[]);
    // Open every door the file system has: only the peer-credential check is left.
    for dir in [daemon.env.dir.path().to_owned(), daemon.env.runtime_dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
    }
    std::fs::set_permissions(daemon.env.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");

    // The intruder's own client refuses a daemon of another uid...
    let cautious = daemon
        .env
        .command(&["list"])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    assert_eq!(cautious.status.code(), Some(3));
    // ...so it is told to talk anyway: the daemon is what refuses it.
    let intruder = daemon
        .env
        .command(&["list"])
        .env("ORCHESTRATION_DAEMON_UID", "0")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    assert_eq!(intruder.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&intruder.stderr);
    assert!(
        stderr.contains("connections from uid 65534 are refused"),
        "{stderr}"
    );
    let shutdown = daemon
        .env
        .command(&["serve", "--stop"])
        .env("ORCHESTRATION_DAEMON_UID", "0")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    assert_ne!(shutdown.status.code(), Some(0));

    // The owner is still served (from a directory only it can write to
    // again, or its own client would refuse), and the daemon noted who knocked.
    std::fs::set_permissions(
        daemon.env.runtime_dir(),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod dir");
    daemon.cli(&["list"]).ok();
    assert!(daemon.log().contains("the peer runs as another user"));
    assert!(daemon.log().contains("peer_uid=65534"), "{}", daemon.log());
}

fn tcp(daemon: &impl Harness, headers: &[(&str, &str)], method: &str, path: &str) -> u16 {
    daemon.tcp_request(method, path, headers, None).status
}

#[test]
fn the_tcp_listener_demands_token_loopback_host_and_no_foreign_origin() {
    let daemon = InProcess::start_tcp();
    let port = daemon.port.expect("port");
    let token = daemon.token();
    let bearer = format!("Bearer {token}");
    let host = format!("127.0.0.1:{port}");
    let good = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    assert_eq!(tcp(&daemon, &good, "GET", "/health"), 200);

    // Token: missing, wrong, wrong scheme, a prefix of the real one.
    let prefix = format!("Bearer {}", &token[..32]);
    for auth in [
        None,
        Some("Bearer nope"),
        Some(token.as_str()),
        Some(prefix.as_str()),
    ] {
        let mut headers = vec![("Host", host.as_str())];
        headers.extend(auth.map(|a| ("Authorization", a)));
        assert_eq!(tcp(&daemon, &headers, "GET", "/agents"), 401, "{auth:?}");
    }
    // Host: rebinding names, an empty Host, the wrong port.
    let wrong_port = format!("localhost:{}", port.wrapping_add(1));
    let rebinding = format!("evil.example:{port}");
    let sneaky = format!("127.0.0.1.evil.example:{port}");
    for bad_host in [rebinding.as_str(), sneaky.as_str(), "", wrong_port.as_str()] {
        let headers = [("Host", bad_host), ("Authorization", bearer.as_str())];
        assert_eq!(
            tcp(&daemon, &headers, "GET", "/agents"),
            403,
            "Host {bad_host:?}"
        );
    }
    // Origin: a web page elsewhere, or an opaque one.
    for origin in ["http://evil.example", "https://attacker.test:7862", "null"] {
        let headers = [
            ("Host", host.as_str()),
            ("Authorization", bearer.as_str()),
            ("Origin", origin),
        ];
        assert_eq!(
            tcp(&daemon, &headers, "POST", "/agents"),
            403,
            "Origin {origin}"
        );
    }
    let local_origin = [
        ("Host", host.as_str()),
        ("Authorization", bearer.as_str()),
        ("Origin", "http://localhost:3000"),
    ];
    assert_eq!(tcp(&daemon, &local_origin, "GET", "/agents"), 200);
    // Control plane: refused on TCP, with a pointer to the socket.
    for (method, path) in [("POST", "/shutdown"), ("DELETE", "/agents")] {
        let response = daemon.tcp_request(method, path, &good, None);
        assert_eq!(response.status, 403);
        assert!(
            response.detail().contains("Unix socket"),
            "{}",
            response.detail()
        );
    }
    assert_eq!(daemon.request("GET", "/health", None).status, 200);
}

#[test]
fn a_non_loopback_listener_needs_allow_remote() {
    let env = Env::new();
    // Port 0: the daemon binds a free one, read back once it runs.
    let listen = "0.0.0.0:0".to_owned();
    let refused = env.cli(&["serve", "--listen", &listen]);
    assert_eq!(refused.code(), 1);
    assert!(
        refused.stderr().contains("--allow-remote"),
        "{}",
        refused.stderr()
    );

    let daemon = Daemon::start_in(env, &["--listen", &listen, "--allow-remote"], Some(0));
    let port = daemon.port.expect("port");
    assert!(
        daemon.log().contains("listening beyond loopback"),
        "{}",
        daemon.log()
    );
    let bearer = format!("Bearer {}", daemon.token());
    // An IP literal is fine (rebinding needs a name); a name other than localhost is not.
    let ip_host = format!("192.0.2.7:{port}");
    let name_host = format!("evil.example:{port}");
    let ok = [
        ("Host", ip_host.as_str()),
        ("Authorization", bearer.as_str()),
    ];
    assert_eq!(tcp(&daemon, &ok, "GET", "/health"), 200);
    let named = [
        ("Host", name_host.as_str()),
        ("Authorization", bearer.as_str()),
    ];
    assert_eq!(tcp(&daemon, &named, "GET", "/health"), 403);
    assert_eq!(
        tcp(&daemon, &[("Host", ip_host.as_str())], "GET", "/health"),
        401
    );
}

const TIGHT: &str = r#"
[limits]
header_timeout = "2s"
max_connections = 400
"#;

#[test]
fn three_hundred_slow_clients_do_not_stop_the_owner_being_served() {
    let env = Env::new().config(TIGHT);
    let daemon = Daemon::start_tcp_in(env, &[]);
    let port = daemon.port.expect("port");
    // Slowloris: each starts a request and never finishes its headers.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .expect("write");
            stream
        })
        .collect();
    // The owner, over the socket and over TCP, is answered meanwhile.
    daemon.cli(&["list"]).ok();
    let bearer = format!("Bearer {}", daemon.token());
    let host = format!("127.0.0.1:{port}");
    let headers = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    assert_eq!(tcp(&daemon, &headers, "GET", "/health"), 200);
    // And the slow ones are cut off at the header timeout.
    for stream in &mut slow {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut buf = [0u8; 256];
        // Closed (0 bytes) or told 408; a read that times out means the
        // daemon still holds the connection, which is the failure.
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(error) => panic!("a slow client was not cut off: {error}"),
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert_eq!(tcp(&daemon, &headers, "GET", "/health"), 200);
}

#[test]
fn idle_connections_are_closed_kept_alive_or_fresh() {
    let env = Env::new().config("[limits]\nheader_timeout = \"1s\"\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let mut kept = std::os::unix::net::UnixStream::connect(daemon.env.socket()).expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    kept.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut first = [0u8; 15];
    kept.read_exact(&mut first).expect("a response");
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    let mut rest = Vec::new();
    // Reads the rest of the response, then sees the daemon hang up when idle.
    kept.read_to_end(&mut rest).expect("closed, not timed out");
    let mut fresh = std::os::unix::net::UnixStream::connect(daemon.env.socket()).expect("connect");
    fresh.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut nothing = Vec::new();
    fresh
        .read_to_end(&mut nothing)
        .expect("closed, not timed out");
}

#[test]
fn past_the_connection_cap_new_connections_get_503_and_the_socket_still_works() {
    let env = Env::new().config("[limits]\nmax_connections = 5\nheader_timeout = \"30s\"\n");
    let daemon = InProcess::serve(env, &["--port", "0"]);
    let port = daemon.port.expect("port");
    let bearer = format!("Bearer {}", daemon.token());
    let host = format!("127.0.0.1:{port}");
    let headers = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    // A connection takes a slot once it has authenticated; these stay open
    // (kept alive) after their first answer.
    let held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let request =
                format!("GET /health HTTP/1.1\r\nHost: {host}\r\nAuthorization: {bearer}\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("write");
            let mut first = [0u8; 15];
            stream.read_exact(&mut first).expect("an answer");
            assert_eq!(&first, b"HTTP/1.1 200 OK");
            stream
        })
        .collect();
    eventually("the sixth TCP connection to be refused", || {
        let response = daemon.tcp_request("GET", "/health", &headers, None);
        response.status == 503 && response.detail().contains("open connections")
    });
    // The Unix socket has its own allowance.
    daemon.cli(&["list"]).ok();
    drop(held);
    eventually("TCP to serve again once the others left", || {
        daemon.tcp_request("GET", "/health", &headers, None).status == 200
    });
}

#[test]
fn provider_calls_beyond_the_cap_wait_their_turn() {
    let fake = FakeProvider::start();
    let gate = Gate::new();
    fake.push(Reply::sse(&openai_chunks(&["first"])).insert(1, Step::Wait(gate.clone())));
    fake.push(Reply::sse(&openai_chunks(&["second"])));
    let env = Env::new().config("[limits]\nmax_provider_calls = 1\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    for name in ["a", "b"] {
        daemon.spawn_at(name, "openai", &fake.url("/v1"));
    }
    let socket = daemon.env.socket();
    let first = std::thread::spawn({
        let socket = socket.clone();
        move || {
            common::send(
                std::os::unix::net::UnixStream::connect(socket).expect("connect"),
                &common::build_request(
                    "POST",
                    "/agents/a/message",
                    &[("Host", "localhost")],
                    Some(r#"{"content":"one"}"#),
                ),
            )
        }
    });
    eventually("the first call to reach the model server", || {
        fake.requests().len() == 1
    });
    let second = std::thread::spawn(move || {
        common::send(
            std::os::unix::net::UnixStream::connect(socket).expect("connect"),
            &common::build_request(
                "POST",
                "/agents/b/message",
                &[("Host", "localhost")],
                Some(r#"{"content":"two"}"#),
            ),
        )
    });
    // b's call is positively waiting for the slot (the daemon says so), so
    // it has not gone out: no window of time to watch for its absence in.
    eventually("b's call to wait for the only slot", || {
        let metrics = daemon.request("GET", "/metrics", None).text();
        metrics.contains("\norchestration_provider_calls_waiting 1\n")
    });
    assert_eq!(
        fake.requests().len(),
        1,
        "b's call went out while a's held the only slot"
    );
    gate.open();
    let (first, second) = (first.join().expect("first"), second.join().expect("second"));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(first.json()["messages"][0]["content"], "first");
    assert_eq!(second.json()["messages"][0]["content"], "second");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    // b's call reached the server only once a's reply had been released.
    let opened = gate.opened_at().expect("opened");
    assert!(
        requests[1].arrived > opened,
        "b's call arrived before a's slot was free"
    );
}

#[test]
fn a_planted_key_appears_nowhere_but_upstream() {
    const KEY: &str = "sk-PLANTED-7d1e0c93b2a54f68";
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&openai_chunks(&["fine"])));
    fake.push(Reply::json(
        401,
        &json!({"error": {"message": "Incorrect API key provided: sk-PLA***f68"}}),
    ));
    fake.push(Reply::json(200, &json!({"data": [{"id": "m"}]})));
    let env = Env::new().var("RUST_LOG", "debug");
    let daemon = Daemon::start_tcp_in(env, &[]);
    let base = fake.url("/v1");
    let with_key = [("OPENAI_API_KEY", KEY)];

    let mut seen = Vec::new();
    let mut run = |args: &[&str]| {
        let out = daemon.env.cli_env(&with_key, args);
        seen.push(out.stdout());
        seen.push(out.stderr());
    };
    run(&[
        "--json",
        "spawn",
        "k",
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
    ]);
    run(&["message", "k", "hello"]);
    run(&["message", "k", "again"]);
    run(&[
        "--json",
        "models",
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
    ]);
    run(&["--json", "list"]);
    run(&["--json", "history", "k"]);
    run(&["serve", "--status"]);
    // The same over raw HTTP, and a spawn that fails on its key variable.
    for path in ["/agents", "/agents/k", "/agents/k/history", "/health"] {
        seen.push(daemon.request("GET", path, None).text());
    }
    let failed = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "x", "provider": "openai", "api_key_env": "NOT_SET_KEY", "base_url": base})),
    );
    seen.push(failed.text());
    // While the daemon and its agent are alive: every process's command line.
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            seen.push(String::from_utf8_lossy(&cmdline).into_owned());
        }
    }
    seen.push(daemon.log());
    let hits: Vec<&String> = seen.iter().filter(|text| text.contains(KEY)).collect();
    assert!(hits.is_empty(), "the key leaked into: {hits:?}");
    // It did reach the model server, which is where it belongs.
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // The log really was at debug level, so this proves something.
    assert!(daemon.log().contains("DEBUG"), "{}", daemon.log());
}

#[test]
fn refused_connections_get_a_parseable_answer() {
    // A 503 written before the request was read must still reach the client.
    // (On TCP a connection takes a slot only once it has authenticated, so
    // the socket's cap is the one refused at accept.)
    let env = Env::new().config("[limits]\nmax_connections = 1\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let socket = daemon.env.socket();
    let _held = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    eventually("the cap to bite", || {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let _ = stream.write_all(&vec![b'x'; 100_000]);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        !raw.is_empty() && parse_response(&raw).status == 503
    });
    drop(daemon);
}

#[test]
fn files_are_private_whatever_the_umask() {
    let env = Env::new();
    let log = env.dir.path().join("umask.log");
    let serve = format!("umask 000; exec '{}' serve --port 0", common::BIN);
    let mut child = env
        .shell(&serve)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start the daemon under umask 000");
    eventually("the daemon to write its token", || {
        env.token_file().exists()
    });
    let mode = |path: std::path::PathBuf| {
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(env.runtime_dir()), 0o700);
    assert_eq!(mode(env.dir.path().join("state")), 0o700);
    assert_eq!(mode(env.socket()), 0o600);
    assert_eq!(mode(env.pid_file()), 0o600);
    assert_eq!(mode(env.token_file()), 0o600);
    common::signal(child.id() as i32, "TERM");
    assert!(child.wait().expect("wait").success());
}
