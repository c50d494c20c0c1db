"""Network and node options: one frozen dataclass from the command line, TOML config and env.

Longer than 400 lines: every option a node takes is declared, merged (command line over
config over environment) and range-checked here, secrets included, so that one reading
shows the whole surface CONTRACT.md promises; split by source, a precedence rule would
live in three places.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tchat.core.codec import MAX_FRAME
from tchat.core.config import Timing
from tchat.core.messages import MAX_PASSWORD, MIN_PASSWORD
from tchat.crypto.keyfiles import KeyFileError, check_private

logger = logging.getLogger(__name__)

DEFAULT_DISCOVERY_PORT = 47470
MAX_FALLBACK_SERVERS = 16  # each discovery round sends one datagram to each
KEY_ENV = "TCHAT_CLUSTER_KEY"
NEXT_KEY_ENV = "TCHAT_NEXT_CLUSTER_KEY"  # a rotation's next secret, step 1 (OPERATIONS.md)
PREVIOUS_KEY_ENV = "TCHAT_PREVIOUS_CLUSTER_KEY"  # the previous secret, step 2
PASSWORD_ENV = "TCHAT_PASSWORD"
MAX_AUTO_AWAY = 24 * 60  # minutes: a day; longer is "never", which 0 says


@dataclass(frozen=True, slots=True)
class NetOptions:
    """Everything the runtime needs to run one node; command line > config file > defaults."""

    host: str = "127.0.0.1"
    port: int = 0
    discovery_port: int = DEFAULT_DISCOVERY_PORT
    broadcast: str = "127.255.255.255"
    cluster_key: bytes | None = None
    # Where the key came from ("environment", "key file PATH", "config PATH", "data dir"):
    # said in the log, never the key itself.
    key_source: str = ""
    # During a rotation: the secret servers also accept (open, verify) while they seal and
    # certify with cluster_key; same form, checked the same way. The next secret in step 1,
    # the previous one in step 2 (``other_key_is_previous``): it says which way the vouch
    # a server sends points, so clients move their pin forward only.
    other_cluster_key: bytes | None = None
    other_key_source: str = ""
    other_key_is_previous: bool = False
    # --insecure: no cluster key, plaintext TCP, no certificates, no pins (said loudly).
    insecure: bool = False
    mode: str = "client"  # client | server | daemon | headless
    user: str | None = None
    theme: str | None = None
    server_id: int | None = None
    data_dir: Path | None = None
    log_level: str = "INFO"
    rate_limit: float = 50.0  # Submit frames per second per client session; 0 = unlimited
    rate_burst: float = 200.0
    max_frame: int = MAX_FRAME
    write_buffer_limit: int = 4 * 1024 * 1024  # a peer that lets this much pile up is dropped
    client_buffer_limit: int = 1024 * 1024  # the same for a client's session on a server
    max_connections: int = 4096  # inbound, in total (never above the open-file limit allows)
    max_connections_per_host: int = 64  # inbound, from one source IP
    register_timeout: float = 5.0  # an inbound session must register (or be a server) by then
    idle_timeout: float = 0.0  # an inbound session silent this long is closed (0: 4 timeouts)
    discovery_rate: float = 10.0  # discovery/status answers per second per source address
    discovery_total_rate: float = 1000.0  # the same, all sources together
    connect_timeout: float = 1.0
    multicast: bool = True  # False: never try multicast, rooms come over the session
    lobby: bool = True  # False: do not follow user-list changes after login (load clients)
    multicast_base: str = "239.255.42.0"
    multicast_port: int = 47471
    # Servers' addresses (host:port) that discovery also asks by unicast: for networks
    # where broadcast does not pass. Bounded by MAX_FALLBACK_SERVERS.
    servers: tuple[str, ...] = ()
    # Seconds without any server's answer before a client says what it tried (0: never).
    discovery_hint: float = 5.0
    timing: Timing = field(default_factory=Timing)
    config_path: Path | None = None
    max_rooms_per_user: int = 100  # a server's limits (docs/OPERATIONS.md, Limits)
    max_room_members: int = 1000
    hot_entries: int = 20_000  # log entries a server keeps in memory (the rest in SQLite)
    identity: Path | None = None  # a client's identity key file (None: the XDG default)
    # --cluster FINGERPRINT: a client accepts only this cluster key (and pins it if new).
    cluster: str | None = None
    # --password-prompt: the account's password, to log in from a machine whose key is not
    # (yet) the account's. Read from TCHAT_PASSWORD or the terminal, never the command line;
    # never shown (repr) and sent only over an encrypted session.
    password: str = field(default="", repr=False)
    auto_away: float = 15.0  # minutes without input before the client goes away (0: never)

    @property
    def key(self) -> bytes | None:
        return self.cluster_key

    @property
    def session_idle_timeout(self) -> float:
        """Seconds without a frame after which an inbound session is closed."""
        return self.idle_timeout if self.idle_timeout > 0 else 4 * self.timing.client_timeout


# --------------------------------------------------------------------------- defaults
INSECURE_WARNING = (
    "RUNNING WITH --insecure: TCP sessions and room multicast are PLAINTEXT and "
    "UNAUTHENTICATED. Anyone on "
    "this network can read every message, speak as any user and take the cluster over. "
    "Never use it outside a throwaway test."
)


def warn_insecure(role: str) -> None:
    """The loud warning of --insecure, once per start of a node."""
    logger.warning("%s: %s", role, INSECURE_WARNING)


def primary_address() -> str:
    """The address the default route leaves from (no packet is sent), else loopback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks a route
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def broadcast_for(host: str) -> str:
    """The broadcast address of the interface that holds ``host``."""
    addr = ipaddress.IPv4Address(host)
    if addr.is_loopback:
        return "127.255.255.255"
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=2, check=True
        ).stdout
        for iface in json.loads(out):
            for info in iface.get("addr_info", []):
                if info.get("local") == host:
                    if info.get("broadcast"):
                        return str(info["broadcast"])
                    net = ipaddress.IPv4Network(f"{host}/{info.get('prefixlen', 24)}", strict=False)
                    return str(net.broadcast_address)
    except (OSError, subprocess.SubprocessError, ValueError):
        logger.debug("ip -j addr failed; assuming a /24", exc_info=True)
    return str(ipaddress.IPv4Network(f"{host}/24", strict=False).broadcast_address)


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tchat" / "config.toml"


