//! `orchestration service install|uninstall|status`: the systemd user units
//! (or, on macOS, the launchd LaunchAgent) for this very binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CliError, output};
use crate::paths::{Paths, user_unit_dir};
use crate::pidfile::{Holder, holder};
use crate::service::{self, SERVICE_UNIT_NAME, ServiceFile, UNIT_NAMES, systemctl_user};

pub const LONG_ABOUT: &str = "\
Install, remove or inspect the service-manager files that run the daemon for this binary.

On Linux, `install` writes the systemd user units orchestration.socket, orchestration-tcp.socket \
and orchestration.service (the packaging/ files, with ExecStart naming this binary) into \
$XDG_CONFIG_HOME/systemd/user (default ~/.config/systemd/user) and reloads the user manager. Then \
`systemctl --user enable --now orchestration.socket orchestration-tcp.socket` makes systemd listen \
on $XDG_RUNTIME_DIR/orchestration/daemon.sock and 127.0.0.1:7862 and start the daemon on the \
first connection. The TCP listener has its own unit because the port is shared by every user of \
the machine: if another process holds it, only orchestration-tcp.socket fails, and the daemon \
serves the control socket alone (`serve --status` says so); it exits after 30 idle minutes and comes back on the next call. CLI calls that find \
no daemon start the socket unit themselves once it is installed. The daemon logs to the journal \
(journalctl --user -u orchestration.service) and reads KEY=value lines from \
~/.config/orchestration/environment.

On macOS, `install` writes ~/Library/LaunchAgents/org.orchestration.daemon.plist with the same \
two sockets and prints the launchctl command that loads it.";

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ServiceAction {
    /// Write the units (or plist) for this binary and reload the service manager.
    Install,
    /// Stop and disable the units, remove them, and reload the service manager.
    Uninstall,
    /// Say whether the units are installed, for which binary, and whether they run.
    Status,
}

pub fn run(args: ServiceArgs, paths: &Paths, json: bool) -> Result<(), CliError> {
    if cfg!(target_os = "macos") {
        return launchd::run(args.action, paths);
    }
    let dir = user_unit_dir()?;
    match args.action {
        ServiceAction::Install => install(&dir, paths),
        ServiceAction::Uninstall => uninstall(&dir),
        ServiceAction::Status => status(&dir, json),
    }
}

fn this_binary() -> Result<PathBuf, CliError> {
    std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot tell where this binary is: {e}")))
}

fn install(dir: &Path, paths: &Paths) -> Result<(), CliError> {
    let binary = this_binary()?;
    let units = service::systemd_units(&binary).map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let mut report = Vec::new();
    for unit in &units {
        report.push(write_file(dir, unit)?);
    }
    report.push(match systemctl(&["daemon-reload"]) {
        Ok(_) => "reloaded the systemd user manager".to_owned(),
        Err(why) => format!(
            "warning: could not reload the systemd user manager ({why}); run `systemctl --user daemon-reload` once it runs"
        ),
    });
    if let Some(warning) = socket_mismatch(paths) {
        report.push(warning);
    }
    report.extend(build_folder_warning(&binary));
    if let Holder::Daemon(pid) = holder(&paths.pid_file) {
        let pid = pid.map_or("unknown".to_owned(), |p| p.to_string());
        report.push(format!(
            "a daemon not started by systemd is running (pid {pid}): stop it first with `orchestration serve --stop`"
        ));
    }
    report.push(
        "next: systemctl --user enable --now orchestration.socket orchestration-tcp.socket"
            .to_owned(),
    );
    output::line(&report.join("\n"))
}

fn write_file(dir: &Path, file: &ServiceFile) -> Result<String, CliError> {
    let path = dir.join(file.name);
    let verb = match std::fs::read_to_string(&path) {
        Ok(old) if old == file.contents => "unchanged",
        Ok(_) => "updated",
        Err(_) => "wrote",
    };
    std::fs::write(&path, &file.contents)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(format!("{verb} {}", path.display()))
}

/// The units name this binary's path: one inside a cargo `target/` folder
/// breaks with the next `cargo clean` or moves with the checkout.
fn build_folder_warning(binary: &Path) -> Option<String> {
    let in_target = binary
        .parent()?
        .components()
        .any(|part| part.as_os_str() == "target");
    in_target.then(|| format!(
        "warning: the service will run {}, inside a build folder: a rebuild, `cargo clean` or moving the checkout breaks it. Install the binary first (`cargo install --locked --path .`), then run `orchestration service install` with the installed one",
        binary.display()
    ))
}

/// The socket unit listens on `%t/orchestration/daemon.sock`; a CLI that
/// looks elsewhere (an override, or no `XDG_RUNTIME_DIR`) will not find it.
fn socket_mismatch(paths: &Paths) -> Option<String> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty());
    let expected = runtime.map(|r| PathBuf::from(r).join("orchestration/daemon.sock"));
    if expected.as_deref() == Some(paths.socket.as_path()) {
        return None;
    }
    Some(format!(
        "warning: this CLI uses the socket {}, but the unit listens on $XDG_RUNTIME_DIR/orchestration/daemon.sock; unset ORCHESTRATION_RUNTIME_DIR/ORCHESTRATION_SOCKET and set XDG_RUNTIME_DIR to use it",
        paths.socket.display()
    ))
}

