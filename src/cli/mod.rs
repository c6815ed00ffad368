//! The command line: argument definitions (clap derive), dispatch, and the
//! one mapping from errors to exit statuses. One file per subcommand.

mod activity;
mod approvals;
mod complete;
mod config;
mod history;
mod list;
mod mcp;
mod message;
mod models;
mod output;
mod progress;
mod prune;
mod search;
mod serve;
mod service;
mod shutdown;
mod spawn;
mod suggestion;
mod task;
mod tools;
mod ui;
mod usage;
mod watch;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::autostart::{self, AutostartError};
use crate::client::{Client, ClientError};
use crate::config::{Config, ConfigError};
use crate::daemon::DaemonError;
use crate::model::{AgentName, ApprovalMode};
use crate::paths::{PathError, Paths};
use crate::profiles::{Kind, Profile, ProfileError, key_variable, known_profiles};
use crate::wire::{ErrorCode, ModelsRequest, SpawnRequest};

/// Exit statuses (SPEC §6).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
}

const AFTER_HELP: &str = "\
The first command starts the daemon if none is running (see --no-autostart). For example:
  orchestration spawn --name scratch --provider echo
  orchestration message scratch \"hello there\"
  orchestration history scratch

Exit status: 0 success, 1 the operation failed, 2 usage error, 3 daemon unreachable, 4 agent (or
approval) not found.";

/// Keep named LLM agents alive between command-line calls.
///
/// One per-user daemon (`orchestration serve`) holds the agents and their
/// conversations; every other subcommand talks to it over a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "orchestration", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The daemon's control socket [default: daemon.sock in the runtime dir:
    /// $ORCHESTRATION_RUNTIME_DIR, else $XDG_RUNTIME_DIR/orchestration, else
    /// /run/user/UID/orchestration when that is yours, else ~/.orchestration; `orchestration serve
    /// --status` prints the one in use]
    #[arg(long, global = true, value_name = "PATH", env = "ORCHESTRATION_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Print the API's JSON instead of human-readable output.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print text from models and model servers exactly as received, escape sequences included
    /// (for colours a model draws with). Without it, human output shows every control character
    /// but newline and tab as a visible escape (`\u{1b}`), so a reply cannot retitle the window,
    /// write the clipboard or clear the screen; --json is always exact.
    #[arg(long, global = true)]
    pub raw: bool,

    /// Never start a daemon on demand. Without this, a command that finds no daemon starts one
    /// (`systemctl --user start orchestration.socket` if that unit is installed, else
    /// `orchestration serve --daemon`) and waits until it is ready.
    #[arg(long, global = true, env = "ORCHESTRATION_NO_AUTOSTART", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_autostart: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground, or ask about or stop a running one.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// Start a new named agent.
    Spawn(spawn::SpawnArgs),
    /// List the live agents.
    List(list::ListArgs),
    /// Send an agent a message and print its reply as it streams in.
    Message(message::MessageArgs),
    /// Show an agent's conversation, oldest first (also after it was shut down).
    History(history::HistoryArgs),
    /// Run one prompt on a throwaway agent, print the reply, and remove the agent.
    Task(task::TaskArgs),
    /// Shut down one agent, or all of them. Their histories stay readable.
    Shutdown(shutdown::ShutdownArgs),
    /// List the models a provider or profile offers (asks the model server through the daemon).
    Models(models::ModelsArgs),
    /// Search every conversation ever held, live or ended, for words or phrases.
    Search(search::SearchArgs),
    /// Delete ended conversations older than a duration (live agents' are never touched).
    Prune(prune::PruneArgs),
    /// List the tool calls waiting for a person's yes or no (approve ID / deny ID answers one).
    #[command(long_about = APPROVALS_ABOUT)]
    Approvals(approvals::ApprovalsArgs),
    /// Let a pending tool call run (its id from `orchestration approvals`).
    #[command(long_about = APPROVE_ABOUT)]
    Approve(approvals::ApproveArgs),
    /// Refuse a pending tool call; the agent is told, with --reason if given.
    #[command(long_about = DENY_ABOUT)]
    Deny(approvals::DenyArgs),
    /// Show what provider calls cost: tokens and USD, in total or by agent, profile, model or day.
    #[command(long_about = usage::LONG_ABOUT)]
    Usage(usage::UsageArgs),
    /// Follow what the agents do, live: spawns, messages, replies as they stream, usage.
    #[command(long_about = watch::LONG_ABOUT)]
    Watch(watch::WatchArgs),
    /// Read or edit the config file by dotted key (get, set, unset, list, path).
    #[command(long_about = config::LONG_ABOUT)]
    Config(config::ConfigArgs),
    /// Install, remove or inspect the systemd user units (launchd agent on macOS) for this binary.
    #[command(long_about = service::LONG_ABOUT)]
    Service(service::ServiceArgs),
    /// Open the daemon's web page in your browser, logged in by a one-time link.
    #[command(long_about = ui::LONG_ABOUT)]
    Ui(ui::UiArgs),
    /// List the MCP servers API agents' tools come from, or import them from an mcpServers file.
    #[command(long_about = tools::LONG_ABOUT)]
    Tools(tools::ToolsArgs),
    /// Serve the Model Context Protocol on standard input and output, for assistants and editors.
    #[command(long_about = mcp::LONG_ABOUT)]
    Mcp(mcp::McpArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    ///
    /// The script completes subcommands and options. For agent, profile and provider names as
    /// well, use the dynamic completer instead: `source <(COMPLETE=bash orchestration)` in
    /// ~/.bashrc (zsh alike; fish: `COMPLETE=fish orchestration | source`). It asks the running
    /// daemon for its agents on each TAB, waiting at most half a second, and never starts one.
    Completions(CompletionsArgs),
}