def data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tchat"


def default_data_dir(server_id: int) -> Path:
    """Where a server without ``--data-dir`` keeps its data: under its ID, as README says."""
    return data_home() / str(server_id)


def parse_server_addr(text: str) -> str:
    """``HOST:PORT`` of a fallback server, checked: an IPv4 address and a port 1..65535."""
    host, sep, port = str(text).strip().rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        number = int(port)
    except ValueError:
        number = 0
    if not sep or not 1 <= number <= 65535:
        raise SystemExit(f"tchat: --server wants HOST:PORT (an IPv4 address), not {text!r}")
    return f"{host}:{number}"


# --------------------------------------------------------------------------- argparse
def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of CONTRACT.md that every mode (and ``tchat status``) takes."""
    net = parser.add_argument_group("network")
    net.add_argument("--host", help="address to bind and advertise")
    net.add_argument("--port", type=int, help="TCP/UDP port of this node (0 = any free port)")
    net.add_argument("--discovery-port", type=int, help="UDP port for broadcast discovery")
    net.add_argument("--broadcast", help="broadcast address for discovery")
    # Bare, --server is the dashboard mode (CONTRACT.md); with an address it names a server
    # that discovery also asks directly, for networks where broadcast does not pass.
    net.add_argument(
        "--server",
        nargs="?",
        const="",
        action="append",
        metavar="HOST:PORT",
        help="bare: run a server with the Textual dashboard; HOST:PORT (repeatable): "
        "also ask this server directly when looking for the cluster",
    )
    net.add_argument(
        "--discovery-hint",
        type=float,
        help="seconds without an answer before a client says what it tried (0 = never)",
    )
    net.add_argument(
        "--cluster-key-file",
        type=Path,
        metavar="FILE",
        help=f"file (mode 0600) holding the servers' shared secret (or ${KEY_ENV})",
    )
    net.add_argument(
        "--next-cluster-key-file",
        type=Path,
        metavar="FILE",
        help="a server's next cluster secret during a rotation's step 1 (or $"
        f"{NEXT_KEY_ENV}): accepted beside the current one (docs/OPERATIONS.md)",
    )
    net.add_argument(
        "--previous-cluster-key-file",
        type=Path,
        metavar="FILE",
        help="a server's previous cluster secret during a rotation's step 2 (or $"
        f"{PREVIOUS_KEY_ENV}): accepted beside the current one, and it vouches for it",
    )
    # Gone: an argument is in `ps` and /proc/PID/cmdline for every local user to read.
    net.add_argument("--cluster-key", action=_RefuseKeyArgument, help=argparse.SUPPRESS)
    net.add_argument("--config", type=Path, help="TOML config file (command line wins)")
    net.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="DANGER: plaintext TCP without certificates: anyone on the LAN reads and forges",
    )
    net.add_argument(
        "--cluster",
        metavar="FINGERPRINT",
        help="accept only the cluster with this key fingerprint (SHA256:...), pinning it",
    )
    net.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    net.add_argument(
        "--no-multicast", action="store_true", default=None, help="receive rooms over the session"
    )
    net.add_argument("--multicast-base", help="first multicast group of the room range")
    net.add_argument("--multicast-port", type=int, help="UDP port of the room groups")
    net.add_argument("--max-frame", type=int, help="largest accepted frame in bytes")
    net.add_argument("--heartbeat", type=float, help="leader heartbeat interval (s)")
    net.add_argument("--leader-timeout", type=float, help="backups suspect a silent leader (s)")


class _RefuseKeyArgument(argparse.Action):
    """``--cluster-key KEY``: refused with what to do instead (exit 2, as argparse errors)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs["nargs"] = "?"
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        parser.error(
            "--cluster-key is gone: a secret on the command line is visible to every local "
            f"user (ps). Set {KEY_ENV}=KEY in the environment or use --cluster-key-file FILE "
            "(mode 0600)"
        )


