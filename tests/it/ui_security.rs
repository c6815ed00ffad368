//! The web page's security at the HTTP level, without a browser: the
//! one-time login link, the session cookie and its CSRF header, JSON-only
//! state changes, the Host and Origin checks on every page route and on the
//! event stream, no control plane with a cookie, the TCP token never taken
//! from a URL, and the hardening headers on every response. In-process,
//! over real TCP; `orchestration ui` is the real binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::common::in_process::InProcess;
use crate::common::{Harness, HttpResponse, PATIENCE, build_request, send};

/// A logged-in page: its cookie (`name=value`) and CSRF value.
struct Session {
    cookie: String,
    csrf: String,
}

fn host(daemon: &InProcess) -> String {
    format!("127.0.0.1:{}", daemon.port.expect("port"))
}

/// A fresh login token, minted over the Unix socket as `orchestration ui` does.
fn mint(daemon: &InProcess) -> String {
    let link = daemon.json("POST", "/ui/link", None);
    assert_eq!(link.status, 200, "{}", link.text());
    let url = link.json()["url"].as_str().expect("url").to_owned();
    let expected = format!("http://{}/ui/#t=", host(daemon));
    url.strip_prefix(&expected)
        .unwrap_or_else(|| panic!("{url} is not under {expected}"))
        .to_owned()
}

/// `POST /ui/login` as the page sends it.
fn login_with(daemon: &InProcess, token: &str) -> HttpResponse {
    let host = host(daemon);
    let origin = format!("http://{host}");
    daemon.tcp_request(
        "POST",
        "/ui/login",
        &[("Host", &host), ("Origin", &origin)],
        Some(&json!({ "token": token }).to_string()),
    )
}

fn login(daemon: &InProcess) -> Session {
    let answer = login_with(daemon, &mint(daemon));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let set_cookie = answer.header("set-cookie").expect("a session cookie");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    Session {
        cookie,
        csrf: answer.json()["csrf"].as_str().expect("csrf").to_owned(),
    }
}

