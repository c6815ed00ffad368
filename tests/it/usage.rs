//! The usage ledger: every provider call's tokens (in every shape the
//! OpenAI and Anthropic protocols report them) recorded with the reply,
//! priced from config or the built-in table (or `unknown`, never a silent
//! zero), and summed by `GET /usage` and `orchestration usage`.

use crate::common;
use crate::common::Harness;

use common::Env;
use common::fake_provider::{
    FakeProvider, Reply, anthropic_events_with_usage, openai_chunks_with_usage,
};
use common::in_process::InProcess;
use serde_json::{Value, json};

const PRICES: &str = r#"
[providers]
max_retries = 0

[prices."gpt-test"]
input = 2.0
output = 8.0
cache_read = 0.5
"#;

/// The cost of the OpenAI call below: 600 plain input tokens at $2/M, 400
/// cached at $0.5/M, 500 output at $8/M.
const OPENAI_COST: f64 = (600.0 * 2.0 + 400.0 * 0.5 + 500.0 * 8.0) / 1e6;
/// The Anthropic call at the built-in claude-sonnet-4-5 price: 100 plain
/// input at $3/M, 2000 read from the cache at $0.30/M, 300 written at
/// $3.75/M, 50 output at $15/M.
const ANTHROPIC_COST: f64 = (100.0 * 3.0 + 2000.0 * 0.3 + 300.0 * 3.75 + 50.0 * 15.0) / 1e6;

fn spawn(daemon: &InProcess, body: Value) {
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
}

fn said(daemon: &InProcess, agent: &str, prompt: &str) -> Value {
    let reply = daemon.say(agent, prompt);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["messages"][0].clone()
}

fn usage(daemon: &impl Harness, query: &str) -> Value {
    let response = daemon.json("GET", &format!("/usage{query}"), None);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-12)
}

/// Four calls: OpenAI with cached and reasoning tokens in its last chunk, a
/// dated model name and a config price; OpenAI with no usage at all;
/// Anthropic with cache reads and writes at a built-in price; and a model
/// no table prices.
fn four_calls(daemon: &InProcess, fake: &FakeProvider) {
    fake.push(Reply::sse(&openai_chunks_with_usage(
        "gpt-test-2025-01-01",
        &["Hello"],
        Some(json!({
            "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 200}
        })),
    )));
    fake.push(Reply::sse(&openai_chunks_with_usage(
        "gpt-test",
        &["Again"],
        None,
    )));
    fake.push(Reply::sse(&anthropic_events_with_usage(
        "claude-sonnet-4-5-20250929",
        &["Bonjour"],
        json!({"input_tokens": 100, "cache_read_input_tokens": 2000,
               "cache_creation_input_tokens": 300, "output_tokens": 1}),
        json!({"output_tokens": 50}),
    )));
    fake.push(Reply::sse(&openai_chunks_with_usage(
        "mystery",
        &["Who?"],
        Some(json!({"prompt_tokens": 10, "completion_tokens": 5})),
    )));
    let openai = |name: &str, model: &str| {
        json!({"name": name, "provider": "openai", "model": model,
               "base_url": fake.url("/v1"), "api_key": "sk-test"})
    };
    spawn(daemon, openai("a", "gpt-test"));
    spawn(
        daemon,
        json!({"name": "c", "provider": "anthropic", "model": "claude-sonnet-4-5",
               "base_url": fake.url(""), "api_key": "ak-test"}),
    );
    spawn(daemon, openai("m", "mystery"));
    let first = said(daemon, "a", "hi");
    assert_eq!(
        first["metadata"]["usage"],
        json!({"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 400,
               "cache_write_tokens": 0, "reasoning_tokens": 200})
    );
    said(daemon, "a", "hi again");
    let claude = said(daemon, "c", "salut");
    // Anthropic's input_tokens leaves the cache out; ours counts it in.
    assert_eq!(claude["metadata"]["usage"]["input_tokens"], 2400);
    assert_eq!(claude["metadata"]["usage"]["cache_write_tokens"], 300);
    said(daemon, "m", "who are you");
}

