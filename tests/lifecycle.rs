//! The daemon's life: start, single instance, stale files, file modes,
//! graceful stop by signal, by API and by `serve --stop`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Daemon, Env, read_rest, signal};
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn files_are_private() {
    let daemon = Daemon::start_tcp(&[]);
    assert_eq!(mode(&daemon.env.runtime_dir()), 0o700);
    assert_eq!(mode(&daemon.env.dir.path().join("state")), 0o700);
    assert_eq!(mode(&daemon.env.socket()), 0o600);
    assert_eq!(mode(&daemon.env.pid_file()), 0o600);
    assert_eq!(mode(&daemon.env.token_file()), 0o600);
    let token = daemon.token();
    assert_eq!(token.len(), 64, "256 bits as hex");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    let pid: i32 = std::fs::read_to_string(daemon.env.pid_file())
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(pid, daemon.pid());
}

#[test]
fn a_fresh_token_on_every_start() {
    let mut first = Daemon::start_tcp(&[]);
    let token = first.token();
    assert!(first.terminate().success());
    let port = common::free_port();
    let env = std::mem::replace(&mut first.env, Env::new());
    let second = Daemon::start_in(env, &["--port", &port.to_string()], Some(port));
    assert_ne!(second.token(), token);
}

#[test]
fn a_second_daemon_is_refused() {
    let daemon = Daemon::start(&[]);
    let second = daemon.cli(&["serve", "--no-tcp"]);
    assert_eq!(second.code(), 1);
    assert!(
        second.stderr().contains("already running"),
        "{}",
        second.stderr()
    );
    assert!(
        second.stderr().contains(&daemon.pid().to_string()),
        "{}",
        second.stderr()
    );
    // The first one is unharmed.
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
    assert!(daemon.env.socket().exists());
}

#[test]
fn a_live_socket_of_another_daemon_is_not_stolen() {
    let daemon = Daemon::start(&[]);
    // Another runtime dir (so another PID file), but the same socket path.
    let other = Env::new();
    let socket = daemon.env.socket();
    let out = other.cli(&[
        "--socket",
        socket.to_str().expect("utf8"),
        "serve",
        "--no-tcp",
    ]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("already answering"),
        "{}",
        out.stderr()
    );
    assert_eq!(daemon.json("GET", "/health", None).status, 200);
}

#[test]
fn a_file_in_the_sockets_place_is_left_alone() {
    let env = Env::new();
    std::fs::create_dir_all(env.runtime_dir()).expect("mkdir");
    std::fs::write(env.socket(), "precious").expect("write");
    let out = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("not a socket"), "{}", out.stderr());
    assert_eq!(
        std::fs::read_to_string(env.socket()).expect("read"),
        "precious"
    );
}

#[test]
fn stale_socket_and_pid_file_from_a_killed_daemon_are_taken_over() {
    let mut daemon = Daemon::start(&[]);
    signal(daemon.pid(), "KILL");
    daemon.wait_exit();
    assert!(daemon.env.socket().exists(), "kill -9 leaves the socket");
    assert!(
        daemon.env.pid_file().exists(),
        "kill -9 leaves the PID file"
    );
    let status = daemon.cli(&["serve", "--status"]);
    assert_eq!(status.code(), 3, "{}", status.stderr());

    let env = std::mem::replace(&mut daemon.env, Env::new());
    let revived = Daemon::start_in(env, &["--no-tcp"], None);
    assert_eq!(
        revived.json("GET", "/health", None).json()["pid"],
        revived.pid()
    );
}

#[test]
fn status_and_stop() {
    let mut daemon = Daemon::start(&[]);
    let status = daemon.cli(&["serve", "--status"]);
    status.ok();
    assert!(status.stdout().contains("running"), "{}", status.stdout());
    assert!(status.stdout().contains(&daemon.pid().to_string()));
    let json = daemon.cli(&["--json", "serve", "--status"]);
    assert_eq!(json.json()["pid"], daemon.pid());

    daemon.cli(&["serve", "--stop"]).ok();
    assert!(daemon.wait_exit().success());

    let status = daemon.cli(&["serve", "--status"]);
    assert_eq!(status.code(), 3);
    assert!(
        status.stderr().contains("not running"),
        "{}",
        status.stderr()
    );
    // Stopping what is not running is not an error, as with `systemctl stop`.
    let stop = daemon.cli(&["serve", "--stop"]);
    stop.ok();
    assert!(stop.stdout().contains("not running"));
}

#[test]
fn post_shutdown_stops_the_daemon_cleanly() {
    let mut daemon = Daemon::start_tcp(&[]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "a", "provider": "echo"})),
    );
    let r = daemon.json("POST", "/shutdown", None);
    assert_eq!(r.status, 202);
    assert!(daemon.wait_exit().success());
    assert!(!daemon.env.socket().exists());
    assert!(!daemon.env.pid_file().exists());
    assert!(!daemon.env.token_file().exists());
}

#[test]
fn sigint_stops_the_daemon_cleanly() {
    let mut daemon = Daemon::start(&[]);
    signal(daemon.pid(), "INT");
    assert!(daemon.wait_exit().success());
    assert!(!daemon.env.socket().exists());
}

#[test]
fn sigterm_lets_a_short_request_finish() {
    let mut daemon = Daemon::start(&["--echo-delay", "30ms", "--drain-timeout", "20s"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "f", "provider": "echo"})),
    );
    let mut reader = daemon.stream(
        "/agents/f/message",
        &json!({"content": "a short reply of eight words in all", "stream": true}),
    );
    signal(daemon.pid(), "TERM");
    let rest = read_rest(&mut reader);
    assert!(rest.contains("{\"type\":\"done\"}"), "{rest}");
    assert!(daemon.wait_exit().success());
    assert!(!daemon.env.socket().exists());
}

#[test]
fn sigterm_cancels_a_long_request_at_the_drain_deadline() {
    let mut daemon = Daemon::start(&["--echo-delay", "100ms", "--drain-timeout", "300ms"]);
    daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "l", "provider": "echo"})),
    );
    let prompt = vec!["w"; 500].join(" ");
    let mut reader = daemon.stream(
        "/agents/l/message",
        &json!({"content": prompt, "stream": true}),
    );
    signal(daemon.pid(), "TERM");
    let rest = read_rest(&mut reader);
    assert!(rest.contains("\"type\":\"error\""), "{rest}");
    assert!(rest.contains("shut down"), "{rest}");
    assert!(daemon.wait_exit().success());
    assert!(!daemon.env.pid_file().exists());
    assert!(daemon.log().contains("cancelling"), "{}", daemon.log());
}

#[test]
fn non_loopback_listen_is_refused() {
    let env = Env::new();
    let out = env.cli(&["serve", "--listen", "0.0.0.0:7999"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("loopback"), "{}", out.stderr());
}

#[test]
fn an_explicit_port_in_use_is_an_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let env = Env::new();
    let out = env.cli(&["serve", "--port", &port]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("--no-tcp"), "{}", out.stderr());
    assert!(
        !env.socket().exists(),
        "a failed start cleans up its socket"
    );
}
