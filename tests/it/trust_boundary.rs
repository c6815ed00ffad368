//! The trust boundary, tried as an attacker holding the TCP token would:
//! every spelling of the control-plane routes, bodies and heads that never
//! end or never stop, keys steered to other hosts (by URL, by variable name,
//! by redirect), secrets echoed back by a model server, configuration values
//! at their limits, and a named socket that must not fall back to TCP.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::fake_provider::{FakeProvider, Reply, data, openai_chunks};
use common::in_process::InProcess;
use common::{Daemon, Env, Harness, PATIENCE, parse_response};
use serde_json::{Value, json};

/// Every way of writing the two control-plane routes that a router which
/// decodes or normalises might accept.
fn control_plane_spellings(port: u16) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (method, path) in [("POST", "/shutdown"), ("DELETE", "/agents")] {
        let word = &path[1..];
        let mut paths = vec![
            path.to_owned(),
            format!("{path}/"),
            format!("/{path}"),
            format!("{path}//"),
            format!("/.{path}"),
            format!("/./{word}"),
            format!("/x/..{path}"),
            format!("{path}/."),
            format!("{path}/./"),
            format!("/{word}%2F"),
            format!("/%2F{word}"),
            path.to_uppercase(),
            format!("http://127.0.0.1:{port}{path}"),
            format!("http://localhost:{port}/{path}"),
            format!("{path}?x=1"),
            format!("{path}#frag"),
        ];
        for (i, c) in word.char_indices() {
            for encoded in [format!("%{:02X}", c as u32), format!("%{:02x}", c as u32)] {
                paths.push(format!("/{}{encoded}{}", &word[..i], &word[i + 1..]));
            }
        }
        out.extend(paths.into_iter().map(|p| (method, p)));
    }
    out
}

#[test]
fn no_spelling_of_a_control_plane_route_acts_over_tcp() {
    let daemon = InProcess::start_tcp();
    let port = daemon.port.expect("port");
    assert_eq!(
        daemon
            .json(
                "POST",
                "/agents",
                Some(json!({"name": "keep", "provider": "echo"}))
            )
            .status,
        200
    );
    let host = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {}", daemon.token());
    let headers = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    let spellings = control_plane_spellings(port);
    let mut tried = 0;
    for (method, path) in &spellings {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let request = common::build_request(method, path, &headers, None);
        let raw = {
            let mut stream = stream;
            let _ = stream.write_all(&request);
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            raw
        };
        tried += 1;
        // hyper refuses some request lines itself (400) before we see them.
        let response = parse_response(&raw);
        assert!(
            matches!(response.status, 400 | 403 | 404 | 405),
            "{method} {path} answered {}: {}",
            response.status,
            response.text()
        );
        // Still alive, and the agent still there, after every single try.
        assert_eq!(daemon.request("GET", "/agents/keep", None).status, 200);
    }
    assert!(tried >= 60, "only {tried} spellings tried");
    // The canonical forms still work where they belong: the Unix socket.
    assert_eq!(daemon.request("DELETE", "/agents", None).status, 200);
}

#[test]
fn a_body_that_never_arrives_gets_408_and_gives_its_slot_back() {
    let env = Env::new().config("[limits]\nbody_timeout = \"1s\"\nmax_connections = 4\n");
    let daemon = InProcess::serve(env, &["--port", "0"]);
    let port = daemon.port.expect("port");
    let host = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {}", daemon.token());
    let head = format!(
        "POST /agents HTTP/1.1\r\nHost: {host}\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    // Fill every TCP slot with a body that stops after a few bytes...
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.write_all(head.as_bytes()).expect("write");
            stream
        })
        .collect();
    // ...and on the socket, one that trickles a byte at a time.
    let mut trickle = UnixStream::connect(daemon.env.socket()).expect("connect");
    trickle
        .write_all(b"POST /agents HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\n")
        .expect("write");
    for stream in &mut stalled {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .expect("answered and closed, not timed out");
        let response = parse_response(&raw);
        assert_eq!(response.status, 408, "{}", response.text());
        assert!(
            response.detail().contains("body_timeout"),
            "{}",
            response.text()
        );
        assert_eq!(response.header("connection"), Some("close"));
    }
    trickle
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    let started = std::time::Instant::now();
    // Keep trickling: the deadline is for the whole body, not each byte.
    while started.elapsed() < PATIENCE {
        if trickle.write_all(b" ").is_err() {
            break;
        }
        match trickle.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => raw.push(byte[0]),
            Err(_) => continue,
        }
    }
    let _ = trickle.read_to_end(&mut raw);
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // The slots are free again: TCP is served, not 503.
    assert_eq!(daemon.tcp_json("GET", "/health", None).status, 200);
}

