//! `orchestration serve`: run the daemon in the foreground (`--status` and
//! `--stop` ask about or stop a running one instead).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill};

use super::{CliError, block_on, output};
use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::daemon::{self, DaemonError, ServeOptions, TcpChoice};
use crate::duration;
use crate::paths::{Paths, TcpRecord};
use crate::pidfile::{Holder, holder, lock_holder};
use crate::wire::Reloaded;

/// `serve --help` (and the serve man page): what the daemon is and how it is guarded.
pub const LONG_ABOUT: &str = "\
Run the daemon in the foreground, or ask about or stop a running one.

The daemon holds the agents and their conversations and answers on a Unix socket (the control \
plane) and, unless --no-tcp, on a loopback TCP port (the data plane).

SECURITY: the daemon holds your API keys, so only you can reach it. The Unix socket is mode 0600 \
in a 0700 directory, and every connection's peer credentials must match the daemon's uid, else \
403 and the connection is closed. TCP needs `Authorization: Bearer` with the token in \
R/http.token (0600, new on every start), a Host of localhost or a loopback address (against DNS \
rebinding) and no foreign Origin (against cross-site requests); POST /shutdown and DELETE \
/agents and POST /reload are refused there, and only canonical paths are routed. Binding a \
non-loopback address needs --allow-remote; prefer forwarding the Unix socket over SSH (ssh -L \
/tmp/orch.sock:$XDG_RUNTIME_DIR/orchestration/daemon.sock). Request heads are limited to 64 KiB \
and bodies to 1 MiB; slow or idle connections are closed after [limits] header_timeout and \
body_timeout; connections per listener and provider calls in flight are capped. API keys are \
never logged, returned, or put on a command line; a key the daemon holds goes only to its own \
provider's or profile's URL, and is scrubbed from upstream error text.

RELOAD: SIGHUP, `serve --reload` or `systemctl --user reload orchestration` re-read the config \
file and the environment file beside it (KEY=value lines) without a restart; a file that does \
not load changes nothing and the reload says why. SIGTERM, SIGINT and SIGQUIT stop the daemon \
cleanly; SIGUSR1 and SIGUSR2 are ignored. An agent that cannot reach its model at a start (a \
missing key, a vanished profile) comes back suspended, never ended.";

/// How long `--stop` waits beyond the daemon's default drain deadline.
const STOP_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on 127.0.0.1:N instead of the default TCP port 7862.
    #[arg(long, value_name = "N", conflicts_with_all = ["listen", "no_tcp"])]
    pub port: Option<u16>,
    /// Listen on this loopback address (e.g. 127.0.0.1:9000 or [::1]:7862).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_tcp")]
    pub listen: Option<SocketAddr>,
    /// Serve on the Unix socket only.
    #[arg(long)]
    pub no_tcp: bool,
    /// Allow --listen on a non-loopback address. The token is still required, but anyone who can
    /// reach the address may try; prefer SSH forwarding of the Unix socket.
    #[arg(long)]
    pub allow_remote: bool,
    /// How long in-flight requests may run once the daemon is told to stop; then they are cancelled.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = duration::parse)]
    pub drain_timeout: Duration,
    /// Exit cleanly after this long with no connection, request or open stream (e.g. 10m); 0 means
    /// never. Default: the config's daemon.idle_timeout, else never. Live agents do not keep the
    /// daemon up: they are stored and come back on the next start.
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub idle_timeout: Option<Duration>,
    /// Fork into the background: the command returns once the daemon serves (exit 0) or with the
    /// daemon's startup error (exit 1). Its output goes to S/daemon.log. Ignored under systemd or
    /// launchd, which track the process they started.
    #[arg(long, conflicts_with_all = ["status", "stop"])]
    pub daemon: bool,
    /// Pause between the echo provider's words.
    #[arg(long, value_name = "DUR", default_value = "20ms", value_parser = duration::parse, env = "ORCHESTRATION_ECHO_DELAY")]
    pub echo_delay: Duration,
    /// Say whether a daemon is running (exit 0) or not (exit 3), and print its health, when its
    /// config was loaded, and whether the last reload failed.
    #[arg(long, conflicts_with_all = ["stop", "port", "listen", "no_tcp"])]
    pub status: bool,
    /// Make the running daemon re-read config.toml and the environment file (keys) without a
    /// restart, and wait for the outcome: exit 0 once the files are in effect (also when nothing
    /// in them changed); exit 1 with the reason when one does not load, and then the daemon keeps
    /// the settings it had. Same as SIGHUP or `systemctl --user reload orchestration`.
    #[arg(long, conflicts_with_all = ["status", "stop", "daemon", "port", "listen", "no_tcp"])]
    pub reload: bool,
    /// Stop the running daemon gracefully and wait until it has exited.
    #[arg(long, conflicts_with_all = ["port", "listen", "no_tcp"])]
    pub stop: bool,
}

