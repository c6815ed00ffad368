//! Budgets that cannot be overshot: `[[budgets]]` and `spawn --budget`,
//! each call's worst case reserved before it reaches the model server and
//! settled from its ledger row after, under fan-out and across a restart;
//! refusals are 402 with a code; warnings are events; `usage`,
//! `serve --status` and `/metrics` show each budget's state.

use std::io::BufRead;

use serde_json::{Value, json};

use crate::common;
use crate::common::Harness;
use crate::events::Subscriber;
use common::Env;
use common::fake_provider::{FakeProvider, Gate, Reply, Step, openai_chunks_with_usage};
use common::in_process::InProcess;

/// The prompt every test sends: 12 bytes, estimated at 3 tokens.
const PROMPT: &str = "hello there!";
/// The output bound the config below sets.
const BOUND: u64 = 100;
/// A call's worst case with no instructions and a fresh context: 3 + 100.
const WORST: u64 = 3 + BOUND;

/// A profile on the fake server (no key), a small output bound, and a
/// price that makes a worst case cost 0.503 USD (3 × $1000/M + 100 × $5000/M).
fn config(fake: &FakeProvider, budgets: &str) -> String {
    format!(
        "[providers]\nmax_retries = 0\nbudget_max_tokens = {BOUND}\n\n\
         [profiles.fake]\nbase_url = \"{}\"\nmodel = \"gpt-test\"\n\n\
         [prices.\"gpt-test\"]\ninput = 1000.0\noutput = 5000.0\n\n{budgets}",
        fake.url("/v1")
    )
}

/// A reply that reports `input` and `output` tokens.
fn reply(input: u64, output: u64) -> Reply {
    Reply::sse(&openai_chunks_with_usage(
        "gpt-test",
        &["fine"],
        Some(json!({"prompt_tokens": input, "completion_tokens": output})),
    ))
}

fn spawn(daemon: &impl Harness, body: Value) {
    let response = daemon.json("POST", "/agents", Some(body));
    assert_eq!(response.status, 200, "{}", response.text());
}

fn budgets(daemon: &impl Harness) -> Vec<Value> {
    let response = daemon.json("GET", "/usage", None);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["budgets"]
        .as_array()
        .expect("a budgets array")
        .clone()
}

#[track_caller]
fn refused(response: &common::HttpResponse, code: &str) -> String {
    assert_eq!(response.status, 402, "{}", response.text());
    assert_eq!(response.json()["code"], code, "{}", response.text());
    response.detail()
}

