//! The daemon as an MCP host, against real MCP servers from npm and PyPI
//! (pinned in `scripts/test.sh`, which installs them into `target/third-party`
//! and names them in `ORCHESTRATION_MCP_EVERYTHING`, `ORCHESTRATION_MCP_FILESYSTEM`
//! and `ORCHESTRATION_MCP_TIME`). Without them a test is skipped with a message
//! on stderr, unless `ORCHESTRATION_REQUIRE_THIRD_PARTY=1`, when it fails.
//!
//! `tools list` and `GET /tools` are checked through a daemon (in-process,
//! and the real CLI); calls through `ToolHost` itself, which is what the
//! engine's tool loop holds.

use crate::common;
use crate::common::in_process::InProcess;
use crate::common::tool_calls::{installed, marker, pids_with};
use crate::common::{Env, Harness};
use orchestration::config::Config;
use orchestration::model::{ServerState, ToolPolicy};
use orchestration::tools::{ToolError, ToolHost};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn host(config: &str) -> ToolHost {
    ToolHost::new(&Config::parse(config).expect("a valid config"))
}

fn toml_path(path: &std::path::Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a path as a TOML string")
}

#[test]
fn everything_offers_its_tools_with_policies_and_echoes() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let host = host(&format!(
        "[mcp_servers.every]\ncommand = {}\n[mcp_servers.every.policies]\nget-sum = \"deny\"\n",
        toml_path(&everything)
    ));
    runtime().block_on(async {
        let offered = host.offer(&["every".into()]).await.expect("offer");
        let policy = |name: &str| {
            offered
                .iter()
                .find(|tool| tool.def.tool == name)
                .map(|tool| tool.policy)
        };
        // readOnlyHint: true → allow; false → ask; named in policies → that.
        assert_eq!(policy("echo"), Some(ToolPolicy::Allow), "{offered:?}");
        assert_eq!(policy("toggle-simulated-logging"), Some(ToolPolicy::Ask));
        assert_eq!(policy("get-sum"), Some(ToolPolicy::Deny));
        let echo = host
            .call(
                "every",
                "echo",
                json!({"message": "hello tools"}),
                &CancellationToken::new(),
            )
            .await
            .expect("echo");
        assert_eq!(echo.output, "Echo: hello tools");
        assert!(!echo.is_error);

        let one = host.offer(&["every.echo".into()]).await.expect("offer one");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].def.qualified(), "every.echo");
        let missing = host.offer(&["every.nope".into()]).await;
        assert!(
            matches!(missing, Err(ToolError::UnknownTool { .. })),
            "{missing:?}"
        );
        let unknown = host.offer(&["nothere".into()]).await;
        assert!(
            matches!(unknown, Err(ToolError::UnknownServer(_))),
            "{unknown:?}"
        );

        let servers = host.servers(false).await;
        assert_eq!(servers[0].state, ServerState::Running);
        host.stop_all().await;
        assert_eq!(host.servers(false).await[0].state, ServerState::Stopped);
    });
}

/// A `[mcp_servers.NAME]` running server-everything, marked.
fn everything_config(name: &str, everything: &std::path::Path, marker: &str) -> String {
    let (key, value) = marker.split_once('=').expect("a marker is KEY=VALUE");
    format!(
        "[mcp_servers.{name}]\ncommand = {}\nenv = {{ {key} = \"{value}\" }}\n",
        toml_path(everything)
    )
}

#[test]
fn a_server_sees_only_its_env_and_path_home_lang() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let mark = marker();
    let host = host(&everything_config("every", &everything, &mark));
    let env = runtime().block_on(async {
        let outcome = host
            .call("every", "get-env", json!({}), &CancellationToken::new())
            .await
            .expect("get-env");
        host.stop_all().await;
        outcome.output
    });
    let env: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&env).expect("get-env prints the environment as JSON");
    let (key, value) = mark.split_once('=').unwrap();
    assert_eq!(
        env.get(key).and_then(|v| v.as_str()),
        Some(value),
        "{env:?}"
    );
    // scripts/test.sh put this in the daemon's (this process's) environment;
    // like a provider key, it must not reach the server.
    assert!(std::env::var_os("ORCHESTRATION_MCP_EVERYTHING").is_some());
    for name in env.keys() {
        assert!(
            ["PATH", "HOME", "LANG", key].contains(&name.as_str()),
            "the server saw {name} from the daemon's environment: {env:?}"
        );
    }
}

