//! The generated documentation in `man/` and `contrib/completions/` must match
//! the clap definitions it is generated from. This test regenerates it in
//! memory and fails on any difference; run
//! `ORCHESTRATION_UPDATE_DOCS=1 cargo test --test it docs::` to rewrite the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// FILES, as SPEC §1 puts them.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_RUNTIME_DIR/orchestration/",
        "The runtime dir R (mode 0700); without XDG_RUNTIME_DIR, /run/user/$UID/orchestration when that dir is yours and 0700, else ~/.orchestration; $ORCHESTRATION_RUNTIME_DIR overrides.",
    ),
    (
        "R/daemon.sock",
        "The control socket (mode 0600); --socket or $ORCHESTRATION_SOCKET override.",
    ),
    (
        "R/daemon.pid",
        "The daemon's PID, held under an exclusive lock while it lives.",
    ),
    (
        "R/autostart.lock",
        "Locked by a CLI call that is starting the daemon, so concurrent first calls start one.",
    ),
    (
        "R/http.token",
        "The TCP bearer token (mode 0600), 256 random bits, new on every start.",
    ),
    (
        "R/http.address",
        "The address the daemon's TCP listener actually serves (mode 0600), or off: and why; the client sends the token there and nowhere else.",
    ),
    (
        "R/ui-open.html",
        "The web page's last login link (mode 0600), written by orchestration ui for the browser to open; the link works once, within five minutes.",
    ),
    (
        "$XDG_STATE_HOME/orchestration/",
        "The state dir S (mode 0700); ~/.local/state/orchestration by default; $ORCHESTRATION_STATE_DIR or $STATE_DIRECTORY override.",
    ),
    (
        "S/store.db",
        "The durable store (SQLite, WAL, mode 0600): agents, their configs and keys, and every conversation. S/store.lock is held by the daemon that writes it.",
    ),
    (
        "S/daemon.log",
        "The daemon's output when it runs in the background (serve --daemon, or started by a CLI call without systemd).",
    ),
    (
        "$XDG_CONFIG_HOME/orchestration/config.toml",
        "The config file (~/.config/orchestration/config.toml by default; $ORCHESTRATION_CONFIG overrides): [daemon], [providers], [limits], [history], [profiles.NAME].",
    ),
];

const CLIENT_ENV: &[(&str, &str)] = &[
    (
        "ORCHESTRATION_SOCKET",
        "The daemon's control socket (as --socket).",
    ),
    (
        "ORCHESTRATION_RUNTIME_DIR, ORCHESTRATION_STATE_DIR, ORCHESTRATION_CONFIG",
        "Override the runtime dir, state dir and config file.",
    ),
    (
        "ORCHESTRATION_DAEMON_UID",
        "The uid whose daemon the client may talk to on the Unix socket (default: your own; for root reaching a user's daemon).",
    ),
    ("ORCHESTRATION_NO_AUTOSTART", "As --no-autostart."),
];

const KEY_ENV: &[(&str, &str)] = &[(
    "OPENAI_API_KEY, ANTHROPIC_API_KEY, OPENROUTER_API_KEY, GEMINI_API_KEY",
    "API keys, read by the CLI from its own environment and sent in the spawn request body (never on a command line); the daemon falls back to its own environment. Each key goes only to its own provider or profile.",
)];

const SERVE_ENV: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "The daemon's log level and filter (default info).",
    ),
    ("ORCHESTRATION_ECHO_DELAY", "As --echo-delay."),
    (
        "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES",
        "Socket activation (sd_listen_fds(3)): the daemon serves exactly the sockets passed, the Unix one and the TCP one told apart by address family, binds nothing itself and never removes a passed socket.",
    ),
    (
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Readiness (sd_notify(3)): READY=1 once serving, STATUS= with the live agent count, STOPPING=1, and WATCHDOG=1 at half the watchdog interval. With NOTIFY_SOCKET or socket activation, --daemon does not fork.",
    ),
    (
        "JOURNAL_STREAM",
        "When it names the daemon's stderr, logs go to the journal natively with SYSLOG_IDENTIFIER=orchestration and fields REQUEST_ID, AGENT, METHOD, PATH, STATUS, DURATION_MS.",
    ),
];

