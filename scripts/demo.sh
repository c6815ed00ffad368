#!/usr/bin/env bash
# Builds orchestration and, in a throwaway runtime/state dir, spawns an agent
# with the offline `echo` provider (which starts the daemon on demand), talks
# to it twice, reads its history, and stops the daemon. Touches nothing
# outside that dir.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where cargo puts what it builds: $CARGO_TARGET_DIR, build.target-dir from
# a .cargo/config.toml, or ./target. Cargo knows; guessing ./target failed
# with exit 127 whenever one of the others was set.
target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# The first release build takes a few minutes: say so, and let cargo show
# its progress rather than sit silent.
echo "Building orchestration (release; the first build takes a few minutes)..." >&2
cargo build --release
bin="$(target_dir)/release/orchestration"

demo_dir=$(mktemp -d)
export ORCHESTRATION_RUNTIME_DIR="$demo_dir/run"
export ORCHESTRATION_STATE_DIR="$demo_dir/state"
export ORCHESTRATION_CONFIG="$demo_dir/config.toml"
# Slow enough to watch the reply stream; Unix socket only, so the demo never
# competes for port 7862.
export ORCHESTRATION_ECHO_DELAY=60ms
printf '[daemon]\nlisten = "off"\n' >"$ORCHESTRATION_CONFIG"
cleanup() {
    "$bin" serve --stop >/dev/null 2>&1 || true
    rm -rf "$demo_dir"
}
trap cleanup EXIT

# One word as a shell would need it typed: plain words as they are, others
# in single quotes, so every printed step can be copied and run.
quote() {
    case "$1" in
    '' | *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}

step() {
    local line="" word
    for word in "$@"; do line+="${line:+ }$(quote "$word")"; done
    if [ -t 1 ]; then printf '\n\033[1m$ %s\033[0m\n' "$line"; else printf '\n$ %s\n' "$line"; fi
    "$@"
}

# No daemon runs yet: the first command starts one and waits until it is ready.
step "$bin" spawn --name demo --provider echo --instructions "Repeat after me."
step "$bin" serve --status
step "$bin" list
step "$bin" message demo "Hello from the first terminal, streamed word by word."
step "$bin" message demo "A second message; the agent got the first exchange as context."
step "$bin" history demo
step "$bin" shutdown demo
step "$bin" serve --stop