const APPROVALS_ABOUT: &str = "\
List the tool calls waiting for a person's yes or no, oldest first: id, agent, tool, what it would
run, and how long it has waited. An agent that acts (Claude Code, Codex) asks before a command that
its policy does not allow; the daemon holds the request until someone answers it here, over MCP
(answer_approval), from the web page, or at the `message` prompt that is waiting. An unanswered
request is denied after agents.approval_timeout (10 minutes by default) and when the daemon stops.";

const APPROVE_ABOUT: &str = "\
Let a pending tool call run (its id from `orchestration approvals`). An approval is answered once:
a second answer, or one after it timed out, fails with exit status 1; an id the daemon does not
know exits 4.";

const DENY_ABOUT: &str = "\
Refuse a pending tool call (its id from `orchestration approvals`). The agent is told it was denied,
with --reason if given, and may try another way. A second answer, or one after it timed out, fails
with exit status 1; an id the daemon does not know exits 4.";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The whole command-line definition, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Which model server to use: shared by `spawn`, `task` and `models`.
#[derive(Debug, Clone, Args)]
pub struct EndpointOptions {
    /// The provider that answers: `openai` (the default), `anthropic`, `echo` (offline, built in), or
    /// the coding agent `claude-code` (alias `sdk`), which the daemon runs in --cwd.
    #[arg(long, value_name = "P", add = complete::providers())]
    pub provider: Option<String>,
    /// A provider profile: built in `openrouter`, `local`, `gemini`, or `[profiles.NAME]` from the config file.
    #[arg(long, value_name = "P", add = complete::profiles())]
    pub profile: Option<String>,
    /// The provider's API base URL.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Send the API key held in this environment variable (of the CLI's environment). Without it
    /// the key of the provider's or profile's own variable is sent, and only to its own base URL:
    /// with --base-url, no key is sent unless this names one.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

impl EndpointOptions {
    /// The request these options make, with the API key read from this
    /// process's environment (a daemon under a service manager does not see
    /// the user's shell variables). The key travels in the request body,
    /// never on a command line. An unknown provider or profile is a usage
    /// error found here, before anything is sent, with a suggestion.
    fn request(&self, config_file: &Path) -> Result<ModelsRequest, CliError> {
        let config = Config::load(config_file)?;
        self.check_names(&config)?;
        Ok(ModelsRequest {
            provider: self.provider.clone(),
            profile: self.profile.clone(),
            base_url: self.base_url.clone(),
            api_key: self.read_api_key(&config)?,
            headers: None,
        })
    }

