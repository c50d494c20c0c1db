#!/usr/bin/env bash
# The README's run command: a whole tchat cluster on 127.0.0.1 in one tmux session: a window
# per client (the whole terminal), one for the servers' logs, and keys to kill the leader and
# watch the failover.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/scripts/cluster.sh"
HOST=127.0.0.1 # never anything else: this script only ever runs a loopback cluster
NAMES=(alice bob carol dave erin frank grace heidi ivan judy)

usage() {
    cat <<EOF
Usage: scripts/cluster.sh [OPTIONS] [COMMAND]

Runs a tchat cluster on 127.0.0.1 inside a tmux session: N server daemons in
one window ("servers", their logs) and M clients, each in a window of its own.
On a fresh clone it creates .venv, installs tchat into it and installs tmux
(apt-get, when run as root).

Commands:
  start            (default) create the session and attach to it
  attach           attach to a running cluster's session
  status [--json]  the local processes, then the cluster as discovery sees it
  kill-leader      kill -9 the current leader (found with 'tchat status --json')
  restart N        restart server N in its pane, with its data dir
  restart-dead     restart every server and client whose process has exited
  client NAME      start client NAME in a window of its own (again, if it quit)
  stop             end the session and every process of the cluster

Options for start:
  --servers N           server daemons (default 3), ids 101, 102, ...
  --clients M           clients (default 2): alice, bob, carol, ...
  --discovery-port P    UDP discovery port shared by the cluster (default: the one this
                        data dir used last time, else 47470, else a free one; kept
                        in the data dir)
  --log-level L         daemon log level (default info)
  --headless            run headless clients even if the Textual UI is available
  --fresh               delete the cluster's data dir first (history starts empty)
  --detach              create the session without attaching to it
Options for every command:
  --data-dir DIR        where servers keep their data and this script its state
                        (default data/cluster in the repository)
  --session NAME        tmux session and tmux server socket name (default tchat)
Environment:
  TCHAT_BIN             the tchat program to run (default .venv/bin/tchat)
  TCHAT_CLUSTER_KEY     the servers' shared secret, passed on to every node

Keys inside the session (after the tmux prefix, Ctrl-b unless you changed it):
  K   kill the leader (kill -9) and watch the others elect a new one
  R   restart what exited: killed servers, and servers stopped by a failed core step
      (exit status 1, fail-stop; they reload their data and rejoin as backups), and
      clients that quit
  S   show the cluster status in a popup
  Q   stop the whole cluster
  0 1 2 ... / n p   switch windows: 0 is the servers' logs, then one per client
  o / arrows        move between the server panes; d   detach (the cluster keeps running)

Clients run the Textual UI ('tchat --user NAME') when it is installed, else the
headless client ('tchat --headless --user NAME'): type /join ROOM, /say ROOM TEXT,
/msg USER TEXT, /who, /quit. Another client by hand, from any terminal:
  .venv/bin/tchat --user NAME --host 127.0.0.1 --discovery-port PORT
(the script prints the exact command; 'source .venv/bin/activate' puts tchat on PATH).
EOF
}

die() {
    if [ "${NOTIFY:-0}" = 1 ]; then tmux -L "$SESSION" display-message -d 5000 "$*" 2>/dev/null || true; fi
    echo "cluster.sh: $*" >&2
    exit 1
}
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # single-quote for sh -c command lines

# -- options ------------------------------------------------------------------------------

SERVERS=3 CLIENTS=2 DISCOVERY_PORT="" MULTICAST_PORT=47471 DEFAULT_DISCOVERY_PORT=47470 LOG_LEVEL=info HEADLESS=0 FRESH=0 DETACH=0 NOTIFY=0
DATA_DIR="$ROOT/data/cluster" SESSION=tchat
COMMAND="" ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --servers) SERVERS=${2:?--servers needs a number}; shift ;;
        --clients) CLIENTS=${2:?--clients needs a number}; shift ;;
        --discovery-port) DISCOVERY_PORT=${2:?--discovery-port needs a port}; shift ;;
        --log-level) LOG_LEVEL=${2:?--log-level needs a level}; shift ;;
        --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift ;;
        --session) SESSION=${2:?--session needs a name}; shift ;;
        --headless) HEADLESS=1 ;;
        --fresh) FRESH=1 ;;
        --detach) DETACH=1 ;;
        --notify) NOTIFY=1 ;; # internal: report through tmux display-message (key bindings)
        -*) [ -n "$COMMAND" ] && ARGS+=("$1") || die "unknown option $1 (see --help)" ;;
        *) if [ -z "$COMMAND" ]; then COMMAND=$1; else ARGS+=("$1"); fi ;;
    esac
    shift
