//! The client knows it talks to its own daemon, and the daemon is findable
//! and honest about itself: the files it reads cannot wedge it, a second
//! `serve` names the process that holds the lock.

use crate::common;

use std::io::Read;
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
    assert!(!env.pid_file().exists(), "no daemon was left holding the lock");
}

#[test]
fn a_fifo_as_environment_file_fails_the_reload_and_the_daemon_serves_on() {
    let daemon = Daemon::start(&[]);
    let environment = daemon.env.dir.path().join("environment");
    mkfifo(&environment);
    let out = finishes(daemon.env.command(&["serve", "--reload"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&environment.display().to_string()), "{stderr}");
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