    /// `--provider` must name a provider and `--profile` a built-in or
    /// configured profile; otherwise say which was meant, if one was close.
    fn check_names(&self, config: &Config) -> Result<(), CliError> {
        let profiles = known_profiles(config);
        let listing = format!(
            "providers: {}; profiles: {profiles} (more in the config file, `orchestration config path`)",
            Kind::NAMES
        );
        let suggest = |typed: &str| match suggestion::did_you_mean(typed, config) {
            Some(guess) => format!("{guess} {listing}"),
            None => listing.clone(),
        };
        let is_profile = |name: &str| {
            !matches!(
                Profile::named(name, config),
                Err(ProfileError::UnknownProfile { .. })
            )
        };
        if let Some(provider) = self.provider.as_deref()
            && Kind::parse(provider).is_none()
        {
            let hint = if is_profile(provider) {
                format!("{provider:?} is a profile: use --profile {provider}")
            } else {
                suggest(provider)
            };
            return Err(CliError::Usage(format!("unknown provider {provider:?}")).with_hint(hint));
        }
        if let Some(profile) = self.profile.as_deref()
            && !is_profile(profile)
        {
            let hint = if Kind::parse(profile).is_some() {
                format!("{profile:?} is a provider: use --provider {profile}")
            } else {
                suggest(profile)
            };
            return Err(CliError::Usage(format!("unknown profile {profile:?}")).with_hint(hint));
        }
        Ok(())
    }

    /// The key to send: from `--api-key-env VAR` if given (it must be set),
    /// else from the variable the provider or profile names, but only for
    /// its own base URL: a key never follows a `--base-url` the user typed
    /// unless they named its variable. `None` when there is none to send.
    fn read_api_key(&self, config: &Config) -> Result<Option<String>, CliError> {
        let read = |variable: &str| std::env::var(variable).ok().filter(|key| !key.is_empty());
        if let Some(variable) = &self.api_key_env {
            return read(variable).map(Some).ok_or_else(|| {
                CliError::Usage(format!(
                    "--api-key-env {variable}: {variable} is not set (or empty) in this environment"
                ))
            });
        }
        Ok(self.key_variable(config).as_deref().and_then(read))
    }

    fn key_variable(&self, config: &Config) -> Option<String> {
        key_variable(
            self.provider.as_deref(),
            self.profile.as_deref(),
            self.base_url.as_deref(),
            config,
        )
    }

    /// The `models` command that asks the endpoint these options name.
    fn models_command(&self) -> String {
        let mut command = "orchestration models".to_owned();
        for (flag, value) in [
            ("--provider", &self.provider),
            ("--profile", &self.profile),
            ("--base-url", &self.base_url),
            ("--api-key-env", &self.api_key_env),
        ] {
            if let Some(value) = value {
                command.push_str(&format!(" {flag} {}", output::shell_word(value)));
            }
        }
        command
    }

