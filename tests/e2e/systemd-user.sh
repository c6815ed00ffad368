#!/usr/bin/env bash
# End to end under a real systemd user manager and a real journald, on a
# machine where PID 1 is not systemd (CI containers). Needs root: it creates
# a test user, starts journald and `systemd --user` for it, and drives
# orchestration as that user through `service install`, the hardened unit
# (its exposure score, its seccomp filter really applied, a provider call
# through a name lookup from inside it), socket activation, StatusText,
# native journal fields, graceful stop, idle exit with reactivation, and
# auto-start through `systemctl --user start`.
#
#   tests/e2e/systemd-user.sh target/debug/orchestration
#
# What it touches, and takes back at exit (success, failure or Ctrl-C; only
# SIGKILL can leave something behind):
# - a user `orch-e2e-<random>` (useradd picks the uid; its own group, member
#   of systemd-journal, home under /home), removed with `userdel --remove`;
# - cgroup directories for that uid under /sys/fs/cgroup/{systemd,unified}/
#   user.slice, removed (user.slice only if this run created it);
# - the processes it starts: journald, the user manager and everything that
#   runs as the test user, a mock model server and a process holding the
#   TCP port (as another user would), killed.
# Everything else lives in a private mount namespace: fresh tmpfs over /run
# and /var/log (the journal, /run/systemd/system, /run/user/<uid>), so the
# machine's own journal, /run/systemd and /dev/log are never written; the
# mounts vanish with the run's last process.
#
# Without root or the systemd binaries it prints SKIPPED and exits 0, so a
# developer's `scripts/test.sh` still runs; `.ci/run` sets
# ORCHESTRATION_REQUIRE_SYSTEMD=1, which turns a skip into a failure.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 PATH-TO-orchestration}")
FAILURES=0
# The highest `systemd-analyze --user security` exposure the unit may have:
# 9.6 without hardening, 6.3 measured with it (systemd 252).
MAX_EXPOSURE=${ORCHESTRATION_MAX_EXPOSURE:-6.5}

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
    # Required means required: a run that tested nothing must not pass.
    [ "${ORCHESTRATION_REQUIRE_SYSTEMD:-0}" = 1 ] && exit 1
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (it creates a user and starts systemd --user)"
for need in /lib/systemd/systemd /lib/systemd/systemd-journald systemctl journalctl systemd-analyze \
    setpriv unshare useradd userdel python3; do
    command -v "$need" >/dev/null || skip "$need is missing (apt install systemd util-linux passwd python3)"
done
[ -d /sys/fs/cgroup/systemd ] && [ -d /sys/fs/cgroup/unified ] ||
    skip_machine "no /sys/fs/cgroup/{systemd,unified} hierarchy"

# Into a private mount namespace, where /run and /var/log are this run's own.
if [ "${ORCHESTRATION_E2E_PRIVATE_MOUNTS:-}" != 1 ]; then
    unshare --mount --propagation private true ||
        skip_machine "cannot make a private mount namespace (unshare --mount)"
    ORCHESTRATION_E2E_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private bash "$0" "$BIN"
fi
# -n: no record in /run/mount/utab, which is the machine's.
mount -n -t tmpfs -o mode=0755 orchestration-e2e-run /run
mkdir -m 1777 /run/lock
ln -s /dev/shm /run/shm
mount -n -t tmpfs -o mode=0755 orchestration-e2e-log /var/log
# Debian's /etc/hosts: `localhost` is two addresses, the case where glibc's
# getaddrinfo asks the kernel (netlink) how to sort them.
{
    grep -vw localhost /etc/hosts || true
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
} >/run/e2e-hosts
mount -n --bind /run/e2e-hosts /etc/hosts

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

# Journal entries from before the unit's start do not count.
SINCE=$(date '+%Y-%m-%d %H:%M:%S')

E2E_USER=
E2E_UID=
E2E_HOME=
JOURNALD_PID=
MANAGER_PID=
PROVIDER_PID=
PORT_HOLDER=
# The user's cgroups are created by hand, outside the mount namespace: what
# exists now stays.
CGROUP_ROOTS=(/sys/fs/cgroup/systemd/user.slice /sys/fs/cgroup/unified/user.slice)
declare -A CGROUPS_BEFORE=()
for root in "${CGROUP_ROOTS[@]}"; do
    if [ -d "$root" ]; then
        while read -r dir; do CGROUPS_BEFORE[$dir]=1; done < <(find "$root" -type d)
    fi
done

stop_pid() { # stop_pid PID: SIGTERM, up to 5 s, then SIGKILL
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
}

