//! Budgets that cannot be overshot: before a provider call its worst case
//! (estimated input plus its output bound) is *reserved* against every
//! budget that applies, all at once under one lock, or the call is refused;
//! after it, the hold is *settled* with what the ledger recorded. A hold
//! dropped unsettled (a cancel, an error) is released.
//!
//! Spending is counted from the usage ledger for the current period (so it
//! survives a restart) and kept as a running total in memory, seeded from
//! the store at start and at reload; a period's rollover starts it at 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

use super::lock;
use super::usage::Price;
use crate::model::{
    AgentBudget, AgentName, BudgetLimit, BudgetPeriod, BudgetRule, BudgetScope, BudgetSource,
    BudgetState, BudgetUnit, Event, SpendScope, UsageRecord, amount,
};

/// Amounts are whole units: tokens, or nano-USD (a billionth of a dollar),
/// so that sums and comparisons are exact.
const NANOS_PER_USD: f64 = 1_000_000_000.0;

/// Why a call may not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BudgetError {
    /// Boxed: a refusal carries the budget's whole state.
    #[error("{0}")]
    Exceeded(Box<Refusal>),
    #[error(
        "budget {budget} counts USD, and no price is known for model '{model}': add [prices.\"{model}\"] (input, output in USD per million tokens) to the config file and run `orchestration serve --reload`"
    )]
    Unpriced { budget: String, model: String },
}

/// A budget without room for a call: its state, and the amounts as text.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "budget {} has no room for this call: limit {limit}, spent {spent}, reserved {reserved} by calls in flight, this call needs up to {needed}; it resets {}",
    .state.title(),
    resets(.state)
)]
pub struct Refusal {
    pub state: BudgetState,
    pub limit: String,
    pub spent: String,
    pub reserved: String,
    pub needed: String,
}

fn resets(state: &BudgetState) -> String {
    match &state.resets {
        Some(at) => format!("at {at}"),
        None => "never (period total)".to_owned(),
    }
}

/// Who pays for a call: the budgets with this scope apply to it.
#[derive(Debug, Clone)]
pub struct Payer {
    pub agent: AgentName,
    pub id: Uuid,
    /// The profile, or the provider without one (as `usage --by profile`).
    pub profile: String,
    /// The provider kind (`openai`, `echo`, …), for the model's price.
    pub provider: String,
    /// The model whose price a USD budget needs.
    pub model: String,
}

/// A call's worst case.
#[derive(Debug, Clone, Copy)]
pub struct Worst {
    pub tokens: u64,
    /// None when the model's price is unknown.
    pub usd: Option<f64>,
}

impl Worst {
    /// `input_tokens` of estimated input and `output_tokens` of output
    /// bound, priced at `price`: every input token at the dearest input
    /// rate (a cache write can cost more than plain input).
    pub fn of(input_tokens: u64, output_tokens: u64, price: Option<Price>) -> Self {
        let usd = price.map(|price| {
            let input = price.input.max(price.cache_read).max(price.cache_write);
            (input_tokens as f64 * input + output_tokens as f64 * price.output) / 1_000_000.0
        });
        Self {
            tokens: input_tokens.saturating_add(output_tokens),
            usd,
        }
    }
}

/// Where a budget lives, so a hold finds it again after a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Config(u64),
    Agent(Uuid),
}

/// One budget and its running totals.
#[derive(Debug, Clone)]
struct Tracked {
    id: u64,
    rule: BudgetRule,
    source: BudgetSource,
    /// The current period's start; None for `total`.
    start: Option<OffsetDateTime>,
    /// When the current period ends; None for `total`.
    ends: Option<OffsetDateTime>,
    spent: u64,
    reserved: u64,
    /// The highest warning sent this period (0, 80, 100).
    warned: u8,
}

impl Tracked {
    fn new(id: u64, rule: BudgetRule, source: BudgetSource, now: OffsetDateTime) -> Self {
        let start = rule.period.start(now);
        Self {
            id,
            ends: start.and_then(|start| rule.period.end(start)),
            start,
            rule,
            source,
            spent: 0,
            reserved: 0,
            warned: 0,
        }
    }

