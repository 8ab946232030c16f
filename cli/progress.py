"""The progress bar the library's long steps report to (:mod:`tracker.online.progress`),
drawn with click on stderr while a command runs, when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from tracker.online import progress


class ProgressBar:
    """A :class:`~tracker.online.progress.Progress` renderer: one click bar per label, closed
    when its step is done, another label starts, or the command ends."""

    def __init__(self, file: Any = None) -> None:
        self.file = file if file is not None else sys.stderr
        self._bar: Any = None
        self._label = ""

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._bar is not None and label != self._label:
            self.close()
        if self._bar is None:
            self._label = label
            self._bar = click.progressbar(length=max(total, 1), label=label, file=self.file)
            self._bar.__enter__()
        self._bar.update(max(0, done - self._bar.pos))
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.__exit__(None, None, None)


@contextmanager
def progress_bars(enabled: bool | None = None) -> Iterator[ProgressBar | None]:
    """Install a :class:`ProgressBar` for the block (``enabled=None``: when stderr is a
    terminal), restoring the previous renderer after it."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    bar = ProgressBar() if enabled else None
    previous = progress.set_renderer(bar)
    try:
        yield bar
    finally:
        progress.set_renderer(previous)
        if bar is not None:
            bar.close()
