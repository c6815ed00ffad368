#!/usr/bin/env bash
# End to end under a real systemd user manager and a real journald, on a
# machine where PID 1 is not systemd (CI containers). Needs root: it creates
# a test user, starts journald and `systemd --user` for it, and drives
# orchestration as that user through `service install`, socket activation,
# StatusText, native journal fields, graceful stop, idle exit with
# reactivation, and auto-start through `systemctl --user start`.
#
#   tests/e2e/systemd-user.sh target/debug/orchestration
#
# Without root or the systemd binaries it prints SKIPPED and exits 0, so a
# developer's `scripts/test.sh` still runs; `.ci/run` sets
# ORCHESTRATION_REQUIRE_SYSTEMD=1, which turns a skip into a failure.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 PATH-TO-orchestration}")
E2E_USER=orch-e2e
FAILURES=0

# skip WHY: what CI provides (root, the tools) must be there under
# ORCHESTRATION_REQUIRE_SYSTEMD=1; what the kernel or container decides
# (cgroup layout, whether systemd --user can start) is skipped loudly.
skip() {
    echo "SKIPPED systemd e2e: $*" >&2
    if [ "${ORCHESTRATION_REQUIRE_SYSTEMD:-0}" = 1 ]; then
        echo "FAILED: ORCHESTRATION_REQUIRE_SYSTEMD=1 but the e2e cannot run here" >&2
        exit 1
    fi
    exit 0
}
skip_machine() {
    echo "########################################################################" >&2
    echo "SKIPPED systemd e2e: $*" >&2
    echo "(this machine cannot host a systemd user manager; nothing was tested)" >&2
    echo "########################################################################" >&2
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (it creates a user and starts systemd --user)"
for need in /lib/systemd/systemd /lib/systemd/systemd-journald systemctl journalctl setpriv useradd; do
    command -v "$need" >/dev/null || skip "$need is missing (apt install systemd util-linux passwd)"
done
[ -d /sys/fs/cgroup/systemd ] && [ -d /sys/fs/cgroup/unified ] ||
    skip_machine "no /sys/fs/cgroup/{systemd,unified} hierarchy"

log() { echo "e2e: $*" >&2; }
fail() {
    echo "e2e FAILED: $*" >&2
    FAILURES=$((FAILURES + 1))
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then log "ok: $what"; else fail "$what"; fi
}

# Journal entries from earlier runs on this machine do not count.
SINCE=$(date '+%Y-%m-%d %H:%M:%S')

# --- the user and its manager ----------------------------------------------
id "$E2E_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$E2E_USER"
usermod -a -G systemd-journal "$E2E_USER"
E2E_UID=$(id -u "$E2E_USER")
E2E_HOME=$(getent passwd "$E2E_USER" | cut -d: -f6)
RUNTIME=/run/user/$E2E_UID
JOURNALD_PID=
MANAGER_PID=

cleanup() {
    set +e
    if [ -n "$MANAGER_PID" ]; then
        kill "$MANAGER_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$MANAGER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$MANAGER_PID" 2>/dev/null
    fi
    # Anything the manager started and left behind (it should be nothing).
    pkill -9 -u "$E2E_UID" 2>/dev/null
    [ -n "$JOURNALD_PID" ] && kill "$JOURNALD_PID" 2>/dev/null
    rm -rf "$RUNTIME"
}
trap cleanup EXIT

mkdir -p /run/systemd/system /run/systemd/journal /var/log/journal
if ! [ -S /run/systemd/journal/socket ] || ! journalctl -n0 >/dev/null 2>&1 || ! pgrep -x systemd-journal >/dev/null; then
    /lib/systemd/systemd-journald &
    JOURNALD_PID=$!
    for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
fi
ln -sf /run/systemd/journal/dev-log /dev/log
journalctl --flush >/dev/null 2>&1 || true

rm -rf "$RUNTIME"
mkdir -p "$RUNTIME"
chown "$E2E_USER:$E2E_USER" "$RUNTIME"
chmod 0700 "$RUNTIME"
for hierarchy in systemd unified; do
    dir=/sys/fs/cgroup/$hierarchy/user.slice/user-$E2E_UID.slice/user@$E2E_UID.service
    mkdir -p "$dir"
    chown -R "$E2E_USER:$E2E_USER" "$dir"
done

# The binary somewhere the test user may run it from.
install -D -m 0755 "$BIN" "$E2E_HOME/bin/orchestration"
rm -rf "$E2E_HOME/.config/systemd" "$E2E_HOME/.local/state/orchestration"
chown -R "$E2E_USER:$E2E_USER" "$E2E_HOME"
USER_PATH=$E2E_HOME/bin:/usr/local/bin:/usr/bin:/bin

as_user() {
    setpriv --reuid="$E2E_UID" --regid="$E2E_UID" --init-groups \
        env -i HOME="$E2E_HOME" USER="$E2E_USER" LOGNAME="$E2E_USER" \
        XDG_RUNTIME_DIR="$RUNTIME" PATH="$USER_PATH" "$@"
}
orch() { as_user orchestration "$@"; }
sctl() { as_user systemctl --user "$@"; }
prop() { sctl show -p "$1" --value "$2"; }

(
    for hierarchy in systemd unified; do
        echo "$BASHPID" >"/sys/fs/cgroup/$hierarchy/user.slice/user-$E2E_UID.slice/user@$E2E_UID.service/cgroup.procs"
    done
    exec setpriv --reuid="$E2E_UID" --regid="$E2E_UID" --init-groups \
        env -i HOME="$E2E_HOME" USER="$E2E_USER" LOGNAME="$E2E_USER" \
        XDG_RUNTIME_DIR="$RUNTIME" PATH="$USER_PATH" /lib/systemd/systemd --user
) >"$E2E_HOME/manager.log" 2>&1 &
MANAGER_PID=$!

started=
for _ in $(seq 200); do
    state=$(sctl is-system-running 2>/dev/null || true)
    case $state in running | degraded) started=1 && break ;; esac
    kill -0 "$MANAGER_PID" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$started" ]; then
    cat "$E2E_HOME/manager.log" >&2
    skip_machine "systemd --user did not start here (state: ${state:-none}); see the log above"
