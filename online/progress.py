"""Progress of long steps (a backtest, waiting for a task pool), reported to a callback.

The library draws nothing and imports no UI: a step calls ``progress(label, done, total)``
as it advances, ``done == total`` when it ends. Without an explicit callback a step reports
to the renderer installed with :func:`set_renderer`, if any: ``tracker`` (the CLI) installs a
progress bar on stderr when stderr is a terminal, so library users and tests see nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "current", "set_renderer"]


class Progress(Protocol):
    """Called as a step advances; ``done == total`` when it ends. A step that fails stops
    reporting: a renderer closes an open bar when another label starts or when it is done."""

    def __call__(self, label: str, done: int, total: int) -> None: ...


_renderer: Progress | None = None


def set_renderer(renderer: Progress | None) -> Progress | None:
    """Install the process-wide renderer (None removes it); returns the previous one."""
    global _renderer
    previous, _renderer = _renderer, renderer
    return previous


def current(explicit: Progress | None = None) -> Progress | None:
    """The callback a step reports to: ``explicit`` if given, else the installed renderer."""
    return explicit if explicit is not None else _renderer
