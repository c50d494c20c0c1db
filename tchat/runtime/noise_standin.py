"""STAND-IN for tchat/crypto/records.py (branch `noise`): the lead replaces it at merge.

Only what tchat/runtime/secure.py needs, on tchat.crypto.noise's HandshakeState, with the
planned interface: ``NoiseInitiator(prologue)``, ``NoiseResponder(static_private,
prologue, payload)``, ``step(message) -> (records, done)``, ``.handshake_hash``,
``.remote_static``, ``.remote_payload``, ``.transport() -> (RecordSealer, RecordOpener)``.
A record is a 2-byte big-endian length and one Noise message (at most 65535 bytes).
"""

from __future__ import annotations

from tchat.crypto.noise import MAX_MESSAGE, TAG_LEN, CipherState, HandshakeState, NoiseError

PROTOCOL = "Noise_NX_25519_ChaChaPoly_BLAKE2s"
MAX_PLAINTEXT = MAX_MESSAGE - TAG_LEN
_EMPTY = b""

__all__ = ["NoiseError", "NoiseInitiator", "NoiseResponder", "RecordOpener", "RecordSealer"]


def record(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class RecordSealer:
    """Plaintext of any length -> records of at most MAX_PLAINTEXT bytes of plaintext each."""

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher

    def seal(self, data: bytes) -> bytes:
        enc = self.cipher.encrypt_with_ad
        if len(data) <= MAX_PLAINTEXT:
            return record(enc(_EMPTY, data))
        view = memoryview(data)
        return b"".join(
            record(enc(_EMPTY, bytes(view[i : i + MAX_PLAINTEXT])))
            for i in range(0, len(data), MAX_PLAINTEXT)
        )


class RecordOpener:
    """Bytes from the stream -> plaintexts of the complete records; NoiseError if forged."""

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.buffer
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 2:
            size = int.from_bytes(buf[pos : pos + 2], "big")
            if size < TAG_LEN:
                raise NoiseError(f"a record of {size} bytes cannot hold a tag")
            if len(buf) - pos - 2 < size:
                break
            out.append(self.cipher.decrypt_with_ad(_EMPTY, bytes(buf[pos + 2 : pos + 2 + size])))
            pos += 2 + size
        if pos:
            del buf[:pos]
        if not buf:
            self.buffer = bytearray()  # an idle connection holds no buffer
        return out


class _Side:
    def __init__(self, state: HandshakeState) -> None:
        self.state = state
        self.remote_payload = b""

    @property
    def handshake_hash(self) -> bytes:
        return self.state.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        return self.state.remote_static

    def transport(self) -> tuple[RecordSealer, RecordOpener]:
        send, receive = self.state.split()
        return RecordSealer(send), RecordOpener(receive)


class NoiseInitiator(_Side):
    """The connecting side: no static key; learns the responder's key and payload."""

    def __init__(self, prologue: bytes) -> None:
        super().__init__(HandshakeState(PROTOCOL, initiator=True, prologue=prologue))

    def step(self, message: bytes | None) -> tuple[bytes, bool]:
        """None to start (-> e); then the responder's message (<- e, ee, s, es)."""
        if message is None:
            return record(self.state.write_message()), False
        self.remote_payload = self.state.read_message(message)
        return _EMPTY, True


class NoiseResponder(_Side):
    """The accepting side: its static key and a payload (the certificate) in message 2."""

    def __init__(self, static_private: bytes, prologue: bytes, payload: bytes) -> None:
        super().__init__(
            HandshakeState(PROTOCOL, initiator=False, prologue=prologue, static=static_private)
        )
        self.payload = payload

    def step(self, message: bytes | None) -> tuple[bytes, bool]:
        if message is None:
            raise NoiseError("the responder does not speak first")
        self.state.read_message(message)
        return record(self.state.write_message(self.payload)), True
