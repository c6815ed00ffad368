//! What provider calls cost: each call's ledger row ([`Call`], priced from
//! `[prices."MODEL"]` over the built-in table), and the in-memory counters
//! behind `GET /metrics` ([`Meter`]), fed by the same rows the ledger
//! commits, so the two cannot disagree.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::lock;
use crate::config::{Config, PriceConfig};
use crate::model::{AgentConfig, Clock, PriceSource, Usage, UsageRecord, now_rfc3339};
use crate::providers::ProviderError;

/// A price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl From<&PriceConfig> for Price {
    fn from(price: &PriceConfig) -> Self {
        Self {
            input: price.input,
            output: price.output,
            cache_read: price.cache_read.unwrap_or(price.input),
            cache_write: price.cache_write.unwrap_or(price.input),
        }
    }
}

const fn price(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// List prices of well-known models, USD per million tokens, as their
/// makers published them in September 2025 (README lists them). Config
/// overrides any of them. OpenAI bills no cache writes (priced as input).
pub const BUILT_IN: &[(&str, Price)] = &[
    ("gpt-5", price(1.25, 10.0, 0.125, 1.25)),
    ("gpt-5-mini", price(0.25, 2.0, 0.025, 0.25)),
    ("gpt-5-nano", price(0.05, 0.40, 0.005, 0.05)),
    ("gpt-4.1", price(2.0, 8.0, 0.50, 2.0)),
    ("gpt-4.1-mini", price(0.40, 1.60, 0.10, 0.40)),
    ("gpt-4.1-nano", price(0.10, 0.40, 0.025, 0.10)),
    ("gpt-4o", price(2.50, 10.0, 1.25, 2.50)),
    ("gpt-4o-mini", price(0.15, 0.60, 0.075, 0.15)),
    ("o3", price(2.0, 8.0, 0.50, 2.0)),
    ("o3-mini", price(1.10, 4.40, 0.55, 1.10)),
    ("o4-mini", price(1.10, 4.40, 0.275, 1.10)),
    ("claude-opus-4-1", price(15.0, 75.0, 1.50, 18.75)),
    ("claude-opus-4", price(15.0, 75.0, 1.50, 18.75)),
    ("claude-sonnet-4-5", price(3.0, 15.0, 0.30, 3.75)),
    ("claude-sonnet-4", price(3.0, 15.0, 0.30, 3.75)),
    ("claude-3-7-sonnet", price(3.0, 15.0, 0.30, 3.75)),
    ("claude-haiku-4-5", price(1.0, 5.0, 0.10, 1.25)),
    ("claude-3-5-haiku", price(0.80, 4.0, 0.08, 1.0)),
];

/// How well a price table's key names `model`: its exact name (after any
/// `vendor/` prefix, as OpenRouter names models), or a start of it
/// followed by `-` (a dated snapshot such as `claude-sonnet-4-5-20250929`).
/// The longer the key, the better; None: it does not name it.
fn fit(key: &str, model: &str) -> Option<usize> {
    let bare = model.rsplit_once('/').map_or(model, |(_, bare)| bare);
    [model, bare]
        .into_iter()
        .filter(|name| {
            *name == key
                || name
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .map(|name| if name == key { usize::MAX } else { key.len() })
        .max()
}

/// The price of `model` and where it came from: the entry of the config's
/// table or the built-in one that names it best (see [`fit`]), the
/// config's on a tie; the offline `echo` provider is free. None: unknown.
pub fn price_of(provider: &str, model: &str, config: &Config) -> Option<(Price, PriceSource)> {
    if provider == "echo" && !config.prices.contains_key(model) {
        return Some((price(0.0, 0.0, 0.0, 0.0), PriceSource::BuiltIn));
    }
    let configured = config
        .prices
        .iter()
        .map(|(key, price)| (key.as_str(), Price::from(price), PriceSource::Config));
    let built_in = BUILT_IN
        .iter()
        .map(|(key, price)| (*key, *price, PriceSource::BuiltIn));
    let mut best: Option<(usize, Price, PriceSource)> = None;
    for (key, price, source) in configured.chain(built_in) {
        if let Some(score) = fit(key, model)
            && best.is_none_or(|(top, ..)| score > top)
        {
            best = Some((score, price, source));
        }
    }
    best.map(|(_, price, source)| (price, source))
}

/// What `usage` costs at `price`, in USD. Cached and cache-written input
/// are part of `input_tokens` ([`Usage`]'s convention), priced apart.
pub fn cost(usage: &Usage, price: &Price) -> f64 {
    let cached = usage
        .cache_read_tokens
        .saturating_add(usage.cache_write_tokens);
    let plain_input = usage.input_tokens.saturating_sub(cached);
    let per_million = plain_input as f64 * price.input
        + usage.cache_read_tokens as f64 * price.cache_read
        + usage.cache_write_tokens as f64 * price.cache_write
        + usage.output_tokens as f64 * price.output;
    per_million / 1_000_000.0
}

/// One provider call: its ledger row, and what the metrics add.
#[derive(Debug, Clone)]
pub struct Call {
    pub record: UsageRecord,
    /// The model asked for (the reply may name another).
    pub request_model: String,
    pub duration: Duration,
    /// Why it failed (the OpenTelemetry `error.type`), if it did.
    pub error: Option<&'static str>,
}

impl Call {
    /// The call an agent just made: `requested` is the model it asked for,
    /// `reply` the reply's metadata (which names the model that answered).
    pub fn new(
        config: &Config,
        agent: &AgentConfig,
        agent_id: uuid::Uuid,
        requested: Option<&str>,
        reply: &Map<String, Value>,
        usage: Option<Usage>,
    ) -> Self {
        let (provider, _) = crate::providers::endpoint::summary(&agent.provider, config);
        let request_model = requested.unwrap_or(provider).to_owned();
        let model = reply
            .get("model")
            .and_then(Value::as_str)
            .filter(|model| !model.is_empty())
            .unwrap_or(&request_model)
            .to_owned();
        let usage = usage.unwrap_or_default();
        let priced = price_of(provider, &model, config);
        let record = UsageRecord {
            at: now_rfc3339(),
            agent: agent.name.to_string(),
            agent_id,
            provider: provider.to_owned(),
            profile: agent.provider.profile.clone(),
            cost_usd: priced.map(|(price, _)| cost(&usage, &price)),
            price_source: priced.map_or(PriceSource::Unknown, |(_, source)| source),
            model,
            usage,
        };
        Self {
            record,
            request_model,
            duration: Duration::ZERO,
            error: None,
        }
    }

    /// How long the call took, and how it failed if it did.
    pub fn took(mut self, duration: Duration, error: Option<&ProviderError>) -> Self {
        self.duration = duration;
        self.error = error.map(error_type);
        self
    }

    /// The ledger row dated by `clock` (the engine's) rather than the wall
    /// clock, like the reply it is recorded with.
    pub fn stamped(mut self, clock: &Clock) -> Self {
        self.record.at = clock.now_rfc3339();
        self
    }
}

/// A failure's `error.type`: a short, fixed label (bounded cardinality).
fn error_type(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Status { status, .. } if *status == 429 => "rate_limited",
        ProviderError::Status { status, .. } if *status >= 500 => "server_error",
        ProviderError::Status { .. } => "client_error",
        ProviderError::Timeout(_) => "timeout",
        ProviderError::Connect(_) => "connect",
        ProviderError::Protocol(_) => "protocol",
        ProviderError::Stream(_) => "stream",
        ProviderError::Other(_) => "other",
        ProviderError::Limit(_) => "limit",
    }
}

/// OpenTelemetry's advice for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// OpenTelemetry's advice for `gen_ai.client.operation.duration` (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// A histogram's counts per bucket (not cumulative; the last one is `+Inf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let slot = bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(bounds.len());
        self.buckets[slot] += 1;
        self.sum += value;
        self.count += 1;
    }
}

