//! The integration tests, as one test binary: each module is one area of
//! the behaviour, and `common` is the harness they share (the real binary
//! in temporary directories, raw HTTP over real sockets, a scriptable fake
//! model server). One binary links the crate once instead of once a file.
//!
//! Most tests run `orchestration serve` as a child process, because what
//! they check belongs to a process: signals, daemonizing, socket activation,
//! the PID file, auto-start, exit statuses. `in_process` runs the daemon's
//! core inside this process with `daemon::serve_on`.

mod common;

mod api;
mod cli;
mod completion;
mod concurrency;
mod docs;
mod durability;
mod events;
mod first_hour;
mod in_process;
mod lifecycle;
mod mcp;
mod providers;
mod reload;
mod scenario;
mod search;
mod security;
mod service;
mod third_party;
mod trust_boundary;