#[test]
fn a_request_head_over_64_kib_gets_431_and_the_daemon_serves_on() {
    let daemon = InProcess::start_tcp();
    let port = daemon.port.expect("port");
    let host = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {}", daemon.token());
    let status = |filler: usize| {
        let big = "a".repeat(filler);
        let headers = [
            ("Host", host.as_str()),
            ("Authorization", bearer.as_str()),
            ("X-Filler", big.as_str()),
        ];
        daemon.tcp_request("GET", "/health", &headers, None).status
    };
    assert_eq!(status(60 * 1024), 200);
    assert_eq!(status(65 * 1024), 431);
    assert_eq!(status(400 * 1024), 431);
    // Many small headers add up the same way.
    let many: Vec<(String, String)> = (0..90)
        .map(|i| (format!("X-H{i}"), "b".repeat(1000)))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("Host", host.as_str()));
    headers.push(("Authorization", bearer.as_str()));
    assert_eq!(
        daemon.tcp_request("GET", "/health", &headers, None).status,
        431
    );
    assert_eq!(daemon.tcp_json("GET", "/health", None).status, 200);
}

#[test]
fn a_named_socket_nobody_answers_on_never_falls_back_to_tcp() {
    let daemon = Daemon::start_tcp(&[]);
    daemon.cli(&["spawn", "mine", "--provider", "echo"]).ok();
    let elsewhere = daemon.env.dir.path().join("forwarded.sock");
    let named = elsewhere.to_str().expect("utf-8 path");
    for args in [
        vec!["--socket", named, "list"],
        vec!["--socket", named, "serve", "--status"],
        vec!["--socket", named, "shutdown", "mine"],
    ] {
        let out = daemon.cli(&args);
        assert_eq!(out.code(), 3, "{args:?}: {}{}", out.stdout(), out.stderr());
        assert!(out.stderr().contains(named), "{args:?}: {}", out.stderr());
        assert!(!out.stdout().contains("mine"), "{args:?}: {}", out.stdout());
    }
    // The environment variable names a socket just as firmly.
    let out = daemon
        .env
        .cli_env(&[("ORCHESTRATION_SOCKET", named)], &["list"]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    // Without a name, a TCP-only daemon of this runtime dir is still found.
    std::fs::remove_file(daemon.env.socket()).expect("hide the socket");
    let out = daemon.cli(&["list"]);
    out.ok();
    assert!(out.stdout().contains("mine"), "{}", out.stdout());
}

#[test]
fn values_at_their_limits_are_clean_errors_never_panics() {
    let env = Env::new();
    let huge = "10000000000000000000";
    for flag in ["--idle-timeout", "--drain-timeout", "--echo-delay"] {
        for value in [huge, "18446744073709551615ms", "366d", "-1s"] {
            let out = env.cli(&["serve", "--no-tcp", &format!("{flag}={value}")]);
            assert_eq!(out.code(), 2, "{flag} {value}: {}", out.stderr());
            assert!(
                out.stderr().contains(flag),
                "{flag} {value}: {}",
                out.stderr()
            );
            assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
        }
    }
    for (key, value) in [
        ("limits.max_connections", "0"),
        ("limits.max_connections", "2305843009213693952"),
        ("limits.max_provider_calls", "18446744073709551615"),
        ("limits.header_timeout", huge),
        ("limits.body_timeout", "0s"),
        ("providers.idle_timeout", "9999999999h"),
        ("daemon.idle_timeout", huge),
    ] {
        let out = env.cli(&["config", "set", key, value]);
        assert_eq!(out.code(), 2, "config set {key} {value}: {}", out.stderr());
        assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    }
    // A file written by hand with such a value stops the start with its key named.
    for (section, line) in [
        ("limits", "max_connections = 0"),
        ("limits", "max_provider_calls = 2305843009213693952"),
        ("limits", "header_timeout = \"10000000000000000000\""),
        ("daemon", "idle_timeout = \"99999999999d\""),
    ] {
        let env = Env::new().config(&format!("[{section}]\n{line}\n"));
        let out = env.cli(&["serve", "--no-tcp"]);
        assert_eq!(out.code(), 1, "{line}: {}", out.stderr());
        let key = line.split(' ').next().expect("key");
        assert!(out.stderr().contains(key), "{line}: {}", out.stderr());
        assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    }
}

fn spawn_api(daemon: &impl Harness, body: Value) {
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn the_daemons_keys_go_only_to_their_own_endpoints() {
    const DAEMON_KEY: &str = "sk-daemon-only-5f2c";
    const PLANTED: &str = "planted-token-value-91";
    let fake = FakeProvider::start();
    let env = Env::new()
        .var("OPENAI_API_KEY", DAEMON_KEY)
        .var("ANTHROPIC_API_KEY", DAEMON_KEY)
        .var("PLANTED_TOKEN", PLANTED);
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let base = fake.url("/x/v1");

    // A spawn that names its own base_url gets no daemon key...
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    spawn_api(
        &daemon,
        json!({"name": "steer", "provider": "openai", "model": "m", "base_url": base}),
    );
    assert_eq!(daemon.say("steer", "hi").status, 200);
    // ...nor does one that also names a variable of the daemon's environment.
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    spawn_api(
        &daemon,
        json!({"name": "env", "provider": "openai", "model": "m", "base_url": base, "api_key_env": "PLANTED_TOKEN"}),
    );
    assert_eq!(daemon.say("env", "hi").status, 200);
    // Anthropic's header, and the models listing, follow the same rule.
    fake.push(Reply::json(200, &json!({"data": [{"id": "m"}]})));
    let models = daemon.json(
        "POST",
        "/models",
        Some(json!({"provider": "anthropic", "base_url": fake.url("")})),
    );
    assert_eq!(models.status, 200, "{}", models.text());
    fake.push(Reply::json(200, &json!({"data": [{"id": "m"}]})));
    let models = daemon.json(
        "POST",
        "/models",
        Some(json!({"provider": "openai", "base_url": base, "api_key_env": "PLANTED_TOKEN"})),
    );
    assert_eq!(models.status, 200, "{}", models.text());

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        for header in ["authorization", "x-api-key"] {
            assert_eq!(
                request.header(header),
                None,
                "{} got {header}",
                request.path
            );
        }
        let raw = format!("{:?}", request.headers);
        assert!(!raw.contains(DAEMON_KEY) && !raw.contains(PLANTED), "{raw}");
    }
}

#[test]
fn a_config_profile_binds_a_key_variable_to_its_url() {
    let fake = FakeProvider::start();
    let config = format!(
        "[profiles.work]\nbase_url = \"{}\"\napi_key_env = \"WORK_KEY\"\nmodel = \"w\"\n",
        fake.url("/v1")
    );
    // The daemon holds the key (its environment file, say); the CLI does not.
    let env = Env::new().config(&config).var("WORK_KEY", "work-secret-77");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    let out = daemon
        .env
        .cli_env(&[("WORK_KEY", "")], &["spawn", "w", "--profile", "work"]);
    out.ok();
    daemon.cli(&["message", "w", "hi"]).ok();
    assert_eq!(
        fake.last_request().header("authorization"),
        Some("Bearer work-secret-77")
    );
    // The same profile pointed elsewhere by the request loses the key.
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    let other = fake.url("/other/v1");
    spawn_api(
        &daemon,
        json!({"name": "moved", "profile": "work", "base_url": other}),
    );
    assert_eq!(daemon.say("moved", "hi").status, 200);
    assert_eq!(fake.last_request().header("authorization"), None);
}

#[test]
fn the_cli_sends_a_key_to_a_typed_base_url_only_when_told_which() {
    let fake = FakeProvider::start();
    let daemon = InProcess::start();
    let base = fake.url("/v1");
    let user_key = [
        ("OPENAI_API_KEY", "sk-user-3a9d"),
        ("ELSEWHERE_KEY", "sk-named-0b1c"),
    ];

    // A --base-url alone: the user's OpenAI key does not go there.
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    daemon
        .env
        .cli_env(
            &user_key,
            &["spawn", "a", "--model", "m", "--base-url", &base],
        )
        .ok();
    daemon.cli(&["message", "a", "hi"]).ok();
    assert_eq!(fake.last_request().header("authorization"), None);

    // Named with --api-key-env, that variable's key does.
    fake.push(Reply::sse(&openai_chunks(&["ok"])));
    daemon
        .env
        .cli_env(
            &user_key,
            &[
                "spawn",
                "b",
                "--model",
                "m",
                "--base-url",
                &base,
                "--api-key-env",
                "ELSEWHERE_KEY",
            ],
        )
        .ok();
    daemon.cli(&["message", "b", "hi"]).ok();
    assert_eq!(
        fake.last_request().header("authorization"),
        Some("Bearer sk-named-0b1c")
    );

    // A named variable that is not set is the user's mistake, said before any request.
    let out = daemon.env.cli_env(
        &user_key,
        &[
            "spawn",
            "c",
            "--base-url",
            &base,
            "--api-key-env",
            "NOT_SET_ANYWHERE_KEY",
        ],
    );
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("NOT_SET_ANYWHERE_KEY"),
        "{}",
        out.stderr()
    );

    // An endpoint that wants a key it was not sent: the error says how to name one.
    fake.push(Reply::json(
        401,
        &json!({"error": {"message": "missing api key"}}),
    ));
    let out = daemon.env.cli_env(&user_key, &["message", "a", "hi"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("--api-key-env"), "{}", out.stderr());
}

#[test]
fn a_redirect_to_another_host_carries_no_credential_there() {
    let first = FakeProvider::start();
    let second = FakeProvider::start();
    second.push(Reply::sse(&openai_chunks(&["stolen"])));
    let moved = second.url("/v1/messages");
    for _ in 0..2 {
        first.push(Reply::json(307, &json!({})).header("Location", &moved));
    }
    let daemon = InProcess::start();
    spawn_api(
        &daemon,
        json!({"name": "r", "provider": "anthropic", "base_url": first.url(""),
               "api_key": "ak-redirect-secret", "headers": {"X-Session-Token": "custom-secret-hdr"}}),
    );
    let response = daemon.say("r", "hi");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.detail().contains("redirect"),
        "{}",
        response.detail()
    );
    assert!(second.requests().is_empty(), "the second host was reached");
    // A models listing is a GET, which clients follow most readily.
    let listing = daemon.json(
        "POST",
        "/models",
        Some(json!({"provider": "anthropic", "base_url": first.url(""), "api_key": "ak-redirect-secret"})),
    );
    assert_eq!(listing.status, 502, "{}", listing.text());
    assert!(second.requests().is_empty(), "the second host was reached");
    assert_eq!(
        first.requests()[0].header("x-api-key"),
        Some("ak-redirect-secret")
    );
}

