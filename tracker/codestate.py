"""The uncommitted code a run was started with (Qlib's ``code_diff.txt`` and friends).

Captured once per process and working directory: the code a process runs is the code it
imported at start, and skipping repeat ``git`` calls keeps run creation fast.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass, field

GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class CodeState:
    commit: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> text

    @property
    def dirty(self) -> bool:
        return bool(self.files.get("code_diff.txt") or self.files.get("code_cached.txt"))


def _git(cwd: str, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def _capture(cwd: str) -> CodeState | None:
    if (_git(cwd, "rev-parse", "--is-inside-work-tree") or "").strip() != "true":
        return None
    commit = (_git(cwd, "rev-parse", "HEAD") or "").strip() or None
    files = {
        "code_diff.txt": _git(cwd, "diff") or "",
        "code_status.txt": _git(cwd, "status") or "",
        "code_cached.txt": _git(cwd, "diff", "--cached") or "",
    }
    return CodeState(commit, files)


def capture() -> CodeState | None:
    """The working directory's git state, or None outside a git work tree (quietly)."""
    if os.environ.get("TRACKER_NO_CODE_STATE"):
        return None
    return _capture(os.getcwd())