    /// Adds what to do next to a daemon's answer about these options: a
    /// missing key gets the ways to give one; the model server's own
    /// refusal, the command that lists what *this* endpoint offers.
    fn explain(&self, error: CliError, config_file: &Path) -> CliError {
        if is_model_server_answer(&error) && !matches!(error, CliError::Hinted { .. }) {
            let hint = model_server_hint(&self.models_command());
            return error.with_hint(hint);
        }
        let missing_key = matches!(
            &error,
            CliError::Client(ClientError::Api {
                code: ErrorCode::MissingKey,
                ..
            })
        );
        if !missing_key {
            return error;
        }
        let config = Config::load(config_file).unwrap_or_default();
        let variable = self
            .key_variable(&config)
            .unwrap_or_else(|| "THE_KEY_VARIABLE".into());
        // Someone who chose a profile needs its key, not another profile.
        let other_profile = match &self.profile {
            Some(_) => String::new(),
            None => format!(
                " or use a profile (--profile P: {});",
                known_profiles(&config)
            ),
        };
        error.with_hint(format!(
            "`export {variable}=…` and run this again; or read the key from another variable \
             with --api-key-env VAR;{other_profile} or try it offline with --provider echo"
        ))
    }
}

/// A model server's refusal relayed by the daemon (502), as opposed to a
/// server that could not be reached at all.
fn is_model_server_answer(error: &CliError) -> bool {
    matches!(
        error,
        CliError::Client(ClientError::Api {
            code: ErrorCode::UpstreamStatus
                | ErrorCode::UpstreamProtocol
                | ErrorCode::UpstreamError,
            ..
        })
    )
}

/// What to check when the model server refused, with the command that lists
/// the models of the endpoint in question.
fn model_server_hint(models_command: &str) -> String {
    format!(
        "that is the model server's answer: check the model name (`{models_command}` lists what \
         this endpoint offers), the key and the account"
    )
}

/// The options an agent is spawned with, shared by `spawn` and `task`.
#[derive(Debug, Clone, Args)]
pub struct AgentOptions {
    #[command(flatten)]
    pub endpoint: EndpointOptions,
    /// The model to ask for.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// The agent's instructions, sent as its system prompt (appended to a coding agent's own).
    #[arg(long, value_name = "TEXT")]
    pub instructions: Option<String>,
    /// An API agent's tools: MCP servers from config's `[mcp_servers.NAME]`, or one
    /// tool of a server as `server.tool` (comma-separated, repeatable). Calls run
    /// under each tool's policy; `--allow` and `--approval` apply to them too.
    #[arg(long, value_name = "NAME[,NAME…]", value_delimiter = ',')]
    pub tools: Vec<String>,
    /// A coding agent's working directory (default: this command's own).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub cwd: Option<PathBuf>,
    /// A tool the agent may use without asking: for a coding agent a tool name
    /// (`Read`) or a rule like `Bash(git status:*)`; for an API agent an MCP server
    /// (`fs`) or one of its tools (`fs.read_file`) (repeatable: one pattern each, no
    /// space or comma outside parentheses). A tool config denies stays denied.
    /// Patterns that run every command (`Bash`, `commandExecution`) are refused over
    /// TCP, as `--approval bypass` is.
    #[arg(long = "allow", value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// What the agent's other tool calls do: `ask` a person (the default), `never`
    /// (denied), or `bypass` (run without asking; accepted on the Unix socket only).
    #[arg(long, value_enum, value_name = "MODE")]
    pub approval: Option<ApprovalArg>,
    /// This agent's own spending limit, besides the config's [[budgets]]: AMOUNT in `usd` or
    /// `tokens`, per `/day`, `/month` (UTC calendar) or `/total` (the default), e.g. `2usd/day`,
    /// `100000tokens/month`, `5usd` (at least 0.01usd). A call that does not fit is refused (exit
    /// status 1).
    #[arg(long, value_name = "BUDGET", value_parser = budget_text)]
    pub budget: Option<String>,
}

/// `--budget` checked here as the daemon will (so a typo is a usage error
/// before anything is sent), and sent as typed.
fn budget_text(text: &str) -> Result<String, String> {
    text.parse::<crate::model::AgentBudget>()?;
    Ok(text.to_owned())
}

/// `--approval`: how a coding agent's tool calls are approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApprovalArg {
    Ask,
    Never,
    Bypass,
}

impl From<ApprovalArg> for ApprovalMode {
    fn from(arg: ApprovalArg) -> Self {
        match arg {
            ApprovalArg::Ask => Self::Ask,
            ApprovalArg::Never => Self::Never,
            ApprovalArg::Bypass => Self::Bypass,
        }
    }
}

impl AgentOptions {
    /// The spawn request these options make, key included. A coding agent
    /// gets this command's working directory unless `--cwd` names one.
    fn request(&self, name: &AgentName, config_file: &Path) -> Result<SpawnRequest, CliError> {
        let coding = Kind::coding_agent(self.endpoint.provider.as_deref(), "api").is_some();
        let cwd = match &self.cwd {
            Some(dir) => Some(absolute(dir)?),
            None if coding => Some(absolute(Path::new("."))?),
            None => None,
        };
        Ok(SpawnRequest {
            model: self.model.clone(),
            instructions: self.instructions.clone(),
            tools: self.tools_requested(),
            cwd,
            allow: (!self.allow.is_empty()).then(|| self.allow.clone()),
            approval: self.approval.map(ApprovalMode::from),
            budget: self.budget.clone(),
            ..SpawnRequest::new(name.clone(), self.endpoint.request(config_file)?)
        })
    }
}

