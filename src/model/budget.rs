//! Budgets: what one may spend ([`BudgetRule`]: a scope, a UTC calendar
//! period, a limit in USD or tokens), the per-agent form `spawn --budget`
//! takes ([`AgentBudget`], `2usd/day`), and a budget's state as `usage`,
//! `serve --status` and the `budget` event show it ([`BudgetState`]).

use std::fmt;
use std::num::{IntErrorKind, ParseIntError};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::AgentName;

/// Whose calls a budget counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetScope {
    /// Every call of every agent.
    All,
    /// The calls of every agent that had this name.
    Agent(String),
    /// The calls of agents spawned with this profile (or, without one, on
    /// this provider), as `usage --by profile` groups them.
    Profile(String),
}

impl FromStr for BudgetScope {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                Err(format!(
                    "scope {text:?}: {kind}: needs a name (1-64 characters)"
                ))
            } else {
                Ok(name.to_owned())
            }
        };
        // An agent scope no agent could ever have (`agent:../x`) would
        // silently never match: it must be a name `spawn` accepts.
        let agent = |name: &str| {
            AgentName::parse(name)
                .map(|name| Self::Agent(name.as_str().to_owned()))
                .map_err(|error| format!("scope {text:?}: {error}"))
        };
        match text.split_once(':') {
            None if text == "all" => Ok(Self::All),
            Some(("agent", name)) => agent(name),
            Some(("profile", name)) => named("profile", name).map(Self::Profile),
            _ => Err(format!(
                "scope {text:?} is not \"all\", \"agent:NAME\" or \"profile:NAME\""
            )),
        }
    }
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Agent(name) => write!(f, "agent:{name}"),
            Self::Profile(name) => write!(f, "profile:{name}"),
        }
    }
}

/// The UTC calendar period a budget's spending is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// From 00:00 UTC to the next.
    Day,
    /// From the 1st, 00:00 UTC, to the next month's.
    Month,
    /// Never resets.
    Total,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    /// When the period holding `now` began; None for `total` (all time).
    pub fn start(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day = match self {
            Self::Day => now.date(),
            Self::Month => now.date().replace_day(1).ok()?,
            Self::Total => return None,
        };
        Some(day.with_time(Time::MIDNIGHT).assume_utc())
    }

    /// When the period that began at `start` ends (the next one begins);
    /// None for `total`, which never ends.
    pub fn end(self, start: OffsetDateTime) -> Option<OffsetDateTime> {
        let date = start.date();
        let next = match self {
            Self::Day => date.next_day()?,
            Self::Month => {
                let (year, month) = match date.month() {
                    Month::December => (date.year().checked_add(1)?, Month::January),
                    month => (date.year(), month.next()),
                };
                Date::from_calendar_date(year, month, 1).ok()?
            }
            Self::Total => return None,
        };
        Some(next.with_time(Time::MIDNIGHT).assume_utc())
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Day, Self::Month, Self::Total]
            .into_iter()
            .find(|period| period.as_str() == text)
            .ok_or_else(|| format!("period {text:?} is not \"day\", \"month\" or \"total\""))
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetUnit {
    /// Cost in USD, from the model's price.
    Usd,
    /// Input plus output tokens (cached and reasoning ones included, as
    /// the ledger counts them).
    Tokens,
}

impl BudgetUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usd => "usd",
            Self::Tokens => "tokens",
        }
    }
}

impl fmt::Display for BudgetUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a budget allows in its period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetLimit {
    Usd(f64),
    Tokens(u64),
}

/// The most a USD limit may be: far above any real budget, low enough
/// that amounts in nano-USD fit a u64 with room to spare.
pub const MAX_BUDGET_USD: f64 = 1_000_000_000.0;
/// The least a USD limit may be: one cent, the least a limit is shown
/// with (a smaller one would read as a limit of 0.00).
pub const MIN_BUDGET_USD: f64 = 0.01;
/// The most a token limit may be.
pub const MAX_BUDGET_TOKENS: u64 = 1_000_000_000_000_000;

impl BudgetLimit {
    pub fn unit(self) -> BudgetUnit {
        match self {
            Self::Usd(_) => BudgetUnit::Usd,
            Self::Tokens(_) => BudgetUnit::Tokens,
        }
    }

    /// The limit as a number of its unit.
    pub fn amount(self) -> f64 {
        match self {
            Self::Usd(usd) => usd,
            Self::Tokens(tokens) => tokens as f64,
        }
    }

