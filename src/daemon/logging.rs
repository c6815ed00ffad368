//! Logging for the daemon, level from `RUST_LOG` (default `info`). Under
//! journald (`JOURNAL_STREAM` names our stderr) entries go to the journal
//! natively, `SYSLOG_IDENTIFIER=orchestration`, every tracing field its own
//! journal field (`REQUEST_ID`, `AGENT`, `STATUS`, …); otherwise human lines
//! on stderr, which is `S/daemon.log` once daemonized. Client commands never
//! set this up, which keeps them cheap.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub const SYSLOG_IDENTIFIER: &str = "orchestration";

pub fn init() {
    if stderr_is_journal() && init_journald().is_ok() {
        return;
    }
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn init_journald() -> Result<(), Box<dyn std::error::Error>> {
    let journal = tracing_journald::layer()?
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        // Plain field names (`REQUEST_ID`, not `F_REQUEST_ID`) are what
        // `journalctl REQUEST_ID=7` users will type.
        .with_field_prefix(None);
    tracing_subscriber::registry()
        .with(filter())
        .with(journal)
        .try_init()?;
    Ok(())
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
