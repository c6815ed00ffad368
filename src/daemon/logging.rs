//! Logging for the daemon, level from `RUST_LOG`, else the config's
//! `daemon.log_level`, else `info`; a reload can change it ([`Level`]). Under
//! journald (`JOURNAL_STREAM` names our stderr) entries go to the journal
//! natively, `SYSLOG_IDENTIFIER=orchestration`, every tracing field its own
//! journal field (`REQUEST_ID`, `AGENT`, `STATUS`, …); otherwise human lines
//! on stderr, which is `S/daemon.log` once daemonized. Client commands never
//! set this up, which keeps them cheap. A daemonized log is rotated by size
//! as it is written ([`rotate_by_size`]), so nothing a client does can fill
//! the disk through it.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
                .with_writer(|| LogWriter)
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

/// The rotation of a daemonized log, once [`rotate_by_size`] set it up.
static ROTATION: std::sync::OnceLock<Rotation> = std::sync::OnceLock::new();

/// A log file that stderr (and stdout) write to, rotated past `max_size`.
struct Rotation {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    /// Bytes in the current file, near enough (others may write to fd 2).
    written: AtomicU64,
    /// Held by the one writer that rotates; the others carry on meanwhile.
    rotating: Mutex<()>,
}

/// Stderr is `log` (a daemonized process): from now on, once it passes
/// `max_size` bytes it becomes `log.1` (the older ones shifting up, `keep`
/// of them kept) and a fresh `log` takes its place as stderr and stdout.
pub fn rotate_by_size(log: &Path, max_size: u64, keep: usize) {
    let written = std::fs::metadata(log).map_or(0, |meta| meta.len());
    let _ = ROTATION.set(Rotation {
        path: log.to_owned(),
        max_size,
        keep,
        written: AtomicU64::new(written),
        rotating: Mutex::new(()),
    });
}

/// Moves `log` to `log.1`, `log.1` to `log.2` and so on, dropping what
/// would become `log.{keep+1}`. A file that is not there is skipped;
/// losing an old log is better than not logging, so failures are ignored.
pub fn shift(log: &Path, keep: usize) {
    let numbered = |n: usize| {
        let mut name = log.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(log, numbered(1));
}

impl Rotation {
    /// Counts `bytes` written, and rotates once the file is past its size.
    fn wrote(&self, bytes: usize) {
        let total = self.written.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if total <= self.max_size {
            return;
        }
        // Another writer is rotating: this line went to the old file.
        let Ok(_rotating) = self.rotating.try_lock() else {
            return;
        };
        if self.written.load(Ordering::Relaxed) <= self.max_size {
            return;
        }
        // Whether or not it worked, start counting again rather than try
        // on every line (a full disk, say).
        let _ = self.rotate();
        self.written.store(0, Ordering::Relaxed);
    }

    fn rotate(&self) -> std::io::Result<()> {
        shift(&self.path, self.keep);
        let fresh = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        nix::unistd::dup2_stderr(&fresh)?;
        nix::unistd::dup2_stdout(&fresh)?;
        Ok(())
    }
}

/// Writes log lines to stderr, counting them for the rotation. The fmt
/// layer hands over one whole line per write, so a rotation falls between
/// lines.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = std::io::stderr().write(buf)?;
        if let Some(rotation) = ROTATION.get() {
            rotation.wrote(written);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