fi
log "systemd --user runs as $E2E_USER (pid $MANAGER_PID)"

# wait_for DESCRIPTION COMMAND...: polls up to 15 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 300); do
        if "$@" >/dev/null 2>&1; then log "ok: $what"; return 0; fi
        sleep 0.05
    done
    fail "$what (timed out)"
    return 1
}
is() { [ "$(prop "$1" "$2")" = "$3" ]; }
isnt() { ! is "$@"; }

# --- install, socket activation, StatusText --------------------------------
orch service install
check "units installed for the binary" grep -q "ExecStart=$E2E_HOME/bin/orchestration serve" \
    "$E2E_HOME/.config/systemd/user/orchestration.service"
sctl start orchestration.socket
check "socket unit listening" is ActiveState orchestration.socket active
check "service inactive until the first call" is ActiveState orchestration.service inactive
check "socket file is 0600" [ "$(stat -c %a "$RUNTIME/orchestration/daemon.sock")" = 600 ]

orch spawn e2e --provider echo
check "the first call activated the service" is ActiveState orchestration.service active
check "StatusText counts the agent" is StatusText orchestration.service "serving 1 live agent"
orch spawn e2e2 --provider echo
wait_for "StatusText follows a second agent" is StatusText orchestration.service "serving 2 live agents"
reply=$(orch message e2e "hello from systemd")
check "message answered under systemd" grep -q "hello from systemd" <<<"$reply"

# A key that must never reach a log: a real provider call that fails.
PLANTED=sk-e2e-PLANTED-$RANDOM$RANDOM-do-not-log
as_user env OPENAI_API_KEY="$PLANTED" orchestration spawn leaky --provider openai \
    --base-url http://127.0.0.1:9/v1 --model m >/dev/null
as_user orchestration message leaky "hi" >/dev/null 2>&1 || true

# --- the journal -----------------------------------------------------------
journalctl --flush >/dev/null 2>&1 || true
# The user reads its own unit's journal (group systemd-journal).
chmod -R g+r /var/log/journal /run/log/journal 2>/dev/null || true
ENTRIES=$(mktemp)
as_user journalctl --user-unit orchestration.service --since "$SINCE" -o json --no-pager \
    >"$ENTRIES" 2>/dev/null || true
