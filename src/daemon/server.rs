//! The daemon's core, apart from the process around it: serve the API on
//! listeners it is given, from a config and an environment it is given,
//! until a shutdown future resolves (or `POST /shutdown`, or idle exit);
//! then drain, suspend the agents and close the store. It installs no
//! signal handler, sets up no logging, writes no file outside the state dir
//! and reads no process environment, so one test process can run several;
//! [`super::serve`] wraps it with all of those.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::listeners::{Activity, Admission, Connections, UnixSocket};
use super::reload::Reloader;
use crate::api::{ApiContext, Control, Transport};
use crate::config::Config;
use crate::engine::Engine;
use crate::model::Clock;
use crate::paths::ensure_private_dir;
use crate::providers::{Keys, ProviderSettings};
use crate::store::Store;

/// How long in-flight requests get to finish once a stop begins, unless
/// told otherwise (`serve --drain-timeout`'s default).
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// The echo provider's pause between words unless told otherwise
/// (`serve --echo-delay`'s default).
const DEFAULT_ECHO_DELAY: Duration = Duration::from_millis(20);

/// Extra time, after the drain deadline, for cancelled requests to say so.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What a core runs from: where its state is, the config in effect at
/// start, and the environment its keys are looked up in.
#[derive(Clone)]
pub struct ServeConfig {
    /// S: the store (`store.db`, locked by `store.lock`); created 0700 if missing.
    pub state_dir: PathBuf,
    /// Read again, with `environment_file`, at every reload.
    pub config_file: PathBuf,
    /// `KEY=value` lines laid over `environment`, at start and at every reload.
    pub environment_file: PathBuf,
    /// The config in effect at start (the caller has read `config_file`).
    pub config: Config,
    /// The environment API keys are looked up in, below the environment
    /// file's lines: `serve` passes its process environment, a test what
    /// it likes. Kept for reloads.
    pub environment: HashMap<String, String>,
    /// How long in-flight requests get to finish once a stop begins.
    pub drain_timeout: Duration,
    /// Pause between the echo provider's words.
    pub echo_delay: Duration,
    /// Stop after this long without a connection (zero: never); `None`:
    /// the config's `daemon.idle_timeout` in effect.
    pub idle_timeout: Option<Duration>,
    /// Fired to reload, as SIGHUP does under `serve`.
    pub reload: ReloadTrigger,
    /// What the core dates messages, events, the ledger and approvals by
    /// and measures retention, `prune --older-than` and `since` against:
    /// the wall clock under `serve`; a test's [`Clock::adjustable`] lets
    /// it move time forward instead of sleeping.
    pub clock: Clock,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment's names only: its values include API keys.
        let mut names: Vec<&String> = self.environment.keys().collect();
        names.sort();
        f.debug_struct("ServeConfig")
            .field("state_dir", &self.state_dir)
            .field("config_file", &self.config_file)
            .field("environment_file", &self.environment_file)
            .field("config", &self.config)
            .field("environment", &names)
            .field("drain_timeout", &self.drain_timeout)
            .field("echo_delay", &self.echo_delay)
            .field("idle_timeout", &self.idle_timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// A core keeping its store in `state_dir`, configured by `config_file`
    /// (already read into `config`) and the `environment` file beside it,
    /// where `Paths` puts it; with an empty environment and `serve`'s
    /// defaults for the rest.
    pub fn new(state_dir: PathBuf, config_file: PathBuf, config: Config) -> Self {
        let environment_file = config_file
            .parent()
            .unwrap_or(Path::new("."))
            .join("environment");
        Self {
            state_dir,
            config_file,
            environment_file,
            config,
            environment: HashMap::new(),
            drain_timeout: DEFAULT_DRAIN,
            echo_delay: DEFAULT_ECHO_DELAY,
            idle_timeout: None,
            reload: ReloadTrigger::default(),
            clock: Clock::system(),
        }
    }
}

/// Asks a core to re-read its config and environment files. A request made
/// before the core serves, or while a reload runs, is kept and carried out
/// then; several such requests make one reload.
#[derive(Debug, Clone, Default)]
pub struct ReloadTrigger(Arc<Notify>);

impl ReloadTrigger {
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// A core ready to serve: its store open (and locked) and its keys and
/// provider settings loaded. What can stop a start fails here, before the
/// caller opens anything to the outside.
pub struct DaemonSetup {
    config: ServeConfig,
    store: Store,
    settings: ProviderSettings,
}

impl DaemonSetup {
    pub fn open(config: ServeConfig) -> Result<Self, DaemonError> {
        ensure_private_dir(&config.state_dir)?;
        let store = Store::open(&config.state_dir)?;
        let keys = Keys::load(&config.environment, &config.environment_file)?;
        let settings = ProviderSettings::new(config.config.clone(), keys, config.echo_delay)?;
        Ok(Self {
            config,
            store,
            settings,
        })
    }
}

/// The sockets a core serves on, already bound (by `serve`, by a service
/// manager, or by a test). At least one should be given.
#[derive(Default)]
pub struct Listeners {
    unix: Option<UnixSocket>,
    tcp: Option<(TcpListener, String)>,
    /// Control sockets bound again after the first one's path vanished:
    /// each replaces the one being served.
    replacements: Option<mpsc::Receiver<UnixSocket>>,
}

impl Listeners {
    pub fn new() -> Self {
        Self::default()
    }

