"""The record layer: 2-byte big-endian length + one Noise message, for the handshake and after it.

A record carries one Noise message of at most 65535 bytes: during the handshake a handshake
message, after it a transport message (ciphertext with its 16-byte tag). One parser,
`RecordReader`, splits both phases. `RecordSealer` / `RecordOpener` are the two directions of
an established session.

Memory: a reader holds at most one partial record (at most 2 + 65535 bytes) and drops its
buffer when it is empty, so an idle connection holds no buffer at all. Records wholly inside
one `feed` are read in place (a memoryview), so a 64 KiB frame costs O(size) copying.

Errors: any `NoiseError` from `feed` (bad tag, impossible length) means the stream can no
longer be trusted or even delimited: the connection must be closed. The reader/opener stays
failed and raises again on every later call.
"""

from __future__ import annotations

from tchat.crypto.noise import MAX_MESSAGE, TAG_LEN, CipherState, NoiseError

LENGTH_LEN = 2
MAX_RECORD = LENGTH_LEN + MAX_MESSAGE
# Plaintext per transport record: the message cap less the tag.
MAX_RECORD_PLAINTEXT = MAX_MESSAGE - TAG_LEN


def frame(message: bytes) -> bytes:
    """One record around a Noise message (a handshake message or a sealed transport one)."""
    if len(message) > MAX_MESSAGE:
        raise NoiseError(f"a record holds at most {MAX_MESSAGE} bytes, not {len(message)}")
    return len(message).to_bytes(LENGTH_LEN, "big") + message


class RecordReader:
    """Splits a byte stream into records' bodies; keeps at most one partial record."""

    __slots__ = ("_min_length", "_partial", "_pending", "_failed")

    def __init__(self, min_length: int = 1, pending: bytes = b"") -> None:
        # Lengths below min_length cannot be a valid record in this phase: refuse at the header.
        self._min_length = min_length
        self._partial: bytearray | None = None
        self._failed = False
        # Bytes that arrived behind the handshake's last record: read before the next feed.
        self._pending: bytes | None = pending or None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete record (0 when idle: no buffer is kept)."""
        held = len(self._partial) if self._partial is not None else 0
        return held + (len(self._pending) if self._pending is not None else 0)

    def take_pending(self) -> bytes:
        """Hand over what is buffered (the bytes after the last record read) and forget it."""
        pending = (self._pending or b"") + (bytes(self._partial) if self._partial else b"")
        self._partial = None
        self._pending = None
        return pending

    def fail(self) -> None:
        """Mark the stream failed (a record's content was refused): drop the buffers."""
        self._failed = True
        self._partial = None
        self._pending = None

    def feed(self, data: bytes, max_records: int | None = None) -> list[bytes]:
        """The bodies of the records completed by `data`, in order.

        With `max_records`, bytes past that many records stay pending, unread, for the next
        `feed` or for `take_pending` (the handshake stops at its last record this way).
        """
        return [bytes(body) for body in self.feed_views(data, max_records)]

    def feed_views(self, data: bytes, max_records: int | None = None) -> list[memoryview | bytes]:
        """As `feed`, but bodies inside `data` come as memoryviews into it (no copy).

        The views are only valid while the caller does not mutate `data`; `RecordOpener`
        consumes them at once.
        """
        if self._failed:
            raise NoiseError("record stream already failed; the connection must be closed")
        if self._pending is not None:
            data = self._pending + bytes(data)
            self._pending = None
        try:
            return self._split(memoryview(data), max_records)
        except NoiseError:
            self.fail()
            raise

    def _check_length(self, length: int) -> int:
        if length < self._min_length:
            raise NoiseError(f"record length {length} is below the minimum {self._min_length}")
        return length

    def _split(self, view: memoryview, max_records: int | None) -> list[memoryview | bytes]:
        bodies: list[memoryview | bytes] = []
        partial = self._partial
        if partial is not None:
            # Complete the header first, then exactly the rest of this one record: never more,
            # so the buffer never grows past one record.
            if len(partial) < LENGTH_LEN:
                take = LENGTH_LEN - len(partial)
                partial += view[:take]
                view = view[take:]
                if len(partial) < LENGTH_LEN:
                    return bodies
            length = self._check_length(int.from_bytes(partial[:LENGTH_LEN], "big"))
            take = LENGTH_LEN + length - len(partial)
            partial += view[:take]
            view = view[take:]
            if len(partial) < LENGTH_LEN + length:
                return bodies
            bodies.append(bytes(partial[LENGTH_LEN:]))
            self._partial = None  # release: an idle connection holds no buffer
        pos = 0
        end = len(view)
        while end - pos >= LENGTH_LEN:
            if max_records is not None and len(bodies) >= max_records:
                self._pending = bytes(view[pos:])
                return bodies
            length = self._check_length(int.from_bytes(view[pos : pos + LENGTH_LEN], "big"))
            if end - pos - LENGTH_LEN < length:
                break
            bodies.append(view[pos + LENGTH_LEN : pos + LENGTH_LEN + length])
            pos += LENGTH_LEN + length
        if pos < end:
            self._partial = bytearray(view[pos:])
        return bodies


class RecordSealer:
    """Our direction of an established session: plaintext of any length -> records."""

    __slots__ = ("_cipher",)

    def __init__(self, cipher: CipherState) -> None:
        self._cipher = cipher

    def seal(self, data: bytes) -> bytes:
        """Records carrying `data`, split into at most MAX_RECORD_PLAINTEXT bytes each.

        Empty data gives one empty record (a tag only): a valid keepalive.
        """
        if len(data) <= MAX_RECORD_PLAINTEXT:  # the common case: one record, one join
            sealed = self._cipher.encrypt_with_ad(b"", data)
            return len(sealed).to_bytes(LENGTH_LEN, "big") + sealed
        view = memoryview(data)
        parts: list[bytes] = []
        start = 0
        while True:
            chunk = view[start : start + MAX_RECORD_PLAINTEXT]
            sealed = self._cipher.encrypt_with_ad(b"", chunk)
            parts.append(len(sealed).to_bytes(LENGTH_LEN, "big"))
            parts.append(sealed)
            start += MAX_RECORD_PLAINTEXT
            if start >= len(view):
                return b"".join(parts)


class RecordOpener:
    """The peer's direction of an established session: bytes from the socket -> plaintexts.

    A record's plaintext is returned as it is; record boundaries carry no meaning (the
    application frames its own messages inside the stream).
    """

    __slots__ = ("_cipher", "_reader")

    def __init__(self, cipher: CipherState, pending: bytes = b"") -> None:
        self._cipher = cipher
        # A transport record is at least its tag: anything shorter is refused at the header.
        self._reader = RecordReader(min_length=TAG_LEN, pending=pending)

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def feed(self, data: bytes) -> list[bytes]:
        """Plaintexts of the records completed so far; `NoiseError` means close the connection."""
        out: list[bytes] = []
        for body in self._reader.feed_views(data):
            try:
                out.append(self._cipher.decrypt_with_ad(b"", body))
            except NoiseError:
                self._reader.fail()
                raise
        return out
