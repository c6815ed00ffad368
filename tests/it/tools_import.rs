//! `tools import` on the inputs and config files it meets: a device, a
//! FIFO or an oversized file in place of the JSON file, a daemon that runs
//! with another config file, a config file that is a symbolic link or
//! read-only, a replaced server, and where the new tables land in the file.
//! The CLI against a temporary directory; one test with an in-process daemon.

use std::os::unix::fs::PermissionsExt;

use crate::common::in_process::InProcess;
use crate::common::{Env, Harness};
use orchestration::config::Config;

fn servers_file(env: &Env, json: &str) -> String {
    let file = env.dir.path().join("mcp.json");
    std::fs::write(&file, json).expect("write the mcpServers file");
    file.display().to_string()
}

const ONE: &str =
    r#"{"mcpServers": {"t": {"command": "uvx", "args": ["x"], "env": {"TZ": "UTC"}}}}"#;

#[test]
fn a_device_a_fifo_or_a_file_over_a_mebibyte_is_refused_naming_it() {
    let env = Env::new().config("");
    let zero = env.cli(&["tools", "import", "/dev/zero"]);
    assert_eq!(zero.code(), 1, "{}", zero.stderr());
    assert!(
        zero.stderr()
            .contains("cannot read /dev/zero: it is a device, not a regular file"),
        "{}",
        zero.stderr()
    );

    let fifo = env.dir.path().join("servers.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let fifo_arg = fifo.display().to_string();
    // Nothing ever writes to it: a command that opened it blocking would hang here.
    let piped = env.cli(&["tools", "import", &fifo_arg]);
    assert_eq!(piped.code(), 1, "{}", piped.stderr());
    assert!(
        piped.stderr().contains(&format!(
            "cannot read {fifo_arg}: it is a FIFO (named pipe), not a regular file"
        )),
        "{}",
        piped.stderr()
    );

    let big = env.dir.path().join("big.json");
    let padding = " ".repeat(1 << 20);
    std::fs::write(&big, format!("{ONE}{padding}")).unwrap();
    let big_arg = big.display().to_string();
    let large = env.cli(&["tools", "import", &big_arg]);
    assert_eq!(large.code(), 1, "{}", large.stderr());
    assert!(
        large.stderr().contains(&format!(
            "cannot read {big_arg}: it is larger than 1048576 bytes"
        )),
        "{}",
        large.stderr()
    );
    let from_stdin = env.cli_with_stdin(&["tools", "import", "-"], &format!("{ONE}{padding}"));
    assert_eq!(from_stdin.code(), 1, "{}", from_stdin.stderr());
    assert!(
        from_stdin
            .stderr()
            .contains("cannot read standard input: it is larger than 1048576 bytes"),
        "{}",
        from_stdin.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("config.toml")).unwrap(),
        "",
        "nothing was written"
    );

    let under = env.cli_with_stdin(&["tools", "import", "-"], ONE);
    assert!(
        under.ok().stdout().contains("added mcp_servers.t"),
        "{}",
        under.stdout()
    );
}

#[test]
fn a_daemon_on_another_config_file_is_not_said_to_have_reloaded_the_edit() {
    let env = Env::new().config("");
    let daemon = InProcess::start_in(env.clone(), false);
    let other = env.dir.path().join("other.toml");
    std::fs::write(&other, "").unwrap();
    let other_arg = other.display().to_string();
    let file = servers_file(&env, ONE);
    let imported = env.cli_env(
        &[("ORCHESTRATION_CONFIG", &other_arg)],
        &["tools", "import", &file],
    );
    let text = imported.ok().stdout();
    assert!(!text.contains("reloaded it"), "{text}");
    let own = env.dir.path().join("config.toml").display().to_string();
    assert!(
        text.contains(&format!(
            "in {other_arg}; the running daemon uses another config file, {own}, and was not reloaded"
        )),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .contains("[mcp_servers.t]")
    );
    let listed = daemon.cli(&["--json", "tools", "list"]).ok().json();
    assert_eq!(listed["servers"], serde_json::json!([]), "{listed}");

    let json = env
        .cli_env(
            &[("ORCHESTRATION_CONFIG", &other_arg)],
            &["--json", "tools", "import", "--force", &file],
        )
        .ok()
        .json();
    assert_eq!(json["reloaded"], false, "{json}");
    assert_eq!(json["daemon_config"], own.as_str(), "{json}");
    assert_eq!(json["replaced"], serde_json::json!(["t"]), "{json}");
    assert_eq!(json["added"], serde_json::json!([]), "{json}");

    let same = daemon.cli(&["tools", "import", &file]).ok().stdout();
    assert!(same.contains("; the daemon reloaded it"), "{same}");
    let listed = daemon.cli(&["--json", "tools", "list"]).ok().json();
    assert_eq!(listed["servers"][0]["name"], "t", "{listed}");
}

