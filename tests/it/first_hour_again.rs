//! The first hour, second pass: where a new user still had to guess —
//! prompts from a pipe, empty prompts, names, read-only config files,
//! conversations that ran together, and a log that repeated itself.

use crate::common;

use common::fake_provider::{FakeProvider, Gate, Reply, Step, openai_chunks};
use common::in_process::InProcess;
use common::{Daemon, Env, Harness};

#[test]
fn a_piped_prompt_needs_no_dash_and_an_empty_one_is_refused_however_it_comes() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "p", "--provider", "echo"]).ok();
    let piped = daemon
        .env
        .cli_with_stdin(&["message", "p"], "hi from a pipe\n");
    assert_eq!(piped.ok().stdout(), "hi from a pipe\n");
    let task = daemon
        .env
        .cli_with_stdin(&["task", "t", "--provider", "echo"], "a piped task\n");
    assert_eq!(task.ok().stdout(), "a piped task\n");

    for (args, input) in [
        (&["message", "p", ""][..], ""),
        (&["message", "p", "  "], ""),
        (&["message", "p"], ""),
        (&["message", "p", "-"], "\n"),
        (&["task", "t", "", "--provider", "echo"], ""),
    ] {
        let out = daemon.env.cli_with_stdin(args, input);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        assert!(
            out.stderr().contains("is empty"),
            "{args:?}: {}",
            out.stderr()
        );
    }
    // Nothing empty was sent.
    let history = daemon.cli(&["--json", "history", "p"]).json();
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_name_with_a_non_ascii_letter_says_ascii() {
    let daemon = InProcess::start();
    let out = daemon.cli(&["spawn", "café", "--provider", "echo"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("only contain ASCII letters"),
        "{}",
        out.stderr()
    );
}

#[test]
fn config_set_leaves_a_read_only_file_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mine = "# mine, read-only on purpose\n[providers]\nmax_retries = 2\n";
    let env = Env::new().config(mine);
    let file = env.dir.path().join("config.toml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    for args in [
        &["config", "set", "providers.max_retries", "1"][..],
        &["config", "unset", "providers.max_retries"],
    ] {
        let out = env.cli(args);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr());
        assert!(out.stderr().contains("is read-only"), "{}", out.stderr());
        assert!(
            out.stderr().contains(&file.display().to_string()),
            "{}",
            out.stderr()
        );
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), mine);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.cli(&["config", "set", "providers.max_retries", "1"])
        .ok();
    assert!(
        std::fs::read_to_string(&file)
            .expect("read")
            .contains("max_retries = 1"),
    );
}

#[test]
fn history_all_as_text_separates_the_conversations() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "h", "--provider", "echo"]).ok();
    daemon.cli(&["message", "h", "first life"]).ok();
    daemon.cli(&["shutdown", "h"]).ok();
    daemon.cli(&["spawn", "h", "--provider", "echo"]).ok();
    daemon.cli(&["message", "h", "second life"]).ok();
    let ids: Vec<String> =
        daemon.cli(&["--json", "history", "--list", "h"]).json()["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
            .collect();
    assert_eq!(ids.len(), 2);

    let out = daemon.cli(&["history", "h", "--all"]);
    let text = out.ok().stdout();
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("── conversation "))
        .collect();
    assert_eq!(headings.len(), 2, "{text}");
    assert!(
        headings[0].contains(&ids[0]) && headings[1].contains(&ids[1]),
        "{text}"
    );
    let first = text.find("first life").expect("first");
    let second = text.find("second life").expect("second");
    let between = &text[first..second];
    assert!(between.contains(&ids[1]), "{text}");

    // --limit counts from the end, across conversations.
    let limited = daemon.cli(&["history", "h", "--all", "--limit", "2"]);
    let limited = limited.ok().stdout();
    assert!(!limited.contains("first life"), "{limited}");
    assert!(limited.contains("second life"), "{limited}");
    // Without --all, no heading: as before.
    assert!(!daemon.cli(&["history", "h"]).ok().stdout().contains("──"));
}

#[test]
fn a_new_store_says_once_that_it_was_created() {
    let daemon = Daemon::start(&[]);
    daemon.cli(&["list"]).ok();
    let log = daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("store created") || l.contains("schema migrated"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("from=0"), "{}", lines[0]);
}

