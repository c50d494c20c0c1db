"""``tchat admin``: operator commands proven with the cluster secret (``release-name NAME``).

The secret comes as for every node (``TCHAT_CLUSTER_KEY`` or ``--cluster-key-file``, never
the command line). The leader is found as ``tchat status`` finds it (discovery on
``--host``, or the ``--server`` addresses); the command then goes to it by unicast, MACed
with the secret over a challenge the leader drew for it (tchat/crypto/admin.py), so a
captured command is good for nothing afterwards. Exit status: 0 done, 1 refused, not found
or no answer, 2 a usage error (as argparse's).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from tchat.crypto import admin
from tchat.crypto.cluster import ClusterSecret, parse_secret
from tchat.crypto.errors import CryptoError
from tchat.runtime import eventloop
from tchat.runtime.connection import split_addr
from tchat.runtime.options import KEY_ENV, NetOptions, add_network_arguments, options_from_args
from tchat.runtime.status import gather_clusters, summarize

TRIES = 3  # datagrams of each step, a second apart: UDP may lose one
STEP_TIMEOUT = 1.0
RESULT_WAIT = 8.0  # the server answers within its CONFIRM_TIMEOUT (5 s) of the command
MAX_HOPS = 3  # "not the leader, it is at ...": followed this many times at most
MAX_STRAY = 64  # datagrams that are not our answer, read and ignored per wait
MAX_CANDIDATES = 4  # leaders (or --server addresses) tried, the likeliest first


class AdminFailed(Exception):
    """The command could not be carried out; the message says why (exit status 1)."""


def leader_candidates(options: NetOptions, secret: ClusterSecret, wait: float) -> list[str]:
    """Addresses to try, the likeliest leader first: the ``--server`` addresses as given,
    else the leaders that discovery heard, our own cluster's (by its key) first."""
    if options.servers:
        return list(options.servers)
    heard = eventloop.run(gather_clusters(options, wait))
    ours = secret.public_key.fingerprint
    found: list[str] = []
    for fingerprint in sorted(heard.clusters, key=lambda fp: fp != ours):
        replies = heard.replies(fingerprint)
        if replies:
            addr = summarize(replies)["leader_addr"]
            if addr and addr not in found:
                found.append(addr)
    return found


class AdminSession:
    """One operator command over one UDP socket: hello, challenge, command, result."""

    def __init__(self, options: NetOptions, secret: ClusterSecret) -> None:
        self.secret = secret
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((options.host, 0))

    def close(self) -> None:
        self.sock.close()

    def run(self, addr: str, op: str, arg: str) -> admin.Result:
        """Carry ``op arg`` out at the leader, starting at ``addr``; follows redirects."""
        for _hop in range(MAX_HOPS):
            nonce = os.urandom(admin.NONCE_SIZE)
            hello = admin.encode(admin.Hello(nonce), None)
            challenge = self._exchange(addr, hello, nonce, admin.Challenge)
            assert isinstance(challenge, admin.Challenge)
            if not challenge.leader and challenge.leader_addr and challenge.leader_addr != addr:
                addr = challenge.leader_addr
                continue
            command = admin.encode(admin.Command(nonce, challenge.challenge, op, arg), self.secret)
            # One copy (a second would find its challenge spent), answered once the
            # release commits: up to the server's CONFIRM_TIMEOUT, plus the way back.
            result = self._exchange(addr, command, nonce, admin.Result, tries=1, wait=RESULT_WAIT)
            assert isinstance(result, admin.Result)
            if result.outcome == "not-leader" and result.leader_addr not in ("", addr):
                addr = result.leader_addr
                continue
            return result
        raise AdminFailed(f"the leader moved {MAX_HOPS} times: try again")

    def _exchange(
        self,
        addr: str,
        data: bytes,
        nonce: bytes,
        want: type,
        tries: int = TRIES,
        wait: float = STEP_TIMEOUT,
    ) -> admin.AdminMessage:
        """Send ``data`` to ``addr`` until its MACed answer for ``nonce`` comes (bounded)."""
        host, port = split_addr(addr)
        for _ in range(tries):
            self.sock.sendto(data, (host, port))
            answer = self._wait(nonce, want, time.monotonic() + wait)
            if answer is not None:
                return answer
        raise AdminFailed(f"no answer from {addr} (is it a server of this cluster?)")

    def _wait(self, nonce: bytes, want: type, deadline: float) -> admin.AdminMessage | None:
        for _ in range(MAX_STRAY):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, _src = self.sock.recvfrom(admin.MAX_ADMIN_DATAGRAM + 1)
            except TimeoutError:
                return None
            try:
                message, _used = admin.decode(data, (self.secret,))
            except CryptoError:
                continue  # not from a holder of our secret: a stranger, or another cluster
            if isinstance(message, want) and getattr(message, "client_nonce", b"") == nonce:
                return message
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tchat admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    release = sub.add_parser(
        "release-name",
        help="free a name from the key that claimed it; its sessions end",
        description="Free NAME: its sessions end with a notice, and any key may claim it.",
    )
    release.add_argument("name", metavar="NAME")
    add_network_arguments(release)
    release.add_argument("--wait", type=float, default=0.5, help="seconds of discovery")
    args = parser.parse_args(argv)
    options = options_from_args(args, "admin")
    if options.cluster_key is None:
        print(
            f"tchat admin: the cluster secret is needed: set {KEY_ENV} or pass"
            " --cluster-key-file FILE (mode 0600)",
            file=sys.stderr,
        )
        return 2
    try:
        text = options.cluster_key.decode("ascii", "replace")
        secret = ClusterSecret(parse_secret(text, options.key_source), options.key_source)
    except CryptoError as exc:
        print(f"tchat admin: {exc}", file=sys.stderr)
        return 2
    session = AdminSession(options, secret)
    try:
        candidates = leader_candidates(options, secret, max(0.1, min(args.wait, 10.0)))
        if not candidates:
            raise AdminFailed("no server answered (is the cluster up on --host?)")
        result = None
        for addr in candidates[:MAX_CANDIDATES]:
            try:
                result = session.run(addr, "release-name", args.name)
                break
            except AdminFailed:
                if addr == candidates[:MAX_CANDIDATES][-1]:
                    raise  # the last one's reason is the one said
    except (AdminFailed, OSError, ValueError) as exc:
        print(f"tchat admin: {exc}", file=sys.stderr)
        return 1
    finally:
        session.close()
    assert result is not None
    if result.outcome == "released":
        print(f"tchat admin: {result.detail}", flush=True)
        return 0
    print(f"tchat admin: {result.outcome}: {result.detail}", file=sys.stderr)
    return 1