impl AgentOptions {
    /// `--tools` as the spawn sends it: none given is none asked for (a
    /// profile's `tools` then apply); blanks from `a,,b` are dropped.
    fn tools_requested(&self) -> Option<Vec<String>> {
        let tools: Vec<String> = self
            .tools
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        (!tools.is_empty()).then_some(tools)
    }
}

/// A directory as the daemon must see it: absolute, links resolved.
fn absolute(dir: &Path) -> Result<String, CliError> {
    std::fs::canonicalize(dir)
        .map(|path| path.display().to_string())
        .map_err(|error| CliError::Usage(format!("--cwd {}: {error}", dir.display())))
}

/// A failed command: what to tell the user and which status to exit with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Paths(#[from] PathError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Autostart(#[from] AutostartError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    /// Standard output was closed by its reader (EPIPE): not a failure.
    #[error("standard output was closed")]
    Closed,
    /// An error with a hint that only the command knows (a name, a variable).
    #[error("{error}")]
    Hinted { error: Box<CliError>, hint: String },
    /// A failure the command has already told the user about (each agent's
    /// own error in a fan-out): only its exit status is left to give.
    #[error("{0}")]
    Reported(Box<CliError>),
}

impl CliError {
    /// The same error, with `hint` in place of the generic one.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        Self::Hinted {
            error: Box::new(self),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Hinted { error, .. } | Self::Reported(error) => error.exit_code(),
            // A daemon that could not be started is as unreachable as one that is not running.
            Self::Client(ClientError::Unreachable { .. }) | Self::Autostart(_) => exit::UNREACHABLE,
            // Not our daemon: as good as none, and nothing was sent to it.
            Self::Client(ClientError::NotOurDaemon { .. }) => exit::UNREACHABLE,
            Self::Client(ClientError::BadDaemonUid(_)) => exit::USAGE,
            Self::Client(ClientError::Api { code, status, .. }) => api_exit_code(*code, *status),
            Self::Usage(_) => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    /// `no_autostart`: whether --no-autostart (or its variable) was given,
    /// so that dropping it is suggested only then.
    fn hint(&self, no_autostart: bool) -> Option<String> {
        let hint = match self {
            Self::Hinted { hint, .. } => return Some(hint.clone()),
            Self::Client(ClientError::Unreachable { .. }) if no_autostart => {
                "start it with `orchestration serve --daemon` (or `orchestration serve` in another terminal), or drop --no-autostart / ORCHESTRATION_NO_AUTOSTART"
            }
            Self::Client(ClientError::Unreachable { .. }) => {
                "start it with `orchestration serve --daemon` (or `orchestration serve` in another terminal)"
            }
            Self::Autostart(error) => return Some(error.hint()),
            Self::Client(ClientError::NotOurDaemon { .. }) => {
                "nothing was sent to it. Use a socket in a directory only you can write to (your \
                 runtime dir's, by default); as root, ORCHESTRATION_DAEMON_UID=UID talks to that \
                 user's daemon"
            }
            Self::Client(ClientError::Api {
                code, missing_key, ..
            }) => return api_hint(*code, missing_key.is_some()).map(str::to_owned),
            _ => return None,
        };
        Some(hint.to_owned())
    }
}

/// The exit status of a daemon's error, by its code. A code this CLI does
/// not know (a newer daemon's) goes by the HTTP status.
fn api_exit_code(code: ErrorCode, status: u16) -> u8 {
    match code {
        ErrorCode::NotFound | ErrorCode::AgentGone | ErrorCode::ApprovalNotFound => exit::NOT_FOUND,
        ErrorCode::InvalidName
        | ErrorCode::InvalidBody
        | ErrorCode::InvalidQuery
        | ErrorCode::InvalidApprovalId
        | ErrorCode::NotInstalled
        | ErrorCode::InvalidCwd
        | ErrorCode::InvalidAllow => exit::USAGE,
        ErrorCode::Other => match status {
            404 => exit::NOT_FOUND,
            422 => exit::USAGE,
            _ => exit::FAILED,
        },
        _ => exit::FAILED,
    }
}