/// The error and hint lines of a failed command.
fn error_and_hint(out: &common::CliOutput) -> (String, String) {
    let stderr = out.stderr();
    let line = |prefix: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line: {stderr}"))
            .to_owned()
    };
    (line("error: "), line("hint: "))
}

#[test]
fn a_model_servers_refusal_shows_the_url_asked_and_whether_a_key_went() {
    let fake = FakeProvider::start();
    let env = Env::new()
        .var("SERVER_KEY", "sk-test-123456")
        .config(&format!(
            "[providers]\nmax_retries = 0\n[profiles.work]\nbase_url = \"{}\"\nmodel = \"m\"\n",
            fake.url("/v1")
        ));
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let base = fake.url("/v1");
    daemon
        .cli(&["spawn", "bare", "--base-url", &base, "--model", "m"])
        .ok();
    let keyed = [
        "spawn",
        "keyed",
        "--base-url",
        &base,
        "--model",
        "m",
        "--api-key-env",
        "SERVER_KEY",
    ];
    daemon.cli(&keyed).ok();

    // LiteLLM answers 500 when no key is sent: the key's absence is said whatever the status.
    fake.push(Reply::text(500, "Internal Server Error"));
    let out = daemon.cli(&["message", "bare", "hi"]);
    let (error, hint) = error_and_hint(&out);
    let asked = format!("POST {}/chat/completions", base);
    assert!(error.contains(&asked), "{error}");
    assert!(error.contains("no API key was sent"), "{error}");
    assert!(error.contains("--api-key-env VAR"), "{error}");
    // The hint names the command that asks this agent's endpoint.
    assert!(
        hint.contains("orchestration models --provider openai"),
        "{hint}"
    );
    assert!(hint.contains("--base-url URL"), "{hint}");

    fake.push(Reply::text(400, "bad model"));
    let (error, _) = error_and_hint(&daemon.cli(&["message", "keyed", "hi"]));
    assert!(error.contains(&asked), "{error}");
    assert!(error.contains("an API key was sent"), "{error}");
    assert!(!error.contains("sk-test-123456"), "{error}");

    // A profile's agent: `models --profile P`.
    daemon.cli(&["spawn", "w", "--profile", "work"]).ok();
    fake.push(Reply::text(404, "no such model"));
    let (_, hint) = error_and_hint(&daemon.cli(&["message", "w", "hi"]));
    assert!(
        hint.contains("`orchestration models --profile work`"),
        "{hint}"
    );
    fake.push(Reply::text(404, "no such model"));
    let (_, hint) = error_and_hint(&daemon.cli(&["task", "t", "hi", "--profile", "work"]));
    assert!(
        hint.contains("`orchestration models --profile work`"),
        "{hint}"
    );
}

#[test]
fn an_anthropic_base_url_ending_in_v1_is_pointed_out() {
    let fake = FakeProvider::start();
    let env = Env::new().config("[providers]\nmax_retries = 0\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let base = fake.url("/v1");
    let spawn = [
        "spawn",
        "c",
        "--provider",
        "anthropic",
        "--base-url",
        &base,
        "--model",
        "m",
    ];
    daemon.cli(&spawn).ok();
    fake.push(Reply::text(404, "Not Found"));
    let (error, _) = error_and_hint(&daemon.cli(&["message", "c", "hi"]));
    assert!(error.contains(&format!("{base}/v1/messages")), "{error}");
    assert!(
        error.contains("drop the trailing /v1 from base_url"),
        "{error}"
    );
    assert_eq!(fake.last_request().path, "/v1/v1/messages");
}

#[test]
fn spawn_at_a_typed_url_without_a_model_says_which_model_it_will_ask_for() {
    let daemon = InProcess::start();
    let url = "http://127.0.0.1:9/v1";
    let out = daemon.cli(&["spawn", "d", "--base-url", url]);
    let note = out.ok().stderr();
    assert!(note.contains("no --model given"), "{note}");
    assert!(note.contains("gpt-4o-mini"), "{note}");
    assert!(
        note.contains(&format!("orchestration models --base-url {url}")),
        "{note}"
    );
    let quiet = daemon.cli(&["spawn", "e", "--base-url", url, "--model", "m"]);
    assert_eq!(quiet.ok().stderr(), "");
}

#[test]
fn the_missing_key_hint_of_a_chosen_profile_offers_no_other_profile() {
    let env = Env::new().config(
        "[profiles.litellm]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"LITELLM_KEY\"\nmodel = \"m\"\n",
    );
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let out = daemon.cli(&["spawn", "l", "--profile", "litellm"]);
    let (error, hint) = error_and_hint(&out);
    assert!(error.contains("LITELLM_KEY"), "{error}");
    assert!(hint.contains("export LITELLM_KEY="), "{hint}");
    assert!(!hint.contains("use a profile"), "{hint}");
    // Without a profile, the profiles are still offered.
    let (_, hint) = error_and_hint(&daemon.cli(&["spawn", "k"]));
    assert!(hint.contains("use a profile"), "{hint}");
}

#[test]
fn a_mistyped_agent_name_gets_a_did_you_mean() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "alice", "--provider", "echo"]).ok();
    daemon.cli(&["spawn", "gone", "--provider", "echo"]).ok();
    daemon.cli(&["shutdown", "gone"]).ok();
    for (args, guess) in [
        (&["message", "alcie", "hi"][..], "did you mean 'alice'?"),
        (&["shutdown", "alcie"], "did you mean 'alice'?"),
        (&["history", "alcie"], "did you mean 'alice'?"),
        // history reads ended agents too.
        (&["history", "gnoe"], "did you mean 'gone'?"),
    ] {
        let out = daemon.cli(args);
        assert_eq!(out.code(), 4, "{args:?}: {}", out.stderr());
        let (_, hint) = error_and_hint(&out);
        assert!(hint.contains(guess), "{args:?}: {hint}");
    }
    // Nothing close: the usual pointer, no guess.
    let (_, hint) = error_and_hint(&daemon.cli(&["message", "zzzzzz", "hi"]));
    assert!(!hint.contains("did you mean"), "{hint}");
    assert!(hint.contains("orchestration list"), "{hint}");
}

