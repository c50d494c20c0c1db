"""The leader's front desk for clients: logins and resumes, operations, catch-up,
timeouts, scrollback and the room directory.

Longer than 400 lines: every request a client makes of the leader comes to this one desk,
and the requests share what it checks them against (the sessions, the submits deferred
until history arrives, a client's clock and the limits on names and rooms); each handler
is short. Split by request, each part would read the others' checks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tchat.core import codec
from tchat.core.access import history_refusal, listed, may_read, owner_operation
from tchat.core.away import away_reason_problem
from tchat.core.effects import Effect, Send
from tchat.core.fold import MAX_ACCOUNTS, MAX_SESSIONS
from tchat.core.messages import (
    MAX_KEYS,
    MAX_PHC,
    MAX_SERVERS,
    PHC_PREFIX,
    RELEASED_REASON,
    ROOM_SUMMARY_MEMBERS,
    ROOMS_PER_REPLY,
    Chat,
    ClientBeat,
    CreateRoom,
    Dot,
    Entry,
    EntryBody,
    HistoryReply,
    HistoryRequest,
    InviteUser,
    JoinRoom,
    KeyAdded,
    KeyRemoved,
    KeysReply,
    KeysRequest,
    KickUser,
    LeaveRoom,
    Logout,
    NameClaimed,
    NameClash,
    NameReleased,
    OpError,
    Origin,
    PasswordHashed,
    PasswordLogin,
    PasswordSet,
    Register,
    Rejected,
    RemoveKey,
    Replay,
    Resync,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    RoomList,
    RoomsReply,
    RoomsRequest,
    RoomSummary,
    RoomTopic,
    SendChat,
    SetAway,
    SetPassword,
    SetRoomMode,
    SetTopic,
    Submit,
    UserInfo,
    UserList,
    UserOffline,
    UserOnline,
    UserStatus,
    Welcome,
    released_notice,
)
from tchat.core.names import (
    look_alike_problem,
    name_problem,
    room_problem,
    text_problem,
)
from tchat.core.projection import public_entry
from tchat.core.stream import Session
from tchat.core.topics import may_set_topic, topic_problem
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

if TYPE_CHECKING:
    from tchat.core.fold import ClusterState
    from tchat.core.node_context import LeaderCore

USER_CHUNK = 400  # users per UserList frame at most (and FRAME_BUDGET bytes)
# Bytes of rooms a Welcome carries itself; past it they all go in RoomList chunks before it
# (a client in 2,000 rooms made an 83 KB Welcome, and could never resume).
WELCOME_ROOM_BYTES = codec.FRAME_BUDGET // 2
# A login's replay keeps the newest this many messages of each conversation (room or
# private peer): rooms now outlive sessions, so a week away from busy rooms must not make
# one Welcome unbounded. What is older is there as scrollback (/history, PgUp).
REPLAY_PER_CONVERSATION = 500
REFUSALS_KEPT = 4096  # operations refused lately, answered the same way if they come again
# Operations deferred while we pull the history their clocks name: a clock is the client's
# word, so the deferral is bounded per client and in all (the rest wait for the client's resend).
DEFERRED_PER_CLIENT = 64
DEFERRED_MAX = 4096
UNKNOWN_SERVERS_MAX = 8  # servers a client's clock may name that we do not know (yet)
# Bytes a room's member names may take. A room's members travel whole: in the RoomInfo of a
# joiner's frame and of every Welcome, and as a room frame's touches (each with a gsn); at
# half the frame budget the list and its touches fit a frame whatever the names (1,000
# members of 32 four-byte characters were 130 KB, and no joiner could be told the room).
MEMBER_LIST_BYTES = codec.FRAME_BUDGET // 2
MEMBER_OVERHEAD = 3  # a msgpack string's header, at most, for a name of MAX_NAME characters


def _clock_problem(entries: int) -> str:
    return f"a clock of {entries} servers: a cluster has at most {MAX_SERVERS}"


def no_password(name: str) -> str:
    """The refusal of a password login to an account without one."""
    return f"this account has no password; copy the key or set one with /password ({name})"


def _user_bytes(user: UserInfo) -> int:
    """At most what ``user`` takes in a UserList (array, string and float headers), without
    encoding it: the user list of a login storm is cut once per login."""
    return (
        24 + codec.utf8_size(user.name) + codec.utf8_size(user.addr) + codec.utf8_size(user.status)
    )


def newest_per_conversation(entries: list[Entry], name: str, most: int) -> list[Entry]:
    """``entries`` (chats, in key order) without all but the newest ``most`` of each
    conversation of ``name``'s: a room, or the peer of a private message."""
    counts: dict[tuple[bool, str], int] = {}
    kept: list[Entry] = []
    for entry in reversed(entries):
        body = entry.body
        assert isinstance(body, Chat)
        if body.room is not None:
            conversation = (True, body.room)
        else:
            conversation = (False, (body.to if body.sender == name else body.sender) or "")
        seen = counts.get(conversation, 0)
        if seen < most:
            counts[conversation] = seen + 1
            kept.append(entry)
    kept.reverse()
    return kept


