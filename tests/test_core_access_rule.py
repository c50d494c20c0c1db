"""The read rule (tchat.core.access.may_read) and the fold of room ownership, on their own:
random logs against a brute-force model of who was in which room when."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.core.access import may_read
from tchat.core.fold import INVITES_PER_ROOM, STRETCHES_PER_MEMBER, ClusterState
from tchat.core.messages import (
    Chat,
    Dot,
    Entry,
    EntryBody,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomMode,
    UserOffline,
    UserOnline,
)
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

USERS = ("ann", "bob", "cat", "dan")
ROOMS = ("r", "s")


def _entry(n: int, body: EntryBody) -> Entry:
    return Entry(Dot(1, n), VectorClock({1: n}), float(n), None, body)


@dataclass
class ModelRoom:
    owner: str
    private: bool
    members: set[str] = field(default_factory=set)
    allowed: set[str] = field(default_factory=set)  # invited
    era: int = 0  # counts the times the room became public


@dataclass(frozen=True)
class Said:
    """A chat as the model saw it: who was there, and the room's public era (or None)."""

    readers: frozenset[str]
    room: str | None
    era: int | None


@dataclass
class Model:
    """Who is where, kept as plainly as possible: the fold's rules restated, no stretches."""

    online: set[str] = field(default_factory=set)
    rooms: dict[str, ModelRoom] = field(default_factory=dict)

    def apply(self, body: EntryBody) -> Said | None:
        """Apply ``body``; for a chat, who was there (members then, or the two of a PM)."""
        match body:
            case UserOnline(name=name):
                self.online.add(name)
            case UserOffline(name=name):
                self.online.discard(name)  # still in its rooms: membership is the account's
            case RoomJoined(room=room, name=name) if name in self.online:
                record = self.rooms.get(room)
                if record is None:
                    private = isinstance(body, RoomCreated) and body.private
                    record = self.rooms[room] = ModelRoom(name, private)
                if not record.private or name == record.owner or name in record.allowed:
                    record.members.add(name)
                    record.allowed.discard(name)
            case RoomKicked(room=room, name=name, by=by):
                record = self.rooms.get(room)
                if record is not None and record.owner == by and name != by:
                    record.members.discard(name)
                    record.allowed.discard(name)
            case RoomLeft(room=room, name=name) if room in self.rooms:
                self.rooms[room].members.discard(name)
            case RoomMode(room=room, by=by, private=private):
                record = self.rooms.get(room)
                if record is not None and record.owner == by:
                    if record.private and not private:
                        record.era += 1
                        record.allowed.clear()
                    record.private = private
            case RoomInvited(room=room, name=name, by=by):
                record = self.rooms.get(room)
                if (
                    record is not None
                    and record.owner == by
                    and record.private
                    and name not in record.members
                ):
                    record.allowed.add(name)
            case Chat(room=None, sender=sender, to=str() as to):
                return Said(frozenset({sender, to}), None, None)
            case Chat(room=str() as room):
                record = self.rooms.get(room)
                if record is None:
                    return Said(frozenset(), room, None)
                era = None if record.private else record.era
                return Said(frozenset(record.members), room, era)
        return None

    def scrollback(self, said: Said) -> set[str]:
        """Who may have ``said`` as history now: who was there, and for a room public
        since then (the same era), its members now."""
        readers = set(said.readers)
        record = self.rooms.get(said.room) if said.room is not None else None
        if record is not None and not record.private and record.era == said.era:
            readers |= record.members
        return readers


user = st.sampled_from(USERS)
room = st.sampled_from(ROOMS)
bodies = st.one_of(
    st.builds(lambda n: UserOnline(n, "a:1", f"c-{n}"), user),
    st.builds(lambda n: UserOffline(n, f"c-{n}", "timeout", EMPTY_CLOCK), user),
    st.builds(RoomJoined, room, user),
    st.builds(RoomCreated, room, user, st.booleans()),
    st.builds(RoomLeft, room, user),
    st.builds(RoomKicked, room, user, user),
    st.builds(RoomMode, room, user, st.booleans()),
    st.builds(RoomInvited, room, user, user),
    st.builds(lambda s, r: Chat(s, r, None, "t", False, EMPTY_CLOCK), user, room),
    st.builds(lambda s, t: Chat(s, None, t, "t", False, EMPTY_CLOCK), user, user),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(bodies, max_size=60))
def test_what_a_user_may_read_is_exactly_who_was_there(log: list[EntryBody]) -> None:
    state = ClusterState("239.255.42.0", 4, 47471)
    model = Model()
    chats: list[tuple[Entry, Said]] = []
    for n, body in enumerate(log, start=1):
        entry = _entry(n, body)
        state.apply(entry)
        said = model.apply(body)
        if said is not None:
            chats.append((entry, said))
    # judged at the end, on the final state: what happened later never changes the past
    for entry, said in chats:
        shared = model.scrollback(said)
        for name in USERS:
            assert may_read(state, name, entry) == (name in said.readers), (name, entry.body)
            scrollback = may_read(state, name, entry, scrollback=True)
            assert scrollback == (name in shared), (name, entry.body)
    for name, record in model.rooms.items():
        folded = state.rooms[name]
        assert (folded.owner, folded.private, folded.members.keys()) == (
            record.owner,
            record.private,
            record.members,
        )


def test_invitations_are_bounded_per_room() -> None:
    state = ClusterState("239.255.42.0", 4, 47471)
    n = 0
    for body in (UserOnline("ann", "a:1", "c"), RoomCreated("p", "ann", True)):
        n += 1
        assert state.apply(_entry(n, body))
    for i in range(INVITES_PER_ROOM + 5):
        n += 1
        applied = state.apply(_entry(n, RoomInvited("p", f"u{i}", "ann")))
        assert applied == (i < INVITES_PER_ROOM)
    assert len(state.rooms["p"].invited) == INVITES_PER_ROOM


def test_a_merge_cannot_slip_a_join_into_a_private_room() -> None:
    """Two sides of a partition: one made room p private, the other joined it. In log
    order the join comes after the creation, so it is ignored, the same everywhere."""
    state = ClusterState("239.255.42.0", 4, 47471)
    log = [
        UserOnline("ann", "a:1", "c1"),
        UserOnline("bob", "a:2", "c2"),
        RoomCreated("p", "ann", True),
        RoomJoined("p", "bob"),  # sequenced on the other side, where p did not exist
        Chat("ann", "p", None, "secret", False, EMPTY_CLOCK),
    ]
    results = [state.apply(_entry(n, body)) for n, body in enumerate(log, start=1)]
    assert results == [True, True, True, False, True]
    assert not may_read(state, "bob", _entry(5, log[4]))
    assert sorted(state.rooms["p"].members) == ["ann"]


def test_a_member_who_joins_and_leaves_endlessly_costs_bounded_reads() -> None:
    state = ClusterState("239.255.42.0", 4, 47471)
    n = 1
    state.apply(_entry(n, UserOnline("ann", "a:1", "c")))
    first_chat = None
    for i in range(STRETCHES_PER_MEMBER * 3):
        for body in (RoomJoined("r", "ann"), Chat("ann", "r", None, f"t{i}", False, EMPTY_CLOCK)):
            n += 1
            entry = _entry(n, body)
            state.apply(entry)
            first_chat = first_chat or entry
        n += 1
        state.apply(_entry(n, RoomLeft("r", "ann")))
    assert len(state.rooms["r"].stretches["ann"]) == STRETCHES_PER_MEMBER
    assert first_chat is not None and not may_read(state, "ann", first_chat)  # the safe side