#[test]
fn a_key_echoed_by_the_model_server_is_scrubbed_everywhere() {
    const KEY: &str = "sk-ECHOED-4b8e1f0a9c";
    let fake = FakeProvider::start();
    let echo = json!({"error": {"message": format!("Incorrect API key provided: Bearer {KEY}")}});
    let env = Env::new().var("RUST_LOG", "debug");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    spawn_api(
        &daemon,
        json!({"name": "s", "provider": "openai", "model": "m", "base_url": fake.url("/v1"), "api_key": KEY}),
    );
    let mut seen = Vec::new();
    // Before the stream: a plain answer, and a streamed one.
    fake.push(Reply::json(401, &echo));
    let plain = daemon.say("s", "hi");
    assert_eq!(plain.status, 502);
    assert!(plain.detail().contains("[redacted]"), "{}", plain.detail());
    seen.push(plain.text());
    fake.push(Reply::json(401, &echo));
    let streamed = daemon.json(
        "POST",
        "/agents/s/message",
        Some(json!({"content": "hi", "stream": true})),
    );
    seen.push(streamed.text());
    // Inside a 200 stream, after some text: the partial reply goes to history.
    let chunks = openai_chunks(&["partial", "rest"]);
    fake.push(Reply::sse(&[
        chunks[0].clone(),
        chunks[1].clone(),
        data(&echo),
    ]));
    seen.push(daemon.say("s", "hi").text());
    // A retried 5xx is logged before it is returned.
    for _ in 0..3 {
        fake.push(Reply::text(503, &format!("overloaded for key {KEY}")));
    }
    seen.push(daemon.say("s", "hi").text());
    seen.push(daemon.request("GET", "/agents/s/history", None).text());
    fake.push(Reply::json(401, &echo));
    seen.push(daemon.cli(&["message", "s", "hi"]).stderr());
    seen.push(daemon.log());
    let leaks: Vec<&String> = seen.iter().filter(|text| text.contains(KEY)).collect();
    assert!(leaks.is_empty(), "the key leaked into: {leaks:?}");
    assert!(daemon.log().contains("[redacted]"), "{}", daemon.log());
    assert!(seen[1].contains("[redacted]"), "{}", seen[1]);
}
