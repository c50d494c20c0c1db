"""Client-side hold-back queue: reassembles one epoch's session, room and lobby channels
into a single gap-free stream delivered in gsn order (which extends happened-before)."""

from __future__ import annotations

import heapq

from tchat.core.messages import LobbyFrame, RoomFrame, RoomInfo, SessionFrame

Frame = SessionFrame | RoomFrame | LobbyFrame
ChannelFrame = RoomFrame | LobbyFrame  # frames of a group channel: they have .room


class HoldBack:
    """Frames in, frames out in delivery order.

    ``last`` is the gsn of the last frame delivered; by induction every frame of ours
    below it has been delivered. A frame may go out when its channel predecessor has
    gone out and the frame proves that nothing of ours from another channel lies
    between: a session frame names the latest room frame we got since its ``prev``;
    a room (or lobby) frame names the members that got session frames and the
    neighbouring rooms that got frames since its ``prev``. The lobby is a room every
    client is in, so it is in ``room_end`` from the Welcome on.
    """

    def __init__(self, me: str, start: int, rooms: tuple[RoomInfo, ...]) -> None:
        self.me = me
        self.last = start
        self.session_end = start
        self.room_end: dict[str, int] = {info.room: info.head for info in rooms}
        self._pending: dict[int, Frame] = {}
        self._order: list[int] = []  # heap of held gsns (may list ones already gone)
        self.stalled_since: float | None = None

    def offer(self, frame: Frame) -> bool:
        """Buffer a frame; False if it is old or a duplicate.

        One frame may carry the gsn we start at: the lobby frame of the user-list changes
        the leader held when it welcomed us (the last of them took that gsn). It chains on
        the lobby head we were given, which no frame we already have does."""
        if frame.gsn in self._pending:
            return False
        if frame.gsn <= self.last and not (
            frame.gsn == self.last
            and isinstance(frame, LobbyFrame)
            and frame.prev == self.room_end.get(frame.room)
            and frame.prev < frame.gsn
        ):
            return False
        self._pending[frame.gsn] = frame
        heapq.heappush(self._order, frame.gsn)
        return True

    def join(self, info: RoomInfo) -> None:
        self.room_end[info.room] = info.head

    def leave(self, room: str) -> None:
        self.room_end.pop(room, None)

    def pending(self) -> int:
        return len(self._pending)

    def next_ready(self, now: float) -> Frame | None:
        """The next frame to deliver, or None while it must wait (or nothing is held)."""
        pending = self._pending
        order = self._order
        while order and order[0] not in pending:
            heapq.heappop(order)
        if not pending:
            self.stalled_since = None
            return None
        gsn = None
        lowest = pending[order[0]]
        if isinstance(lowest, SessionFrame) or lowest.room in self.room_end:
            gsn = order[0]  # the common case: no full scan while frames wait for a gap
        for candidate in () if gsn is not None else sorted(pending):
            held = pending[candidate]
            if not isinstance(held, SessionFrame) and held.room not in self.room_end:
                continue  # not ours, unless an earlier frame makes us join that room
            gsn = candidate
            break
        if gsn is None:
            self.stalled_since = None
            return None
        if gsn != order[0]:
            for older in [g for g in pending if g < gsn]:
                del pending[older]  # frames of rooms we are not in, with no join before them
        frame = pending[gsn]
        if not self._deliverable(frame):
            if self.stalled_since is None:
                self.stalled_since = now
            return None
        del pending[gsn]
        self.last = gsn
        self.stalled_since = None
        if isinstance(frame, SessionFrame):
            self.session_end = gsn
        else:
            self.room_end[frame.room] = gsn
        return frame

    def _deliverable(self, frame: Frame) -> bool:
        if isinstance(frame, SessionFrame):
            return frame.prev == self.session_end and frame.other <= self.last
        if frame.prev != self.room_end.get(frame.room):
            return False
        need = frame.other_all if isinstance(frame, RoomFrame) else 0
        for touch in frame.touched:
            if touch.name == self.me:
                need = max(need, touch.gsn)
                break
        for touch in frame.rooms_touched:
            if touch.name in self.room_end and touch.gsn > need:
                need = touch.gsn
        return need <= self.last

    def behind(self, session_head: int, room_heads: dict[str, int]) -> bool:
        """True if the leader has sent us frames we have neither delivered nor hold back."""
        held = set(self._pending)
        if session_head > self.session_end and session_head not in held:
            return True
        for room, head in room_heads.items():
            end = self.room_end.get(room)
            if end is not None and head > end and head not in held:
                return True
        return False
