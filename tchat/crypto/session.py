"""tchat's encrypted-session handshake: Noise NX (client to server) or XX, sans-IO, over records.

The server (responder) proves a static X25519 key and sends a payload (the cluster's certificate
of that key); the client (initiator) has no static key in NX. Both then hold `handshake_hash`,
unique to this session, which the client signs with its identity key to log in (channel
binding), and the record layer's two directions from `transport()`.

NX alone proves only that the server holds *some* key: before it sends anything (the login
first of all) the client must check that `remote_payload` is the cluster's certificate of
`remote_static`; otherwise a man in the middle completes the handshake with his own key.

XX (both sides send a static key) serves a peer that has a key of its own, such as a server
dialling another server. The caller bounds the handshake's time; a `NoiseError` from `step`
means: close the connection. Why NX, ChaChaPoly and SHA256: docs/SECURITY.md.
"""

from __future__ import annotations

from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tchat.crypto.noise import DH_LEN, MAX_MESSAGE, TAG_LEN, HandshakeState, NoiseError
from tchat.crypto.records import RecordOpener, RecordReader, RecordSealer, frame

# The prologue enters the handshake hash: a peer speaking another version, or a downgrade by
# a man in the middle, makes the handshakes differ and fail at the first tag.
PROLOGUE = b"tchat encrypted session v1"
NX_PROTOCOL = "Noise_NX_25519_ChaChaPoly_SHA256"
XX_PROTOCOL = "Noise_XX_25519_ChaChaPoly_SHA256"
# The responder's second message: e, encrypted s (with tag), encrypted payload (with tag).
MAX_RESPONDER_PAYLOAD = MAX_MESSAGE - DH_LEN - (DH_LEN + TAG_LEN) - TAG_LEN
# The initiator's XX third message: encrypted s, encrypted payload.
MAX_INITIATOR_PAYLOAD = MAX_MESSAGE - (DH_LEN + TAG_LEN) - TAG_LEN


class HandshakeStep(NamedTuple):
    """What one `step` produced: bytes to send (maybe none) and whether the handshake is done."""

    out: bytes
    done: bool


class _Handshake:
    """The part both roles share: read records, answer in turn, hand over the transport."""

    def __init__(self, state: HandshakeState, payload: bytes) -> None:
        self._state = state
        self._payload = payload
        self._reader = RecordReader(min_length=1)
        self._failed = False
        self._transport_taken = False
        self.remote_payload: bytes | None = None

    @property
    def done(self) -> bool:
        return self._state.finished

    @property
    def handshake_hash(self) -> bytes:
        """The session's handshake hash: final (and meaningful to sign) once `done`."""
        if not self._state.finished:
            raise NoiseError("the handshake hash is not final before the handshake is done")
        return self._state.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key (32 bytes) once received; None in NX on the server."""
        return self._state.remote_static

    def _write(self) -> bytes:
        return frame(self._state.write_message(self._payload))

    def step(self, data: bytes) -> HandshakeStep:
        """Feed bytes from the peer; get the bytes to send back and whether the handshake is done.

        Bytes that arrive behind the handshake's last record are kept for `transport()`.
        """
        if self._failed:
            raise NoiseError("this handshake already failed; the connection must be closed")
        if self._state.finished:
            raise NoiseError("handshake data after the handshake is done: use transport()")
        try:
            out: list[bytes] = []
            while not self._state.finished:
                records = self._reader.feed(data, max_records=1)
                data = b""
                if not records:
                    break
                payload = self._state.read_message(records[0])
                self._accept_payload(payload)
                if not self._state.finished and self._state.our_turn_to_write():
                    out.append(self._write())
            return HandshakeStep(b"".join(out), self._state.finished)
        except NoiseError:
            self._failed = True
            self._reader.fail()
            raise

    def _accept_payload(self, payload: bytes) -> None:
        # A payload counts only when it travelled encrypted (bound to the keys so far); one in
        # a cleartext message (NX/XX message 1) is anyone's, so it is refused outright.
        if self._state.payload_was_encrypted:
            self.remote_payload = payload
        elif payload:
            raise NoiseError("unexpected payload in a cleartext handshake message")

    def transport(self) -> tuple[RecordSealer, RecordOpener]:
        """(sealer, opener) of the established session; callable once, after `done`.

        Records that arrived with the handshake's last message are inside the opener: call
        `opener.feed(b"")` once to read them before waiting for more bytes.
        """
        if not self._state.finished:
            raise NoiseError("transport() before the handshake is done")
        if self._transport_taken:
            raise NoiseError("transport() may be taken only once (nonces must never repeat)")
        self._transport_taken = True
        send, receive = self._state.split()
        return RecordSealer(send), RecordOpener(receive, pending=self._reader.take_pending())


class NoiseInitiator(_Handshake):
    """The client side: NX without a static key, XX with one; `start()` gives the first record."""

    def __init__(
        self,
        prologue: bytes = PROLOGUE,
        *,
        static_private: bytes | X25519PrivateKey | None = None,
        payload: bytes = b"",
    ) -> None:
        if static_private is None and payload:
            raise NoiseError("NX: an initiator without a static key sends no payload")
        if len(payload) > MAX_INITIATOR_PAYLOAD:
            raise NoiseError(f"initiator payload over {MAX_INITIATOR_PAYLOAD} bytes")
        protocol = NX_PROTOCOL if static_private is None else XX_PROTOCOL
        state = HandshakeState(protocol, initiator=True, prologue=prologue, static=static_private)
        super().__init__(state, payload)
        self._started = False

    def start(self) -> bytes:
        """The first handshake record (the ephemeral key, no payload)."""
        if self._started:
            raise NoiseError("start() was already called")
        self._started = True
        return frame(self._state.write_message(b""))

    def step(self, data: bytes) -> HandshakeStep:
        if not self._started:
            raise NoiseError("step() before start(): the initiator speaks first")
        return super().step(data)


class NoiseResponder(_Handshake):
    """The server side: proves `static_private` and sends `payload` in its one message."""

    def __init__(
        self,
        static_private: bytes | X25519PrivateKey,
        prologue: bytes = PROLOGUE,
        payload: bytes = b"",
        *,
        mutual: bool = False,
    ) -> None:
        if len(payload) > MAX_RESPONDER_PAYLOAD:
            raise NoiseError(f"responder payload over {MAX_RESPONDER_PAYLOAD} bytes")
        protocol = XX_PROTOCOL if mutual else NX_PROTOCOL
        state = HandshakeState(protocol, initiator=False, prologue=prologue, static=static_private)
        super().__init__(state, payload)