    /// The control plane: every route, for this uid's processes only.
    pub fn unix(mut self, socket: UnixSocket) -> Self {
        self.unix = Some(socket);
        self
    }

    /// Where sockets that replace the control socket come from (`serve`
    /// re-binds its socket when its runtime dir is deleted).
    pub(crate) fn unix_replacements(mut self, replacements: mpsc::Receiver<UnixSocket>) -> Self {
        self.replacements = Some(replacements);
        self
    }

    /// The data plane: every request must carry `token` as its bearer token.
    pub fn tcp(mut self, listener: TcpListener, token: String) -> Self {
        self.tcp = Some((listener, token));
        self
    }
}

/// What the process around a core hears of its life; every method does
/// nothing unless the host says otherwise, which is what a test wants.
/// `serve` tells the service manager and the launcher, logs, changes the
/// log level and removes its token file.
pub(crate) trait Host: Send + Sync {
    /// The core accepts connections.
    fn ready(&self, _serving: &Serving<'_>) {}
    /// A reload begins.
    fn reloading(&self) {}
    /// A reload ended, in effect or refused; `live` agents run.
    fn reloaded(&self, _live: usize) {}
    /// Puts a reloaded log level (`RUST_LOG` syntax) in effect.
    fn set_log_level(&self, _directives: &str) -> Result<(), String> {
        Ok(())
    }
    /// The core no longer accepts connections and starts draining.
    fn stopping(&self) {}
}

/// What a core serves, for [`Host::ready`].
pub(crate) struct Serving<'a> {
    pub engine: &'a Engine,
    /// Cancelled once the core stops.
    pub stop: &'a CancellationToken,
    pub socket: Option<&'a UnixSocket>,
    pub tcp: Option<SocketAddr>,
}

/// A host that wants to hear nothing.
struct Quiet;

impl Host for Quiet {}

/// Serves the API on `listeners` until `shutdown` resolves (or `POST
/// /shutdown`, or the idle timeout), then lets in-flight requests finish
/// within the drain timeout, suspends every agent for the next start, and
/// returns once its tasks have ended, which closes the store (unless an
/// agent's worker outlived its stop timeout). Reload with the config's
/// [`ReloadTrigger`] or `POST /reload`. Needs a multi-threaded runtime (a
/// reload blocks in place).
pub async fn serve_on(
    listeners: Listeners,
    setup: DaemonSetup,
    shutdown: impl Future,
) -> Result<(), DaemonError> {
    run(listeners, setup, shutdown, Arc::new(Quiet)).await
}

/// [`serve_on`], telling `host` what happens.
pub(crate) async fn run(
    listeners: Listeners,
    setup: DaemonSetup,
    shutdown: impl Future,
    host: Arc<dyn Host>,
) -> Result<(), DaemonError> {
    let DaemonSetup {
        config,
        store,
        settings,
    } = setup;
    let engine = Engine::restore(settings, store, config.clock.clone())?;
    let stop = CancellationToken::new();
    let reloader = Reloader::new(&config, engine.clone(), host.clone());
    let Listeners {
        unix,
        tcp,
        mut replacements,
    } = listeners;
    let (tcp, token) = tcp.unzip();
    let tcp_addr = tcp_address(tcp.as_ref());
    let ctx = Arc::new(
        ApiContext::new(engine.clone(), stop.clone(), token, reloader.clone())
            .with_tcp_address(tcp_addr),
    );
    let activity = Activity::new();
    let mut accepting = Accepting {
        unix,
        unix_admission: Admission::new(activity.clone()),
        tcp: tcp.as_ref(),
        tcp_admission: Admission::new(activity.clone()),
    };
    let mut background: Vec<_> =
        spawn_background(&config, &engine, activity, reloader, &stop).into();
    background.push(tokio::spawn(count_refusals(ctx.clone(), stop.clone())));
    host.ready(&Serving {
        engine: &engine,
        stop: &stop,
        socket: accepting.unix.as_ref(),
        tcp: tcp_addr,
    });
    let mut connections = Connections::new();
    accept_until_stopped(
        &ctx,
        &mut accepting,
        &mut replacements,
        &mut connections,
        &stop,
        shutdown,
    )
    .await;

    tracing::info!("shutting down: no longer accepting connections");
    // Denied now, not at the drain's deadline: a turn waiting for an
    // answer hears why, records it and finishes within the drain. (Done
    // already where the stop began, so event readers saw it; this catches
    // any other way the core was stopped.)
    engine.approvals().deny_all(crate::engine::SHUTTING_DOWN);
    // Event streams end with this line, so watchers do not hold the drain up.
    engine.events().stopping();
    host.stopping();
    drop(accepting);
    drop(tcp);
    let cancel = || engine.suspend_all();
    connections
        .drain(config.drain_timeout, cancel, CANCEL_GRACE)
        .await;
    // Suspended, not ended: the agents come back on the next start.
    let report = engine.suspend_all().await;
    tracing::info!(agents = report.succeeded.len(), "stopped");
    // The last holders of the engine: once they end, the store closes and
    // its lock is free for the next start, in this process or another.
    end_all(background).await;
    Ok(())
}

/// Where `tcp` listens, with a warning if that is beyond loopback.
fn tcp_address(tcp: Option<&TcpListener>) -> Option<SocketAddr> {
    let addr = tcp.and_then(|l| l.local_addr().ok());
    if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            %addr,
            "listening beyond loopback (--allow-remote): anyone who can reach this address and holds the token can use your agents and keys; prefer SSH forwarding of the Unix socket"
        );
    }
    addr
}

