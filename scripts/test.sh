#!/usr/bin/env bash
# The README's test command: sets up .venv on a fresh clone, installs tchat with its test
# extras, and runs the whole test suite. Extra arguments go to pytest; -rs lists each skipped
# test with its reason (no tmux, no netns privileges...), so a green run says what it left out.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
