//! The daemon as a Unix service without a service manager in the loop:
//! `serve --daemon` and what its launcher learns, auto-start on the first CLI
//! call (and 32 of them at once), readiness and status over a real
//! `NOTIFY_SOCKET`, and socket activation by `systemd-socket-activate`.

use crate::common;
use crate::common::Harness;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{BIN, Background, Env, PATIENCE, eventually};
use serde_json::json;

/// An env whose auto-started daemons serve the Unix socket only, so tests
/// running side by side do not race for port 7862.
fn unix_only() -> Env {
    Env::new().config("[daemon]\nlisten = \"off\"\n")
}

/// Runs a command to completion, failing the test if it has not closed its
/// stdout within PATIENCE (a daemon holding the caller's stdout would hang
/// `$(orchestration list)` forever).
fn run_bounded(mut command: Command) -> (Option<i32>, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let Ok((out, err)) = rx.recv_timeout(PATIENCE) else {
        let _ = child.kill();
        panic!("the command kept its stdout/stderr open past {PATIENCE:?}");
    };
    let status = child.wait().expect("wait");
    (status.code(), out, err)
}

fn proc_status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// A fresh env whose runtime dir exists (systemd-socket-activate creates
/// only the socket), and the socket's path as an `-l` address.
fn activation_env() -> (Env, String) {
    let env = Env::new();
    std::fs::create_dir_all(env.runtime_dir()).expect("runtime dir");
    let socket = env.socket().display().to_string();
    (env, socket)
}

#[test]
fn serve_daemon_returns_once_serving_and_detaches_fully() {
    // Inherited from a journald-connected parent, but stderr is now the
    // log file: lines go to the file, not the journal.
    let env = unix_only().var("JOURNAL_STREAM", "8:12345");
    let (code, out, err) = run_bounded(env.command(&["serve", "--daemon"]));
    let daemon = Background { env: env.clone() };
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("orchestration daemon started (pid "), "{out}");
    // Ready means ready: the very next connection is served, no waiting.
    let health = env.cli(&["--json", "serve", "--status"]);
    health.ok();
    let pid = daemon.pid().expect("PID file written");
    assert_eq!(health.json()["pid"], json!(pid));
    assert_ne!(pid as u32, std::process::id());
    // Its own session, in /, umask 077, stdio on S/daemon.log.
    assert_eq!(proc_status_field(pid, "Umask"), "0077");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"),
        std::path::Path::new("/")
    );
    let log = env.dir.path().join("state/daemon.log");
    for fd in [1, 2] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("fd"),
            log
        );
    }
    let mode = std::fs::metadata(&log).expect("log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(daemon.log().contains("ready"), "{}", daemon.log());
    // Stops like any daemon.
    env.cli(&["serve", "--stop"]).ok();
    assert!(!daemon.alive());
}

