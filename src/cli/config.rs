//! `orchestration config get|set|unset|list|path`: read and edit the config
//! file by dotted key (`providers.idle_timeout`). Edits keep comments and
//! layout, and a value that would not load is refused with the file untouched.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use clap::{Args, Subcommand};

use super::{CliError, output};
use crate::config::{self, Config, EditError};
use crate::paths::ensure_private_dir;
use crate::pidfile::{Holder, holder};

pub const LONG_ABOUT: &str = "\
Read and edit the config file by dotted key, e.g. providers.idle_timeout, limits.max_connections, \
daemon.listen, profiles.work.base_url, profiles.work.headers.X-Title.

`list` shows every setting in effect, defaults included (`--json`: an object by key, null for an \
unset one). `get KEY` prints one value (exit 1 if it is unset). `set KEY VALUE` writes it, keeping \
the file's comments and layout; durations are text like 30s, 5m or 250ms, counts are whole \
numbers, and a value the daemon could not load is refused with the file untouched. `unset KEY` \
removes it, so the default applies. `path` prints the file's location. The daemon reads the file \
when it starts; after a change, `orchestration serve --reload` (or `systemctl --user reload \
orchestration`) puts it in effect without a restart (listeners excepted).";

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print one setting's value (defaults included); exit 1 if it is unset.
    Get {
        /// A dotted key, e.g. providers.idle_timeout.
        #[arg(add = super::complete::config_keys())]
        key: String,
    },
    /// Set a key in the config file, keeping its comments; refused if the result would not load.
    Set {
        /// A dotted key, e.g. providers.idle_timeout or profiles.work.base_url.
        #[arg(add = super::complete::config_keys())]
        key: String,
        /// The value: text (durations like 30s or 5m) or a whole number.
        value: String,
    },
    /// Remove a key from the config file, so its default applies.
    Unset {
        /// A dotted key.
        #[arg(add = super::complete::config_keys())]
        key: String,
    },
    /// Print every setting in effect, defaults included.
    List,
    /// Print where the config file is (it need not exist).
    Path,
}

/// `pid_file` is the daemon's, when the runtime dir could be placed: the
/// config commands work without one (no HOME, say).
pub fn run(
    args: ConfigArgs,
    file: &Path,
    pid_file: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    match args.action {
        ConfigAction::Path => output::line(&file.display().to_string()),
        ConfigAction::List => list(&Config::load(file)?, json),
        ConfigAction::Get { key } => get(&Config::load(file)?, &key, json),
        ConfigAction::Set { key, value } => {
            let edited =
                config::set_key(&read(file)?, &key, &value).map_err(|e| invalid(file, e))?;
            write(file, &edited, "config set")?;
            output::line(&format!("set {key} in {}", file.display()))?;
            restart_note(pid_file);
            Ok(())
        }
        ConfigAction::Unset { key } => {
            let (edited, removed) =
                config::unset_key(&read(file)?, &key).map_err(|e| invalid(file, e))?;
            if !removed {
                return output::line(&format!("{key} is not set in {}", file.display()));
            }
            write(file, &edited, "config unset")?;
            output::line(&format!("removed {key} from {}", file.display()))?;
            restart_note(pid_file);
            Ok(())
        }
    }
}

fn list(config: &Config, json: bool) -> Result<(), CliError> {
    let entries = config.entries();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = entries.into_iter().collect();
        return output::json(&map);
    }
    let lines: Vec<String> = entries
        .iter()
        .map(|(key, value)| match value {
            serde_json::Value::Null => format!("# {key} is unset"),
            value => format!("{key} = {value}"),
        })
        .collect();
    output::line(&lines.join("\n"))
}

fn get(config: &Config, key: &str, json: bool) -> Result<(), CliError> {
    let found = config.entries().into_iter().find(|(k, _)| k == key);
    let value = match found {
        Some((_, serde_json::Value::Null)) | None if config::is_known_key(key) => {
            return Err(CliError::Failed(format!("{key} is not set")));
        }
        None => {
            return Err(CliError::Usage(format!(
                "unknown config key {key:?}; `orchestration config list` shows them"
            )));
        }
        Some((_, value)) => value,
    };
    if json {
        return output::json(&value);
    }
    match value {
        serde_json::Value::String(text) => output::line(&text),
        value => output::line(&value.to_string()),
    }
}

pub(super) fn invalid(file: &Path, error: EditError) -> CliError {
    match error {
        EditError::Key(message) | EditError::Value(message) => CliError::Usage(message),
        EditError::File(message) => CliError::Failed(format!("{}: {message}", file.display())),
    }
}

pub(super) fn read(file: &Path) -> Result<String, CliError> {
    match config::read_settings_file(file) {
        Ok(text) => Ok(text.unwrap_or_default()),
        Err(error) => Err(CliError::Failed(format!(
            "cannot read {}: {error}",
            file.display()
        ))),
    }
}

/// Replaces the file atomically (a temporary file renamed over it), keeping
/// its mode; a new one is 0600, since profiles' headers may hold tokens. A
/// file its owner made read-only is left alone: a rename would replace it
/// anyway (the directory is writable), against what the mode says. A
/// symbolic link is followed and its target replaced, so the link (to a
/// dotfiles checkout, say) stays one. `command` names the edit in errors.
pub(super) fn write(file: &Path, text: &str, command: &str) -> Result<(), CliError> {
    let file = &link_target(file)?;
    let fail = |what: &str, error: std::io::Error| {
        CliError::Failed(format!("cannot {what} {}: {error}", file.display()))
    };
    let mode = std::fs::metadata(file).map_or(0o600, |m| m.permissions().mode() & 0o777);
    if mode & 0o200 == 0 {
        return Err(CliError::Failed(format!(
            "{} is read-only (mode {mode:04o}): {command} does not edit a file made read-only",
            file.display()
        ))
        .with_hint(format!(
            "if it should be edited, `chmod u+w {}` first",
            file.display()
        )));
    }
    if let Some(dir) = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        ensure_private_dir(dir)?;
    }
    let temporary = file.with_extension(format!("toml.{}.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(fail("write", error));
    }
    Ok(())
}

/// The file a write to `file` edits: `file` itself, or the file a symbolic
/// link there finally points to. A link to nowhere is refused: creating its
/// target could write anywhere the link says.
fn link_target(file: &Path) -> Result<std::path::PathBuf, CliError> {
    let is_link = std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(file.to_owned());
    }
    std::fs::canonicalize(file).map_err(|error| {
        let target =
            std::fs::read_link(file).map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
        CliError::Failed(format!(
            "{} is a symbolic link to {target}, which cannot be followed: {error}",
            file.display()
        ))
    })
}

/// A running daemon read the old file; say how to apply the change.
fn restart_note(pid_file: Option<&Path>) {
    if let Some(pid_file) = pid_file
        && let Holder::Daemon(_) = holder(pid_file)
    {
        eprintln!(
            "note: the running daemon still uses the old config; `orchestration serve --reload` applies this change"
        );
    }
}