fn uninstall(dir: &Path) -> Result<(), CliError> {
    let files: Vec<PathBuf> = UNIT_NAMES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect();
    if files.is_empty() {
        return output::line(&format!(
            "no orchestration units in {}; nothing to remove",
            dir.display()
        ));
    }
    let mut report = Vec::new();
    // Stop before removing, or systemd keeps running units it can no longer load.
    let mut disable = vec!["disable", "--now"];
    disable.extend(UNIT_NAMES);
    if systemctl(&disable).is_ok() {
        report.push(format!("stopped and disabled {}", UNIT_NAMES.join(", ")));
    }
    for path in files {
        std::fs::remove_file(&path)
            .map_err(|e| CliError::Failed(format!("cannot remove {}: {e}", path.display())))?;
        report.push(format!("removed {}", path.display()));
    }
    if systemctl(&["daemon-reload"]).is_ok() {
        report.push("reloaded the systemd user manager".into());
    }
    output::line(&report.join("\n"))
}

#[derive(Debug, Serialize)]
struct UnitStatus {
    unit: &'static str,
    path: PathBuf,
    installed: bool,
    /// `systemctl --user is-enabled` / `is-active`, or `unknown` when no user manager answers.
    enabled: String,
    active: String,
}

#[derive(Debug, Serialize)]
struct Status {
    manager: &'static str,
    units: Vec<UnitStatus>,
    /// The binary the installed service runs.
    binary: Option<String>,
    /// Whether that is this binary.
    current: bool,
}

fn status(dir: &Path, json: bool) -> Result<(), CliError> {
    let units: Vec<UnitStatus> = UNIT_NAMES
        .into_iter()
        .map(|unit| UnitStatus {
            unit,
            path: dir.join(unit),
            installed: dir.join(unit).exists(),
            enabled: query("is-enabled", unit),
            active: query("is-active", unit),
        })
        .collect();
    let binary = std::fs::read_to_string(dir.join(SERVICE_UNIT_NAME))
        .ok()
        .and_then(|text| service::unit_binary(&text));
    let current = match (&binary, std::env::current_exe()) {
        (Some(binary), Ok(this)) => Path::new(binary) == this,
        _ => false,
    };
    let status = Status {
        manager: "systemd",
        units,
        binary,
        current,
    };
    if json {
        return output::json(&status);
    }
    output::line(&describe(&status))
}

fn describe(status: &Status) -> String {
    let mut lines = Vec::new();
    for unit in &status.units {
        let state = if unit.installed {
            format!(
                "installed; enabled: {}; active: {}",
                unit.enabled, unit.active
            )
        } else {
            "not installed".to_owned()
        };
        lines.push(format!(
            "{:<24} {state} ({})",
            unit.unit,
            unit.path.display()
        ));
    }
    match &status.binary {
        Some(binary) if status.current => lines.push(format!("runs {binary} (this binary)")),
        Some(binary) => lines.push(format!(
            "runs {binary}, not this binary: `orchestration service install` points it here"
        )),
        None => lines.push("next: orchestration service install".to_owned()),
    }
    lines.join("\n")
}

/// One word from `systemctl --user is-enabled|is-active UNIT`.
fn query(verb: &str, unit: &str) -> String {
    let answer = systemctl_user(&[verb, unit]).stdout;
    if answer.is_empty() {
        "unknown".to_owned()
    } else {
        answer
    }
}

/// Runs `systemctl --user ARGS`; the error is its first stderr line.
fn systemctl(args: &[&str]) -> Result<(), String> {
    let run = systemctl_user(args);
    if run.succeeded {
        Ok(())
    } else {
        Err(run.error)
    }
}

/// macOS: the LaunchAgent. Not built on this project's Linux CI; the plist
/// itself is rendered and tested on every platform (`service.rs`).
mod launchd {
    use super::*;
    use crate::paths::launch_agents_dir;

    pub fn run(action: ServiceAction, paths: &Paths) -> Result<(), CliError> {
        let dir = launch_agents_dir()?;
        let plist = service::launchd_plist(&this_binary()?, &paths.socket, &paths.log_file)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let path = dir.join(plist.name);
        let domain = format!("gui/{}", nix::unistd::getuid());
        match action {
            ServiceAction::Install => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    CliError::Failed(format!("cannot create {}: {e}", dir.display()))
                })?;
                let wrote = write_file(&dir, &plist)?;
                let warning = build_folder_warning(&this_binary()?)
                    .map(|w| format!("\n{w}"))
                    .unwrap_or_default();
                output::line(&format!(
                    "{wrote}{warning}\nnext: launchctl bootstrap {domain} {}",
                    path.display()
                ))
            }
            ServiceAction::Uninstall => {
                let _ = Command::new("launchctl")
                    .args(["bootout", &domain])
                    .arg(&path)
                    .status();
                match std::fs::remove_file(&path) {
                    Ok(()) => output::line(&format!("removed {}", path.display())),
                    Err(_) => output::line(&format!("{} is not installed", path.display())),
                }
            }
            ServiceAction::Status => output::line(&format!(
                "{} {}",
                path.display(),
                if path.exists() {
                    "installed"
                } else {
                    "not installed"
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_in_a_build_folder_is_warned_about() {
        let warning = build_folder_warning(Path::new(
            "/home/me/orchestration/target/release/orchestration",
        ));
        assert!(warning.is_some_and(|w| w.contains("cargo install --locked --path .")));
        assert_eq!(
            build_folder_warning(Path::new("/home/me/.cargo/bin/orchestration")),
            None
        );
        assert_eq!(
            build_folder_warning(Path::new("/usr/local/bin/orchestration")),
            None
        );
        // Only a directory named target counts, not a binary or a name containing it.
        assert_eq!(
            build_folder_warning(Path::new("/opt/targets/orchestration")),
            None
        );
    }
}
