"""Cryptography on `cryptography`'s primitives: identities (and, later, sessions and keys)."""