done
COMMAND=${COMMAND:-start}
[[ "$SERVERS" =~ ^[1-9][0-9]?$ ]] || die "--servers must be 1..99"
[[ "$CLIENTS" =~ ^[0-9][0-9]?$ ]] || die "--clients must be 0..99"
[[ -z "$DISCOVERY_PORT" || "$DISCOVERY_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || die "bad --discovery-port"
[[ "$SESSION" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--session: letters, digits, _ . - only"
mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
STATE="$DATA_DIR/cluster.state"
PY="$ROOT/.venv/bin/python"
TCHAT=${TCHAT_BIN:-"$ROOT/.venv/bin/tchat"}
STOP_GRACE=0.4 # seconds a stopping node gets for its last words before kill -9
CLIENT_NAMES=()

tm() { tmux -L "$SESSION" "$@"; } # a tmux server of our own: our key bindings leak nowhere

say() { # a result line: to the terminal, or to the tmux status line when run from a key
    if [ "$NOTIFY" = 1 ]; then tm display-message -d 5000 "$*" 2>/dev/null || true; fi
    echo "$*"
}

# -- environment --------------------------------------------------------------------------

ensure_venv() {
    if [ ! -x "$PY" ]; then
        local py=""
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                py=$candidate; break
            fi
        done
        [ -n "$py" ] || die "Python 3.11 or newer is required (python3.11 not found)"
        echo "Creating .venv with $py ..."
        "$py" -m venv "$ROOT/.venv"
    fi
    if [ ! -x "$TCHAT" ] || ! "$PY" -c 'import tchat.cli, msgpack, textual' 2>/dev/null; then
        echo "Installing tchat into .venv (log: .venv/install.log) ..."
        # Build warnings are noise here; the log keeps them, and a failure shows its tail.
        if ! { "$PY" -m pip install --upgrade pip && "$PY" -m pip install -e "$ROOT"; } \
            >"$ROOT/.venv/install.log" 2>&1; then
            tail -n 20 "$ROOT/.venv/install.log" >&2
            die "installing tchat failed (full log: .venv/install.log)"
        fi
    fi
}

ensure_tmux() {
    command -v tmux >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing tmux with apt-get ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; }
        command -v tmux >/dev/null && return 0
    fi
    die "tmux is required. Install it with one of:
    sudo apt-get install tmux     (Debian, Ubuntu)
    sudo dnf install tmux         (Fedora)
    brew install tmux             (macOS)
then run scripts/cluster.sh again."
}

# -- state --------------------------------------------------------------------------------

load_state() {
    [ -f "$STATE" ] || die "no cluster state in $DATA_DIR (start one with scripts/cluster.sh)"
    # shellcheck disable=SC1090
    source "$STATE"
    if [ ${#CLIENT_NAMES[@]} -eq 0 ]; then # a state file from before client names were kept
        local n
        for ((n = 0; n < CLIENTS; n++)); do CLIENT_NAMES+=("${NAMES[$n]:-user$((n + 1))}"); done
    fi
}

write_state() {
    {
        printf 'SESSION=%q\nDISCOVERY_PORT=%q\nSERVERS=%q\nCLIENTS=%q\n' \
            "$SESSION" "$DISCOVERY_PORT" "$SERVERS" "$CLIENTS"
        printf 'LOG_LEVEL=%q\nCLIENT_MODE=%q\nPORTS=(%s)\n' "$LOG_LEVEL" "$CLIENT_MODE" "${PORTS[*]}"
        printf 'MULTICAST_PORT=%q\nCLIENT_NAMES=(%s)\n' "$MULTICAST_PORT" "${CLIENT_NAMES[*]}"
        printf 'FINGERPRINT=%q\n' "$FINGERPRINT"
    } >"$STATE.new"
    mv -f "$STATE.new" "$STATE" # a key's command never reads half a state file
}

valid_name() { [[ "$1" =~ ^[A-Za-z][A-Za-z0-9_.-]{0,31}$ ]] && [ "$1" != servers ]; }

server_id() { echo $((100 + $1)); }
pid_file() { echo "$DATA_DIR/pids/$1.pid"; }

# The pid in role's pid file if that process is still the tchat we started there, else nothing.
live_pid() {
    local role=$1 file pid mark
    case "$role" in
        server-*) mark="--data-dir $DATA_DIR/$role " ;;
        client-*) mark="--user ${role#client-} --host $HOST --discovery-port $DISCOVERY_PORT " ;;
    esac
    file=$(pid_file "$role")
    [ -f "$file" ] || return 0
    pid=$(<"$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    [ -r "/proc/$pid/cmdline" ] || return 0
    { tr '\0' ' ' <"/proc/$pid/cmdline"; echo; } | grep -qF -- "$mark" && echo "$pid"
    return 0
}

running() { if [ -n "$1" ]; then echo "running, pid $1"; else echo "not running"; fi; }

pane_of() { tm list-panes -s -t "$SESSION" -F '#{@tchat_role} #{pane_id}' 2>/dev/null |
    awk -v r="$1" '$1 == r { print $2 }'; }

free_ports() { # $1 ports free for TCP and UDP on 127.0.0.1, never $2, preferring the ones after
    "$PY" - "$@" <<'EOF'
import socket, sys
wanted, avoid, held, found = int(sys.argv[1]), int(sys.argv[2] or 0), [], []
preferred = [int(p) for p in sys.argv[3:]]
for _ in range(100 * wanted):
    if len(found) == wanted:
        break
    tcp = socket.socket()
    try:
        tcp.bind(("127.0.0.1", preferred.pop(0) if preferred else 0))
    except OSError:
        tcp.close()
        continue
    if tcp.getsockname()[1] == avoid:
        held.append(tcp)
        continue
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", port))
    except OSError:
        tcp.close()
        continue
    held += [tcp, udp]
    found.append(port)
print(" ".join(map(str, found)))
EOF
}

free_discovery_port() { # the first of the candidate ports no one holds for UDP, else a free one
    "$PY" - "$@" <<'EOF'
import socket, sys
def free(port):
    # Daemons bind the discovery port on the broadcast address with SO_REUSEPORT: a plain
    # bind there (and on 127.0.0.1) fails while any of them holds it.
    socks = []
    try:
        for addr in ("127.255.255.255", "127.0.0.1"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()
for port in [int(p) for p in sys.argv[1:] if p]:
    if free(port):
        print(port)
        sys.exit(0)
for _ in range(100):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    if free(port):
        print(port)
        sys.exit(0)
sys.exit("no free UDP port on 127.0.0.1")
EOF
}

hand_command() { # how to start one more client by hand, against this cluster
    printf '%s --user %s --host %s --discovery-port %s --cluster %s' "$(shq "$TCHAT")" \
        "${1:-NAME}" "$HOST" "$DISCOVERY_PORT" "$FINGERPRINT"
}

# The cluster secret: $TCHAT_CLUSTER_KEY, else DATA_DIR/cluster.key (made 0600 on the first
# start and kept by --fresh, so clients' pins stay valid); copied into each server's data
# dir (0600) as an operator would. Prints the cluster key's fingerprint, what clients pin.
cluster_secret() {
    "$PY" - "$DATA_DIR" "$SERVERS" <<'PY'
import os
import sys
from pathlib import Path

from tchat.crypto.cluster import load_cluster_secret
from tchat.runtime.secure import provision_cluster_secret

data, servers = Path(sys.argv[1]), int(sys.argv[2])
secret = load_cluster_secret(os.environ, None, data, create=True)
for n in range(1, servers + 1):
    (data / f"server-{n}").mkdir(parents=True, exist_ok=True)
    if "TCHAT_CLUSTER_KEY" not in os.environ:
        provision_cluster_secret(data / f"server-{n}", secret)
print(secret.public_key.fingerprint)
PY
}

# -- what runs in the panes -----------------------------------------------------------------

run_server() { # exec'd in server N's pane, so the pid file names the daemon itself
    load_state
    local n=$1 id
    id=$(server_id "$n")
    mkdir -p "$DATA_DIR/server-$n" "$DATA_DIR/pids"
    echo $$ >"$(pid_file "server-$n")"
    echo "server $n: id $id on $HOST:${PORTS[$((n - 1))]}, data $DATA_DIR/server-$n"
    exec "$TCHAT" --daemon --host "$HOST" --port "${PORTS[$((n - 1))]}" \
        --discovery-port "$DISCOVERY_PORT" --multicast-port "$MULTICAST_PORT" --id "$id" \
        --data-dir "$DATA_DIR/server-$n" --log-level "$LOG_LEVEL"
}

run_client() {
    load_state
    local name=$1
    mkdir -p "$DATA_DIR/pids"
    echo $$ >"$(pid_file "client-$name")"
    if [ "$CLIENT_MODE" = tui ]; then
        exec "$TCHAT" --user "$name" --host "$HOST" --discovery-port "$DISCOVERY_PORT" \
            --cluster "$FINGERPRINT"
    fi
    echo "headless client $name: /join ROOM  /say ROOM TEXT  /msg USER TEXT  /who  /quit"
    echo "cluster key $FINGERPRINT"
    exec "$TCHAT" --headless --user "$name" --host "$HOST" --discovery-port "$DISCOVERY_PORT" \
        --cluster "$FINGERPRINT"
}

# -- commands -------------------------------------------------------------------------------

write_tmux_conf() {
    local conf="$DATA_DIR/tmux.conf" me
    me="$(shq "$SCRIPT") --data-dir $(shq "$DATA_DIR") --session $SESSION --notify"
    cat >"$conf" <<EOF
# Written by scripts/cluster.sh for this cluster's own tmux server (-L $SESSION).
if-shell "test -f ~/.tmux.conf" "source-file ~/.tmux.conf"
set -g default-shell /bin/sh
set -g remain-on-exit on
set -g remain-on-exit-format " #{@tchat_title} exited (#{?pane_dead_signal,signal #{pane_dead_signal},status #{pane_dead_status}}): prefix+R restarts it "
set -g pane-border-status off
set -g pane-border-format " #{?pane_active,#[reverse],}#{@tchat_title}#[default] #{?pane_dead,(exited),} "
set -g status-left "[tchat] "
set -g status-left-length 10
set -g status-right "prefix+ K kill leader  R restart  S status  Q stop "
set -g status-right-length 52
set -g window-size latest
set -g aggressive-resize on
set -g mouse on
set -g allow-rename off
bind-key K run-shell -b "$me kill-leader >/dev/null 2>&1"
bind-key R run-shell -b "$me restart-dead >/dev/null 2>&1"
bind-key S display-popup -w 100% -h 100% -T " tchat status " -E "$me _status-popup"
bind-key Q confirm-before -p "stop the whole tchat cluster? (y/n)" "run-shell -b \"$me stop >/dev/null 2>&1\""
EOF
    echo "$conf"
}

cmd_start() {
    ensure_tmux
    if tm has-session -t "$SESSION" 2>/dev/null; then
        echo "The cluster's session '$SESSION' is already running."
        [ "$DETACH" = 1 ] && return 0
        cmd_attach
        return
    fi
    ensure_venv
    local -a previous=()
    local stored_port=""
    if [ -f "$STATE" ]; then # same data dirs: keep each address and the discovery port
        previous=($(
            source "$STATE"
            echo "${PORTS[*]}"
        ))
        stored_port=$(
            source "$STATE"
            echo "$DISCOVERY_PORT"
        )
    fi
    if [ "$FRESH" = 1 ]; then # a fresh history, but the same discovery port for hand clients
        rm -rf "$DATA_DIR"/server-* "$DATA_DIR/pids" "$STATE"
    fi
    CLIENT_MODE=headless
    if [ "$HEADLESS" = 0 ]; then # also with no clients: `client NAME` may add some
        if "$PY" -c 'import textual, tchat.ui.app as a; assert callable(a.run_app)' 2>/dev/null; then
            CLIENT_MODE=tui
        else
            echo "Note: the Textual UI (tchat.ui.app) is not available here;" \
                "clients run headless (tchat --headless)."
        fi
    fi
    # One discovery port for the life of this data dir: a client started by hand finds the
    # cluster with the command printed below, today and after the next start.
    if [ -z "$DISCOVERY_PORT" ]; then
        DISCOVERY_PORT=$(free_discovery_port "$stored_port" "$DEFAULT_DISCOVERY_PORT") ||
            die "no free UDP port on $HOST for discovery"
        if [ -n "$stored_port" ] && [ "$DISCOVERY_PORT" != "$stored_port" ]; then
            echo "Note: discovery port $stored_port is taken now; this cluster uses $DISCOVERY_PORT."
        fi
    fi
    # One call, so that no two of the ports are equal: servers and room multicast.
    # A multicast port of its own keeps this cluster's rooms apart from any other on the host.
    read -r -a PORTS <<<"$(free_ports "$((SERVERS + 1))" "$DISCOVERY_PORT" "${previous[@]}")"
    [ "${#PORTS[@]}" = "$((SERVERS + 1))" ] || die "could not find $SERVERS free ports on $HOST"
    MULTICAST_PORT=${PORTS[$SERVERS]}
    unset "PORTS[$SERVERS]"
    local n
    CLIENT_NAMES=()
    for ((n = 0; n < CLIENTS; n++)); do CLIENT_NAMES+=("${NAMES[$n]:-user$((n + 1))}"); done
    rm -rf "$DATA_DIR/pids"
    mkdir -p "$DATA_DIR/pids"
    FINGERPRINT=$(cluster_secret) || die "cannot set up the cluster secret in $DATA_DIR"
    write_state
    local conf me pane
    conf=$(write_tmux_conf)
    me="exec $(shq "$SCRIPT") --data-dir $(shq "$DATA_DIR") --session $SESSION"
    # Window 0: the servers' logs, stacked (log lines are wide). Created at the size of the
    # README's terminal; it follows whatever terminal attaches (window-size latest).
    for ((n = 1; n <= SERVERS; n++)); do
        if [ "$n" = 1 ]; then
            pane=$(tm -f "$conf" new-session -d -s "$SESSION" -n servers -x 100 -y 30 \
                -P -F '#{pane_id}' "$me _run-server $n")
        else
            pane=$(tm split-window -d -t "$pane" -P -F '#{pane_id}' "$me _run-server $n")
            tm select-layout -t "$SESSION:servers" even-vertical >/dev/null
        fi
        label_pane "$pane" "server-$n" "server $n (id $(server_id "$n"))"
    done
    tm set-option -w -t "$SESSION:servers" pane-border-status top
    [ "$SERVERS" -gt 4 ] && tm select-layout -t "$SESSION:servers" tiled >/dev/null
    for name in "${CLIENT_NAMES[@]}"; do client_window "$name" >/dev/null; done
    if [ ${#CLIENT_NAMES[@]} -gt 0 ]; then # people come to chat: open on the first client
        tm select-window -t "$(pane_of "client-${CLIENT_NAMES[0]}")"
    fi
    echo "tchat cluster '$SESSION': $SERVERS servers, $CLIENTS $CLIENT_MODE clients on $HOST," \
        "discovery port $DISCOVERY_PORT, data in $DATA_DIR"
    echo "Cluster key fingerprint: $FINGERPRINT (clients pin it; 'tchat status' shows it)"
    echo "Another client, from any terminal: $(hand_command)"
    echo "  (or: scripts/cluster.sh client NAME, in a window of this session;" \
        "'source .venv/bin/activate' puts tchat on your PATH)"
    if [ "$DETACH" = 1 ] || [ ! -t 0 ] || [ ! -t 1 ]; then # no terminal: nothing to attach
        echo "Attach with: scripts/cluster.sh --session $SESSION --data-dir $(shq "$DATA_DIR") attach"
        return 0
    fi
    cmd_attach
}

label_pane() { # pane role title
    tm set-option -p -t "$1" @tchat_role "$2"
    tm set-option -p -t "$1" @tchat_title "$3"
    tm select-pane -t "$1" -T "$3"
}

client_window() { # a window of its own for client NAME; prints its pane
    local name=$1 pane me
    me="exec $(shq "$SCRIPT") --data-dir $(shq "$DATA_DIR") --session $SESSION"
    pane=$(tm new-window -d -t "$SESSION:" -n "$name" -P -F '#{pane_id}' "$me _run-client $name")
    label_pane "$pane" "client-$name" "client $name ($CLIENT_MODE)"
    echo "$pane"
}

cmd_attach() {
    if [ -n "${TMUX:-}" ]; then
        echo "(You are inside tmux: this nests a second tmux; press the prefix twice to reach it.)"
    fi
    TMUX='' exec tmux -L "$SESSION" attach -t "$SESSION"
}

tchat_status() { # extra args go to tchat status
    "$TCHAT" status --host "$HOST" --discovery-port "$DISCOVERY_PORT" "$@"
}

cmd_status() {
    load_state
    echo "session $SESSION (tmux -L $SESSION), discovery port $DISCOVERY_PORT," \
        "room multicast port $MULTICAST_PORT"
    echo "data $DATA_DIR"
    local n pid name
    for ((n = 1; n <= SERVERS; n++)); do
        pid=$(live_pid "server-$n")
        printf '  server %-2s id %s  %s:%s  %s\n' "$n" "$(server_id "$n")" "$HOST" \
            "${PORTS[$((n - 1))]}" "$(running "$pid")"
    done
    for name in "${CLIENT_NAMES[@]}"; do
        pid=$(live_pid "client-$name")
        printf '  client %-8s %s\n' "$name" "$(running "$pid")"
    done
    echo "another client: $(hand_command)"
    echo
    tchat_status "${ARGS[@]}"
}

cmd_status_popup() { # S: the status in a popup as big as the terminal; long output scrolls
    local out rows cols
    out=$(NOTIFY=0 cmd_status 2>&1)
    rows=$(tput lines 2>/dev/null || echo 24)
    cols=$(tput cols 2>/dev/null || echo 80)
    # Rows as shown: a long line wraps onto more than one.
    if [ "$(printf '%s\n' "$out" | fold -w "$cols" | wc -l)" -lt "$rows" ] ||
        ! command -v less >/dev/null; then
        printf '%s\n(press Enter)' "$out"
        read -r _ || true
    else
        printf '%s\n' "$out" | less -P '(q closes, arrows scroll)'
    fi
}

# Prints "ID EPOCH" of the leader that `tchat status --json` reports.
leader_from_status() {
    tchat_status --json | "$PY" -c '
import json, sys
status = json.load(sys.stdin)
leader = status.get("leader")
if isinstance(leader, dict):
    leader = leader.get("id", leader.get("server_id"))
leader = leader if leader is not None else status.get("leader_id")
epoch = status.get("epoch")
if isinstance(epoch, (list, tuple)):
    epoch = epoch[0]
elif isinstance(epoch, dict):
    epoch = epoch.get("term", epoch.get("number"))
if not leader:
    sys.exit("no leader in the status reply")
print(int(leader), epoch)
'
}

cmd_kill_leader() {
    load_state
    local found id epoch n pid
    found=$(leader_from_status) || { say "kill-leader: no leader found (is the cluster up?)"; exit 1; }
    read -r id epoch <<<"$found"
    n=$((id - 100))
    if ((n < 1 || n > SERVERS)); then
        say "kill-leader: the leader is server id $id, which this cluster did not start"
        exit 1
    fi
    pid=$(live_pid "server-$n")
    [ -n "$pid" ] || { say "kill-leader: server $n (id $id) leads but has no live process"; exit 1; }
    kill -9 "$pid"
    say "killed server $n (id $id, pid $pid), the leader of epoch $epoch, at $(date +%T.%3N)"
}

wait_gone() { # wait_gone SECONDS PID...: until every pid has exited, or the deadline
    local deadline=$1 pid alive step
    shift
    deadline=$(awk -v s="$deadline" 'BEGIN { printf "%d", s * 50 }') # 20 ms steps
    for ((step = 0; step < deadline; step++)); do
        alive=0
        for pid in "$@"; do
            # A zombie (Z) has exited: its parent, the pane's tmux, reaps it.
            if [ -r "/proc/$pid/stat" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
                alive=1
                break
            fi
        done
        [ "$alive" = 0 ] && return 0
        sleep 0.02
    done
    return 1
}

cmd_restart() {
    load_state
    local n=${1:?restart needs a server number}
    [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= SERVERS)) || die "restart: server 1..$SERVERS"
    local pane pid
    pane=$(pane_of "server-$n")
    [ -n "$pane" ] || die "restart: server $n has no pane (is the session '$SESSION' running?)"
    pid=$(live_pid "server-$n")
    if [ -n "$pid" ]; then # a graceful stop first: the daemon hands over leadership
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone 5 "$pid" || true
    fi
    tm respawn-pane -k -t "$pane"
    say "restarted server $n (id $(server_id "$n")) with its data dir $DATA_DIR/server-$n"
}

cmd_client() { # start client NAME: a new window, or its own again if it quit
    load_state
    local name=${1:-}
    valid_name "$name" || die "client: NAME is a letter, then up to 31 letters, digits, _ . - (not 'servers')"
    tm has-session -t "$SESSION" 2>/dev/null || die "client: the session '$SESSION' is not running"
    local pane pid
    pane=$(pane_of "client-$name")
    pid=$(live_pid "client-$name")
    if [ -n "$pid" ]; then
        say "client $name is already running (pid $pid, window $name)"
        return 0
    fi
    if [ -n "$pane" ]; then
        tm respawn-pane -k -t "$pane"
        say "restarted client $name in its window (prefix+w lists the windows)"
        return 0
    fi
    local known=0 other
    for other in "${CLIENT_NAMES[@]}"; do [ "$other" = "$name" ] && known=1; done
    if [ "$known" = 0 ]; then
        CLIENT_NAMES+=("$name")
        CLIENTS=${#CLIENT_NAMES[@]}
        write_state
    fi
    client_window "$name" >/dev/null
    say "started client $name in window $name (prefix+w lists the windows)"
}

cmd_restart_dead() {
    load_state
    local n name restarted=() clients=()
    for ((n = 1; n <= SERVERS; n++)); do
        if [ -z "$(live_pid "server-$n")" ]; then
            (NOTIFY=0 cmd_restart "$n" >/dev/null)
            restarted+=("$n")
        fi
    done
    for name in "${CLIENT_NAMES[@]}"; do
        if [ -z "$(live_pid "client-$name")" ] && [ -n "$(pane_of "client-$name")" ]; then
            (NOTIFY=0 cmd_client "$name" >/dev/null)
            clients+=("$name")
        fi
    done
    local done=()
    [ ${#restarted[@]} -gt 0 ] && done+=("server(s) ${restarted[*]}")
    [ ${#clients[@]} -gt 0 ] && done+=("client(s) ${clients[*]}")
    if [ ${#done[@]} -eq 0 ]; then say "every server and client is running"
    else say "restarted ${done[*]}"; fi
}

stop_pids() { # SIGTERM, a grace of STOP_GRACE seconds, then kill -9 and a bounded wait
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    if ! wait_gone "$STOP_GRACE" "$@"; then
        kill -9 "$@" 2>/dev/null || true
        wait_gone 1 "$@" || true
    fi
}

cmd_stop() {
    load_state
    local file role pid clients=() servers=()
    for file in "$DATA_DIR"/pids/*.pid; do
        [ -e "$file" ] || continue
        role=$(basename "$file" .pid)
        pid=$(live_pid "$role")
        [ -z "$pid" ] && continue
        if [[ "$role" == client-* ]]; then clients+=("$pid"); else servers+=("$pid"); fi
    done
    # Clients first, while a leader still answers their logout (with the servers gone
    # first, each waited seconds for an ack that could not come). Then the servers: the
    # whole cluster goes, so none waits for a handover. Each step has a short grace, then
    # kill -9, which loses nothing acknowledged.
    stop_pids "${clients[@]}"
    stop_pids "${servers[@]}"
    local pids=("${clients[@]}" "${servers[@]}")
    rm -f "$DATA_DIR"/pids/*.pid
    # Said before the tmux server goes: from a key, this script runs under that server.
    echo "stopped the tchat cluster '$SESSION' (${#pids[@]} processes); data kept in $DATA_DIR"
    local socket
    socket=$(tm display-message -p -t "$SESSION" '#{socket_path}' 2>/dev/null || true)
    socket=${socket:-${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SESSION} # where -L puts it
    tm kill-server 2>/dev/null || true
    # tmux leaves its socket file behind; remove it once no server answers on it.
    if [ -n "$socket" ] && [ -S "$socket" ] && ! tm has-session 2>/dev/null; then
        rm -f "$socket"
    fi
}

case "$COMMAND" in
    start) cmd_start ;;
    attach) ensure_tmux; cmd_attach ;;
    status) cmd_status ;;
    kill-leader) cmd_kill_leader ;;
    restart) cmd_restart "${ARGS[0]:-}" ;;
    restart-dead) cmd_restart_dead ;;
    client) cmd_client "${ARGS[0]:-}" ;;
    stop) cmd_stop ;;
    _run-server) run_server "${ARGS[0]}" ;;
    _run-client) run_client "${ARGS[0]}" ;;
    _status-popup) cmd_status_popup ;;
    *) die "unknown command '$COMMAND' (see --help)" ;;
esac
