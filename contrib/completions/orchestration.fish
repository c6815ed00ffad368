# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_orchestration_global_optspecs
    string join \n socket= json no-autostart h/help V/version
end

function __fish_orchestration_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_orchestration_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_orchestration_using_subcommand
    set -l cmd (__fish_orchestration_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c orchestration -n "__fish_orchestration_needs_command" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_needs_command" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_needs_command" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_needs_command" -s V -l version -d 'Print version'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "serve" -d 'Run the daemon in the foreground, or ask about or stop a running one'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "spawn" -d 'Start a new named agent'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "list" -d 'List the live agents'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "message" -d 'Send an agent a message and print its reply as it streams in'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "history" -d 'Show an agent\'s conversation, oldest first (also after it was shut down)'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "task" -d 'Run one prompt on a throwaway agent, print the reply, and remove the agent'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "shutdown" -d 'Shut down one agent, or all of them. Their histories stay readable'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "models" -d 'List the models a provider or profile offers (asks the model server through the daemon)'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "search" -d 'Search every conversation ever held, live or ended, for words or phrases'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "prune" -d 'Delete ended conversations older than a duration (live agents\' are never touched)'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "watch" -d 'Follow what the agents do, live: spawns, messages, replies as they stream, usage'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "config" -d 'Read or edit the config file by dotted key (get, set, unset, list, path)'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "service" -d 'Install, remove or inspect the systemd user units (launchd agent on macOS) for this binary'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "mcp" -d 'Serve the Model Context Protocol on standard input and output, for assistants and editors'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output'
complete -c orchestration -n "__fish_orchestration_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l port -d 'Listen on 127.0.0.1:N instead of the default TCP port 7862' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l listen -d 'Listen on this loopback address (e.g. 127.0.0.1:9000 or [::1]:7862)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l drain-timeout -d 'How long in-flight requests may run once the daemon is told to stop; then they are cancelled' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l idle-timeout -d 'Exit cleanly after this long with no connection, request or open stream (e.g. 10m); 0 means never. Default: the config\'s daemon.idle_timeout, else never. Live agents do not keep the daemon up: they are stored and come back on the next start' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l echo-delay -d 'Pause between the echo provider\'s words' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l no-tcp -d 'Serve on the Unix socket only'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l allow-remote -d 'Allow --listen on a non-loopback address. The token is still required, but anyone who can reach the address may try; prefer SSH forwarding of the Unix socket'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l daemon -d 'Fork into the background: the command returns once the daemon serves (exit 0) or with the daemon\'s startup error (exit 1). Its output goes to S/daemon.log. Ignored under systemd or launchd, which track the process they started'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l status -d 'Say whether a daemon is running (exit 0) or not (exit 3), and print its health, when its config was loaded, and whether the last reload failed'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l reload -d 'Make the running daemon re-read config.toml and the environment file (keys) without a restart, and wait for the outcome: exit 0, or exit 1 with why nothing changed. Same as SIGHUP or `systemctl --user reload orchestration`'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l stop -d 'Stop the running daemon gracefully and wait until it has exited'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l name -d 'The agent\'s name (same as the positional NAME)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l provider -d 'The provider that answers: `openai` (the default), `anthropic`, or `echo` (offline, built in)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l profile -d 'A provider profile: built in `openrouter`, `local`, `gemini`, or `[profiles.NAME]` from the config file' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l base-url -d 'The provider\'s API base URL' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l api-key-env -d 'Send the API key held in this environment variable (of the CLI\'s environment). Without it the key of the provider\'s or profile\'s own variable is sent, and only to its own base URL: with --base-url, no key is sent unless this names one' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l model -d 'The model to ask for' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l instructions -d 'The agent\'s instructions, sent as its system prompt' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand spawn" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l state -d 'Only agents in this state: idle, processing, failed, suspended or terminated' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l provider -d 'Only agents of this provider' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l all -d 'Also agents that were shut down (the last one of each name), as `terminated`'
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand list" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -l no-stream -d 'Wait for the whole reply instead of streaming it'
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -s q -l quiet -d 'On a terminal, no line with the reply\'s time and tokens after it'
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand message" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l format -d 'How to print: text (the default), markdown, json (as --json) or jsonl' -r -f -a "text\t'One line per message: time, sender, text'
markdown\t'A heading per conversation and a block per message, to paste into an issue or a doc'
json\t'The API\'s `{"messages": […]}`'
jsonl\t'One message object per line'"
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l limit -d 'Only the last N messages' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l list -d 'List every conversation every name has had (or NAME\'s): id, state, messages, first and last time, tokens'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l all -d 'Include the conversations of earlier agents that had this name'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l clear -d 'Delete every message this name has had, for good (a live agent keeps running, with no context). Asks first on a terminal; elsewhere --yes is required'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -s y -l yes -d 'With --clear: do not ask for confirmation'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l provider -d 'The provider that answers: `openai` (the default), `anthropic`, or `echo` (offline, built in)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l profile -d 'A provider profile: built in `openrouter`, `local`, `gemini`, or `[profiles.NAME]` from the config file' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l base-url -d 'The provider\'s API base URL' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l api-key-env -d 'Send the API key held in this environment variable (of the CLI\'s environment). Without it the key of the provider\'s or profile\'s own variable is sent, and only to its own base URL: with --base-url, no key is sent unless this names one' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l model -d 'The model to ask for' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l instructions -d 'The agent\'s instructions, sent as its system prompt' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l no-stream -d 'Wait for the whole reply instead of streaming it'
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -s q -l quiet -d 'On a terminal, no line with the reply\'s time and tokens after it'
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand task" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand shutdown" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand shutdown" -l all -d 'Shut down every live agent'
complete -c orchestration -n "__fish_orchestration_using_subcommand shutdown" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand shutdown" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand shutdown" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l provider -d 'The provider that answers: `openai` (the default), `anthropic`, or `echo` (offline, built in)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l profile -d 'A provider profile: built in `openrouter`, `local`, `gemini`, or `[profiles.NAME]` from the config file' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l base-url -d 'The provider\'s API base URL' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l api-key-env -d 'Send the API key held in this environment variable (of the CLI\'s environment). Without it the key of the provider\'s or profile\'s own variable is sent, and only to its own base URL: with --base-url, no key is sent unless this names one' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand models" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l agent -d 'Only this agent\'s conversations (every one the name has had)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l since -d 'Only messages newer than this: a duration back from now (7d, 12h, 30m) or an RFC 3339 time' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l limit -d 'At most this many results (default 20)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand search" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -l older-than -d 'Delete ended conversations whose last message is older than this (e.g. 30d, 12h)' -r
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -l dry-run -d 'Only say what would be deleted'
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand prune" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand watch" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand watch" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand watch" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "get" -d 'Print one setting\'s value (defaults included); exit 1 if it is unset'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "set" -d 'Set a key in the config file, keeping its comments; refused if the result would not load'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "unset" -d 'Remove a key from the config file, so its default applies'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "list" -d 'Print every setting in effect, defaults included'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "path" -d 'Print where the config file is (it need not exist)'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and not __fish_seen_subcommand_from get set unset list path help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from get" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from get" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from get" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from set" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from set" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from set" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from unset" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from unset" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from unset" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from unset" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from list" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from list" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from list" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from path" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from path" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from path" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from path" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "get" -d 'Print one setting\'s value (defaults included); exit 1 if it is unset'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set a key in the config file, keeping its comments; refused if the result would not load'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "unset" -d 'Remove a key from the config file, so its default applies'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print every setting in effect, defaults included'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "path" -d 'Print where the config file is (it need not exist)'
complete -c orchestration -n "__fish_orchestration_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "install" -d 'Write the units (or plist) for this binary and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "uninstall" -d 'Stop and disable the units, remove them, and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "status" -d 'Say whether the units are installed, for which binary, and whether they run'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from install" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from install" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from install" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from status" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from status" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from status" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Write the units (or plist) for this binary and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop and disable the units, remove them, and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "status" -d 'Say whether the units are installed, for which binary, and whether they run'
complete -c orchestration -n "__fish_orchestration_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand mcp" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand mcp" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand mcp" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand mcp" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand completions" -l socket -d 'The daemon\'s control socket [default: $XDG_RUNTIME_DIR/orchestration/daemon.sock]' -r -F
complete -c orchestration -n "__fish_orchestration_using_subcommand completions" -l json -d 'Print the API\'s JSON instead of human-readable output'
complete -c orchestration -n "__fish_orchestration_using_subcommand completions" -l no-autostart -d 'Never start a daemon on demand. Without this, a command that finds no daemon starts one (`systemctl --user start orchestration.socket` if that unit is installed, else `orchestration serve --daemon`) and waits until it is ready'
complete -c orchestration -n "__fish_orchestration_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "serve" -d 'Run the daemon in the foreground, or ask about or stop a running one'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "spawn" -d 'Start a new named agent'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "list" -d 'List the live agents'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "message" -d 'Send an agent a message and print its reply as it streams in'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "history" -d 'Show an agent\'s conversation, oldest first (also after it was shut down)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "task" -d 'Run one prompt on a throwaway agent, print the reply, and remove the agent'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "shutdown" -d 'Shut down one agent, or all of them. Their histories stay readable'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "models" -d 'List the models a provider or profile offers (asks the model server through the daemon)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "search" -d 'Search every conversation ever held, live or ended, for words or phrases'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "prune" -d 'Delete ended conversations older than a duration (live agents\' are never touched)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "watch" -d 'Follow what the agents do, live: spawns, messages, replies as they stream, usage'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "config" -d 'Read or edit the config file by dotted key (get, set, unset, list, path)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "service" -d 'Install, remove or inspect the systemd user units (launchd agent on macOS) for this binary'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "mcp" -d 'Serve the Model Context Protocol on standard input and output, for assistants and editors'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and not __fish_seen_subcommand_from serve spawn list message history task shutdown models search prune watch config service mcp completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "get" -d 'Print one setting\'s value (defaults included); exit 1 if it is unset'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "set" -d 'Set a key in the config file, keeping its comments; refused if the result would not load'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "unset" -d 'Remove a key from the config file, so its default applies'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "list" -d 'Print every setting in effect, defaults included'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "path" -d 'Print where the config file is (it need not exist)'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Write the units (or plist) for this binary and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop and disable the units, remove them, and reload the service manager'
complete -c orchestration -n "__fish_orchestration_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "status" -d 'Say whether the units are installed, for which binary, and whether they run'
