#!/usr/bin/env bash
# The README's run command: a whole tchat cluster on 127.0.0.1 in one tmux session,
# one pane per server daemon and per client, with keys to kill the leader and watch the failover.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/scripts/cluster.sh"
HOST=127.0.0.1 # never anything else: this script only ever runs a loopback cluster
NAMES=(alice bob carol dave erin frank grace heidi ivan judy)

usage() {
    cat <<EOF
Usage: scripts/cluster.sh [OPTIONS] [COMMAND]

Runs a tchat cluster on 127.0.0.1 inside a tmux session: N server daemons and
M clients, each in its own titled pane. On a fresh clone it creates .venv,
installs tchat into it and installs tmux (apt-get, when run as root).

Commands:
  start            (default) create the session and attach to it
  attach           attach to a running cluster's session
  status [--json]  the local processes, then the cluster as discovery sees it
  kill-leader      kill -9 the current leader (found with 'tchat status --json')
  restart N        restart server N in its pane, with its data dir
  restart-dead     restart every server whose process has exited
  stop             end the session and every process of the cluster

Options for start:
  --servers N           server daemons (default 3), ids 101, 102, ...
  --clients M           clients (default 2): alice, bob, carol, ...
  --discovery-port P    UDP discovery port shared by the cluster (default: a free one)
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
  R   restart every server that exited: killed, or stopped by a failed core step
      (exit status 1, fail-stop); it reloads its data and rejoins as backup
  S   show the cluster status in a popup
  Q   stop the whole cluster
  arrows / o   move between panes; d   detach (the cluster keeps running)

Clients run the Textual UI ('tchat --user NAME') when it is installed, else the
headless client ('tchat --headless --user NAME'): type /join ROOM, /say ROOM TEXT,
/msg USER TEXT, /who, /quit.
EOF
}

die() { echo "cluster.sh: $*" >&2; exit 1; }
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # single-quote for sh -c command lines

# -- options ------------------------------------------------------------------------------

SERVERS=3 CLIENTS=2 DISCOVERY_PORT="" MULTICAST_PORT=47471 LOG_LEVEL=info HEADLESS=0 FRESH=0 DETACH=0 NOTIFY=0
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
}

write_state() {
    {
        printf 'SESSION=%q\nDISCOVERY_PORT=%q\nSERVERS=%q\nCLIENTS=%q\n' \
            "$SESSION" "$DISCOVERY_PORT" "$SERVERS" "$CLIENTS"
        printf 'LOG_LEVEL=%q\nCLIENT_MODE=%q\nPORTS=(%s)\n' "$LOG_LEVEL" "$CLIENT_MODE" "${PORTS[*]}"
        printf 'MULTICAST_PORT=%q\n' "$MULTICAST_PORT"
    } >"$STATE"
}

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

