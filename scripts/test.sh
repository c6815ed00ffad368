#!/usr/bin/env bash
# The whole test suite: installs the third-party mock model server the
# suite checks the CLI against (fakellm, from PyPI, into target/third-party),
# the MCP client it checks `orchestration mcp` with (mcp, likewise) and the
# WebDriver client the web page's browser tests use (selenium, likewise),
# the MCP servers the tool host is tested against (npm and PyPI, likewise),
# runs `cargo test --all-targets`, then the end-to-end run under a real
# systemd user manager and journald (tests/e2e/systemd-user.sh; as root only,
# it says SKIPPED otherwise). Extra arguments go to cargo test and skip the e2e.
set -euo pipefail
cd "$(dirname "$0")/.."

FAKELLM_VERSION=0.3.5
venv=target/third-party/venv
if [ ! -x "$venv/bin/fakellm" ] || ! "$venv/bin/pip" show fakellm 2>/dev/null | grep -qx "Version: $FAKELLM_VERSION"; then
    echo "== installing fakellm $FAKELLM_VERSION into $venv"
    if ! python3 -m venv "$venv"; then
        echo "error: python3 -m venv failed; install python3-venv (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "fakellm==$FAKELLM_VERSION"
fi
export ORCHESTRATION_FAKELLM="$PWD/$venv/bin/fakellm"
# The MCP client tests/it/mcp.rs drives `orchestration mcp` with: the official Python SDK.
MCP_VERSION=2.3.0
if ! "$venv/bin/python" -m pip show mcp 2>/dev/null | grep -qx "Version: $MCP_VERSION"; then
    echo "== installing mcp $MCP_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==$MCP_VERSION"
fi
export ORCHESTRATION_MCP_PYTHON="$PWD/$venv/bin/python"
# The browser tests of the web page (tests/it/ui_browser.rs, tests/ui/) drive
# Debian's chromium and chromium-driver (installed by .ci/run) with Selenium.
SELENIUM_VERSION=4.51.0
if ! "$venv/bin/python" -m pip show selenium 2>/dev/null | grep -qx "Version: $SELENIUM_VERSION"; then
    echo "== installing selenium $SELENIUM_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "selenium==$SELENIUM_VERSION"
fi
export ORCHESTRATION_SELENIUM_PYTHON="$PWD/$venv/bin/python"
# The coding agents the daemon drives as children (tests/it/coding_agents*.rs):
# Claude Code and Codex, native binaries inside their npm packages, run offline
# against the tests' fake model server.
CLAUDE_CODE_VERSION=2.1.197
CODEX_VERSION=0.171.0
npm_dir=target/third-party/npm
claude_bin="$npm_dir/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
codex_bin="$npm_dir/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
installed() { grep -qx "$2" "$npm_dir/.installed-$1" 2>/dev/null; }
if ! installed claude "$CLAUDE_CODE_VERSION" || ! installed codex "$CODEX_VERSION"; then
    if ! command -v npm >/dev/null; then
        echo "error: npm is required to install Claude Code and Codex for the tests (Debian: apt-get install npm)" >&2
        exit 1
    fi
    echo "== installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION and @openai/codex@$CODEX_VERSION into $npm_dir"
    mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION"
    echo "$CLAUDE_CODE_VERSION" >"$npm_dir/.installed-claude"
    echo "$CODEX_VERSION" >"$npm_dir/.installed-codex"
fi
export ORCHESTRATION_CLAUDE="$PWD/$claude_bin" ORCHESTRATION_CODEX="$PWD/$codex_bin"
# The MCP servers the daemon's tool host is tested against (tests/it/tools_host.rs):
# the reference servers from npm (server-everything, built to exercise clients,
# and server-filesystem) and mcp-server-time from PyPI (beside mcp, which it needs).
MCP_EVERYTHING_VERSION=2026.8.31
MCP_FILESYSTEM_VERSION=2026.8.31
MCP_TIME_VERSION=2026.10.19
mcp_servers="$MCP_EVERYTHING_VERSION $MCP_FILESYSTEM_VERSION"
if ! installed mcp-servers "$mcp_servers"; then
    echo "== installing @modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION and server-filesystem@$MCP_FILESYSTEM_VERSION into $npm_dir"
    npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" \
        "@modelcontextprotocol/server-filesystem@$MCP_FILESYSTEM_VERSION"
    echo "$mcp_servers" >"$npm_dir/.installed-mcp-servers"
fi
export ORCHESTRATION_MCP_EVERYTHING="$PWD/$npm_dir/node_modules/.bin/mcp-server-everything"
export ORCHESTRATION_MCP_FILESYSTEM="$PWD/$npm_dir/node_modules/.bin/mcp-server-filesystem"
if ! "$venv/bin/python" -m pip show mcp-server-time 2>/dev/null | grep -qx "Version: $MCP_TIME_VERSION"; then
    echo "== installing mcp-server-time $MCP_TIME_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp-server-time==$MCP_TIME_VERSION"
fi
export ORCHESTRATION_MCP_TIME="$PWD/$venv/bin/mcp-server-time"
# promtool (Debian's prometheus package; .ci/run installs it) checks GET /metrics.
if promtool=$(command -v promtool); then
    export ORCHESTRATION_PROMTOOL="$promtool"
fi
export ORCHESTRATION_REQUIRE_THIRD_PARTY=1
# As root everything can run here, as in CI: a skipped systemd, man or
# second-uid test is then a failure, not a silent pass.
if [ "$(id -u)" = 0 ]; then
    export ORCHESTRATION_REQUIRE_SYSTEMD=1 ORCHESTRATION_REQUIRE_MAN=1
fi

# Where cargo puts what it builds: $CARGO_TARGET_DIR, build.target-dir from
# a .cargo/config.toml, or ./target. Cargo knows; guessing ./target failed
# with exit 127 whenever one of the others was set.
target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

cargo test --all-targets "$@"
if [ $# -eq 0 ]; then
    echo "== end to end under systemd --user and journald"
    bash tests/e2e/systemd-user.sh "$(target_dir)/debug/orchestration"
fi
