//! Where the daemon's files live (SPEC §1), resolved from the environment.
//! An override that is set always wins; nothing falls back to the real home
//! directory when one is given. Empty variables count as unset, as the XDG
//! base-directory spec says.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    /// R: sockets, PID file, token. Mode 0700.
    pub runtime_dir: PathBuf,
    pub socket: PathBuf,
    /// The socket was named (`--socket`, `$ORCHESTRATION_SOCKET`): clients
    /// talk to it or to nobody, never to this runtime dir's TCP listener.
    pub socket_explicit: bool,
    pub pid_file: PathBuf,
    pub token_file: PathBuf,
    /// S: persistent state and the daemonized log. Mode 0700.
    pub state_dir: PathBuf,
    /// `S/daemon.log`: stdout and stderr of a daemon started with `serve --daemon`.
    pub log_file: PathBuf,
    pub config_file: PathBuf,
    /// `environment` beside the config file: `KEY=value` lines (API keys)
    /// that the service unit loads and that the daemon reads at start and
    /// at every reload.
    pub environment_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "cannot find a home directory: set HOME, or ORCHESTRATION_RUNTIME_DIR and ORCHESTRATION_STATE_DIR"
    )]
    NoHome,
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot make {} absolute: {source}", path.display())]
    Absolute { path: PathBuf, source: io::Error },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} belongs to another user; refusing to use it", .0.display())]
    NotOurs(PathBuf),
}

fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn home() -> Result<PathBuf, PathError> {
    var("HOME").map(PathBuf::from).ok_or(PathError::NoHome)
}

impl Paths {
    /// Resolves every path; `socket` is the `--socket`/`$ORCHESTRATION_SOCKET` override.
    pub fn resolve(socket: Option<PathBuf>) -> Result<Self, PathError> {
        let runtime_dir = runtime_dir()?;
        let state_dir = state_dir()?;
        Ok(Self {
            socket_explicit: socket.is_some(),
            socket: socket.unwrap_or_else(|| runtime_dir.join("daemon.sock")),
            pid_file: runtime_dir.join("daemon.pid"),
            token_file: runtime_dir.join("http.token"),
            log_file: state_dir.join("daemon.log"),
            state_dir,
            environment_file: environment_file(&config_file()?),
            config_file: config_file()?,
            runtime_dir,
        })
    }
}

impl Paths {
    /// The same paths made absolute against the current directory, for a
    /// process about to leave it (`serve --daemon` runs in `/`).
    pub fn absolute(self) -> Result<Self, PathError> {
        let absolute = |path: PathBuf| {
            std::path::absolute(&path).map_err(|source| PathError::Absolute { path, source })
        };
        Ok(Self {
            runtime_dir: absolute(self.runtime_dir)?,
            socket: absolute(self.socket)?,
            socket_explicit: self.socket_explicit,
            pid_file: absolute(self.pid_file)?,
            token_file: absolute(self.token_file)?,
            state_dir: absolute(self.state_dir)?,
            log_file: absolute(self.log_file)?,
            config_file: absolute(self.config_file)?,
            environment_file: absolute(self.environment_file)?,
        })
    }
}

fn runtime_dir() -> Result<PathBuf, PathError> {
    if let Some(dir) = var("ORCHESTRATION_RUNTIME_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(dir).join("orchestration"));
    }
    Ok(home()?.join(".orchestration"))
}

fn state_dir() -> Result<PathBuf, PathError> {
    if let Some(dir) = var("ORCHESTRATION_STATE_DIR").or_else(|| var("STATE_DIRECTORY")) {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("orchestration"));
    }
    Ok(home()?.join(".local/state/orchestration"))
}

fn config_file() -> Result<PathBuf, PathError> {
    if let Some(file) = var("ORCHESTRATION_CONFIG") {
        return Ok(file.into());
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("orchestration/config.toml"));
    }
    Ok(home()?.join(".config/orchestration/config.toml"))
}

fn environment_file(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("environment")
}

/// Where systemd looks for this user's own units:
/// `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`.
pub fn user_unit_dir() -> Result<PathBuf, PathError> {
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("systemd/user"));
    }
    Ok(home()?.join(".config/systemd/user"))
}

/// Where launchd looks for this user's agents: `~/Library/LaunchAgents`.
pub fn launch_agents_dir() -> Result<PathBuf, PathError> {
    Ok(home()?.join("Library/LaunchAgents"))
}

/// Creates `dir` (and parents) as 0700, or tightens an existing one of ours
/// to 0700 whatever the umask.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    let create_error = |source| PathError::Create {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(create_error)?;
    let meta = fs::metadata(dir).map_err(create_error)?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(dir.to_owned()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(PathError::NotOurs(dir.to_owned()));
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create_error)?;
    }
    Ok(())
}
