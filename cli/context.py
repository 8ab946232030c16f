"""What every command shares: the store it opens and how it names runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import tracker
from tracker import registry
from tracker.entities import RunInfo, ViewType
from tracker.errors import ConfigError, RunNotFound
from tracker.manager import ExpManager, ExpReader
from tracker.uri import resolve


@dataclass
class Context:
    """Built once per invocation from ``--uri`` / ``TRACKER_URI`` / the nearest ``.tracker/``.

    ``reader`` is a read-only view (the stdlib SQLite reader for SQLite stores, which starts
    fast); ``manager`` is the full read-write store, opened only by commands that write.
    """

    uri: str | None = None
    artifact_uri: str | None = None
    _reader: ExpReader | None = field(default=None, repr=False)
    _manager: ExpManager | None = field(default=None, repr=False)

    @property
    def reader(self) -> ExpReader:
        if self._reader is None:
            loc = resolve(self.uri, self.artifact_uri, create=False)
            reader = registry.get_reader_class(loc.uri)
            if reader is not None:
                self._reader = reader(loc.uri, artifact_uri=loc.artifact_uri)
            else:
                self._reader = self.manager
        return self._reader

    @property
    def manager(self) -> ExpManager:
        if self._manager is None:
            loc = resolve(self.uri, self.artifact_uri, create=False)
            if loc.uri.startswith("sqlite:"):
                from pathlib import Path

                db = Path(loc.uri.split(":///", 1)[1])
                if not db.is_file():
                    raise ConfigError(f"no tracker store at {db.parent}")
            self._manager = tracker.connect(loc.uri, loc.artifact_uri, create=False)
        return self._manager

    def close(self) -> None:
        for m in {id(m): m for m in (self._reader, self._manager) if m is not None}.values():
            m.close()

    def run(self, ref: str, manager: ExpReader | None = None) -> RunInfo:
        """A run named by its full id, a unique id prefix (as git does), or
        ``EXPERIMENT/RUN_NAME`` (the newest run of that name)."""
        store = manager or self.reader
        if "/" in ref:
            from tracker.search import quote

            exp_name, _, run_name = ref.rpartition("/")
            exp = store.get_experiment_by_name(exp_name)
            found = store.search_run_infos(
                [exp.experiment_id],
                f"run_name = {quote(run_name)}",
                max_results=1,
                view=ViewType.ALL,
            )
            if not found:
                raise RunNotFound(f"no run named {run_name!r} in experiment {exp_name!r}")
            return found[0]
        matches = store.find_runs(ref)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFound(
                f"no run matches {ref!r}: give a run id, a unique id prefix, or EXPERIMENT/RUN_NAME"
            )
        shown = ", ".join(f"{m.run_id[:12]} ({m.name})" for m in matches[:8])
        raise RunNotFound(f"{ref!r} is ambiguous: {len(matches)} runs match: {shown}")
