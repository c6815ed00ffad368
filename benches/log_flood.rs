//! Log growth under unauthenticated garbage (issue #21): how many bytes
//! `daemon.log` (and its rotated files) gain while clients without a token
//! send requests with 16 KB paths over keep-alive TCP connections as fast
//! as the daemon answers them. Runs `serve --daemon` (so its log is
//! `S/daemon.log`, at the default level) in a temporary directory, prints
//! one table, and asserts nothing about time.
//!
//! `cargo bench --bench log_flood` floods for 10 s; under `cargo test
//! --all-targets` (no `--bench` argument) for a fraction of a second, as a
//! smoke test that keeps it from rotting.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_orchestration");
const CONNECTIONS: usize = 8;
const PATH_BYTES: usize = 16_000;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let window = if full {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(300)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("config");
    cli(dir.path(), &["serve", "--daemon"]);
    let before = log_bytes(dir.path());
    let refused = flood(port, window);
    let after = log_bytes(dir.path());
    cli(dir.path(), &["serve", "--stop"]);
    let mode = if full {
        ""
    } else {
        " (smoke run: figures are rough)"
    };
    println!(
        "orchestration log flood{mode}: {CONNECTIONS} keep-alive TCP connections without a token, {PATH_BYTES}-byte paths"
    );
    println!("| what | value |");
    println!("|---|---|");
    println!("| flood | {:.1} s |", window.as_secs_f64());
    println!("| requests refused (401) | {refused} |");
    println!(
        "| log growth (daemon.log and rotated files) | {} KB |",
        after.saturating_sub(before) / 1000
    );
}

/// Sends unauthenticated requests for `window` and counts the answers.
fn flood(port: u16, window: Duration) -> usize {
    let path = format!("/{}", "a".repeat(PATH_BYTES));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let request = request.as_bytes();
                scope.spawn(move || {
                    let mut refused = 0;
                    while started.elapsed() < window {
                        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
                            continue;
                        };
                        refused += keep_sending(stream, request, started, window);
                    }
                    refused
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    })
}

/// Sends `request` again and again on one connection until the window
/// ends or the daemon closes it; the answers counted.
fn keep_sending(stream: TcpStream, request: &[u8], started: Instant, window: Duration) -> usize {
    let Ok(mut writer) = stream.try_clone() else {
        return 0;
    };
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    while started.elapsed() < window {
        if writer.write_all(request).is_err() {
            break;
        }
        match read_response(&mut reader) {
            Some(close) => {
                answered += 1;
                if close {
                    break;
                }
            }
            None => break,
        }
    }
    answered
}

/// Reads one response; whether the daemon will close the connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<bool> {
    let mut length = 0usize;
    let mut close = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if line == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(close)
}

/// The bytes of `S/daemon.log` and every rotated file beside it.
fn log_bytes(dir: &Path) -> u64 {
    let state = dir.join("state");
    let Ok(entries) = std::fs::read_dir(&state) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("daemon.log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn cli(dir: &Path, args: &[&str]) {
    let path = |name: &str| -> PathBuf { dir.join(name) };
    let status = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("ORCHESTRATION_RUNTIME_DIR", path("run"))
        .env("ORCHESTRATION_STATE_DIR", path("state"))
        .env("ORCHESTRATION_CONFIG", path("config.toml"))
        .env("HOME", path("home"))
        .env("ORCHESTRATION_NO_AUTOSTART", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run orchestration");
    assert!(status.success(), "orchestration {args:?} failed");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