    /// A limit that makes sense: finite, at least [`MIN_BUDGET_USD`] or
    /// one token, and at most [`MAX_BUDGET_USD`] / [`MAX_BUDGET_TOKENS`].
    pub fn check(self) -> Result<Self, String> {
        match self {
            Self::Usd(usd) if (MIN_BUDGET_USD..=MAX_BUDGET_USD).contains(&usd) => Ok(self),
            Self::Usd(usd) => Err(format!(
                "usd = {usd} must be at least {MIN_BUDGET_USD} and at most {MAX_BUDGET_USD}"
            )),
            Self::Tokens(tokens) if tokens > 0 && tokens <= MAX_BUDGET_TOKENS => Ok(self),
            Self::Tokens(tokens) => Err(format!(
                "tokens = {tokens} must be more than 0 and at most {MAX_BUDGET_TOKENS}"
            )),
        }
    }
}

impl fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usd(usd) => write!(f, "{usd}usd"),
            Self::Tokens(tokens) => write!(f, "{tokens}tokens"),
        }
    }
}

/// One budget: whose calls, over which period, up to what.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRule {
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    pub limit: BudgetLimit,
}

/// A budget for one agent alone, as `spawn --budget` takes it:
/// `AMOUNT{usd|tokens}[/day|/month|/total]` (`2usd/day`,
/// `100000tokens/month`; without a period, `total`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentBudget {
    pub limit: BudgetLimit,
    pub period: BudgetPeriod,
}

impl FromStr for AgentBudget {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "budget {text:?} {why}; write AMOUNT usd or tokens, then /day, /month or /total (2usd/day, 100000tokens/month, 5usd)"
            )
        };
        let trimmed = text.trim();
        let (amount, period) = match trimmed.split_once('/') {
            Some((amount, period)) => (amount, period.parse().map_err(|e: String| bad(&e))?),
            None => (trimmed, BudgetPeriod::Total),
        };
        let lower = amount.trim().to_ascii_lowercase();
        let limit = if let Some(number) = lower.strip_suffix("usd") {
            let usd: f64 = number
                .trim()
                .parse()
                .map_err(|_| bad("has no amount of USD"))?;
            BudgetLimit::Usd(usd)
        } else if let Some(number) = lower.strip_suffix("tokens") {
            let tokens: u64 = number.trim().parse().map_err(|error: ParseIntError| {
                if *error.kind() == IntErrorKind::PosOverflow {
                    bad(&format!(
                        "is out of range: tokens must be at most {MAX_BUDGET_TOKENS}"
                    ))
                } else {
                    bad("has no whole number of tokens")
                }
            })?;
            BudgetLimit::Tokens(tokens)
        } else {
            return Err(bad("names no unit"));
        };
        let limit = limit
            .check()
            .map_err(|e| bad(&format!("is out of range: {e}")))?;
        Ok(Self { limit, period })
    }
}

impl fmt::Display for AgentBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.period)
    }
}

/// Where a budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetSource {
    /// A `[[budgets]]` entry of the config file.
    Config,
    /// `spawn --budget`: one agent's own.
    Spawn,
}

/// A budget as it stands: what it allows, what was spent in its current
/// period (from the usage ledger), what calls in flight hold, what is left,
/// and when it resets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// `all`, `agent:NAME` or `profile:NAME`.
    pub scope: String,
    pub period: BudgetPeriod,
    pub unit: BudgetUnit,
    pub source: BudgetSource,
    pub limit: f64,
    pub spent: f64,
    /// Held by calls in flight (their worst case) until they settle.
    pub reserved: f64,
    /// `limit - spent - reserved`, never below 0.
    pub remaining: f64,
    /// When the period ends (RFC 3339, UTC); absent for `total`, which never resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets: Option<String>,
}

impl BudgetState {
    /// The budget's name in messages: `agent:x/day (2 usd)`.
    pub fn title(&self) -> String {
        let own = match self.source {
            BudgetSource::Spawn => " (the agent's own)",
            BudgetSource::Config => "",
        };
        format!(
            "{}/{}{own}, {} {}",
            self.scope,
            self.period,
            amount(self.unit, self.limit),
            self.unit
        )
    }

    /// `resets` as people read it: the time, or `never`.
    pub fn resets_text(&self) -> &str {
        self.resets.as_deref().unwrap_or("never")
    }
}