/// What to do next about a daemon's error, by its code.
fn api_hint(code: ErrorCode, missing_key: bool) -> Option<&'static str> {
    let hint = match code {
        ErrorCode::NotFound | ErrorCode::AgentGone => "`orchestration list` shows the live agents",
        ErrorCode::Suspended if missing_key => {
            "export that variable where you run orchestration (the CLI then sends the key with your message), or put it in the daemon's environment file and run `orchestration serve --reload`"
        }
        ErrorCode::Suspended => {
            "fix what it lacks in the config file, then `orchestration serve --reload`; `orchestration list` shows why each agent is suspended"
        }
        ErrorCode::NameTaken => "`orchestration list` shows the names in use",
        ErrorCode::ApprovalNotFound | ErrorCode::InvalidApprovalId => {
            "`orchestration approvals` lists the pending ones with their ids"
        }
        ErrorCode::AlreadyResolved => {
            "an approval is answered once, and expires when it times out \
             (agents.approval_timeout), its turn ends or the daemon stops; \
             `orchestration approvals` lists the ones still pending"
        }
        ErrorCode::NotInstalled => {
            "install it where the daemon runs (Claude Code: `npm install -g @anthropic-ai/claude-code`; \
             Codex: `npm install -g @openai/codex`), or set its path in the config file: \
             [agents.claude-code] command = [\"/path/to/claude\"], then `orchestration serve --reload`"
        }
        ErrorCode::InvalidCwd => "pass --cwd DIR with an existing directory of your own",
        ErrorCode::ProcessesBusy => {
            "an idle coding agent keeps its process until agents.idle_timeout: shut one down \
             (`orchestration shutdown NAME`), or allow more with \
             `orchestration config set limits.max_agent_processes N`"
        }
        ErrorCode::BudgetExceeded => {
            "the budget named allows no more until it resets; `orchestration usage` shows every \
             budget's state. Raise a [[budgets]] limit in the config file and run \
             `orchestration serve --reload`, or spawn the agent again with a larger --budget"
        }
        ErrorCode::BudgetUnpriced => {
            "a USD budget can only count a model with a price: add [prices.\"MODEL\"] to the \
             config file and run `orchestration serve --reload`, or use a tokens budget"
        }
        ErrorCode::BypassRefused => {
            "spawn it over the Unix socket (the CLI's default), or use --approval ask with --allow PATTERN"
        }
        ErrorCode::UpstreamUnreachable => {
            "is the model server running? Check its address: --base-url, or the profile's base_url \
             (`orchestration config list`); the `local` profile expects Ollama on localhost:11434 \
             (`ollama serve`)"
        }
        ErrorCode::UpstreamStatus | ErrorCode::UpstreamProtocol | ErrorCode::UpstreamError => {
            "that is the model server's answer: check the model name (`orchestration models` with \
             the agent's --profile, or its --base-url and --api-key-env, lists what its endpoint \
             offers), the key and the account"
        }
        ErrorCode::UpstreamTimeout => {
            "the model server went silent for longer than providers.idle_timeout \
             (`orchestration config set providers.idle_timeout 5m` allows more)"
        }
        _ => return None,
    };
    Some(hint)
}

/// What a client command needs: where the daemon is and how to print.
pub struct Ctx {
    pub client: Client,
    pub json: bool,
    pub config_file: PathBuf,
}

/// Runs the CLI and returns the process exit status.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(status())
}

