//! The daemon (`orchestration serve`): the process around the core in
//! [`server`]. Start: (with `--daemon`, fork into the background first)
//! logging, private dirs, PID-file lock, signal handlers, the store, the
//! listeners (passed by the service manager, or bound), the token file.
//! Ready: tell the service manager or the launcher. Stop (SIGTERM, SIGINT,
//! SIGQUIT, `POST /shutdown`, idle): the core drains and suspends the
//! agents; then remove the files it created. SIGHUP reloads.

mod activation;
mod detach;
mod listeners;
mod logging;
mod notify;
mod reload;
mod server;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::paths::{DEFAULT_TCP, PathError, Paths, TcpRecord, ensure_private_dir};
use crate::pidfile::{PidFile, PidFileError};
use crate::providers::{EnvironmentError, SetupError};
use crate::store::StoreError;
use activation::{ActivationError, Inherited};
pub use detach::DetachError;
use detach::{Reporter, Side};
pub use listeners::{ListenError, UnixSocket, bind_unix};
use listeners::{bind_tcp, file_identity};
pub use server::{DaemonSetup, Listeners, ReloadTrigger, ServeConfig, serve_on};
use server::{Host, Serving};

/// Which TCP listener to open.
#[derive(Debug, Clone, Copy)]
pub enum TcpChoice {
    /// 127.0.0.1:7862; if it is taken, carry on with the Unix socket alone.
    Default,
    /// An address the user asked for; failing to bind it is an error.
    Explicit(SocketAddr),
    Off,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub paths: Paths,
    pub tcp: TcpChoice,
    /// How long in-flight requests get to finish once shutdown starts.
    pub drain_timeout: Duration,
    /// Pause between the echo provider's words.
    pub echo_delay: Duration,
    pub config: Config,
    /// Whether a non-loopback TCP address may be bound.
    pub allow_remote: bool,
    /// `--idle-timeout`: exit after this long without a connection (0:
    /// never). Without it, the config's `daemon.idle_timeout` in effect.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Paths(#[from] PathError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Activation(#[from] ActivationError),
    #[error(transparent)]
    Detach(#[from] DetachError),
    #[error(
        "refusing to listen on {0}: it is not a loopback address; pass --allow-remote if you really mean it (see Security in the README)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot write the TCP token or address to {}: {source}", path.display())]
    Token { path: PathBuf, source: io::Error },
    #[error(
        "config file {}: daemon.listen = {value:?} is not an address like 127.0.0.1:7862 or \"off\"",
        config_file.display()
    )]
    BadListen {
        config_file: PathBuf,
        value: String,
        source: std::net::AddrParseError,
    },
    /// `serve --stop` could not SIGTERM a daemon that did not answer.
    #[error("cannot signal daemon pid {pid}: {source}")]
    Signal {
        pid: nix::unistd::Pid,
        source: nix::errno::Errno,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up providers: {0}")]
    Providers(#[from] SetupError),
    #[error("environment file {0}")]
    Environment(#[from] EnvironmentError),
    #[error("cannot start: {0}")]
    Io(#[from] io::Error),
}

/// Runs the daemon in the foreground until it is told to stop.
pub fn serve(options: ServeOptions) -> Result<(), DaemonError> {
    serve_reporting(options, None)
}

/// `serve --daemon`: forks into the background, and returns in the launching
/// process once the daemon reports it is serving (or why it is not). In the
/// daemon it returns when the daemon stops. Under a service manager it does
/// not fork: systemd and launchd track the process they started.
pub fn serve_detached(mut options: ServeOptions) -> Result<Detached, DaemonError> {
    if under_service_manager() {
        logging::init(options.config.daemon.log_level.as_deref());
        tracing::info!("started by a service manager: not forking (--daemon ignored)");
        return serve(options).map(|()| Detached::Stopped);
    }
    // The daemon runs in `/`: a relative override must still mean the same place.
    options.paths = options.paths.absolute()?;
    ensure_private_dir(&options.paths.state_dir)?;
    match detach::detach(&options.paths.log_file, &options.config.logging)? {
        Side::Launcher(launcher) => {
            launcher.wait()?;
            Ok(Detached::Launched)
        }
        Side::Daemon(reporter) => {
            let reporter = Arc::new(reporter);
            let result = serve_reporting(options, Some(reporter.clone()));
            if let Err(error) = &result {
                reporter.failed(error);
            }
            result.map(|()| Detached::Stopped)
        }
    }
}

/// Which process `serve_detached` returns in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// The launcher: the daemon is serving in the background.
    Launched,
    /// The daemon (or a foreground one under a service manager): it has stopped.
    Stopped,
}

/// Whether systemd (socket activation or a notify socket) or launchd (our
/// LaunchAgent's label; Terminal's shells carry `XPC_SERVICE_NAME=0`)
/// started this process.
fn under_service_manager() -> bool {
    let activated =
        std::env::var("LISTEN_PID").is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    let launchd =
        std::env::var("XPC_SERVICE_NAME").is_ok_and(|label| label == crate::service::LAUNCHD_LABEL);
    activated || std::env::var_os("NOTIFY_SOCKET").is_some() || launchd
}

/// What only a process can do before the core runs: logging, the sockets a
/// service manager passed, the fd limit, private dirs, the PID file's lock
/// and the runtime.
fn serve_reporting(
    options: ServeOptions,
    reporter: Option<Arc<Reporter>>,
) -> Result<(), DaemonError> {
    logging::init(options.config.daemon.log_level.as_deref());
    // Before any thread exists: taking the sockets edits the environment.
    let inherited = activation::take()?;
    if let TcpChoice::Explicit(addr) = options.tcp
        && !addr.ip().is_loopback()
        && !options.allow_remote
    {
        return Err(DaemonError::NotLoopback(addr));
    }
    raise_fd_limit();
    let paths = &options.paths;
    ensure_private_dir(&paths.runtime_dir)?;
    ensure_private_dir(&paths.state_dir)?;
    let binds_socket = inherited.is_none();
    if let Some(parent) = paths
        .socket
        .parent()
        .filter(|p| binds_socket && !p.exists())
    {
        ensure_private_dir(parent)?;
    }
    let pid_file = PidFile::acquire(&paths.pid_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(options, inherited, reporter));
    // Cancelled requests' tasks may still hold sockets; don't wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    drop(pid_file);
    result
}

/// The process around the core: signals, the store opened before anything
/// listens, the listeners, the token file; then the core until it stops.
async fn run(
    options: ServeOptions,
    inherited: Option<Inherited>,
    reporter: Option<Arc<Reporter>>,
) -> Result<(), DaemonError> {
    let signals = Signals::register()?;
    let config = serve_config(&options);
    let shutdown = CancellationToken::new();
    watch_signals(signals, shutdown.clone(), config.reload.clone());
    // The store first: a damaged or locked one must stop the start before
    // anything is listening.
    let setup = DaemonSetup::open(config)?;
    let activated = inherited.is_some();
    let (unix, tcp) = open_listeners(&options, inherited).await?;
    let watched = unix.as_ref().and_then(socket_identity);
    let (listeners, records) = with_token(unix, tcp, &options.paths)?;
    let (replace, replacements) = mpsc::channel(1);
    let listeners = listeners.unix_replacements(replacements);
    if let Some(watched) = watched {
        // A socket the service manager passed is its to re-create, not ours.
        let rebind = (!activated).then(|| Rebind {
            paths: options.paths.clone(),
            records,
            replace,
        });
        watch_socket_path(watched, rebind, shutdown.clone());
    }
    let host = Arc::new(ProcessHost {
        reporter,
        records: vec![
            options.paths.token_file.clone(),
            options.paths.address_file.clone(),
        ],
        level: logging::level(),
        activated,
    });
    let result = server::run(listeners, setup, shutdown.clone().cancelled_owned(), host).await;
    // The core may have stopped on its own (`POST /shutdown`, idle): the
    // signal watcher goes too.
    shutdown.cancel();
    result
}

/// The TCP listener, or why there is none (recorded for clients and
/// `serve --status`).
enum Tcp {
    On(TcpListener),
    Off(String),
}

/// The core's listeners. The address TCP actually serves is recorded in
/// `R/http.address` and a fresh token in `R/http.token` before it accepts:
/// clients send the token to that address and nowhere else. Without TCP,
/// the record says why and a token left behind is removed, so no client
/// takes it for a live listener's.
fn with_token(
    unix: Option<UnixSocket>,
    tcp: Tcp,
    paths: &Paths,
) -> Result<(Listeners, Records), DaemonError> {
    let mut listeners = Listeners::new();
    if let Some(unix) = unix {
        listeners = listeners.unix(unix);
    }
    match tcp {
        Tcp::On(tcp) => {
            let addr = tcp.local_addr()?;
            let address = TcpRecord::Serving(addr).to_line();
            write_private(&paths.address_file, &address)?;
            let token = write_token(&paths.token_file)?;
            let records = Records {
                address,
                token: Some(token.clone()),
            };
            Ok((listeners.tcp(tcp, token), records))
        }
        Tcp::Off(why) => {
            let _ = std::fs::remove_file(&paths.token_file);
            let address = TcpRecord::Off(why).to_line();
            write_private(&paths.address_file, &address)?;
            Ok((
                listeners,
                Records {
                    address,
                    token: None,
                },
            ))
        }
    }
}

/// What the daemon wrote in R for clients: the TCP address line and the
/// token (if TCP is on). Written again when R is re-created.
#[derive(Clone)]
struct Records {
    address: String,
    token: Option<String>,
}

impl Records {
    fn write(&self, paths: &Paths) -> Result<(), DaemonError> {
        write_private(&paths.address_file, &self.address)?;
        if let Some(token) = &self.token {
            write_private(&paths.token_file, token)?;
        }
        Ok(())
    }
}

/// What the core runs from under `serve`: the resolved paths, the command
/// line's options, and this process's environment for the keys.
fn serve_config(options: &ServeOptions) -> ServeConfig {
    let paths = &options.paths;
    ServeConfig {
        environment_file: paths.environment_file.clone(),
        environment: process_environment(),
        drain_timeout: options.drain_timeout,
        echo_delay: options.echo_delay,
        idle_timeout: options.idle_timeout,
        ..ServeConfig::new(
            paths.state_dir.clone(),
            paths.config_file.clone(),
            options.config.clone(),
        )
    }
}

/// The process environment, without variables that are not UTF-8 (no key
/// or setting the daemon looks up can be one).
fn process_environment() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// `serve`'s side of the core's life: the log's ready line, the service
/// manager (sd_notify), the launcher of `serve --daemon`, the live log
/// level, and the token and address files, removed once TCP closes.
struct ProcessHost {
    reporter: Option<Arc<Reporter>>,
    records: Vec<PathBuf>,
    level: Option<logging::Level>,
    activated: bool,
}

impl Host for ProcessHost {
    fn ready(&self, serving: &Serving<'_>) {
        tracing::info!(
            pid = std::process::id(),
            socket = %serving.socket.map_or("off".to_owned(), UnixSocket::describe),
            tcp = %serving.tcp.map_or("off".to_owned(), |a| a.to_string()),
            activated = self.activated,
            "orchestration {} ready",
            crate::VERSION
        );
        notify::ready(serving.engine.live_count());
        notify::spawn_reporters(serving.engine, serving.stop);
        if let Some(reporter) = &self.reporter {
            reporter.ready();
        }
    }

    fn reloading(&self) {
        notify::reloading();
    }

    fn reloaded(&self, live: usize) {
        notify::ready(live);
    }

    fn set_log_level(&self, directives: &str) -> Result<(), String> {
        match &self.level {
            Some(level) => level.set(directives),
            None => Ok(()),
        }
    }

    fn stopping(&self) {
        notify::stopping();
        for record in &self.records {
            let _ = std::fs::remove_file(record);
        }
    }
}

/// The sockets passed by the service manager, exactly those; else the ones
/// the options ask for, bound here.
async fn open_listeners(
    options: &ServeOptions,
    inherited: Option<Inherited>,
) -> Result<(Option<UnixSocket>, Tcp), DaemonError> {
    let Some(inherited) = inherited else {
        let unix = bind_unix(&options.paths.socket)?;
        return Ok((Some(unix), open_tcp(options.tcp).await?));
    };
    let unix = inherited.unix.map(UnixSocket::inherited).transpose()?;
    let Some(tcp) = inherited.tcp.map(TcpListener::from_std).transpose()? else {
        return Ok((unix, Tcp::Off(NOT_PASSED.to_owned())));
    };
    if let Ok(addr) = tcp.local_addr()
        && !addr.ip().is_loopback()
        && !options.allow_remote
    {
        return Err(DaemonError::NotLoopback(addr));
    }
    Ok((unix, Tcp::On(tcp)))
}

/// Why a socket-activated daemon has no TCP listener.
const NOT_PASSED: &str = "the service manager passed no TCP socket (is orchestration-tcp.socket started? \
     `systemctl --user status orchestration-tcp.socket` says why not)";

/// How often the daemon looks whether its socket file is still there.
const SOCKET_CHECK: Duration = Duration::from_secs(2);

/// A socket file's identity: device and inode.
type Identity = (PathBuf, (u64, u64));

fn socket_identity(unix: &UnixSocket) -> Option<Identity> {
    let address = unix.listener.local_addr().ok()?;
    let path = address.as_pathname()?.to_owned();
    let identity = file_identity(&path)?;
    Some((path, identity))
}

/// How a daemon that bound its own socket puts it back: the paths to
/// re-create, what to write there again, and where the core takes the new
/// socket from.
struct Rebind {
    paths: Paths,
    records: Records,
    replace: mpsc::Sender<UnixSocket>,
}

/// Watches the control socket's path until `stop`. When the file is gone
/// (its runtime dir deleted by a cleanup job, say) no client can reach this
/// daemon, which still holds the store: the user would see "not running"
/// while it runs. With `rebind` (the daemon bound the socket itself), it
/// re-creates the runtime dir, the PID file (a new lock), the socket, the
/// token and address records, and the core serves the new socket; without
/// (socket activation, or a path someone else's file now takes), it logs
/// loudly, once, and `serve --status`/`--stop` still find the daemon
/// through the store's lock.
fn watch_socket_path(watched: Identity, rebind: Option<Rebind>, stop: CancellationToken) {
    tokio::spawn(async move {
        let (path, mut bound) = watched;
        // The PID file of a re-created runtime dir, held until the daemon stops.
        let mut _pid_file: Option<PidFile> = None;
        let mut ticks = tokio::time::interval(SOCKET_CHECK);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => return,
            }
            let now = file_identity(&path);
            if now == Some(bound) {
                continue;
            }
            let Some(rebind) = rebind.as_ref().filter(|_| now.is_none()) else {
                tracing::error!(
                    socket = %path.display(),
                    pid = std::process::id(),
                    "the control socket is gone (deleted or replaced): no client can reach this daemon; \
                     `orchestration serve --stop` stops it (it finds it through the store's lock) and \
                     the next command starts a fresh one"
                );
                return;
            };
            tracing::warn!(
                socket = %path.display(),
                "the control socket was deleted (its runtime dir removed?): re-creating it"
            );
            match recreate(rebind, &path).await {
                Ok((pid_file, identity)) => {
                    _pid_file = Some(pid_file);
                    bound = identity;
                }
                Err(error) => {
                    tracing::error!(
                        socket = %path.display(),
                        %error,
                        "cannot re-create the control socket: no client can reach this daemon; \
                         `orchestration serve --stop` stops it (it finds it through the store's lock)"
                    );
                    return;
                }
            }
        }
    });
}

