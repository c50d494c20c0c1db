"""``python -m tchat``: the same as the ``tchat`` command."""

from tchat.cli import main

raise SystemExit(main())
