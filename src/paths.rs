//! Where the daemon's files live (SPEC §1), resolved from the environment.
//! An override that is set always wins; nothing falls back to the real home
//! directory when one is given. Empty variables count as unset, as the XDG
//! base-directory spec says.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// `R/http.address`: the TCP address the daemon actually serves, or
    /// `off: why`. The client sends the token there and nowhere else.
    pub address_file: PathBuf,
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
    /// HOME is needed for `what` and is not set; `set` says what else
    /// would do. Everything that cannot be placed is named at once.
    #[error("cannot place the {what}: HOME is not set; set HOME, or {set}")]
    NoHome { what: String, set: String },
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot make {} absolute: {source}", path.display())]
    Absolute { path: PathBuf, source: io::Error },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} belongs to another user; refusing to use it", .0.display())]
    NotOurs(PathBuf),
    /// A link someone else owns could be repointed by them at any time.
    #[error(
        "{} is a symbolic link owned by uid {owner}, not by you; refusing to follow it (its owner could repoint it)",
        path.display()
    )]
    ForeignSymlink { path: PathBuf, owner: u32 },
}

fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The TCP listener's default address (SPEC §1). A client never assumes
/// it: it reads the address the daemon recorded (`R/http.address`).
pub const DEFAULT_TCP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7862);

/// `$HOME`, needed for `what`; `set` names the variables that would do instead.
fn home(what: &'static str, set: &'static str) -> Result<PathBuf, PathError> {
    var("HOME").map(PathBuf::from).ok_or(PathError::NoHome {
        what: what.to_owned(),
        set: set.to_owned(),
    })
}

/// One error naming every place that could not be found, so a user
/// without HOME learns everything to set at once.
fn all_missing(errors: impl IntoIterator<Item = Option<PathError>>) -> PathError {
    let mut errors: Vec<PathError> = errors.into_iter().flatten().collect();
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let (mut whats, mut sets) = (Vec::new(), Vec::new());
    for error in errors {
        match error {
            PathError::NoHome { what, set } => {
                whats.push(what);
                sets.push(set);
            }
            other => return other,
        }
    }
    PathError::NoHome {
        what: whats.join(", the "),
        set: sets.join(", and "),
    }
}

/// The config file alone, for commands that need neither the runtime nor
/// the state dir (`config path`, `config get`, `config set`).
pub fn config_file_alone() -> Result<PathBuf, PathError> {
    config_file(state_dir().ok().as_deref())
}

impl Paths {
    /// Resolves every path; `socket` is the `--socket`/`$ORCHESTRATION_SOCKET` override.
    pub fn resolve(socket: Option<PathBuf>) -> Result<Self, PathError> {
        let runtime_dir = runtime_dir();
        let state_dir = state_dir();
        let config_file = config_file(state_dir.as_ref().ok().map(PathBuf::as_path));
        let (runtime_dir, state_dir, config_file) = match (runtime_dir, state_dir, config_file) {
            (Ok(runtime), Ok(state), Ok(config)) => (runtime, state, config),
            (runtime, state, config) => {
                return Err(all_missing([runtime.err(), state.err(), config.err()]));
            }
        };
        Ok(Self {
            socket_explicit: socket.is_some(),
            socket: socket.unwrap_or_else(|| runtime_dir.join("daemon.sock")),
            pid_file: runtime_dir.join("daemon.pid"),
            token_file: runtime_dir.join("http.token"),
            address_file: runtime_dir.join("http.address"),
            log_file: state_dir.join("daemon.log"),
            state_dir,
            environment_file: environment_file(&config_file),
            config_file,
            runtime_dir,
        })
    }
}

impl Paths {
    /// `S/store.lock`, held by the daemon that writes the store: it finds
    /// a daemon whose runtime dir was deleted.
    pub fn store_lock(&self) -> PathBuf {
        self.state_dir.join("store.lock")
    }

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
            address_file: absolute(self.address_file)?,
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
    if let Some(base) = user_runtime_base() {
        return Ok(base.join("orchestration"));
    }
    Ok(home(
        "runtime dir",
        "ORCHESTRATION_RUNTIME_DIR (or XDG_RUNTIME_DIR)",
    )?
    .join(".orchestration"))
}

/// The user's runtime directory, where a service manager's sockets live:
/// `$XDG_RUNTIME_DIR`, else `/run/user/$UID` when that is ours and 0700
/// (SPEC §1). Shells without a login session (cron, `sudo -u`, `env -i`,
/// some ssh setups) lack the variable but not the directory, and must find
/// the daemon the login session started.
pub fn user_runtime_base() -> Option<PathBuf> {
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return Some(dir.into());
    }
    let uid = nix::unistd::geteuid().as_raw();
    let candidate = PathBuf::from(format!("/run/user/{uid}"));
    is_private_runtime_dir(&candidate, uid).then_some(candidate)
}

/// What `R/http.address` says: the daemon's TCP address, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpRecord {
    Serving(SocketAddr),
    Off(String),
}

impl TcpRecord {
    /// The file's one line.
    pub fn to_line(&self) -> String {
        match self {
            Self::Serving(addr) => addr.to_string(),
            Self::Off(why) => format!("off: {why}"),
        }
    }

