//! The first hour of a new user (issue #16): errors that say what to do next,
//! pipes that close early, readable output, confirmation before deleting,
//! and finding the daemon from a bare shell.

use crate::common;

use std::process::Stdio;

use common::fake_provider::{FakeProvider, Gate, Reply, Step, openai_chunks};
use common::in_process::InProcess;
use common::{Daemon, Env, Harness};

/// Runs a CLI command whose stdout is a pipe nobody reads any more: the
/// reading end is closed before the command starts, so its first write
/// meets EPIPE for certain.
fn run_into_closed_pipe(daemon: &impl Harness, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    let out = daemon
        .env()
        .command(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run orchestration");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "p", "--provider", "echo"]).ok();
    daemon.cli(&["message", "p", "one two three"]).ok();
    for args in [
        &["history", "p"][..],
        &["--json", "history", "p"],
        &["list"],
        &["--json", "list"],
        &["message", "p", "streamed words here"],
        &["message", "--no-stream", "p", "whole"],
        &["task", "t", "a task", "--provider", "echo"],
        &["spawn", "q", "--provider", "echo"],
        &["models", "--provider", "echo"],
        &["completions", "bash"],
    ] {
        let (code, stderr) = run_into_closed_pipe(&daemon, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // The way people meet it: a pipeline whose reader stops early. (Whether
    // the write races head's exit or not, the status is 0 and stderr clean.)
    let status_file = daemon.env.dir.path().join("status");
    let out = daemon
        .env
        .shell(&format!(
            "for i in 1 2 3 4 5 6; do {bin} message p \"line $i\" >/dev/null; done; \
             {{ {bin} history p; echo $? >{status}; }} | head -1",
            bin = common::BIN,
            status = status_file.display()
        ))
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let status = std::fs::read_to_string(&status_file).expect("status");
    assert_eq!(status.trim(), "0");
}

/// `[2025-01-31T01:10:44.709Z]`: RFC 3339, UTC, milliseconds, fixed width.
fn is_human_timestamp(stamp: &str) -> bool {
    let bytes = stamp.as_bytes();
    stamp.len() == 24
        && stamp.ends_with('Z')
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            23 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[test]
fn human_output_reads_well_and_json_keeps_everything() {
    let env = Env::new()
        .config("[profiles.work]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m1\"\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let spawned = daemon.cli(&["spawn", "w", "--profile", "work"]);
    assert_eq!(
        spawned.ok().stdout(),
        "spawned agent 'w' (provider openai, profile work, model m1)\n"
    );
    daemon.cli(&["spawn", "e", "--provider", "echo"]).ok();
    let list = daemon.cli(&["list"]);
    let lines: Vec<Vec<String>> = list
        .ok()
        .stdout()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "STATE",
            "PROVIDER",
            "PROFILE",
            "MODEL",
            "MESSAGES",
            "TOKENS(IN/OUT)",
            "CREATED"
        ]
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l[0] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {lines:?}"))
    };
    assert_eq!(row("w")[2..5], ["openai", "work", "m1"]);
    assert_eq!(row("e")[2..5], ["echo", "-", "-"]);
    assert!(is_human_timestamp(&row("e")[7]), "{:?}", row("e"));

    daemon.cli(&["message", "e", "hello"]).ok();
    let history = daemon.cli(&["history", "e"]);
    let first = history
        .ok()
        .stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let stamp = first
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(stamp, _)| stamp.to_owned())
        .unwrap_or_default();
    assert!(is_human_timestamp(&stamp), "{first}");
    let json = daemon.cli(&["--json", "history", "e"]).json();
    let full = json["messages"][0]["timestamp"]
        .as_str()
        .expect("timestamp");
    assert!(full.starts_with(&stamp[..23]), "{full} vs {stamp}");
}

/// The error and hint lines of a failed command.
fn error_and_hint(out: &common::CliOutput) -> (String, String) {
    let stderr = out.stderr();
    let error = stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned();
    let hint = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint line: {stderr}"))
        .to_owned();
    (error, hint)
}

#[test]
fn errors_say_what_to_do_next() {
    let env = Env::new().config(
        "[providers]\nmax_retries = 0\n[profiles.work]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n",
    );
    let daemon = InProcess::serve(env, &["--no-tcp"]);

    // No key anywhere: the ways to give one, and the offline provider.
    let missing = daemon.cli(&["spawn", "k"]);
    assert_eq!(missing.code(), 1, "{}", missing.stderr());
    let (error, hint) = error_and_hint(&missing);
    assert!(error.contains("OPENAI_API_KEY"), "{error}");
    assert!(!error.contains("api_key"), "names an API field: {error}");
    for needle in [
        "export OPENAI_API_KEY=",
        "--api-key-env VAR",
        "--profile",
        "--provider echo",
    ] {
        assert!(hint.contains(needle), "hint lacks {needle}: {hint}");
    }
    let task = daemon.cli(&["task", "k", "hi", "--provider", "anthropic"]);
    assert!(
        error_and_hint(&task)
            .1
            .contains("export ANTHROPIC_API_KEY="),
        "{}",
        task.stderr()
    );

    // A typo is a usage error, caught before anything is sent.
    for (args, suggestion) in [
        (
            &["spawn", "x", "--provider", "ehco"][..],
            "did you mean --provider echo?",
        ),
        (
            &["spawn", "x", "--profile", "wrok"],
            "did you mean --profile work?",
        ),
        (
            &["task", "x", "hi", "--provider", "opneai"],
            "did you mean --provider openai?",
        ),
        (
            &["models", "--profile", "gemnii"],
            "did you mean --profile gemini?",
        ),
        (
            &["spawn", "x", "--provider", "openrouter"],
            "use --profile openrouter",
        ),
        (&["spawn", "x", "--profile", "echo"], "use --provider echo"),
        (
            &["spawn", "x", "--provider", "nope"],
            "profiles: gemini, local, openrouter, work",
        ),
    ] {
        let out = daemon.cli(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        let (_, hint) = error_and_hint(&out);
        assert!(hint.contains(suggestion), "{args:?}: {hint}");
    }
    assert!(
        daemon
            .cli(&["list", "--all"])
            .stdout()
            .contains("no agents"),
        "nothing was spawned"
    );

    // A taken name: the hint adds something the error does not say.
    daemon.cli(&["spawn", "dup", "--provider", "echo"]).ok();
    let taken = daemon.cli(&["spawn", "dup", "--provider", "echo"]);
    assert_eq!(taken.code(), 1);
    let (error, hint) = error_and_hint(&taken);
    assert!(error.contains("already exists"), "{error}");
    assert!(hint.contains("orchestration message dup"), "{hint}");
    assert!(!hint.contains("shutdown"), "repeats the error: {hint}");

    // A model server that does not answer: where to look.
    daemon.cli(&["spawn", "w", "--profile", "work"]).ok();
    for args in [
        &["message", "w", "hello"][..],
        &["message", "--no-stream", "w", "hello"],
        &["task", "t", "hello", "--profile", "work"],
    ] {
        let out = daemon.cli(args);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr());
        let (error, hint) = error_and_hint(&out);
        assert!(error.contains("cannot reach"), "{error}");
        assert!(hint.contains("base_url"), "{hint}");
    }
}

/// Says that a terminal test could not run for want of util-linux `script`.
/// Where everything must run (`ORCHESTRATION_REQUIRE_THIRD_PARTY=1`, which
/// `scripts/test.sh` sets, or `ORCHESTRATION_REQUIRE_SYSTEMD=1`: CI, whose
/// `.ci/run` installs bsdutils) that is a failure, not a silent pass.
fn skipped_without_script() {
    let required = |switch: &str| std::env::var(switch).as_deref() == Ok("1");
    assert!(
        !required("ORCHESTRATION_REQUIRE_THIRD_PARTY")
            && !required("ORCHESTRATION_REQUIRE_SYSTEMD"),
        "util-linux `script` is required here but not installed (apt install bsdutils)"
    );
    eprintln!("SKIPPED: util-linux `script` is not installed (apt install bsdutils)");
}

/// Runs `script` to give a command a terminal, feeding it `input`; `None`
/// where util-linux `script` is missing.
fn in_a_terminal(env: &Env, command: &str, input: &str) -> Option<(Option<i32>, String)> {
    use std::io::Write;
    // The same environment the env gives the binary, around `script`.
    let template = env.command(&[]);
    let mut child = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn clearing_a_history_is_confirmed_first() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "c", "--provider", "echo"]).ok();
    daemon.cli(&["message", "c", "keep me"]).ok();
    let count = || {
        daemon.cli(&["--json", "history", "c"]).json()["messages"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // No terminal and no --yes: refused, with the way to do it.
    for args in [
        &["history", "c", "--clear"][..],
        &["--json", "history", "c", "--clear"],
    ] {
        let out = daemon.cli(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        let (_, hint) = error_and_hint(&out);
        assert!(hint.contains("--yes"), "{hint}");
        assert_eq!(out.stdout(), "");
    }
    assert_eq!(count(), 2);
    assert_eq!(
        daemon.cli(&["history", "c", "--yes"]).code(),
        2,
        "--yes needs --clear"
    );

    // In a terminal it asks; only a yes deletes.
    let bin = common::BIN;
    if let Some((code, screen)) =
        in_a_terminal(&daemon.env, &format!("{bin} history c --clear"), "n\n")
    {
        assert_eq!(code, Some(1), "{screen}");
        assert!(
            screen.contains("delete all 2 message(s) 'c' has had"),
            "{screen}"
        );
        assert!(screen.contains("nothing was cleared"), "{screen}");
        assert_eq!(count(), 2);
        let (code, screen) = in_a_terminal(&daemon.env, &format!("{bin} history c --clear"), "y\n")
            .expect("script ran before");
        assert_eq!(code, Some(0), "{screen}");
        assert!(screen.contains("history of 'c' cleared"), "{screen}");
        assert_eq!(count(), 0);
        daemon.cli(&["message", "c", "again"]).ok();
    } else {
        skipped_without_script();
    }

    // --yes clears without asking; --json says so in JSON.
    let out = daemon.cli(&["--json", "history", "c", "--clear", "--yes"]);
    assert_eq!(
        out.ok().json(),
        serde_json::json!({"name": "c", "cleared": true})
    );
    assert_eq!(count(), 0);
    assert_eq!(daemon.cli(&["history", "ghost", "--clear", "-y"]).code(), 4);
}

#[test]
fn without_home_the_config_sits_next_to_the_state() {
    let daemon = InProcess::start();
    let state = daemon.env.dir.path().join("state");
    let homeless = |args: &[&str]| {
        let mut command = daemon.env.command(args);
        command
            .env_remove("HOME")
            .env_remove("ORCHESTRATION_CONFIG");
        common::CliOutput(command.output().expect("run"))
    };
    assert_eq!(
        homeless(&["config", "path"]).ok().stdout().trim(),
        state.join("config.toml").display().to_string()
    );
    homeless(&["spawn", "h", "--provider", "echo"]).ok();
    assert!(homeless(&["list"]).ok().stdout().contains("h "));
    std::fs::write(
        state.join("config.toml"),
        "[profiles.near]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n",
    )
    .expect("write");
    let typo = homeless(&["spawn", "n", "--profile", "naer"]);
    assert!(
        typo.stderr().contains("did you mean --profile near?"),
        "the CLI read S/config.toml: {}",
        typo.stderr()
    );

    // With nothing to go on, the error says which variable to set.
    let mut command = daemon.env.command(&["list"]);
    for variable in [
        "HOME",
        "ORCHESTRATION_CONFIG",
        "ORCHESTRATION_STATE_DIR",
        "ORCHESTRATION_RUNTIME_DIR",
    ] {
        command.env_remove(variable);
    }
    let out = common::CliOutput(command.output().expect("run"));
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("HOME is not set"), "{}", out.stderr());
    assert!(
        out.stderr().contains("set HOME, or ORCHESTRATION_"),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_daemon_serving_the_state_dir_elsewhere_is_pointed_at() {
    // A login session's daemon: its runtime dir, and the default state dir of its HOME.
    let env = Env::new();
    let home = env.dir.path().join("home");
    let state = home.join(".local/state/orchestration");
    let env = env.var("ORCHESTRATION_STATE_DIR", &state.display().to_string());
    let daemon = Daemon::start_in(env, &["--no-tcp"], None);
    daemon.cli(&["spawn", "s", "--provider", "echo"]).ok();
    let socket = daemon.env.socket();

    // A shell with another runtime dir finds nobody and cannot start a second daemon.
    let other = daemon.env.dir.path().join("other");
    let out = daemon.env.cli_env(
        &[
            ("ORCHESTRATION_NO_AUTOSTART", "0"),
            ("ORCHESTRATION_RUNTIME_DIR", &other.display().to_string()),
        ],
        &["list"],
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let (error, hint) = error_and_hint(&out);
    assert!(error.contains("is using the state dir"), "{error}");
    assert!(
        hint.contains(&format!("--socket {}", socket.display())),
        "{hint}"
    );

    // The same from a bare shell (cron, `env -i`): no XDG_RUNTIME_DIR, only
    // HOME. (Skipped where /run/user/$UID exists: there the CLI rightly
    // looks in it, and might find a real daemon.)
    let uid = nix::unistd::geteuid();
    if !std::path::Path::new(&format!("/run/user/{uid}")).exists() {
        let bare = std::process::Command::new("env")
            .arg("-i")
            .arg(format!("HOME={}", home.display()))
            .args([common::BIN, "list"])
            .output()
            .expect("env -i");
        let bare = common::CliOutput(bare);
        assert_eq!(bare.code(), 3, "{}", bare.stderr());
        let (_, hint) = error_and_hint(&bare);
        assert!(hint.contains(&socket.display().to_string()), "{hint}");
        // Following the hint works.
        let socket_arg = socket.display().to_string();
        let follow = std::process::Command::new("env")
            .arg("-i")
            .arg(format!("HOME={}", home.display()))
            .args([common::BIN, "--socket", &socket_arg, "list"])
            .output()
            .expect("env -i");
        let follow = common::CliOutput(follow);
        assert!(follow.ok().stdout().contains("s "), "{}", follow.stdout());
    }
}

#[test]
fn a_terminal_sees_the_wait_and_a_script_sees_only_the_reply() {
    // `m` answers through a model server that holds its reply until the
    // test has seen the waiting line on the terminal: the echo provider's
    // first word comes at once, often before the line is first drawn.
    let fake = FakeProvider::start();
    let gate = Gate::new();
    let held = Reply::sse(&openai_chunks(&["one ", "two ", "three"]));
    fake.push(held.insert(0, Step::Wait(gate.clone())));
    let env = Env::new().var("OPENAI_API_KEY", "k");
    let daemon = InProcess::serve(env, &["--no-tcp", "--echo-delay", "50ms"]);
    daemon.cli(&["spawn", "w", "--provider", "echo"]).ok();
    let model = fake.url("/v1");
    let spawn_m = [
        "spawn",
        "m",
        "--provider",
        "openai",
        "--base-url",
        &model,
        "--api-key-env",
        "OPENAI_API_KEY",
    ];
    daemon.cli(&spawn_m).ok();

    // Not a terminal: exactly the reply, and nothing on stderr.
    for (args, reply) in [
        (&["message", "w", "one two three"][..], "one two three\n"),
        (&["message", "--no-stream", "w", "one two"], "one two\n"),
        (&["task", "t1", "a b", "--provider", "echo"], "a b\n"),
    ] {
        let out = daemon.cli(args);
        assert_eq!(out.ok().stdout(), reply, "{args:?}");
        assert_eq!(out.stderr(), "", "{args:?}");
    }

    let bin = common::BIN;
    let Some(waiting) =
        start_on_a_terminal(&daemon.env, &format!("{bin} message m one two three"), &[])
    else {
        return skipped_without_script();
    };
    let (code, screen) = screen_once_seen(waiting, "m: waiting for the model… ", || gate.open());
    assert_eq!(code, Some(0), "{screen}");
    // The waiting line (its seconds as they were), erased before the reply.
    let erased = screen
        .find("s\r\x1b[2Kone two three")
        .unwrap_or_else(|| panic!("the waiting line is erased before the reply: {screen:?}"));
    let line = screen[..erased].trim_end_matches(|c: char| c.is_ascii_digit());
    assert!(
        line.len() < erased && line.ends_with("m: waiting for the model… "),
        "the waiting line is erased before the reply: {screen:?}"
    );
    assert!(
        screen.contains("\x1b[2mm: ") && screen.contains(" tokens in, 3 out\x1b[0m"),
        "{screen:?}"
    );
    for (command, absent) in [
        (format!("{bin} message -q w hi"), "tokens in"),
        (
            format!("NO_COLOR=1 {bin} task t2 hi --provider echo"),
            "\x1b[2m",
        ),
        (format!("{bin} --json message w hi"), "waiting"),
        (format!("{bin} --json message w hi"), "tokens in"),
    ] {
        let (code, screen) = in_a_terminal(&daemon.env, &command, "").expect("script");
        assert_eq!(code, Some(0), "{command}: {screen}");
        assert!(!screen.contains(absent), "{command}: {screen:?}");
    }
    let (_, screen) = in_a_terminal(
        &daemon.env,
        &format!("NO_COLOR=1 {bin} task t3 hi --provider echo"),
        "",
    )
    .expect("script");
    assert!(screen.contains("t3: "), "{screen:?}");
    assert!(screen.contains(" tokens in, 1 out"), "{screen:?}");
}

/// Reads a terminal program's screen as it is drawn; once `text` is on it,
/// calls `then`; returns the exit code and the whole screen after exit.
fn screen_once_seen(
    mut child: std::process::Child,
    text: &str,
    then: impl FnOnce(),
) -> (Option<i32>, String) {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn({
        let screen = Arc::clone(&screen);
        move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                screen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        }
    });
    let seen = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    common::eventually(&format!("{text:?} on the terminal"), || {
        seen().contains(text)
    });
    then();
    common::eventually("the program on the terminal to exit", || {
        child.try_wait().expect("try_wait").is_some()
    });
    reader.join().expect("the terminal's reader");
    let code = child.wait().expect("wait").code();
    (code, seen())
}

/// Starts `command` on a terminal (util-linux `script`) with `env`'s
/// environment plus `vars`; `None` where `script` is missing.
fn start_on_a_terminal(
    env: &Env,
    command: &str,
    vars: &[(&str, &str)],
) -> Option<std::process::Child> {
    let template = env.command(&[]);
    std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// What a terminal program printed, once it has exited (within PATIENCE).
fn screen_after_exit(mut child: std::process::Child) -> String {
    common::eventually("the program on the terminal to exit", || {
        child.try_wait().expect("try_wait").is_some()
    });
    let mut screen = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut screen)
        .expect("read the terminal");
    screen
}

/// `watch` on a terminal while an agent is spawned and answers, until the
/// daemon stops.
fn watch_on_a_terminal(vars: &[(&str, &str)]) -> Option<String> {
    let mut daemon = Daemon::start(&["--echo-delay", "0ms"]);
    let watch = start_on_a_terminal(&daemon.env, &format!("'{}' watch", common::BIN), vars)?;
    common::eventually("the watcher subscribed", || {
        daemon.log().contains("route=\"events\"")
    });
    daemon.cli(&["spawn", "painted", "--provider", "echo"]).ok();
    daemon.cli(&["message", "painted", "hello"]).ok();
    daemon.cli(&["serve", "--stop"]).ok();
    assert!(daemon.wait_exit().success());
    Some(screen_after_exit(watch))
}

#[test]
fn no_color_turns_off_the_colours_of_watch_on_a_terminal() {
    let Some(coloured) = watch_on_a_terminal(&[]) else {
        return skipped_without_script();
    };
    assert!(coloured.contains("spawned (echo)"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[") && coloured.contains("painted"),
        "agent names are coloured on a terminal: {coloured:?}"
    );
    for value in ["1", "anything"] {
        let plain = watch_on_a_terminal(&[("NO_COLOR", value)]).expect("script");
        assert!(plain.contains("painted  spawned (echo)"), "{plain:?}");
        assert!(plain.contains("painted  < hello"), "{plain:?}");
        assert!(!plain.contains('\x1b'), "NO_COLOR={value}: {plain:?}");
    }
    // An empty NO_COLOR is as good as unset (no-color.org).
    let empty = watch_on_a_terminal(&[("NO_COLOR", "")]).expect("script");
    assert!(empty.contains("\x1b["), "{empty:?}");
}

#[test]
fn no_color_turns_off_the_colours_of_the_daemons_log_on_a_terminal() {
    let serve = |vars: &[(&str, &str)]| {
        let env = Env::new();
        // Killed through its PID file if the test fails before stopping it.
        let _guard = common::Background { env: env.clone() };
        let daemon = start_on_a_terminal(&env, &format!("'{}' serve --no-tcp", common::BIN), vars)?;
        common::eventually("the daemon to answer", || {
            env.cli(&["serve", "--status"]).code() == 0
        });
        env.cli(&["serve", "--stop"]).ok();
        Some(screen_after_exit(daemon))
    };
    let Some(coloured) = serve(&[]) else {
        return skipped_without_script();
    };
    assert!(coloured.contains("ready"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b["),
        "coloured on a terminal: {coloured:?}"
    );
    let plain = serve(&[("NO_COLOR", "1")]).expect("script");
    assert!(plain.contains("ready"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}