const SERVICE_FILES: &[(&str, &str)] = &[
    (
        "$XDG_CONFIG_HOME/systemd/user/orchestration.socket, orchestration-tcp.socket, orchestration.service",
        "The systemd user units written by service install (~/.config/systemd/user by default).",
    ),
    (
        "~/Library/LaunchAgents/org.orchestration.daemon.plist",
        "The launchd agent written by service install on macOS.",
    ),
    (
        "~/.config/orchestration/environment",
        "KEY=value lines (API keys) the systemd service reads; keep it mode 0600.",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    ("1", "The operation failed."),
    ("2", "Usage error, including an invalid agent name."),
    (
        "3",
        "The daemon is unreachable (for serve --status: not running).",
    ),
    ("4", "No such agent."),
];

/// EXAMPLES, per page ("" is orchestration(1)): a command line and what it does.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "",
        &[
            (
                "orchestration spawn scratch --provider echo",
                "Start an agent that needs no key and no network: the built-in echo provider replies with your prompt. The first command starts the daemon if none runs.",
            ),
            (
                "orchestration message scratch \"hello there\"",
                "Talk to it, from any terminal; the reply streams as it arrives.",
            ),
            (
                "orchestration history scratch",
                "Read the conversation so far.",
            ),
            (
                "orchestration spawn helper --instructions \"Answer in one sentence.\"",
                "An agent on the default provider, OpenAI; the CLI reads the key from OPENAI_API_KEY in its own environment.",
            ),
            (
                "orchestration list",
                "The live agents, with state and token usage.",
            ),
            (
                "orchestration serve --stop",
                "Stop the daemon; its agents come back with the next start.",
            ),
        ],
    ),
    (
        "serve",
        &[
            (
                "orchestration serve",
                "Run the daemon in the foreground, logging to the terminal; Ctrl-C stops it gracefully.",
            ),
            (
                "orchestration serve --daemon --idle-timeout 30m",
                "Start it in the background (returns once it serves); it exits after 30 minutes without a client.",
            ),
            (
                "orchestration serve --no-tcp --echo-delay 0",
                "Serve on the Unix socket only, with an echo provider that does not pause between words.",
            ),
            (
                "orchestration serve --status",
                "Say whether a daemon runs: its pid, version, uptime and agent count (exit 3 if none).",
            ),
            (
                "orchestration serve --stop",
                "Stop the running daemon and wait until it has exited; agents are kept.",
            ),
            (
                "orchestration serve --reload",
                "Make the running daemon re-read config.toml and the environment file; exit 1 with the reason if nothing changed.",
            ),
        ],
    ),
    (
        "spawn",
        &[
            (
                "orchestration spawn scratch --provider echo",
                "An offline agent that replies with your prompt, word by word.",
            ),
            (
                "orchestration spawn helper --model gpt-4o-mini --instructions \"Answer in one sentence.\"",
                "An OpenAI agent with a system prompt; the key comes from OPENAI_API_KEY in this shell.",
            ),
            (
                "orchestration spawn claude --provider anthropic --model claude-haiku-4-5",
                "An Anthropic agent (ANTHROPIC_API_KEY).",
            ),
            (
                "orchestration spawn llama --profile local --model llama3.2",
                "A model served on this machine by Ollama (or llama.cpp, vLLM) at localhost:11434; no key.",
            ),
            (
                "orchestration spawn work --base-url https://llm.example.com/v1 --api-key-env WORK_LLM_KEY",
                "Another OpenAI-compatible endpoint, sending the key held in WORK_LLM_KEY.",
            ),
        ],
    ),
    (
        "list",
        &[
            (
                "orchestration list",
                "The live agents: name, provider, model, state, messages and tokens in/out.",
            ),
            (
                "orchestration list --state failed",
                "Only the agents whose last reply failed upstream.",
            ),
            (
                "orchestration list --all --provider echo",
                "Echo agents, including the ones that were shut down.",
            ),
            ("orchestration --json list", "The same as the API's JSON."),
        ],
    ),
    (
        "message",
        &[
            (
                "orchestration message scratch \"hello there\"",
                "Send a message; the reply streams to the terminal.",
            ),
            (
                "orchestration message scratch what is a Unix socket",
                "Several words are joined into one message.",
            ),
            (
                "git diff | orchestration message reviewer -",
                "Read the message from standard input.",
            ),
            (
                "orchestration message scratch -- \"-v or --verbose?\"",
                "A message that starts with a dash.",
            ),
            (
                "orchestration --json message scratch hello",
                "Wait for the whole reply and print it as the API's JSON.",
            ),
            (
                "orchestration message gpt,claude,llama \"Review this plan: …\"",
                "Ask several agents the same thing at once; on a terminal their replies stream side by side, labelled with their names.",
            ),
        ],
    ),
    (
        "history",
        &[
            (
                "orchestration history scratch",
                "The conversation, oldest first.",
            ),
            (
                "orchestration history scratch --limit 4",
                "Only the last four messages.",
            ),
            (
                "orchestration history scratch --all",
                "Every conversation the name has had, across shutdowns and re-spawns.",
            ),
            (
                "orchestration history scratch --clear",
                "Delete them for good.",
            ),
            (
                "orchestration history --list",
                "Every conversation every name has had: its id, state, message count, first and last time, tokens.",
            ),
            (
                "orchestration history scratch --all --format markdown > scratch.md",
                "Every conversation of scratch as Markdown, a heading per conversation, to paste into an issue or a doc.",
            ),
        ],
    ),
    (
        "task",
        &[
            (
                "orchestration task once --provider echo \"hello there\"",
                "One prompt on a throwaway agent, removed afterwards.",
            ),
            (
                "git log -1 --format=%B | orchestration task summary --instructions \"Summarize in one line.\" -",
                "The prompt from standard input, on the default provider.",
            ),
        ],
    ),
    (
        "shutdown",
        &[
            (
                "orchestration shutdown scratch",
                "Shut one agent down; its history stays readable.",
            ),
            (
                "orchestration shutdown --all",
                "Shut down every live agent.",
            ),
        ],
    ),
    (
        "models",
        &[
            (
                "orchestration models",
                "The models OpenAI offers (the default provider; OPENAI_API_KEY).",
            ),
            (
                "orchestration models --profile openrouter",
                "The models OpenRouter offers (OPENROUTER_API_KEY).",
            ),
            (
                "orchestration models --base-url http://localhost:8080/v1",
                "The models a local OpenAI-compatible server offers.",
            ),
        ],
    ),
    (
        "config",
        &[
            (
                "orchestration config list",
                "Every setting in effect, defaults included.",
            ),
            (
                "orchestration config set providers.idle_timeout 5m",
                "Wait up to five minutes for a slow model; comments in the file are kept.",
            ),
            (
                "orchestration config set profiles.work.base_url https://llm.example.com/v1",
                "Start a profile, used with --profile work.",
            ),
            (
                "orchestration config get providers.idle_timeout",
                "Print one value.",
            ),
            (
                "orchestration config unset providers.idle_timeout",
                "Back to the default.",
            ),
            ("orchestration config path", "Where the file is."),
        ],
    ),
    (
        "service",
        &[
            (
                "orchestration service install && systemctl --user enable --now orchestration.socket orchestration-tcp.socket",
                "Let systemd start the daemon on the first connection (install the binary first: the unit names its path).",
            ),
            (
                "orchestration service status",
                "Installed? Enabled? Running? For this binary?",
            ),
            (
                "journalctl --user -u orchestration.service -f",
                "Follow the daemon's log.",
            ),
            (
                "orchestration service uninstall",
                "Stop, disable and remove the units.",
            ),
        ],
    ),
    (
        "completions",
        &[
            (
                "echo 'source <(COMPLETE=bash orchestration)' >> ~/.bashrc",
                "Complete agent names (asked of the running daemon), profiles and providers as well as commands and options, in every new bash.",
            ),
            (
                "echo 'source <(COMPLETE=zsh orchestration)' >> ~/.zshrc",
                "The same for zsh.",
            ),
            (
                "echo 'COMPLETE=fish orchestration | source' > ~/.config/fish/completions/orchestration.fish",
                "The same for fish.",
            ),
            (
                "orchestration completions bash > ~/.local/share/bash-completion/completions/orchestration",
                "A static script instead: commands and options only (zsh: a _orchestration file in $fpath; fish: ~/.config/fish/completions/orchestration.fish).",
            ),
        ],
    ),
    (
        "approvals",
        &[
            (
                "orchestration approvals",
                "The tool calls waiting for a yes or no: id, agent, tool, what it would run, how long it has waited.",
            ),
            (
                "orchestration --json approvals --agent coder",
                "Only coder's, as the API's JSON (GET /approvals?agent=coder).",
            ),
        ],
    ),
    (
        "approve",
        &[(
            "orchestration approve 3f9c2a",
            "Let the tool call with id 3f9c2a run; the agent goes on with its turn.",
        )],
    ),
    (
        "deny",
        &[(
            "orchestration deny 3f9c2a --reason \"not on main\"",
            "Refuse it; the agent is told it was denied, and why.",
        )],
    ),
    (
        "watch",
        &[
            (
                "orchestration watch",
                "Follow every agent live, one line per event; replies appear as they stream. Ctrl-C stops watching.",
            ),
            (
                "orchestration watch helper scratch",
                "Only the events of the agents named helper and scratch.",
            ),
            (
                "orchestration --json watch | jq -c 'select(.type == \"message\")'",
                "The raw event lines (GET /events), here only the stored messages.",
            ),
        ],
    ),
    (
        "ui",
        &[
            (
                "orchestration ui",
                "Open the web page in your browser, logged in: the live agents, conversations, search and fan-out.",
            ),
            (
                "orchestration ui --print-url",
                "Print a one-time login link instead, for a browser you start yourself; it works once, within five minutes.",
            ),
        ],
    ),
    (
        "usage",
        &[
            (
                "orchestration usage --by model --since 7d",
                "What the last week cost, per model the replies came from, most expensive first.",
            ),
            (
                "orchestration usage --by day --agent ops",
                "The agent named ops, day by day (UTC), over every conversation it has had.",
            ),
            (
                "orchestration --json usage --by profile",
                "The same sums as GET /usage answers them, per profile (or provider).",
            ),
        ],
    ),
    (
        "search",
        &[
            (
                "orchestration search timeout",
                "Every message, in every conversation live or ended, that says timeout; best matches first.",
            ),
            (
                "orchestration search '\"connection reset\"' --agent ops",
                "An exact phrase, only in the conversations of the agent named ops.",
            ),
            (
                "orchestration search 'deploy*' --since 7d --limit 5",
                "Words starting with deploy, from the last seven days, at most five results.",
            ),
        ],
    ),
    (
        "mcp",
        &[
            (
                "claude mcp add orchestration -- orchestration mcp",
                "Register the server with an assistant's command line (other assistants take the same command).",
            ),
            (
                "orchestration mcp --no-autostart",
                "Serve MCP on standard input and output, without starting a daemon when none runs.",
            ),
        ],
    ),
    (
        "tools",
        &[
            (
                "orchestration tools list",
                "Each configured MCP server: stdio or http, stopped, running or failed, its restarts and last error, and the tools it listed with their policies.",
            ),
            (
                "orchestration tools list --start",
                "Start the servers not running first, to see their tools before any agent uses them.",
            ),
            (
                "orchestration tools import ~/.config/Claude/claude_desktop_config.json",
                "Add the MCP servers Claude Desktop has to the config file, and reload a running daemon.",
            ),
        ],
    ),
    (
        "prune",
        &[
            (
                "orchestration prune --older-than 90d --dry-run",
                "List the ended conversations whose last message is more than 90 days old, deleting nothing.",
            ),
            (
                "orchestration prune --older-than 90d",
                "Delete them, and give their space back to the file system. Live and suspended agents' conversations stay.",
            ),
        ],
    ),
];

