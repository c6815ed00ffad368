//! The client knows it talks to its own daemon, and the daemon is findable
//! and honest about itself: the files it reads cannot wedge it, a second
//! `serve` names the process that holds the lock.

use crate::common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{Daemon, Env, Harness, PATIENCE};

/// Runs `command` to its end; a command that is still running after
/// [`PATIENCE`] is killed and the test fails: what it checks is that the
/// command does not hang.
#[track_caller]
fn finishes(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            panic!("the command hung: {command:?}\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn a_fifo_as_config_file_is_refused_at_start_naming_it() {
    let env = Env::new();
    let config = env.dir.path().join("config.toml");
    mkfifo(&config);
    for args in [
        vec!["serve", "--no-tcp"],
        vec!["serve", "--no-tcp", "--daemon"],
        vec!["config", "set", "daemon.listen", "off"],
    ] {
        let out = finishes(env.command(&args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&config.display().to_string()), "{stderr}");
        assert!(stderr.contains("FIFO"), "{stderr}");
    }
    assert!(
        !env.pid_file().exists(),
        "no daemon was left holding the lock"
    );
}

#[test]
fn a_fifo_as_environment_file_fails_the_reload_and_the_daemon_serves_on() {
    let daemon = Daemon::start(&[]);
    let environment = daemon.env.dir.path().join("environment");
    mkfifo(&environment);
    let out = finishes(daemon.env.command(&["serve", "--reload"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&environment.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("FIFO"), "{stderr}");

    // A file too large is refused the same way, and a good one loads again.
    std::fs::remove_file(&environment).expect("rm fifo");
    std::fs::write(&environment, "A=1\n".repeat(300_000)).expect("write");
    let out = finishes(daemon.env.command(&["serve", "--reload"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("larger than"), "{stderr}");
    std::fs::write(&environment, "A=1\n").expect("write");
    daemon.cli(&["serve", "--reload"]).ok();
    daemon.cli(&["list"]).ok();
    let out = finishes(daemon.env.command(&["serve", "--stop"]));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_second_serve_names_the_process_holding_the_lock_before_it_wrote_its_pid() {
    let env = Env::new();
    std::fs::create_dir(env.runtime_dir()).expect("runtime dir");
    std::fs::set_permissions(
        env.runtime_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    // Like a daemon between taking the lock and writing its PID.
    let file = std::fs::File::create(env.pid_file()).expect("pid file");
    let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| errno)
        .expect("lock");
    let out = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr()
            .contains(&format!("already running (pid {}", std::process::id())),
        "{}",
        out.stderr()
    );
}

/// Whether nothing connected to `listener` (the clients have all exited,
/// so a connection they made would be queued).
fn nobody_connected(listener: &std::net::TcpListener) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn the_token_goes_only_to_the_address_the_daemon_recorded() {
    let daemon = Daemon::start_tcp(&[]);
    let port = daemon.port.expect("port");
    daemon.cli(&["spawn", "carol", "--provider", "echo"]).ok();
    let record = std::fs::read_to_string(daemon.env.runtime_dir().join("http.address"))
        .expect("address file");
    assert_eq!(record.trim(), format!("127.0.0.1:{port}"));
    assert_eq!(mode(&daemon.env.runtime_dir().join("http.address")), 0o600);
    std::fs::remove_file(daemon.env.socket()).expect("remove socket");

    // Somebody listens elsewhere, and the environment points there: once
    // the way to steer the fallback, now ignored.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let elsewhere = format!("http://{}", impostor.local_addr().expect("addr"));
    let out = daemon.env.cli_env(
        &[
            ("ORCHESTRATION_URL", elsewhere.as_str()),
            ("OPENAI_API_KEY", "sk-must-not-leak"),
        ],
        &["message", "carol", "over tcp"],
    );
    out.ok();
    assert_eq!(out.stdout(), "over tcp\n");
    assert!(
        nobody_connected(&impostor),
        "the token went to the impostor"
    );
}

#[test]
fn a_dead_daemons_address_and_token_are_not_used() {
    let mut daemon = Daemon::start_tcp(&[]);
    let port = daemon.port.expect("port");
    std::fs::remove_file(daemon.env.socket()).expect("remove socket");
    common::signal(daemon.pid(), "KILL");
    daemon.wait_exit();
    assert!(daemon.env.token_file().exists(), "kill -9 leaves the token");
    // Another process takes the port the dead daemon recorded.
    let impostor = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the freed port");
    let out = daemon.env.cli(&["list"]);
    assert_eq!(out.code(), 3, "{}{}", out.stdout(), out.stderr());
    assert!(nobody_connected(&impostor), "the stale token was sent");
}

#[test]
fn serve_status_shows_the_tcp_listener_or_why_there_is_none() {
    let daemon = Daemon::start_tcp(&[]);
    let port = daemon.port.expect("port");
    let out = daemon.cli(&["serve", "--status"]);
    out.ok();
    assert!(
        out.stdout().contains(&format!("tcp:     127.0.0.1:{port}")),
        "{}",
        out.stdout()
    );

    let daemon = Daemon::start(&[]);
    let out = daemon.cli(&["serve", "--status"]);
    out.ok();
    assert!(
        out.stdout().contains("tcp:     off: turned off (--no-tcp"),
        "{}",
        out.stdout()
    );
    assert!(!daemon.env.token_file().exists());

    // The default port taken (by this test, or already by someone else):
    // the daemon serves the socket alone and says why.
    let _taken = std::net::TcpListener::bind("127.0.0.1:7862");
    let daemon = Daemon::start_in(Env::new(), &[], None);
    let out = daemon.cli(&["serve", "--status"]);
    out.ok();
    assert!(
        out.stdout()
            .contains("tcp:     off: 127.0.0.1:7862 is in use by another process"),
        "{}",
        out.stdout()
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn a_socket_in_a_directory_others_can_write_to_is_refused_unless_sticky() {
    let daemon = Daemon::start(&[]);
    let socket = daemon.env.socket();
    set_mode(&daemon.env.runtime_dir(), 0o777);
    let out = daemon.cli(&["list"]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(
        out.stderr().contains(&socket.display().to_string()),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("writable by others"),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("not sticky"), "{}", out.stderr());
    // Sticky, like /tmp, and the socket is the user's own: fine.
    set_mode(&daemon.env.runtime_dir(), 0o1777);
    daemon.cli(&["list"]).ok();
}

/// The uid of `nobody`, the second local user the tests borrow when root.
const NOBODY: u32 = 65534;

/// Whether this test can borrow a second uid; if not, it says so (and
/// fails where the suite was told every test must run).
fn second_uid_available() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("ORCHESTRATION_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
        "ORCHESTRATION_REQUIRE_SYSTEMD=1 but not root: the second-uid test cannot run"
    );
    eprintln!("SKIPPED: not root, so no second uid to test with");
    false
}

/// A daemon run by `nobody` on a socket in a shared sticky directory, as
/// another local user could: killed on drop.
struct Impostor {
    child: std::process::Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Impostor {
    /// `shared`: its socket in a sticky directory everyone may write to
    /// (like `/tmp`); else in its own directory, which others can only read.
    fn start(shared: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        set_mode(dir.path(), 0o755);
        let shared_dir = dir.path().join("tmp");
        std::fs::create_dir(&shared_dir).expect("mkdir");
        set_mode(&shared_dir, 0o1777);
        let own = dir.path().join("nobody");
        std::fs::create_dir(&own).expect("mkdir");
        nix::unistd::chown(
            &own,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOBODY)),
        )
        .expect("chown");
        let socket = if shared {
            shared_dir.join("orch.sock")
        } else {
            own.join("orch.sock")
        };
        let child = Command::new(common::BIN)
            .arg("--socket")
            .arg(&socket)
            .args(["serve", "--no-tcp"])
            .env_clear()
            .env("HOME", &own)
            .env("ORCHESTRATION_RUNTIME_DIR", own.join("run"))
            .env("ORCHESTRATION_STATE_DIR", own.join("state"))
            .env("ORCHESTRATION_CONFIG", own.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .expect("spawn the impostor");
        common::eventually("the impostor listens", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        Self {
            child,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_socket_served_by_another_user_gets_nothing() {
    if !second_uid_available() {
        return;
    }
    let env = Env::new().var("OPENAI_API_KEY", "sk-must-not-leak");
    // In a shared sticky directory: the socket file is not the user's.
    let impostor = Impostor::start(true);
    let named = impostor.socket.to_str().expect("utf-8");
    let spawn = ["--socket", named, "spawn", "helper", "--provider", "openai"];
    let out = env.cli(&spawn);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(out.stderr().contains(named), "{}", out.stderr());
    assert!(
        out.stderr().contains("it belongs to uid 65534"),
        "{}",
        out.stderr()
    );
    drop(impostor);
    // In a directory of its own: the listening process is not the user's.
    let impostor = Impostor::start(false);
    let named = impostor.socket.to_str().expect("utf-8");
    let spawn = ["--socket", named, "spawn", "helper", "--provider", "openai"];
    let out = env.cli(&spawn);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(out.stderr().contains(named), "{}", out.stderr());
    assert!(
        out.stderr().contains("served by uid 65534"),
        "{}",
        out.stderr()
    );
    // Asked for explicitly, root talks to it: and that daemon refuses root.
    let out = env.cli_env(
        &[("ORCHESTRATION_DAEMON_UID", "65534")],
        &["--socket", named, "list"],
    );
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("connections from uid 0 are refused"),
        "{}",
        out.stderr()
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The binary with nothing in its environment but PATH and `vars`.
fn bare(vars: &[(&str, &Path)], args: &[&str]) -> common::CliOutput {
    let mut command = Command::new(common::BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ORCHESTRATION_NO_AUTOSTART", "1")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    common::CliOutput(command.output().expect("run"))
}

#[test]
fn without_home_everything_missing_is_named_at_once_and_config_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bare(&[], &["list"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    let stderr = out.stderr();
    // /run/user/$UID, when it is ours, is found without any variable.
    let uid = nix::unistd::geteuid().as_raw();
    if !Path::new(&format!("/run/user/{uid}")).exists() {
        assert!(stderr.contains("ORCHESTRATION_RUNTIME_DIR"), "{stderr}");
    }
    for needed in ["HOME", "ORCHESTRATION_STATE_DIR", "ORCHESTRATION_CONFIG"] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");

    // The config commands need neither the runtime nor the state dir.
    let config = dir.path().join("config.toml");
    let vars = [("ORCHESTRATION_CONFIG", config.as_path())];
    let out = bare(&vars, &["config", "path"]);
    out.ok();
    assert_eq!(out.stdout().trim(), config.display().to_string());
    bare(&vars, &["config", "set", "daemon.listen", "off"]).ok();
    let out = bare(&vars, &["config", "get", "daemon.listen"]);
    out.ok();
    assert_eq!(out.stdout().trim(), "off");
    bare(&[], &["completions", "bash"]).ok();
    // A command that needs the daemon still says what is missing.
    let out = bare(&vars, &["list"]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr().contains("ORCHESTRATION_STATE_DIR"),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_runtime_dir_linked_by_another_user_is_not_followed() {
    if !second_uid_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The victim's directory, open to be read, and another user's link to
    // it where the runtime dir is looked for (say, planted in /tmp).
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    set_mode(&home, 0o755);
    let env = Env::new();
    let link = env.runtime_dir();
    std::os::unix::fs::symlink(&home, &link).expect("symlink");
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &link,
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(NOBODY)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    let out = env.cli(&["serve", "--no-tcp"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("symbolic link owned by uid 65534"),
        "{}",
        out.stderr()
    );
    assert_eq!(mode(&home), 0o755, "the link's target was chmodded");
    assert!(std::fs::read_dir(&home).expect("ls").next().is_none());

    // A link of the user's own is the user's choice, and is followed.
    std::fs::remove_file(&link).expect("rm link");
    std::os::unix::fs::symlink(&home, &link).expect("symlink");
    let daemon = Daemon::start_in(env, &["--no-tcp"], None);
    assert_eq!(mode(&home), 0o700);
    daemon.cli(&["list"]).ok();
}

#[test]
fn a_daemon_whose_runtime_dir_was_deleted_puts_its_socket_back() {
    let mut daemon = Daemon::start_tcp(&[]);
    daemon.spawn_echo("kept");
    let pid = daemon.pid();
    let runtime_dir = daemon.env.runtime_dir();
    let token_before = std::fs::read_to_string(daemon.env.token_file()).expect("token");
    std::fs::remove_dir_all(&runtime_dir).expect("rm -r R");
    common::eventually("the daemon re-creates its socket", || {
        daemon.log().contains("control socket re-created")
    });

    // Reachable again, with its agents, as the same process.
    let out = daemon.cli(&["list"]);
    out.ok();
    assert!(out.stdout().contains("kept"), "{}", out.stdout());
    let out = daemon.cli(&["serve", "--status"]);
    out.ok();
    assert!(out.stdout().contains(&pid.to_string()), "{}", out.stdout());
    // The PID file is back under a lock of its own, and TCP clients find the
    // same token and address again.
    let pid_file = std::fs::read_to_string(daemon.env.pid_file()).expect("pid");
    assert_eq!(pid_file.trim(), pid.to_string());
    let token_after = std::fs::read_to_string(daemon.env.token_file()).expect("token");
    assert_eq!(token_before, token_after);
    assert!(runtime_dir.join("http.address").exists());
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    assert_eq!(mode(&runtime_dir), 0o700);

    // A second deletion is handled the same way.
    std::fs::remove_dir_all(&runtime_dir).expect("rm -r R again");
    common::eventually("the daemon re-creates its socket again", || {
        daemon.log().matches("control socket re-created").count() == 2
    });
    daemon.cli(&["list"]).ok();

    let out = daemon.cli(&["serve", "--stop"]);
    out.ok();
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    assert!(
        !daemon.env.pid_file().exists(),
        "the re-created PID file was left behind"
    );
    assert!(!daemon.env.token_file().exists());
}

#[test]
fn a_daemon_whose_socket_path_was_taken_is_found_reported_and_stopped() {
    let mut daemon = Daemon::start(&[]);
    let pid = daemon.pid();
    // Someone else's file now stands at the socket's path: the daemon does
    // not remove it, and says it cannot be reached.
    let socket = daemon.env.socket();
    std::fs::remove_file(&socket).expect("rm socket");
    std::fs::write(&socket, "not a socket").expect("write");
    common::eventually("the daemon notices its socket is gone", || {
        daemon.log().contains("the control socket is gone")
    });
    assert_eq!(
        std::fs::read_to_string(&socket).expect("read"),
        "not a socket"
    );

    let out = daemon.cli(&["serve", "--status"]);
    assert_eq!(out.code(), 1, "{}{}", out.stdout(), out.stderr());
    assert!(
        out.stderr().contains(&format!("daemon pid {pid} ")),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("serve --stop"), "{}", out.stderr());

    let out = daemon.cli(&["serve", "--stop"]);
    out.ok();
    assert!(out.stdout().contains("stopped"), "{}", out.stdout());
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    std::fs::remove_file(&socket).expect("rm the stand-in");
    let out = daemon.cli(&["serve", "--status"]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
}

#[test]
fn a_store_deleted_under_the_daemon_refuses_writes_and_says_so() {
    let daemon = Daemon::start(&[]);
    daemon.spawn_echo("before");
    let store = daemon.env.dir.path().join("state/store.db");
    for file in ["store.db", "store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(daemon.env.dir.path().join("state").join(file));
    }
    assert!(!store.exists());
    let refused = daemon.json(
        "POST",
        "/agents",
        Some(serde_json::json!({"name": "after", "provider": "echo"})),
    );
    assert_eq!(refused.status, 507, "{}", refused.text());
    assert!(
        refused.detail().contains("was deleted"),
        "{}",
        refused.text()
    );
    let out = daemon.cli(&["message", "before", "hello"]);
    assert_ne!(
        out.code(),
        0,
        "a message was acknowledged into a deleted file"
    );
    assert!(out.stderr().contains("was deleted"), "{}", out.stderr());
    assert_eq!(
        daemon.log().matches("the store file was deleted").count(),
        1,
        "{}",
        daemon.log()
    );
    let out = daemon.cli(&["serve", "--status"]);
    out.ok();
    assert!(
        out.stdout().contains("store:   DELETED"),
        "{}",
        out.stdout()
    );
    // The daemon still serves what needs no write, and stops cleanly.
    daemon.cli(&["list"]).ok();
    daemon.cli(&["serve", "--stop"]).ok();
}
