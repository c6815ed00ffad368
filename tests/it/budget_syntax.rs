//! What `[[budgets]]` and `spawn --budget` refuse, and how they say it: an
//! agent scope no agent could have, a profile scope naming no profile, a
//! USD limit too small to show, a token count beyond range. The CLI alone.

use crate::common::Env;

/// `config list` loads the config file as the daemon does.
fn load_error(budget: &str) -> String {
    let env = Env::new().config(&format!(
        "[profiles.work]\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[[budgets]]\n{budget}\n"
    ));
    let listed = env.cli(&["config", "list"]);
    assert_ne!(listed.code(), 0, "{budget} was accepted");
    listed.stderr()
}

fn loads(budget: &str) {
    let env = Env::new().config(&format!(
        "[profiles.work]\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[[budgets]]\n{budget}\n"
    ));
    env.cli(&["config", "list"]).ok();
}

#[test]
fn an_agent_scope_must_be_an_agent_name() {
    for bad in ["../x", "a b", "-x", ".hidden", "x/y"] {
        let error = load_error(&format!("scope = \"agent:{bad}\"\nusd = 1.0"));
        assert!(
            error.contains(&format!("budgets[0] (scope = \"agent:{bad}\"): ")),
            "{error}"
        );
        assert!(error.contains("agent name"), "{error}");
    }
    loads("scope = \"agent:ok-name_1.x\"\nusd = 1.0");
}

#[test]
fn a_profile_scope_must_name_a_profile_or_provider() {
    let error = load_error("scope = \"profile:wrok\"\nusd = 1.0");
    assert!(
        error.contains(
            "budgets[0] (scope = \"profile:wrok\"): no profile or provider is named \"wrok\""
        ),
        "{error}"
    );
    assert!(error.contains("work"), "the known ones are named: {error}");
    for good in ["work", "openrouter", "openai", "anthropic", "claude-code"] {
        loads(&format!("scope = \"profile:{good}\"\nusd = 1.0"));
    }
}

#[test]
fn a_usd_limit_below_a_cent_is_refused_in_the_config_and_in_spawn() {
    let error = load_error("scope = \"all\"\nusd = 0.0000000001");
    assert!(error.contains("must be at least 0.01"), "{error}");
    loads("scope = \"all\"\nusd = 0.01");

    let env = Env::new().config("");
    let spawned = env.cli(&["spawn", "a", "--budget", "0.0000000001usd"]);
    assert_eq!(spawned.code(), 2, "{}", spawned.stderr());
    assert!(
        spawned.stderr().contains("must be at least 0.01"),
        "{}",
        spawned.stderr()
    );
}

#[test]
fn a_token_count_beyond_range_is_said_to_be_out_of_range() {
    let env = Env::new().config("");
    let spawned = env.cli(&["spawn", "a", "--budget", "99999999999999999999tokens"]);
    assert_eq!(spawned.code(), 2, "{}", spawned.stderr());
    let error = spawned.stderr();
    assert!(error.contains("is out of range"), "{error}");
    assert!(!error.contains("no whole number"), "{error}");
    let fraction = env.cli(&["spawn", "a", "--budget", "1.5tokens"]);
    assert!(
        fraction.stderr().contains("has no whole number of tokens"),
        "{}",
        fraction.stderr()
    );
}