#[test]
fn a_symlinked_config_file_has_its_target_edited_and_stays_a_link() {
    let env = Env::new();
    let target = env.dir.path().join("dotfiles.toml");
    std::fs::write(&target, "# mine\n[limits]\nmax_connections = 8\n").unwrap();
    let link = env.dir.path().join("config.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let file = servers_file(&env, ONE);
    env.cli(&["tools", "import", &file]).ok();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.starts_with("# mine\n"), "{text}");
    assert!(text.contains("[mcp_servers.t]"), "{text}");
    env.cli(&["config", "set", "limits.max_connections", "64"])
        .ok();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .contains("max_connections = 64")
    );

    let dangling = env.dir.path().join("gone.toml");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&dangling, &link).unwrap();
    let refused = env.cli(&["tools", "import", &file]);
    assert_eq!(refused.code(), 1, "{}", refused.stderr());
    assert!(
        refused.stderr().contains(&format!(
            "is a symbolic link to {}, which cannot be followed",
            dangling.display()
        )),
        "{}",
        refused.stderr()
    );
    assert!(!dangling.exists());
}

#[test]
fn a_read_only_config_file_is_refused_naming_the_command_that_ran() {
    let env = Env::new().config("# read-only\n");
    let config = env.dir.path().join("config.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o400)).unwrap();
    let file = servers_file(&env, ONE);
    let refused = env.cli(&["tools", "import", &file]);
    assert_eq!(refused.code(), 1);
    assert!(
        refused
            .stderr()
            .contains("is read-only (mode 0400): tools import does not edit"),
        "{}",
        refused.stderr()
    );
    assert!(
        !refused.stderr().contains("config set"),
        "{}",
        refused.stderr()
    );
    let set = env.cli(&["config", "set", "limits.max_connections", "64"]);
    assert!(
        set.stderr().contains("config set does not edit"),
        "{}",
        set.stderr()
    );
    let unset = env.cli(&["config", "unset", "limits.max_connections"]);
    assert_eq!(unset.code(), 0, "nothing to remove: {}", unset.stderr());
}

#[test]
fn force_says_replaced_for_a_server_the_config_had() {
    let env = Env::new().config("[mcp_servers.t]\ncommand = \"old\"\n");
    let file = servers_file(
        &env,
        r#"{"mcpServers": {"t": {"command": "new"}, "u": {"command": "other"}}}"#,
    );
    let text = env
        .cli(&["tools", "import", "--force", &file])
        .ok()
        .stdout();
    assert!(
        text.contains("replaced mcp_servers.t (stdio: new)"),
        "{text}"
    );
    assert!(
        text.contains("added mcp_servers.u (stdio: other)"),
        "{text}"
    );
}

/// The `[...]` and `[[...]]` headers of `text`, in order.
fn headers(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with('[')).collect()
}

#[test]
fn new_tables_go_together_after_the_last_server_and_never_among_budgets() {
    let budgets = "[[budgets]]\nscope = \"all\"\nusd = 5.0\n\n[[budgets]]\nscope = \"all\"\nperiod = \"day\"\nusd = 1.0\n";
    let env = Env::new().config(&format!(
        "# top\n[limits]\nmax_connections = 64\n\n{budgets}"
    ));
    let file = servers_file(
        &env,
        r#"{"mcpServers": {
            "h": {"url": "http://127.0.0.1:1/mcp", "headers": {"A": "b"}},
            "t": {"command": "uvx", "args": ["x"], "env": {"TZ": "UTC"}}
        }}"#,
    );
    env.cli(&["tools", "import", &file]).ok();
    let config = env.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        headers(&text),
        [
            "[limits]",
            "[[budgets]]",
            "[[budgets]]",
            "[mcp_servers.h]",
            "[mcp_servers.h.headers]",
            "[mcp_servers.t]",
            "[mcp_servers.t.env]",
        ],
        "{text}"
    );
    let loaded = Config::parse(&text).expect("it loads");
    assert_eq!(loaded.budgets.len(), 2);
    assert_eq!(loaded.mcp_servers["t"].env["TZ"], "UTC");

    // Servers first, budgets after: the new one goes after the last server.
    std::fs::write(
        &config,
        format!("[mcp_servers.a]\ncommand = \"a\"\n\n[mcp_servers.a.env]\nX = \"1\"\n\n{budgets}\n[limits]\nmax_connections = 64\n"),
    )
    .unwrap();
    env.cli(&["tools", "import", &file]).ok();
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        headers(&text),
        [
            "[mcp_servers.a]",
            "[mcp_servers.a.env]",
            "[mcp_servers.h]",
            "[mcp_servers.h.headers]",
            "[mcp_servers.t]",
            "[mcp_servers.t.env]",
            "[[budgets]]",
            "[[budgets]]",
            "[limits]",
        ],
        "{text}"
    );

    // A replaced server stays where it was, its tables with it.
    env.cli(&["tools", "import", "--force", &file]).ok();
    let again = std::fs::read_to_string(&config).unwrap();
    assert_eq!(headers(&again), headers(&text), "{again}");
}