if ! [ -s "$ENTRIES" ]; then
    # Where the user cannot read the journal files: as root, the same match.
    journalctl _SYSTEMD_USER_UNIT=orchestration.service _UID="$E2E_UID" --since "$SINCE" \
        -o json --no-pager >"$ENTRIES"
fi
request=$(grep '"MESSAGE":"request"' "$ENTRIES" | grep '"AGENT":"e2e"' | head -1 || true)
check "native journal entry for a request" [ -n "$request" ]
for field in SYSLOG_IDENTIFIER REQUEST_ID AGENT METHOD PATH STATUS DURATION_MS; do
    check "journal field $field" grep -q "\"$field\":" <<<"$request"
done
check "SYSLOG_IDENTIFIER=orchestration" grep -q '"SYSLOG_IDENTIFIER":"orchestration"' <<<"$request"
# Text on stderr would arrive as _TRANSPORT=stdout: there must be none.
check "no stderr-stream text entries" bash -c '! grep -q "\"_TRANSPORT\":\"stdout\"" "$1"' _ "$ENTRIES"
rm -f "$ENTRIES"
ALL_LOGS=$(mktemp)
{
    journalctl --since "$SINCE" -o export --no-pager 2>/dev/null
    cat "$E2E_HOME/.local/state/orchestration/daemon.log" 2>/dev/null
} >"$ALL_LOGS" || true
check "the journal holds the failed call" grep -q "leaky" "$ALL_LOGS"
check "the planted key is in no log" bash -c '! grep -qF "$1" "$2"' _ "$PLANTED" "$ALL_LOGS"
rm -f "$ALL_LOGS"

# --- graceful stop -----------------------------------------------------------
sctl stop orchestration.service
check "stop is graceful (Result=success)" is Result orchestration.service success
check "exit status 0" is ExecMainStatus orchestration.service 0
check "the socket unit still listens" is ActiveState orchestration.socket active
check "agents survive the stop" grep -q e2e2 <<<"$(orch list)"

# --- idle exit and reactivation ----------------------------------------------
mkdir -p "$E2E_HOME/.config/systemd/user/orchestration.service.d"
cat >"$E2E_HOME/.config/systemd/user/orchestration.service.d/idle.conf" <<EOF
[Service]
ExecStart=
ExecStart=$E2E_HOME/bin/orchestration serve --idle-timeout 1s
EOF
chown -R "$E2E_USER:$E2E_USER" "$E2E_HOME/.config"
sctl daemon-reload
sctl stop orchestration.service 2>/dev/null || true
orch list >/dev/null
first_pid=$(prop MainPID orchestration.service)
wait_for "idle exit stops the service" is ActiveState orchestration.service inactive
check "idle exit is a success" is Result orchestration.service success
check "the socket stays after idle exit" is ActiveState orchestration.socket active
check "the next call reactivates" grep -q e2e <<<"$(orch list)"
second_pid=$(prop MainPID orchestration.service)
check "a new daemon process ($first_pid then $second_pid)" [ "$first_pid" != "$second_pid" ]

# --- auto-start through systemctl ------------------------------------------
sctl stop orchestration.socket orchestration.service
check "socket gone once the unit stops" [ ! -e "$RUNTIME/orchestration/daemon.sock" ]
check "auto-start via systemctl --user start" grep -q e2e <<<"$(orch list)"
check "the socket unit is active again" is ActiveState orchestration.socket active
check "the daemon is systemd's, not a forked one" [ ! -e "$E2E_HOME/.local/state/orchestration/daemon.log" ]

orch service uninstall >/dev/null
check "uninstall stopped the socket" isnt ActiveState orchestration.socket active
check "uninstall removed the units" [ ! -e "$E2E_HOME/.config/systemd/user/orchestration.socket" ]

if [ "$FAILURES" -gt 0 ]; then
    echo "e2e: $FAILURES check(s) failed; manager log:" >&2
    tail -n 30 "$E2E_HOME/manager.log" >&2
    exit 1
fi
log "all checks passed"