/// An amount of `unit` as text: USD with cents and up to six decimals (a
/// single call often costs less than a cent), tokens whole.
pub fn amount(unit: BudgetUnit, value: f64) -> String {
    match unit {
        BudgetUnit::Usd => {
            let text = format!("{value:.6}");
            let trimmed = text.trim_end_matches('0');
            match trimmed.split_once('.') {
                Some((_, cents)) if cents.len() < 2 => format!("{value:.2}"),
                _ => trimmed.to_owned(),
            }
        }
        BudgetUnit::Tokens => format!("{value:.0}"),
    }
}

/// Whose calls a ledger sum covers, for seeding a budget's spending.
#[derive(Debug, Clone, PartialEq)]
pub enum SpendScope {
    All,
    /// Every incarnation of a name.
    AgentName(String),
    /// One incarnation (a spawn budget).
    AgentId(uuid::Uuid),
    /// `COALESCE(profile, provider)`.
    Profile(String),
}

impl From<&BudgetScope> for SpendScope {
    fn from(scope: &BudgetScope) -> Self {
        match scope {
            BudgetScope::All => Self::All,
            BudgetScope::Agent(name) => Self::AgentName(name.clone()),
            BudgetScope::Profile(name) => Self::Profile(name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        let now = at("2026-12-31T23:59:59.5Z");
        let day = BudgetPeriod::Day.start(now).unwrap();
        assert_eq!(day, at("2026-12-31T00:00:00Z"));
        assert_eq!(BudgetPeriod::Day.end(day), Some(at("2027-01-01T00:00:00Z")));
        let month = BudgetPeriod::Month.start(now).unwrap();
        assert_eq!(month, at("2026-12-01T00:00:00Z"));
        assert_eq!(
            BudgetPeriod::Month.end(month),
            Some(at("2027-01-01T00:00:00Z"))
        );
        // Another offset is the same instant, counted in UTC.
        let east = at("2026-03-01T01:30:00+02:00");
        assert_eq!(
            BudgetPeriod::Month.start(east),
            Some(at("2026-02-01T00:00:00Z"))
        );
        assert_eq!(
            BudgetPeriod::Month.end(at("2028-02-01T00:00:00Z")),
            Some(at("2028-03-01T00:00:00Z"))
        );
        assert_eq!(BudgetPeriod::Total.start(now), None);
        assert_eq!(BudgetPeriod::Total.end(now), None);
    }

    #[test]
    fn agent_budgets_parse_and_print() {
        let budget: AgentBudget = "2usd/day".parse().unwrap();
        assert_eq!(budget.limit, BudgetLimit::Usd(2.0));
        assert_eq!(budget.period, BudgetPeriod::Day);
        assert_eq!(budget.to_string(), "2usd/day");
        let budget: AgentBudget = "100000tokens/month".parse().unwrap();
        assert_eq!(budget.limit, BudgetLimit::Tokens(100_000));
        let budget: AgentBudget = "5usd".parse().unwrap();
        assert_eq!(budget.period, BudgetPeriod::Total);
        assert_eq!(budget.to_string(), "5usd/total");
        assert_eq!(
            "0.5 USD/total".parse::<AgentBudget>().unwrap().limit,
            BudgetLimit::Usd(0.5)
        );
        for bad in [
            "",
            "2",
            "2eur/day",
            "2usd/week",
            "-1usd",
            "0usd",
            "NaNusd",
            "infusd",
            "1.5tokens",
            "0tokens",
            "usd",
            "1e30usd",
            "0.001usd",
            "99999999999999999999tokens",
        ] {
            let error = bad.parse::<AgentBudget>().expect_err(bad);
            assert!(error.contains("budget"), "{bad}: {error}");
        }
    }

    #[test]
    fn amounts_read_well() {
        assert_eq!(amount(BudgetUnit::Usd, 2.0), "2.00");
        assert_eq!(amount(BudgetUnit::Usd, 1.5), "1.50");
        assert_eq!(amount(BudgetUnit::Usd, 0.000503), "0.000503");
        assert_eq!(amount(BudgetUnit::Usd, 0.0), "0.00");
        assert_eq!(amount(BudgetUnit::Tokens, 1030.0), "1030");
    }

    #[test]
    fn scopes_parse_and_print() {
        for text in ["all", "agent:x", "profile:work"] {
            assert_eq!(text.parse::<BudgetScope>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "everyone",
            "agent:",
            "agent",
            "team:x",
            "agent:../x",
            "agent:a b",
        ] {
            assert!(bad.parse::<BudgetScope>().is_err(), "{bad}");
        }
    }
}
