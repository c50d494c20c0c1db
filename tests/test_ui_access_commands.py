"""The room-ownership commands of the Textual composer and the headless client: parsing."""

from __future__ import annotations

from tchat.core.messages import CreateRoom, InviteUser, KickUser, SetRoomMode
from tchat.runtime.headless import parse as headless_parse
from tchat.ui.commands import COMMANDS, Command, Invalid, parse


def test_the_composer_parses_create_mode_invite_and_kick() -> None:
    assert parse("/create #den --private") == Command("create", ("den", "--private"))
    assert parse("/create den") == Command("create", ("den",))
    assert parse("/mode private") == Command("mode", ("private",))
    assert parse("/mode public #den") == Command("mode", ("public", "den"))
    assert parse("/invite bob") == Command("invite", ("bob",))
    assert parse("/kick bob den") == Command("kick", ("bob", "den"))
    for bad in ("/create den --secret", "/mode hidden", "/invite", "/kick a b c", "/create"):
        assert isinstance(parse(bad), Invalid), bad
    for name in ("create", "mode", "invite", "kick"):
        assert COMMANDS[name].summary  # listed by /help


def test_the_headless_client_parses_create_mode_invite_and_kick() -> None:
    assert headless_parse("/create den --private", None).op == CreateRoom("den", True)
    assert headless_parse("/create den", None).op == CreateRoom("den", False)
    assert headless_parse("/mode den public", None).op == SetRoomMode("den", False)
    assert headless_parse("/invite den bob", None).op == InviteUser("den", "bob")
    assert headless_parse("/kick den bob", None).op == KickUser("den", "bob")
    for bad in ("/create", "/create den x", "/mode den", "/invite den", "/kick den bob x"):
        assert headless_parse(bad, None).error, bad


def test_room_admin_operations_share_the_room_rate_limit() -> None:
    from tchat.core.messages import Submit
    from tchat.core.vclock import VectorClock
    from tchat.runtime.limits import operation_kind

    for op in (
        CreateRoom("d", True),
        SetRoomMode("d", False),
        InviteUser("d", "b"),
        KickUser("d", "b"),
    ):
        assert operation_kind(Submit("c", 1, op, VectorClock(), 0.0)) == "room"
