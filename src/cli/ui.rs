//! `orchestration ui`: opens the daemon's web page in the user's browser,
//! logged in by a one-time link the daemon mints over the Unix socket.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, Ctx, output};
use crate::paths::Paths;
use crate::wire::UiLink;

pub const LONG_ABOUT: &str = "\
Open the daemon's web page in your browser: the live agents, one conversation at a time \
(streamed as it happens), search across every conversation, and one prompt to several agents \
side by side.

The page is served by the daemon on its TCP listener (127.0.0.1:7862 by default). This command \
asks the daemon, over the Unix socket, for a login link with a one-time token in its fragment \
(`http://127.0.0.1:PORT/ui/#t=…`, good for five minutes, usable once). The page trades the token \
for a session cookie and removes it from the address bar. The link is not put on the browser's \
command line, where other users could read it: it goes into a private file in the runtime dir \
(ui-open.html, mode 0600) that sends the browser on, and that file is what xdg-open (open on \
macOS) is given. Run `orchestration ui` again for a new session; the TCP bearer token never \
reaches the browser.";

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Only print the login link (for a browser on another machine, reached over SSH forwarding,
    /// say); it works once, within five minutes.
    #[arg(long)]
    pub print_url: bool,
}

pub async fn run(ctx: &Ctx, args: UiArgs, paths: &Paths) -> Result<(), CliError> {
    let link: UiLink = ctx.client.ui_link().await?;
    if ctx.json {
        return output::json(&link);
    }
    if args.print_url {
        return output::line(&link.url);
    }
    let page = write_redirect(&paths.runtime_dir, &link.url)?;
    open(&page)?;
    output::line(
        "opened the web page in your browser (`orchestration ui --print-url` prints its link instead)",
    )
}

/// A page only the user can read that sends the browser to `url`, so the
/// token travels in a file instead of on a command line.
fn write_redirect(dir: &Path, url: &str) -> Result<PathBuf, CliError> {
    let path = dir.join("ui-open.html");
    // The URL is ours (address, port, hex token), but it goes in an
    // attribute all the same, so it is escaped as one.
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta http-equiv=\"refresh\" content=\"0; url={escaped}\">\n\
         <title>orchestration</title>\n<p>Opening the orchestration web page…</p>\n"
    );
    let failed = |error: std::io::Error| {
        CliError::Failed(format!("cannot write {}: {error}", path.display()))
            .with_hint("`orchestration ui --print-url` prints the link to open by hand")
    };
    // Removed first: an existing file keeps its old mode (or is a link).
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    file.write_all(html.as_bytes()).map_err(failed)?;
    Ok(path)
}

/// Hands `page` to the desktop's opener.
fn open(page: &Path) -> Result<(), CliError> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let hint = "`orchestration ui --print-url` prints the link to open by hand";
    let status = std::process::Command::new(opener)
        .arg(page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|error| {
            CliError::Failed(format!("cannot run {opener}: {error}")).with_hint(hint)
        })?;
    if status.success() {
        return Ok(());
    }
    Err(CliError::Failed(format!("{opener} failed ({status})")).with_hint(hint))
}
