//! The CLI as a user meets it: human output, `--json`, exit statuses, the
//! message when no daemon runs, and help that reads well.

use crate::common;
use crate::common::Harness;

use common::fake_provider::{FakeProvider, Reply, openai_chunks};
use common::in_process::InProcess;
use common::{BIN, Env};

#[test]
fn no_daemon_says_so_and_how_to_start_one() {
    let env = Env::new();
    for args in [
        &["list"][..],
        &["--no-autostart", "spawn", "x"],
        &["message", "x", "hi"],
        &["history", "x"],
    ] {
        let out = env.cli(args);
        assert_eq!(out.code(), 3, "{args:?}: {}", out.stderr());
        assert!(
            out.stderr()
                .starts_with("error: the orchestration daemon is not running"),
            "{}",
            out.stderr()
        );
        assert!(
            out.stderr()
                .contains("hint: start it with `orchestration serve --daemon`"),
            "{}",
            out.stderr()
        );
        assert!(out.stdout().is_empty());
    }
    // The spec's environment switch parses like a flag: 1/true/yes, 0/false/no
    // (0 starts a daemon: see service.rs).
    for value in ["1", "true", "yes"] {
        let out = env
            .command(&["list"])
            .env("ORCHESTRATION_NO_AUTOSTART", value)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(3),
            "ORCHESTRATION_NO_AUTOSTART={value}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    for args in [
        &["spawn"][..],
        &["spawn", ".bad"],
        &["spawn", "a", "--name", "b"],
        &["list", "--state", "sleeping"],
        &["message", "x"],
        &["history", "x", "--limit", "lots"],
        &["shutdown"],
        &["shutdown", "x", "--all"],
        &["serve", "--port", "1", "--no-tcp"],
        &["serve", "--drain-timeout", "soon"],
        &["frobnicate"],
    ] {
        let out = env.cli(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        assert!(!out.stderr().is_empty());
    }
}

#[test]
fn help_reads_well() {
    let env = Env::new();
    let top = env.cli(&["--help"]);
    top.ok();
    for word in [
        "serve",
        "spawn",
        "list",
        "message",
        "history",
        "task",
        "shutdown",
        "Exit status",
    ] {
        assert!(top.stdout().contains(word), "top-level help lacks {word}");
    }
    for sub in [
        "serve", "spawn", "list", "message", "history", "task", "shutdown",
    ] {
        let out = env.cli(&[sub, "--help"]);
        out.ok();
        assert!(out.stdout().contains("Usage: orchestration"), "{sub}");
    }
    env.cli(&["--version"]).ok();
}

#[test]
fn spawn_list_and_json() {
    let daemon = InProcess::start();
    let spawned = daemon.cli(&[
        "--json",
        "spawn",
        "j1",
        "--provider",
        "echo",
        "--model",
        "tiny",
    ]);
    spawned.ok();
    assert_eq!(spawned.json()["name"], "j1");
    assert_eq!(spawned.json()["model"], "tiny");
    let human = daemon.cli(&[
        "spawn",
        "--name",
        "j2",
        "--provider",
        "echo",
        "--model",
        "tiny",
    ]);
    assert_eq!(
        human.stdout(),
        "spawned agent 'j2' (provider echo, model tiny)\n"
    );

    let taken = daemon.cli(&["spawn", "j1", "--provider", "echo"]);
    assert_eq!(taken.code(), 1);
    assert!(
        taken.stderr().contains("already exists"),
        "{}",
        taken.stderr()
    );
    assert!(taken.stderr().contains("hint:"), "{}", taken.stderr());

    // Caught by the CLI before sending: a usage error (see first_hour.rs).
    let unknown = daemon.cli(&["spawn", "j3", "--provider", "nope"]);
    assert_eq!(unknown.code(), 2);
    assert!(
        unknown.stderr().contains("unknown provider"),
        "{}",
        unknown.stderr()
    );

    let list = daemon.cli(&["list", "--state", "idle", "--provider", "echo"]);
    list.ok();
    let lines: Vec<String> = list.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[1].starts_with("j1 ") && lines[1].contains("tiny"),
        "{lines:?}"
    );
    let json = daemon.cli(&["--json", "list"]).json();
    assert_eq!(json.as_array().map(Vec::len), Some(2));
    assert_eq!(
        daemon.cli(&["list", "--provider", "other"]).stdout(),
        "no agents\n"
    );
}

