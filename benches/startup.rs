//! Startup benchmark: what a user waits for when no daemon runs yet. Runs the
//! real binary and prints figures; asserts nothing about time.
//!
//! - cold first call: `orchestration list` in an empty runtime dir, which
//!   auto-starts a daemon (`serve --daemon`) and waits for its readiness;
//! - `serve --daemon` until the launcher returns (the daemon is serving);
//! - a warm call: `orchestration list` against a running daemon;
//! - socket activation: the first call through `systemd-socket-activate`,
//!   which starts the daemon on that connection (skipped if not installed).
//!
//! `cargo bench --bench startup` runs 20 rounds of each. Under `cargo test
//! --all-targets` (no `--bench` argument) it runs one, as a smoke test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orchestration");

/// How long a wait for something that must happen may take before the
/// bench fails (as in tests/common).
const PATIENCE: Duration = Duration::from_secs(15);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 20 } else { 1 };

    report(
        "cold first call (auto-start)",
        measure(rounds, |dir| {
            let took = timed(command(dir, &["list"]).env("ORCHESTRATION_NO_AUTOSTART", "0"));
            stop(dir);
            took
        }),
    );
    report(
        "serve --daemon until serving",
        measure(rounds, |dir| {
            let took = timed(&mut command(dir, &["serve", "--daemon"]));
            stop(dir);
            took
        }),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    run(&mut command(dir.path(), &["serve", "--daemon"]));
    report(
        "warm call (list, daemon running)",
        (0..rounds.max(5))
            .map(|_| timed(&mut command(dir.path(), &["list"])))
            .collect(),
    );
    stop(dir.path());
    if have_socket_activate() {
        report(
            "first call under systemd-socket-activate",
            measure(rounds, activated_first_call),
        );
    } else {
        println!("first call under systemd-socket-activate: skipped (not installed)");
    }
}

/// Runs `each` in a fresh directory `rounds` times.
fn measure(rounds: usize, each: impl Fn(&Path) -> Duration) -> Vec<Duration> {
    (0..rounds)
        .map(|_| {
            let dir = tempfile::tempdir().expect("tempdir");
            each(dir.path())
        })
        .collect()
}

fn activated_first_call(dir: &Path) -> Duration {
    let runtime = dir.join("run");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    let socket = runtime.join("daemon.sock");
    let mut activate = Command::new("systemd-socket-activate");
    activate.arg("-l").arg(&socket);
    for (name, value) in environment(dir) {
        activate.arg("-E").arg(format!("{name}={value}"));
    }
    let mut activator = activate
        .arg(BIN)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate");
    // Bounded: an activator that died or never listens fails the bench
    // instead of hanging it.
    let started = Instant::now();
    while !socket.exists() {
        if let Ok(Some(status)) = activator.try_wait() {
            panic!("systemd-socket-activate exited with {status} before listening");
        }
        if started.elapsed() > PATIENCE {
            let _ = activator.kill();
            let _ = activator.wait();
            panic!(
                "systemd-socket-activate did not create {} within {PATIENCE:?}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = timed(&mut command(dir, &["list"]));
    let _ = activator.kill();
    let _ = activator.wait();
    took
}

fn environment(dir: &Path) -> Vec<(&'static str, String)> {
    let path = |name: &str| dir.join(name).display().to_string();
    vec![
        ("ORCHESTRATION_RUNTIME_DIR", path("run")),
        ("ORCHESTRATION_STATE_DIR", path("state")),
        ("ORCHESTRATION_CONFIG", path("config.toml")),
        ("HOME", path("home")),
        ("ORCHESTRATION_NO_AUTOSTART", "1".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

fn command(dir: &Path, args: &[&str]) -> Command {
    // Unix socket only: rounds must not compete for port 7862.
    let config = dir.join("config.toml");
    if !config.exists() {
        std::fs::write(&config, "[daemon]\nlisten = \"off\"\n").expect("config");
    }
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .envs(environment(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    run(command);
    started.elapsed()
}

fn run(command: &mut Command) {
    let status = command.status().expect("run orchestration");
    assert!(status.success(), "{command:?} failed");
}

fn stop(dir: &Path) {
    run(&mut command(dir, &["serve", "--stop"]));
}

fn have_socket_activate() -> bool {
    Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let (min, max) = (samples[0], samples[samples.len() - 1]);
    println!(
        "{what}: median {median:.1?}, min {min:.1?}, max {max:.1?} over {} runs",
        samples.len()
    );
}
