//! `serve --daemon`: fork into the background with the `daemonize` crate
//! before any thread exists, and tell the process that launched us how the
//! start went. The crate's first parent only learns that the intermediate
//! child forked, so a pipe carries the real outcome from the daemon: one
//! line, `ready` or `error: MESSAGE`. The launcher exits 0 or with that
//! message; nothing at all (the daemon died) is an error too.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::logging;
use crate::config::LoggingConfig;

/// How long the launcher waits for the daemon to report.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("cannot open the daemon log {path}: {source}")]
    Log { path: String, source: io::Error },
    #[error("cannot fork into the background: {0}")]
    Pipe(#[source] nix::errno::Errno),
    #[error("cannot fork into the background: {0}")]
    Fork(#[source] daemonize::Error),
    /// The daemon's own startup error, as it reported it.
    #[error("{0}")]
    Failed(String),
    #[error("the daemon exited during startup without saying why; see {log}")]
    Died { log: String },
    #[error("the daemon did not report readiness within {}s; see {log}", LAUNCH_TIMEOUT.as_secs())]
    Timeout { log: String },
}

/// Which side of the fork this process is on.
pub enum Side {
    /// The process that ran `serve --daemon`: wait for the report.
    Launcher(Launcher),
    /// The daemon, detached, stdio on the log: serve, then report.
    Daemon(Reporter),
}

pub struct Launcher {
    report: File,
    log: String,
}

/// The daemon's end of the pipe; dropping it unsent reads as "died". Only
/// the first report is sent.
pub struct Reporter {
    pipe: Mutex<Option<File>>,
}

/// Forks into the background: new session, working directory `/`, umask
/// 077, stdin from /dev/null and stdout/stderr appended to `log`.
/// The PID file is the daemon's own flock'd one, taken after this. The
/// log is rotated by size (`[logging]`), at start and, in the daemon, as
/// it grows.
pub fn detach(log: &Path, rotation: &LoggingConfig) -> Result<Side, DetachError> {
    let log_name = log.display().to_string();
    let log_error = |source| DetachError::Log {
        path: log_name.clone(),
        source,
    };
    if std::fs::metadata(log).is_ok_and(|meta| meta.len() > rotation.max_size) {
        logging::shift(log, rotation.keep);
    }
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(DetachError::Pipe)?;
    let outcome = daemonize::Daemonize::new()
        .working_directory("/")
        .umask(0o077)
        .stdout(stdout)
        .stderr(stderr)
        .execute();
    match outcome {
        daemonize::Outcome::Parent(Ok(_)) => {
            drop(write);
            Ok(Side::Launcher(Launcher {
                report: File::from(read),
                log: log_name,
            }))
        }
        daemonize::Outcome::Parent(Err(error)) => Err(DetachError::Fork(error)),
        daemonize::Outcome::Child(result) => {
            drop(read);
            let reporter = Reporter {
                pipe: Mutex::new(Some(File::from(write))),
            };
            if let Err(error) = result {
                let error = DetachError::Fork(error);
                reporter.failed(&error);
                return Err(error);
            }
            logging::rotate_by_size(log, rotation.max_size, rotation.keep);
            Ok(Side::Daemon(reporter))
        }
    }
}

impl Launcher {
    /// Waits for the daemon's report.
    pub fn wait(mut self) -> Result<(), DetachError> {
        let mut text = String::new();
        let mut chunk = [0u8; 4096];
        let deadline = std::time::Instant::now() + LAUNCH_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !readable(&self.report, left) {
                return Err(DetachError::Timeout { log: self.log });
            }
            match self.report.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if text.ends_with('\n') {
                break;
            }
        }
        let line = text.trim_end();
        match line.strip_prefix("error: ") {
            _ if line == "ready" => Ok(()),
            Some(message) => Err(DetachError::Failed(message.to_owned())),
            None => Err(DetachError::Died { log: self.log }),
        }
    }
}

fn readable(file: &File, within: Duration) -> bool {
    let millis = within.as_millis().min(i32::MAX as u128) as i32;
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(file),
        PollFlags::POLLIN,
    )];
    loop {
        match poll(&mut fds, timeout) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

impl Reporter {
    /// Tells the launcher the daemon is serving; it exits 0.
    pub fn ready(&self) {
        self.send("ready");
    }

    /// Tells the launcher why the start failed; it prints this and exits 1.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        // One line: the launcher reads up to the first newline.
        let message = error.to_string().replace('\n', " ");
        self.send(&format!("error: {message}"));
    }

    fn send(&self, line: &str) {
        if let Some(mut pipe) = crate::engine::lock(&self.pipe).take() {
            // The launcher may be gone (killed); the daemon carries on.
            let _ = writeln!(pipe, "{line}");
        }
    }
}