    /// Starts a new period if `now` is past the current one's end: nothing
    /// spent in it yet (what the ledger says of a period just begun).
    /// Holds of calls in flight stay: they settle into the new period,
    /// as their ledger rows, written when they end, will be counted.
    fn roll(&mut self, now: OffsetDateTime) {
        if self.ends.is_some_and(|ends| now >= ends) {
            self.start = self.rule.period.start(now);
            self.ends = self.start.and_then(|start| self.rule.period.end(start));
            self.spent = 0;
            self.warned = 0;
        }
    }

    fn limit(&self) -> u64 {
        match self.rule.limit {
            BudgetLimit::Usd(usd) => nanos_floor(usd),
            BudgetLimit::Tokens(tokens) => tokens,
        }
    }

    fn applies(&self, payer: &Payer) -> bool {
        match (&self.rule.scope, self.source) {
            (_, BudgetSource::Spawn) => true,
            (BudgetScope::All, _) => true,
            (BudgetScope::Agent(name), _) => name == payer.agent.as_str(),
            (BudgetScope::Profile(name), _) => *name == payer.profile,
        }
    }

    fn unit(&self) -> BudgetUnit {
        self.rule.limit.unit()
    }

    /// An amount of this budget's unit as a number of it.
    fn value(&self, units: u64) -> f64 {
        match self.unit() {
            BudgetUnit::Usd => units as f64 / NANOS_PER_USD,
            BudgetUnit::Tokens => units as f64,
        }
    }

    fn text(&self, units: u64) -> String {
        format!("{} {}", amount(self.unit(), self.value(units)), self.unit())
    }

    fn state(&self) -> BudgetState {
        let limit = self.limit();
        BudgetState {
            scope: self.rule.scope.to_string(),
            period: self.rule.period,
            unit: self.unit(),
            source: self.source,
            limit: self.rule.limit.amount(),
            spent: self.value(self.spent),
            reserved: self.value(self.reserved),
            remaining: self.value(limit.saturating_sub(self.spent.saturating_add(self.reserved))),
            resets: self.ends.map(rfc3339),
        }
    }

    /// What a call's worst case takes of this budget, or why it cannot be
    /// counted (a USD budget, an unpriced model).
    fn need(&self, worst: &Worst, payer: &Payer) -> Result<u64, BudgetError> {
        match self.unit() {
            BudgetUnit::Tokens => Ok(worst.tokens),
            BudgetUnit::Usd => worst
                .usd
                .map(nanos_ceil)
                .ok_or_else(|| BudgetError::Unpriced {
                    budget: self.state().title(),
                    model: payer.model.clone(),
                }),
        }
    }

    fn refusal(&self, needed: u64) -> BudgetError {
        BudgetError::Exceeded(Box::new(Refusal {
            state: self.state(),
            limit: self.text(self.limit()),
            spent: self.text(self.spent),
            reserved: self.text(self.reserved),
            needed: self.text(needed),
        }))
    }

    /// Adds `units` actually spent; the warning it crosses into, if any.
    fn spend(&mut self, units: u64) -> Option<u8> {
        self.spent = self.spent.saturating_add(units);
        let limit = self.limit();
        let percent = if self.spent >= limit {
            100
        } else if self.spent.saturating_mul(5) >= limit.saturating_mul(4) {
            80
        } else {
            return None;
        };
        (percent > self.warned).then(|| {
            self.warned = percent;
            percent
        })
    }
}

/// Every budget in effect: the config's and the live agents' own.
#[derive(Debug, Default)]
struct State {
    config: Vec<Tracked>,
    agents: HashMap<Uuid, Tracked>,
    next_id: u64,
}

impl State {
    fn get_mut(&mut self, slot: Slot) -> Option<&mut Tracked> {
        match slot {
            Slot::Config(id) => self.config.iter_mut().find(|t| t.id == id),
            Slot::Agent(id) => self.agents.get_mut(&id),
        }
    }

