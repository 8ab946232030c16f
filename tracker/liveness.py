"""Whether a run's process is still alive, as far as this machine can tell.

``reap`` uses it so that a run whose heartbeat is merely late (a busy store, a long flush)
is never taken for dead while its process runs on this host.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tracker.entities import RunInfo

#: /proc start times are known to about a second (boot time is whole seconds).
_START_SLACK_MS = 2_000


def process_alive(info: RunInfo) -> bool:
    """True when the run's process is known to be running: the run was started on this host
    and its pid names a live process (not a zombie) that started before the run's last
    heartbeat (a later one reused the pid). False when it is known gone or cannot be seen
    (another host, no pid, or a system without ``/proc`` and POSIX signals)."""
    if info.pid is None or info.host != socket.gethostname() or os.name != "posix":
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    state, started_ms = _proc_stat(info.pid)
    if state == "Z":
        return False
    if started_ms is not None and info.heartbeat is not None:
        return started_ms <= info.heartbeat + _START_SLACK_MS
    return True


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """(state, start time in epoch ms) from Linux's /proc, or Nones elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None, None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])  # field 22 of proc(5), "starttime", in clock ticks since boot
    return fields[0], int((boot + ticks / os.sysconf("SC_CLK_TCK")) * 1000)