#[test]
fn filesystem_reads_a_file_time_tells_the_time_and_a_big_result_is_cut() {
    let (Some(filesystem), Some(time)) = (
        installed("ORCHESTRATION_MCP_FILESYSTEM"),
        installed("ORCHESTRATION_MCP_TIME"),
    ) else {
        return;
    };
    let root = tempfile::tempdir().expect("a temp dir");
    let root_path = root.path().canonicalize().expect("the temp dir");
    std::fs::write(root_path.join("note.txt"), "the answer is 42\n").expect("write note");
    std::fs::write(root_path.join("big.txt"), "é".repeat(5000)).expect("write big");
    let host = host(&format!(
        "[tools]\nmax_result_bytes = 1025\n\
         [mcp_servers.fs]\ncommand = {}\nargs = [{}]\n\
         [mcp_servers.time]\ncommand = {}\nargs = [\"--local-timezone\", \"UTC\"]\n",
        toml_path(&filesystem),
        toml_path(&root_path),
        toml_path(&time),
    ));
    runtime().block_on(async {
        let cancel = CancellationToken::new();
        let offered = host
            .offer(&["fs".into(), "time".into()])
            .await
            .expect("offer");
        let read_file = offered
            .iter()
            .find(|tool| tool.def.qualified() == "fs.read_text_file")
            .expect("the filesystem server offers read_text_file");
        // Annotated read-only by the server: allowed without asking.
        assert_eq!(read_file.policy, ToolPolicy::Allow);
        assert!(
            offered
                .iter()
                .any(|tool| tool.def.qualified() == "time.get_current_time")
        );

        let note = root_path.join("note.txt").display().to_string();
        let read = host
            .call("fs", "read_text_file", json!({"path": note}), &cancel)
            .await
            .expect("read_text_file");
        assert!(read.output.contains("the answer is 42"), "{read:?}");
        assert!(!read.is_error);

        let outside = host
            .call(
                "fs",
                "read_text_file",
                json!({"path": "/etc/hostname"}),
                &cancel,
            )
            .await
            .expect("a refused read is a result");
        assert!(outside.is_error, "{outside:?}");

        let big = root_path.join("big.txt").display().to_string();
        let cut = host
            .call("fs", "read_text_file", json!({"path": big}), &cancel)
            .await
            .expect("read the big file");
        // 1025 bytes of two-byte characters: cut at 1024, with the marker.
        let (kept, marker) = cut.output.split_once("\n[cut: ").expect("a cut marker");
        assert_eq!(kept.len(), 1024, "{}", cut.output);
        assert!(
            marker.contains("bytes not shown (tools.max_result_bytes = 1025)"),
            "{marker}"
        );

        let now = host
            .call(
                "time",
                "get_current_time",
                json!({"timezone": "UTC"}),
                &cancel,
            )
            .await
            .expect("get_current_time");
        assert!(now.output.contains("UTC"), "{now:?}");
        assert!(!now.is_error);
        host.stop_all().await;
    });
}

