//! The daemon (`orchestration serve`): its lifecycle from start to a clean
//! exit. Start: (with `--daemon`, fork into the background first) private
//! dirs, PID-file lock, listeners (passed by the service manager, or bound),
//! token, stored agents. Ready: tell the service manager or the launcher,
//! accept connections. Stop (SIGTERM, SIGINT, `POST /shutdown`, idle): stop
//! accepting, drain in-flight requests within a deadline, suspend agents,
//! remove the files it created.

mod activation;
pub mod detach;
mod listeners;
mod logging;
mod notify;
mod reload;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiContext, Control, Transport};
use crate::config::Config;
use crate::engine::Engine;
use crate::paths::DEFAULT_TCP;
use crate::paths::{PathError, Paths, ensure_private_dir};
use crate::pidfile::{PidFile, PidFileError};
use crate::providers::{Keys, ProviderSettings, SetupError};
use crate::store::{Store, StoreError};
use activation::{ActivationError, Inherited};
use detach::{DetachError, Reporter, Side};
use listeners::{Activity, Admission, ListenError, UnixSocket, bind_tcp, bind_unix};

/// Extra time, after the drain deadline, for cancelled requests to say so.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

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
    #[error("cannot write the TCP token to {path}: {source}")]
    Token { path: String, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up providers: {0}")]
    Providers(#[from] SetupError),
    #[error("environment file {0}")]
    Environment(String),
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
    match detach::detach(&options.paths.log_file)? {
        Side::Launcher(launcher) => {
            launcher.wait()?;
            Ok(Detached::Launched)
        }
        Side::Daemon(mut reporter) => {
            let result = serve_reporting(options, Some(&mut reporter));
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

fn serve_reporting(
    options: ServeOptions,
    reporter: Option<&mut Reporter>,
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

async fn run(
    options: ServeOptions,
    inherited: Option<Inherited>,
    reporter: Option<&mut Reporter>,
) -> Result<(), DaemonError> {
    let paths = &options.paths;
    let signals = Signals::register()?;
    // The store first: a damaged or locked one must stop the start before
    // anything is listening.
    let store = Store::open(&paths.state_dir)?;
    let activated = inherited.is_some();
    let (unix, tcp) = open_listeners(&options, inherited).await?;
    let token = match &tcp {
        Some(_) => Some(write_token(&paths.token_file)?),
        None => {
            let _ = std::fs::remove_file(&paths.token_file);
            None
        }
    };

    let stop = CancellationToken::new();
    let keys = Keys::load(&paths.environment_file).map_err(DaemonError::Environment)?;
    let providers = ProviderSettings::new(options.config.clone(), keys, options.echo_delay)?;
    let engine = Engine::restore(providers, store)?;
    let reloader = reload::Reloader::new(
        paths.clone(),
        engine.clone(),
        options.echo_delay,
        logging::level(),
    );
    watch_signals(signals, stop.clone(), reloader.clone());
    let ctx = Arc::new(ApiContext::new(
        engine.clone(),
        stop.clone(),
        token,
        reloader,
    ));
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(addr) = tcp_addr.filter(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            %addr,
            "listening beyond loopback (--allow-remote): anyone who can reach this address and holds the token can use your agents and keys; prefer SSH forwarding of the Unix socket"
        );
    }

    let graceful = GracefulShutdown::new();
    let activity = Activity::new();
    let listeners = Listeners {
        unix: unix.as_ref(),
        unix_admission: Admission::new(activity.clone()),
        tcp: tcp.as_ref(),
        tcp_admission: Admission::new(activity.clone()),
    };
    tokio::spawn(prune_daily(engine.clone(), stop.clone()));
    tokio::spawn(exit_when_idle(
        activity,
        options.idle_timeout,
        engine.clone(),
        stop.clone(),
    ));
    tracing::info!(
        pid = std::process::id(),
        socket = %unix.as_ref().map_or("off".to_owned(), UnixSocket::describe),
        tcp = %tcp_addr.map_or("off".to_owned(), |a| a.to_string()),
        activated,
        "orchestration {} ready",
        crate::VERSION
    );
    notify::ready(engine.live_count());
    notify::spawn_reporters(&engine, &stop);
    if let Some(reporter) = reporter {
        reporter.ready();
    }
    accept_until_stopped(&ctx, &listeners, &graceful, &stop).await;

    tracing::info!("shutting down: no longer accepting connections");
    // Event streams end with this line, so watchers do not hold the drain up.
    engine.events().stopping();
    notify::stopping();
    drop(listeners);
    drop(unix);
    drop(tcp);
    if ctx.tcp_token.is_some() {
        let _ = std::fs::remove_file(&paths.token_file);
    }
    drain(graceful, &engine, options.drain_timeout).await;
    // Suspended, not ended: the agents come back on the next start.
    let report = engine.suspend_all().await;
    tracing::info!(agents = report.succeeded.len(), "stopped");
    Ok(())
}

/// The sockets passed by the service manager, exactly those; else the ones
/// the options ask for, bound here.
async fn open_listeners(
    options: &ServeOptions,
    inherited: Option<Inherited>,
) -> Result<(Option<UnixSocket>, Option<TcpListener>), DaemonError> {
    let Some(inherited) = inherited else {
        let unix = bind_unix(&options.paths.socket)?;
        return Ok((Some(unix), open_tcp(options.tcp).await?));
    };
    let unix = inherited.unix.map(UnixSocket::inherited).transpose()?;
    let tcp = inherited.tcp.map(TcpListener::from_std).transpose()?;
    if let Some(addr) = tcp.as_ref().and_then(|l| l.local_addr().ok())
        && !addr.ip().is_loopback()
        && !options.allow_remote
    {
        return Err(DaemonError::NotLoopback(addr));
    }
    Ok((unix, tcp))
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

async fn open_tcp(choice: TcpChoice) -> Result<Option<TcpListener>, DaemonError> {
    match choice {
        TcpChoice::Off => Ok(None),
        TcpChoice::Explicit(addr) => Ok(Some(bind_tcp(addr).await?)),
        TcpChoice::Default => match bind_tcp(DEFAULT_TCP).await {
            Ok(listener) => Ok(Some(listener)),
            Err(error) => {
                tracing::warn!(%error, "serving on the Unix socket only");
                Ok(None)
            }
        },
    }
}

/// A fresh 256-bit token from the OS RNG, written 0600 before TCP accepts.
fn write_token(path: &Path) -> Result<String, DaemonError> {
    let token_error = |source| DaemonError::Token {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(token_error)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(token_error)?;
    writeln!(file, "{token}").map_err(token_error)?;
    Ok(token)
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

/// SIGTERM, SIGINT and SIGQUIT stop the daemon cleanly; SIGHUP reloads;
/// SIGUSR1 and SIGUSR2, whose default would kill it, are logged and ignored.
fn watch_signals(signals: Signals, stop: CancellationToken, control: Arc<dyn Control>) {
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
                    // The outcome is logged by the reload itself.
                    let control = control.clone();
                    let _ = tokio::task::spawn_blocking(move || control.reload()).await;
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

/// `[history] retention`: at start and then once a day, removes ended
/// conversations older than the retention in effect (a reload may change
/// it; unset or 0: keep everything).
async fn prune_daily(engine: Engine, stop: CancellationToken) {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    loop {
        let retention = engine.settings().config.history.retention;
        if let Some(keep) = retention.filter(|keep| !keep.is_zero()) {
            let cutoff = crate::model::rfc3339_ago(keep);
            match engine.prune(&cutoff, false) {
                Ok(report) if !report.conversations.is_empty() => tracing::info!(
                    conversations = report.conversations.len(),
                    freed = report.size_before.saturating_sub(report.size_after),
                    "history retention: pruned ended conversations"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "history retention: prune failed"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(DAY) => {}
        }
    }
}

/// The idle timeout in effect: `--idle-timeout` if given, else the
/// config's (which a reload may change); zero means never.
fn idle_timeout(flag: Option<Duration>, engine: &Engine) -> Option<Duration> {
    flag.or(engine.settings().config.daemon.idle_timeout)
        .filter(|idle| !idle.is_zero())
}

/// Stops the daemon once no connection has been open for the idle timeout
/// in effect. Agents are durable, so live agents do not keep it running:
/// they come back with the next start.
async fn exit_when_idle(
    activity: Arc<Activity>,
    flag: Option<Duration>,
    engine: Engine,
    stop: CancellationToken,
) {
    // Looked at again at least every second, so a reload that sets or
    // changes the timeout takes effect.
    const RECHECK: Duration = Duration::from_secs(1);
    let idle = loop {
        let idle = idle_timeout(flag, &engine);
        let wake = match idle.map(|idle| (idle, activity.idle_deadline(idle))) {
            Some((idle, Some(deadline))) if deadline <= std::time::Instant::now() => break idle,
            Some((_, Some(deadline))) => {
                tokio::time::Instant::from_std(deadline).min(tokio::time::Instant::now() + RECHECK)
            }
            // No timeout, or a connection is open: look again later.
            _ => tokio::time::Instant::now() + RECHECK,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
    };
    tracing::info!(
        idle_s = idle.as_secs_f64(),
        "idle: no connection for the idle timeout; stopping"
    );
    stop.cancel();
}

/// The open listeners, each with its own admission rules.
struct Listeners<'a> {
    unix: Option<&'a UnixSocket>,
    unix_admission: Admission,
    tcp: Option<&'a TcpListener>,
    tcp_admission: Admission,
}

async fn accept_until_stopped(
    ctx: &Arc<ApiContext>,
    listeners: &Listeners<'_>,
    graceful: &GracefulShutdown,
    stop: &CancellationToken,
) {
    let bound = listeners.tcp.and_then(|l| l.local_addr().ok());
    let tcp = Transport::Tcp {
        port: bound.map_or(0, |a| a.port()),
        remote: bound.is_some_and(|a| !a.ip().is_loopback()),
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            accepted = accept_unix(listeners.unix) => match accepted {
                Ok((stream, _)) => listeners.unix_admission.admit_unix(ctx, stream, graceful),
                Err(error) => accept_failed(error).await,
            },
            accepted = accept_tcp(listeners.tcp) => match accepted {
                Ok((stream, _)) => listeners.tcp_admission.admit(ctx, tcp, stream, graceful),
                Err(error) => accept_failed(error).await,
            },
        }
    }
}

async fn accept_unix(
    unix: Option<&UnixSocket>,
) -> io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match unix {
        Some(socket) => socket.listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_tcp(tcp: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match tcp {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Out of file descriptors and the like: say so and pause rather than spin.
async fn accept_failed(error: io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Lets in-flight requests finish; past the deadline, cancels every running
/// exchange (partial replies are recorded as interrupted) and gives the
/// connections a moment to report that before they are dropped.
async fn drain(graceful: GracefulShutdown, engine: &Engine, deadline: Duration) {
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(deadline, &mut drained).await.is_ok() {
        return;
    }
    tracing::warn!(
        deadline_s = deadline.as_secs_f64(),
        "requests still running at the drain deadline; cancelling them"
    );
    engine.suspend_all().await;
    if tokio::time::timeout(CANCEL_GRACE, &mut drained)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close; dropping them");
    }
}
