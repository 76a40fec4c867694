"""What serving says when something is wrong: the 503 it answers and the words it publishes.

``Unavailable`` is any request the server cannot answer now for a reason outside the request (a
state not loaded yet, an unreadable users table, a landing ledger it cannot repair, too many
thumbnails decoding): 503 with a JSON ``detail`` and ``Retry-After`` (``api.errors``).

``public`` turns an exception or a message into what ``/status``, ``/readyz`` and 503 details may
show to anyone: one line, the exception type and its message with absolute filesystem paths made
relative to a known folder (the dataset, the warehouse) or cut to their file name, and bounded.
"""
import re
from collections.abc import Iterable
from pathlib import Path

MAX_PUBLIC = 300
# an absolute path (two components at least) not preceded by a scheme or a word: "models:/x/1" stays
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"`,;:()\[\]{}<>/]+){2,}/?")
_FILE_URI = re.compile(r"file:/+(?=[^/])")


class Unavailable(RuntimeError):
    """The server cannot answer this now (503, retry later); the message is public."""


def public(problem: BaseException | str, roots: Iterable[Path | str] = ()) -> str:
    """One line fit for anyone: ``Type: message`` (for an exception), paths relative or cut."""
    text = problem if isinstance(problem, str) else _with_type(problem)
    text = _FILE_URI.sub("/", text.strip().splitlines()[0] if text.strip() else "")
    for root in sorted((str(r).rstrip("/") for r in roots if str(r).strip("/")), key=len, reverse=True):
        text = text.replace(root + "/", "")
    text = _ABSOLUTE.sub(lambda m: Path(m.group(0).rstrip("/")).name or "/", text)
    return text if len(text) <= MAX_PUBLIC else text[: MAX_PUBLIC - 1] + "…"


def _with_type(problem: BaseException) -> str:
    message = str(problem)
    name = type(problem).__name__
    return f"{name}: {message}" if message and not message.startswith(name) else message or name
