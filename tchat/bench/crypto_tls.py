"""TLS 1.3 and Noise session pairs made in memory, for ``tchat bench crypto`` to weigh and time."""

from __future__ import annotations

import datetime
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from tchat.crypto.records import RecordOpener, RecordSealer
from tchat.crypto.session import NoiseInitiator, NoiseResponder

SERVER_NAME = "tchat-server"
HANDSHAKE_ROUNDS = 10  # a TLS 1.3 handshake needs 2-3 flights; more means something is wrong


@dataclass(slots=True)
class TlsContexts:
    """A server and a client context for one self-signed Ed25519 certificate."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    tmp: tempfile.TemporaryDirectory[str]


def tls_contexts() -> TlsContexts:
    """TLS 1.3 only, a self-signed Ed25519 certificate, no session tickets (nothing resumes)."""
    tmp = tempfile.TemporaryDirectory(prefix="tchat-bench-tls-")
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(key, None)
    )
    cert_path = Path(tmp.name) / "cert.pem"
    key_path = Path(tmp.name) / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(cert_path, key_path)
    server.num_tickets = 0
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(cert_path)
    return TlsContexts(server, client, tmp)


@dataclass(slots=True)
class TlsEnd:
    """One side of an in-memory TLS session: the SSLObject and its two BIOs."""

    obj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def _pump(src: TlsEnd, dst: TlsEnd) -> None:
    data = src.outgoing.read()
    if data:
        dst.incoming.write(data)


def tls_pair(ctx: TlsContexts) -> tuple[TlsEnd, TlsEnd]:
    """A client and a server end with the handshake done (both sides in this process)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = TlsEnd(ctx.client.wrap_bio(c_in, c_out, server_hostname=SERVER_NAME), c_in, c_out)
    server = TlsEnd(ctx.server.wrap_bio(s_in, s_out, server_side=True), s_in, s_out)
    done = [False, False]
    for _ in range(HANDSHAKE_ROUNDS):
        for i, end in enumerate((client, server)):
            if not done[i]:
                try:
                    end.obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        _pump(client, server)
        _pump(server, client)
        if all(done):
            return client, server
    raise RuntimeError("TLS handshake did not finish")


def tls_send(src: TlsEnd, dst: TlsEnd, data: bytes) -> bytes:
    """Encrypt on one end, decrypt on the other: the plaintext as received."""
    src.obj.write(data)
    _pump(src, dst)
    out = bytearray()
    while len(out) < len(data):
        out += dst.obj.read(len(data) - len(out))
    return bytes(out)


NoiseEnd = tuple[RecordSealer, RecordOpener]


def noise_pair(server_key: X25519PrivateKey, payload: bytes = b"") -> tuple[NoiseEnd, NoiseEnd]:
    """A client and a server end of an NX session with the handshake done."""
    client = NoiseInitiator()
    server = NoiseResponder(server_key, payload=payload)
    reply = server.step(client.start())
    if not client.step(reply.out).done:
        raise RuntimeError("Noise handshake did not finish")
    # Only the record layers are kept: the handshake objects go, as the runtime will drop them.
    return client.transport(), server.transport()


def noise_send(src: NoiseEnd, dst: NoiseEnd, data: bytes) -> bytes:
    return b"".join(dst[1].feed(src[0].seal(data)))
