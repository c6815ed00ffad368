//! Logging for the daemon, level from `RUST_LOG`, else the config's
//! `daemon.log_level`, else `info`; a reload can change it ([`Level`]). Under
//! journald (`JOURNAL_STREAM` names our stderr) entries go to the journal
//! natively, `SYSLOG_IDENTIFIER=orchestration`, every tracing field its own
//! journal field (`REQUEST_ID`, `AGENT`, `STATUS`, …); otherwise human lines
//! on stderr, which is `S/daemon.log` once daemonized. Client commands never
//! set this up, which keeps them cheap.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub const SYSLOG_IDENTIFIER: &str = "orchestration";

/// The live log level, which a reload may change.
#[derive(Clone)]
pub struct Level(reload::Handle<EnvFilter, Registry>);

impl Level {
    /// Puts `directives` (as `RUST_LOG` reads them) in effect.
    pub fn set(&self, directives: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(directives)
            .map_err(|error| format!("log level {directives:?}: {error}"))?;
        self.0
            .reload(filter)
            .map_err(|error| format!("cannot change the log level: {error}"))
    }
}

/// The level to log at: `RUST_LOG` if set, else `configured`, else `info`.
pub fn directives(rust_log: Option<&str>, configured: Option<&str>) -> String {
    rust_log
        .filter(|v| !v.trim().is_empty())
        .or(configured)
        .unwrap_or("info")
        .to_owned()
}

/// The handle of the logging [`init`] set up, for reloads.
static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();

/// The live log level, if [`init`] set logging up.
pub fn level() -> Option<Level> {
    LEVEL.get().cloned()
}

/// Sets up logging once; later calls change nothing.
pub fn init(configured: Option<&str>) {
    if LEVEL.get().is_some() {
        return;
    }
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = directives(rust_log.as_deref(), configured);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match journald_layer() {
        Some(journal) => registry.with(journal).try_init(),
        None => {
            let colour = crate::colour::wanted(std::io::stderr().is_terminal());
            let lines = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .with_target(false);
            registry.with(lines).try_init()
        }
    };
    if installed.is_ok() {
        let _ = LEVEL.set(Level(handle));
    }
}

/// The journald layer, when stderr is the journal and the journal answers.
fn journald_layer() -> Option<tracing_journald::Layer> {
    if !stderr_is_journal() {
        return None;
    }
    let journal = tracing_journald::layer()
        .ok()?
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        // Plain field names (`REQUEST_ID`, not `F_REQUEST_ID`) are what
        // `journalctl REQUEST_ID=7` users will type.
        .with_field_prefix(None);
    Some(journal)
}

/// Whether stderr is the stream systemd connected to journald: the
/// `JOURNAL_STREAM` it set (`DEVICE:INODE`) names our fd 2. A daemon that
/// inherited the variable but writes elsewhere (daemonized, redirected)
/// keeps plain lines.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(stderr).metadata() {
        Ok(meta) => meta.dev() == device && meta.ino() == inode,
        Err(_) => false,
    }
}
