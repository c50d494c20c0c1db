"""The composer's slash commands: parsing into intents, help text and Tab completion."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tchat.core.away import away_reason_problem
from tchat.core.messages import MAX_NAME, MAX_TEXT
from tchat.core.names import checked_name, normal_name, room_problem

_LEADING = re.compile(r"^[#@/]")  # would read as a room, a mention or a command
DESKTOP = ("osc9", "osc777", "off")
MAX_PARTS = 8  # a longer text goes out as up to this many messages; more is refused


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    min_args: int = 0
    max_args: int | None = 0  # None: the rest of the line is one free-text argument


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("join", "/join ROOM", "join ROOM, creating it if needed", 1, 1),
        CommandSpec("leave", "/leave [ROOM]", "leave ROOM (default: the current room)", 0, 1),
        CommandSpec(
            "create", "/create ROOM [--private]", "create ROOM; --private: by invitation", 1, 2
        ),
        CommandSpec("mode", "/mode private|public [ROOM]", "who may join a room you own", 1, 2),
        CommandSpec("invite", "/invite USER [ROOM]", "let USER join your private room", 1, 2),
        CommandSpec("kick", "/kick USER [ROOM]", "remove USER from your private room", 1, 2),
        CommandSpec("msg", "/msg USER [TEXT]", "open a private chat with USER, send TEXT", 1, None),
        CommandSpec("who", "/who", "list the users online"),
        CommandSpec("me", "/me ACTION", "send an action to this conversation", 1, None),
        CommandSpec(
            "away", "/away [REASON]", "mark yourself away, with REASON; alone: toggle", 0, None
        ),
        CommandSpec("back", "/back", "mark yourself back (ends /away and auto-away)"),
        CommandSpec("whois", "/whois USER", "USER's address, status and away reason", 1, 1),
        CommandSpec(
            "search", "/search TEXT", "find TEXT everywhere (Alt+N/Alt+P: next/previous)", 1, None
        ),
        CommandSpec(
            "lastlog", "/lastlog TEXT", "list this conversation's lines with TEXT", 1, None
        ),
        CommandSpec("names", "/names", "list the members of this conversation"),
        CommandSpec(
            "topic", "/topic [TEXT | -clear]", "show, set or clear this room's topic", 0, None
        ),
        CommandSpec("list", "/list [PATTERN]", "the cluster's rooms: members and topics", 0, 1),
        CommandSpec("clear", "/clear", "clear this conversation's window"),
        CommandSpec("resend", "/resend", "send this conversation's refused messages again"),
        CommandSpec("dismiss", "/dismiss", "drop this conversation's refused messages"),
        CommandSpec("info", "/info", "the session: leader, epoch, delivery, cluster key"),
        CommandSpec("highlight", "/highlight [WORD]", "ring and mark on WORD too (list)", 0, 1),
        CommandSpec(
            "notify",
            "/notify [all|mentions|none]",
            "when this conversation rings; /notify desktop osc9|osc777|off",
            0,
            2,
        ),
        CommandSpec("theme", "/theme NAME", "switch the colour theme (saved)", 1, 1),
        CommandSpec(
            "password", "/password", "set or change your account's password (asked, masked)"
        ),
        CommandSpec(
            "devices", "/devices [remove N]", "list your account's keys (or remove one)", 0, 2
        ),
        CommandSpec("help", "/help [COMMAND]", "show this help, or one command's", 0, 1),
        CommandSpec("quit", "/quit", "log out and exit"),
    )
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...]
    rest: str = ""  # free text after the fixed arguments


@dataclass(frozen=True, slots=True)
class Plain:
    text: str


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str


Parsed = Command | Plain | Invalid


def parse(line: str) -> Parsed:
    """Turn a composer line into a command, plain text or an explanation of what is wrong."""
    text = line.rstrip("\r\n")
    if not text.startswith("/") or text.startswith("//"):
        # "//x" sends "/x" literally, as in IRC clients.
        body = text[1:] if text.startswith("//") else text
        if not body.strip():
            return Invalid("nothing to send")
        problem = length_problem(body)
        if problem:
            return Invalid(problem)
        return Plain(body)
    head, _, tail = text[1:].partition(" ")
    name = head.lower()
    spec = COMMANDS.get(name)
    if spec is None:
        hint = ", ".join(c for c in COMMANDS if c.startswith(name[:1])) if name else ""
        extra = f" (did you mean: {hint}?)" if hint else ""
        return Invalid(f"unknown command /{head}{extra}; /help lists them")
    tail = tail.strip()
    if spec.max_args is None:
        first, _, rest = tail.partition(" ")
        if spec.min_args and not tail:
            return Invalid(f"usage: {spec.usage}")
        if name == "msg":
            user, problem = name_or_problem(first, MAX_NAME)
            if problem:
                return Invalid(f"not a user name: {problem}; usage: {spec.usage}")
            return Command(name, (user,), rest.strip())
        if name == "away":
            # Checked here as the servers check it, so a bad reason is explained at once.
            problem = away_reason_problem(tail)
            if problem:
                return Invalid(f"{problem}; usage: {spec.usage}")
        return Command(name, (), tail)
    args = tuple(tail.split()) if tail else ()
    if not spec.min_args <= len(args) <= spec.max_args:
        return Invalid(f"usage: {spec.usage}")
    if name in ("join", "leave"):
        # What the user typed stands for its normal form ("＃ｄｅｖ" is "dev").
        args = tuple(normal_name(a).lstrip("#") for a in args)
        problem = room_problem(args[0]) if args else None
        if problem:
            return Invalid(f"not a room name: {problem}")
    if name == "create":
        args = (args[0].lstrip("#"), *args[1:])
        problem = room_problem(args[0])
        if problem:
            return Invalid(f"not a room name: {problem}")
        if args[1:] not in ((), ("--private",)):
            return Invalid(f"usage: {spec.usage}")
    if name == "mode" and args[0].lower() not in ("private", "public"):
        return Invalid(f"usage: {spec.usage}")
    if name in ("invite", "kick") and not valid_name(args[0], MAX_NAME):
        return Invalid(f"not a user name: {args[0]!r}; usage: {spec.usage}")
    if name in ("mode", "invite", "kick") and len(args) == 2:
        args = (args[0], args[1].lstrip("#"))
        problem = room_problem(args[1])
        if problem:
            return Invalid(f"not a room name: {problem}")
    if name == "notify" and args:
        words = tuple(a.lower() for a in args)
        level_ok = len(words) == 1 and words[0] in ("all", "mentions", "none")
        desktop_ok = len(words) == 2 and words[0] == "desktop" and words[1] in DESKTOP
        if not (level_ok or desktop_ok):
            return Invalid(f"usage: {spec.usage}; /notify desktop osc9|osc777|off")
        args = words
    if (
        name == "devices"
        and args
        and (len(args) != 2 or args[0] != "remove" or not args[1].isdigit())
    ):
        return Invalid(f"usage: {spec.usage}")
    if name == "whois":
        user, problem = name_or_problem(args[0].lstrip("@"), MAX_NAME)
        if problem:
            return Invalid(f"not a user name: {problem}; usage: {spec.usage}")
        args = (user,)
    if name == "help" and args and args[0].lstrip("/").lower() not in COMMANDS:
        return Invalid(f"no command /{args[0].lstrip('/')}; /help lists them")
    return Command(name, args)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` as messages of at most ``limit`` characters, cut at a line break or a space.

    The break where a cut falls is dropped; a word longer than ``limit`` is cut inside.
    """
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = window.rfind("\n")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            part, rest = rest[:limit], rest[limit:]
        else:
            part, rest = rest[:cut], rest[cut + 1 :]
        if part.strip():
            parts.append(part)
    if rest.strip():
        parts.append(rest)
    return parts