def refuse(message: str) -> typing.NoReturn:
    """A usage error of the command line or config: said on stderr, exit status 2."""
    print(f"tchat: {message}", file=sys.stderr)
    raise SystemExit(2)


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--daemon", action="store_true", help="headless server node")
    modes.add_argument("--headless", action="store_true", help="scriptable JSON-lines client")
    parser.add_argument("--user", help="user name (client modes)")
    parser.add_argument(
        "--identity",
        type=Path,
        metavar="FILE",
        help="identity key file (client modes; default $XDG_DATA_HOME/tchat/identity.key)",
    )
    parser.add_argument(
        "--password-prompt",
        action="store_true",
        help=f"log in with the account's password (from ${PASSWORD_ENV} or asked on the "
        "terminal): adds this machine's key to the account",
    )
    parser.add_argument("--theme", help="Textual theme name")
    parser.add_argument(
        "--auto-away",
        type=float,
        metavar="MIN",
        help=f"go away ('idle') after MIN minutes without input (default 15, 0 = never, "
        f"at most {MAX_AUTO_AWAY})",
    )
    parser.add_argument("--id", type=int, dest="server_id", help="unique server ID")
    parser.add_argument("--data-dir", type=Path, help="server data directory")
    parser.add_argument(
        "--rate-limit", type=float, help="Submit frames/s per client session (0 = off)"
    )
    parser.add_argument("--rate-burst", type=float, help="token bucket size for --rate-limit")
    limits = parser.add_argument_group("server limits (see docs/OPERATIONS.md)")
    limits.add_argument("--max-connections", type=int, help="inbound connections in total")
    limits.add_argument(
        "--max-connections-per-host", type=int, help="inbound connections from one IP (0 = off)"
    )
    limits.add_argument(
        "--register-timeout", type=float, help="seconds an inbound session has to register"
    )
    limits.add_argument(
        "--idle-timeout", type=float, help="close an inbound session silent this long (s)"
    )
    limits.add_argument(
        "--client-buffer-limit", type=int, help="bytes queued for a client that does not read"
    )
    limits.add_argument(
        "--discovery-rate", type=float, help="discovery answers/s per source address (0 = off)"
    )
    limits.add_argument(
        "--discovery-total-rate", type=float, help="discovery answers/s in total (0 = off)"
    )


