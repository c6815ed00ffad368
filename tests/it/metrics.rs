//! `GET /metrics`: Prometheus text that `promtool check metrics` (Debian's
//! `prometheus` package) accepts, named after the OpenTelemetry GenAI
//! conventions, whose counters agree with the usage ledger, served on the
//! socket and on TCP with the token only.
//!
//! promtool comes from `$ORCHESTRATION_PROMTOOL`, else `promtool` on PATH.
//! Without either that check is skipped with a message on stderr, unless
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1` (set by `scripts/test.sh`), when
//! it fails.

use crate::common;
use crate::common::Harness;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::Env;
use common::fake_provider::{FakeProvider, Reply, openai_chunks_with_usage};
use common::in_process::InProcess;
use serde_json::json;

const CONFIG: &str = r#"
[providers]
max_retries = 0

[prices."gpt-test"]
input = 2.0
output = 8.0
"#;

fn promtool() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORCHESTRATION_PROMTOOL") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    })
}

/// One sample line: its name, labels and value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a text exposition (label values here have no `,` or `"`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').expect("key=value");
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            (name, labels, value)
        })
        .collect()
}

/// The sum of a metric's samples whose labels include `wanted`.
fn sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && wanted
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

#[test]
fn metrics_validate_and_agree_with_the_usage_ledger() {
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&openai_chunks_with_usage(
        "gpt-test",
        &["one"],
        Some(json!({"prompt_tokens": 120, "completion_tokens": 30,
                    "prompt_tokens_details": {"cached_tokens": 20},
                    "completion_tokens_details": {"reasoning_tokens": 7}})),
    )));
    fake.push(Reply::sse(&openai_chunks_with_usage(
        "gpt-test",
        &["two"],
        Some(json!({"prompt_tokens": 300, "completion_tokens": 40})),
    )));
    fake.push(Reply::text(500, "the model is down"));
    let daemon = InProcess::serve(Env::new().config(CONFIG), &[]);
    let spawned = daemon.json(
        "POST",
        "/agents",
        Some(
            json!({"name": "a", "provider": "openai", "model": "gpt-test",
                    "base_url": fake.url("/v1"), "api_key": "sk-test"}),
        ),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    assert_eq!(daemon.say("a", "first").status, 200);
    assert_eq!(daemon.say("a", "second").status, 200);
    assert_eq!(daemon.say("a", "third").status, 502);

    let response = daemon.request("GET", "/metrics", None);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text();
    let found = samples(&text);

    // The counters say what the ledger says.
    let ledger = daemon.cli(&["--json", "usage"]);
    ledger.ok();
    let total = &ledger.json()["total"];
    for (kind, field) in [
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cache_read", "cache_read_tokens"),
        ("cache_write", "cache_write_tokens"),
        ("reasoning", "reasoning_tokens"),
    ] {
        let counted = sum(
            &found,
            "orchestration_usage_tokens_total",
            &[("gen_ai_token_type", kind)],
        );
        assert_eq!(counted, total[field].as_f64().unwrap(), "{kind}\n{text}");
    }
    assert_eq!(total["input_tokens"], 420);
    let cost = sum(&found, "orchestration_usage_cost_usd_total", &[]);
    assert!(
        (cost - total["cost_usd"].as_f64().unwrap()).abs() < 1e-12,
        "{text}"
    );
    assert_eq!(
        sum(
            &found,
            "orchestration_usage_calls_total",
            &[("price_source", "config")]
        ),
        2.0
    );
    // The OpenTelemetry histograms: a token-usage observation per call and
    // type, and every call's duration, the failed one under its error.type.
    let labels = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-test"),
        ("gen_ai_response_model", "gpt-test"),
    ];
    let mut input = labels.to_vec();
    input.push(("gen_ai_token_type", "input"));
    assert_eq!(sum(&found, "gen_ai_client_token_usage_count", &input), 2.0);
    assert_eq!(sum(&found, "gen_ai_client_token_usage_sum", &input), 420.0);
    let mut bucket = input.clone();
    bucket.push(("le", "256"));
    assert_eq!(
        sum(&found, "gen_ai_client_token_usage_bucket", &bucket),
        1.0
    );
    assert_eq!(
        sum(
            &found,
            "gen_ai_client_operation_duration_seconds_count",
            &labels
        ),
        3.0
    );
    assert_eq!(
        sum(
            &found,
            "gen_ai_client_operation_duration_seconds_count",
            &[("error_type", "server_error")]
        ),
        1.0
    );
    // The daemon's own gauges.
    assert_eq!(
        sum(&found, "orchestration_agents", &[("state", "failed")]),
        1.0
    );
    assert_eq!(
        sum(&found, "orchestration_provider_calls_in_flight", &[]),
        0.0
    );
    assert_eq!(sum(&found, "orchestration_approvals_pending", &[]), 0.0);
    assert!(sum(&found, "orchestration_store_size_bytes", &[]) > 0.0);

    // TCP: with the token only.
    assert_eq!(daemon.tcp_json("GET", "/metrics", None).status, 200);
    let host = format!("127.0.0.1:{}", daemon.port().unwrap());
    let anonymous = daemon.tcp_request("GET", "/metrics", &[("Host", &host)], None);
    assert_eq!(anonymous.status, 401);

    check_with_promtool(&text);
}

fn check_with_promtool(text: &str) {
    let Some(promtool) = promtool() else {
        let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
        assert!(
            !required,
            "promtool is required (ORCHESTRATION_REQUIRE_THIRD_PARTY=1): install Debian's prometheus package"
        );
        eprintln!("SKIPPED: promtool is not installed, so /metrics was not checked with it");
        return;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