#[test]
fn serve_daemon_reports_the_daemons_own_startup_error() {
    let env = unix_only();
    let (code, _, err) = run_bounded(env.command(&["serve", "--daemon"]));
    assert_eq!(code, Some(0), "{err}");
    let first = Background { env: env.clone() };

    // Fails after the fork, in the daemon: the launcher still says why.
    let (code, out, err) = run_bounded(env.command(&["serve", "--daemon"]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("error: another orchestration daemon is already running"),
        "{err}"
    );
    assert!(first.alive());
    drop(first);

    let env = unix_only();
    let (code, _, err) = run_bounded(env.command(&["serve", "--daemon", "--listen", "0.0.0.0:0"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
    assert!(!env.pid_file().exists());

    // A damaged store is found by the daemon, and reported by the launcher.
    let env = unix_only();
    std::fs::create_dir_all(env.dir.path().join("state")).expect("state dir");
    std::fs::write(env.dir.path().join("state/store.db"), b"not a database").expect("write");
    let (code, _, err) = run_bounded(env.command(&["serve", "--daemon"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("store"), "{err}");
}

#[test]
fn first_cli_call_starts_a_daemon_without_holding_the_callers_output() {
    let env = unix_only().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let daemon = Background { env: env.clone() };
    // `$(orchestration list)` returns: the daemon is not holding the pipe.
    let (code, out, err) =
        run_bounded(env.shell(&format!("out=$('{BIN}' list) && echo \"[$out]\"")));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "[no agents]");
    assert!(daemon.alive(), "a daemon runs afterwards");
    // It carries on serving later calls.
    env.cli(&["spawn", "a", "--provider", "echo"]).ok();
    assert!(
        env.cli(&["message", "a", "hi"])
            .ok()
            .stdout()
            .contains("hi")
    );
}

#[test]
fn thirty_two_first_calls_at_once_start_exactly_one_daemon() {
    let env = unix_only().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let daemon = Background { env: env.clone() };
    let children: Vec<_> = (0..32)
        .map(|_| {
            env.command(&["list"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let socket = env.socket().display().to_string();
    let daemons = processes_mentioning(&socket);
    assert_eq!(daemons.len(), 1, "daemons: {daemons:?}");
    assert_eq!(Some(daemons[0]), daemon.pid());
}

#[test]
fn autostart_recovers_from_a_daemon_killed_with_sigkill() {
    let env = unix_only().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let daemon = Background { env: env.clone() };
    env.cli(&["spawn", "keep", "--provider", "echo"]).ok();
    let first = daemon.pid().expect("pid");
    common::signal(first, "KILL");
    eventually("the killed daemon is gone", || !daemon.alive());
    // Its PID file and socket are left behind, stale.
    assert!(env.pid_file().exists() && env.socket().exists());
    let out = env.cli(&["list"]);
    out.ok();
    assert!(out.stdout().contains("keep"), "{}", out.stdout());
    let second = daemon.pid().expect("pid");
    assert_ne!(first, second);
    assert!(daemon.alive());
}

#[test]
fn autostarted_daemon_does_not_inherit_a_service_managers_variables() {
    let env = unix_only().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let daemon = Background { env: env.clone() };
    // The CLI runs as if inside a notify service: the daemon it starts must
    // not report to that service's manager.
    let notify_path = env.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify");
    notify.set_nonblocking(true).expect("nonblocking");
    let notify_text = notify_path.display().to_string();
    env.cli_env(
        &[
            ("NOTIFY_SOCKET", notify_text.as_str()),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("WATCHDOG_USEC", "1000000"),
        ],
        &["list"],
    )
    .ok();
    let pid = daemon.pid().expect("pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    for variable in [
        "NOTIFY_SOCKET=",
        "LISTEN_FDS=",
        "LISTEN_PID=",
        "WATCHDOG_USEC=",
    ] {
        assert!(!environ.contains(variable), "{variable} leaked: {environ}");
    }
    let mut buf = [0u8; 512];
    assert!(
        notify.recv(&mut buf).is_err(),
        "the daemon notified the caller's manager"
    );
}

/// Reads notification datagrams until one contains `want`.
fn await_notification(notify: &UnixDatagram, want: &str) -> String {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < PATIENCE, "no {want:?} notification");
        if let Ok(n) = notify.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains(want) {
                return text;
            }
        }
    }
}

#[test]
fn readiness_status_watchdog_and_stopping_reach_the_notify_socket() {
    let env = Env::new();
    let notify_path = env.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let env = env
        .var("NOTIFY_SOCKET", &notify_path.display().to_string())
        .var("WATCHDOG_USEC", "200000");
    let mut child = env
        .command(&["serve", "--no-tcp", "--daemon"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ready = await_notification(&notify, "READY=1");
    // READY only once serving: the socket answers right away.
    assert!(UnixStream::connect(env.socket()).is_ok());
    assert!(ready.contains("STATUS=serving 0 live agents"), "{ready}");
    // --daemon under a service manager does not fork: this is the daemon.
    assert!(child.try_wait().expect("try_wait").is_none());
    assert_eq!(
        std::fs::read_to_string(env.pid_file()).expect("pid").trim(),
        child.id().to_string()
    );
    await_notification(&notify, "WATCHDOG=1");
    await_notification(&notify, "WATCHDOG=1");

    env.cli(&["spawn", "one", "--provider", "echo"]).ok();
    await_notification(&notify, "STATUS=serving 1 live agent\n");
    env.cli(&["spawn", "two", "--provider", "echo"]).ok();
    await_notification(&notify, "STATUS=serving 2 live agents");
    env.cli(&["shutdown", "one"]).ok();
    await_notification(&notify, "STATUS=serving 1 live agent\n");

    common::signal(child.id() as i32, "TERM");
    await_notification(&notify, "STOPPING=1");
    assert!(child.wait().expect("wait").success());
}

/// `systemd-socket-activate` with `-l` for each address, passing our env.
fn socket_activate(env: &Env, listen: &[String], serve_args: &[&str]) -> Command {
    socket_activate_with(env, &[], listen, serve_args)
}

fn socket_activate_with(
    env: &Env,
    options: &[&str],
    listen: &[String],
    serve_args: &[&str],
) -> Command {
    let mut command = env.command(&[]);
    let program = command.get_program().to_owned();
    let mut activate = Command::new("systemd-socket-activate");
    activate.args(options);
    for address in listen {
        activate.args(["-l", address]);
    }
    // It passes only what -E names to the daemon.
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            activate.arg("-E").arg(format!(
                "{}={}",
                name.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    command = activate;
    command.arg(program).arg("serve").args(serve_args);
    command.stdin(Stdio::null());
    command
}

fn have_socket_activate() -> bool {
    let found = have("systemd-socket-activate");
    if !found {
        skip("systemd-socket-activate is not installed (apt install systemd)");
    }
    found
}

#[test]
fn socket_activation_with_the_unix_socket_alone() {
    if !have_socket_activate() {
        return;
    }
    let (env, socket) = activation_env();
    let log = env.dir.path().join("activate.log");
    let mut activator = socket_activate(&env, &[socket], &["--port", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    eventually("the socket exists", || env.socket().exists());
    // The first connection starts the daemon; the client does not notice.
    let out = env.cli(&["spawn", "a", "--provider", "echo"]);
    out.ok();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // Exactly the sockets it was given: no TCP (despite --port), so no token.
    assert!(!env.token_file().exists());
    assert!(read_log().contains("activated=true"), "{}", read_log());
    assert!(read_log().contains("tcp=off"), "{}", read_log());
    // The TCP unit failed (its port taken) or is not installed: status says so.
    let status = env.cli(&["serve", "--status"]);
    assert!(
        status
            .ok()
            .stdout()
            .contains("tcp:     off: the service manager passed no TCP socket"),
        "{}",
        status.stdout()
    );

    common::signal(activator.id() as i32, "TERM");
    assert!(activator.wait().expect("wait").success(), "{}", read_log());
    // The socket belongs to whoever passed it: still there.
    assert!(
        env.socket().exists(),
        "the daemon unlinked systemd's socket"
    );
    assert!(!env.pid_file().exists());
}

#[test]
fn socket_activation_with_unix_and_tcp_sockets() {
    if !have_socket_activate() {
        return;
    }
    let env = Env::new();
    std::fs::create_dir_all(env.runtime_dir()).expect("runtime dir");
    let unix = env.socket().display().to_string();
    let (mut activator, port) = activate_on_a_free_port(&env, "127.0.0.1", &[unix], &["--no-tcp"]);
    eventually("the socket exists", || env.socket().exists());
    env.cli(&["spawn", "a", "--provider", "echo"]).ok();
    // TCP, passed first, is told apart from the Unix socket by its family.
    let token = std::fs::read_to_string(env.token_file()).expect("token written");
    let host = format!("127.0.0.1:{port}");
    let auth = format!("Bearer {}", token.trim());
    let tcp_get = |headers: &[(&str, &str)]| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        common::send(
            stream,
            &common::build_request("GET", "/health", headers, None),
        )
    };
    let health = tcp_get(&[("Host", &host), ("Authorization", &auth)]);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["agents"], json!(1));
    assert_eq!(tcp_get(&[("Host", &host)]).status, 401);

    common::signal(activator.id() as i32, "TERM");
    assert!(activator.wait().expect("wait").success());
    assert!(env.socket().exists());
    assert!(!env.token_file().exists(), "the token is removed on exit");
}

#[test]
fn socket_activation_refuses_a_non_loopback_tcp_socket() {
    if !have_socket_activate() {
        return;
    }
    let env = Env::new();
    let (activator, port) = activate_on_a_free_port(&env, "0.0.0.0", &[], &[]);
    // Activation happens on the first connection.
    let _poke = eventually_connect(port);
    let err = failed_start_logged(activator, &activation_log(&env));
    assert!(err.contains("is not a loopback address"), "{err}");
}

/// Waits for a daemon (started with stderr piped) that must fail to start,
/// and returns what it said.
fn failed_start(mut child: std::process::Child) -> String {
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(!status.success(), "it started: {err}");
    err
}

/// The same for a daemon whose stderr goes to `log`.
fn failed_start_logged(mut child: std::process::Child, log: &std::path::Path) -> String {
    let status = child.wait().expect("wait");
    let err = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!status.success(), "it started: {err}");
    err
}

/// `systemd-socket-activate` listening on `HOST:PORT` (passed first) and
/// on `more`, its stderr in [`activation_log`]. The activator refuses port
/// 0, so the port is chosen first: at random below the kernel's ephemeral
/// range, where no port-0 bind of the tests' in-process daemons can land,
/// and checked free. Two tests drawing the same port are still possible;
/// the loser's activator exits with "Address already in use" at once, and
/// this tries another port.
fn activate_on_a_free_port(
    env: &Env,
    host: &str,
    more: &[String],
    serve_args: &[&str],
) -> (std::process::Child, u16) {
    let log = activation_log(env);
    for _ in 0..20 {
        let port = unused_port_below_ephemeral();
        let mut listen = vec![format!("{host}:{port}")];
        listen.extend_from_slice(more);
        let mut activator = socket_activate(env, &listen, serve_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        let listening = format!("Listening on {host}:{port}");
        let started = Instant::now();
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains(&listening) {
                return (activator, port);
            }
            if let Ok(Some(_)) = activator.try_wait() {
                assert!(said.contains("Address already in use"), "{said}");
                break;
            }
            assert!(started.elapsed() < PATIENCE, "the activator said: {said}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("twenty ports in a row were taken");
}

fn activation_log(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("activate.log")
}

/// A port in 20000..32768, free when looked at.
fn unused_port_below_ephemeral() -> u16 {
    loop {
        let random = uuid::Uuid::new_v4().as_u128();
        let port = 20_000 + (random % 12_768) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn eventually_connect(port: u16) -> std::net::TcpStream {
    let started = Instant::now();
    loop {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            return stream;
        }
        assert!(started.elapsed() < PATIENCE, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_exit_under_socket_activation_leaves_the_socket_for_the_next_call() {
    if !have_socket_activate() {
        return;
    }
    let (env, socket) = activation_env();
    // Long enough that a loaded machine's pauses between the CLI's steps do
    // not count as idle; the wait below is bounded by PATIENCE all the same.
    let mut activator = socket_activate(&env, &[socket], &["--idle-timeout", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    eventually("the socket exists", || env.socket().exists());
    env.cli(&["spawn", "a", "--provider", "echo"]).ok();
    // systemd-socket-activate execs the daemon, so its exit is the idle exit.
    let mut status = None;
    eventually("the daemon exits when idle", || {
        status = activator.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(env.socket().exists());
    assert!(!env.pid_file().exists());
}

/// Says loudly that a test part cannot run here; under
/// `ORCHESTRATION_REQUIRE_SYSTEMD=1` (CI as root) that is a failure.
fn skip(why: &str) {
    assert!(
        std::env::var("ORCHESTRATION_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
        "required but cannot run: {why}"
    );
    eprintln!("SKIPPED: {why}");
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn service_install_writes_units_for_this_binary_that_systemd_accepts() {
    let env = Env::new();
    let unit_dir = env.dir.path().join("home/.config/systemd/user");
    let out = env.cli(&["service", "install"]);
    out.ok();
    assert!(
        out.stdout().contains(
            "next: systemctl --user enable --now orchestration.socket orchestration-tcp.socket"
        ),
        "{}",
        out.stdout()
    );
    // The test binary lives in target/: the unit would die with the next cargo clean.
    assert!(
        out.stdout().contains("inside a build folder")
            && out.stdout().contains("cargo install --locked --path ."),
        "{}",
        out.stdout()
    );
    let service = std::fs::read_to_string(unit_dir.join("orchestration.service")).expect("unit");
    let socket = std::fs::read_to_string(unit_dir.join("orchestration.socket")).expect("unit");
    let tcp_socket =
        std::fs::read_to_string(unit_dir.join("orchestration-tcp.socket")).expect("unit");
    assert!(
        service.contains(&format!("ExecStart={BIN} serve ")),
        "{service}"
    );
    assert!(service.contains("\nType=notify\n"));
    // systemd would delete a RuntimeDirectory=, and the socket in it, on stop.
    assert!(!service.lines().any(|l| l.starts_with("RuntimeDirectory=")));
    assert!(socket.contains("ListenStream=%t/orchestration/daemon.sock"));
    // A port another user holds must fail only the TCP unit: it is a unit
    // of its own, feeding the same service, which merely wants it.
    assert!(!socket.contains("127.0.0.1"), "{socket}");
    assert!(tcp_socket.contains("\nListenStream=127.0.0.1:7862\n"));
    assert!(tcp_socket.contains("\nService=orchestration.service\n"));
    assert!(
        service.contains("\nRequires=orchestration.socket\n"),
        "{service}"
    );
    assert!(
        service.contains("\nWants=orchestration-tcp.socket\n"),
        "{service}"
    );

    if have("systemd-analyze") {
        // Offline verification of both units, Documentation= included: the
        // man pages they cite must exist (from man/, as `make install` would put them).
        let runtime = env.dir.path().join("xdg-run");
        std::fs::create_dir_all(&runtime).expect("dir");
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let manpath = env.dir.path().join("manpath");
        std::fs::create_dir_all(manpath.join("man1")).expect("dir");
        for page in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/man")).expect("man") {
            let page = page.expect("entry").path();
            std::fs::copy(
                &page,
                manpath.join("man1").join(page.file_name().expect("name")),
            )
            .expect("copy");
        }
        let mut verify = Command::new("systemd-analyze");
        verify.arg("--user");
        if !have("man") {
            eprintln!("NOTE: man is not installed; verifying without Documentation= checks");
            verify.arg("--man=no");
        }
        let verified = verify
            .arg("verify")
            .arg(unit_dir.join("orchestration.socket"))
            .arg(unit_dir.join("orchestration-tcp.socket"))
            .arg(unit_dir.join("orchestration.service"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("MANPATH", &manpath)
            .output()
            .expect("systemd-analyze");
        let complaints = String::from_utf8_lossy(&verified.stderr);
        assert!(verified.status.success(), "{complaints}");
        // Unknown settings are only warnings: there must be none.
        assert!(complaints.trim().is_empty(), "{complaints}");
    } else {
        skip("systemd-analyze is not installed (apt install systemd); unit verification");
    }

    let status = env.cli(&["--json", "service", "status"]);
    status.ok();
    assert_eq!(status.json()["current"], json!(true));
    assert_eq!(status.json()["units"][0]["installed"], json!(true));
    assert!(
        env.cli(&["service", "status"])
            .ok()
            .stdout()
            .contains("(this binary)")
    );
    assert!(
        env.cli(&["service", "install"])
            .ok()
            .stdout()
            .contains("unchanged")
    );

    let out = env.cli(&["service", "uninstall"]);
    out.ok();
    assert!(out.stdout().contains("removed"), "{}", out.stdout());
    assert!(!unit_dir.join("orchestration.service").exists());
    assert!(!unit_dir.join("orchestration.socket").exists());
    assert!(!unit_dir.join("orchestration-tcp.socket").exists());
    assert_eq!(
        env.cli(&["--json", "service", "status"]).ok().json()["units"][1]["installed"],
        json!(false)
    );
}

#[test]
fn socket_activation_refuses_a_socket_it_cannot_serve() {
    if !have_socket_activate() {
        return;
    }
    let (env, socket) = activation_env();
    // A datagram socket: neither the control socket nor a TCP listener.
    let mut command = socket_activate_with(&env, &["--datagram"], &[socket], &[]);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let activator = command.spawn().expect("spawn");
    eventually("the socket exists", || env.socket().exists());
    let poke = UnixDatagram::unbound().expect("datagram");
    let _ = poke.send_to(b"hello", env.socket());
    let err = failed_start(activator);
    assert!(
        err.contains("neither a Unix nor a TCP stream socket"),
        "{err}"
    );
}

#[test]
fn listen_variables_meant_for_another_process_are_ignored() {
    // LISTEN_PID names someone else: not activated, so bind as usual.
    let env = Env::new().var("LISTEN_FDS", "2").var("LISTEN_PID", "1");
    let mut daemon = common::Daemon::start_in(env, &["--no-tcp"], None);
    assert!(daemon.log().contains("activated=false"), "{}", daemon.log());
    daemon.cli(&["list"]).ok();
    assert!(daemon.terminate().success());
    assert!(
        !daemon.env.socket().exists(),
        "a socket it bound is removed"
    );
}

#[test]
fn autostart_failure_says_why_and_touches_nothing() {
    let env = unix_only().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let _daemon = Background { env: env.clone() };
    std::fs::create_dir_all(env.runtime_dir()).expect("runtime dir");
    std::fs::write(env.socket(), "not a socket").expect("write");
    let (code, out, err) = run_bounded(env.command(&["list"]));
    // 3, daemon unreachable (SPEC §6): it could not be started.
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.starts_with("error: could not start the daemon: "),
        "{err}"
    );
    assert!(err.contains("is not a socket"), "{err}");
    assert!(
        err.contains("hint: `orchestration serve` runs the daemon in the foreground"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(env.socket()).expect("read"),
        "not a socket"
    );
    assert!(!env.pid_file().exists());
}

#[test]
fn an_auto_started_daemon_exits_when_idle_per_the_config_and_comes_back() {
    let env = Env::new()
        .config("[daemon]\nlisten = \"off\"\nidle_timeout = \"2s\"\n")
        .var("ORCHESTRATION_NO_AUTOSTART", "0");
    let daemon = Background { env: env.clone() };
    env.cli(&["spawn", "kept", "--provider", "echo"]).ok();
    eventually("the idle daemon exits", || !env.pid_file().exists());
    assert!(daemon.log().contains("idle"), "{}", daemon.log());
    // The next call starts it again, and the agent is still there.
    assert!(env.cli(&["list"]).ok().stdout().contains("kept"));
    // Two daemons said they were ready, one after the other (read from the
    // log, which stays: the second one may be idle and gone already too).
    let pids = ready_pids(&daemon.log());
    assert_eq!(pids.len(), 2, "{}", daemon.log());
    assert_ne!(pids[0], pids[1]);
}

/// The `pid=N` of every "ready" line in a daemon log, in order.
fn ready_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|line| line.contains(" ready"))
        .filter_map(|line| {
            let at = line.find("pid=")? + "pid=".len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn a_large_daemon_log_is_rotated_at_start() {
    let env = unix_only();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    let old = vec![b'x'; 11 * 1024 * 1024];
    std::fs::write(state.join("daemon.log"), &old).expect("write");
    let (code, _, err) = run_bounded(env.command(&["serve", "--daemon"]));
    let daemon = Background { env: env.clone() };
    assert_eq!(code, Some(0), "{err}");
    let kept = std::fs::metadata(state.join("daemon.log.1")).expect("rotated");
    assert_eq!(kept.len(), old.len() as u64);
    assert!(daemon.log().len() < 1024 * 1024);
    assert!(daemon.log().contains("ready"), "{}", daemon.log());
}
