//! Dynamic shell completion: `source <(COMPLETE=bash orchestration)` (also
//! zsh, fish, elvish, powershell) registers a completer that calls this
//! binary back on every TAB, so it can offer what only run time knows: the
//! live agents' names (asked of the running daemon), profile names (built in
//! and from the config file), provider names and agent states.
//!
//! A completion never starts a daemon, never waits for one longer than
//! [`DAEMON_TIMEOUT`], and offers nothing when none answers. The static
//! scripts of `orchestration completions SHELL` stay as they were.

use std::time::Duration;

use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter, CompletionCandidate};

use crate::client::Client;
use crate::config::Config;
use crate::model::AgentState;
use crate::paths::Paths;
use crate::pidfile::{self, Holder};
use crate::profiles::Kind;
use crate::profiles::known_profiles;
use crate::wire::ListQuery;

/// How long a TAB may wait for the daemon's list of agents.
pub const DAEMON_TIMEOUT: Duration = Duration::from_millis(500);

/// Answers a completion request (`COMPLETE=SHELL` in the environment) and
/// exits; otherwise returns at once.
pub fn handle_request() {
    clap_complete::CompleteEnv::with_factory(super::command).complete();
}

/// Live agents' names.
pub fn live_agents() -> ArgValueCandidates {
    ArgValueCandidates::new(|| agents(false))
}

/// A comma-separated list of live agents (`message a,b,c`): after `a,` the
/// names not yet in the list, each offered as the whole word so far plus it.
pub fn live_agent_lists() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let Some(current) = current.to_str() else {
            return Vec::new();
        };
        let cut = current.rfind(',').map_or(0, |i| i + 1);
        let (listed, partial) = current.split_at(cut);
        let taken: Vec<&str> = listed.split(',').collect();
        agents(false)
            .into_iter()
            .filter_map(|candidate| {
                let name = candidate.get_value().to_str()?.to_owned();
                (name.starts_with(partial) && !taken.contains(&name.as_str())).then(|| {
                    CompletionCandidate::new(format!("{listed}{name}"))
                        .help(candidate.get_help().cloned())
                })
            })
            .collect()
    })
}

/// The config file's keys (`config get prov` → `providers.idle_timeout` …),
/// including the profiles the file defines.
pub fn config_keys() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let config = Paths::resolve(None)
            .ok()
            .and_then(|paths| Config::load(&paths.config_file).ok())
            .unwrap_or_default();
        config
            .entries()
            .into_iter()
            .map(|(key, _)| CompletionCandidate::new(key))
            .collect()
    })
}

/// Every name with a history: live agents and shut-down ones.
pub fn all_agents() -> ArgValueCandidates {
    ArgValueCandidates::new(|| agents(true))
}

pub fn providers() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        Kind::NAMES
            .split(", ")
            .map(CompletionCandidate::new)
            .collect()
    })
}

pub fn profiles() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let config = Paths::resolve(None)
            .ok()
            .and_then(|paths| Config::load(&paths.config_file).ok())
            .unwrap_or_default();
        known_profiles(&config)
            .split(", ")
            .filter(|name| !name.is_empty())
            .map(CompletionCandidate::new)
            .collect()
    })
}

pub fn states() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        AgentState::ALL
            .iter()
            .map(|state| CompletionCandidate::new(state.as_str()))
            .collect()
    })
}

/// The agents the running daemon knows, or none: a daemon that is not
/// running is not started (with socket activation, even connecting would
/// start one, so the PID file's lock is checked first).
fn agents(all: bool) -> Vec<CompletionCandidate> {
    // `--socket` on the line being completed is not seen here; its variable is.
    let socket = std::env::var_os("ORCHESTRATION_SOCKET")
        .filter(|socket| !socket.is_empty())
        .map(std::path::PathBuf::from);
    let Ok(paths) = Paths::resolve(socket) else {
        return Vec::new();
    };
    if !paths.socket_explicit && pidfile::holder(&paths.pid_file) == Holder::Nobody {
        return Vec::new();
    }
    let Ok(client) = Client::new(&paths) else {
        return Vec::new();
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let query = ListQuery {
        all,
        ..ListQuery::default()
    };
    let listed =
        runtime.block_on(async { tokio::time::timeout(DAEMON_TIMEOUT, client.list(&query)).await });
    let Ok(Ok(agents)) = listed else {
        return Vec::new();
    };
    agents
        .into_iter()
        .map(|agent| {
            let help = format!("{}, {}", agent.provider, agent.state);
            CompletionCandidate::new(agent.name.to_string()).help(Some(help.into()))
        })
        .collect()
}