#[test]
fn a_tool_that_never_answers_times_out_and_the_server_goes_on() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let mark = marker();
    let host = host(&format!(
        "[tools]\ncall_timeout = \"1s\"\n{}",
        everything_config("every", &everything, &mark)
    ));
    runtime().block_on(async {
        // Started with its own 60 s first: an offer gives a start only
        // call_timeout (1 s here), which node may need more than.
        assert_eq!(host.servers(true).await[0].state, ServerState::Running);
        host.offer(&["every".into()]).await.expect("offer");
        let slow = json!({"duration": 3600, "steps": 1});
        let timed_out = host
            .call(
                "every",
                "trigger-long-running-operation",
                slow.clone(),
                &CancellationToken::new(),
            )
            .await;
        assert!(
            matches!(&timed_out, Err(ToolError::Timeout(limit)) if limit == "1s"),
            "{timed_out:?}"
        );

        // A cancelled turn ends the call at once (and tells the server).
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        let call = host.call("every", "trigger-long-running-operation", slow, &cancel);
        let (cancelled, ()) = tokio::join!(call, async move { canceller.cancel() });
        assert!(
            matches!(cancelled, Err(ToolError::Cancelled)),
            "{cancelled:?}"
        );

        // The server took the cancellations and still answers.
        let echo = host
            .call(
                "every",
                "echo",
                json!({"message": "still here"}),
                &CancellationToken::new(),
            )
            .await
            .expect("echo after the timeout");
        assert_eq!(echo.output, "Echo: still here");
        assert_eq!(pids_with(&mark).len(), 1, "one server process");
        host.stop_all().await;
    });
    common::eventually("the server stopped", || pids_with(&mark).is_empty());
}

