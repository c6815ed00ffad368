//! Starting the daemon on demand: the first CLI call that finds nobody
//! answering starts one, through systemd when the user unit is installed
//! (`systemctl --user start orchestration.socket`), else with
//! `orchestration serve --daemon`, and waits until it is ready. An flock on
//! `R/autostart.lock` makes concurrent first calls start exactly one.

use std::collections::HashSet;
use std::io::{IsTerminal, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::paths::{PathError, Paths, TcpRecord, ensure_private_dir, user_runtime_base};
use crate::pidfile::{Holder, holder, lock_holder, open_lock_file};
use crate::service::{SOCKET_UNIT_NAME, TCP_SOCKET_UNIT_NAME, systemctl_user};

/// The environment a service manager gives its own child. A daemon we start
/// is not that child: it must not answer to the caller's manager.
pub const MANAGER_VARIABLES: &[&str] = &[
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

/// How long to wait for a daemon that holds the PID file to start answering.
const STARTING_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    #[error(transparent)]
    Paths(#[from] PathError),
    #[error("cannot take {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// `serve --daemon` said why the daemon did not start.
    #[error("could not start the daemon: {0}")]
    Failed(String),
    /// Another daemon holds this state dir: it was started with another
    /// runtime dir (a login shell's `XDG_RUNTIME_DIR`, say) and answers
    /// elsewhere. `pid` and `sockets` say where, when `/proc` tells.
    #[error("could not start the daemon: {message}")]
    StateDirInUse {
        message: String,
        pid: Option<u32>,
        sockets: Vec<PathBuf>,
    },
}

impl AutostartError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        let Self::StateDirInUse { pid, sockets, .. } = self else {
            return "`orchestration serve` runs the daemon in the foreground, where its errors are easy to see".into();
        };
        let who = pid.map_or("another daemon".into(), |pid| {
            format!("the daemon with pid {pid}")
        });
        if let Some(socket) = sockets.first() {
            let socket = socket.display();
            return format!(
                "{who} already serves this state dir on {socket}: reach it with `--socket {socket}` \
                 (or `export ORCHESTRATION_SOCKET={socket}`), or set XDG_RUNTIME_DIR as in the shell that started it"
            );
        }
        let uid = nix::unistd::geteuid();
        format!(
            "{who} serves this state dir from another runtime dir, usually $XDG_RUNTIME_DIR/orchestration \
             of the session that started it (/run/user/{uid}/orchestration): pass its socket with \
             `--socket PATH` (or ORCHESTRATION_SOCKET), or set XDG_RUNTIME_DIR as there"
        )
    }
}

/// Makes sure a daemon answers on `paths.socket`, starting one if needed.
pub fn ensure_running(paths: &Paths) -> Result<(), AutostartError> {
    if running(paths) {
        return Ok(());
    }
    ensure_private_dir(&paths.runtime_dir)?;
    let _lock = lock(&paths.runtime_dir.join("autostart.lock"))?;
    // Whoever held the lock before us may have started it meanwhile.
    if running(paths) {
        return Ok(());
    }
    if systemd_socket_serves(paths) && start_systemd_socket() && answers(&paths.socket) {
        note("started orchestration.socket with systemctl --user");
        return Ok(());
    }
    launch_daemon(paths)
}

/// Whether a daemon answers, or holds the PID file and answers within
/// [`STARTING_PATIENCE`] (it is starting up, or serves TCP only).
fn running(paths: &Paths) -> bool {
    if answers(&paths.socket) {
        return true;
    }
    let Holder::Daemon(_) = holder(&paths.pid_file) else {
        return false;
    };
    let started = Instant::now();
    while started.elapsed() < STARTING_PATIENCE {
        let serves_tcp_only = !paths.socket_explicit
            && !paths.socket.exists()
            && matches!(
                TcpRecord::read(&paths.address_file),
                Some(TcpRecord::Serving(_))
            );
        if answers(&paths.socket) || serves_tcp_only {
            return true;
        }
        if holder(&paths.pid_file) == Holder::Nobody {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // It holds the lock but does not answer: the client will say so.
    true
}

fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

fn lock(path: &Path) -> Result<Flock<std::fs::File>, AutostartError> {
    let lock_error = |source| AutostartError::Lock {
        path: path.display().to_string(),
        source,
    };
    let file = open_lock_file(path).map_err(lock_error)?;
    // Blocks while another CLI starts the daemon; its launch is bounded.
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| lock_error(errno.into()))
}

/// Whether the systemd user socket unit is loaded and listens where this
/// client looks (`%t/orchestration/daemon.sock`, %t the user's runtime dir).
fn systemd_socket_serves(paths: &Paths) -> bool {
    let Some(runtime) = user_runtime_base() else {
        return false;
    };
    if paths.socket != runtime.join("orchestration/daemon.sock") {
        return false;
    }
    let unit = systemctl_user(&["show", "--property=LoadState", "--value", SOCKET_UNIT_NAME]);
    unit.succeeded && unit.stdout == "loaded"
}

/// Starts the control socket; the TCP one too, when it can be had (its
/// port may be another user's: the control socket is enough).
fn start_systemd_socket() -> bool {
    if !systemctl_user(&["start", SOCKET_UNIT_NAME]).succeeded {
        return false;
    }
    let _ = systemctl_user(&["start", TCP_SOCKET_UNIT_NAME]);
    true
}

/// Runs `orchestration serve --daemon`, which returns once the daemon is
/// serving, or fails with the daemon's own error on stderr. Its stdout is
/// not the caller's, so `$(orchestration list)` does not wait on the daemon.
fn launch_daemon(paths: &Paths) -> Result<(), AutostartError> {
    let program = std::env::current_exe().map_err(|source| AutostartError::Spawn {
        program: "orchestration".into(),
        source,
    })?;
    let mut command = Command::new(&program);
    command
        .arg("--socket")
        .arg(&paths.socket)
        .args(["serve", "--daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for variable in MANAGER_VARIABLES {
        command.env_remove(variable);
    }
    let spawn_error = |source| AutostartError::Spawn {
        program: program.display().to_string(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(spawn_error)?;
    if !status.success() {
        let message = stderr
            .lines()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or(stderr.trim())
            .to_owned();
        let pid = lock_holder(&paths.store_lock());
        if pid.is_some() || message.contains("is using the state dir") {
            return Err(AutostartError::StateDirInUse {
                message,
                sockets: pid.map(listening_sockets).unwrap_or_default(),
                pid,
            });
        }
        return Err(AutostartError::Failed(message));
    }
    note(&format!(
        "started the orchestration daemon (log: {})",
        paths.log_file.display()
    ));
    Ok(())
}

/// The Unix socket paths process `pid` listens on, from its open files and
/// `/proc/net/unix` (Linux; empty when it cannot be told).
fn listening_sockets(pid: u32) -> Vec<PathBuf> {
    const LISTENING: &str = "00010000";
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    // `Num RefCount Protocol Flags Type St Inode Path`
    let mut sockets: Vec<PathBuf> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(6)?.parse().ok()?;
            let path = fields.get(7)?;
            (fields.get(3) == Some(&LISTENING) && inodes.contains(&inode) && path.starts_with('/'))
                .then(|| PathBuf::from(path))
        })
        .collect();
    sockets.sort();
    sockets.dedup();
    sockets
}

/// A line on a terminal's stderr; scripts' stderr stays clean.
fn note(text: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("orchestration: {text}");
    }
}