/// A request as the page makes it: cookie, CSRF header, JSON body.
fn page(
    daemon: &InProcess,
    session: &Session,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpResponse {
    let host = host(daemon);
    let headers = [
        ("Host", host.as_str()),
        ("Cookie", session.cookie.as_str()),
        ("X-Orchestration-CSRF", session.csrf.as_str()),
    ];
    let body = body.map(|b| b.to_string());
    daemon.tcp_request(method, path, &headers, body.as_deref())
}

/// A request with exactly these headers and this raw body (no
/// Content-Type added).
fn raw(daemon: &InProcess, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let stream = TcpStream::connect(("127.0.0.1", daemon.port.expect("port"))).expect("connect");
    send(stream, request.as_bytes()).status
}

#[test]
fn a_login_token_logs_in_once_and_sets_a_strict_cookie() {
    let daemon = InProcess::start_tcp();
    let token = mint(&daemon);
    let first = login_with(&daemon, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let cookie = first.header("set-cookie").expect("Set-Cookie");
    let port = daemon.port.expect("port");
    assert!(
        cookie.starts_with(&format!("orchestration-{port}=")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(first.json()["csrf"].as_str().is_some_and(|c| c.len() >= 32));

    let second = login_with(&daemon, &token);
    assert_eq!(second.status, 401, "the token worked twice");
    assert_eq!(second.json()["code"], "unauthorized");
    assert!(second.header("set-cookie").is_none());
    for forged in ["", "nope", &token[..token.len() - 1]] {
        assert_eq!(login_with(&daemon, forged).status, 401, "{forged:?}");
    }
}

#[test]
fn a_browser_that_logs_in_again_keeps_its_session() {
    let daemon = InProcess::start_tcp();
    let first = login(&daemon);
    // A second `orchestration ui` in the same browser: the cookie comes along.
    let host = host(&daemon);
    let origin = format!("http://{host}");
    let body = json!({ "token": mint(&daemon) }).to_string();
    let again = daemon.tcp_request(
        "POST",
        "/ui/login",
        &[
            ("Host", &host),
            ("Origin", &origin),
            ("Cookie", &first.cookie),
        ],
        Some(&body),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        again.json()["csrf"],
        first.csrf.as_str(),
        "the first tab would break"
    );
    let cookie = again.header("set-cookie").expect("Set-Cookie");
    assert!(
        cookie.starts_with(&format!("{};", first.cookie)),
        "{cookie}"
    );
    assert_eq!(page(&daemon, &first, "GET", "/agents", None).status, 200);
    // Another browser (no cookie) gets a session of its own.
    let other = login(&daemon);
    assert_ne!(other.cookie, first.cookie);
    assert_ne!(other.csrf, first.csrf);
}

#[test]
fn login_links_come_only_from_the_unix_socket() {
    let daemon = InProcess::start_tcp();
    let session = login(&daemon);
    assert_eq!(daemon.tcp_json("POST", "/ui/link", None).status, 403);
    assert_eq!(
        page(&daemon, &session, "POST", "/ui/link", Some(json!({}))).status,
        403
    );
    // A daemon without TCP has no page to link to, and says so.
    let no_tcp = InProcess::start();
    let answer = no_tcp.json("POST", "/ui/link", None);
    assert_eq!(answer.status, 403);
    assert!(answer.detail().contains("--no-tcp"), "{}", answer.detail());
}

#[test]
fn page_requests_need_a_live_session_cookie_and_its_csrf_header() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    let session = login(&daemon);
    assert_eq!(page(&daemon, &session, "GET", "/agents", None).status, 200);

    // No cookie, a made-up one, another port's.
    let port = daemon.port.expect("port");
    let made_up = format!("orchestration-{port}=0123456789abcdef");
    let other_port =
        session
            .cookie
            .replacen(&port.to_string(), &port.wrapping_add(1).to_string(), 1);
    for cookie in [None, Some(made_up.as_str()), Some(other_port.as_str())] {
        let mut headers = vec![
            ("Host", host.as_str()),
            ("X-Orchestration-CSRF", &session.csrf),
        ];
        headers.extend(cookie.map(|c| ("Cookie", c)));
        let answer = daemon.tcp_request("GET", "/agents", &headers, None);
        assert_eq!(answer.status, 401, "{cookie:?}");
    }
    // The cookie without the CSRF header, or with a wrong one.
    for csrf in [None, Some(""), Some("0123"), Some(&session.cookie[..])] {
        let mut headers = vec![("Host", host.as_str()), ("Cookie", &session.cookie)];
        headers.extend(csrf.map(|c| ("X-Orchestration-CSRF", c)));
        let answer = daemon.tcp_request("GET", "/agents", &headers, None);
        assert_eq!(answer.status, 403, "{csrf:?}");
        let spawn = json!({"name": "x", "provider": "echo"}).to_string();
        let answer = daemon.tcp_request("POST", "/agents", &headers, Some(&spawn));
        assert_eq!(answer.status, 403, "{csrf:?}");
    }
    assert_eq!(daemon.json("GET", "/agents", None).json(), json!([]));

    // After logout the cookie is stale.
    let out = page(&daemon, &session, "POST", "/ui/logout", Some(json!({})));
    assert_eq!(out.status, 204, "{}", out.text());
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let stale = page(&daemon, &session, "GET", "/agents", None);
    assert_eq!(stale.status, 401);
    assert_eq!(stale.json()["code"], "unauthorized");
}

#[test]
fn state_changes_from_the_page_must_be_json() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    let session = login(&daemon);
    let spawn = json!({"name": "plain", "provider": "echo"}).to_string();
    let base = [
        ("Host", host.as_str()),
        ("Cookie", session.cookie.as_str()),
        ("X-Orchestration-CSRF", session.csrf.as_str()),
    ];
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut headers = base.to_vec();
        headers.extend(content_type.map(|c| ("Content-Type", c)));
        let status = raw(&daemon, "POST", "/agents", &headers, &spawn);
        assert_eq!(status, 403, "{content_type:?}");
    }
    // Nor may a login arrive as a simple request.
    let token = json!({"token": mint(&daemon)}).to_string();
    let plain = [("Host", host.as_str()), ("Content-Type", "text/plain")];
    assert_eq!(raw(&daemon, "POST", "/ui/login", &plain, &token), 403);
    assert_eq!(daemon.json("GET", "/agents", None).json(), json!([]));

    let mut headers = base.to_vec();
    headers.push(("Content-Type", "application/json; charset=utf-8"));
    assert_eq!(raw(&daemon, "POST", "/agents", &headers, &spawn), 200);
}

#[test]
fn every_page_route_checks_host_and_origin() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    let session = login(&daemon);
    let port = daemon.port.expect("port");
    let rebinding = format!("evil.example:{port}");
    let other_local = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    let own = format!("http://{host}");
    let bodies = [
        ("GET", "/ui/", None),
        ("GET", "/ui/app.js", None),
        ("POST", "/ui/login", Some(json!({"token": "x"}).to_string())),
        ("GET", "/agents", None),
        ("GET", "/events", None),
        ("POST", "/ui/logout", Some("{}".to_owned())),
    ];
    for (method, path, body) in &bodies {
        let cookie = ("Cookie", session.cookie.as_str());
        let csrf = ("X-Orchestration-CSRF", session.csrf.as_str());
        let cases: [(&str, Option<&str>); 4] = [
            (&rebinding, None),
            (&host, Some("http://evil.example")),
            (&host, Some(&other_local)),
            (&host, Some("null")),
        ];
        for (host_header, origin) in cases {
            let mut headers = vec![("Host", host_header), cookie, csrf];
            headers.extend(origin.map(|o| ("Origin", o)));
            let answer = daemon.tcp_request(method, path, &headers, body.as_deref());
            assert_eq!(
                answer.status, 403,
                "{method} {path} Host {host_header} Origin {origin:?}"
            );
        }
        // The page's own origin passes the check (what follows is the route's).
        let headers = [
            ("Host", host.as_str()),
            ("Origin", own.as_str()),
            cookie,
            csrf,
        ];
        if *path != "/events" && *path != "/ui/logout" {
            let answer = daemon.tcp_request(method, path, &headers, body.as_deref());
            assert_ne!(answer.status, 403, "{method} {path}: {}", answer.text());
        }
    }
    // The event stream opens for the page itself.
    let mut events = open_tcp(&daemon, "/events", &session);
    let mut line = String::new();
    events.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}

