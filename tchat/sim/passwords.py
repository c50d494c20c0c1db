"""The leader runtime's password desk, simulated: a stand-in hash, the same decisions.

The runtime (``tchat.runtime.passwords``) hashes with argon2id on a thread; the simulator
needs neither the cost nor the salt's randomness, only that a password matches its own hash
and no other. So the hash here is a SHA-256 dressed as a PHC string, and the desk's routing
is the runtime's: a Register whose key is the account's (or whose name is free) goes to the
core as is, one with a password is checked and becomes ``PasswordLogin`` or a refusal, a
``SetPassword`` becomes ``PasswordHashed``. The rate limits are the runtime's business (and
its tests'): the core's decisions are what the simulator checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tchat.core.desk import no_password
from tchat.core.messages import (
    Message,
    PasswordHashed,
    PasswordLogin,
    Register,
    SetPassword,
    Submit,
)

Step = tuple[str, Callable[..., Any], tuple[Any, ...]]


def sim_phc(password: str) -> str:
    """A deterministic stand-in for an argon2id PHC string of ``password``."""
    digest = hashlib.sha256(b"tchat sim password\0" + password.encode()).hexdigest()
    return f"$argon2id$v=19$m=8,t=1,p=1$c2lt${digest[:43]}"


def desk_step(node: Any, message: Message, src: str, now: float) -> Step | None:
    """What the server runtime hands its core for ``message`` if it carries a password
    (None: the message goes to the core as it is)."""
    if type(message) is Register and message.password:
        bare = replace(message, password="")  # the core never sees a password
        state = node.state
        if (
            node.leadership is None
            or bare.name not in state.claims
            or state.holds_key(bare.name, bare.identity)
        ):
            return "handle", node.handle, (bare, src, now)
        phc = state.passwords.get(bare.name)
        if phc is None:
            return "refuse", node.refuse_login, (bare, no_password(bare.name), "password-none")
        if phc != sim_phc(message.password):
            wrong = f"wrong password for {bare.name!r}"
            return "refuse", node.refuse_login, (bare, wrong, "password-wrong")
        return "password", node.password_login, (PasswordLogin(bare, phc), now)
    if type(message) is Submit and type(message.op) is SetPassword:
        hashed = replace(message, op=PasswordHashed(sim_phc(message.op.password)))
        return "handle", node.handle, (hashed, src, now)
    return None
