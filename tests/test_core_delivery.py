"""HoldBack on its own: one gap-free stream out of session, room and lobby channels."""

from __future__ import annotations

from tchat.core.delivery import Frame, HoldBack
from tchat.core.messages import (
    LOBBY,
    Chat,
    Dot,
    Entry,
    Epoch,
    LobbyFrame,
    Origin,
    RoomFrame,
    RoomInfo,
    SessionFrame,
    Touch,
)
from tchat.core.vclock import VectorClock

EPOCH = Epoch(1, 1)
ME = "alice"


def entry(gsn: int, room: str | None = "r") -> Entry:
    return Entry(
        Dot(1, gsn),
        VectorClock({1: gsn}),
        float(gsn),
        Origin("c", gsn),
        Chat("bob", room, None if room else ME, f"m{gsn}", False, VectorClock()),
    )


def session(gsn: int, prev: int, other: int = 0) -> SessionFrame:
    return SessionFrame(EPOCH, gsn, prev, other, entry(gsn, None), None)


def room(
    gsn: int,
    prev: int,
    name: str = "r",
    touched: tuple[Touch, ...] = (),
    rooms_touched: tuple[Touch, ...] = (),
    other_all: int = 0,
) -> RoomFrame:
    return RoomFrame(EPOCH, gsn, prev, name, other_all, touched, rooms_touched, (entry(gsn, name),))


def lobby(gsn: int, prev: int) -> LobbyFrame:
    return LobbyFrame(EPOCH, gsn, prev, (), (), ())


def queue(start: int = 0, heads: dict[str, int] | None = None) -> HoldBack:
    heads = {"r": start, LOBBY: start} if heads is None else heads
    return HoldBack(ME, start, tuple(RoomInfo(n, "", (ME,), h) for n, h in heads.items()))


def drain(hb: HoldBack, now: float = 0.0) -> list[int]:
    out: list[int] = []
    for _ in range(1000):  # bounded
        frame = hb.next_ready(now)
        if frame is None:
            return out
        out.append(frame.gsn)
    raise AssertionError("hold-back never ran dry")


def offer_all(hb: HoldBack, frames: list[Frame]) -> None:
    for frame in frames:
        assert hb.offer(frame)


def test_channels_interleave_in_gsn_order_whatever_the_arrival_order() -> None:
    # gsn 1 session, 2 room, 3 session, 4 room: the room frame 4 names the session frame 3
    # (we got it in (2, 4)); the session frame 3 names the room frame 2 (other).
    frames: list[Frame] = [
        session(1, 0),
        room(2, 0),
        session(3, 1, other=2),
        room(4, 2, touched=(Touch(ME, 3),)),
    ]
    for order in ([3, 2, 1, 0], [1, 3, 0, 2], [0, 1, 2, 3]):
        hb = queue()
        offer_all(hb, [frames[i] for i in order])
        assert drain(hb) == [1, 2, 3, 4]
        assert hb.last == 4 and hb.session_end == 3 and hb.room_end["r"] == 4
        assert hb.pending() == 0


def test_a_gap_holds_everything_after_it_until_it_is_filled() -> None:
    hb = queue()
    offer_all(hb, [session(1, 0), session(3, 2)])
    assert drain(hb, now=5.0) == [1]
    assert hb.stalled_since == 5.0  # the watchdog's clock for asking the leader
    assert hb.next_ready(6.0) is None and hb.stalled_since == 5.0
    offer_all(hb, [session(2, 1)])
    assert drain(hb, now=7.0) == [2, 3]
    assert hb.stalled_since is None


def test_a_session_frame_waits_for_the_room_frame_it_names() -> None:
    hb = queue()
    offer_all(hb, [session(2, 0, other=1)])
    assert drain(hb) == []  # room frame 1 came before it: not here yet
    offer_all(hb, [room(1, 0)])
    assert drain(hb) == [1, 2]


def test_a_room_frame_waits_for_a_neighbouring_room_it_names() -> None:
    hb = queue(heads={"r": 0, "s": 0, LOBBY: 0})
    offer_all(hb, [room(2, 0, name="r", rooms_touched=(Touch("s", 1),))])
    assert drain(hb) == []
    offer_all(hb, [room(1, 0, name="s")])
    assert drain(hb) == [1, 2]


def test_duplicates_and_old_frames_are_refused() -> None:
    hb = queue()
    assert hb.offer(session(1, 0))
    assert not hb.offer(session(1, 0))  # held already
    assert drain(hb) == [1]
    assert not hb.offer(session(1, 0))  # delivered already
    assert not hb.offer(room(1, 0))  # any frame at or below the last gsn
    assert hb.pending() == 0


def test_the_lobby_frame_at_the_start_gsn_is_taken_once() -> None:
    """The Welcome's start may be the gsn of the lobby frame the leader held for us."""
    hb = queue(start=5, heads={"r": 3, LOBBY: 4})
    assert hb.offer(lobby(5, 4))
    assert drain(hb) == [5]
    assert not hb.offer(lobby(5, 4))


def test_frames_of_a_room_we_are_not_in_are_skipped() -> None:
    hb = queue()
    offer_all(hb, [room(1, 0, name="elsewhere"), session(2, 0, other=0)])
    assert drain(hb) == [2]
    assert hb.pending() == 0


def test_joining_a_room_lets_its_frames_through() -> None:
    hb = queue()
    offer_all(hb, [room(2, 1, name="new")])
    assert drain(hb) == []
    hb.join(RoomInfo("new", "", (ME,), 1))
    assert drain(hb) == [2]
    hb.leave("new")
    assert "new" not in hb.room_end


def test_behind_says_whether_the_leader_sent_what_we_lack() -> None:
    hb = queue()
    offer_all(hb, [session(2, 1)])
    assert not hb.behind(2, {"r": 0})  # the session head is held
    assert hb.behind(3, {"r": 0})  # session frame 3 neither held nor delivered
    assert hb.behind(2, {"r": 4})  # room frame 4 missing
    assert not hb.behind(0, {"other-room": 9})  # not our room


def test_leaving_a_room_skips_its_held_frames_instead_of_stalling() -> None:
    hb = queue()
    offer_all(hb, [room(2, 1), session(3, 0)])  # room frame 2 waits for room frame 1
    assert drain(hb, now=1.0) == []
    assert hb.stalled_since == 1.0
    hb.leave("r")  # our own RoomLeft: nothing of that room is ours any more
    assert drain(hb, now=2.0) == [3]
    assert hb.pending() == 0 and hb.stalled_since is None
