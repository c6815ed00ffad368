//! The integration tests, as one test binary: each module is one area of
//! the behaviour, and `common` is the harness they share (the real binary
//! in temporary directories, raw HTTP over real sockets, a scriptable fake
//! model server). One binary links the crate once instead of once a file.
//!
//! Two harnesses run a daemon, with the same methods, so a test moves
//! between them by its constructor (helpers take `&impl Harness`):
//! `common::in_process::InProcess` runs the daemon's core
//! (`daemon::serve_on`) on a runtime of its own inside this process;
//! `common::Daemon` runs `orchestration serve` as a child process. The CLI
//! is always the real binary. Tests run in-process unless what they check
//! belongs to a process.
//!
//! In-process: `api`, `concurrency`, `interrupt`, `providers`, `third_party` and
//! `in_process` whole; and the tests of `cli`, `events`, `first_hour`,
//! `mcp`, `search`, `security` and `trust_boundary` that only talk HTTP,
//! the CLI or MCP to a running daemon.
//!
//! Separate processes, because what they check is a process's:
//! - `lifecycle`, `reload`, `service`: signals (SIGTERM, SIGINT, SIGHUP),
//!   `serve --daemon`, socket activation, the PID file, auto-start, exit
//!   statuses, `serve --stop`/`--status`, XDG and HOME path defaults.
//! - `durability`: kill -9 and restarts of a process mid-write.
//! - `scenario`: whole sessions that end in `serve --stop` or SIGTERM and
//!   check the exit status and the files left behind; the TCP fallback
//!   reads the token file `serve` writes.
//! - the rest of `search` (kill -9 and a restart), `events` (the daemon's RSS, exit after a stop), `first_hour`
//!   (`watch` until the daemon exits, the daemon's own coloured log on a
//!   terminal, a state dir found through `serve`'s environment),
//!   `completion` (a TAB asks only a daemon that holds the PID file),
//!   `mcp` (auto-start), `security` (another uid, `--listen
//!   --allow-remote`, 300 slow clients, which would be 600 descriptors in
//!   one process, a `RUST_LOG=debug` log, file modes under a umask) and
//!   `trust_boundary` (the TCP fallback's token file).
//! - `docs` and the CLI-only tests start no daemon at all.

mod common;

mod api;
mod approvals;
mod bounds;
mod budget_syntax;
mod budgets;
mod cli;
mod clock;
mod codex;
mod coding_agents;
mod coding_audit;
mod coding_limits;
mod coding_terminal;
mod completion;
mod concurrency;
mod docs;
mod durability;
mod error_codes;
mod events;
mod first_hour;
mod first_hour_again;
mod hardening;
mod human_output;
mod in_process;
mod interrupt;
mod lifecycle;
mod mcp;
mod metrics;
mod own_daemon;
mod providers;
mod readme_claims;
mod reload;
mod scenario;
mod search;
mod security;
mod service;
mod third_party;
mod tool_loop;
mod tool_servers;
mod tools_host;
mod tools_import;
mod trust_boundary;
mod ui_browser;
mod ui_security;
mod usage;
mod wording;
