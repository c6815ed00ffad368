//! Error codes on the wire: every error body, every `error` stream line and
//! every failed fan-out result carries a `code` beside its `detail`, the
//! connection refusals too, and README's table of codes lists each code
//! with the status it comes with.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};

use crate::common::fake_provider::{FakeProvider, Reply};
use crate::common::in_process::InProcess;
use crate::common::{CLOSED_PORT, Env, Harness, HttpResponse, build_request, send};
use orchestration::wire::ErrorCode;

/// Checks that `response` is the error `code` with `status` and a
/// sentence, and records the pair for the README check.
#[track_caller]
fn expect(seen: &mut Seen, response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    expect_body(seen, &body, status, code);
}

#[track_caller]
fn expect_body(seen: &mut Seen, body: &Value, status: u16, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "no detail: {body}");
    seen.insert(code.to_owned(), status);
}

type Seen = BTreeMap<String, u16>;

/// README's table of codes: each row's code and status.
fn readme_codes() -> Seen {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("### Error codes")
        .expect("README has an `### Error codes` section");
    readme[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.get(2)?.parse().ok()?;
            Some((code.to_owned(), status))
        })
        .collect()
}

#[test]
fn every_error_answer_carries_its_code() {
    let mut seen = Seen::new();
    let fake = FakeProvider::start();
    let env = Env::new().config("[providers]\nmax_retries = 0\n");
    let daemon = InProcess::start_in(env, true);
    daemon.spawn_echo("a");

    // Agents and names.
    let missing = daemon.json("GET", "/agents/nobody", None);
    expect(&mut seen, &missing, 404, "not_found");
    let spawn = |body: Value| daemon.json("POST", "/agents", Some(body));
    expect(
        &mut seen,
        &spawn(json!({"name": "a", "provider": "echo"})),
        409,
        "name_taken",
    );
    expect(
        &mut seen,
        &daemon.json("GET", "/agents/%2Ehidden", None),
        422,
        "invalid_name",
    );

    // Bodies and queries.
    expect(
        &mut seen,
        &spawn(json!({"provider": "echo"})),
        422,
        "invalid_body",
    );
    expect(
        &mut seen,
        &daemon.request("POST", "/agents", Some("{not json")),
        422,
        "invalid_body",
    );
    expect(
        &mut seen,
        &daemon.json("GET", "/agents?state=sleepy", None),
        422,
        "invalid_query",
    );
    expect(
        &mut seen,
        &daemon.json("GET", "/search?q=x&since=whenever", None),
        422,
        "invalid_query",
    );
    expect(
        &mut seen,
        &daemon.json("GET", "/search?q=%22unbalanced", None),
        400,
        "invalid_search",
    );
    let huge = format!(
        "{{\"name\":\"h\",\"instructions\":\"{}\"}}",
        "x".repeat(1 << 21)
    );
    expect(
        &mut seen,
        &daemon.request("POST", "/agents", Some(&huge)),
        413,
        "too_large",
    );

    // Paths and methods.
    expect(
        &mut seen,
        &daemon.json("POST", "//shutdown", None),
        400,
        "bad_path",
    );
    expect(
        &mut seen,
        &daemon.json("GET", "/nothing", None),
        404,
        "no_route",
    );
    let put = daemon.json("PUT", "/agents", None);
    expect(&mut seen, &put, 405, "method_not_allowed");
    assert!(put.header("allow").is_some());

    // The TCP data plane.
    expect(
        &mut seen,
        &daemon.tcp_request(
            "GET",
            "/health",
            &[("Host", &format!("127.0.0.1:{}", daemon.port.expect("port")))],
            None,
        ),
        401,
        "unauthorized",
    );
    expect(
        &mut seen,
        &daemon.tcp_json("POST", "/shutdown", None),
        403,
        "forbidden",
    );

    // Setting a provider up.
    expect(
        &mut seen,
        &spawn(json!({"name": "k", "profile": "openrouter"})),
        400,
        "missing_key",
    );
    expect(
        &mut seen,
        &spawn(json!({"name": "p", "provider": "nope"})),
        400,
        "unknown_provider",
    );
    expect(
        &mut seen,
        &spawn(json!({"name": "p", "profile": "nope"})),
        400,
        "unknown_profile",
    );
    expect(
        &mut seen,
        &spawn(json!({"name": "l", "profile": "local"})),
        400,
        "no_model",
    );
    expect(
        &mut seen,
        &spawn(
            json!({"name": "u", "provider": "openai", "model": "m", "api_key": "k", "base_url": "ftp://x"}),
        ),
        400,
        "invalid_base_url",
    );

    // The model server: refusing connections, then answering with an error.
    let spawned = spawn(
        json!({"name": "off", "provider": "openai", "model": "m", "api_key": "k", "base_url": format!("http://127.0.0.1:{CLOSED_PORT}/v1")}),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    expect(
        &mut seen,
        &daemon.json(
            "POST",
            "/agents/off/message",
            Some(json!({"content": "hi"})),
        ),
        502,
        "upstream_unreachable",
    );
    let spawned = spawn(
        json!({"name": "up", "provider": "openai", "model": "m", "api_key": "k", "base_url": fake.url("/v1")}),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    fake.push(Reply::json(500, &json!({"error": {"message": "boom"}})));
    expect(
        &mut seen,
        &daemon.json("POST", "/agents/up/message", Some(json!({"content": "hi"}))),
        502,
        "upstream_status",
    );

    // A streamed reply ends with an error line that has its code.
    fake.push(Reply::json(500, &json!({"error": {"message": "boom"}})));
    let streamed = daemon.json(
        "POST",
        "/agents/up/message",
        Some(json!({"content": "hi", "stream": true})),
    );
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    let lines = streamed.lines();
    let last = lines.last().expect("a line");
    assert_eq!(last["type"], "error", "{lines:?}");
    expect_body(&mut seen, last, 502, "upstream_status");

    // A fan-out: each agent's failure carries its code, whole or streamed.
    let fan_out = daemon.json(
        "POST",
        "/messages",
        Some(json!({"agents": ["a", "ghost"], "content": "hi"})),
    );
    assert_eq!(fan_out.status, 200, "{}", fan_out.text());
    expect_body(&mut seen, &fan_out.json()["ghost"], 404, "not_found");
    let fan_out = daemon.json(
        "POST",
        "/messages",
        Some(json!({"agents": ["a", "ghost"], "content": "hi", "stream": true})),
    );
    let ghost = fan_out
        .lines()
        .into_iter()
        .find(|line| line["agent"] == "ghost")
        .expect("a line about ghost");
    assert_eq!(ghost["type"], "error");
    expect_body(&mut seen, &ghost, 404, "not_found");

    // A reload whose config file does not parse.
    std::fs::write(daemon.env.dir.path().join("config.toml"), "[limits\n").expect("write");
    expect(
        &mut seen,
        &daemon.json("POST", "/reload", None),
        422,
        "reload_failed",
    );

    check_against_readme(&seen);
}

#[test]
fn a_connection_over_the_cap_is_refused_with_a_code() {
    let env = Env::new().config("[limits]\nmax_connections = 1\n");
    let daemon = InProcess::start_in(env, false);
    // The first connection is admitted (its answer shows it) and kept open.
    let mut held = UnixStream::connect(daemon.env.socket()).expect("connect");
    held.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut reader = std::io::BufReader::new(held.try_clone().expect("clone"));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("read");
    assert!(status_line.contains("200"), "{status_line}");

    let stream = UnixStream::connect(daemon.env.socket()).expect("connect");
    let refused = send(
        stream,
        &build_request("GET", "/health", &[("Host", "localhost")], None),
    );
    let mut seen = Seen::new();
    expect(&mut seen, &refused, 503, "too_many_connections");
    check_against_readme(&seen);
    drop(held);
}

/// Every code seen is in README's table with the status it came with, and
/// every code in the table is one this crate knows.
fn check_against_readme(seen: &Seen) {
    let documented = readme_codes();
    for (code, status) in seen {
        assert_eq!(
            documented.get(code),
            Some(status),
            "README's table of error codes lacks `{code}` with status {status}"
        );
    }
    for code in documented.keys() {
        let parsed: ErrorCode =
            serde_json::from_value(Value::String(code.clone())).expect("a code parses");
        assert_ne!(
            parsed,
            ErrorCode::Other,
            "README documents unknown code `{code}`"
        );
    }
}
