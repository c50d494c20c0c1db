"""Runtime-side cryptography: keys, certificates, sealed datagrams, room keys, pins and sessions."""