/// The candidates bash's completion function would offer for `words`.
fn complete(env: &Env, words: &[&str]) -> Vec<String> {
    let mut command = env.command(&["--"]);
    command
        .args(words)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n");
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
fn completion_goes_on_after_a_comma_and_knows_config_keys() {
    // Completion asks only a daemon that holds the PID file: a process.
    let daemon = Daemon::start(&[]);
    for name in ["alice", "bob", "bert"] {
        daemon.cli(&["spawn", name, "--provider", "echo"]).ok();
    }
    let env = &daemon.env;
    let mut offered = complete(env, &["orchestration", "message", "alice,"]);
    offered.sort();
    assert_eq!(offered, ["alice,bert", "alice,bob"]);
    assert_eq!(
        complete(env, &["orchestration", "message", "alice,bo"]),
        ["alice,bob"]
    );
    assert!(complete(env, &["orchestration", "message", "al"]).contains(&"alice".to_owned()));

    let keys = complete(env, &["orchestration", "config", "get", "prov"]);
    assert!(
        keys.contains(&"providers.idle_timeout".to_owned()),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| k.starts_with("prov")), "{keys:?}");
    let keys = complete(env, &["orchestration", "config", "set", "limits.max_c"]);
    assert_eq!(keys, ["limits.max_connections"]);
}

