"""The Textual apps: wire a client or server service to its screens, themes and settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.message import Message

from tchat.core.effects import ClientEvent, Effect
from tchat.ui.node_messages import NodeEvent, ServerEffect
from tchat.ui.sanitize import safe_line
from tchat.ui.service import ClientServiceLike, ServerServiceLike
from tchat.ui.settings import config_path, read_settings, save_setting
from tchat.ui.terminal_keys import fix_terminal_keys
from tchat.ui.themes import DEFAULT_THEME, SENDER_VARIABLES, load_themes

log = logging.getLogger(__name__)
ServiceFactory = Callable[[str], ClientServiceLike]
QUIT_CONFIRM = 5.0  # seconds a second Ctrl+C has to confirm quitting with messages pending
_SENDER_FALLBACK = ("primary", "secondary", "accent", "success", "warning", "error", "foreground")


class ThemedApp(App[int]):
    """Registers tchat's themes and remembers the user's choice in the config file."""

    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, *, theme: str | None, config: Path | None, save: bool = True) -> None:
        super().__init__()
        self.config_file = config
        self._save = save and config is not None
        for item in load_themes():
            self.register_theme(item)
        settings = read_settings(config) if config else {}
        wanted = theme or str(settings.get("theme") or DEFAULT_THEME)
        if wanted not in self.available_themes:
            log.warning("unknown theme %r, using %s", wanted, DEFAULT_THEME)
            wanted = DEFAULT_THEME
        self.theme = wanted
        if theme and theme == wanted:
            self.remember("theme", wanted)

    def get_css_variables(self) -> dict[str, str]:
        """Textual's own themes lack tchat's sender colours: borrow their named colours."""
        variables = super().get_css_variables()
        for index, name in enumerate(SENDER_VARIABLES):
            if name not in variables:
                variables[name] = variables[_SENDER_FALLBACK[index % len(_SENDER_FALLBACK)]]
        self.theme_variables = variables
        return variables

    def theme_names(self) -> list[str]:
        return sorted(self.available_themes)

    def choose_theme(self, name: str) -> None:
        self.theme = name
        self.remember("theme", name)

    def remember(self, key: str, value: str) -> None:
        if not self._save or self.config_file is None:
            return
        if read_settings(self.config_file).get(key) == value:
            return  # already there (e.g. --theme came from the file itself): no rewrite
        try:
            save_setting(self.config_file, key, value)
        except (OSError, ValueError) as exc:
            log.warning("cannot save %s to %s: %s", key, self.config_file, exc)


class ClientApp(ThemedApp):
    """``tchat``: asks for a name if needed, then runs the client screen over a service."""

    CSS_PATH = "tchat.tcss"
    TITLE = "tchat"

    def __init__(
        self,
        factory: ServiceFactory,
        *,
        user: str | None = None,
        theme: str | None = None,
        config: Path | None = None,
        save_settings: bool = True,
        wall: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        auto_away: float = 0.0,  # seconds; 0: never (the CLI's default is 15 min)
    ) -> None:
        super().__init__(theme=theme, config=config, save=save_settings)
        self.auto_away = auto_away  # seconds without input before auto-away (0: never)
        fix_terminal_keys()
        self.factory = factory
        remembered = read_settings(config).get("user") if config else None
        self.user = user or (str(remembered) if remembered else None)
        self.wall = wall
        self.tz = tz
        self.service: ClientServiceLike | None = None
        self._stopping = False
        self._quit_asked = -QUIT_CONFIRM  # monotonic time of the last unconfirmed quit

    def on_mount(self) -> None:
        from tchat.ui.screens.name_prompt import NamePrompt

        if self.user:
            self.start_session(self.user)
        else:
            self.push_screen(NamePrompt(), self._named)

    def _named(self, name: str | None) -> None:
        if name:
            self.remember("user", name)
            self.start_session(name)

    def start_session(self, name: str) -> None:
        from tchat.ui.screens.client import ClientScreen

        service = self.factory(name)
        self.service = service
        screen = ClientScreen(
            service,
            name,
            wall=self.wall,
            tz=self.tz,
            themes=self.theme_names,
            auto_away=self.auto_away,
        )
        desktop = (
            read_settings(self.config_file).get("desktop_notify") if self.config_file else None
        )
        if desktop in ("osc9", "osc777"):
            screen.desktop_notify = str(desktop)

        # Called on the event loop's thread by the runtime; post_message is thread-safe anyway.
        def forward(event: ClientEvent) -> None:
            screen.post_message(NodeEvent(event, self.wall()))

        service.add_listener(forward)
        self.push_screen(screen)
        self.run_worker(self._start(service), name="service", exit_on_error=False)

    async def _start(self, service: ClientServiceLike) -> None:
        try:
            await service.start()
        except Exception as exc:
            log.exception("service failed to start")
            self.notify(
                safe_line(f"cannot start: {exc}"), severity="error", markup=False, timeout=30
            )

    async def action_quit(self) -> None:
        """Quit; with messages not yet stored by the servers, only when asked twice."""
        pending = self.service.status().pending if self.service is not None else 0
        now = time.monotonic()
        if pending and now - self._quit_asked > QUIT_CONFIRM:
            self._quit_asked = now
            self.notify(
                f"{pending} message{'s' if pending != 1 else ''} not yet stored by the servers: "
                "quit again (Ctrl+C) to leave anyway",
                severity="warning",
                timeout=QUIT_CONFIRM,
            )
            return
        await self.shutdown_service()
        self.exit(0)

    async def on_client_screen_login_refused(self, message: Message) -> None:
        """Name taken or invalid: close this session and ask for another name."""
        from tchat.ui.screens.name_prompt import NamePrompt

        await self.shutdown_service()
        self.service = None
        self._stopping = False
        self.pop_screen()
        reason = getattr(message, "reason", "")
        self.push_screen(NamePrompt(f"refused: {reason}; pick another name"), self._named)

    async def shutdown_service(self) -> None:
        if self.service is not None and not self._stopping:
            self._stopping = True
            try:
                await self.service.stop()
            except Exception:
                log.exception("service stop failed")


class DashboardApp(ThemedApp):
    """``tchat --server``: the server node's dashboard."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "tchat server"

    def __init__(
        self,
        service: ServerServiceLike,
        *,
        theme: str | None = None,
        config: Path | None = None,
        save_settings: bool = True,
        wall: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        start_service: bool = True,
    ) -> None:
        super().__init__(theme=theme, config=config, save=save_settings)
        self.service = service
        self.wall = wall
        self.tz = tz
        self.start_service = start_service
        self._stopping = False

    def on_mount(self) -> None:
        from tchat.ui.screens.dashboard import DashboardScreen

        screen = DashboardScreen(self.service, wall=self.wall, tz=self.tz)

        def forward(effect: Effect) -> None:
            screen.post_message(ServerEffect(effect, self.wall()))

        self.service.add_listener(forward)
        self.push_screen(screen)
        if self.start_service:
            self.run_worker(self.service.start(), name="service", exit_on_error=False)

    async def action_quit(self) -> None:
        """Leave gracefully: a leader hands over before the process goes."""
        if not self._stopping:
            self._stopping = True
            try:
                await self.service.stop()
            except Exception:
                log.exception("service stop failed")
        self.exit(0)


def config_of(options: Any) -> Path:
    """The settings file for ``options``: its ``config`` or ``config_path``, else the XDG one."""
    explicit = getattr(options, "config", None) or getattr(options, "config_path", None)
    return config_path(explicit)


def run_app(app: App[int]) -> int:
    """Run a tchat app on uvloop (tchat.runtime.modes builds it with its service)."""
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        loop = None
    try:
        return int(app.run(loop=loop) or 0)
    finally:
        if loop is not None:
            loop.close()