/// Opens a streamed GET as the page and returns it at its status line.
fn open_tcp(daemon: &InProcess, path: &str, session: &Session) -> BufReader<TcpStream> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", daemon.port.expect("port"))).expect("connect");
    let host = host(daemon);
    let request = build_request(
        "GET",
        path,
        &[
            ("Host", &host),
            ("Cookie", &session.cookie),
            ("X-Orchestration-CSRF", &session.csrf),
        ],
        None,
    );
    stream.write_all(&request).expect("write");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    BufReader::new(stream)
}

#[test]
fn the_page_never_reaches_the_control_plane_nor_what_it_does_not_need() {
    let daemon = InProcess::start_tcp();
    let session = login(&daemon);
    daemon.spawn_echo("keep");
    for (method, path) in [
        ("POST", "/shutdown"),
        ("DELETE", "/agents"),
        ("POST", "/reload"),
        ("POST", "/prune"),
        ("POST", "/ui/link"),
        ("POST", "/models"),
        ("POST", "/agents/t/task"),
        ("DELETE", "/agents/keep/history"),
    ] {
        let answer = page(
            &daemon,
            &session,
            method,
            path,
            Some(json!({"older_than": "0s"})),
        );
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text());
        assert_eq!(answer.json()["code"], "forbidden");
    }
    // The daemon kept serving, and the agent and its history are there.
    assert_eq!(page(&daemon, &session, "GET", "/health", None).status, 200);
    assert_eq!(daemon.json("GET", "/agents/keep", None).status, 200);
    assert!(!daemon.finished());
}

#[test]
fn the_tcp_token_is_never_taken_from_a_url() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    let token = daemon.token();
    for path in [
        format!("/agents?token={token}"),
        format!("/agents?access_token={token}"),
        format!("/events?token={token}"),
        format!("/health?t={token}"),
    ] {
        let answer = daemon.tcp_request("GET", &path, &[("Host", &host)], None);
        assert_eq!(answer.status, 401, "{path}");
    }
    // Nor is it in anything the page is made of.
    for file in ["/ui/", "/ui/app.js", "/ui/api.js"] {
        let answer = daemon.tcp_request("GET", file, &[("Host", &host)], None);
        assert_eq!(answer.status, 200, "{file}");
        assert!(!answer.text().contains(&token), "{file}");
    }
}

