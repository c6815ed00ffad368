//! Printing: human output on stdout, `error: …` with a hint on stderr, and
//! the API's JSON with `--json`.

use std::io::Write;

use serde::Serialize;

use super::CliError;
use crate::engine::{AgentInfo, Message};

pub fn error(message: &str, hint: Option<&str>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {message}");
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
}

/// Writes to stdout, flushing at once so streamed text appears as it arrives.
/// A reader that went away (`orchestration history x | head -1`) is
/// [`CliError::Closed`], which ends the command quietly with status 0, as
/// Unix tools do on EPIPE (SPEC §6).
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::Closed,
            _ => CliError::Failed(format!("cannot write to standard output: {e}")),
        })
}

pub fn line(text: &str) -> Result<(), CliError> {
    print(&format!("{text}\n"))
}

pub fn json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))?;
    line(&text)
}

pub fn agents_table(agents: &[AgentInfo]) -> String {
    let header = [
        "NAME",
        "STATE",
        "PROVIDER",
        "MODEL",
        "MESSAGES",
        "TOKENS(IN/OUT)",
        "CREATED",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = agents
        .iter()
        .map(|a| {
            [
                a.name.to_string(),
                a.state.to_string(),
                a.profile.clone().unwrap_or_else(|| a.provider.clone()),
                a.model.clone().unwrap_or_else(|| "-".into()),
                a.message_count.to_string(),
                format!("{}/{}", a.usage.input_tokens, a.usage.output_tokens),
                a.created_at.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        })
        .collect()
}

/// One history entry: `[timestamp] sender: content`, flagged when cut short.
pub fn history_entry(message: &Message) -> String {
    let interrupted = message
        .metadata
        .get("interrupted")
        .and_then(|v| v.as_bool())
        == Some(true);
    let flag = if interrupted { " [interrupted]" } else { "" };
    format!(
        "[{}] {}: {}{}",
        message.timestamp, message.sender, message.content, flag
    )
}
