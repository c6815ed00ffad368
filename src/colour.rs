//! Whether output may be coloured: one rule for the CLI and the daemon's log.

use std::ffi::OsString;

/// True when `is_terminal` and `NO_COLOR` is unset or empty.
pub(crate) fn wanted(is_terminal: bool) -> bool {
    allowed(is_terminal, std::env::var_os("NO_COLOR"))
}

/// no-color.org: any non-empty `NO_COLOR` turns colour off; an empty one
/// does not count.
fn allowed(is_terminal: bool, no_color: Option<OsString>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_without_a_non_empty_no_color_gets_colour() {
        assert!(allowed(true, None));
        assert!(allowed(true, Some("".into())));
        assert!(!allowed(true, Some("1".into())));
        assert!(!allowed(false, None));
    }
}
