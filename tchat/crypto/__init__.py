"""Runtime-side cryptography: Noise, the encrypted record layer and the session handshake."""