/// Every generated file, by path relative to the repository root.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    // `help` is a subcommand of the CLI but has no page of its own.
    let mut command = orchestration::cli::command()
        .disable_help_subcommand(true)
        .mut_subcommands(|sub| sub.disable_help_subcommand(true));
    // Propagates the global options (--socket, --json…) to every subcommand's page.
    command.build();
    files.insert(
        PathBuf::from("man/orchestration.1"),
        man_page(
            command.clone(),
            examples(""),
            &[
                ("FILES", FILES),
                ("ENVIRONMENT", &[CLIENT_ENV, KEY_ENV, SERVE_ENV].concat()),
                ("EXIT STATUS", EXIT_STATUS),
            ],
        ),
    );
    for sub in command.get_subcommands() {
        let name = sub.get_name();
        let env: Vec<(&str, &str)> = match name {
            "serve" => [CLIENT_ENV, SERVE_ENV, KEY_ENV].concat(),
            "spawn" | "task" | "models" | "mcp" => [CLIENT_ENV, KEY_ENV].concat(),
            "completions" => Vec::new(),
            _ => CLIENT_ENV.to_vec(),
        };
        let mut extra: Vec<(&str, &[(&str, &str)])> = Vec::new();
        if name == "serve" {
            extra.push(("FILES", FILES));
        }
        if name == "service" {
            extra.push(("FILES", SERVICE_FILES));
        }
        if !env.is_empty() {
            extra.push(("ENVIRONMENT", &env));
        }
        extra.push(("EXIT STATUS", EXIT_STATUS));
        let page = sub
            .clone()
            .display_name(format!("orchestration-{name}"))
            .bin_name(format!("orchestration {name}"))
            .version(env!("CARGO_PKG_VERSION"));
        files.insert(
            PathBuf::from(format!("man/orchestration-{name}.1")),
            man_page(page, examples(name), &extra),
        );
    }
    for (shell, file) in [
        (Shell::Bash, "orchestration.bash"),
        (Shell::Zsh, "_orchestration"),
        (Shell::Fish, "orchestration.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(
            shell,
            &mut orchestration::cli::command(),
            "orchestration",
            &mut script,
        );
        files.insert(PathBuf::from(format!("contrib/completions/{file}")), script);
    }
    files
}

fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    EXAMPLES
        .iter()
        .find(|(name, _)| *name == page)
        .map(|(_, examples)| *examples)
        .unwrap_or_default()
}

fn man_page(
    command: clap::Command,
    examples: &[(&str, &str)],
    extra: &[(&str, &[(&str, &str)])],
) -> Vec<u8> {
    let has_subcommands = command.has_subcommands();
    let synopsis = synopsis(&command);
    let man = clap_mangen::Man::new(command)
        .manual("orchestration manual")
        .source(format!("orchestration {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    out.extend_from_slice(synopsis.as_bytes());
    man.render_description_section(&mut out).expect("render");
    man.render_options_section(&mut out).expect("render");
    if has_subcommands {
        man.render_subcommands_section(&mut out).expect("render");
    }
    if !examples.is_empty() {
        // Left-adjusted, so a long command line is not stretched to the margin.
        out.extend_from_slice(b".SH EXAMPLES\n.ad l\n");
        for (example, text) in examples {
            out.extend_from_slice(
                format!(".TP\n\\fB{}\\fR\n{}\n", roff(example), roff(text)).as_bytes(),
            );
        }
        out.extend_from_slice(b".ad\n");
    }
    for (title, entries) in extra {
        out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
        for (term, text) in *entries {
            out.extend_from_slice(
                format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)).as_bytes(),
            );
        }
    }
    man.render_version_section(&mut out).expect("render");
    ascii_only(&String::from_utf8(out).expect("clap_mangen writes UTF-8"))
}