#[test]
fn message_streams_reads_stdin_and_reports_errors() {
    let daemon = InProcess::start();
    daemon.cli(&["spawn", "m", "--provider", "echo"]).ok();

    let words = daemon.cli(&["message", "m", "several", "separate", "words"]);
    assert_eq!(words.stdout(), "several separate words\n");
    let piped = daemon
        .env
        .cli_with_stdin(&["message", "m", "-"], "from standard input\n");
    piped.ok();
    assert_eq!(piped.stdout(), "from standard input\n");
    let quiet = daemon.cli(&["message", "--no-stream", "m", "whole"]);
    assert_eq!(quiet.stdout(), "whole\n");
    let json = daemon.cli(&["--json", "message", "m", "as json"]);
    json.ok();
    assert_eq!(json.json()["messages"][0]["content"], "as json");

    let missing = daemon.cli(&["message", "ghost", "hello"]);
    assert_eq!(missing.code(), 4);
    assert!(
        missing.stderr().contains("no agent named 'ghost'"),
        "{}",
        missing.stderr()
    );
    let empty = daemon.env.cli_with_stdin(&["message", "m", "-"], "\n");
    assert_eq!(empty.code(), 2);

    let history = daemon.cli(&["history", "m"]);
    history.ok();
    let lines: Vec<String> = history.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert!(
        lines[0].starts_with('[') && lines[0].ends_with("] human: several separate words"),
        "{lines:?}"
    );
    assert_eq!(daemon.cli(&["history", "ghost"]).code(), 4);
    assert_eq!(
        daemon
            .cli(&["--json", "history", "m", "--limit", "1"])
            .json()["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn task_prints_the_reply_and_leaves_no_agent() {
    let daemon = InProcess::start();
    let out = daemon.cli(&["task", "once", "do", "the", "thing", "--provider", "echo"]);
    out.ok();
    assert_eq!(out.stdout(), "do the thing\n");
    assert_eq!(daemon.cli(&["list"]).stdout(), "no agents\n");
    let json = daemon.cli(&["--json", "task", "twice", "again", "--provider", "echo"]);
    assert_eq!(json.json()["messages"][0]["content"], "again");
    assert!(
        daemon
            .cli(&["history", "once"])
            .stdout()
            .contains("human: do the thing")
    );
}

#[test]
fn shutdown_one_and_all() {
    let daemon = InProcess::start();
    for name in ["s1", "s2", "s3"] {
        daemon.cli(&["spawn", name, "--provider", "echo"]).ok();
    }
    assert_eq!(
        daemon.cli(&["shutdown", "s1"]).stdout(),
        "shut down agent 's1'\n"
    );
    assert_eq!(daemon.cli(&["shutdown", "s1"]).code(), 4);
    let all = daemon.cli(&["shutdown", "--all"]);
    all.ok();
    assert_eq!(all.stdout(), "shut down 2 agent(s): s2, s3\n");
    let again = daemon.cli(&["--json", "shutdown", "--all"]);
    assert_eq!(
        again.json(),
        serde_json::json!({"succeeded": [], "failed": {}})
    );
    assert_eq!(
        daemon.cli(&["shutdown", "--all"]).stdout(),
        "no agents were running\n"
    );
}

#[test]
fn config_reads_and_edits_the_file_by_dotted_key() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeProvider::start();
    fake.push(Reply::sse(&openai_chunks(&["from ", "the profile"])));
    let base = fake.url("/v1");
    let env = Env::new();
    let file = env.dir.path().join("config.toml");
    assert_eq!(
        env.cli(&["config", "path"]).ok().stdout().trim(),
        file.display().to_string()
    );
    // Defaults, with no file at all.
    assert_eq!(
        env.cli(&["config", "get", "providers.idle_timeout"])
            .ok()
            .stdout(),
        "2m\n"
    );
    let list = env.cli(&["--json", "config", "list"]);
    assert_eq!(list.ok().json()["limits.max_connections"], 512);
    assert!(list.json()["daemon.listen"].is_null());
    let unset = env.cli(&["config", "get", "daemon.listen"]);
    assert_eq!(unset.code(), 1, "{}", unset.stderr());

    std::fs::write(
        &file,
        "# mine\n[providers]\n# slow link\nidle_timeout = \"2s\"\n",
    )
    .expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    env.cli(&["config", "set", "providers.idle_timeout", "5m"])
        .ok();
    env.cli(&["config", "set", "limits.max_connections", "64"])
        .ok();
    env.cli(&["config", "set", "profiles.work.base_url", &base])
        .ok();
    env.cli(&["config", "set", "profiles.work.model", "from-the-file"])
        .ok();
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains("# mine") && text.contains("# slow link"),
        "{text}"
    );
    assert!(text.contains("idle_timeout = \"5m\""), "{text}");
    assert!(text.contains("max_connections = 64"), "{text}");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "the file keeps its mode");
    assert_eq!(
        env.cli(&["config", "get", "profiles.work.base_url"])
            .ok()
            .stdout(),
        format!("{base}\n")
    );
    // The daemon loads what was written: it reports the file it read, and
    // an agent spawned by the profile's name alone (the CLI sends nothing
    // else) talks to the base_url that only the file holds.
    let daemon = InProcess::serve(env.clone(), &["--no-tcp"]);
    let health = daemon.json("GET", "/health", None).json();
    assert_eq!(
        health["config"]["path"],
        file.display().to_string(),
        "{health}"
    );
    assert!(health["config"]["last_reload_error"].is_null(), "{health}");
    daemon.cli(&["spawn", "w", "--profile", "work"]).ok();
    assert_eq!(
        daemon.cli(&["message", "w", "hello"]).ok().stdout(),
        "from the profile\n"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.last_request().path, "/v1/chat/completions");
    assert_eq!(fake.last_request().body["model"], "from-the-file");
    drop(daemon);

    // Bad keys and values are usage errors, and change nothing.
    for args in [
        &["config", "set", "providers.idle_timout", "5s"][..],
        &["config", "set", "providers.idle_timeout", "soon"],
        &["config", "set", "limits.max_connections", "lots"],
        &["config", "get", "nope"],
    ] {
        let out = env.cli(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), text);

    env.cli(&["config", "unset", "profiles.work.base_url"]).ok();
    env.cli(&["config", "unset", "profiles.work.model"]).ok();
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(!text.contains("work"), "{text}");

    // A broken file is reported, never rewritten.
    std::fs::write(&file, "[providers\n").expect("write");
    let out = env.cli(&["config", "set", "providers.idle_timeout", "5m"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("does not parse"), "{}", out.stderr());
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "[providers\n"
    );
}

#[test]
fn a_new_config_file_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let env = Env::new();
    // The default place, in a HOME that has no .config yet.
    let out = env
        .shell(&format!(
            "umask 000; unset ORCHESTRATION_CONFIG; exec '{BIN}' config set providers.idle_timeout 5m"
        ))
        .output()
        .expect("config set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = env
        .dir
        .path()
        .join("home/.config/orchestration/config.toml");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("dir")), 0o700);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("idle_timeout = \"5m\""), "{text}");

    // A file named by ORCHESTRATION_CONFIG, under the usual umask.
    let named = env.dir.path().join("elsewhere/mine.toml");
    let out = env
        .shell(&format!(
            "umask 022; exec '{BIN}' config set limits.max_connections 64"
        ))
        .env("ORCHESTRATION_CONFIG", &named)
        .output()
        .expect("config set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&named), 0o600);
    // No temporary file is left beside it.
    let beside: Vec<_> = std::fs::read_dir(named.parent().expect("dir"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, [std::ffi::OsString::from("mine.toml")]);
}