/// The core's own tasks besides the connections: retention, idle exit and
/// reloads. Each ends when `stop` is cancelled.
fn spawn_background(
    config: &ServeConfig,
    engine: &Engine,
    activity: Arc<Activity>,
    reloader: Arc<Reloader>,
    stop: &CancellationToken,
) -> [JoinHandle<()>; 3] {
    [
        tokio::spawn(prune_daily(engine.clone(), stop.clone())),
        tokio::spawn(exit_when_idle(
            activity,
            config.idle_timeout,
            engine.clone(),
            stop.clone(),
        )),
        tokio::spawn(reload_when_asked(
            config.reload.clone(),
            reloader,
            stop.clone(),
        )),
    ]
}

/// Writes the count of refusals not logged one by one, once an interval
/// and once more at the stop.
async fn count_refusals(ctx: Arc<ApiContext>, stop: CancellationToken) {
    let mut every = tokio::time::interval(crate::api::refusals::INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => ctx.refusals.flush(),
        }
    }
    ctx.refusals.flush();
}

/// Waits for tasks that end when the core's stop token is cancelled.
async fn end_all(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for task in tasks {
        if let Err(error) = task.await
            && error.is_panic()
        {
            tracing::error!("a background task panicked");
        }
    }
}

/// The open listeners, each with its own admission rules.
struct Accepting<'a> {
    unix: Option<UnixSocket>,
    unix_admission: Admission,
    tcp: Option<&'a TcpListener>,
    tcp_admission: Admission,
}