#[test]
fn thirty_two_concurrent_calls_against_a_budget_of_ten_worst_cases_run_ten() {
    let fake = FakeProvider::start();
    let budget = format!(
        "[[budgets]]\nscope = \"all\"\nperiod = \"day\"\ntokens = {}\n",
        10 * WORST
    );
    let daemon = InProcess::serve(Env::new().config(&config(&fake, &budget)), &["--no-tcp"]);
    // Every call that reaches the server waits there until the refusals are
    // all in: the ten must hold the whole budget while they run.
    let gate = Gate::new();
    for _ in 0..32 {
        fake.push(reply(3, BOUND).insert(0, Step::Wait(gate.clone())));
    }
    let names: Vec<String> = (0..32).map(|n| format!("a{n}")).collect();
    for name in &names {
        spawn(&daemon, json!({"name": name, "profile": "fake"}));
    }
    let body = json!({"agents": names, "content": PROMPT, "stream": true}).to_string();
    let mut stream = common::open_request(
        &daemon.env.socket(),
        "POST",
        "/messages",
        Some(body.as_str()),
    );
    let mut refusals = 0;
    let mut line = String::new();
    while refusals < 22 {
        line.clear();
        let read = stream.read_line(&mut line).expect("a fan-out line");
        assert!(read > 0, "the fan-out ended with {refusals} refusals");
        assert!(!line.contains("\"done\""), "{line}");
        if line.contains("\"type\":\"error\"") {
            assert!(line.contains("\"code\":\"budget_exceeded\""), "{line}");
            assert!(line.contains("\"status\":402"), "{line}");
            assert!(line.contains("all/day"), "{line}");
            refusals += 1;
        }
    }
    gate.open();
    let rest = common::read_rest(&mut stream);
    let replies = rest.matches("\"type\":\"message\"").count();
    assert_eq!(replies, 10, "{rest}");
    assert!(!rest.contains("\"type\":\"error\""), "{rest}");

    let sent = fake.requests();
    assert_eq!(sent.len(), 10, "only the calls that fit reached the server");
    for request in &sent {
        assert_eq!(request.body["max_tokens"], BOUND, "{}", request.body);
    }
    let state = &budgets(&daemon)[0];
    assert_eq!(state["scope"], "all");
    assert_eq!(state["spent"], json!((10 * WORST) as f64), "{state}");
    assert_eq!(state["reserved"], json!(0.0), "{state}");
    assert_eq!(state["remaining"], json!(0.0), "{state}");
    // And the next call, alone, is refused before anything is recorded.
    let detail = refused(&daemon.say("a0", PROMPT), "budget_exceeded");
    assert!(detail.contains("resets at "), "{detail}");
    assert_eq!(fake.requests().len(), 10);
    let metrics = daemon.json("GET", "/metrics", None).text();
    assert!(
        metrics.contains(
            "orchestration_budget_remaining{scope=\"all\",period=\"day\",unit=\"tokens\"} 0\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "orchestration_budget_limit{scope=\"all\",period=\"day\",unit=\"tokens\"} 1030\n"
        ),
        "{metrics}"
    );
}

#[test]
fn a_settled_call_gives_back_the_part_of_its_hold_it_did_not_use() {
    let fake = FakeProvider::start();
    // Room for two worst cases; each call uses 10 tokens of its 103.
    let budget = format!(
        "[[budgets]]\nscope = \"profile:fake\"\ntokens = {}\n",
        2 * WORST
    );
    let daemon = InProcess::serve(Env::new().config(&config(&fake, &budget)), &["--no-tcp"]);
    spawn(&daemon, json!({"name": "a", "profile": "fake"}));
    for _ in 0..5 {
        fake.push(reply(3, 7));
        let said = daemon.say("a", PROMPT);
        assert_eq!(said.status, 200, "{}", said.text());
    }
    assert_eq!(fake.requests().len(), 5);
    let state = &budgets(&daemon)[0];
    assert_eq!(state["scope"], "profile:fake");
    assert_eq!(state["period"], "total");
    assert_eq!(state["spent"], json!(50.0), "{state}");
    assert_eq!(
        state["remaining"],
        json!((2 * WORST - 50) as f64),
        "{state}"
    );
    assert!(
        state.get("resets").is_none(),
        "a total never resets: {state}"
    );
    // Another profile's agent is not counted against it.
    spawn(&daemon, json!({"name": "e", "provider": "echo"}));
    assert_eq!(daemon.say("e", PROMPT).status, 200);
    assert_eq!(budgets(&daemon)[0]["spent"], json!(50.0));
}

#[test]
fn a_usd_budget_counts_the_price_and_refuses_a_model_without_one() {
    let fake = FakeProvider::start();
    // Two worst cases of 0.503 USD.
    let budget = "[[budgets]]\nscope = \"all\"\nperiod = \"month\"\nusd = 1.006\n";
    let daemon = InProcess::serve(Env::new().config(&config(&fake, budget)), &["--no-tcp"]);
    // Fresh agents, so each call's context is the prompt alone.
    for name in ["a", "b", "c"] {
        spawn(&daemon, json!({"name": name, "profile": "fake"}));
    }
    for name in ["a", "b"] {
        fake.push(reply(3, BOUND));
        let said = daemon.say(name, PROMPT);
        assert_eq!(said.status, 200, "{}", said.text());
    }
    let detail = refused(&daemon.say("c", PROMPT), "budget_exceeded");
    assert!(detail.contains("all/month, 1.006 usd"), "{detail}");
    assert!(detail.contains("spent 1.006 usd"), "{detail}");
    assert!(detail.contains("needs up to 0.503 usd"), "{detail}");
    let state = &budgets(&daemon)[0];
    let resets = state["resets"].as_str().expect("a month resets");
    assert!(resets.ends_with("-01T00:00:00Z"), "{state}");
    assert!(detail.contains(&format!("resets at {resets}")), "{detail}");
    assert_eq!(fake.requests().len(), 2);

    // The CLI: exit status 1 with a hint saying where to look.
    let out = daemon.cli(&["message", "c", PROMPT]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("all/month"), "{}", out.stderr());
    assert!(
        out.stderr().contains("orchestration usage"),
        "{}",
        out.stderr()
    );

    // A model no price names cannot be counted in USD: refused, saying so,
    // before anything is recorded or sent.
    spawn(
        &daemon,
        json!({"name": "m", "profile": "fake", "model": "mystery"}),
    );
    let detail = refused(&daemon.say("m", PROMPT), "budget_unpriced");
    assert!(detail.contains("[prices.\"mystery\"]"), "{detail}");
    assert_eq!(fake.requests().len(), 2);
    let history = daemon.json("GET", "/agents/m/history", None).json();
    assert_eq!(history["messages"], json!([]), "{history}");
    let out = daemon.cli(&["message", "m", PROMPT]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("prices"), "{}", out.stderr());
}

#[test]
fn spawn_budget_is_the_agents_own_and_outlives_a_restart() {
    let fake = FakeProvider::start();
    let env = Env::new().config(&config(&fake, ""));
    let mut daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let out = daemon.cli(&[
        "--json",
        "spawn",
        "x",
        "--profile",
        "fake",
        "--budget",
        "1usd/day",
    ]);
    out.ok();
    assert_eq!(out.json()["budget"], "1usd/day");
    let info = daemon.json("GET", "/agents/x", None).json();
    assert_eq!(info["budget"], "1usd/day", "{info}");
    daemon.cli(&["spawn", "y", "--profile", "fake"]).ok();

    fake.push(reply(3, BOUND));
    daemon.cli(&["message", "x", PROMPT]).ok();
    // 0.503 spent: another worst case of 0.503 does not fit in 1 USD.
    let out = daemon.cli(&["message", "x", PROMPT]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr()
            .contains("agent:x/day (the agent's own), 1.00 usd"),
        "{}",
        out.stderr()
    );
    // y has no budget of its own.
    fake.push(reply(3, BOUND));
    daemon.cli(&["message", "y", PROMPT]).ok();
    assert_eq!(fake.requests().len(), 2);

    // A budget that does not parse: a usage error in the CLI, 422 in the API.
    let out = daemon.cli(&["spawn", "z", "--profile", "fake", "--budget", "2eur/day"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("2eur/day"), "{}", out.stderr());
    let response = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "z", "profile": "fake", "budget": "lots"})),
    );
    assert_eq!(response.status, 422, "{}", response.text());
    assert_eq!(response.json()["code"], "invalid_body");
    assert!(
        response.detail().contains("\"lots\""),
        "{}",
        response.text()
    );
    let response = daemon.json(
        "POST",
        "/agents/t/task",
        Some(json!({"prompt": "hi", "profile": "fake", "budget": "-1usd"})),
    );
    assert_eq!(response.status, 422, "{}", response.text());

    // After a restart the ledger says what x spent today: still refused.
    daemon.stop().expect("stop");
    drop(daemon);
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let info = daemon.json("GET", "/agents/x", None).json();
    assert_eq!(info["budget"], "1usd/day", "{info}");
    refused(&daemon.say("x", PROMPT), "budget_exceeded");
    assert_eq!(fake.requests().len(), 2);
    let own = budgets(&daemon)
        .into_iter()
        .find(|b| b["scope"] == "agent:x")
        .expect("x's own budget");
    assert_eq!(own["source"], "spawn");
    assert_eq!(own["spent"], json!(0.503), "{own}");
}