/// The labels of a call's metrics: provider, model asked for, model that
/// answered. Never the agent (bounded cardinality).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallLabels {
    pub provider: String,
    pub request_model: String,
    pub response_model: String,
}

/// Counters since the daemon started, as `GET /metrics` shows them.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// `gen_ai.client.token.usage`, by labels and token type (`input`, `output`).
    pub token_usage: BTreeMap<(CallLabels, &'static str), Histogram>,
    /// Every token type's total, by labels and type.
    pub tokens: BTreeMap<(CallLabels, &'static str), u64>,
    /// Cost of priced calls, by labels and price source.
    pub cost_usd: BTreeMap<(CallLabels, PriceSource), f64>,
    /// Calls recorded in the ledger, by labels and price source.
    pub calls: BTreeMap<(CallLabels, PriceSource), u64>,
    /// `gen_ai.client.operation.duration`, by labels and `error.type`.
    pub duration: BTreeMap<(CallLabels, Option<&'static str>), Histogram>,
}

/// The counters, shared by every agent's worker.
#[derive(Debug, Default)]
pub struct Meter {
    counters: std::sync::Mutex<Counters>,
}

impl Meter {
    /// Counts a call: its time always; its tokens and cost only once its
    /// ledger row is committed (`recorded`), so the metrics say what the
    /// ledger says.
    pub fn observe(&self, call: &Call, recorded: bool) {
        let record = &call.record;
        let labels = CallLabels {
            provider: record.provider.clone(),
            request_model: call.request_model.clone(),
            response_model: record.model.clone(),
        };
        let mut counters = lock(&self.counters);
        counters
            .duration
            .entry((labels.clone(), call.error))
            .or_default()
            .observe(&DURATION_BUCKETS, call.duration.as_secs_f64());
        if !recorded {
            return;
        }
        let usage = &record.usage;
        for (kind, count) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            counters
                .token_usage
                .entry((labels.clone(), kind))
                .or_default()
                .observe(&TOKEN_BUCKETS, count as f64);
        }
        for (kind, count) in token_counts(usage) {
            *counters.tokens.entry((labels.clone(), kind)).or_default() += count;
        }
        *counters
            .calls
            .entry((labels.clone(), record.price_source))
            .or_default() += 1;
        if let Some(cost) = record.cost_usd {
            *counters
                .cost_usd
                .entry((labels, record.price_source))
                .or_default() += cost;
        }
    }

    pub fn snapshot(&self) -> Counters {
        lock(&self.counters).clone()
    }
}

/// Each token type's count, named as the ledger's fields are.
pub fn token_counts(usage: &Usage) -> [(&'static str, u64); 5] {
    [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("cache_write", usage.cache_write_tokens),
        ("reasoning", usage.reasoning_tokens),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_prices_win_and_dated_snapshots_and_vendor_prefixes_match() {
        let config = Config::parse("[prices.\"gpt-4o\"]\ninput = 1.0\noutput = 2.0\n").unwrap();
        let (price, source) = price_of("openai", "gpt-4o-2024-08-06", &config).unwrap();
        assert_eq!(
            (price.input, price.cache_read, source),
            (1.0, 1.0, PriceSource::Config)
        );
        let (price, source) = price_of("openai", "openai/gpt-4o-mini", &config).unwrap();
        assert_eq!((price.input, source), (0.15, PriceSource::BuiltIn));
        let (price, _) = price_of("anthropic", "claude-sonnet-4-5-20250929", &config).unwrap();
        assert_eq!(price.output, 15.0);
        assert!(price_of("openai", "gpt-4oops", &config).is_none());
        assert!(price_of("openai", "my-local-model", &config).is_none());
        assert_eq!(
            price_of("echo", "echo", &config).unwrap().1,
            PriceSource::BuiltIn
        );
    }

    #[test]
    fn cached_input_is_priced_apart_from_the_rest() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 500_000,
            cache_write_tokens: 100_000,
            reasoning_tokens: 10,
        };
        let cost = cost(&usage, &price(3.0, 15.0, 0.3, 3.75));
        // 400k plain input, 500k read, 100k written, 1M output.
        let expected = 0.4 * 3.0 + 0.5 * 0.3 + 0.1 * 3.75 + 15.0;
        assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    }
}
