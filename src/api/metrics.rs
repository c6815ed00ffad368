//! `GET /metrics`: the Prometheus text format (version 0.0.4). Provider
//! calls are named after the OpenTelemetry GenAI semantic conventions,
//! translated the standard way (`gen_ai.client.token.usage` →
//! `gen_ai_client_token_usage`, `gen_ai.client.operation.duration` in
//! seconds → `gen_ai_client_operation_duration_seconds`, attribute dots →
//! underscores); the daemon's own are `orchestration_*`. No agent name is
//! ever a label (a budget's scope is config text: `agent:NAME` only as the
//! config file names it), so the number of series stays bounded.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::ApiContext;
use super::body::Body;
use crate::engine::usage::{CallLabels, DURATION_BUCKETS, Histogram, TOKEN_BUCKETS};
use crate::model::BudgetState;

/// The only operation API agents perform (OpenTelemetry's name for it).
const OPERATION: &str = "chat";

pub fn render(ctx: &ApiContext) -> Response<Body> {
    let text = text(ctx);
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn text(ctx: &ApiContext) -> String {
    let counters = ctx.engine.meter().snapshot();
    let gauges = ctx.engine.gauges();
    let mut out = String::new();

    family(
        &mut out,
        "gen_ai_client_token_usage",
        "histogram",
        "Tokens used per provider call, by token type (input, output).",
    );
    for ((labels, kind), histogram) in &counters.token_usage {
        let mut pairs = call_labels(labels);
        pairs.push(("gen_ai_token_type", (*kind).to_owned()));
        histogram_lines(
            &mut out,
            "gen_ai_client_token_usage",
            &pairs,
            &TOKEN_BUCKETS,
            histogram,
        );
    }

    family(
        &mut out,
        "gen_ai_client_operation_duration_seconds",
        "histogram",
        "How long provider calls took, from the request to the reply's end.",
    );
    for ((labels, error), histogram) in &counters.duration {
        let mut pairs = call_labels(labels);
        if let Some(error) = error {
            pairs.push(("error_type", (*error).to_owned()));
        }
        histogram_lines(
            &mut out,
            "gen_ai_client_operation_duration_seconds",
            &pairs,
            &DURATION_BUCKETS,
            histogram,
        );
    }

    family(
        &mut out,
        "orchestration_usage_tokens_total",
        "counter",
        "Tokens recorded in the usage ledger since the daemon started, by type (input, output, cache_read, cache_write, reasoning).",
    );
    for ((labels, kind), count) in &counters.tokens {
        let mut pairs = call_labels(labels);
        pairs.push(("gen_ai_token_type", (*kind).to_owned()));
        sample(
            &mut out,
            "orchestration_usage_tokens_total",
            &pairs,
            *count as f64,
        );
    }

    family(
        &mut out,
        "orchestration_usage_calls_total",
        "counter",
        "Provider calls recorded in the usage ledger since the daemon started, by where their price came from.",
    );
    for ((labels, source), count) in &counters.calls {
        let mut pairs = call_labels(labels);
        pairs.push(("price_source", source.as_str().to_owned()));
        sample(
            &mut out,
            "orchestration_usage_calls_total",
            &pairs,
            *count as f64,
        );
    }

    family(
        &mut out,
        "orchestration_usage_cost_usd_total",
        "counter",
        "Cost in USD of the priced calls recorded since the daemon started (calls with price_source unknown add nothing).",
    );
    for ((labels, source), cost) in &counters.cost_usd {
        let mut pairs = call_labels(labels);
        pairs.push(("price_source", source.as_str().to_owned()));
        sample(
            &mut out,
            "orchestration_usage_cost_usd_total",
            &pairs,
            *cost,
        );
    }

    family(
        &mut out,
        "orchestration_agents",
        "gauge",
        "Live agents, by state.",
    );
    for (state, count) in &gauges.agents {
        let pairs = [("state", state.as_str().to_owned())];
        sample(&mut out, "orchestration_agents", &pairs, *count as f64);
    }
    let plain = [
        (
            "orchestration_queued_messages",
            "Messages agents have taken and not yet answered, the ones in progress included.",
            gauges.queued_messages as f64,
        ),
        (
            "orchestration_provider_calls_in_flight",
            "Provider calls running now.",
            gauges.provider_calls_in_flight as f64,
        ),
        (
            "orchestration_provider_calls_waiting",
            "Provider calls waiting for a free slot (limits.max_provider_calls).",
            gauges.provider_calls_waiting as f64,
        ),
        (
            "orchestration_event_streams",
            "Open event streams (GET /events readers).",
            gauges.event_streams as f64,
        ),
        (
            "orchestration_approvals_pending",
            "Tool calls waiting for an approval.",
            gauges.approvals_pending as f64,
        ),
        (
            "orchestration_store_size_bytes",
            "Bytes the store takes on disk, its write-ahead log included.",
            gauges.store_bytes as f64,
        ),
        (
            "orchestration_uptime_seconds",
            "Seconds since the daemon started.",
            ctx.engine.uptime().as_secs_f64(),
        ),
    ];
    for (name, help, value) in plain {
        family(&mut out, name, "gauge", help);
        sample(&mut out, name, &[], value);
    }
    budgets(&mut out, ctx);
    out
}

/// The config's `[[budgets]]`: limit and what is left, by scope, period
/// and unit. Agents' own budgets (`spawn --budget`) are not series: there
/// is one per agent, and agent names are never labels.
fn budgets(out: &mut String, ctx: &ApiContext) {
    let states = ctx.engine.budgets().config_states(ctx.engine.now());
    let families = [
        (
            "orchestration_budget_limit",
            "What a [[budgets]] entry allows per period, in its unit (usd or tokens).",
            (|s: &BudgetState| s.limit) as fn(&BudgetState) -> f64,
        ),
        (
            "orchestration_budget_remaining",
            "What a [[budgets]] entry has left this period, in its unit: the limit less what was spent and what calls in flight hold.",
            |s: &BudgetState| s.remaining,
        ),
    ];
    for (name, help, value) in families {
        family(out, name, "gauge", help);
        for state in &states {
            let pairs = [
                ("scope", state.scope.clone()),
                ("period", state.period.as_str().to_owned()),
                ("unit", state.unit.as_str().to_owned()),
            ];
            sample(out, name, &pairs, value(state));
        }
    }
}

fn call_labels(labels: &CallLabels) -> Vec<(&'static str, String)> {
    vec![
        ("gen_ai_operation_name", OPERATION.to_owned()),
        ("gen_ai_provider_name", labels.provider.clone()),
        ("gen_ai_request_model", labels.request_model.clone()),
        ("gen_ai_response_model", labels.response_model.clone()),
    ]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram_lines(
    out: &mut String,
    name: &str,
    labels: &[(&'static str, String)],
    bounds: &[f64],
    histogram: &Histogram,
) {
    let mut cumulative = 0;
    for (i, bound) in bounds
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_owned()])
        .enumerate()
    {
        cumulative += histogram.buckets.get(i).copied().unwrap_or(0);
        let mut pairs = labels.to_vec();
        pairs.push(("le", bound));
        sample(out, &format!("{name}_bucket"), &pairs, cumulative as f64);
    }
    sample(out, &format!("{name}_sum"), labels, histogram.sum);
    sample(
        out,
        &format!("{name}_count"),
        labels,
        histogram.count as f64,
    );
}

fn sample(out: &mut String, name: &str, labels: &[(&'static str, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw".to_owned())], 1.5);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }
}
