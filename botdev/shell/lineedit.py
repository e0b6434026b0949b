"""Line editing at the shell's prompt, on a terminal only.

Importing Python's ``readline`` is what makes ``input()`` edit lines (arrows, Ctrl-A/E, Ctrl-R
search); the shell does it only when stdin is a terminal, so a piped script reads as plain text
and leaves nothing behind. On top of the defaults:

- history: the lines typed in earlier sessions, from HISTORY (at most HISTORY_LINES, the file
  readable by its owner only), read at the start and written back by the closer ``setup``
  returns; no file when it cannot be read or written (no HOME, a read-only one): the session
  still edits lines, it just forgets them;
- Ctrl-L clears the screen (GNU readline binds it already; said again for libedit, macOS).

The lines hold what was typed at the prompt (slash commands, user ids, job names): no secret
is ever typed there, the shell's own tokens are made up per session.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

HISTORY = Path("~/.modelarts-bot-shell-history")
HISTORY_LINES = 1000


def setup(history: Path | None = HISTORY) -> Callable[[], None]:
    """Turn line editing on; returns what saves the history (call it once, at the end)."""
    try:
        import readline
    except ImportError:            # a Python built without it: plain input()
        return lambda: None
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^L ed-clear-screen")
    else:
        readline.parse_and_bind(r'"\C-l": clear-screen')
    readline.set_history_length(HISTORY_LINES)
    path = _readable(history.expanduser()) if history else None

    def save() -> None:
        if path is None:
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))   # never wider than this
            readline.write_history_file(path)
        except OSError:
            pass

    if path is not None and path.exists():
        try:
            readline.read_history_file(path)
        except OSError:
            path = None
    return save


def _readable(path: Path) -> Path | None:
    """``path`` when it can serve as the history file: there and readable, or creatable."""
    if path.exists():
        return path if os.access(path, os.R_OK | os.W_OK) else None
    return path if os.access(path.parent, os.W_OK) else None