#[test]
fn a_server_killed_mid_call_fails_the_call_clearly_and_restarts_on_next_use() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let mark = marker();
    let host = host(&everything_config("every", &everything, &mark));
    let runtime = runtime();
    runtime
        .block_on(host.offer(&["every".into()]))
        .expect("offer");
    let pids = pids_with(&mark);
    assert_eq!(pids.len(), 1, "one server process: {pids:?}");
    let call = {
        let host = host.clone();
        runtime.spawn(async move {
            let slow = json!({"duration": 3600, "steps": 1});
            host.call(
                "every",
                "trigger-long-running-operation",
                slow,
                &CancellationToken::new(),
            )
            .await
        })
    };
    common::eventually("the call was sent", || {
        runtime.block_on(host.servers(false))[0].calls_in_flight == 1
    });
    common::signal(pids[0], "KILL");
    let failed = runtime.block_on(call).expect("the call's task");
    match &failed {
        Err(ToolError::Unavailable { server, why }) => {
            assert_eq!(server, "every");
            assert!(why.contains("signal 9"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let listed = runtime.block_on(host.servers(false));
    assert_eq!(listed[0].state, ServerState::Failed);
    assert!(
        listed[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("signal 9"),
        "{listed:?}"
    );

    let echo = runtime
        .block_on(host.call(
            "every",
            "echo",
            json!({"message": "back"}),
            &CancellationToken::new(),
        ))
        .expect("the next call restarts it");
    assert_eq!(echo.output, "Echo: back");
    let listed = runtime.block_on(host.servers(false));
    assert_eq!(listed[0].state, ServerState::Running);
    assert_eq!(listed[0].restarts, 1);
    assert!(
        listed[0].last_error.is_some(),
        "the last error stays on show"
    );
    let now = pids_with(&mark);
    assert_eq!(now.len(), 1);
    assert_ne!(now, pids, "a new process");
    runtime.block_on(host.stop_all());
    common::eventually("the server stopped", || pids_with(&mark).is_empty());
}

#[test]
fn an_idle_server_is_stopped_and_starts_again_on_use() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let mark = marker();
    let host = host(&format!(
        "[tools]\nidle_timeout = \"1s\"\n{}",
        everything_config("every", &everything, &mark)
    ));
    let runtime = runtime();
    runtime
        .block_on(host.offer(&["every".into()]))
        .expect("offer");
    assert_eq!(pids_with(&mark).len(), 1);
    common::eventually("the idle server stopped", || {
        pids_with(&mark).is_empty()
            && runtime.block_on(host.servers(false))[0].state == ServerState::Stopped
    });
    let listed = runtime.block_on(host.servers(false));
    assert!(
        listed[0].tools.is_some(),
        "the tools it listed stay on show"
    );
    assert_eq!(listed[0].restarts, 0, "an idle stop is no failure");
    let echo = runtime
        .block_on(host.call(
            "every",
            "echo",
            json!({"message": "again"}),
            &CancellationToken::new(),
        ))
        .expect("echo starts it again");
    assert_eq!(echo.output, "Echo: again");
    runtime.block_on(host.stop_all());
}

#[test]
fn tools_list_shows_servers_before_and_after_they_start_and_nothing_outlives_the_daemon() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    let mark = marker();
    let env = Env::new().config(&format!(
        "{}[mcp_servers.every.policies]\necho = \"ask\"\n",
        everything_config("every", &everything, &mark)
    ));
    let daemon = InProcess::start_in(env, false);
    let listed = daemon.cli(&["--json", "tools", "list"]);
    let listed = listed.ok().json();
    let every = &listed["servers"][0];
    assert_eq!(every["name"], "every");
    assert_eq!(every["transport"], "stdio");
    assert_eq!(every["state"], "stopped");
    assert!(every.get("tools").is_none(), "{listed}");
    assert!(
        pids_with(&mark).is_empty(),
        "nothing starts before first use"
    );
    let human = daemon.cli(&["tools", "list"]);
    assert!(
        human.ok().stdout().contains("every  stdio  stopped"),
        "{}",
        human.stdout()
    );

    let started = daemon.cli(&["--json", "tools", "list", "--start"]);
    let every = started.ok().json()["servers"][0].clone();
    assert_eq!(every["state"], "running");
    let tool = |name: &str| {
        every["tools"]
            .as_array()
            .and_then(|tools| tools.iter().find(|t| t["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no tool {name} in {every}"))
    };
    assert_eq!(tool("echo")["policy"], "ask", "config's policies win");
    assert_eq!(tool("echo")["read_only"], true);
    assert_eq!(tool("get-env")["policy"], "allow", "readOnlyHint");
    assert_eq!(tool("toggle-simulated-logging")["policy"], "ask");
    assert_eq!(pids_with(&mark).len(), 1);
    let human = daemon.cli(&["tools", "list"]);
    let text = human.ok().stdout();
    assert!(text.contains("every  stdio  running  restarts 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("get-env") && l.contains("allow")),
        "{text}"
    );

    let over_http = daemon.request("GET", "/tools", None);
    assert_eq!(over_http.status, 200);
    drop(daemon);
    assert!(
        pids_with(&mark).is_empty(),
        "the server stopped with the daemon"
    );
}

#[test]
fn tools_import_adds_servers_refuses_to_overwrite_and_reloads_a_running_daemon() {
    let env = Env::new().config("# my config\n[limits]\nmax_connections = 64\n");
    let file = env.dir.path().join("claude_desktop_config.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {
            "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
            "remote": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer t"}},
            "withenv": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "disabled": false}
        }}"#,
    )
    .expect("write the mcpServers file");
    let file_arg = file.display().to_string();
    let imported = env.cli(&["--no-autostart", "tools", "import", &file_arg]);
    let text = imported.ok().stdout();
    assert!(text.contains("added mcp_servers.fs (stdio: npx)"), "{text}");
    assert!(
        text.contains("added mcp_servers.remote (http: https://example.invalid/mcp)"),
        "{text}"
    );
    let config_text = std::fs::read_to_string(env.dir.path().join("config.toml")).unwrap();
    assert!(
        config_text.starts_with("# my config\n"),
        "comments kept: {config_text}"
    );
    let config = Config::parse(&config_text).expect("the edited config loads");
    assert_eq!(config.mcp_servers["fs"].command.as_deref(), Some("npx"));
    assert_eq!(
        config.mcp_servers["remote"].headers["Authorization"],
        "Bearer t"
    );
    assert_eq!(config.mcp_servers["withenv"].env["TZ"], "UTC");
    assert_eq!(config.limits.max_connections, 64);

    let again = env.cli(&["--no-autostart", "tools", "import", &file_arg]);
    assert_eq!(again.code(), 2, "{}", again.stderr());
    assert!(
        again
            .stderr()
            .contains("mcp_servers.fs is already configured"),
        "{}",
        again.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("config.toml")).unwrap(),
        config_text
    );
    env.cli(&["--no-autostart", "tools", "import", "--force", &file_arg])
        .ok();

    std::fs::write(&file, "{\"mcpServers\": {\"x\": ").unwrap();
    let bad = env.cli(&["--no-autostart", "tools", "import", &file_arg]);
    assert_eq!(bad.code(), 2);
    assert!(
        bad.stderr().contains("not an {\"mcpServers\""),
        "{}",
        bad.stderr()
    );
    std::fs::write(
        &file,
        r#"{"mcpServers": {"both": {"command": "a", "url": "http://b"}}}"#,
    )
    .unwrap();
    let both = env.cli(&["--no-autostart", "tools", "import", &file_arg]);
    assert_eq!(both.code(), 2);
    assert!(
        both.stderr().contains("mcp_servers.both: give either"),
        "{}",
        both.stderr()
    );

    let daemon = InProcess::start_in(env.clone(), false);
    std::fs::write(&file, r#"{"mcpServers": {"later": {"command": "true"}}}"#).unwrap();
    let live = daemon.cli(&["tools", "import", &file_arg]);
    assert!(
        live.ok().stdout().contains("the daemon reloaded it"),
        "{}",
        live.stdout()
    );
    let listed = daemon.cli(&["--json", "tools", "list"]).ok().json();
    let names: Vec<&str> = listed["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["fs", "later", "remote", "withenv"]);
}

#[test]
fn a_server_with_both_command_and_url_is_refused_at_start_and_at_reload() {
    let bad = "[mcp_servers.twice]\ncommand = \"x\"\nurl = \"http://127.0.0.1:1/mcp\"\n";
    let env = Env::new().config(bad);
    let started = env.cli(&["serve", "--no-tcp"]);
    assert_ne!(started.code(), 0);
    assert!(
        started.stderr().contains("mcp_servers.twice: give either"),
        "{}",
        started.stderr()
    );

    let env = Env::new().config("");
    let daemon = InProcess::start_in(env.clone(), false);
    std::fs::write(env.dir.path().join("config.toml"), bad).unwrap();
    let reload = daemon.cli(&["serve", "--reload"]);
    assert_ne!(reload.code(), 0);
    assert!(
        reload.stderr().contains("mcp_servers.twice: give either"),
        "{}",
        reload.stderr()
    );
    daemon.cli(&["--json", "tools", "list"]).ok();
}

/// server-everything in its streamable-HTTP mode on a free port; killed on drop.
struct HttpEverything {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpEverything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_streamable_http_server_is_reached_at_its_url() {
    let Some(everything) = installed("ORCHESTRATION_MCP_EVERYTHING") else {
        return;
    };
    // It takes its port from PORT, so one is found free first (a collision
    // with another test's listener makes its start fail loudly).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(&everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start server-everything over HTTP");
    let http = HttpEverything { child, port };
    common::eventually("server-everything listens", || {
        std::net::TcpStream::connect(("127.0.0.1", http.port)).is_ok()
    });
    let host = host(&format!(
        "[mcp_servers.web]\nurl = \"http://127.0.0.1:{}/mcp\"\nheaders = {{ X-Test = \"yes\" }}\n",
        http.port
    ));
    runtime().block_on(async {
        let offered = host
            .offer(&["web.echo".into()])
            .await
            .expect("offer over HTTP");
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].policy, ToolPolicy::Allow);
        let echo = host
            .call(
                "web",
                "echo",
                json!({"message": "over http"}),
                &CancellationToken::new(),
            )
            .await
            .expect("echo over HTTP");
        assert_eq!(echo.output, "Echo: over http");
        let listed = host.servers(false).await;
        assert_eq!(
            listed[0].transport,
            orchestration::model::ServerTransport::Http
        );
        assert_eq!(listed[0].state, ServerState::Running);
        host.stop_all().await;
    });
}