/// Re-creates R and the socket in it, and hands the socket to the core.
async fn recreate(rebind: &Rebind, path: &Path) -> Result<(PidFile, (u64, u64)), DaemonError> {
    let paths = &rebind.paths;
    ensure_private_dir(&paths.runtime_dir)?;
    if let Some(parent) = path.parent() {
        ensure_private_dir(parent)?;
    }
    let pid_file = PidFile::acquire(&paths.pid_file)?;
    let socket = bind_unix(path)?;
    let identity = file_identity(path)
        .ok_or_else(|| DaemonError::Io(io::Error::other("the new socket vanished at once")))?;
    rebind.records.write(paths)?;
    if rebind.replace.send(socket).await.is_err() {
        return Err(DaemonError::Io(io::Error::other("the daemon is stopping")));
    }
    tracing::info!(socket = %path.display(), pid = std::process::id(), "control socket re-created");
    Ok((pid_file, identity))
}

/// Lifts the soft open-file limit to the hard one, so the connection cap,
/// not the fd limit, is what a flood of connections runs into.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn open_tcp(choice: TcpChoice) -> Result<Tcp, DaemonError> {
    match choice {
        TcpChoice::Off => Ok(Tcp::Off(
            "turned off (--no-tcp, or daemon.listen = \"off\" in the config)".to_owned(),
        )),
        TcpChoice::Explicit(addr) => Ok(Tcp::On(bind_tcp(addr).await?)),
        TcpChoice::Default => match bind_tcp(DEFAULT_TCP).await {
            Ok(listener) => Ok(Tcp::On(listener)),
            Err(error) => {
                tracing::warn!(%error, "serving on the Unix socket only");
                Ok(Tcp::Off(default_port_taken(&error)))
            }
        },
    }
}