#[test]
fn the_ledger_sums_every_shape_of_usage_and_prices_it_by_hand() {
    let fake = FakeProvider::start();
    let daemon = InProcess::serve(Env::new().config(PRICES), &["--no-tcp"]);
    four_calls(&daemon, &fake);

    let all = usage(&daemon, "");
    let total = &all["total"];
    assert_eq!(total["calls"], 4, "{all}");
    assert_eq!(total["input_tokens"], 1000 + 2400 + 10);
    assert_eq!(total["output_tokens"], 500 + 50 + 5);
    assert_eq!(total["cache_read_tokens"], 400 + 2000);
    assert_eq!(total["cache_write_tokens"], 300);
    assert_eq!(total["reasoning_tokens"], 200);
    assert!(
        close(&total["cost_usd"], OPENAI_COST + ANTHROPIC_COST),
        "{all}"
    );
    // One call had no price: the total says so instead of counting it as 0.
    assert_eq!(total["price_source"], "mixed");
    assert_eq!(total["unpriced_calls"], 1);
    assert_eq!(all["groups"], json!([]));

    let by_model = usage(&daemon, "?by=model");
    let groups = by_model["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    // Most expensive first; the model the reply named, not the one asked for.
    assert_eq!(
        keys,
        [
            "gpt-test-2025-01-01",
            "claude-sonnet-4-5-20250929",
            "mystery",
            "gpt-test"
        ]
    );
    assert_eq!(groups[0]["price_source"], "config");
    assert!(close(&groups[0]["cost_usd"], OPENAI_COST));
    assert_eq!(groups[1]["price_source"], "built-in");
    assert!(close(&groups[1]["cost_usd"], ANTHROPIC_COST));
    assert_eq!(groups[2]["price_source"], "unknown");
    assert_eq!(groups[2]["cost_usd"], Value::Null);
    assert_eq!(groups[2]["unpriced_calls"], 1);
    // No usage reported: a call of zero tokens, priced at zero from config.
    assert_eq!(groups[3]["calls"], 1);
    assert_eq!(groups[3]["input_tokens"], 0);

    let by_agent = usage(&daemon, "?by=agent");
    let a = by_agent["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["calls"], 2);
    let only_a = usage(&daemon, "?agent=a&by=profile");
    assert_eq!(only_a["total"]["calls"], 2);
    assert_eq!(only_a["groups"][0]["key"], "openai");
    let by_day = usage(&daemon, "?by=day&since=1h");
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1);
    assert_eq!(by_day["groups"][0]["calls"], 4);
    let future = usage(&daemon, "?since=2999-01-01T00:00:00Z");
    assert_eq!(future["total"]["calls"], 0);
    assert_eq!(future["total"]["cost_usd"], Value::Null);

    // The agent's own totals carry the finer counts too.
    let info = daemon.json("GET", "/agents/c", None).json();
    assert_eq!(info["usage"]["cache_read_tokens"], 2000, "{info}");

    // The CLI: --json is the API's answer; the table names the price source.
    let cli = daemon.cli(&["--json", "usage", "--by", "model"]);
    cli.ok();
    assert_eq!(cli.json(), by_model);
    let table = daemon.cli(&["usage", "--by", "agent", "--since", "7d"]);
    table.ok();
    let text = table.stdout();
    assert!(text.starts_with("AGENT"), "{text}");
    let m_line = text.lines().find(|l| l.starts_with("m ")).unwrap();
    assert!(m_line.contains("unknown"), "{text}");
    let total_line = text.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total_line.contains("mixed (1 unpriced)"), "{text}");
    assert!(total_line.contains(">= 0.0082"), "{text}");
}

#[test]
fn the_ledger_outlives_a_restart_and_a_prune() {
    let fake = FakeProvider::start();
    let mut daemon = InProcess::serve(Env::new().config(PRICES), &["--no-tcp"]);
    four_calls(&daemon, &fake);
    let before = usage(&daemon, "?by=agent");
    for name in ["a", "c", "m"] {
        let gone = daemon.json("DELETE", &format!("/agents/{name}"), None);
        assert_eq!(gone.status, 204, "{}", gone.text());
    }
    let env = daemon.env.clone();
    daemon.stop().unwrap();
    drop(daemon);

    let again = InProcess::serve(env, &["--no-tcp"]);
    assert_eq!(usage(&again, "?by=agent"), before);
    // Pruning the ended conversations keeps what they cost.
    let pruned = again.cli(&["prune", "--older-than", "0s"]);
    pruned.ok();
    assert!(pruned.stdout().contains('3'), "{}", pruned.stdout());
    assert_eq!(usage(&again, "?by=agent"), before);
}

#[test]
fn bad_usage_queries_are_clear_errors() {
    let daemon = InProcess::serve(Env::new(), &["--no-tcp"]);
    for query in ["?by=week", "?since=yesterday", "?agent=.bad"] {
        let response = daemon.json("GET", &format!("/usage{query}"), None);
        assert_eq!(response.status, 422, "{query}: {}", response.text());
        assert_eq!(response.json()["code"], "invalid_query", "{query}");
    }
    let cli = daemon.cli(&["usage", "--by", "week"]);
    assert_eq!(cli.code(), 2, "{}", cli.stderr());
    let cli = daemon.cli(&["usage", "--since", "yesterday"]);
    assert_eq!(cli.code(), 2, "{}", cli.stderr());
    assert!(cli.stderr().contains("since"), "{}", cli.stderr());
    let empty = daemon.cli(&["usage"]);
    empty.ok();
    assert_eq!(empty.stdout(), "no provider calls recorded\n");
}

#[test]
fn a_price_out_of_range_is_refused_naming_the_key() {
    let env = Env::new().config("[prices.\"gpt-x\"]\ninput = -1.0\noutput = 1.0\n");
    let out = env.cli(&["config", "list"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr().contains("prices.\"gpt-x\".input"),
        "{}",
        out.stderr()
    );
    let env = Env::new().config("[prices.\"gpt-x\"]\ninput = 1.0\n");
    let out = env.cli(&["config", "list"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr().contains("output"), "{}", out.stderr());
}
