"""What clients see of a log entry: every client ID replaced by a one-way tag of it."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache

from tchat.core import packing
from tchat.core.messages import Entry, Origin, UserOffline, UserOnline

# A client ID was the key to its session (and still names it to the leader): frames other
# clients see carry a tag instead, the same on every leader (so a client still drops a
# copy of an operation that two leaders streamed, and knows its own operations by its own
# tag), from which the ID cannot be found. 64 bits: never more bytes than the 128-bit IDs
# the runtime makes, so a frame built to the budget with IDs fits it with tags.
TAG_CHARS = 16
# A leader tags the origin of every entry it streams: a hash each time was ~1 us a
# message. Bounded (the least recently used go) and a pure function of the ID, so the
# cache changes no result; the online sessions of a big server (10,000) fit.
TAGS_KEPT = 16_384


@lru_cache(maxsize=TAGS_KEPT)
def client_tag(client_id: str) -> str:
    """The tag clients see for ``client_id``."""
    digest = hashlib.sha256(b"tchat client tag\0" + client_id.encode()).hexdigest()
    return digest[:TAG_CHARS]


def public_entry(entry: Entry) -> Entry:
    """``entry`` as it may go to clients: its origin's and its body's client IDs tagged."""
    origin = entry.origin
    body = entry.body
    # By type, not isinstance(body, UserOnline | UserOffline): that builds the union on
    # every call, and this runs for every entry a leader streams (no subclasses exist).
    if origin is not None:
        origin = Origin(client_tag(origin.client_id), origin.cmid)
    elif type(body) is not UserOnline and type(body) is not UserOffline:
        return entry
    if type(body) is UserOnline or type(body) is UserOffline:
        body = replace(body, client_id=client_tag(body.client_id))
    # Not dataclasses.replace: that walks the fields by name, twice the cost, per message.
    shown = Entry(entry.dot, entry.clock, entry.ts, origin, body)
    packing.share_bytes(entry, shown)  # its bytes are the entry's, with the tag spliced in
    return shown
