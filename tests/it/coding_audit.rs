//! What an audit of coding agents found, each as it was reproduced: Claude
//! Code's cost reaches the usage ledger (so its budget outlives a restart)
//! under the model that answered; `allow` patterns Claude Code would read
//! as several are refused at spawn, and patterns that run every command
//! are refused over TCP like `bypass`; instructions longer than one
//! command-line argument holds reach the model. The tests that run Claude
//! Code (`$ORCHESTRATION_CLAUDE`) say SKIPPED without it (a failure under
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).

use serde_json::{Value, json};

use crate::common::coding::{ClaudeSetup as Setup, claude, claude_spawn_args, reply};
use crate::common::in_process::InProcess;
use crate::common::{Env, Harness};

/// `GET /usage?by=model`.
fn usage_by_model(daemon: &InProcess) -> Value {
    let answer = daemon.json("GET", "/usage?by=model", None);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[test]
fn a_claude_code_turns_cost_is_in_the_ledger_and_its_budget_outlives_a_restart() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let mut daemon = setup.daemon();
    // As README's example: no --model.
    // The smallest limit a budget takes; a turn against the fake costs
    // Claude Code's own estimate, under a cent, so a few turns spend it.
    setup.spawn(&daemon, "spender", &["--budget", "0.01usd/day"]);
    assert_eq!(reply(&daemon.say("spender", "first")), "echo: first");

    // The ledger row has the cost Claude Code reported, and the model it
    // says answered.
    let usage = usage_by_model(&daemon);
    assert_eq!(usage["groups"][0]["price_source"], "reported", "{usage}");
    let total = &usage["total"];
    assert_eq!(total["calls"], 1, "{usage}");
    assert_eq!(total["unpriced_calls"], 0, "{usage}");
    let cost = total["cost_usd"].as_f64().unwrap_or(0.0);
    assert!(cost > 0.0, "no cost in the ledger: {usage}");
    let model = usage["groups"][0]["key"].as_str().unwrap_or("").to_owned();
    assert!(
        !model.is_empty() && model != "claude-code",
        "the ledger names {model:?}, not the model that answered: {usage}"
    );
    let asked = setup.fake.requests();
    assert!(
        asked.iter().any(|request| request["model"] == model),
        "{model:?} was never asked for: {usage}"
    );

    // Turns until the budget is spent: then one is refused, before it is
    // recorded.
    let mut refused = None;
    for turn in 0..50 {
        let answer = daemon.say("spender", &format!("more {turn}"));
        if answer.status != 200 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the budget was never spent");
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(refused.json()["code"], "budget_exceeded");
    let calls = setup.fake.requests().len();

    // A restart counts what the ledger says: still refused.
    daemon.stop().expect("stop");
    drop(daemon);
    let daemon = setup.daemon();
    let refused = daemon.say("spender", "third");
    assert_eq!(refused.status, 402, "{}", refused.text());
    assert_eq!(refused.json()["code"], "budget_exceeded");
    assert_eq!(setup.fake.requests().len(), calls, "the model was called");
    let usage = usage_by_model(&daemon);
    let own = usage["budgets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["scope"] == "agent:spender")
        .expect("the agent's own budget");
    assert!(own["spent"].as_f64().unwrap_or(0.0) > 0.0, "{own}");
}

#[test]
fn a_claude_code_turn_costs_what_it_reported_unless_the_config_prices_its_model() {
    let Some(claude) = claude() else { return };
    let setup = Setup::with_config(
        &claude,
        "[prices.\"my-priced-model\"]\ninput = 100000.0\noutput = 100000.0\n",
    );
    let daemon = setup.daemon();
    setup.spawn(&daemon, "local", &["--model", "my-local-model"]);
    assert_eq!(reply(&daemon.say("local", "hello")), "echo: hello");
    let history = daemon.history("local");
    let reported = history["messages"][1]["metadata"]["cost_usd"].clone();
    let usage = usage_by_model(&daemon);
    let group = &usage["groups"][0];
    assert_eq!(group["key"], "my-local-model", "{usage}");
    assert_eq!(group["price_source"], "reported", "{usage}");
    assert_eq!(group["cost_usd"], reported, "{usage} {history}");

    // A model the config prices costs the config's price: a dime a token.
    setup.spawn(&daemon, "priced", &["--model", "my-priced-model"]);
    assert_eq!(reply(&daemon.say("priced", "hello")), "echo: hello");
    let answer = daemon.json("GET", "/usage?by=model&agent=priced", None);
    let priced = &answer.json()["groups"][0];
    assert_eq!(priced["price_source"], "config", "{priced}");
    let tokens = priced["input_tokens"].as_f64().unwrap_or(0.0)
        + priced["output_tokens"].as_f64().unwrap_or(0.0);
    let cost = priced["cost_usd"].as_f64().unwrap_or(0.0);
    assert!((cost - tokens / 10.0).abs() < 1e-6, "{priced}");
    // And `/metrics` counts it, under the model that answered.
    let metrics = daemon.json("GET", "/metrics", None).text();
    let cost = metrics
        .lines()
        .find(|line| {
            line.starts_with("orchestration_usage_cost_usd_total{")
                && line.contains("my-local-model")
                && line.contains("price_source=\"reported\"")
        })
        .unwrap_or_else(|| panic!("no reported cost in the metrics:\n{metrics}"));
    let value: f64 = cost
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(value > 0.0, "{cost}");
}

#[test]
fn an_allow_pattern_claude_code_would_split_is_refused_at_spawn() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    let cwd = setup.cwd.display().to_string();
    for pattern in ["Read,Bash", "Read Bash", "Bash(git status) Bash(touch x)"] {
        let args = claude_spawn_args(
            "al3",
            &setup.fake,
            &setup.cwd,
            &["--allow", pattern, "--approval", "never"],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = daemon
            .env()
            .cli_env(&[("FAKE_ANTHROPIC_KEY", "sk-fake")], &args);
        assert_eq!(out.code(), 2, "{pattern:?}: {}", out.stderr());
        assert!(
            out.stderr().contains("space or comma") || out.stderr().contains("parentheses inside"),
            "{pattern:?}: {}",
            out.stderr()
        );
    }
    let answer = daemon.json(
        "POST",
        "/agents",
        Some(json!({"name": "al3", "provider": "claude-code", "cwd": cwd,
                    "allow": ["Read,Bash"], "approval": "never"})),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(answer.json()["code"], "invalid_allow");
    assert_eq!(daemon.json("GET", "/agents", None).json(), json!([]));

    // A space inside the parentheses is one pattern: it still allows its
    // command, and nothing else runs.
    setup.spawn(
        &daemon,
        "spaced",
        &["--allow", "Bash(touch spaced.txt)", "--approval", "never"],
    );
    let text = reply(&daemon.say("spaced", "run: touch spaced.txt"));
    assert!(text.starts_with("tool said:"), "{text}");
    assert!(setup.cwd.join("spaced.txt").is_file());
    let text = reply(&daemon.say("spaced", "run: touch other.txt"));
    assert!(text.starts_with("tool said (is_error)"), "{text}");
    assert!(!setup.cwd.join("other.txt").exists());
}

#[test]
fn instructions_longer_than_one_argument_holds_reach_the_model() {
    let Some(claude) = claude() else { return };
    let setup = Setup::new(&claude);
    let daemon = setup.daemon();
    // A long AGENTS.md: past the kernel's 128 KiB for one argument.
    let marker = "RULE-0000: keep every test green.";
    let mut instructions = String::from(marker);
    while instructions.len() < 180 * 1024 {
        instructions.push_str("\nAlways run the tests before saying a change is done.");
    }
    // Over the API, as the Python client sends it (a shell refuses one
    // argument this long to the CLI itself).
    let spawned = daemon.json(
        "POST",
        "/agents",
        Some(
            json!({"name": "long", "provider": "claude-code", "base_url": setup.fake.url(),
                    "api_key": "sk-fake", "cwd": setup.cwd, "instructions": instructions}),
        ),
    );
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    assert_eq!(reply(&daemon.say("long", "hello")), "echo: hello");
    let requests = setup.fake.requests();
    let system = requests.last().map(|r| r["system"].to_string());
    let system = system.unwrap_or_default();
    assert!(
        system.contains(marker),
        "the instructions are not in the system prompt"
    );
    assert!(system.len() > 180 * 1024, "the instructions were cut");
    // And the next turn (the same child) too.
    assert_eq!(reply(&daemon.say("long", "again")), "echo: again");
}

/// A daemon with TCP whose Claude Code and Codex are `/bin/true`, for the
/// checks that start no child.
fn tcp_daemon() -> (InProcess, String) {
    let env = Env::new().config(
        "[agents.claude-code]\ncommand = [\"/bin/true\"]\n[agents.codex]\ncommand = [\"/bin/true\"]\n",
    );
    let dir = env.dir.path().display().to_string();
    (InProcess::start_in(env, true), dir)
}

#[test]
fn allow_patterns_that_run_every_command_are_refused_over_tcp_like_bypass() {
    let (daemon, dir) = tcp_daemon();
    let spawn = |name: &str, provider: &str, pattern: &str| json!({"name": name, "provider": provider, "cwd": dir, "allow": ["Read", pattern]});
    for (provider, pattern) in [
        ("claude-code", "Bash"),
        ("claude-code", "Bash(*)"),
        ("claude-code", "Bash(:*)"),
        ("claude-code", "Bash(sh:*)"),
        ("codex", "commandExecution"),
        ("codex", "bash"),
    ] {
        let refused = daemon.tcp_json("POST", "/agents", Some(spawn("shell", provider, pattern)));
        assert_eq!(refused.status, 403, "{pattern}: {}", refused.text());
        assert_eq!(refused.json()["code"], "bypass_refused");
        assert!(refused.detail().contains(pattern), "{}", refused.detail());
        let task = daemon.tcp_json(
            "POST",
            "/agents/shell/task",
            Some(json!({"prompt": "hi", "provider": provider, "cwd": dir, "allow": [pattern]})),
        );
        assert_eq!(task.status, 403, "{pattern}: {}", task.text());
    }
    assert_eq!(daemon.json("GET", "/agents", None).json(), json!([]));
    // A narrower pattern is fine over TCP; the shell ones on the socket.
    let narrow = daemon.tcp_json(
        "POST",
        "/agents",
        Some(spawn("narrow", "claude-code", "Bash(git status:*)")),
    );
    assert_eq!(narrow.status, 200, "{}", narrow.text());
    for (name, provider, pattern) in [
        ("claude", "claude-code", "Bash"),
        ("codex", "codex", "commandExecution"),
    ] {
        let accepted = daemon.json("POST", "/agents", Some(spawn(name, provider, pattern)));
        assert_eq!(accepted.status, 200, "{}", accepted.text());
    }
}

#[test]
fn allow_patterns_longer_than_a_command_line_holds_are_refused_at_spawn() {
    let (daemon, dir) = tcp_daemon();
    let long = format!("Bash(echo {})", "x".repeat(70 * 1024));
    for provider in ["claude-code", "codex"] {
        let answer = daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": "long", "provider": provider, "cwd": dir, "allow": [long]})),
        );
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert_eq!(answer.json()["code"], "invalid_allow");
        assert!(answer.detail().contains("65536"), "{}", answer.detail());
    }
}

/// `POST /agents` as the web page sends it: logged in with a fresh link
/// (minted on the Unix socket, as `orchestration ui` does), its session
/// cookie and CSRF header.
fn spawn_from_page(daemon: &InProcess, body: Value) -> crate::common::HttpResponse {
    let host = format!("127.0.0.1:{}", daemon.port.expect("port"));
    let link = daemon.json("POST", "/ui/link", None).json();
    let url = link["url"].as_str().expect("a login link");
    let (_, token) = url.split_once("#t=").expect("the link's token");
    let origin = format!("http://{host}");
    let login = daemon.tcp_request(
        "POST",
        "/ui/login",
        &[("Host", &host), ("Origin", &origin)],
        Some(&json!({ "token": token }).to_string()),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let set_cookie = login.header("set-cookie").expect("a session cookie");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let csrf = login.json()["csrf"].as_str().expect("csrf").to_owned();
    daemon.tcp_request(
        "POST",
        "/agents",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("X-Orchestration-CSRF", &csrf),
        ],
        Some(&body.to_string()),
    )
}

#[test]
fn the_web_page_may_not_spawn_an_agent_allowed_every_command() {
    let (daemon, dir) = tcp_daemon();
    let refused = spawn_from_page(
        &daemon,
        json!({"name": "shell", "provider": "claude-code", "cwd": dir, "allow": ["Bash(*)"]}),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["code"], "bypass_refused");
    let narrow = spawn_from_page(
        &daemon,
        json!({"name": "narrow", "provider": "claude-code", "cwd": dir, "allow": ["Read"]}),
    );
    assert_eq!(narrow.status, 200, "{}", narrow.text());
}
