//! The daemon's life: start, single instance, stale files, file modes,
//! graceful stop by signal, by API and by `serve --stop`.

use crate::common;
use crate::common::Harness;

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
    let env = std::mem::replace(&mut first.env, Env::new());
    let second = Daemon::start_tcp_in(env, &[]);
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

#[test]
fn a_taken_default_port_leaves_the_daemon_on_the_unix_socket() {
    // Whoever holds 127.0.0.1:7862 -- this test, or something else on the
    // machine -- the default port is taken while the daemon starts.
    let holder = std::net::TcpListener::bind("127.0.0.1:7862");
    if let Err(error) = &holder {
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
    }
    // No --port, --listen, --no-tcp or daemon.listen: the default.
    let daemon = Daemon::start_in(Env::new(), &[], None);
    let log = daemon.log();
    assert!(
        log.contains("WARN") && log.contains("serving on the Unix socket only"),
        "{log}"
    );
    assert!(!daemon.env.token_file().exists(), "no TCP, so no token");
    assert!(log.contains("tcp=off"), "{log}");
    daemon.cli(&["spawn", "u", "--provider", "echo"]).ok();
    assert_eq!(
        daemon.cli(&["message", "u", "still here"]).ok().stdout(),
        "still here\n"
    );
    drop(holder);
}

/// A daemon run with only PATH and `vars` in its environment: none of the
/// harness's ORCHESTRATION_* overrides, so the defaults decide.
struct Bare {
    child: std::process::Child,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
    vars: Vec<(String, std::path::PathBuf)>,
}

impl Bare {
    fn command(vars: &[(String, std::path::PathBuf)], args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(common::BIN);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("ORCHESTRATION_NO_AUTOSTART", "1")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        command
    }