class ClientDesk:
    """What a Leadership does for its clients."""

    def __init__(self, lead: LeaderCore) -> None:
        self.lead = lead
        # the user list it was built from, its snapshot id, its UserList frames
        self._chunks: tuple[tuple[UserInfo, ...], int, tuple[UserList, ...]] | None = None
        # Refused operations and why, as the log keeps recorded ones: a copy of a refused
        # operation (a resend whose OpError was lost, a duplicated frame) gets the same
        # answer, never a late yes once the state would allow it (the user was told no).
        self.refused: OrderedDict[Origin, str] = OrderedDict()

    def on_register(self, msg: Register, addr: str, now: float) -> list[Effect]:
        lead = self.lead
        node = lead.node
        if not lead.serving:
            lead.waiting_registers = [
                (m, a) for m, a in lead.waiting_registers if m.client_id != msg.client_id
            ]
            lead.waiting_registers.append((msg, addr))
            return []
        problem = name_problem(msg.name) or look_alike_problem(
            msg.name, node.state.user_look_alikes
        )
        if problem:
            return [Send(addr, Rejected(problem))]
        if msg.cursor is not None and len(msg.cursor) > MAX_SERVERS:
            return [Send(addr, Rejected(_clock_problem(len(msg.cursor))))]
        if msg.client_id in node.state.closed_sessions:
            # A late Register of a session that has logged out since: do not log it in
            # again (a ghost nobody would ever log out). A new login uses a new client ID.
            return [Send(addr, Rejected("this session has logged out"))]
        streams = lead.streams
        state = node.state
        session = streams.sessions.get(msg.client_id)
        holder = state.session_names.get(msg.client_id)
        if (session is not None and session.identity != msg.identity) or (
            holder is not None and state.users[holder].key_of(msg.client_id) != msg.identity
        ):
            # A client ID is no credential: another key naming it takes nothing over, not
            # even another key of the same account (which could else log the session out
            # of its name by registering the client ID under another; see below).
            node.count("foreign-client-id")
            return [Send(addr, Rejected("this client ID belongs to another key's session"))]
        claim = state.claims.get(msg.name)
        owner = state.users.get(msg.name)
        key_of_account = state.holds_key(msg.name, msg.identity)
        if claim is not None and not key_of_account:
            if msg.cursor is not None:
                # A resuming session lost its name (a partition merge gave it to the other
                # side's earlier claim): rename, not fail.
                reason = (
                    f"{msg.name!r} was also registered on the other side of a network "
                    "partition; the earlier registration keeps it"
                )
                return [Send(addr, NameClash(lead.epoch, msg.name, reason))]
            reason = f"the name {msg.name!r} belongs to another key"
            if msg.name in state.passwords:
                reason += ": log in with its password (--password-prompt) to add this one"
            return [Send(addr, Rejected(reason))]
        if session is not None and session.active and msg.attempt <= session.register_attempt:
            # A late copy of a Register we took already (the network duplicated or delayed
            # it): the client is welcomed since. Taking it again would reset its stream
            # (it then resumes) or, under a name it lost to a clash since, give one
            # session two names. A client resending for a lost Welcome counts up.
            node.count("stale-register")
            return []
        if claim is None and len(state.claims) >= MAX_ACCOUNTS:
            return [Send(addr, Rejected("this cluster has no room for new accounts"))]
        if session is not None and session.name != msg.name:
            streams.detach(msg.client_id)
            session = None
        if session is None:
            session = Session(msg.name, msg.client_id, addr, msg.multicast, now)
            session.identity = msg.identity
            streams.attach(session)
        session.addr = addr
        session.register_attempt = max(session.register_attempt, msg.attempt)
        session.multicast = msg.multicast
        session.lobby = msg.lobby
        session.last_heard = now
        session.active = False
        cursor = None if msg.cursor is None else self.known_part(msg.cursor)
        if cursor is not None:
            session.reported_clock = session.reported_clock.merge(cursor)
            session.resume_cursor = cursor
        # The state holds pending entries too: a session it names may be a login still
        # being replicated (this Register a resend of it), not a resume. Welcomed now, it
        # would start from a view without its login, nor what came just before it (its
        # account's room join: never told, never in the room); its commit welcomes it.
        if self._login_pending(msg.name, msg.client_id):
            return []
        if owner is not None and msg.client_id in owner.sessions:  # a resume
            return self.welcome(session, cursor, now)
        effects: list[Effect] = []
        if holder is not None and holder != msg.name:
            # The session is still logged in under the name it had (renamed after a clash,
            # and its old login reached this log only by a merge, ahead of the rename). It
            # leaves that name first: the fold refuses a login of a session that holds
            # another name, so this one would be welcomed and yet in nobody's user list.
            effects += self.leave_old_name(holder, session, msg.name, now)
        if claim is None:
            # First come, first served: the name is this key's from now on (the state
            # holds pending entries too, so a second login in flight sees the claim).
            _, claimed = lead.sequence(NameClaimed(msg.name, msg.identity), now)
            effects += claimed
        # Another session of an online account (a second terminal, a restarted client
        # whose old session has not timed out) is admitted at once: its own UserOnline.
        _, more = lead.sequence(UserOnline(msg.name, addr, msg.client_id, msg.identity), now)
        return effects + more

    def _login_pending(self, name: str, client_id: str) -> bool:
        """Whether ``client_id``'s UserOnline is sequenced but not committed yet."""
        lead = self.lead
        streamed = lead.streams.view.users.get(name)
        if streamed is not None and client_id in streamed.sessions:
            return False  # committed (and streamed): no need to walk what is pending
        return any(
            isinstance(p.entry.body, UserOnline) and p.entry.body.client_id == client_id
            for p in lead.pending
        )

    def on_login_committed(self, login: UserOnline, streamed: bool, now: float) -> list[Effect]:
        """``login`` committed: welcome its session if the fold took it, else tell the
        session why not. The desk judged the Register on the sequencing state, but the
        fold judges the entry where it stands in the log: a merge may have put another
        key's claim of the name first (two identities raced for a new name on the two
        sides of a partition), or the session may hold another name there. Such a login
        is in nobody's user list, so its session gets no Welcome, no frame, and a refusal."""
        lead = self.lead
        node = lead.node
        session = lead.streams.sessions.get(login.client_id)
        if session is None or session.active or session.name != login.name:
            # Welcomed already (a resume), gone, or registered under another name since
            # (that name's own login welcomes it).
            return []
        if not streamed:
            # Merged entries wait ahead of it, and the streams' view lacks them: it cannot
            # say what the fold makes of this login. The Resync that ends that wait makes
            # the session register again, and it is judged then, on the merged state.
            return []
        view = lead.streams.view
        record = view.users.get(login.name)
        # Only this view's own refusals matter here (nobody reads them off the view).
        view.clashes.clear()
        view.replaced.clear()
        if record is not None and login.client_id in record.sessions:
            # Its stream starts at the current heads: every frame they name must be out.
            effects = lead.streams.flush_rooms(now)
            return effects + self.welcome(session, session.resume_cursor, now)
        lead.streams.detach(login.client_id)
        node.count("login-refused")
        if not view.holds_key(login.name, login.identity):
            reason = f"the name {login.name!r} is taken: it belongs to another key"
            refusal: Rejected | NameClash = Rejected(reason)
            if session.resume_cursor is not None:
                # A session that was serving under the name renames, as at a Register.
                reason = (
                    f"{login.name!r} was also registered on the other side of a network "
                    "partition; the earlier registration keeps it"
                )
                refusal = NameClash(lead.epoch, login.name, reason)
        else:
            held = view.session_names.get(login.client_id, "")
            reason = f"this session is logged in as {held!r}: log in again"
            refusal = Rejected(reason)
        return [
            node.log_event("login-refused", f"user {login.name}: {reason}", user=login.name),
            Send(session.addr, refusal),
        ]

    def leave_old_name(self, old: str, session: Session, new: str, now: float) -> list[Effect]:
        """Log ``session`` out of ``old``, the name it held before it registered as ``new``."""
        node = self.lead.node
        reason = f"renamed to {new}"
        offline = UserOffline(old, session.client_id, reason, session.cursor())
        _, effects = self.lead.sequence(offline, now)
        effects.append(node.log_event("client-dropped", f"user {old}: {reason}", user=old))
        return effects

    def on_password_login(self, login: PasswordLogin, now: float) -> list[Effect]:
        """A login whose password the runtime verified against ``login.phc``: its key (proven
        on this session, as every Register's) joins the account, then it logs in as usual.
        The core never sees the password, only that it matched this hash."""
        lead = self.lead
        node = lead.node
        msg = login.register
        state = node.state
        if not lead.serving:
            return []  # the client registers again, and its password is checked again
        phc = state.passwords.get(msg.name)
        if phc is None:
            node.count("password-none")
            return [Send(msg.addr, Rejected(no_password(msg.name)))]
        if phc != login.phc:
            # Changed (or the name released) while the runtime was hashing: the password
            # that matched is no longer the account's.
            node.count("password-stale")
            return [Send(msg.addr, Rejected("the account's password changed: try again"))]
        if state.holds_key(msg.name, msg.identity):
            return self.on_register(msg, msg.addr, now)
        if state.key_count(msg.name) >= MAX_KEYS:
            node.count("keys-full")
            reason = (
                f"the account {msg.name!r} has {MAX_KEYS} devices already: "
                "remove one from a device you are logged in on"
            )
            return [Send(msg.addr, Rejected(reason))]
        # The state holds pending entries too: the Register below sees the key as the
        # account's, and a copy of this login in flight adds nothing twice.
        _, effects = lead.sequence(KeyAdded(msg.name, msg.identity), now)
        effects.append(
            node.log_event("key-added", f"a new device key for {msg.name}", user=msg.name)
        )
        return effects + self.on_register(msg, msg.addr, now)

    def on_keys(self, msg: KeysRequest, addr: str) -> list[Effect]:
        """``/devices``: the keys of the asking session's account (one frame: at most
        MAX_KEYS keys of 32 bytes)."""
        lead = self.lead
        session = lead.streams.sessions.get(msg.client_id)
        if session is None or not lead.serving:
            return []
        keys = lead.node.state.keys_of(session.name)
        yours = keys.index(session.identity) if session.identity in keys else -1
        return [Send(addr, KeysReply(lead.epoch, msg.request_id, keys, max(yours, 0)))]

    def drop_removed_key(self, body: KeyRemoved, now: float) -> list[Effect]:
        """The sessions that proved a key the account no longer holds go offline."""
        lead = self.lead
        effects: list[Effect] = []
        for client_id, session in sorted(list(lead.streams.sessions.items())):
            if session.name != body.name or session.identity != body.identity:
                continue
            record = lead.node.state.users.get(body.name)
            if record is None or client_id not in record.sessions:
                continue
            offline = UserOffline(body.name, client_id, "key removed", session.cursor())
            _, persist = lead.sequence(offline, now)
            effects.extend(persist)
            # Told at once, as a replaced session is: its UserOffline changes no user list
            # while another session of the account lives, so no lobby frame would say it.
            lead.streams.detach(client_id)
            reason = "logged out: this device's key was removed from the account"
            effects.append(Send(session.addr, Rejected(reason)))
        return effects

    def release_name(self, name: str, now: float) -> list[Effect]:
        """An operator frees ``name`` (``tchat admin release-name``, authenticated by the
        runtime with the cluster secret): its sessions go offline, then the claim ends."""
        lead = self.lead
        node = lead.node
        if not lead.serving or name not in node.state.claims:
            return []
        effects: list[Effect] = []
        record = node.state.users.get(name)
        for client_id in list(record.sessions) if record is not None else ():
            session = lead.streams.sessions.get(client_id)
            if session is not None:
                # Said to the session itself: its stream ends with the UserOffline below,
                # which it may never see, and a client that just lost its leader would
                # log in again with its key and claim the name straight back.
                effects.append(Send(session.addr, Rejected(released_notice(name))))
            cursor = session.cursor() if session is not None else EMPTY_CLOCK
            _, persist = lead.sequence(UserOffline(name, client_id, RELEASED_REASON, cursor), now)
            effects.extend(persist)
        # Rooms outlive sessions: the released account leaves its rooms (at most
        # max_rooms_per_user entries), so the name's next owner inherits none.
        for room in sorted(node.state.rooms_of.get(name, ())):
            _, persist = lead.sequence(RoomLeft(room, name), now)
            effects.extend(persist)
        _, persist = lead.sequence(NameReleased(name), now)
        effects.extend(persist)
        return effects  # its commit says "name-released" (Leadership._after_commit)

    def welcome(self, session: Session, cursor: VectorClock | None, now: float) -> list[Effect]:
        lead = self.lead
        node = lead.node
        if cursor is None:
            # A login (or a session never welcomed anywhere): replay what was addressed to
            # the account since its last logout, or, for an account never seen offline,
            # everything (a login may have been accepted by a leader that died before
            # streaming to it).
            cursor = node.state.offline_cursor.get(session.name, EMPTY_CLOCK)
        token = node.next_token()
        # The committed view's users, not the sequencing state's: a login still being
        # replicated may never commit (its leader dies) or be refused by the fold, and a
        # client shown it would list a user who never got in. The lobby frames tell the
        # client of it once it commits. A client that does not follow the user list
        # (Register.lobby False) gets none.
        view = lead.streams.view
        users = view.user_infos() if session.lobby else ()
        snapshot, chunks = self._user_chunks(users)
        effects: list[Effect] = [Send(session.addr, chunk) for chunk in chunks]
        # Nothing before the account's first login concerns it: a message names an
        # addressee or a room member only once that login is in the sequencing leader's
        # log, hence covered by the message's clock. A first login then reads no history.
        since = node.state.first_online.get(session.name)
        missed = [
            e
            for e in node.log.chats_missing_for(cursor, since)  # only chat is ever replayed
            if e.dot not in lead.pending_dots
            and not node.log.is_duplicate(e)
            and self.relevant(e, session.name)
        ]
        kept = newest_per_conversation(missed, session.name, REPLAY_PER_CONVERSATION)
        if len(kept) < len(missed):
            node.count("replay-capped")
        relevant = [public_entry(e) for e in kept]
        replayed = len(relevant)
        while relevant:
            chunk, _ = node.chunk(iter(relevant))
            relevant = relevant[len(chunk) :]
            effects.append(Send(session.addr, Replay(lead.epoch, token, chunk)))
        gsn, rooms, lobby = lead.streams.activate(session, now)
        listed = rooms
        room_chunks: list[Sequence[RoomInfo]] = []
        if codec.packed_size(rooms) > WELCOME_ROOM_BYTES:
            listed, room_chunks = (), codec.split(rooms, codec.packed_size)
        for room_chunk in room_chunks:
            effects.append(Send(session.addr, RoomList(lead.epoch, token, tuple(room_chunk))))
        welcome = Welcome(
            lead.epoch,
            node.server_id,
            node.config.addr,
            session.name,
            gsn,
            listed,
            lobby,
            node.servers,
            token,
            len(users),
            replayed,
            snapshot,
            session.register_attempt,
            len(rooms) - len(listed),
            # At most MAX_PEERS names (the fold's bound), 6.6 KB at worst: they fit beside
            # rooms of up to WELCOME_ROOM_BYTES, which is why those move to RoomList past it.
            view.peers(session.name),
        )
        effects.append(Send(session.addr, welcome))
        return effects

    def _user_chunks(self, users: tuple[UserInfo, ...]) -> tuple[int, tuple[UserList, ...]]:
        """The user list as UserList frames, the same objects for every Welcome until it
        changes: a login storm encodes (and clients of one host decode) them once."""
        if not users:
            return 0, ()  # nothing to send (and the shared chunks stay cached)
        cached = self._chunks
        if cached is None or cached[0] is not users:
            snapshot = self.lead.node.next_token()
            epoch = self.lead.epoch
            chunks = tuple(
                UserList(epoch, snapshot, tuple(part))
                for part in codec.split(users, _user_bytes, most=USER_CHUNK)
            )
            cached = self._chunks = (users, snapshot, chunks)
        return cached[1], cached[2]

    def relevant(self, entry: Entry, name: str) -> bool:
        return may_read(self.lead.node.state, name, entry)

    def resync_all(self, reason: str) -> list[Effect]:
        lead = self.lead
        effects: list[Effect] = []
        # Every session, welcomed or not: a Welcome computed while the merged entries were
        # still uncommitted left them out of its catch-up.
        for client_id in sorted(lead.streams.sessions):
            session = lead.streams.sessions[client_id]
            session.active = False
            effects.append(Send(session.addr, Resync(lead.epoch, reason)))
        return effects

    def on_submit(
        self, msg: Submit, addr: str, now: float, first_seen: float | None = None
    ) -> list[Effect]:
        lead = self.lead
        node = lead.node
        session = lead.streams.sessions.get(msg.client_id)
        if session is None or not lead.serving:
            return []
        if first_seen is None:
            session.last_heard = now
            # A resend of a submit we have deferred already keeps its original wait. (Asked
            # only when something is deferred: the generator alone was ~0.4 us a submit.)
            first_seen = now
            if lead.deferred:
                first_seen = next(
                    (
                        since
                        for deferred, _, since in lead.deferred
                        if deferred.client_id == msg.client_id and deferred.cmid == msg.cmid
                    ),
                    now,
                )
        origin = Origin(msg.client_id, msg.cmid)
        if len(msg.clock) > MAX_SERVERS:  # before it counts anywhere (it would be carried)
            return self._refuse(origin, _clock_problem(len(msg.clock)), msg, addr)
        known = self.known_part(msg.clock)  # what of its clock our log can vouch for
        session.reported_clock = session.reported_clock.merge(known)
        existing = node.log.by_origin(origin)
        if existing is not None:  # a resend after failover: exactly once
            return self._ack_recorded(existing, msg)
        problem = self.refused.get(origin, "")
        if not problem and type(msg.op) is JoinRoom:
            joined = self._membership(session.name, msg.op.room)
            if joined is not None:
                # The account is in the room already (a second terminal's /join, or two
                # terminals joining at once): answered with the join that made it a member,
                # no second entry. Every session of the account has the room, or its
                # stream brings it before this answer.
                node.count("join-again")
                return self._ack_recorded(joined, msg)
        body = None
        if not problem:
            body, problem = self.validate(session, msg, known)
        if body is None:
            return self._refuse(origin, problem, msg, addr)
        if not msg.clock <= node.log.clock and now < first_seen + self.defer_limit():
            # The client has seen entries we lack (it was on the other side of a healed
            # partition): wait until we have pulled them, so that the new entry's clock
            # stays causally closed over our log. Give up waiting after a while.
            lead.deferred = [
                d for d in lead.deferred if d[0].client_id != msg.client_id or d[0].cmid != msg.cmid
            ]
            mine = sum(1 for d in lead.deferred if d[0].client_id == msg.client_id)
            if mine >= DEFERRED_PER_CLIENT or len(lead.deferred) >= DEFERRED_MAX:
                # Not refused (an honest client back from a partition may have many): left
                # unanswered, so the client resends it after a second of silence.
                node.count("deferred-full")
                return []
            lead.deferred.append((msg, addr, first_seen))
            effects = []
            for sid, peer in sorted(node.peers.items()):  # whoever may hold them
                effects.extend(lead.pull(sid, peer, msg.clock, now))
            return effects
        entry = lead.next_entry(body, now, origin)
        # Every entry must fit one frame, or no batch carrying it could ever be sent (the
        # field limits keep an honest one under MAX_ENTRY: this is the backstop). The size
        # is the bytes the entry is then sent as, made once: no extra work.
        size = codec.entry_size(entry)
        if size > codec.MAX_ENTRY:
            too_big = f"the operation is too large: {size} bytes encoded, at most {codec.MAX_ENTRY}"
            return self._refuse(origin, too_big, msg, addr)
        entry, effects = lead.record(entry)
        lead.pending_dots[entry.dot].acks.append((msg.client_id, msg.cmid))
        if type(body) is KeyRemoved:
            effects += self.drop_removed_key(body, now)
        return effects

    def _ack_recorded(self, entry: Entry, msg: Submit) -> list[Effect]:
        """Answer ``msg`` with ``entry``, already in the log: once it commits, or at once if
        it has and every live backup holds it (the ack promises that every one does)."""
        lead = self.lead
        pending = lead.pending_dots.get(entry.dot)
        if pending is not None:
            pending.acks.append((msg.client_id, msg.cmid))
            return []
        # Recorded earlier (another epoch, or before a backup rejoined): a live backup may
        # not hold it yet.
        return lead.ack_when_held(entry, msg.client_id, msg.cmid, lead.held())

    def _membership(self, name: str, room: str) -> Entry | None:
        """The entry that made ``name`` a member of ``room`` (pending ones included), or
        None if it is not one."""
        record = self.lead.node.state.rooms.get(room)
        key = record.members.get(name) if record is not None else None
        if key is None:
            return None
        return self.lead.node.log.get(Dot(key[1], key[2]))

    def _refuse(self, origin: Origin, problem: str, msg: Submit, addr: str) -> list[Effect]:
        self.refused[origin] = problem
        if len(self.refused) > REFUSALS_KEPT:
            self.refused.popitem(last=False)
        return [Send(addr, OpError(self.lead.epoch, msg.cmid, problem))]

    def clock_problem(self, clock: VectorClock) -> str:
        """Why no honest client sends ``clock`` ('' if one may). A clock names the servers
        that sequenced what the client delivered: ours, and after a partition a few that
        joined on the other side only (we learn them by pulling). More unknown servers
        than that is a forgery; kept, it would cost a comparison per entry on every retry
        of the causal wait."""
        if len(clock) <= UNKNOWN_SERVERS_MAX:
            return ""  # every honest clock, at the cost of one len()
        node = self.lead.node
        log_clock = node.log.clock
        unknown = sum(
            1
            for sid, _ in clock.items()
            if sid not in node.peers
            and sid not in node.state.servers
            and not log_clock.get(sid)
            and sid != node.server_id
        )
        if unknown > UNKNOWN_SERVERS_MAX:
            return f"your clock names {unknown} servers this cluster does not know"
        return ""

    def known_part(self, clock: VectorClock) -> VectorClock:
        """What of a client's clock is true of our log: its pointwise minimum with our log
        clock. A client's clock is its word: kept whole (Chat.sender_clock, a session's
        cursor, stored in UserOffline) it let one client poison the log (two private
        messages with 3,000-entry clocks made every replay of that user 72 KB). The
        minimum keeps what causality needs: an entry we hold that the client had seen is
        covered by both clocks, so by their minimum; what we do not hold is not ours to
        record. It has at most one entry per server that sequenced in our log, and no
        counter past ours."""
        return clock.meet(self.lead.node.log.clock)

    def defer_limit(self) -> float:
        lead = self.lead
        return lead.node.config.timing.causal_wait

    def retry_deferred(self, now: float) -> list[Effect]:
        """Sequence the deferred submits whose clocks we now cover (or waited on too long)."""
        lead = self.lead
        if not lead.deferred:
            return []
        waiting, lead.deferred = lead.deferred, []
        effects: list[Effect] = []
        for msg, addr, first_seen in waiting:
            effects.extend(self.on_submit(msg, addr, now, first_seen))
        return effects

    def validate(
        self, session: Session, msg: Submit, known: VectorClock
    ) -> tuple[EntryBody | None, str]:
        """The entry ``msg`` asks for, or why not; ``known`` is ``known_part(msg.clock)``."""
        lead = self.lead
        state = lead.node.state
        name = session.name
        forged = self.clock_problem(msg.clock)
        if forged:
            return None, forged
        match msg.op:
            case SendChat(room=room, to=to, text=text, action=action):
                problem = text_problem(text)
                if problem:
                    return None, problem
                if (room is None) == (to is None):
                    return None, "a message goes to exactly one room or one user"
                if room is not None and not state.is_member(room, name):
                    return None, f"you are not in room {room!r}: /join it first"
                if to is not None and to not in state.accounts:
                    return None, f"no user named {to!r}"
                return Chat(name, room, to, text, action, known), ""
            case JoinRoom(room=room):
                # Only a new room is judged: one an old log holds stays open to its members.
                problem = (
                    None
                    if room in state.rooms
                    else room_problem(room)
                    or look_alike_problem(room, state.room_look_alikes, what="room name")
                )
                if problem:
                    return None, problem
                if state.is_member(room, name):
                    return None, f"you are already in room {room!r}"
                record = state.rooms.get(room)
                if record is not None and not record.may_join(name):
                    return None, (
                        f"room {room!r} is private: only its owner's invitation lets you in"
                    )
                return self.join_limit(state, room, name)
            case CreateRoom() | SetRoomMode() | InviteUser() | KickUser():
                return owner_operation(state, name, msg.op, self.join_limit)
            case LeaveRoom(room=room):
                if not state.is_member(room, name):
                    return None, f"you are not in room {room!r}"
                return RoomLeft(room, name), ""
            case SetAway(away=away, away_reason=reason):
                return self.status_change(state, name, away, reason)
            case SetTopic(room=room, topic=topic):
                problem = topic_problem(topic) or may_set_topic(state, room, name)
                if problem:
                    return None, problem
                return RoomTopic(room, topic, name), ""
            case Logout():
                return UserOffline(name, session.client_id, "logout", session.cursor()), ""
            case PasswordHashed(phc=phc):
                # The session proved a key of the account at login: that is the proof a
                # change needs. The hash is the leader runtime's, but checked all the same.
                if len(phc) > MAX_PHC or not phc.startswith(PHC_PREFIX):
                    return None, "the password hash is not an argon2id PHC string"
                return PasswordSet(name, phc), ""
            case RemoveKey(identity=identity):
                if identity == session.identity:
                    return None, (
                        "that is the key this session logged in with: remove it from "
                        "another of your devices"
                    )
                if not state.holds_key(name, identity):
                    return None, "that key is not one of this account's"
                return KeyRemoved(name, identity), ""
            case SetPassword():
                # Only the leader's runtime turns a password into a hash; one that reaches
                # the core unhashed came another way (a runtime without passwords).
                return None, "this server cannot take passwords (it hashes none)"
        return None, "unknown operation"

    @staticmethod
    def status_change(
        state: ClusterState, name: str, away: bool, reason: str
    ) -> tuple[EntryBody | None, str]:
        """The UserStatus entry for an away/back, or why not. A change to what the user list
        already says is refused (no entry): a client's idle/back flap, resent or replayed,
        costs the log nothing. Judged on ``state``, pending entries included, so the answer
        is the log order's, the same on any leader."""
        if not away and reason:
            return None, "a user who is back has no away reason"
        problem = away_reason_problem(reason)
        if problem:
            return None, problem
        user = state.users.get(name)
        if user is not None and user.away == away and user.away_reason == reason:
            return None, f"you are already {'away' if away else 'back'}"
        return UserStatus(name, away, reason), ""

    def join_limit(self, state: ClusterState, room: str, name: str) -> tuple[EntryBody | None, str]:
        """Refuse a join past the limits. ``state`` includes the pending entries too, so two
        joins in flight cannot both take the last place: the answer depends only on the
        log's order, the same on whichever leader judges it."""
        config = self.lead.node.config
        if len(state.rooms_of.get(name, ())) >= config.max_rooms_per_user:
            return None, (
                f"you are in {config.max_rooms_per_user} rooms, the most a user may be in: "
                "/leave one first"
            )
        record = state.rooms.get(room)
        if record is not None and len(record.members) >= config.max_room_members:
            return None, f"room {room!r} is full ({config.max_room_members} members)"
        if record is not None:
            weight = sum(codec.utf8_size(m) for m in record.members)
            weight += MEMBER_OVERHEAD * len(record.members)
            if weight + codec.utf8_size(name) + MEMBER_OVERHEAD > MEMBER_LIST_BYTES:
                return None, (
                    f"room {room!r} is full: its member list is at its limit of "
                    f"{MEMBER_LIST_BYTES} bytes"
                )
        return RoomJoined(room, name), ""

    def on_beat(self, msg: ClientBeat, now: float) -> list[Effect]:
        lead = self.lead
        session = lead.streams.sessions.get(msg.client_id)
        if session is None:
            return []
        session.last_heard = now
        streams = lead.streams
        # A client cannot have delivered past what we streamed: its number, capped.
        last = min(msg.last, streams.gsn)
        if session.active and msg.epoch == streams.epoch:
            streams.joined(session, last)
        # It missed our LobbyBeats, or it is behind its channels' heads (a frame or the
        # heartbeat after it was lost): the heads, over the session.
        if (
            session.active
            and msg.epoch == streams.epoch
            and (msg.probe or last < streams.head(session))
        ):
            return list(streams.heartbeat(session, lead.node.server_id))
        return []

    def expire_clients(self, now: float) -> list[Effect]:
        lead = self.lead
        node = lead.node
        timeout = node.config.timing.client_timeout
        effects: list[Effect] = []
        for name in sorted(node.state.users):
            record = node.state.users[name]
            for client_id, addr in list(record.sessions.items()):
                effects.extend(self._expire_session(name, client_id, addr, now, timeout))
        return effects

    def _expire_session(
        self, name: str, client_id: str, addr: str, now: float, timeout: float
    ) -> list[Effect]:
        lead = self.lead
        node = lead.node
        record = node.state.users[name]
        session = lead.streams.sessions.get(client_id)
        if session is None:
            # Online in the log but never seen in this epoch: give it time to resume.
            session = Session(name, client_id, addr, True, now)
            session.identity = record.key_of(client_id)
            lead.streams.attach(session)
            return []
        # A session now serving under another name (renamed after a clash) no longer
        # owns this one; a silent one has timed out.
        if session.name != name:
            reason = f"renamed to {session.name}"
        elif now - session.last_heard > timeout and now >= node.wake.judge_after:
            reason = "timeout"
        else:
            return []
        if any(
            isinstance(p.entry.body, UserOffline) and p.entry.body.client_id == client_id
            for p in lead.pending
        ):
            return []
        _, effects = lead.sequence(UserOffline(name, client_id, reason, session.cursor()), now)
        effects.append(node.log_event("client-dropped", f"user {name}: {reason}", user=name))
        return effects

    def on_history(self, msg: HistoryRequest, addr: str) -> list[Effect]:
        lead = self.lead
        session = lead.streams.sessions.get(msg.client_id)
        if session is None:
            return []
        name = session.name
        limit = max(1, min(msg.limit, 500))
        state = lead.node.state
        refusal = history_refusal(state, name, msg)
        if refusal:
            # Answered (empty), so the client stops waiting; counted and logged, never served.
            node = lead.node
            node.count("history-refused")
            return [
                node.log_event("history-refused", f"user {name}: {refusal}", user=name),
                Send(addr, HistoryReply(lead.epoch, msg.request_id, ())),
            ]

        def wanted(entry: Entry) -> bool:
            body = entry.body
            assert isinstance(body, Chat)
            if msg.room is not None:
                return body.room == msg.room and may_read(state, name, entry, scrollback=True)
            return body.room is None and {body.sender, body.to} == {name, msg.peer}

        found = lead.node.log.chats_before(msg.before, limit, wanted)
        found = [public_entry(e) for e in found if e.dot not in lead.pending_dots]
        effects: list[Effect] = []
        while True:
            chunk, _ = lead.node.chunk(iter(found))
            found = found[len(chunk) :]
            effects.append(Send(addr, HistoryReply(lead.epoch, msg.request_id, chunk)))
            if not found:
                return effects

    def on_rooms(self, msg: RoomsRequest, addr: str) -> list[Effect]:
        """The room directory, from the committed state, in chunks."""
        lead = self.lead
        session = lead.streams.sessions.get(msg.client_id)
        user = session.name if session is not None else None
        rooms = [
            RoomSummary(
                record.name,
                record.group,
                len(record.members),
                tuple(sorted(record.members)[:ROOM_SUMMARY_MEMBERS]),
                record.messages,
                record.last_ts,
                record.topic,
            )
            for _, record in sorted(lead.streams.view.rooms.items())
            if listed(record, user)
        ]
        parts = codec.split(rooms, codec.packed_size, most=ROOMS_PER_REPLY) or [()]
        return [
            Send(addr, RoomsReply(lead.epoch, msg.request_id, tuple(part), i == len(parts) - 1))
            for i, part in enumerate(parts)
        ]

    def notify_clashes(self) -> list[Effect]:
        """Tell sessions whose login lost its name in a merge."""
        lead = self.lead
        effects: list[Effect] = []
        for clash in lead.node.state.clashes:
            session = lead.streams.sessions.get(clash.client_id)
            if session is not None and session.name == clash.name:
                lead.streams.detach(clash.client_id)
                effects.append(
                    Send(
                        session.addr,
                        NameClash(
                            lead.epoch,
                            clash.name,
                            f"{clash.name!r} was also registered on the other side of a "
                            "network partition; the earlier registration keeps the name",
                        ),
                    )
                )
        lead.node.state.clashes.clear()
        effects.extend(self.drop_replaced())
        return effects

    def drop_replaced(self) -> list[Effect]:
        """Tell and drop the sessions a user's newest login replaced (past MAX_SESSIONS)."""
        lead = self.lead
        effects: list[Effect] = []
        for replaced in lead.node.state.replaced:
            session = lead.streams.detach(replaced.client_id)
            if session is not None:
                effects.append(
                    Send(
                        session.addr,
                        Rejected(
                            f"logged out: {replaced.name!r} logged in on more than "
                            f"{MAX_SESSIONS} sessions, and this was the oldest"
                        ),
                    )
                )
        lead.node.state.replaced.clear()
        return effects