# Takes back everything above the mount namespace: processes, cgroups, the
# user. Runs on every exit; a leftover fails the run.
cleanup() {
    local status=$? command=$BASH_COMMAND left=()
    set +e
    # A command that ended the run under `set -e` says which.
    [ "$status" != 0 ] && [ "$FAILURES" = 0 ] && echo "e2e FAILED: exit $status from: $command" >&2
    [ -n "$MANAGER_PID" ] && stop_pid "$MANAGER_PID"
    if [ -n "$E2E_UID" ]; then
        # What the manager started and left behind (it should be nothing);
        # the uid is this run's own.
        pkill -KILL -U "$E2E_UID" 2>/dev/null
        for _ in $(seq 50); do pgrep -U "$E2E_UID" >/dev/null || break; sleep 0.1; done
    fi
    [ -n "$PROVIDER_PID" ] && stop_pid "$PROVIDER_PID"
    [ -n "$PORT_HOLDER" ] && stop_pid "$PORT_HOLDER"
    [ -n "$JOURNALD_PID" ] && stop_pid "$JOURNALD_PID"
    wait 2>/dev/null
    for root in "${CGROUP_ROOTS[@]}"; do
        [ -n "$E2E_UID" ] && [ -d "$root/user-$E2E_UID.slice" ] || continue
        while read -r dir; do
            [ -n "${CGROUPS_BEFORE[$dir]:-}" ] && continue
            for _ in $(seq 50); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
            [ -d "$dir" ] && left+=("cgroup $dir")
        done < <(find "$root/user-$E2E_UID.slice" -depth -type d)
        [ -n "${CGROUPS_BEFORE[$root]:-}" ] || rmdir "$root" 2>/dev/null || left+=("cgroup $root")
    done
    if [ -n "$E2E_USER" ]; then
        userdel --remove "$E2E_USER" 2>&1 | grep -v 'mail spool' >&2
        getent passwd "$E2E_USER" >/dev/null && left+=("user $E2E_USER")
        getent group "$E2E_USER" >/dev/null && left+=("group $E2E_USER")
        grep -q "\b$E2E_USER\b" /etc/group /etc/gshadow /etc/subuid /etc/subgid 2>/dev/null &&
            left+=("$E2E_USER in /etc/group, gshadow, subuid or subgid")
        [ -e "$E2E_HOME" ] && left+=("home $E2E_HOME")
    fi
    if [ ${#left[@]} -gt 0 ]; then
        printf 'e2e FAILED: left behind: %s\n' "${left[@]}" >&2
        [ "$status" = 0 ] && status=1
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the user and its manager ----------------------------------------------
home_base=$(useradd -D | sed -n 's/^HOME=//p')
for _ in 1 2 3 4 5; do
    name=orch-e2e-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    if getent passwd "$name" >/dev/null || getent group "$name" >/dev/null || [ -e "$home_base/$name" ]; then
        continue
    fi
    groups=()
    getent group systemd-journal >/dev/null && groups=(--groups systemd-journal)
    # --no-log-init: no lastlog/faillog records to take back.
    useradd --create-home --shell /bin/bash --no-log-init "${groups[@]}" \
        --comment "orchestration e2e, pid $$" "$name"
    E2E_USER=$name
    break
done
[ -n "$E2E_USER" ] || { fail "no free user name orch-e2e-*"; exit 1; }
E2E_UID=$(id -u "$E2E_USER")
E2E_HOME=$(getent passwd "$E2E_USER" | cut -d: -f6)
RUNTIME=/run/user/$E2E_UID
log "test user $E2E_USER (uid $E2E_UID)"

# A fresh journald: this namespace's /run and /var/log are empty tmpfs.
mkdir -p /run/systemd/system /run/systemd/journal /var/log/journal
# Its own messages go to a file here, not (by default) the kernel log.
SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-journald 2>/run/journald.log &
JOURNALD_PID=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
journalctl --flush >/dev/null 2>&1 || true

mkdir -p "$RUNTIME"
chown "$E2E_USER:$E2E_USER" "$RUNTIME"
chmod 0700 "$RUNTIME"
for root in "${CGROUP_ROOTS[@]}"; do
    dir=$root/user-$E2E_UID.slice/user@$E2E_UID.service
    mkdir -p "$dir"
    chown -R "$E2E_USER:$E2E_USER" "$dir"
done

# The binary somewhere the test user may run it from.
install -D -m 0755 "$BIN" "$E2E_HOME/bin/orchestration"
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
# Runs may overlap: this one's data plane gets a free port, not 7862.
tcp_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$E2E_HOME/.config/systemd/user/orchestration-tcp.socket.d"
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' \
    "$tcp_port" >"$E2E_HOME/.config/systemd/user/orchestration-tcp.socket.d/port.conf"
chown -R "$E2E_USER:$E2E_USER" "$E2E_HOME/.config"
sctl daemon-reload
# Another user (root, here) already holds the data plane's port: only the
# TCP unit may fail; the control socket must not go down with it.
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); open(sys.argv[2], "w").close(); time.sleep(3600)' \
    "$tcp_port" /run/e2e-port-taken &
PORT_HOLDER=$!
for _ in $(seq 100); do [ -e /run/e2e-port-taken ] && break; sleep 0.05; done
sctl start orchestration.socket
sctl start orchestration-tcp.socket 2>/dev/null || true
check "socket unit listening" is ActiveState orchestration.socket active
check "a taken port fails only the TCP unit" isnt ActiveState orchestration-tcp.socket active
check "service inactive until the first call" is ActiveState orchestration.service inactive
check "socket file is 0600" [ "$(stat -c %a "$RUNTIME/orchestration/daemon.sock")" = 600 ]

# --- confinement -------------------------------------------------------------
security=$(as_user systemd-analyze --user security --no-pager orchestration.service 2>&1 || true)
exposure=$(sed -n 's/.*Overall exposure level for orchestration.service: \([0-9.]*\).*/\1/p' <<<"$security")
log "systemd-analyze --user security orchestration.service: exposure ${exposure:-?} (at most $MAX_EXPOSURE)"
if [ -z "$exposure" ]; then
    fail "no exposure score from systemd-analyze --user security:"
    echo "$security" >&2
elif awk -v e="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e <= max) }'; then
    log "ok: exposure $exposure <= $MAX_EXPOSURE"
else
    fail "exposure $exposure > $MAX_EXPOSURE; the unit lost confinement:"
    grep '✗' <<<"$security" >&2 || echo "$security" >&2
fi

# A confinement this manager cannot apply fails the start (e.g. 226/NAMESPACE):
# say so with systemd's reason rather than as a CLI timeout.
if ! orch spawn e2e --provider echo; then
    fail "the hardened service did not start: Result=$(prop Result orchestration.service)" \
        "ExecMainStatus=$(prop ExecMainStatus orchestration.service)"
    sctl status --no-pager --lines 20 orchestration.service >&2 || true
    exit 1
fi
# READY=1 reaches the manager asynchronously: the reply may come first.
wait_for "the first call activated the service" is ActiveState orchestration.service active
main_pid=$(prop MainPID orchestration.service)
check "the daemon runs under the seccomp filter" grep -qP '^Seccomp:\t2$' "/proc/$main_pid/status"
check "the daemon has no_new_privs" grep -qP '^NoNewPrivs:\t1$' "/proc/$main_pid/status"
# STATUS= is sent when the agent count changes, not with the reply: poll.
wait_for "StatusText counts the agent" is StatusText orchestration.service "serving 1 live agent"
orch spawn e2e2 --provider echo
wait_for "StatusText follows a second agent" is StatusText orchestration.service "serving 2 live agents"
reply=$(orch message e2e "hello from systemd")
check "message answered under systemd" grep -q "hello from systemd" <<<"$reply"

# A model server reached by name from inside the confined service: getaddrinfo
# (through the restricted address families) and an outbound TCP connect.
cat >/run/e2e-provider.py <<'PY'
import http.server, json, sys

class Reply(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "a") as seen:
            seen.write(self.path + "\n")
        chunks = [{"choices": [{"index": 0, "delta": {"content": "pong from localhost"}}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
        body = "".join("data: %s\n\n" % json.dumps(c) for c in chunks) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Reply)
with open(sys.argv[1] + ".tmp", "w") as port:
    port.write(str(server.server_address[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
PY
python3 /run/e2e-provider.py /run/e2e-provider.port /run/e2e-provider.seen &
PROVIDER_PID=$!
for _ in $(seq 100); do [ -s /run/e2e-provider.port ] && break; sleep 0.05; done
port=$(cat /run/e2e-provider.port)
orch spawn nearby --profile local --base-url "http://localhost:$port/v1" --model e2e >/dev/null
reply=$(orch message nearby "ping" 2>&1 || true)
check "a provider at localhost:$port answered the confined daemon" grep -q "pong from localhost" <<<"$reply" ||
    echo "$reply" >&2
check "the model server saw the request" grep -qx /v1/chat/completions /run/e2e-provider.seen

# A key that must never reach a log: a real provider call that fails.
PLANTED=sk-e2e-PLANTED-$RANDOM$RANDOM-do-not-log
as_user env OPENAI_API_KEY="$PLANTED" orchestration spawn leaky --provider openai \
    --base-url http://127.0.0.1:9/v1 --model m >/dev/null
as_user orchestration message leaky "hi" >/dev/null 2>&1 || true

# --- reload in place ---------------------------------------------------------
CONFIG_DIR=$E2E_HOME/.config/orchestration
pid_before=$(prop MainPID orchestration.service)
status_before=$(prop ExecMainStatus orchestration.service)
as_user mkdir -p "$CONFIG_DIR"
as_user bash -c 'printf "[daemon]\nlog_level = \"debug\"\n" >"$1"' _ "$CONFIG_DIR/config.toml"
check "systemctl --user reload succeeds" sctl reload orchestration.service
check "reload keeps the process (MainPID $pid_before)" is MainPID orchestration.service "$pid_before"
check "reload keeps ExecMainStatus" is ExecMainStatus orchestration.service "$status_before"
check "active after the reload" is ActiveState orchestration.service active
check "agents survive the reload" grep -q e2e <<<"$(orch list)"
as_user bash -c 'printf "[daemon]\nbogus = 1\n" >"$1"' _ "$CONFIG_DIR/config.toml"
reload_fails() { ! sctl reload orchestration.service 2>/dev/null; }
check "a reload of a broken config fails" reload_fails
check "a failed reload keeps the process" is MainPID orchestration.service "$pid_before"
check "and keeps it active" is ActiveState orchestration.service active
check "serve --status reports the failed reload" grep -q "last reload FAILED" <<<"$(orch serve --status)"
as_user rm -f "$CONFIG_DIR/config.toml"
check "a reload after the fix succeeds" sctl reload orchestration.service

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
check "the journal shows the reload" grep -q '"MESSAGE":"reloaded the config and environment files"' "$ENTRIES"
check "the journal shows the failed reload" grep -q 'reload failed' "$ENTRIES"
# Text on stderr would arrive as _TRANSPORT=stdout: there must be none.
# (`systemctl reload` runs `serve --reload`, whose own output is text: only
# the daemon's process counts.)
check "no stderr-stream text entries from the daemon" bash -c \
    '! grep "\"_TRANSPORT\":\"stdout\"" "$1" | grep -q "\"_PID\":\"$2\""' _ "$ENTRIES" "$main_pid"
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

# --- the TCP listener, once its port is free ----------------------------------
check "serve --status says why there is no TCP listener" \
    grep -q "tcp: *off: the service manager passed no TCP socket" <<<"$(orch serve --status)"
stop_pid "$PORT_HOLDER"
wait "$PORT_HOLDER" 2>/dev/null || true
PORT_HOLDER=
sctl stop orchestration.service
sctl reset-failed orchestration-tcp.socket 2>/dev/null || true
sctl start orchestration-tcp.socket
check "the TCP unit listens once the port is free" is ActiveState orchestration-tcp.socket active
check "serve --status shows the TCP listener" \
    grep -q "tcp: *127.0.0.1:$tcp_port" <<<"$(orch serve --status)"

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
# The daemon says its own pid: MainPID read after the call may already be 0
# if the daemon went idle in between on a loaded machine.
daemon_pid() { orch --json serve --status | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])'; }
first_pid=$(daemon_pid)
wait_for "idle exit stops the service" is ActiveState orchestration.service inactive
check "idle exit is a success" is Result orchestration.service success
check "the socket stays after idle exit" is ActiveState orchestration.socket active
check "the next call reactivates" grep -q e2e <<<"$(orch list)"
second_pid=$(daemon_pid)
differ() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" != "$2" ]; }
check "a new daemon process ($first_pid then $second_pid)" differ "$first_pid" "$second_pid"

# --- auto-start through systemctl ------------------------------------------
sctl stop orchestration.socket orchestration.service
check "socket gone once the unit stops" [ ! -e "$RUNTIME/orchestration/daemon.sock" ]
check "auto-start via systemctl --user start" grep -q e2e <<<"$(orch list)"
check "the socket unit is active again" is ActiveState orchestration.socket active
check "the daemon is systemd's, not a forked one" [ ! -e "$E2E_HOME/.local/state/orchestration/daemon.log" ]

orch service uninstall >/dev/null
check "uninstall stopped the socket" isnt ActiveState orchestration.socket active
check "uninstall stopped the TCP socket" isnt ActiveState orchestration-tcp.socket active
check "uninstall removed the units" [ ! -e "$E2E_HOME/.config/systemd/user/orchestration.socket" ]
check "uninstall removed the TCP unit" [ ! -e "$E2E_HOME/.config/systemd/user/orchestration-tcp.socket" ]

if [ "$FAILURES" -gt 0 ]; then
    echo "e2e: $FAILURES check(s) failed; manager log:" >&2
    tail -n 30 "$E2E_HOME/manager.log" >&2
    exit 1
fi
log "all checks passed"