def _load_toml(path: Path | None, explicit: bool) -> dict[str, Any]:
    if path is None or not path.exists():
        if explicit:
            raise SystemExit(f"tchat: config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            conf = tomllib.load(fh)
            if "cluster_key" in conf:
                # Checked on the file we read: a config with a secret must be ours alone.
                check_private(os.fstat(fh.fileno()), path, "config file")
            return conf
    except KeyFileError as exc:
        refuse(f"{exc} (it holds cluster_key)")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"tchat: cannot read config {path}: {exc}") from exc


def other_cluster_key_of(
    args: argparse.Namespace, conf: dict[str, Any], config_path: Path, which: str
) -> tuple[bytes | None, str]:
    """A rotation's other secret, ``which`` = "next" (step 1) or "previous" (step 2):
    --WHICH-cluster-key-file > $TCHAT_WHICH_CLUSTER_KEY > the config's
    ``WHICH_cluster_key_file``; (None, "") when none is given."""
    from tchat.crypto.cluster import ClusterSecret, parse_secret, read_cluster_secret
    from tchat.crypto.errors import CryptoError

    setting = f"{which}_cluster_key_file"
    env_var = NEXT_KEY_ENV if which == "next" else PREVIOUS_KEY_ENV
    try:
        given = getattr(args, setting, None)
        named = conf.get(setting)
        if given is None and named is not None and not isinstance(named, str):
            refuse(f"{setting} in {config_path} must be a path")
        env = os.environ.get(env_var)
        where = given if given is not None else (named if not env else None)
        if where is not None:
            path = Path(where).expanduser()
            return read_cluster_secret(path).export_line().encode(), f"key file {path}"
        if env:
            secret = ClusterSecret(parse_secret(env, env_var))
            return secret.export_line().encode(), f"environment ({which})"
    except KeyFileError as exc:
        refuse(str(exc))
    except CryptoError as exc:
        refuse(f"{exc} (`tchat key new --cluster-key-file FILE` makes one)")
    return None, ""


def cluster_key_of(
    args: argparse.Namespace, conf: dict[str, Any], config_path: Path
) -> tuple[bytes | None, str]:
    """(key, where it came from): --cluster-key-file > $TCHAT_CLUSTER_KEY > the config's
    ``cluster_key_file`` or ``cluster_key``; (None, "") when none is given.

    Checked once, here, in every mode: a cluster secret is 32 bytes (servers derive their
    signing and sealing keys from it), so a phrase is refused with the fix, not at the
    first handshake. Kept as its one canonical line, whichever form it was given in.
    """
    # Imported here: a client without a key never loads the cluster's key derivation.
    from tchat.crypto.cluster import ClusterSecret, parse_secret, read_cluster_secret
    from tchat.crypto.errors import CryptoError

    def line(secret: ClusterSecret) -> bytes:
        return secret.export_line().encode("ascii")

    try:
        given = getattr(args, "cluster_key_file", None)
        if given is not None:
            return line(read_cluster_secret(Path(given).expanduser())), f"key file {given}"
        env = os.environ.get(KEY_ENV)
        if env:
            return line(ClusterSecret(parse_secret(env, KEY_ENV))), "environment"
        named = conf.get("cluster_key_file")
        if named is not None:
            if not isinstance(named, str):
                refuse(f"cluster_key_file in {config_path} must be a path")
            return line(read_cluster_secret(Path(named).expanduser())), f"key file {named}"
        inline = conf.get("cluster_key")
        if inline is not None:
            if not isinstance(inline, str):
                refuse(f"cluster_key in {config_path} must be a string")
            where = f"cluster_key in {config_path}"
            return line(ClusterSecret(parse_secret(inline, where))), f"config {config_path}"
    except KeyFileError as exc:
        refuse(str(exc))
    except CryptoError as exc:
        refuse(f"{exc} (`tchat key new --cluster-key-file FILE` makes one)")
    return None, ""


