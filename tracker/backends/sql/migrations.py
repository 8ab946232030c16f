"""Ordered schema migrations of the native store.

Each step moves the schema from ``version - 1`` to ``version`` inside the upgrade transaction.
Add a step here together with bumping ``models.SCHEMA_VERSION``; steps never rewrite data
silently, they only add what the newer code needs.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

Step = Callable[[Connection], None]

#: (version reached, step). Version 1 is the initial schema, created by ``create_all``.
STEPS: list[tuple[int, Step]] = []


def steps_after(version: int) -> list[tuple[int, Step]]:
    """The steps that take a store at ``version`` to the newest schema, in order."""
    return [(v, step) for v, step in sorted(STEPS, key=lambda s: s[0]) if v > version]