/// `m` answers through a fake model server; the first reply pushed is held
/// until `gate` opens, so a second message to `m` has to wait behind it.
fn busy_agent(fake: &FakeProvider, daemon: &InProcess, gate: &Gate) -> std::process::Child {
    fake.push(Reply::sse(&openai_chunks(&["held ", "reply"])).insert(0, Step::Wait(gate.clone())));
    fake.push(Reply::sse(&openai_chunks(&["second ", "reply"])));
    let before = fake.requests().len();
    let first = daemon
        .env
        .command(&["message", "m", "first"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("first message");
    common::eventually("the first message at the model", || {
        fake.requests().len() > before
    });
    first
}

#[test]
fn a_message_behind_another_says_it_is_queued_until_it_is_sent() {
    use std::io::{BufRead, Write};
    let fake = FakeProvider::start();
    let daemon = InProcess::start();
    let base = fake.url("/v1");
    daemon
        .cli(&["spawn", "m", "--base-url", &base, "--model", "x"])
        .ok();

    // Over the API: a `queued` line with the position, then `ahead: 0` once sent.
    let gate = Gate::new();
    let mut first = busy_agent(&fake, &daemon, &gate);
    let mut stream = std::os::unix::net::UnixStream::connect(daemon.env.socket()).expect("connect");
    let body = serde_json::json!({"content": "second", "stream": true}).to_string();
    stream
        .write_all(&common::build_request(
            "POST",
            "/agents/m/message",
            &[("Host", "localhost")],
            Some(&body),
        ))
        .expect("write");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("\"type\":\"queued\"") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "no queued line"
        );
    }
    assert!(line.contains("\"ahead\":1"), "{line}");
    gate.open();
    let rest = common::read_rest(&mut reader);
    let sent = rest.find("\"ahead\":0").unwrap_or_else(|| panic!("{rest}"));
    let delta = rest.find("\"delta\"").unwrap_or_else(|| panic!("{rest}"));
    assert!(sent < delta, "{rest}");
    assert!(first.wait().expect("first").success());
    // A message that did not wait gets no queued line: old clients see nothing new.
    fake.push(Reply::sse(&openai_chunks(&["alone"])));
    let out = daemon.cli(&["message", "m", "alone"]);
    assert_eq!(out.ok().stdout(), "alone\n");

    // On a terminal: the waiting line says queued, then waiting for the model.
    let gate = Gate::new();
    let mut first = busy_agent(&fake, &daemon, &gate);
    let Some(mut second) = on_a_terminal(&daemon.env, &format!("{} message m second", common::BIN))
    else {
        gate.open();
        let _ = first.wait();
        eprintln!("SKIPPED the terminal half: util-linux `script` is not installed");
        return;
    };
    let screen = read_screen(&mut second);
    common::eventually("the queued line on the terminal", || {
        screen().contains("m: queued behind 1 message(s)… ")
    });
    gate.open();
    common::eventually("the second reply", || screen().contains("second reply"));
    assert!(second.wait().expect("second").success());
    assert!(first.wait().expect("first").success());
    let screen = screen();
    let queued = screen.find("queued behind").expect("queued");
    let reply = screen.find("second reply").expect("reply");
    assert!(queued < reply, "{screen:?}");
}

/// Starts `command` on a terminal (util-linux `script`), with `env`'s
/// environment; `None` where `script` is missing.
fn on_a_terminal(env: &Env, command: &str) -> Option<std::process::Child> {
    let template = env.command(&[]);
    std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

/// Reads what a terminal program draws, as it draws it: the returned
/// function gives the screen so far.
fn read_screen(child: &mut std::process::Child) -> impl Fn() -> String + use<> {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let shared = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buffer = [0; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            shared
                .lock()
                .expect("screen")
                .extend_from_slice(&buffer[..n]);
        }
    });
    move || String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned()
}

#[test]
fn a_fan_out_keeps_the_command_lines_order_and_streams_partial_lines_on_a_terminal() {
    let fake = FakeProvider::start();
    let daemon = InProcess::start();
    let base = fake.url("/v1");
    daemon
        .cli(&["spawn", "m", "--base-url", &base, "--model", "x"])
        .ok();
    daemon.cli(&["spawn", "e", "--provider", "echo"]).ok();
    let echoed = || {
        daemon.cli(&["--json", "history", "e"]).json()["messages"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // Piped: `m` is listed first and answers last, and still comes first.
    let gate = Gate::new();
    fake.push(Reply::sse(&openai_chunks(&["held ", "reply"])).insert(0, Step::Wait(gate.clone())));
    let piped = daemon
        .env
        .command(&["message", "m,e", "hi"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fan-out");
    common::eventually("e's reply", || echoed() == 2);
    gate.open();
    let out = piped.wait_with_output().expect("fan-out");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "m:\nheld reply\ne:\nhi\n"
    );

    // On a terminal: `m`'s first word shows while the rest is still held.
    let gate = Gate::new();
    fake.push(Reply::sse(&openai_chunks(&["held ", "reply"])).insert(2, Step::Wait(gate.clone())));
    let Some(mut terminal) = on_a_terminal(&daemon.env, &format!("{} message m,e hi", common::BIN))
    else {
        gate.open();
        eprintln!("SKIPPED the terminal half: util-linux `script` is not installed");
        return;
    };
    let screen = read_screen(&mut terminal);
    common::eventually("m's first word on the terminal", || {
        screen().contains("m │ held ")
    });
    assert!(!screen().contains("reply"), "{:?}", screen());
    gate.open();
    assert!(terminal.wait().expect("fan-out").success());
    let screen = screen();
    assert!(screen.contains("e │ hi"), "{screen:?}");
    assert!(screen.contains("reply"), "{screen:?}");
}