# config-file key (also the dest of the argparse option) -> NetOptions field
_SIMPLE = {
    "host": "host",
    "port": "port",
    "discovery_port": "discovery_port",
    "broadcast": "broadcast",
    "log_level": "log_level",
    "user": "user",
    "theme": "theme",
    "server_id": "server_id",
    "id": "server_id",
    "data_dir": "data_dir",
    "rate_limit": "rate_limit",
    "rate_burst": "rate_burst",
    "max_connections": "max_connections",
    "max_connections_per_host": "max_connections_per_host",
    "register_timeout": "register_timeout",
    "idle_timeout": "idle_timeout",
    "client_buffer_limit": "client_buffer_limit",
    "discovery_rate": "discovery_rate",
    "discovery_total_rate": "discovery_total_rate",
    "max_frame": "max_frame",
    "multicast_base": "multicast_base",
    "multicast_port": "multicast_port",
    "max_rooms_per_user": "max_rooms_per_user",
    "max_room_members": "max_room_members",
    "hot_entries": "hot_entries",
    "discovery_hint": "discovery_hint",
    "identity": "identity",
    "auto_away": "auto_away",
}


def account_password(mode: str, insecure: bool, user: str | None) -> str:
    """``--password-prompt``: the password from $TCHAT_PASSWORD, else asked on the terminal
    (getpass reads /dev/tty, so a headless client's stdin stays its command stream)."""
    if mode not in ("client", "headless"):
        refuse("--password-prompt is for a client (tchat --user NAME, or --headless)")
    if insecure:
        refuse(
            "--password-prompt cannot go with --insecure: a password travels only over an "
            "encrypted session"
        )
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        import getpass

        try:
            password = getpass.getpass(f"password for {user or 'your account'}: ")
        except (EOFError, OSError) as exc:
            refuse(f"--password-prompt: no terminal to ask on and no ${PASSWORD_ENV} ({exc})")
    size = len(password.encode("utf-8", "surrogatepass"))
    if not MIN_PASSWORD <= size <= MAX_PASSWORD:
        refuse(
            f"--password-prompt: a password has {MIN_PASSWORD} to {MAX_PASSWORD} bytes, "
            f"this one {size}"
        )
    return password


