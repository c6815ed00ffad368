//! Printing: human output on stdout, `error: …` with a hint on stderr, and
//! the API's JSON with `--json`; the one sanitiser ([`visible`]) and the one
//! timestamp formatter ([`timestamp`], [`clock`]) every human line goes through.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::CliError;
use crate::model::{AgentInfo, Message};

/// `--raw`: text from models, tools and the network is printed as received.
/// One switch for the whole process, set once before anything is printed.
static RAW: AtomicBool = AtomicBool::new(false);

/// Sets `--raw` for the rest of the process.
pub fn set_raw(raw: bool) {
    RAW.store(raw, Ordering::Relaxed);
}

/// Text from a model, a tool, a model server or the daemon as it may reach a
/// terminal: every control character but newline and tab (C0, DEL, C1)
/// replaced by a visible `\u{1b}`, so no escape sequence in a reply can set
/// the window title, write the clipboard (OSC 52), clear the screen or
/// overwrite a line. A `\r` right before `\n` is dropped (CRLF line ends).
/// With `--raw`, unchanged.
pub fn visible(text: &str) -> Cow<'_, str> {
    if RAW.load(Ordering::Relaxed) {
        return Cow::Borrowed(text);
    }
    escape_controls(text)
}

/// [`visible`] without the `--raw` switch: for error lines, which are always escaped.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let is_hidden = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_hidden(c) {
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// `error: …` and `hint: …` on stderr. Both may carry a model server's
/// words, so control characters are always made visible, `--raw` or not.
pub fn error(message: &str, hint: Option<&str>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", escape_controls(message));
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {}", escape_controls(hint));
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
                visible(&a.provider).into_owned(),
                visible(a.profile.as_deref().unwrap_or("-")).into_owned(),
                visible(a.model.as_deref().unwrap_or("-")).into_owned(),
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
        visible(&message.sender),
        visible(&message.content),
        flag
    )
}

type Layout = &'static [time::format_description::BorrowedFormatItem<'static>];

/// An API timestamp (RFC 3339, nanoseconds, UTC) as people read it: RFC 3339
/// in UTC to the millisecond, always the same width
/// (`2025-01-31T09:05:44.709Z`). `--json` keeps the full precision; text
/// that does not parse is shown as it came (control characters made visible).
pub fn timestamp(text: &str) -> String {
    const MILLIS: Layout = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    reformat(text, MILLIS)
}

/// The time of day of an API timestamp, in UTC to the millisecond
/// (`09:05:44.709`), for lines that follow events as they happen (`watch`).
pub fn clock(text: &str) -> String {
    const CLOCK: Layout =
        time::macros::format_description!("[hour]:[minute]:[second].[subsecond digits:3]");
    reformat(text, CLOCK)
}

fn reformat(text: &str, layout: Layout) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|at| at.to_offset(time::UtcOffset::UTC).format(layout).ok())
        .unwrap_or_else(|| escape_controls(text).into_owned())
}

/// A word as it would be typed to a POSIX shell: as it is when it is plain,
/// else in single quotes, so a printed command can be copied and run.
pub fn shell_word(word: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return Cow::Borrowed(word);
    }
    Cow::Owned(format!("'{}'", word.replace('\'', "'\\''")))
}

/// How an agent's endpoint is named in human output, the same way by
/// `spawn` and (as columns) by `list`: `provider openai, profile work`.
pub fn endpoint(agent: &AgentInfo) -> String {
    match &agent.profile {
        Some(profile) => format!(
            "provider {}, profile {}",
            visible(&agent.provider),
            visible(profile)
        ),
        None => format!("provider {}", visible(&agent.provider)),
    }
}

#[cfg(test)]
mod tests {
    use super::{clock, escape_controls, timestamp};

    #[test]
    fn control_characters_are_made_visible_but_lines_and_tabs_stay() {
        assert_eq!(escape_controls("plain\ttext\nnext"), "plain\ttext\nnext");
        assert_eq!(
            escape_controls("\x1b]52;c;aGk=\x07title\x1b[2J"),
            "\\u{1b}]52;c;aGk=\\u{7}title\\u{1b}[2J"
        );
        assert_eq!(
            escape_controls("csi\u{9b}31m del\x7f"),
            "csi\\u{9b}31m del\\u{7f}"
        );
        assert_eq!(escape_controls("crlf\r\nlone\r"), "crlf\nlone\\u{d}");
        assert_eq!(escape_controls("café ünïcode"), "café ünïcode");
    }

    #[test]
    fn the_clock_is_the_time_of_day_to_the_millisecond() {
        assert_eq!(clock("2025-01-31T01:10:44.70945111Z"), "01:10:44.709");
        assert_eq!(clock("not \x1b a time"), "not \\u{1b} a time");
    }

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
