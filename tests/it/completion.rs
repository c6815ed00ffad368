//! Dynamic shell completion (`COMPLETE=bash orchestration`): the binary is
//! run the way the registered bash function runs it on a TAB, and must offer
//! the running daemon's agent names, profile and provider names, and never
//! hang on or start a daemon.

use crate::common;
use crate::common::Harness;

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{Daemon, Env};
use serde_json::json;

/// What bash's completion function gets for the command line `words`, the
/// cursor on the last word, as the candidates it would offer.
fn complete(env: &Env, words: &[&str]) -> Vec<String> {
    complete_with(env, words, &[])
}

fn complete_with(env: &Env, words: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
    let mut command = env.command(&["--"]);
    command
        .args(words)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n")
        // A TAB must not start a daemon even where commands would.
        .env_remove("ORCHESTRATION_NO_AUTOSTART")
        .envs(vars.iter().copied());
    let out = command.output().expect("run orchestration");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_registration_script_calls_this_binary_back() {
    let env = Env::new();
    let out = env.cli_env(&[("COMPLETE", "bash")], &[]);
    out.ok();
    assert!(
        out.stdout()
            .contains("-F _clap_complete_orchestration orchestration"),
        "{}",
        out.stdout()
    );
}

#[test]
fn agent_names_come_from_the_running_daemon() {
    let daemon = Daemon::start(&[]);
    for name in ["alpha", "beta", "gamma"] {
        let spawned = daemon.json(
            "POST",
            "/agents",
            Some(json!({"name": name, "provider": "echo"})),
        );
        assert_eq!(spawned.status, 200, "{}", spawned.text());
    }
    daemon.cli(&["shutdown", "gamma"]).ok();
    let env = &daemon.env;

    let offered = complete(env, &["orchestration", "message", ""]);
    assert!(offered.contains(&"alpha".to_owned()), "{offered:?}");
    assert!(offered.contains(&"beta".to_owned()), "{offered:?}");
    // Shut down: no longer takes messages, but its history is readable.
    assert!(!offered.contains(&"gamma".to_owned()), "{offered:?}");
    let offered = complete(env, &["orchestration", "history", ""]);
    assert!(offered.contains(&"gamma".to_owned()), "{offered:?}");
    let offered = complete(env, &["orchestration", "shutdown", "b"]);
    assert_eq!(offered, ["beta"]);

    // Providers, profiles (built in and from the config file), states.
    std::fs::write(
        env.dir.path().join("config.toml"),
        "[profiles.work]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .expect("write config");
    let offered = complete(env, &["orchestration", "spawn", "x", "--profile", ""]);
    for profile in ["openrouter", "local", "gemini", "work"] {
        assert!(offered.contains(&profile.to_owned()), "{offered:?}");
    }
    let offered = complete(env, &["orchestration", "task", "t", "--provider", ""]);
    assert_eq!(
        offered,
        ["openai", "anthropic", "echo", "claude-code", "codex"]
    );
    let offered = complete(env, &["orchestration", "list", "--state", "f"]);
    assert_eq!(offered, ["failed"]);
}

#[test]
fn without_a_daemon_a_tab_offers_flags_and_starts_nothing() {
    let env = Env::new();
    // (How fast is a speed target, for benches/; here: what, and nothing started.)
    let offered = complete(&env, &["orchestration", "message", ""]);
    assert!(offered.contains(&"--no-stream".to_owned()), "{offered:?}");
    assert!(
        offered.iter().all(|word| word.starts_with('-')),
        "{offered:?}"
    );
    assert!(!env.pid_file().exists(), "a daemon was started");
    assert!(!env.socket().exists(), "a daemon was started");
}

#[test]
fn a_daemon_that_does_not_answer_costs_a_tab_half_a_second() {
    let env = Env::new();
    std::fs::create_dir_all(env.runtime_dir()).expect("mkdir");
    let socket = env.dir.path().join("silent.sock");
    // Accepts connections (the kernel's backlog) and never answers.
    let _listener = UnixListener::bind(&socket).expect("bind");
    let started = Instant::now();
    let offered = complete_with(
        &env,
        &["orchestration", "message", ""],
        &[("ORCHESTRATION_SOCKET", socket.to_str().expect("utf-8 path"))],
    );
    let took = started.elapsed();
    assert!(
        offered.iter().all(|word| word.starts_with('-')),
        "{offered:?}"
    );
    // It did ask, and waited: the socket never answers, so only the
    // completer's own deadline can have ended the wait. (How long a TAB
    // takes at most is a speed target, for benches/, not a test.)
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(!env.pid_file().exists(), "a daemon was started");
}

#[test]
fn the_completions_subcommand_prints_the_static_scripts() {
    // No daemon, and none started: these are files to install, not queries.
    let env = Env::new().var("ORCHESTRATION_NO_AUTOSTART", "0");
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/completions");
    for (shell, file) in [
        ("bash", "orchestration.bash"),
        ("zsh", "_orchestration"),
        ("fish", "orchestration.fish"),
    ] {
        let out = env.cli(&["completions", shell]);
        out.ok();
        let shipped = std::fs::read_to_string(contrib.join(file)).expect("contrib script");
        assert!(
            out.stdout() == shipped,
            "`completions {shell}` differs from contrib/completions/{file}"
        );
    }
    for shell in ["elvish", "powershell"] {
        let out = env.cli(&["completions", shell]);
        assert!(
            out.ok().stdout().contains("orchestration") && out.stdout().contains("spawn"),
            "{shell}: {}",
            out.stdout()
        );
    }
    let out = env.cli(&["completions", "tcsh"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("tcsh"), "{}", out.stderr());
    assert!(!env.socket().exists(), "completions started a daemon");

    // The bash script works in bash: sourced, TAB after `orchestration sp`
    // offers spawn, and after `orchestration spawn --pro` the option.
    let script = env.dir.path().join("orchestration.bash");
    std::fs::write(&script, env.cli(&["completions", "bash"]).stdout()).expect("write");
    let offered = |words: &str| {
        let program = format!(
            "source '{}'; complete -p orchestration >/dev/null || exit 9; \
             COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE='{words}'; \
             COMP_POINT=${{#COMP_LINE}}; \
             _orchestration orchestration \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(offered("orchestration sp"), ["spawn"]);
    assert!(
        offered("orchestration spawn --pro").contains(&"--provider".to_owned()),
        "{:?}",
        offered("orchestration spawn --pro")
    );
}