    /// The budgets that apply to `payer`, each with where it lives.
    fn applying(&mut self, payer: &Payer) -> Vec<(Slot, &mut Tracked)> {
        let own = self
            .agents
            .get_mut(&payer.id)
            .map(|t| (Slot::Agent(payer.id), t));
        self.config
            .iter_mut()
            .filter(|t| t.applies(payer))
            .map(|t| (Slot::Config(t.id), t))
            .chain(own)
            .collect()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The daemon's budgets; one lock, never held across an await or I/O.
#[derive(Debug, Default)]
pub struct Budgets {
    state: Mutex<State>,
}

/// A call's worst case held against its budgets until it settles; dropped
/// unsettled, it gives its hold back.
#[must_use = "dropping a hold releases it; settle it with the call's ledger row"]
pub struct Hold {
    budgets: Arc<Budgets>,
    held: Vec<(Slot, u64)>,
    payer: Payer,
}

impl Budgets {
    /// Puts the config's budgets in effect: an entry that was there before
    /// (same scope, period and unit) keeps its totals and holds; a new one
    /// starts from `seed`, which reads what the ledger says it spent in its
    /// current period (read before the lock is taken).
    pub fn configure(
        &self,
        rules: Vec<BudgetRule>,
        now: OffsetDateTime,
        seed: impl Fn(&SpendScope, Option<&str>) -> (u64, f64),
    ) {
        let kept: Vec<(BudgetScope, BudgetPeriod, BudgetUnit)> = lock(&self.state)
            .config
            .iter()
            .map(|t| (t.rule.scope.clone(), t.rule.period, t.unit()))
            .collect();
        let mut seeds = Vec::new();
        for rule in &rules {
            let key = (rule.scope.clone(), rule.period, rule.limit.unit());
            if kept.contains(&key) {
                seeds.push(None);
                continue;
            }
            let since = rule.period.start(now).map(since_text);
            seeds.push(Some(seed(&SpendScope::from(&rule.scope), since.as_deref())));
        }
        let mut state = lock(&self.state);
        let mut old = std::mem::take(&mut state.config);
        for (rule, seed) in rules.into_iter().zip(seeds) {
            let same = |t: &Tracked| {
                t.rule.scope == rule.scope
                    && t.rule.period == rule.period
                    && t.unit() == rule.limit.unit()
            };
            let tracked = match old.iter().position(same) {
                Some(at) => {
                    let mut tracked = old.swap_remove(at);
                    tracked.rule = rule;
                    tracked
                }
                None => {
                    let id = state.id();
                    let mut tracked = Tracked::new(id, rule, BudgetSource::Config, now);
                    tracked.spent = seeded(&tracked, seed.unwrap_or_default());
                    tracked
                }
            };
            state.config.push(tracked);
        }
    }

    /// Gives a live agent its own budget, with what its incarnation spent
    /// in the current period (`seed`: 0 for a new one).
    pub fn add_agent(
        &self,
        id: Uuid,
        budget: AgentBudget,
        agent: &AgentName,
        now: OffsetDateTime,
        seed: (u64, f64),
    ) {
        let rule = BudgetRule {
            scope: BudgetScope::Agent(agent.to_string()),
            period: budget.period,
            limit: budget.limit,
        };
        let mut state = lock(&self.state);
        let slot = state.id();
        let mut tracked = Tracked::new(slot, rule, BudgetSource::Spawn, now);
        tracked.spent = seeded(&tracked, seed);
        state.agents.insert(id, tracked);
    }

    /// Forgets an ended agent's own budget.
    pub fn remove_agent(&self, id: Uuid) {
        lock(&self.state).agents.remove(&id);
    }

    /// Whether any budget applies to `payer` (then its calls are bounded).
    pub fn applies(&self, payer: &Payer) -> bool {
        let mut state = lock(&self.state);
        !state.applying(payer).is_empty()
    }

    /// Refuses a call that could never fit: a budget whose settled spending
    /// leaves less than `least` (what the call takes at the very least),
    /// or a USD budget for an unpriced model. Checked before anything is
    /// recorded; calls in flight are not counted, so a call passed here
    /// may still be refused by [`Self::reserve`].
    pub fn check(
        &self,
        payer: &Payer,
        least: &Worst,
        now: OffsetDateTime,
    ) -> Result<(), BudgetError> {
        let mut state = lock(&self.state);
        for (_, tracked) in state.applying(payer) {
            tracked.roll(now);
            let needed = tracked.need(least, payer)?;
            if tracked.spent.saturating_add(needed) > tracked.limit() {
                return Err(tracked.refusal(needed));
            }
        }
        Ok(())
    }

    /// Holds `worst` against every budget that applies to `payer`, all or
    /// none: refused if any lacks the room (or, counting USD, the price).
    /// None when no budget applies.
    pub fn reserve(
        self: &Arc<Self>,
        payer: &Payer,
        worst: &Worst,
        now: OffsetDateTime,
    ) -> Result<Option<Hold>, BudgetError> {
        let mut state = lock(&self.state);
        let mut wanted = Vec::new();
        for (slot, tracked) in state.applying(payer) {
            tracked.roll(now);
            let needed = tracked.need(worst, payer)?;
            let taken = tracked.spent.saturating_add(tracked.reserved);
            if taken.saturating_add(needed) > tracked.limit() {
                return Err(tracked.refusal(needed));
            }
            wanted.push((slot, needed));
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        for (slot, needed) in &wanted {
            if let Some(tracked) = state.get_mut(*slot) {
                tracked.reserved = tracked.reserved.saturating_add(*needed);
            }
        }
        Ok(Some(Hold {
            budgets: self.clone(),
            held: wanted,
            payer: payer.clone(),
        }))
    }

    /// Adds a call that held nothing (a coding agent's turn, whose usage is
    /// known only after it) to every budget that applies to `payer`.
    pub fn charge(&self, payer: &Payer, record: &UsageRecord, now: OffsetDateTime) -> Vec<Event> {
        let mut state = lock(&self.state);
        let slots: Vec<Slot> = state.applying(payer).into_iter().map(|(s, _)| s).collect();
        settle_into(&mut state, payer, &slots, &[], record, now)
    }

    /// Every budget and where it stands at `now`.
    pub fn states(&self, now: OffsetDateTime) -> Vec<BudgetState> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let mut agents: Vec<&mut Tracked> = state.agents.values_mut().collect();
        agents.sort_by(|a, b| a.rule.scope.cmp(&b.rule.scope));
        state
            .config
            .iter_mut()
            .chain(agents)
            .map(|tracked| {
                tracked.roll(now);
                tracked.state()
            })
            .collect()
    }

    /// The config's budgets only (bounded in number: `/metrics` labels).
    pub fn config_states(&self, now: OffsetDateTime) -> Vec<BudgetState> {
        let mut state = lock(&self.state);
        state
            .config
            .iter_mut()
            .map(|tracked| {
                tracked.roll(now);
                tracked.state()
            })
            .collect()
    }
}

impl Hold {
    /// Replaces the hold with what the call spent, as its ledger row says;
    /// the warnings this crosses into.
    pub fn settle(mut self, record: &UsageRecord, now: OffsetDateTime) -> Vec<Event> {
        let held = std::mem::take(&mut self.held);
        let slots: Vec<Slot> = held.iter().map(|(slot, _)| *slot).collect();
        let mut state = lock(&self.budgets.state);
        settle_into(&mut state, &self.payer, &slots, &held, record, now)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut state = lock(&self.budgets.state);
        for (slot, units) in &self.held {
            if let Some(tracked) = state.get_mut(*slot) {
                tracked.reserved = tracked.reserved.saturating_sub(*units);
            }
        }
    }
}

/// Releases `held` and adds `record`'s spending to each budget of `slots`.
fn settle_into(
    state: &mut State,
    payer: &Payer,
    slots: &[Slot],
    held: &[(Slot, u64)],
    record: &UsageRecord,
    now: OffsetDateTime,
) -> Vec<Event> {
    let tokens = record
        .usage
        .input_tokens
        .saturating_add(record.usage.output_tokens);
    let mut warnings = Vec::new();
    for slot in slots {
        let Some(tracked) = state.get_mut(*slot) else {
            continue;
        };
        if let Some((_, units)) = held.iter().find(|(s, _)| s == slot) {
            tracked.reserved = tracked.reserved.saturating_sub(*units);
        }
        tracked.roll(now);
        let units = match tracked.unit() {
            BudgetUnit::Tokens => tokens,
            BudgetUnit::Usd => record.cost_usd.map_or(0, nanos_round),
        };
        if let Some(percent) = tracked.spend(units) {
            let state = tracked.state();
            tracing::warn!(
                agent = %payer.agent,
                budget = %state.title(),
                spent = %amount(state.unit, state.spent),
                percent,
                resets = %state.resets_text(),
                "budget {percent}% spent"
            );
            warnings.push(Event::Budget {
                scope: state.scope,
                period: state.period,
                unit: state.unit,
                source: state.source,
                percent,
                limit: state.limit,
                spent: state.spent,
                resets: state.resets,
            });
        }
    }
    warnings
}

/// What the ledger says was spent, in the budget's unit.
fn seeded(tracked: &Tracked, (tokens, usd): (u64, f64)) -> u64 {
    match tracked.unit() {
        BudgetUnit::Tokens => tokens,
        BudgetUnit::Usd => nanos_round(usd),
    }
}

/// A period's start as the ledger's `at` compares with it: its date
/// (`2026-12-07` sorts before every time of that day, and after the day before's).
pub fn since_text(start: OffsetDateTime) -> String {
    start.date().to_string()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Rounding noise of a product of floats, far below a nano-USD: a worst
/// case computed as 503.0000000001 nano-USD is 503, not 504.
const NOISE: f64 = 1e-6;

fn nanos_ceil(usd: f64) -> u64 {
    (usd.max(0.0) * NANOS_PER_USD - NOISE).ceil().max(0.0) as u64
}

fn nanos_floor(usd: f64) -> u64 {
    (usd.max(0.0) * NANOS_PER_USD + NOISE).floor() as u64
}

fn nanos_round(usd: f64) -> u64 {
    (usd.max(0.0) * NANOS_PER_USD).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PriceSource, Usage};

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn payer(name: &str) -> Payer {
        Payer {
            agent: AgentName::parse(name).unwrap(),
            id: Uuid::new_v4(),
            profile: "openai".into(),
            provider: "openai".into(),
            model: "m".into(),
        }
    }

    fn rule(period: BudgetPeriod, limit: BudgetLimit) -> BudgetRule {
        BudgetRule {
            scope: BudgetScope::All,
            period,
            limit,
        }
    }

    fn record(tokens: u64, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            at: String::new(),
            agent: "a".into(),
            agent_id: Uuid::nil(),
            provider: "openai".into(),
            profile: None,
            model: "m".into(),
            usage: Usage {
                input_tokens: tokens,
                ..Usage::default()
            },
            cost_usd: cost,
            price_source: PriceSource::Config,
        }
    }

    fn tokens(n: u64) -> Worst {
        Worst {
            tokens: n,
            usd: None,
        }
    }

    #[test]
    fn a_day_rolls_over_at_utc_midnight_and_a_month_on_the_first() {
        let day = rule(BudgetPeriod::Day, BudgetLimit::Tokens(100));
        let mut tracked = Tracked::new(1, day, BudgetSource::Config, at("2026-12-06T22:00:00Z"));
        tracked.spent = 90;
        tracked.warned = 80;
        tracked.reserved = 5;
        tracked.roll(at("2026-12-06T23:59:59.999Z"));
        assert_eq!(tracked.spent, 90);
        assert_eq!(
            tracked.state().resets.as_deref(),
            Some("2026-12-07T00:00:00Z")
        );
        tracked.roll(at("2026-12-07T00:00:00Z"));
        assert_eq!((tracked.spent, tracked.warned, tracked.reserved), (0, 0, 5));
        assert_eq!(
            tracked.state().resets.as_deref(),
            Some("2026-12-08T00:00:00Z")
        );
        // Days with no call at all: the next call finds the right period.
        tracked.spent = 7;
        tracked.roll(at("2027-01-03T10:00:00+05:00"));
        assert_eq!(tracked.spent, 0);
        assert_eq!(
            tracked.state().resets.as_deref(),
            Some("2027-01-04T00:00:00Z")
        );

        let month = rule(BudgetPeriod::Month, BudgetLimit::Usd(1.0));
        let mut tracked = Tracked::new(2, month, BudgetSource::Config, at("2026-12-31T23:00:00Z"));
        tracked.spent = 3;
        tracked.roll(at("2026-12-31T23:59:59Z"));
        assert_eq!(tracked.spent, 3);
        tracked.roll(at("2027-01-01T00:00:01Z"));
        assert_eq!(tracked.spent, 0);
        assert_eq!(
            tracked.state().resets.as_deref(),
            Some("2027-02-01T00:00:00Z")
        );

        let total = rule(BudgetPeriod::Total, BudgetLimit::Tokens(1));
        let mut tracked = Tracked::new(3, total, BudgetSource::Config, at("2026-12-31T23:00:00Z"));
        tracked.spent = 3;
        tracked.roll(at("2999-01-01T00:00:00Z"));
        assert_eq!(tracked.spent, 3);
        assert_eq!(tracked.state().resets, None);
    }

    #[test]
    fn a_refused_call_after_rollover_fits_again() {
        let budgets = Arc::new(Budgets::default());
        let now = at("2026-12-06T12:00:00Z");
        budgets.configure(
            vec![rule(BudgetPeriod::Day, BudgetLimit::Tokens(100))],
            now,
            |_, since| {
                assert_eq!(since, Some("2026-12-06"));
                (95, 0.0)
            },
        );
        let payer = payer("a");
        let error = budgets.reserve(&payer, &tokens(10), now).err().unwrap();
        let text = error.to_string();
        assert!(text.contains("resets at 2026-12-07T00:00:00Z"), "{text}");
        assert!(text.contains("spent 95 tokens"), "{text}");
        let hold = budgets
            .reserve(&payer, &tokens(10), at("2026-12-07T00:00:00Z"))
            .unwrap();
        assert!(hold.is_some());
    }

    #[test]
    fn holds_are_all_or_nothing_released_when_dropped_and_settled_to_the_actual() {
        let budgets = Arc::new(Budgets::default());
        let now = at("2026-12-06T12:00:00Z");
        budgets.configure(
            vec![
                rule(BudgetPeriod::Total, BudgetLimit::Tokens(100)),
                BudgetRule {
                    scope: BudgetScope::Agent("b".into()),
                    period: BudgetPeriod::Day,
                    limit: BudgetLimit::Tokens(30),
                },
            ],
            now,
            |_, _| (0, 0.0),
        );
        let a = payer("a");
        let b = payer("b");
        let first = budgets.reserve(&b, &tokens(20), now).unwrap().unwrap();
        // b's own budget has 10 left: refused, and `all` keeps no part of it.
        assert!(budgets.reserve(&b, &tokens(20), now).is_err());
        let states = budgets.states(now);
        assert_eq!((states[0].reserved, states[1].reserved), (20.0, 20.0));
        drop(first);
        let states = budgets.states(now);
        assert_eq!((states[0].reserved, states[1].reserved), (0.0, 0.0));
        let hold = budgets.reserve(&a, &tokens(90), now).unwrap().unwrap();
        assert!(budgets.reserve(&a, &tokens(20), now).is_err());
        let warnings = hold.settle(&record(85, None), now);
        assert_eq!(warnings.len(), 1, "80% of `all` crossed");
        assert!(matches!(warnings[0], Event::Budget { percent: 80, .. }));
        // The unused 5 came back.
        let state = &budgets.states(now)[0];
        assert_eq!(
            (state.spent, state.reserved, state.remaining),
            (85.0, 0.0, 15.0)
        );
        assert!(budgets.reserve(&a, &tokens(15), now).unwrap().is_some());
    }

    #[test]
    fn usd_budgets_need_a_price_and_count_exactly() {
        let budgets = Arc::new(Budgets::default());
        let now = at("2026-12-06T12:00:00Z");
        budgets.configure(
            vec![rule(BudgetPeriod::Month, BudgetLimit::Usd(0.3))],
            now,
            |_, _| (0, 0.0),
        );
        let a = payer("a");
        let error = budgets.reserve(&a, &tokens(1), now).err().unwrap();
        assert!(matches!(error, BudgetError::Unpriced { .. }), "{error}");
        assert!(error.to_string().contains("[prices.\"m\"]"), "{error}");
        // Three worst cases of 0.1 fit 0.3 exactly (no float drift).
        let worst = Worst::of(
            50_000,
            10_000,
            Some(Price {
                input: 1.0,
                output: 5.0,
                cache_read: 0.1,
                cache_write: 1.0,
            }),
        );
        assert_eq!(worst.usd, Some(0.1));
        let holds: Vec<Hold> = (0..3)
            .map(|_| budgets.reserve(&a, &worst, now).unwrap().unwrap())
            .collect();
        assert!(budgets.reserve(&a, &worst, now).is_err());
        drop(holds);
        assert!(budgets.check(&a, &worst, now).is_ok());
        let hold = budgets.reserve(&a, &worst, now).unwrap().unwrap();
        let warnings = hold.settle(&record(0, Some(0.3)), now);
        assert!(matches!(warnings[0], Event::Budget { percent: 100, .. }));
        assert!(budgets.check(&a, &worst, now).is_err());
    }

    #[test]
    fn a_turn_charged_after_it_may_overshoot_once_then_the_next_is_refused() {
        // A coding agent's turn: checked for one unit of room, charged after.
        let budgets = Arc::new(Budgets::default());
        let now = at("2026-12-06T12:00:00Z");
        budgets.configure(
            vec![rule(BudgetPeriod::Day, BudgetLimit::Tokens(100))],
            now,
            |_, _| (0, 0.0),
        );
        let a = payer("a");
        assert!(budgets.check(&a, &tokens(1), now).is_ok());
        let warnings = budgets.charge(&a, &record(150, None), now);
        assert!(matches!(warnings[0], Event::Budget { percent: 100, .. }));
        assert_eq!(budgets.states(now)[0].spent, 150.0);
        assert!(budgets.check(&a, &tokens(1), now).is_err());
        // The next day it runs again.
        assert!(
            budgets
                .check(&a, &tokens(1), at("2026-12-07T00:00:00Z"))
                .is_ok()
        );
    }

    #[test]
    fn a_reload_keeps_a_budgets_totals_and_seeds_a_new_one() {
        let budgets = Arc::new(Budgets::default());
        let now = at("2026-12-06T12:00:00Z");
        let all = rule(BudgetPeriod::Day, BudgetLimit::Tokens(100));
        budgets.configure(vec![all.clone()], now, |_, _| (40, 0.0));
        let hold = budgets
            .reserve(&payer("a"), &tokens(10), now)
            .unwrap()
            .unwrap();
        let bigger = rule(BudgetPeriod::Day, BudgetLimit::Tokens(200));
        let profile = BudgetRule {
            scope: BudgetScope::Profile("openai".into()),
            period: BudgetPeriod::Total,
            limit: BudgetLimit::Tokens(1000),
        };
        budgets.configure(vec![bigger, profile], now, |scope, since| {
            assert_eq!(*scope, SpendScope::Profile("openai".into()));
            assert_eq!(since, None);
            (500, 0.0)
        });
        let states = budgets.states(now);
        assert_eq!(
            (states[0].limit, states[0].spent, states[0].reserved),
            (200.0, 40.0, 10.0)
        );
        assert_eq!(states[1].spent, 500.0);
        drop(hold);
        assert_eq!(budgets.states(now)[0].reserved, 0.0);
    }
}
