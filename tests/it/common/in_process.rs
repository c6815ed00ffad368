//! An in-process daemon: the daemon's core (`daemon::serve_on`) on a
//! runtime of its own inside the test process, on a real Unix socket (and,
//! if asked, a loopback TCP listener), with the helpers the process-based
//! [`Daemon`](super::Daemon) has. Its log goes to `daemon.log` in the env's
//! directory through a subscriber set on its runtime's threads only, so
//! several can run side by side. The CLI helper runs the real binary
//! against its socket.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::BufReader;

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;

use orchestration::config::Config;
use orchestration::daemon::{
    DaemonError, DaemonSetup, Listeners, ReloadTrigger, ServeConfig, bind_unix, new_token, serve_on,
};

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Env, PATIENCE, open_events};

thread_local! {
    /// The log of the in-process daemon whose runtime runs this thread.
    static LOG: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// A daemon served by this test process; stopped (its shutdown future
/// resolved, then waited for) when dropped.
pub struct InProcess {
    pub env: Env,
    pub port: Option<u16>,
    /// Fires a reload, as SIGHUP does for `serve`.
    pub reload: ReloadTrigger,
    pub(super) token: Option<String>,
    log: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), DaemonError>>>,
    runtime: Option<Runtime>,
}

impl InProcess {
    /// A daemon on the Unix socket only, in a fresh env.
    pub fn start() -> Self {
        Self::start_in(Env::new(), false)
    }

    /// A daemon that also listens on a free loopback TCP port, with a token.
    pub fn start_tcp() -> Self {
        Self::start_in(Env::new(), true)
    }

    /// A daemon on `env`'s socket (and TCP if `tcp`): its state dir, its
    /// config file and the environment file beside it; its environment is
    /// `env.vars`, nothing of this process's.
    pub fn start_in(env: Env, tcp: bool) -> Self {
        Self::start_with(env, tcp, |_| {})
    }

    /// As [`Daemon::start`](super::Daemon::start): no TCP, plus the `serve`
    /// flags `extra` (see [`Self::serve`]). Moving a test off a process
    /// changes its constructor only.
    pub fn start_flags(extra: &[&str]) -> Self {
        let mut flags = vec!["--no-tcp"];
        flags.extend_from_slice(extra);
        Self::serve(Env::new(), &flags)
    }

