//! orchestration: a per-user daemon that keeps named LLM agents alive between
//! command-line calls, and the thin CLI that talks to it over HTTP.
//!
//! The daemon (`orchestration serve`) is `daemon` + `api` + `engine`; every
//! other subcommand is [`cli`] driving `client`, after `autostart` has made
//! sure a daemon answers. [`model`] is the bottom layer every other module
//! speaks; [`wire`] is the protocol the client and the daemon share.
//! ARCHITECTURE.md is the map.
//!
//! What is public is what the binary, the in-process tests
//! ([`daemon::serve_on`]) and the benches (which fill a store through
//! [`store`] and restore it with [`engine`]) need; the rest is private to the
//! crate, so the compiler reports what nothing uses.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api;
mod autostart;
pub mod cli;
mod client;
mod colour;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod model;
mod paths;
mod pidfile;
mod profiles;
pub mod providers;
pub mod runtime;
mod service;
pub mod store;
pub mod tools;
pub mod wire;

/// The version reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