    /// Starts `serve --no-tcp` and waits until `socket`, where the defaults
    /// should put it, answers.
    fn start(
        root: &std::path::Path,
        vars: &[(&str, &std::path::Path)],
        socket: std::path::PathBuf,
    ) -> Self {
        let vars: Vec<(String, std::path::PathBuf)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_path_buf()))
            .collect();
        let log = root.join("bare.log");
        let child = Self::command(&vars, &["serve", "--no-tcp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("serve");
        let mut bare = Self {
            child,
            socket,
            log,
            vars,
        };
        common::eventually("the daemon to answer at the default socket", || {
            if let Ok(Some(status)) = bare.child.try_wait() {
                panic!("the daemon exited with {status}:\n{}", bare.log());
            }
            std::os::unix::net::UnixStream::connect(&bare.socket).is_ok()
        });
        bare
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> common::HttpResponse {
        let stream = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        let body = body.map(|b| b.to_string());
        common::send(
            stream,
            &common::build_request(method, path, &[("Host", "localhost")], body.as_deref()),
        )
    }

    /// Checks that the daemon loaded `config` (which keeps 2 messages per
    /// agent) and that the CLI, given the same environment, finds it.
    fn uses(&self, config: &std::path::Path) {
        let health = self.call("GET", "/health", None).json();
        assert_eq!(
            health["config"]["path"],
            config.display().to_string(),
            "{health}"
        );
        let spawned = self.call(
            "POST",
            "/agents",
            Some(json!({"name": "d", "provider": "echo"})),
        );
        assert_eq!(spawned.status, 200, "{}", spawned.text());
        for word in ["one", "two"] {
            let r = self.call("POST", "/agents/d/message", Some(json!({"content": word})));
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let history = self.call("GET", "/agents/d/history", None).json();
        assert_eq!(
            common::transcript(&history),
            common::pairs(&[("human", "two"), ("d", "two")]),
            "the daemon did not apply {}",
            config.display()
        );
        let list = common::CliOutput(Self::command(&self.vars, &["list"]).output().expect("list"));
        assert!(list.ok().stdout().contains("d "), "{}", list.stdout());
    }

    fn stop(mut self) {
        signal(self.child.id() as i32, "TERM");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{}", self.log());
                break;
            }
            assert!(
                started.elapsed() < common::PATIENCE,
                "no exit:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!self.socket.exists(), "the socket is removed at exit");
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KEEP_TWO: &str = "[history]\nmax_messages_per_agent = 2\n";

fn write_config(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().expect("dir")).expect("config dir");
    std::fs::write(path, KEEP_TWO).expect("config");
}

/// A runtime dir as a login session makes it: ours, 0700.
fn login_runtime_dir(path: &std::path::Path) {
    std::fs::create_dir_all(path).expect("runtime dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

#[test]
fn without_overrides_the_files_follow_the_xdg_variables() {
    let env = Env::new();
    let root = env.dir.path();
    let (run, state, config, home) = (
        root.join("xdg-run"),
        root.join("xdg-state"),
        root.join("xdg-config"),
        root.join("home"),
    );
    login_runtime_dir(&run);
    write_config(&config.join("orchestration/config.toml"));
    let daemon = Bare::start(
        root,
        &[
            ("XDG_RUNTIME_DIR", &run),
            ("XDG_STATE_HOME", &state),
            ("XDG_CONFIG_HOME", &config),
            ("HOME", &home),
        ],
        run.join("orchestration/daemon.sock"),
    );
    assert_eq!(mode(&run.join("orchestration")), 0o700);
    assert_eq!(mode(&run.join("orchestration/daemon.sock")), 0o600);
    assert!(run.join("orchestration/daemon.pid").exists());
    assert_eq!(mode(&state.join("orchestration")), 0o700);
    assert_eq!(mode(&state.join("orchestration/store.db")), 0o600);
    daemon.uses(&config.join("orchestration/config.toml"));
    // The XDG variables win over HOME: nothing was made there.
    assert!(!home.exists(), "something was written under HOME");
    daemon.stop();
}

#[test]
fn with_only_home_the_files_go_under_home() {
    let env = Env::new();
    let root = env.dir.path();
    let home = root.join("home");
    write_config(&home.join(".config/orchestration/config.toml"));
    let mut vars: Vec<(&str, &std::path::Path)> = vec![("HOME", &home)];
    // Without XDG_RUNTIME_DIR the runtime dir is /run/user/$UID when that is
    // a login session's, else ~/.orchestration. Where the machine has the
    // former, this test must not use it: the runtime dir is then given.
    let uid = nix::unistd::geteuid().as_raw();
    let session = std::path::PathBuf::from(format!("/run/user/{uid}"));
    let given_runtime = root.join("xdg-run");
    let session_is_ours = std::fs::symlink_metadata(&session).is_ok_and(|meta| {
        use std::os::unix::fs::MetadataExt;
        meta.is_dir() && meta.uid() == uid && meta.mode() & 0o777 == 0o700
    });
    let runtime = if session_is_ours {
        eprintln!(
            "NOTE: {} is a login session's runtime dir; ~/.orchestration not checked",
            session.display()
        );
        login_runtime_dir(&given_runtime);
        vars.push(("XDG_RUNTIME_DIR", &given_runtime));
        given_runtime.join("orchestration")
    } else {
        home.join(".orchestration")
    };
    let daemon = Bare::start(root, &vars, runtime.join("daemon.sock"));
    assert_eq!(mode(&runtime), 0o700);
    assert!(runtime.join("daemon.pid").exists());
    let state = home.join(".local/state/orchestration");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("store.db")), 0o600);
    daemon.uses(&home.join(".config/orchestration/config.toml"));
    daemon.stop();
}

#[test]
fn under_systemd_the_state_directory_holds_the_store_and_without_home_the_config() {
    // A system service's environment: STATE_DIRECTORY, a runtime dir, no HOME.
    let env = Env::new();
    let root = env.dir.path();
    let (run, state) = (root.join("run"), root.join("var-lib-orchestration"));
    login_runtime_dir(&run);
    write_config(&state.join("config.toml"));
    let daemon = Bare::start(
        root,
        &[("XDG_RUNTIME_DIR", &run), ("STATE_DIRECTORY", &state)],
        run.join("orchestration/daemon.sock"),
    );
    assert_eq!(mode(&state.join("store.db")), 0o600);
    daemon.uses(&state.join("config.toml"));
    daemon.stop();
    // Nothing went anywhere else in the tree.
    let mut top: Vec<String> = std::fs::read_dir(root)
        .expect("root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["bare.log", "run", "var-lib-orchestration"]);
}