/// SYNOPSIS with each option's value placeholder (`[--name NAME]`), which
/// clap_mangen leaves out.
fn synopsis(command: &clap::Command) -> String {
    let name = command.get_bin_name().unwrap_or(command.get_name());
    let mut words = vec![format!("\\fB{}\\fR", roff(name))];
    let mut options: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !arg.is_positional())
        .collect();
    // The command's own options first, then the global ones, then help and version.
    options.sort_by_key(|arg| match arg.get_action() {
        clap::ArgAction::Help | clap::ArgAction::HelpShort | clap::ArgAction::HelpLong => 3,
        clap::ArgAction::Version => 4,
        _ if arg.is_global_set() => 2,
        _ => 1,
    });
    for arg in options {
        let mut flags = Vec::new();
        if let Some(short) = arg.get_short() {
            flags.push(format!("\\fB\\-{short}\\fR"));
        }
        if let Some(long) = arg.get_long() {
            flags.push(format!("\\fB{}\\fR", roff(&format!("--{long}"))));
        }
        let mut word = flags.join("|");
        if arg.get_num_args().is_some_and(|n| n.takes_values()) {
            word.push_str(&format!(" \\fI{}\\fR", roff(&value_name(arg))));
        }
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    for arg in command.get_positionals().filter(|arg| !arg.is_hide_set()) {
        let mut word = format!("\\fI{}\\fR", roff(&value_name(arg)));
        if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            word.push_str("...");
        }
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    if command.has_subcommands() {
        words.push("\\fICOMMAND\\fR".to_owned());
    }
    format!(".SH SYNOPSIS\n.ad l\n{}\n.ad\n", words.join(" "))
}