    /// Reads the record; `None` when there is none or it is not one.
    pub fn read(file: &Path) -> Option<Self> {
        let text = fs::read_to_string(file).ok()?;
        let line = text.lines().next()?.trim();
        if let Some(why) = line.strip_prefix("off: ") {
            return Some(Self::Off(why.to_owned()));
        }
        line.parse().ok().map(Self::Serving)
    }
}

/// Whether `dir` is a real directory (not a symlink) owned by `uid` with
/// mode 0700: what a login manager makes for a user's runtime dir.
pub fn is_private_runtime_dir(dir: &Path, uid: u32) -> bool {
    fs::symlink_metadata(dir)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == uid && meta.mode() & 0o777 == 0o700)
}

fn state_dir() -> Result<PathBuf, PathError> {
    if let Some(dir) = var("ORCHESTRATION_STATE_DIR").or_else(|| var("STATE_DIRECTORY")) {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("orchestration"));
    }
    Ok(
        home("state dir", "ORCHESTRATION_STATE_DIR (or XDG_STATE_HOME)")?
            .join(".local/state/orchestration"),
    )
}

/// `$ORCHESTRATION_CONFIG`, else `$XDG_CONFIG_HOME/orchestration/config.toml`,
/// else `~/.config/orchestration/config.toml`; with no `HOME` either,
/// `S/config.toml` next to the store (the state dir then came from a
/// variable, so nothing falls back to a guessed home). A missing file is the
/// defaults.
fn config_file(state_dir: Option<&Path>) -> Result<PathBuf, PathError> {
    if let Some(file) = var("ORCHESTRATION_CONFIG") {
        return Ok(file.into());
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("orchestration/config.toml"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".config/orchestration/config.toml"));
    }
    match state_dir {
        Some(state_dir) => Ok(state_dir.join("config.toml")),
        None => home("config file", "ORCHESTRATION_CONFIG (or XDG_CONFIG_HOME)"),
    }
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
    Ok(home("systemd user unit dir", "XDG_CONFIG_HOME")?.join(".config/systemd/user"))
}

/// Where launchd looks for this user's agents: `~/Library/LaunchAgents`.
pub fn launch_agents_dir() -> Result<PathBuf, PathError> {
    Ok(home(
        "launchd agent dir",
        "nothing else: launchd reads ~/Library/LaunchAgents",
    )?
    .join("Library/LaunchAgents"))
}

/// Creates `dir` (and parents) as 0700, or tightens an existing one of ours
/// to 0700 whatever the umask. A symbolic link in its place is followed only
/// when it is the user's own: a link someone else planted (in a sticky
/// shared directory, say) could point at any directory of the user's, which
/// would then be chmodded, and be repointed later. The ownership check and
/// the chmod act on the opened directory, not on the name again.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    let create_error = |source| PathError::Create {
        path: dir.to_owned(),
        source,
    };
    let uid = nix::unistd::geteuid().as_raw();
    let link = fs::symlink_metadata(dir);
    let our_link = match &link {
        Ok(meta) if meta.file_type().is_symlink() && meta.uid() != uid => {
            return Err(PathError::ForeignSymlink {
                path: dir.to_owned(),
                owner: meta.uid(),
            });
        }
        Ok(meta) => meta.file_type().is_symlink(),
        Err(_) => false,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(create_error)?;
    let mut flags = nix::fcntl::OFlag::O_DIRECTORY;
    if !our_link {
        // Swapped for a link since the look above: refuse rather than follow.
        flags |= nix::fcntl::OFlag::O_NOFOLLOW;
    }
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(dir);
    let opened = match opened {
        Ok(opened) => opened,
        Err(error) if error.raw_os_error() == Some(nix::libc::ENOTDIR) => {
            return Err(PathError::NotADirectory(dir.to_owned()));
        }
        Err(error) => return Err(create_error(error)),
    };
    let meta = opened.metadata().map_err(create_error)?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(dir.to_owned()));
    }
    if meta.uid() != uid {
        return Err(PathError::NotOurs(dir.to_owned()));
    }
    if meta.mode() & 0o777 != 0o700 {
        opened
            .set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(create_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    #[test]
    fn a_runtime_dir_counts_only_when_ours_and_private() {
        let uid = nix::unistd::geteuid().as_raw();
        let ours = private_dir(0o700);
        assert!(is_private_runtime_dir(ours.path(), uid));
        // Someone else's (as far as the check can tell).
        assert!(!is_private_runtime_dir(ours.path(), uid.wrapping_add(1)));
        // Readable by others: not a runtime dir a login manager made.
        let open = private_dir(0o755);
        assert!(!is_private_runtime_dir(open.path(), uid));
        // Missing, a file, a symlink to a good one.
        assert!(!is_private_runtime_dir(&ours.path().join("nope"), uid));
        let file = ours.path().join("file");
        fs::write(&file, "").expect("write");
        assert!(!is_private_runtime_dir(&file, uid));
        let link = open.path().join("link");
        std::os::unix::fs::symlink(ours.path(), &link).expect("symlink");
        assert!(!is_private_runtime_dir(&link, uid));
    }
}
