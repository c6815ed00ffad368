//! The daemon as an MCP host, against real MCP servers from npm and PyPI
//! (pinned in `scripts/test.sh`, which installs them into `target/third-party`
//! and names them in `ORCHESTRATION_MCP_EVERYTHING`, `ORCHESTRATION_MCP_FILESYSTEM`
//! and `ORCHESTRATION_MCP_TIME`). Without them a test is skipped with a message
//! on stderr, unless `ORCHESTRATION_REQUIRE_THIRD_PARTY=1`, when it fails.
//!
//! `tools list` and `GET /tools` are checked through a daemon (in-process,
//! and the real CLI); calls through `ToolHost` itself, which is what the
//! engine's tool loop holds.

use std::path::PathBuf;

use orchestration::config::Config;
use orchestration::model::{ServerState, ToolPolicy};
use orchestration::tools::{ToolError, ToolHost};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The path a `scripts/test.sh` variable names, or `None` (the test skips,
/// or fails under `ORCHESTRATION_REQUIRE_THIRD_PARTY=1`).
fn server(var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() != Ok("1"),
            "${var} does not name an installed MCP server; run scripts/test.sh"
        );
        eprintln!("SKIPPED: ${var} is not set (scripts/test.sh installs the MCP servers)");
    }
    found
}

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
    let Some(everything) = server("ORCHESTRATION_MCP_EVERYTHING") else {
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