async fn accept_until_stopped(
    ctx: &Arc<ApiContext>,
    listeners: &mut Accepting<'_>,
    replacements: &mut Option<mpsc::Receiver<UnixSocket>>,
    connections: &mut Connections,
    stop: &CancellationToken,
    shutdown: impl Future,
) {
    let bound = listeners.tcp.and_then(|l| l.local_addr().ok());
    let tcp = Transport::Tcp {
        port: bound.map_or(0, |a| a.port()),
        remote: bound.is_some_and(|a| !a.ip().is_loopback()),
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut shutdown => {
                // Before the token: event streams end when it fires, and
                // their readers should see each denial first.
                ctx.engine.approvals().deny_all(crate::engine::SHUTTING_DOWN);
                // Everything else the core runs stops on this token.
                stop.cancel();
                return;
            }
            accepted = accept_unix(listeners.unix.as_ref()) => match accepted {
                Ok(stream) => listeners.unix_admission.admit_unix(ctx, stream, connections),
                Err(error) => accept_failed(error).await,
            },
            accepted = accept_tcp(listeners.tcp) => match accepted {
                Ok(stream) => listeners.tcp_admission.admit_tcp(ctx, tcp, stream, connections),
                Err(error) => accept_failed(error).await,
            },
            () = connections.reap() => {}
            socket = next_replacement(replacements) => match socket {
                Some(socket) => listeners.replace_unix(socket),
                // Nobody re-binds any more: stop asking.
                None => *replacements = None,
            },
        }
    }
}

impl Accepting<'_> {
    /// Serves `socket` from now on in place of the control socket. (The
    /// old one, dropped here, removes only its own file, long gone.)
    fn replace_unix(&mut self, socket: UnixSocket) {
        tracing::info!(socket = %socket.describe(), "serving the re-created control socket");
        self.unix = Some(socket);
    }
}

async fn next_replacement(
    replacements: &mut Option<mpsc::Receiver<UnixSocket>>,
) -> Option<UnixSocket> {
    match replacements {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn accept_unix(unix: Option<&UnixSocket>) -> std::io::Result<UnixStream> {
    match unix {
        Some(socket) => Ok(socket.listener.accept().await?.0),
        None => std::future::pending().await,
    }
}

async fn accept_tcp(tcp: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match tcp {
        Some(listener) => Ok(listener.accept().await?.0),
        None => std::future::pending().await,
    }
}

/// Out of file descriptors and the like: say so and pause rather than spin.
async fn accept_failed(error: std::io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Reloads whenever `trigger` fires, one reload at a time, until `stop`.
async fn reload_when_asked(
    trigger: ReloadTrigger,
    control: Arc<Reloader>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = trigger.0.notified() => {}
        }
        // The outcome is logged by the reload itself.
        let control = control.clone();
        let _ = tokio::task::spawn_blocking(move || control.reload()).await;
    }
}

/// `[history] retention`: at start and then once a day, removes ended
/// conversations older than the retention in effect (a reload may change
/// it; unset or 0: keep everything).
async fn prune_daily(engine: Engine, stop: CancellationToken) {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    loop {
        let retention = engine.settings().config.history.retention;
        if let Some(keep) = retention.filter(|keep| !keep.is_zero()) {
            let cutoff = engine.clock().rfc3339_ago(keep);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_the_environment_but_shows_no_value() {
        let mut config = ServeConfig::new("s".into(), "c.toml".into(), Config::default());
        config
            .environment
            .insert("OPENAI_API_KEY".into(), "sk-secret".into());
        let shown = format!("{config:?}");
        assert!(shown.contains("OPENAI_API_KEY"), "{shown}");
        assert!(!shown.contains("sk-secret"), "{shown}");
    }
}