def options_from_args(args: argparse.Namespace, mode: str) -> NetOptions:
    """Merge defaults < TOML config < environment (key) < command line into NetOptions.

    The cluster key is never taken from the command line itself (only a file's name).
    """
    explicit = getattr(args, "config", None)
    config_path = explicit or default_config_path()
    conf = _load_toml(config_path, explicit is not None)
    values: dict[str, Any] = {"mode": mode, "config_path": config_path if conf else None}
    flat = {k.replace("-", "_"): v for k, v in conf.items() if not isinstance(v, dict)}
    for source in (flat, vars(args)):
        for option, name in _SIMPLE.items():
            if source.get(option) is not None:
                values[name] = source[option]
    if values.get("data_dir") is not None:
        values["data_dir"] = Path(values["data_dir"]).expanduser()
    if values.get("identity") is not None:
        values["identity"] = Path(values["identity"]).expanduser()
    values["cluster_key"], values["key_source"] = cluster_key_of(args, conf, config_path)
    values["insecure"] = bool(getattr(args, "insecure", None) or conf.get("insecure") is True)
    following = other_cluster_key_of(args, conf, config_path, "next")
    previous = other_cluster_key_of(args, conf, config_path, "previous")
    if following[0] is not None and previous[0] is not None:
        refuse(
            "a rotation is at one step: the next cluster key (step 1) or the previous one"
            ' (step 2), not both (docs/OPERATIONS.md, "Rotating the cluster secret")'
        )
    values["other_key_is_previous"] = previous[0] is not None
    values["other_cluster_key"], values["other_key_source"] = (
        previous if previous[0] is not None else following
    )
    if values["insecure"] and values["cluster_key"] is not None:
        refuse(f"--insecure runs without a cluster key, but one is given ({values['key_source']})")
    if values["other_cluster_key"] is not None:
        which = "previous" if values["other_key_is_previous"] else "next"
        if values["insecure"]:
            refuse(f"--insecure runs without cluster keys, but a {which} one is given")
        if values["other_cluster_key"] == values["cluster_key"]:
            refuse(f"the {which} cluster key ({values['other_key_source']}) is the current one")
    if getattr(args, "password_prompt", False):
        values["password"] = account_password(mode, values["insecure"], values.get("user"))
    if flat.get("multicast") is False or getattr(args, "no_multicast", None):
        values["multicast"] = False
    cluster = getattr(args, "cluster", None) or flat.get("cluster")
    if cluster is not None:
        if not isinstance(cluster, str) or not cluster.startswith("SHA256:") or len(cluster) > 64:
            raise SystemExit(f"tchat: --cluster takes a fingerprint SHA256:..., not {cluster!r}")
        values["cluster"] = cluster
    timing = dict(conf.get("timing", {}))
    if getattr(args, "heartbeat", None):
        timing["heartbeat_interval"] = args.heartbeat
    if getattr(args, "leader_timeout", None):
        timing["leader_timeout"] = args.leader_timeout
    known = {f.name for f in dataclasses.fields(Timing)}
    unknown = set(timing) - known
    if unknown:
        raise SystemExit(f"tchat: unknown [timing] keys: {', '.join(sorted(unknown))}")
    values["timing"] = Timing(**{k: float(v) for k, v in timing.items()})
    values["servers"] = _fallback_servers(conf.get("servers"), getattr(args, "server", None))
    if "host" not in values:
        values["host"] = primary_address()
    try:
        ipaddress.IPv4Address(values["host"])
    except ValueError as exc:
        raise SystemExit(f"tchat: --host must be an IPv4 address: {exc}") from exc
    if "broadcast" not in values:
        values["broadcast"] = broadcast_for(values["host"])
    values["log_level"] = str(values.get("log_level", "INFO")).upper()
    for name in _NON_NEGATIVE:
        value = values.get(name)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise SystemExit(f"tchat: {name} must be a number >= 0, not {value!r}")
    auto_away = values.get("auto_away")
    if auto_away is not None and (
        type(auto_away) not in (int, float) or not 0 <= auto_away <= MAX_AUTO_AWAY
    ):
        raise SystemExit(
            f"tchat: auto_away must be minutes in 0..{MAX_AUTO_AWAY}, not {auto_away!r}"
        )
    for limit in ("max_rooms_per_user", "max_room_members", "hot_entries"):
        if limit in values and (type(values[limit]) is not int or values[limit] < 1):
            raise SystemExit(f"tchat: {limit} must be a whole number of at least 1")
    return NetOptions(**values)


# Limits from the command line or the config file: a negative one would disable a check.
_NON_NEGATIVE = (
    "rate_limit",
    "rate_burst",
    "max_connections",
    "max_connections_per_host",
    "register_timeout",
    "idle_timeout",
    "client_buffer_limit",
    "discovery_rate",
    "discovery_total_rate",
    "discovery_hint",
)


def wants_dashboard(args: argparse.Namespace) -> bool:
    """A bare ``--server``: the server mode with the Textual dashboard."""
    return "" in (getattr(args, "server", None) or [])


def _fallback_servers(configured: object, given: list[str] | None) -> tuple[str, ...]:
    """``servers = [...]`` from the config and every ``--server HOST:PORT``, checked."""
    if configured is None:
        configured = []
    if not isinstance(configured, list):
        raise SystemExit('tchat: servers in the config must be a list of "HOST:PORT"')
    found: list[str] = []
    for text in [*configured, *(given or [])]:
        if text == "":
            continue  # the bare --server of the dashboard mode
        addr = parse_server_addr(text)
        if addr not in found:
            found.append(addr)
    if len(found) > MAX_FALLBACK_SERVERS:
        raise SystemExit(f"tchat: at most {MAX_FALLBACK_SERVERS} --server addresses")
    return tuple(found)
