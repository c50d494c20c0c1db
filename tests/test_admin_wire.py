"""The admin datagrams and a server's admin desk, without a network (hostile input first)."""

from __future__ import annotations

import os

import msgpack
import pytest

from tchat.crypto import admin
from tchat.crypto.cluster import ClusterSecret
from tchat.crypto.errors import CryptoError, Reason
from tchat.runtime import admin_desk
from tchat.runtime.admin_desk import AdminDesk
from tchat.runtime.connection import DropCounters

SECRET = ClusterSecret(bytes(range(32)))
NEXT = ClusterSecret(bytes(range(1, 33)))
PEER = "127.0.0.9:4000"


def test_a_round_trip_names_the_secret_that_verified() -> None:
    command = admin.Command(os.urandom(16), os.urandom(16), "release-name", "alice")
    assert admin.decode(admin.encode(command, NEXT), (SECRET, NEXT)) == (command, 1)
    hello = admin.Hello(os.urandom(16))
    assert admin.decode(admin.encode(hello, None), ()) == (hello, -1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xd3",
        b"\xd3\x09" + bytes(40),  # unknown step
        b"\xd3\x03" + bytes(10),  # shorter than its MAC
        b"\xd3\x01" + msgpack.packb([b"short"]),  # a nonce of 5 bytes
        b"\xd3\x01" + msgpack.packb([b"x" * 16, 1]),  # a field too many
        b"\xd3\x01" + b"\xdd\xff\xff\xff\xff",  # an array of 4 billion
        b"\xd3\x01" + msgpack.packb([b"x" * 16]) + bytes(2000),  # past the cap
    ],
)
def test_malformed_admin_datagrams_are_refused(data: bytes) -> None:
    with pytest.raises(CryptoError):
        admin.decode(data, (SECRET,))


def test_a_tag_is_good_for_its_own_step_and_secret_only() -> None:
    result = admin.encode(admin.Result(bytes(16), "released", "done", ""), SECRET)
    as_command = bytes((admin.KIND_ADMIN, admin.COMMAND)) + result[2:]
    for data, secrets in ((as_command, (SECRET,)), (result, (NEXT,))):
        with pytest.raises(CryptoError) as refused:
            admin.decode(data, secrets)
        assert refused.value.reason is Reason.BAD_TAG


class Desk:
    def __init__(self, leads: bool = True) -> None:
        self.now = 100.0
        self.sent: list[tuple[bytes, str]] = []
        self.released: list[str] = []
        self.drops = DropCounters()
        self.desk = AdminDesk(
            lambda: (SECRET, NEXT),
            7,
            lambda: (leads, "127.0.0.1:1"),
            self._release,
            lambda data, peer: self.sent.append((data, peer)),
            self.drops,
            clock=lambda: self.now,
        )

    def _release(self, name: str) -> str:
        self.released.append(name)
        return "released"

    def last(self) -> admin.AdminMessage:
        return admin.decode(self.sent[-1][0], (SECRET,))[0]

    def challenge(self, peer: str = PEER) -> tuple[bytes, bytes]:
        nonce = os.urandom(16)
        self.desk.receive(admin.encode(admin.Hello(nonce), None), peer)
        answer = self.last()
        assert isinstance(answer, admin.Challenge) and answer.server_id == 7
        return nonce, answer.challenge


def test_a_challenge_counts_once_for_its_asker_and_not_for_long() -> None:
    desk = Desk()
    nonce, challenge = desk.challenge()
    command = admin.encode(admin.Command(nonce, challenge, "release-name", "alice"), NEXT)
    desk.desk.receive(command, PEER)
    assert desk.released == ["alice"]
    desk.desk.receive(command, PEER)  # replayed
    assert desk.released == ["alice"]
    assert desk.drops.counts["admin-replayed"] == 1
    reply = desk.last()
    assert isinstance(reply, admin.Result) and reply.outcome == "refused"

    nonce, challenge = desk.challenge()
    other = admin.encode(admin.Command(nonce, challenge, "release-name", "bob"), SECRET)
    desk.desk.receive(other, "127.0.0.10:4000")  # from another address than asked
    nonce, challenge = desk.challenge()
    desk.now += admin_desk.CHALLENGE_LIFETIME + 1
    late = admin.encode(admin.Command(nonce, challenge, "release-name", "bob"), SECRET)
    desk.desk.receive(late, PEER)
    assert desk.released == ["alice"]
    assert desk.drops.counts["admin-replayed"] == 3


def test_challenges_and_datagrams_are_bounded() -> None:
    desk = Desk()
    for i in range(admin_desk.CHALLENGES_KEPT + 50):
        desk.now += 1.0  # within every budget
        desk.desk.receive(admin.encode(admin.Hello(os.urandom(16)), None), f"10.0.{i}.1:1")
        assert len(desk.desk.challenges) <= admin_desk.CHALLENGES_KEPT
    flood = Desk()
    hello = admin.encode(admin.Hello(bytes(16)), None)
    for _ in range(200):
        flood.desk.receive(hello, PEER)
    assert len(flood.sent) == admin_desk.PER_HOST[1]
    assert flood.drops.counts["admin-limited"] == 200 - admin_desk.PER_HOST[1]


def test_a_bad_name_is_refused_without_reaching_the_node() -> None:
    desk = Desk()
    nonce, challenge = desk.challenge()
    desk.desk.receive(
        admin.encode(admin.Command(nonce, challenge, "release-name", "a\u200bb"), SECRET), PEER
    )
    assert desk.released == []
    reply = desk.last()
    assert isinstance(reply, admin.Result) and reply.outcome == "refused"


def test_a_release_is_answered_when_it_commits_or_as_pending() -> None:
    desk = Desk()
    timers: list[tuple[float, object]] = []
    desk.desk.later = lambda delay, callback: timers.append((delay, callback))
    for name in ("alice", "bob"):
        nonce, challenge = desk.challenge()
        command = admin.Command(nonce, challenge, "release-name", name)
        desk.desk.receive(admin.encode(command, SECRET), PEER)
    assert isinstance(desk.last(), admin.Challenge)  # no result before the commit
    desk.desk.committed("alice")
    done = desk.last()
    assert isinstance(done, admin.Result) and done.outcome == "released"
    for _delay, callback in timers:
        callback()  # alice's timer finds her answered; bob's never committed
    late = desk.last()
    assert isinstance(late, admin.Result) and late.outcome == "pending"
    assert "bob" in late.detail and not desk.desk.waiting
    assert len(desk.sent) == 2 + 2  # two challenges, one answer each