#[test]
fn warnings_are_events_and_usage_and_status_show_budgets_across_a_restart() {
    let fake = FakeProvider::start();
    let budget = "[[budgets]]\nscope = \"all\"\nperiod = \"day\"\ntokens = 1000\n\n\
                  [[budgets]]\nscope = \"agent:a\"\nusd = 50\n";
    let env = Env::new().config(&config(&fake, budget));
    let mut daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    spawn(&daemon, json!({"name": "a", "profile": "fake"}));
    let mut events = Subscriber::open(&daemon, "/events", &[]);
    fake.push(reply(900, 50));
    assert_eq!(daemon.say("a", PROMPT).status, 200);
    let seen = events.until(|e| e["type"] == "budget");
    let warning = seen.last().expect("a budget event");
    assert_eq!(warning["agent"], "a", "{warning}");
    assert_eq!(warning["scope"], "all", "{warning}");
    assert_eq!(warning["period"], "day", "{warning}");
    assert_eq!(warning["unit"], "tokens", "{warning}");
    assert_eq!(warning["percent"], 80, "{warning}");
    assert_eq!(warning["limit"], json!(1000.0), "{warning}");
    assert_eq!(warning["spent"], json!(950.0), "{warning}");
    assert!(warning["resets"].as_str().is_some(), "{warning}");
    let log = daemon.log();
    assert!(log.contains("budget 80% spent"), "{log}");

    let json = daemon.cli(&["--json", "usage"]);
    json.ok();
    let states = json.json()["budgets"].clone();
    assert_eq!(states[0]["spent"], json!(950.0), "{states}");
    assert_eq!(states[1]["scope"], "agent:a", "{states}");
    // 900 × $1000/M + 50 × $5000/M.
    assert_eq!(states[1]["spent"], json!(1.15), "{states}");
    let table = daemon.cli(&["usage"]);
    table.ok();
    let text = table.stdout();
    assert!(text.contains("BUDGET"), "{text}");
    let all = text.lines().find(|l| l.starts_with("all ")).expect(&text);
    assert!(all.contains("950") && all.contains(" 50 "), "{all}");
    let status = daemon.cli(&["serve", "--status"]);
    status.ok();
    assert!(
        status
            .stdout()
            .contains("budget:  all/day: 950 of 1000 tokens spent, 0 reserved, 50 left; resets "),
        "{}",
        status.stdout()
    );
    assert!(
        status
            .stdout()
            .contains("budget:  agent:a/total: 1.15 of 50.00 usd spent"),
        "{}",
        status.stdout()
    );

    // A restart counts the day's spending from the ledger: the next call
    // (950 + 103 > 1000) is refused without reaching the server.
    drop(events);
    daemon.stop().expect("stop");
    drop(daemon);
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    assert_eq!(budgets(&daemon)[0]["spent"], json!(950.0));
    refused(&daemon.say("a", PROMPT), "budget_exceeded");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn a_bad_budget_entry_is_refused_at_start_and_at_reload_naming_it() {
    let fake = FakeProvider::start();
    let bad = config(&fake, "[[budgets]]\nscope = \"everyone\"\nusd = 1\n");
    let env = Env::new().config(&bad);
    let out = env.command(&["serve", "--no-tcp"]).output().expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("budgets[0] (scope = \"everyone\")"),
        "{stderr}"
    );

    let good = config(&fake, "[[budgets]]\nscope = \"all\"\ntokens = 500\n");
    let env = Env::new().config(&good);
    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let twice = format!("{good}\n[[budgets]]\nscope = \"all\"\nperiod = \"week\"\ntokens = 5\n");
    std::fs::write(env.dir.path().join("config.toml"), twice).expect("write config");
    let out = daemon.cli(&["serve", "--reload"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("budgets[1]"), "{}", out.stderr());
    assert!(out.stderr().contains("week"), "{}", out.stderr());
    // Nothing changed, and the daemon serves on.
    daemon.cli(&["list"]).ok();
    let states = budgets(&daemon);
    assert_eq!(states.len(), 1);
    assert_eq!(states[0]["limit"], json!(500.0));

    // A good reload changes the limit and keeps what was spent; a budget
    // it adds starts from what the ledger says.
    spawn(&daemon, json!({"name": "a", "profile": "fake"}));
    fake.push(reply(3, BOUND));
    assert_eq!(daemon.say("a", PROMPT).status, 200);
    let raised = config(
        &fake,
        "[[budgets]]\nscope = \"all\"\ntokens = 900\n\n\
         [[budgets]]\nscope = \"profile:fake\"\nperiod = \"month\"\ntokens = 150\n",
    );
    std::fs::write(env.dir.path().join("config.toml"), raised).expect("write config");
    daemon.cli(&["serve", "--reload"]).ok();
    let states = budgets(&daemon);
    assert_eq!(states[0]["limit"], json!(900.0));
    assert_eq!(states[0]["spent"], json!(WORST as f64));
    assert_eq!(states[1]["scope"], "profile:fake");
    assert_eq!(states[1]["spent"], json!(WORST as f64));
    refused(&daemon.say("a", PROMPT), "budget_exceeded");
}

#[test]
fn a_day_budget_spent_today_opens_again_when_the_clock_passes_midnight_utc() {
    let fake = FakeProvider::start();
    // Room for two worst cases a day; the first call spends one, and the
    // second, whose context now holds the first, needs more than the rest.
    let budget = format!(
        "[[budgets]]\nscope = \"all\"\nperiod = \"day\"\ntokens = {}\n",
        2 * WORST
    );
    let env = Env::new().config(&config(&fake, &budget));
    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    spawn(&daemon, json!({"name": "a", "profile": "fake"}));
    fake.push(reply(3, BOUND));
    assert_eq!(daemon.say("a", PROMPT).status, 200);
    let detail = refused(&daemon.say("a", PROMPT), "budget_exceeded");
    let state = &budgets(&daemon)[0];
    let resets = state["resets"]
        .as_str()
        .expect("a day budget resets")
        .to_owned();
    assert!(
        detail.contains(&resets),
        "the refusal names the reset: {detail}"
    );
    assert_eq!(fake.requests().len(), 1, "the refused call never left");

    // A day later (the test's clock, not the wall's) the budget is fresh.
    env.advance(std::time::Duration::from_secs(24 * 60 * 60 + 1));
    fake.push(reply(3, 7));
    let said = daemon.say("a", PROMPT);
    assert_eq!(said.status, 200, "{}", said.text());
    assert_eq!(fake.requests().len(), 2);
    let state = &budgets(&daemon)[0];
    assert_eq!(
        state["spent"],
        json!(10.0),
        "only today's call counts: {state}"
    );
    assert_ne!(state["resets"].as_str(), Some(resets.as_str()), "{state}");
}