#[test]
fn every_response_carries_the_hardening_headers() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    let session = login(&daemon);
    let mut answers = vec![];
    for path in [
        "/ui/",
        "/ui",
        "/ui/index.html",
        "/ui/app.js",
        "/ui/style.css",
        "/ui/nope.js",
    ] {
        answers.push((
            path,
            daemon.tcp_request("GET", path, &[("Host", &host)], None),
        ));
    }
    answers.push(("login 401", login_with(&daemon, "x")));
    answers.push(("login 200", login_with(&daemon, &mint(&daemon))));
    answers.push((
        "no cookie",
        daemon.tcp_request("GET", "/agents", &[("Host", &host)], None),
    ));
    answers.push(("agents", page(&daemon, &session, "GET", "/agents", None)));
    answers.push((
        "rebinding",
        daemon.tcp_request("GET", "/ui/", &[("Host", "evil.example")], None),
    ));
    for (what, answer) in &answers {
        let csp = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{what}: no CSP"));
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{what}: {csp}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
    }
    let script = &answers[3].1;
    assert!(
        script
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript"))
    );
    assert_eq!(answers[5].1.status, 404);
}

#[test]
fn unauthenticated_page_requests_stay_out_of_the_log() {
    let daemon = InProcess::start_tcp();
    let host = host(&daemon);
    for path in ["/ui/", "/ui/app.js", "/ui/no-such-file.js"] {
        daemon.tcp_request("GET", path, &[("Host", &host)], None);
    }
    login_with(&daemon, "not-a-token");
    let session = login(&daemon);
    assert_eq!(page(&daemon, &session, "GET", "/agents", None).status, 200);
    let log = daemon.log();
    for logged_only_when_authenticated in ["route=\"ui_file\"", "route=\"ui_login\"", "not-a-token"]
    {
        assert!(!log.contains(logged_only_when_authenticated), "{log}");
    }
    // The page's own requests are logged like any client's.
    assert!(log.contains("route=\"list\""), "{log}");
}

#[test]
fn the_page_s_own_routes_work_with_a_session() {
    let daemon = InProcess::start_tcp();
    let session = login(&daemon);
    let spawned = page(
        &daemon,
        &session,
        "POST",
        "/agents",
        Some(json!({"name": "web", "provider": "echo"})),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    let reply = page(
        &daemon,
        &session,
        "POST",
        "/agents/web/message",
        Some(json!({"content": "hello from the page", "stream": true})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let lines = reply.lines();
    assert!(lines.iter().any(|l| l["type"] == "delta"), "{lines:?}");
    assert_eq!(lines.last().expect("a line")["type"], "done");
    let found = page(&daemon, &session, "GET", "/search?q=hello", None);
    assert_eq!(found.json()["results"].as_array().map(Vec::len), Some(2));
    // The usage page reads the ledger and the budgets.
    let usage = page(&daemon, &session, "GET", "/usage?by=agent", None);
    assert_eq!(usage.status, 200, "{}", usage.text());
    assert_eq!(usage.json()["total"]["calls"], 1, "{}", usage.text());
    let gone = page(&daemon, &session, "DELETE", "/agents/web", Some(json!({})));
    assert_eq!(gone.status, 204, "{}", gone.text());
}

#[test]
fn orchestration_ui_prints_a_link_or_opens_it_without_the_token_on_a_command_line() {
    let daemon = InProcess::start_tcp();
    let printed = daemon.cli(&["ui", "--print-url"]);
    printed.ok();
    let url = printed.stdout().trim().to_owned();
    let token = url.split_once("#t=").expect("a token in the fragment").1;
    assert_eq!(login_with(&daemon, token).status, 200);
    assert_eq!(login_with(&daemon, token).status, 401);

    // A stand-in for xdg-open that records what it was given.
    let bin = daemon.env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let opened = daemon.env.dir.path().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n",
            opened.display()
        ),
    )
    .expect("write opener");
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    daemon.env.cli_env(&[("PATH", &path)], &["ui"]).ok();
    let argument = std::fs::read_to_string(&opened).expect("the opener ran");
    assert!(
        !argument.contains("#t="),
        "the token is on a command line: {argument}"
    );
    let page_file = std::path::PathBuf::from(argument.trim());
    let mode = std::fs::metadata(&page_file)
        .expect("the page file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", page_file.display());
    let html = std::fs::read_to_string(&page_file).expect("read the page file");
    let token = html
        .split_once("#t=")
        .and_then(|(_, rest)| rest.split('"').next())
        .expect("the link in the page file");
    assert_eq!(login_with(&daemon, token).status, 200);

    // The bearer token is nowhere in what the browser gets.
    assert!(!html.contains(&daemon.token()));
}