    /// A daemon on `env` configured by the `serve` flags that are the core's
    /// to honour: `--no-tcp`, `--port N` (a TCP listener with a token; on a
    /// free port of its own, found in `port`), `--echo-delay`,
    /// `--drain-timeout`, `--idle-timeout`. Without `--port` or `--no-tcp`
    /// it listens on TCP, as `serve` does. Any other flag is a process's and
    /// panics. `ORCHESTRATION_ECHO_DELAY` in `env.vars` counts, as for `serve`.
    pub fn serve(env: Env, flags: &[&str]) -> Self {
        let mut tcp = Some(0);
        let mut echo_delay = env
            .vars
            .iter()
            .rev()
            .find(|(name, _)| name == "ORCHESTRATION_ECHO_DELAY")
            .map(|(_, value)| duration(value));
        let mut drain = None;
        let mut idle = None;
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            let mut value = || {
                *flags
                    .next()
                    .unwrap_or_else(|| panic!("{flag} needs a value"))
            };
            match *flag {
                "--no-tcp" => tcp = None,
                "--port" => {
                    let port = value().parse().expect("--port takes a number");
                    tcp = Some(port);
                }
                "--echo-delay" => echo_delay = Some(duration(value())),
                "--drain-timeout" => drain = Some(duration(value())),
                "--idle-timeout" => idle = Some(duration(value())),
                other => panic!("{other} is not a flag the in-process core takes"),
            }
        }
        Self::start_on(env, tcp, |config| {
            if let Some(delay) = echo_delay {
                config.echo_delay = delay;
            }
            if let Some(drain) = drain {
                config.drain_timeout = drain;
            }
            if idle.is_some() {
                config.idle_timeout = idle;
            }
        })
    }

    /// [`Self::start_in`], with `adjust` changing the core's config first.
    pub fn start_with(env: Env, tcp: bool, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::start_on(env, tcp.then_some(0), adjust)
    }

    /// [`Self::start_with`], on TCP port `tcp` if given (0: any free one).
    pub fn start_on(env: Env, tcp: Option<u16>, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let log = env.dir.path().join("daemon.log");
        let runtime = runtime(&log);
        let mut config = serve_config(&env);
        adjust(&mut config);
        let reload = config.reload.clone();
        let setup = DaemonSetup::open(config).expect("open the daemon's store and keys");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(env.runtime_dir())
            .expect("runtime dir");
        let (listeners, port, token) = runtime.block_on(listen(&env, tcp));
        let (shutdown, stopped) = oneshot::channel::<()>();
        // Whatever the receiver gets, a value or a dropped sender, stops it.
        let served = runtime.spawn(serve_on(listeners, setup, stopped));
        Self {
            env,
            port,
            reload,
            token,
            log,
            shutdown: Some(shutdown),
            served: Some(served),
            runtime: Some(runtime),
        }
    }

    /// Resolves the shutdown future and waits for the core to return.
    pub fn stop(&mut self) -> Result<(), DaemonError> {
        drop(self.shutdown.take());
        self.wait_exit()
    }

    /// Waits for the core to return (after `POST /shutdown`, say).
    pub fn wait_exit(&mut self) -> Result<(), DaemonError> {
        let served = self.served.take().expect("the daemon has not been stopped");
        let runtime = self.runtime.as_ref().expect("runtime");
        let ended = runtime.block_on(bounded(served));
        match ended {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => panic!("the daemon's task failed: {error}\n{}", self.log()),
            Err(_) => panic!("the daemon did not stop:\n{}", self.log()),
        }
    }

    /// Whether the core has returned.
    pub fn finished(&self) -> bool {
        self.served.as_ref().is_none_or(JoinHandle::is_finished)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid, as `/health` reports it: this test process's.
    pub fn pid(&self) -> i32 {
        std::process::id() as i32
    }

    /// Opens `GET /events` and returns it once its head arrived.
    pub fn stream_events(&self) -> BufReader<UnixStream> {
        open_events(&self.env.socket())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if let Some(served) = self.served.take() {
            let _ = runtime.block_on(bounded(served));
        }
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    }
}

/// Waits for the core's task, for longer than its default drain deadline
/// (10s) but not for ever. (Inside the runtime: a timer needs one.)
async fn bounded<T>(
    served: JoinHandle<T>,
) -> Result<Result<T, tokio::task::JoinError>, tokio::time::error::Elapsed> {
    tokio::time::timeout(PATIENCE * 2, served).await
}

/// The core's config for `env`, as `serve` would build it there, but with
/// `env.vars` as the whole environment and `env.clock` as its clock.
fn serve_config(env: &Env) -> ServeConfig {
    let config_file = env.dir.path().join("config.toml");
    let config = Config::load(&config_file).expect("the env's config loads");
    let mut serve = ServeConfig::new(env.dir.path().join("state"), config_file, config);
    serve.environment = env.vars.iter().cloned().collect::<HashMap<_, _>>();
    serve.clock = env.clock.clone();
    serve
}

/// A runtime of the daemon's own, whose threads log to `log`.
fn runtime(log: &std::path::Path) -> Runtime {
    let file = std::fs::File::create(log).expect("log file");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .with_env_filter("info")
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("in-process-daemon")
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&dispatch);
            LOG.with(|slot| *slot.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| LOG.with(|slot| drop(slot.borrow_mut().take())))
        .build()
        .expect("runtime")
}

/// Binds `env`'s socket and, with `tcp`, that loopback port (0: any free
/// one) with a fresh token.
async fn listen(env: &Env, tcp: Option<u16>) -> (Listeners, Option<u16>, Option<String>) {
    let listeners = Listeners::new().unix(bind_unix(&env.socket()).expect("bind the socket"));
    let Some(port) = tcp else {
        return (listeners, None, None);
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind TCP");
    let port = listener.local_addr().expect("TCP address").port();
    // serve's own token generator.
    let token = new_token().expect("a token");
    (
        listeners.tcp(listener, token.clone()),
        Some(port),
        Some(token),
    )
}

/// A duration as the `serve` flags take it: the crate's own parser.
fn duration(text: &str) -> std::time::Duration {
    orchestration::duration::parse(text).unwrap_or_else(|e| panic!("duration {text:?}: {e}"))
}