pub fn run(args: ServeArgs, paths: Paths, json: bool) -> Result<(), CliError> {
    if args.status {
        return status(&paths, json);
    }
    if args.stop {
        return stop(&paths);
    }
    if args.reload {
        return reload(&paths, json);
    }
    let config = Config::load(&paths.config_file)?;
    let tcp = match (args.no_tcp, args.port, args.listen) {
        (true, _, _) => TcpChoice::Off,
        (_, Some(port), _) => {
            TcpChoice::Explicit(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        }
        (_, _, Some(addr)) => TcpChoice::Explicit(addr),
        _ => configured_listener(&config, &paths)?,
    };
    let options = ServeOptions {
        paths,
        tcp,
        drain_timeout: args.drain_timeout,
        echo_delay: args.echo_delay,
        config,
        allow_remote: args.allow_remote,
        idle_timeout: args.idle_timeout,
    };
    if !args.daemon {
        return Ok(daemon::serve(options)?);
    }
    let log = options.paths.log_file.clone();
    let pid_file = options.paths.pid_file.clone();
    if daemon::serve_detached(options)? == daemon::Detached::Stopped {
        return Ok(());
    }
    let pid = match holder(&pid_file) {
        Holder::Daemon(Some(pid)) => pid.to_string(),
        _ => "unknown".to_owned(),
    };
    output::line(&format!(
        "orchestration daemon started (pid {pid}; log {})",
        log.display()
    ))
}

/// The listener `daemon.listen` in the config asks for, if any.
fn configured_listener(config: &Config, paths: &Paths) -> Result<TcpChoice, CliError> {
    let Some(listen) = config.daemon.listen.as_deref() else {
        return Ok(TcpChoice::Default);
    };
    if listen == "off" {
        return Ok(TcpChoice::Off);
    }
    let parsed = listen.parse().map_err(|source| DaemonError::BadListen {
        config_file: paths.config_file.clone(),
        value: listen.to_owned(),
        source,
    });
    Ok(TcpChoice::Explicit(parsed?))
}

fn status(paths: &Paths, json: bool) -> Result<(), CliError> {
    let client = Client::new(paths)?;
    let health = match block_on(client.health())? {
        Ok(health) => health,
        Err(error @ ClientError::Unreachable { .. }) => {
            // This runtime dir's daemon is not the one a named socket asked about.
            if paths.socket_explicit {
                return Err(error.into());
            }
            if let Holder::Daemon(pid) = holder(&paths.pid_file) {
                let pid = pid.map_or("unknown".into(), |p| p.to_string());
                return Err(CliError::Failed(format!(
                    "daemon pid {pid} holds {} but does not answer on {}; \
                     `orchestration serve --stop` stops it",
                    paths.pid_file.display(),
                    client.endpoint()
                )));
            }
            // Its runtime dir deleted, a daemon still holds the store.
            if let Some(pid) = lock_holder(&paths.store_lock()) {
                return Err(CliError::Failed(format!(
                    "daemon pid {pid} is running (it holds {}) but cannot be reached: {} is gone; \
                     `orchestration serve --stop` stops it, and the next command starts a fresh one",
                    paths.store_lock().display(),
                    client.endpoint()
                )));
            }
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    if json {
        return output::json(&health);
    }
    let mut text = format!(
        "orchestration is running\n  pid:     {}\n  version: {}\n  uptime:  {}s\n  agents:  {}\n  socket:  {}",
        health.pid,
        health.version,
        health.uptime_s,
        health.agents,
        paths.socket.display()
    );
    // The record beside the token is this runtime dir's daemon's: a named
    // socket may lead to another one.
    if !paths.socket_explicit {
        let tcp = match TcpRecord::read(&paths.address_file) {
            Some(TcpRecord::Serving(addr)) => addr.to_string(),
            Some(TcpRecord::Off(why)) => format!("off: {why}"),
            None => "unknown (no record)".to_owned(),
        };
        text.push_str(&format!("\n  tcp:     {tcp}"));
        // The daemon keeps the deleted file open and refuses writes (507).
        let store = paths.state_dir.join("store.db");
        if !store.exists() {
            text.push_str(&format!(
                "\n  store:   DELETED: {} is gone, so the daemon refuses every write; \
                 `orchestration serve --stop`, then any command, starts afresh",
                store.display()
            ));
        }
    }
    if let Some(config) = &health.config {
        text.push_str(&format!(
            "\n  config:  {} (loaded {})",
            config.path,
            super::output::timestamp(&config.loaded_at)
        ));
        if let Some(error) = &config.last_reload_error {
            text.push_str(&format!("\n  last reload FAILED: {error}"));
        }
    }
    for budget in &health.budgets {
        text.push_str(&format!(
            "\n  budget:  {}",
            super::usage::budget_line(budget)
        ));
    }
    output::line(&text)
}

/// `serve --reload`: asks the daemon on the Unix socket to reload, and
/// reports the outcome. Any refusal is exit 1 (the operation failed).
fn reload(paths: &Paths, json: bool) -> Result<(), CliError> {
    let client = Client::new(paths)?;
    let reloaded: Reloaded = match block_on(client.reload())? {
        Ok(reloaded) => reloaded,
        Err(ClientError::Api { detail, .. }) => return Err(CliError::Failed(detail)),
        Err(error) => return Err(error.into()),
    };
    if json {
        return output::json(&reloaded);
    }
    let mut text = format!("reloaded {}", reloaded.config.path);
    for name in &reloaded.revived {
        text.push_str(&format!("\n  agent '{name}' runs again"));
    }
    for (name, reason) in &reloaded.suspended {
        text.push_str(&format!("\n  agent '{name}' is suspended: {reason}"));
    }
    output::line(&text)
}

/// Asks the daemon to stop over its socket (or, if it does not answer, with
/// SIGTERM to the PID in the PID file, or to the holder of the store's lock
/// when the runtime dir is gone) and waits until both locks are free.
fn stop(paths: &Paths) -> Result<(), CliError> {
    let holder_now = holder(&paths.pid_file);
    let client = Client::new(paths)?;
    let asked = block_on(client.shutdown())?;
    let terminate =
        |pid| kill(pid, Signal::SIGTERM).map_err(|source| DaemonError::Signal { pid, source });
    match (asked, holder_now) {
        (Ok(_), _) => {}
        (Err(_), Holder::Daemon(Some(pid))) => terminate(pid)?,
        (Err(ClientError::Unreachable { .. }), Holder::Nobody) => {
            // Its runtime dir deleted, a daemon still holds the store; a
            // named socket asks about another daemon than this state dir's.
            let store_holder = (!paths.socket_explicit).then(|| lock_holder(&paths.store_lock()));
            let Some(Some(pid)) = store_holder else {
                return output::line("the orchestration daemon is not running");
            };
            let pid = i32::try_from(pid)
                .map_err(|_| CliError::Failed(format!("pid {pid} is out of range")))?;
            terminate(nix::unistd::Pid::from_raw(pid))?;
        }
        (Err(error), _) => return Err(error.into()),
    }
    let started = Instant::now();
    while holder(&paths.pid_file) != Holder::Nobody || lock_holder(&paths.store_lock()).is_some() {
        if started.elapsed() > STOP_WAIT {
            return Err(CliError::Failed(format!(
                "the daemon did not exit within {}s",
                STOP_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    output::line("orchestration daemon stopped")
}
