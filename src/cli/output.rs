//! Printing: human output on stdout, `error: …` with a hint on stderr, and
//! the API's JSON with `--json`.

use std::io::Write;

use serde::Serialize;

use super::CliError;
use crate::model::{AgentInfo, Message};

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

/// Asks a yes/no question on stderr and reads the answer from stdin (a
/// terminal: the caller checks). Only `y` or `yes` is a yes.
pub fn confirm(question: &str) -> Result<bool, CliError> {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
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
        "PROFILE",
        "MODEL",
        "MESSAGES",
        "TOKENS(IN/OUT)",
        "CREATED",
    ];
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.to_string(),
                a.state.to_string(),
                a.provider.clone(),
                a.profile.clone().unwrap_or_else(|| "-".into()),
                a.model.clone().unwrap_or_else(|| "-".into()),
                a.message_count.to_string(),
                format!("{}/{}", a.usage.input_tokens, a.usage.output_tokens),
                timestamp(&a.created_at),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// Columns padded to their widest cell, two spaces apart, one row a line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
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
        timestamp(&message.timestamp),
        message.sender,
        message.content,
        flag
    )
}

/// An API timestamp (RFC 3339, nanoseconds, UTC) as people read it: RFC 3339
/// in UTC to the millisecond, always the same width
/// (`2025-01-31T09:05:44.709Z`). `--json` keeps the full precision; text
/// that does not parse is shown as it came.
pub fn timestamp(text: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    const MILLIS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|at| at.to_offset(time::UtcOffset::UTC).format(MILLIS).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// How an agent's endpoint is named in human output, the same way by
/// `spawn` and (as columns) by `list`: `provider openai, profile work`.
pub fn endpoint(agent: &AgentInfo) -> String {
    match &agent.profile {
        Some(profile) => format!("provider {}, profile {profile}", agent.provider),
        None => format!("provider {}", agent.provider),
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn timestamps_read_to_the_millisecond_at_a_fixed_width() {
        assert_eq!(
            timestamp("2025-01-31T01:10:44.70945111Z"),
            "2025-01-31T01:10:44.709Z"
        );
        assert_eq!(
            timestamp("2025-01-31T01:10:44Z"),
            "2025-01-31T01:10:44.000Z"
        );
        assert_eq!(
            timestamp("2025-01-31T03:10:44.5+02:00"),
            "2025-01-31T01:10:44.500Z"
        );
        assert_eq!(timestamp("yesterday"), "yesterday");
    }
}