def length_problem(text: str) -> str | None:
    """Why ``text`` is too long to send even split, or None."""
    if len(text) <= MAX_TEXT:
        return None
    if len(text) > MAX_TEXT * MAX_PARTS or len(split_text(text)) > MAX_PARTS:
        return (
            f"message too long: {len(text):,} characters, at most {MAX_PARTS} messages "
            f"of {MAX_TEXT:,}; the text stays in the input"
        )
    return None


def name_or_problem(typed: str, limit: int = MAX_NAME) -> tuple[str, str | None]:
    """The name ``typed`` stands for (its NFKC form) and why it is no user name, or None."""
    name, problem = checked_name(typed, limit=limit)
    if problem is None and _LEADING.match(name):
        problem = (
            "a name does not start with # @ or / (it would read as a room, a mention or a command)"
        )
    return name, problem


def valid_name(name: str, limit: int = MAX_NAME) -> bool:
    return name_or_problem(name, limit)[1] is None


def command_help(name: str) -> str:
    spec = COMMANDS[name.lstrip("/").lower()]
    return f"{spec.usage}  {spec.summary}"


def help_lines() -> list[str]:
    width = max(len(s.usage) for s in COMMANDS.values())
    lines = [f"{s.usage.ljust(width)}  {s.summary}" for s in COMMANDS.values()]
    lines.append("plain text goes to the current conversation; //text sends '/text'")
    return lines


def complete(
    line: str, cursor: int, users: Iterable[str], rooms: Iterable[str], themes: Iterable[str] = ()
) -> list[str]:
    """Candidates for the word before ``cursor``: commands, then rooms or user names."""
    before = line[:cursor]
    start = before.rfind(" ") + 1
    word = before[start:]
    if start == 0 and word.startswith("/"):
        return [f"/{c}" for c in COMMANDS if c.startswith(word[1:].lower())]
    command = before.split(" ", 1)[0].lower() if before.startswith("/") else ""
    lowered = word.lower()
    room_words = [f"#{r}" for r in sorted(rooms)]
    user_words = sorted(users)
    if command in ("/join", "/leave", "/list"):
        pool = [r[1:] for r in room_words] if not word.startswith("#") else room_words
    elif command == "/theme":
        pool = sorted(themes)
    elif word.startswith("#"):
        pool = room_words
    elif word.startswith("@"):
        pool = [f"@{u}" for u in user_words]
    else:
        pool = user_words
    return [w for w in pool if w.lower().startswith(lowered)]


def common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    first, last = min(words), max(words)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def plural(count: int, word: str) -> str:
    """ "1 member", "2 members": a count with its noun."""
    return f"{count} {word}{'' if count == 1 else 's'}"
