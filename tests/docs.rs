//! The generated documentation in `man/` and `contrib/completions/` must match
//! the clap definitions it is generated from. This test regenerates it in
//! memory and fails on any difference; run
//! `ORCHESTRATION_UPDATE_DOCS=1 cargo test --test docs` to rewrite the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// FILES, as SPEC §1 puts them.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_RUNTIME_DIR/orchestration/",
        "The runtime dir R (mode 0700); ~/.orchestration without XDG_RUNTIME_DIR; $ORCHESTRATION_RUNTIME_DIR overrides.",
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
        "ORCHESTRATION_URL",
        "The TCP address the client falls back to when the socket file is missing (default http://127.0.0.1:7862).",
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
        "$XDG_CONFIG_HOME/systemd/user/orchestration.socket, orchestration.service",
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

/// Every generated file, by path relative to the repository root.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut command = orchestration::cli::command();
    // Propagates the global options (--socket, --json…) to every subcommand's page.
    command.build();
    files.insert(
        PathBuf::from("man/orchestration.1"),
        man_page(
            command.clone(),
            &[
                ("FILES", FILES),
                ("ENVIRONMENT", &[CLIENT_ENV, KEY_ENV, SERVE_ENV].concat()),
                ("EXIT STATUS", EXIT_STATUS),
            ],
        ),
    );
    for sub in command.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
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
            man_page(page, &extra),
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

fn man_page(command: clap::Command, extra: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
    let has_subcommands = command.get_subcommands().any(|s| s.get_name() != "help");
    let man = clap_mangen::Man::new(command)
        .manual("orchestration manual")
        .source(format!("orchestration {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    man.render_synopsis_section(&mut out).expect("render");
    man.render_description_section(&mut out).expect("render");
    man.render_options_section(&mut out).expect("render");
    if has_subcommands {
        man.render_subcommands_section(&mut out).expect("render");
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
    out
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
        "stale generated docs: {stale:?}\nregenerate with: ORCHESTRATION_UPDATE_DOCS=1 cargo test --test docs"
    );
}

#[test]
fn every_page_renders_with_man() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: man is not installed");
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
