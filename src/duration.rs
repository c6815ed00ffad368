//! Durations as users type them: `30s`, `5m`, `1h`, `7d`, `250ms`, or plain
//! seconds, at most [`MAX`] (a year). Every duration the program reads, from
//! a flag or the config file, comes through [`parse`], so none is ever large
//! enough to overflow a clock.

use std::time::Duration;

/// The longest duration accepted anywhere: one year.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 30s, 5m, 1h or 250ms"))?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    let duration = match unit.trim() {
        "" | "s" | "sec" | "secs" => seconds(1),
        "ms" => Some(Duration::from_millis(n)),
        "m" | "min" | "mins" => seconds(60),
        "h" | "hour" | "hours" => seconds(3600),
        "d" | "day" | "days" => seconds(24 * 3600),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m, h or d"
            ));
        }
    };
    match duration {
        Some(duration) if duration <= MAX => Ok(duration),
        _ => Err(format!("{text:?} is too long; the most is 365d (a year)")),
    }
}

/// The shortest text [`parse`] reads back as `duration`: `500ms`, `10s`, `2m`, `1h`.
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    match seconds {
        s if s != 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s != 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_reads_back() {
        for text in ["500ms", "10s", "2m", "1h", "0s", "90s", "1500ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("-5s").is_err());
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("365d"), Ok(MAX));
        assert!(parse("366d").is_err());
        assert!(parse("10000000000000000000").is_err());
        assert!(parse("18446744073709551615ms").is_err());
    }
}
