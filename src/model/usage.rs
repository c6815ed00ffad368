//! The usage ledger's types: one provider call as recorded ([`UsageRecord`]),
//! where its price came from ([`PriceSource`]), and the sums `GET /usage`
//! answers ([`UsageReport`], grouped [`UsageBy`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Usage;

/// Where a call's price came from. `Unknown` means the cost is not known
/// (never a silent zero): no price was configured or built in for its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceSource {
    /// `[prices."MODEL"]` in the config file.
    Config,
    /// The daemon's own table of well-known models (or a free provider).
    BuiltIn,
    /// What the coding agent's CLI reported the call cost (Claude Code's
    /// `total_cost_usd`), for a model the config does not price.
    Reported,
    Unknown,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::BuiltIn => "built-in",
            Self::Reported => "reported",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Config, Self::BuiltIn, Self::Reported, Self::Unknown]
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider call, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the reply was recorded (RFC 3339, UTC).
    pub at: String,
    pub agent: String,
    /// The incarnation, which is also its conversation.
    pub agent_id: Uuid,
    /// The provider kind (`openai`, `anthropic`, …).
    pub provider: String,
    pub profile: Option<String>,
    /// The model the reply says answered, else the one asked for.
    pub model: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// In USD; `None` when `price_source` is `unknown`.
    pub cost_usd: Option<f64>,
    pub price_source: PriceSource,
}

/// How `GET /usage` groups the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageBy {
    Agent,
    /// The profile, or the provider for a spawn that named none.
    Profile,
    Model,
    /// The UTC calendar day.
    Day,
}

impl UsageBy {
    pub const ALL: [Self; 4] = [Self::Agent, Self::Profile, Self::Model, Self::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Profile => "profile",
            Self::Model => "model",
            Self::Day => "day",
        }
    }
}

impl FromStr for UsageBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|by| by.as_str() == s)
            .ok_or_else(|| format!("unknown grouping {s:?}; expected agent, profile, model or day"))
    }
}

impl fmt::Display for UsageBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ledger read covers.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter<'a> {
    pub by: Option<UsageBy>,
    /// RFC 3339, UTC: calls at or after it.
    pub since: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// The sums over a set of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageGroup {
    /// The group's agent, profile, model or day; absent for the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub calls: u64,
    #[serde(flatten)]
    pub usage: Usage,
    /// The sum over the priced calls; `None` when no call was priced.
    pub cost_usd: Option<f64>,
    /// `config`, `built-in`, `reported` or `unknown` when every call's price came from
    /// there; `mixed` otherwise; `none` over no calls.
    pub price_source: String,
    /// Calls whose cost is unknown (not in `cost_usd`).
    pub unpriced_calls: u64,
}

/// What a group over no calls says of its price.
const NO_CALLS: &str = "none";

impl Default for UsageGroup {
    /// A group over no calls: nothing spent, and no price source to name.
    fn default() -> Self {
        Self {
            key: None,
            calls: 0,
            usage: Usage::default(),
            cost_usd: None,
            price_source: NO_CALLS.to_owned(),
            unpriced_calls: 0,
        }
    }
}

impl UsageGroup {
    /// Adds `calls` calls priced from `source` with these sums.
    pub fn add(&mut self, calls: u64, usage: Usage, cost: Option<f64>, source: PriceSource) {
        let empty = self.calls == 0;
        self.calls = self.calls.saturating_add(calls);
        self.usage.add(usage);
        if source == PriceSource::Unknown {
            self.unpriced_calls = self.unpriced_calls.saturating_add(calls);
        } else {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + cost.unwrap_or(0.0));
        }
        if empty {
            self.price_source = source.as_str().to_owned();
        } else if self.price_source != source.as_str() {
            self.price_source = "mixed".to_owned();
        }
    }
}

/// `GET /usage`: the total over the calls asked for and, when grouped, one
/// group each, most expensive first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UsageBy>,
    /// The start of the period covered (RFC 3339), if not all time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub total: UsageGroup,
    #[serde(default)]
    pub groups: Vec<UsageGroup>,
    /// Every budget in effect and where it stands now (whatever the filter).
    #[serde(default)]
    pub budgets: Vec<super::BudgetState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_names_where_its_prices_came_from_and_none_over_no_calls() {
        let mut group = UsageGroup::default();
        assert_eq!(group.price_source, "none");
        assert_eq!(group.cost_usd, None);
        group.add(1, Usage::default(), Some(0.5), PriceSource::Config);
        assert_eq!(group.price_source, "config");
        group.add(1, Usage::default(), Some(0.25), PriceSource::Config);
        assert_eq!(group.price_source, "config");
        group.add(2, Usage::default(), None, PriceSource::Unknown);
        assert_eq!(group.price_source, "mixed");
        assert_eq!(group.cost_usd, Some(0.75));
        assert_eq!(group.unpriced_calls, 2);
    }
}
