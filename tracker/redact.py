"""Passwords kept out of everything tracker shows (errors, logs, reprs, command output)."""

from __future__ import annotations

import re

MASK = "***"

# The password of ``scheme://user:password@host``: greedy up to the last "@" of the authority,
# so a password holding "@" is masked whole.
_USERINFO_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^/?#\s]*(?=@)")
# ``?password=…`` in a URL query and ``password=…`` in a libpq keyword string.
_KEY_PASSWORD = re.compile(r"(?i)((?<![\w.-])(?:password|passwd|pwd)\s*=\s*)('[^']*'|[^&\s'\"]+)")


def mask(text: str) -> str:
    """``text`` with the password of every URI in it (and every ``password=`` value) replaced
    by ``***``; everything else is kept. Use it wherever a URI or a driver's message may be
    shown: errors, logs, reprs, command output. ``R.get_uri()`` still returns what was given.
    """
    text = _USERINFO_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def one_line(error: BaseException) -> str:
    """``error``'s message on one line, passwords masked (drivers may quote a connection
    string, and multi-line messages break a one-line error)."""
    return mask(" ".join(str(error).split()))
