//! The service-manager files in `packaging/`, filled in for one binary and
//! one user: systemd user units on Linux, a launchd LaunchAgent on macOS.
//! Rendering is pure so both are tested on any platform; writing them is
//! `orchestration service` (`cli/service.rs`). [`systemctl_user`] is the one
//! way this project talks to the systemd user manager.

use std::path::Path;

pub const SOCKET_UNIT_NAME: &str = "orchestration.socket";
pub const SERVICE_UNIT_NAME: &str = "orchestration.service";
/// The TCP listener's own socket unit: a taken port fails only it.
pub const TCP_SOCKET_UNIT_NAME: &str = "orchestration-tcp.socket";
/// Every unit `service install` writes (in `service status --json` order,
/// which came before the TCP unit was split out).
pub const UNIT_NAMES: [&str; 3] = [SOCKET_UNIT_NAME, SERVICE_UNIT_NAME, TCP_SOCKET_UNIT_NAME];
pub const LAUNCHD_LABEL: &str = "org.orchestration.daemon";

const SOCKET_UNIT: &str = include_str!("../packaging/systemd/orchestration.socket");
const SERVICE_UNIT: &str = include_str!("../packaging/systemd/orchestration.service");
const TCP_SOCKET_UNIT: &str = include_str!("../packaging/systemd/orchestration-tcp.socket");
const LAUNCHD_PLIST: &str = include_str!("../packaging/launchd/org.orchestration.daemon.plist");

/// The binary the packaged files name; replaced by the real one.
const PACKAGED_BINARY: &str = "/usr/bin/orchestration";
const PACKAGED_MAC_BINARY: &str = "/usr/local/bin/orchestration";
const PACKAGED_MAC_SOCKET: &str = "/Users/USER/.orchestration/daemon.sock";
const PACKAGED_MAC_LOG: &str = "/Users/USER/.local/state/orchestration/daemon.log";

/// What `systemctl --user ARGS` did.
#[derive(Debug, Clone, Default)]
pub struct Systemctl {
    pub succeeded: bool,
    /// Its standard output, trimmed (`is-active` answers there even when failing).
    pub stdout: String,
    /// Its first line of standard error, or why it could not run.
    pub error: String,
}

/// Runs `systemctl --user ARGS` to completion, stdin closed.
pub fn systemctl_user(args: &[&str]) -> Systemctl {
    let output = std::process::Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) => Systemctl {
            succeeded: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            error: String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .unwrap_or("systemctl failed")
                .to_owned(),
        },
        Err(error) => Systemctl {
            error: format!("cannot run systemctl: {error}"),
            ..Systemctl::default()
        },
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{} is not valid UTF-8; the service files cannot name it", .0.display())]
pub struct NotUtf8(pub std::path::PathBuf);

/// One file to install: its name and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFile {
    pub name: &'static str,
    pub contents: String,
}

/// The two socket units as packaged, and `orchestration.service` running `binary`.
pub fn systemd_units(binary: &Path) -> Result<Vec<ServiceFile>, NotUtf8> {
    let binary = utf8(binary)?;
    // ExecStart= and ExecReload= both run this binary.
    let exec = format!("={} ", systemd_quote(binary));
    Ok(vec![
        ServiceFile {
            name: SOCKET_UNIT_NAME,
            contents: SOCKET_UNIT.to_owned(),
        },
        ServiceFile {
            name: SERVICE_UNIT_NAME,
            contents: SERVICE_UNIT.replace(&format!("={PACKAGED_BINARY} "), &exec),
        },
        ServiceFile {
            name: TCP_SOCKET_UNIT_NAME,
            contents: TCP_SOCKET_UNIT.to_owned(),
        },
    ])
}

/// The LaunchAgent for `binary`, listening on `socket`, logging to `log`.
pub fn launchd_plist(binary: &Path, socket: &Path, log: &Path) -> Result<ServiceFile, NotUtf8> {
    let contents = LAUNCHD_PLIST
        .replace(PACKAGED_MAC_BINARY, &xml_escape(utf8(binary)?))
        .replace(PACKAGED_MAC_SOCKET, &xml_escape(utf8(socket)?))
        .replace(PACKAGED_MAC_LOG, &xml_escape(utf8(log)?));
    Ok(ServiceFile {
        name: "org.orchestration.daemon.plist",
        contents,
    })
}

/// The binary an installed `orchestration.service` runs, if it names one.
pub fn unit_binary(service_unit: &str) -> Option<String> {
    let line = service_unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))?;
    let line = line.trim();
    let binary = match line.strip_prefix('"') {
        Some(rest) => rest.split('"').next()?.replace("\\\\", "\\"),
        None => line.split_whitespace().next()?.to_owned(),
    };
    Some(binary.replace("%%", "%"))
}

fn utf8(path: &Path) -> Result<&str, NotUtf8> {
    path.to_str().ok_or_else(|| NotUtf8(path.to_owned()))
}

/// A path as one `ExecStart=` word: `%` doubled (systemd specifiers), and
/// quoted when it holds whitespace, quotes or backslashes.
fn systemd_quote(path: &str) -> String {
    let path = path.replace('%', "%%");
    if !path.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        return path;
    }
    format!("\"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_unit_runs_the_given_binary() {
        let units = systemd_units(Path::new("/opt/my tools/orchestration")).unwrap();
        let service = &units[1].contents;
        assert!(
            service.contains("ExecStart=\"/opt/my tools/orchestration\" serve --idle-timeout"),
            "{service}"
        );
        assert!(!service.contains(PACKAGED_BINARY));
        assert_eq!(
            unit_binary(service).as_deref(),
            Some("/opt/my tools/orchestration")
        );
        assert_eq!(units[0].contents, SOCKET_UNIT);
    }

    #[test]
    fn percent_signs_are_not_specifiers() {
        let units = systemd_units(Path::new("/home/a%b/orchestration")).unwrap();
        assert!(
            units[1]
                .contents
                .contains("ExecStart=/home/a%%b/orchestration serve")
        );
        assert_eq!(
            unit_binary(&units[1].contents).as_deref(),
            Some("/home/a%b/orchestration")
        );
    }

    #[test]
    fn the_plist_names_the_binary_socket_and_log() {
        let plist = launchd_plist(
            Path::new("/Users/a&b/bin/orchestration"),
            Path::new("/Users/a&b/.orchestration/daemon.sock"),
            Path::new("/Users/a&b/.local/state/orchestration/daemon.log"),
        )
        .unwrap();
        assert!(
            plist
                .contents
                .contains("<string>/Users/a&amp;b/bin/orchestration</string>")
        );
        assert!(
            plist
                .contents
                .contains("<string>/Users/a&amp;b/.orchestration/daemon.sock</string>")
        );
        assert!(!plist.contents.contains("/Users/USER"));
        assert!(plist.contents.contains("<key>Sockets</key>"));
    }
}