fn status() -> u8 {
    complete::handle_request();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    output::set_raw(cli.raw);
    let no_autostart = cli.no_autostart;
    match run(cli) {
        Ok(()) | Err(CliError::Closed) => exit::OK,
        Err(CliError::Reported(error)) => error.exit_code(),
        Err(error) => {
            output::error(&error.to_string(), error.hint(no_autostart).as_deref());
            error.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let paths = match Paths::resolve(cli.socket.clone()) {
        Ok(paths) => paths,
        Err(error) => return run_unplaced(cli, error),
    };
    let command = match cli.command {
        Command::Serve(args) => return serve::run(args, paths, cli.json),
        Command::Completions(args) => return completions(args.shell),
        Command::Service(args) => return service::run(args, &paths, cli.json),
        Command::Config(args) => {
            let pid_file = Some(paths.pid_file.as_path());
            return config::run(args, &paths.config_file, pid_file, cli.json);
        }
        // Edits the config file; reloads a daemon only if one runs.
        Command::Tools(tools::ToolsArgs {
            action: tools::ToolsAction::Import { file, force },
        }) => return tools::import(&paths, &file, force, cli.json),
        // A long-lived client: it starts the daemon on the first call that
        // needs it, not before, and builds its own client per call.
        Command::Mcp(args) => return mcp::run(args, paths, cli.no_autostart),
        command => command,
    };
    // Watching an idle daemon is no reason to start one.
    let watch = matches!(command, Command::Watch(_));
    if !cli.no_autostart && !watch {
        autostart::ensure_running(&paths)?;
    }
    let ctx = Ctx {
        client: Client::new(&paths)?,
        json: cli.json,
        config_file: paths.config_file.clone(),
    };
    block_on(async {
        match command {
            // Handled above, before any client or runtime is built.
            Command::Serve(_)
            | Command::Completions(_)
            | Command::Service(_)
            | Command::Config(_)
            | Command::Mcp(_) => Ok(()),
            Command::Spawn(args) => spawn::run(&ctx, args).await,
            Command::List(args) => list::run(&ctx, args).await,
            Command::Message(args) => message::run(&ctx, args).await,
            Command::History(args) => history::run(&ctx, args).await,
            Command::Task(args) => task::run(&ctx, args).await,
            Command::Shutdown(args) => shutdown::run(&ctx, args).await,
            Command::Models(args) => models::run(&ctx, args).await,
            Command::Search(args) => search::run(&ctx, args).await,
            Command::Prune(args) => prune::run(&ctx, args).await,
            Command::Usage(args) => usage::run(&ctx, args).await,
            Command::Watch(args) => watch::run(&ctx, args).await,
            Command::Approvals(args) => approvals::list(&ctx, args).await,
            Command::Approve(args) => approvals::approve(&ctx, args).await,
            Command::Deny(args) => approvals::deny(&ctx, args).await,
            Command::Ui(args) => ui::run(&ctx, args, &paths).await,
            Command::Tools(args) => match args.action {
                tools::ToolsAction::List { start } => tools::list(&ctx, start).await,
                // Handled above: it needs no daemon.
                tools::ToolsAction::Import { .. } => Ok(()),
            },
        }
    })?
}

/// Without the runtime or state dir (no HOME, say), the commands that need
/// neither still work; the rest fail naming everything that is missing.
fn run_unplaced(cli: Cli, error: PathError) -> Result<(), CliError> {
    match cli.command {
        Command::Completions(args) => completions(args.shell),
        Command::Config(args) => {
            let file = crate::paths::config_file_alone().map_err(|_| error)?;
            config::run(args, &file, None, cli.json)
        }
        _ => Err(error.into()),
    }
}

fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "orchestration", &mut script);
    output::print(&String::from_utf8_lossy(&script))
}

/// Runs a client future on a single-threaded runtime: a CLI call needs no more.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}

/// Reads a prompt argument: `-` means standard input, and so does no
/// prompt when standard input is a pipe or a file (`echo hi | … message a`).
/// An empty prompt is refused however it came.
fn read_prompt(words: &[String]) -> Result<String, CliError> {
    use std::io::IsTerminal;
    let from_stdin = match words {
        [] if std::io::stdin().is_terminal() => {
            return Err(CliError::Usage("a prompt is required".into()).with_hint(
                "give it as an argument (`orchestration message NAME \"hello\"`), or pipe it in \
                 (`echo hello | orchestration message NAME`, or `-` to read standard input)",
            ));
        }
        [] => true,
        [dash] => dash == "-",
        _ => false,
    };
    if from_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
            CliError::Failed(format!("cannot read the prompt from standard input: {e}"))
        })?;
        let text = text.trim_end_matches(['\n', '\r']).to_owned();
        if text.trim().is_empty() {
            return Err(CliError::Usage(
                "the prompt read from standard input is empty".into(),
            ));
        }
        return Ok(text);
    }
    let text = words.join(" ");
    if text.trim().is_empty() {
        return Err(CliError::Usage("the prompt is empty".into()));
    }
    Ok(text)
}
