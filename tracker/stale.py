"""The one staleness rule: a RUNNING run whose heartbeat is lost.

``tracker ls``/``show`` label such runs ``stale``, ``status = 'stale'`` filters on them,
``ExpReader.stale_runs`` lists them and ``tracker reap`` ends the dead ones; all ask here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.entities import RunInfo

#: A RUNNING run whose heartbeat is older than this (seconds) is reported as stale.
DEFAULT_STALE_AFTER = 60.0


def now_ms() -> int:
    return int(time.time() * 1000)


def stale_cutoff(stale_after: float = DEFAULT_STALE_AFTER, now: int | None = None) -> int:
    """Epoch ms before which a RUNNING run's last heartbeat makes it stale."""
    return (now_ms() if now is None else now) - int(stale_after * 1000)


def is_stale(status: str, heartbeat: int | None, start_time: int | None, cutoff: int) -> bool:
    """RUNNING, and its heartbeat (for runs written by other tools, which have none, its start
    time) before ``cutoff``. SQL backends state the same rule as
    ``status = 'RUNNING' AND coalesce(heartbeat, start_time, 0) < cutoff``."""
    last = heartbeat if heartbeat is not None else (start_time or 0)
    return str(status).upper() == "RUNNING" and last < cutoff


def run_is_stale(info: RunInfo, cutoff: int) -> bool:
    return is_stale(info.status.value, info.heartbeat, info.start_time, cutoff)