free_ports() { # $1 ports free for both TCP and UDP on 127.0.0.1, preferring the ones after it
    "$PY" - "$@" <<'EOF'
import socket, sys
wanted, held, found = int(sys.argv[1]), [], []
preferred = [int(p) for p in sys.argv[2:]]
for _ in range(100 * wanted):
    if len(found) == wanted:
        break
    tcp = socket.socket()
    try:
        tcp.bind(("127.0.0.1", preferred.pop(0) if preferred else 0))
    except OSError:
        tcp.close()
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
        exec "$TCHAT" --user "$name" --host "$HOST" --discovery-port "$DISCOVERY_PORT"
    fi
    echo "headless client $name: /join ROOM  /say ROOM TEXT  /msg USER TEXT  /who  /quit"
    exec "$TCHAT" --headless --user "$name" --host "$HOST" --discovery-port "$DISCOVERY_PORT"
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
set -g remain-on-exit-format " #{@tchat_title} exited (#{?pane_dead_signal,signal #{pane_dead_signal},status #{pane_dead_status}}): prefix+R restarts exited servers "
set -g pane-border-status top
set -g pane-border-format " #{?pane_active,#[reverse],}#{@tchat_title}#[default] #{?pane_dead,(exited),} "
set -g status-left "[tchat] "
set -g status-left-length 20
set -g status-right "prefix+K kill leader  R restart  S status  Q stop "
set -g status-right-length 60
set -g mouse on
set -g allow-rename off
bind-key K run-shell -b "$me kill-leader >/dev/null 2>&1"
bind-key R run-shell -b "$me restart-dead >/dev/null 2>&1"
bind-key S display-popup -w 90% -h 70% -E "$me status; printf '\\\\n(press Enter)'; read x"
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
    if [ "$FRESH" = 1 ]; then
        rm -rf "$DATA_DIR"/server-* "$DATA_DIR/pids" "$STATE"
    elif [ -f "$STATE" ]; then # same data dirs: keep each server's address when it is free
        previous=($(
            source "$STATE"
            echo "${PORTS[*]}"
        ))
    fi
    CLIENT_MODE=headless
    if [ "$HEADLESS" = 0 ] && [ "$CLIENTS" -gt 0 ]; then
        if "$PY" -c 'import tchat.ui.app as a; assert callable(a.run_client)' 2>/dev/null; then
            CLIENT_MODE=tui
        else
            echo "Note: the Textual UI (tchat.ui.app.run_client) is not available here;" \
                "clients run headless (tchat --headless)."
        fi
    fi
    # One call, so that no two of the ports are equal: servers, discovery, room multicast.
    # A multicast port of its own keeps this cluster's rooms apart from any other on the host.
    read -r -a PORTS <<<"$(free_ports "$((SERVERS + 2))" "${previous[@]}")"
    [ "${#PORTS[@]}" = "$((SERVERS + 2))" ] || die "could not find $SERVERS free ports on $HOST"
    local spare=${PORTS[$SERVERS]} i
    MULTICAST_PORT=${PORTS[$((SERVERS + 1))]}
    unset "PORTS[$((SERVERS + 1))]" "PORTS[$SERVERS]"
    for i in "${!PORTS[@]}"; do
        [ "${PORTS[$i]}" = "$DISCOVERY_PORT" ] && PORTS[i]=$spare
    done
    if [ "$MULTICAST_PORT" = "$DISCOVERY_PORT" ]; then MULTICAST_PORT=$spare; fi
    DISCOVERY_PORT=${DISCOVERY_PORT:-$spare}
    rm -rf "$DATA_DIR/pids"
    mkdir -p "$DATA_DIR/pids"
    write_state
    local conf me pane n title role
    conf=$(write_tmux_conf)
    me="exec $(shq "$SCRIPT") --data-dir $(shq "$DATA_DIR") --session $SESSION"
    local -a roles=() titles=() commands=()
    for ((n = 1; n <= SERVERS; n++)); do
        roles+=("server-$n")
        titles+=("server $n (id $(server_id "$n"))")
        commands+=("$me _run-server $n")
    done
    for ((n = 0; n < CLIENTS; n++)); do
        local name=${NAMES[$n]:-user$((n + 1))}
        roles+=("client-$name")
        titles+=("client $name ($CLIENT_MODE)")
        commands+=("$me _run-client $name")
    done
    for n in "${!roles[@]}"; do
        if [ "$n" = 0 ]; then
            pane=$(tm -f "$conf" new-session -d -s "$SESSION" -n cluster -x 200 -y 50 \
                -P -F '#{pane_id}' "${commands[$n]}")
        else
            pane=$(tm split-window -d -t "$SESSION:cluster" -P -F '#{pane_id}' "${commands[$n]}")
            tm select-layout -t "$SESSION:cluster" tiled >/dev/null
        fi
        tm set-option -p -t "$pane" @tchat_role "${roles[$n]}"
        tm set-option -p -t "$pane" @tchat_title "${titles[$n]}"
        tm select-pane -t "$pane" -T "${titles[$n]}"
    done
    tm select-layout -t "$SESSION:cluster" tiled >/dev/null
    echo "tchat cluster '$SESSION': $SERVERS servers, $CLIENTS $CLIENT_MODE clients on $HOST," \
        "discovery port $DISCOVERY_PORT, data in $DATA_DIR"
    if [ "$DETACH" = 1 ] || [ ! -t 0 ] || [ ! -t 1 ]; then # no terminal: nothing to attach
        echo "Attach with: scripts/cluster.sh --session $SESSION --data-dir $(shq "$DATA_DIR") attach"
        return 0
    fi
    cmd_attach
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
        "rooms on multicast port $MULTICAST_PORT, data $DATA_DIR"
    local n pid name
    for ((n = 1; n <= SERVERS; n++)); do
        pid=$(live_pid "server-$n")
        printf '  server %-2s id %s  %s:%s  %s\n' "$n" "$(server_id "$n")" "$HOST" \
            "${PORTS[$((n - 1))]}" "$(running "$pid")"
    done
    for ((n = 0; n < CLIENTS; n++)); do
        name=${NAMES[$n]:-user$((n + 1))}
        pid=$(live_pid "client-$name")
        printf '  client %-6s %s\n' "$name" "$(running "$pid")"
    done
    echo
    tchat_status "${ARGS[@]}"
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
        for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    tm respawn-pane -k -t "$pane"
    say "restarted server $n (id $(server_id "$n")) with its data dir $DATA_DIR/server-$n"
}

cmd_restart_dead() {
    load_state
    local n restarted=()
    for ((n = 1; n <= SERVERS; n++)); do
        if [ -z "$(live_pid "server-$n")" ]; then
            (NOTIFY=0 cmd_restart "$n" >/dev/null)
            restarted+=("$n")
        fi
    done
    if [ ${#restarted[@]} -eq 0 ]; then say "every server is running"
    else say "restarted server(s) ${restarted[*]}"; fi
}

cmd_stop() {
    load_state
    local file pid pids=()
    for file in "$DATA_DIR"/pids/*.pid; do
        [ -e "$file" ] || continue
        pid=$(live_pid "$(basename "$file" .pid)")
        [ -n "$pid" ] && pids+=("$pid")
    done
    # SIGTERM first: daemons stop gracefully and clients log out.
    [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    local socket
    socket=$(tm display-message -p -t "$SESSION" '#{socket_path}' 2>/dev/null || true)
    socket=${socket:-${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SESSION} # where -L puts it
    tm kill-server 2>/dev/null || true
    # tmux leaves its socket file behind; remove it once no server answers on it.
    if [ -n "$socket" ] && [ -S "$socket" ] && ! tm has-session 2>/dev/null; then
        rm -f "$socket"
    fi
    rm -f "$DATA_DIR"/pids/*.pid
    echo "stopped the tchat cluster '$SESSION' (${#pids[@]} processes); data kept in $DATA_DIR"
}

case "$COMMAND" in
    start) cmd_start ;;
    attach) ensure_tmux; cmd_attach ;;
    status) cmd_status ;;
    kill-leader) cmd_kill_leader ;;
    restart) cmd_restart "${ARGS[0]:-}" ;;
    restart-dead) cmd_restart_dead ;;
    stop) cmd_stop ;;
    _run-server) run_server "${ARGS[0]}" ;;
    _run-client) run_client "${ARGS[0]}" ;;
    *) die "unknown command '$COMMAND' (see --help)" ;;
esac