/// Why the default port could not be had, for `serve --status`.
fn default_port_taken(error: &ListenError) -> String {
    match error {
        ListenError::Tcp { source, .. } if source.kind() == io::ErrorKind::AddrInUse => format!(
            "{DEFAULT_TCP} is in use by another process (another user's daemon?); \
             the Unix socket serves alone, and `serve --port N` picks another port"
        ),
        error => error.to_string(),
    }
}

/// Writes a small file of ours, mode 0600, replacing any old one.
fn write_private(path: &Path, line: &str) -> Result<(), DaemonError> {
    let record_error = |source| DaemonError::Token {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(record_error)?;
    writeln!(file, "{line}").map_err(record_error)
}

/// A fresh token, written 0600 before TCP accepts.
fn write_token(path: &Path) -> Result<String, DaemonError> {
    let token = new_token().map_err(|source| DaemonError::Token {
        path: path.to_owned(),
        source,
    })?;
    write_private(path, &token)?;
    Ok(token)
}

/// A fresh bearer token for a TCP listener ([`Listeners::tcp`]): 256 bits
/// from the OS RNG, in hex.
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The signals the daemon handles, registered (so their default action,
/// which would kill it, no longer applies) before anything is visible to
/// the outside: a SIGTERM right after the socket appears stops it cleanly.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// SIGTERM, SIGINT and SIGQUIT stop the daemon cleanly (through `stop`);
/// SIGHUP reloads; SIGUSR1 and SIGUSR2, whose default would kill it, are
/// logged and ignored. Watches until `stop` is cancelled.
fn watch_signals(signals: Signals, stop: CancellationToken, reload: ReloadTrigger) {
    let Signals {
        mut terminate,
        mut interrupt,
        mut quit,
        mut hangup,
        mut user1,
        mut user2,
    } = signals;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = quit.recv() => tracing::info!("SIGQUIT received"),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading");
                    reload.request();
                    continue;
                }
                _ = user1.recv() => {
                    tracing::info!("SIGUSR1 received and ignored");
                    continue;
                }
                _ = user2.recv() => {
                    tracing::info!("SIGUSR2 received and ignored");
                    continue;
                }
                _ = stop.cancelled() => return,
            }
            stop.cancel();
            return;
        }
    });
}