fn value_name(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    }
}

/// The page with every non-ASCII character written as a groff escape
/// (`\[u2013]`), so `groff -ww` without preconv reads it cleanly.
fn ascii_only(page: &str) -> Vec<u8> {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out.into_bytes()
}

/// Escapes text for roff: backslashes, and a leading `.` or `'`.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.') | Some('\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
}

#[test]
fn generated_docs_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var("ORCHESTRATION_UPDATE_DOCS").as_deref() == Ok("1");
    let generated = generate();
    let mut stale = Vec::new();
    for (path, content) in &generated {
        let full = root.join(path);
        if std::fs::read(&full).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, content).expect("write");
        } else {
            stale.push(path.display().to_string());
        }
    }
    // A page for a subcommand that no longer exists is stale too.
    for dir in ["man", "contrib/completions"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = Path::new(dir).join(entry.file_name());
            if !generated.contains_key(&path) {
                stale.push(format!("{} (no longer generated)", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs: {stale:?}\nregenerate with: ORCHESTRATION_UPDATE_DOCS=1 cargo test --test it docs::"
    );
}

/// Whether `tool` runs. When it does not, the test says SKIPPED on stderr,
/// or fails if `$ORCHESTRATION_REQUIRE_MAN=1` (set by .ci/run, which installs
/// man-db and groff-base).
fn available(tool: &str) -> bool {
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("ORCHESTRATION_REQUIRE_MAN").as_deref() != Ok("1"),
        "{tool} is required (ORCHESTRATION_REQUIRE_MAN=1) but not installed (Debian: apt-get install man-db groff-base)"
    );
    eprintln!("SKIPPED: {tool} is not installed, so the man pages were not checked with it");
    false
}

#[test]
fn every_page_renders_with_man() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !available("man") {
        return;
    }
    for path in generate().keys().filter(|p| p.starts_with("man")) {
        let out = std::process::Command::new("man")
            .arg("-l")
            .arg(root.join(path))
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .expect("run man");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", path.display());
        assert!(!stderr.contains("warning"), "{}: {stderr}", path.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT STATUS"), "{}", path.display());
    }
}

/// `groff -ww` reads the pages without preconv and warns about everything it
/// dislikes (raw UTF-8, unknown escapes, bad requests): none is allowed.
#[test]
fn every_page_is_clean_under_groff_ww() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !available("groff") {
        return;
    }
    for path in generate().keys().filter(|p| p.starts_with("man")) {
        let out = std::process::Command::new("groff")
            .args(["-ww", "-man", "-Tutf8", "-z"])
            .arg(root.join(path))
            .output()
            .expect("run groff");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
    }
}

#[test]
fn every_page_has_examples_and_they_parse() {
    let command = orchestration::cli::command();
    let pages = std::iter::once("")
        .chain(command.get_subcommands().map(|s| s.get_name()))
        .filter(|name| *name != "help");
    for page in pages {
        assert!(
            !examples(page).is_empty(),
            "no EXAMPLES for orchestration {page}: add some to EXAMPLES in tests/it/docs.rs"
        );
    }
    // Every `orchestration …` in an example is a valid command line.
    for (page, examples) in EXAMPLES {
        for (example, _) in *examples {
            for part in example.split(['|', '>', '&']) {
                let words = shell_words(part);
                if words.first().map(String::as_str) != Some("orchestration") {
                    continue;
                }
                if let Err(error) = command.clone().try_get_matches_from(&words) {
                    panic!("example for {page:?} does not parse: {example}\n{error}");
                }
            }
        }
    }
}

/// Splits a simple shell command line on blanks, honouring double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_default();
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}
