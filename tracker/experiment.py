"""``Experiment``: a named group of recorders, with Qlib's method names and semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from tracker.entities import ExperimentInfo, RunStatus, ViewType
from tracker.errors import InvalidInputError, RunNotFound
from tracker.recorder import DEFAULT_RECORDER_NAME, Recorder

if TYPE_CHECKING:
    import pandas as pd

    from tracker.manager import ExpManager

UNLIMITED = 50_000


class Experiment:
    """An experiment in a store. At most one of its recorders is active in this process."""

    RT_D = "dict"
    RT_L = "list"

    def __init__(self, manager: ExpManager, info: ExperimentInfo) -> None:
        self.manager = manager
        self._info = info
        self.active_recorder: Recorder | None = None
        self._default_rec_name = DEFAULT_RECORDER_NAME

    @property
    def id(self) -> str:
        return self._info.experiment_id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def info(self) -> dict[str, Any]:
        active = self.active_recorder
        return {
            "class": type(self).__name__,
            "id": self.id,
            "name": self.name,
            "active_recorder": active.id if active else None,
            "recorders": [r.run_id for r in self.manager.search_run_infos([self.id])],
        }

    def __repr__(self) -> str:
        # Not ``info``: listing every recorder made Qlib's repr slow on big experiments.
        return f"{type(self).__name__}(id={self.id!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # ------------------------------------------------------------------------------- lifecycle

    def start(
        self,
        *,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        resume: bool = False,
    ) -> Recorder:
        """Start a new recorder, or with ``resume`` reopen one by id or name (newest of that
        name). Resuming an unknown id raises RunNotFound; an unknown name starts a new one."""
        if resume and (recorder_id is not None or recorder_name is not None):
            try:
                recorder = self._get_recorder(recorder_id, recorder_name)
            except RunNotFound:
                if recorder_id is not None:
                    raise
                recorder = self.create_recorder(recorder_name)
        else:
            recorder = self.create_recorder(recorder_name)
        self.active_recorder = recorder.start_run()
        return recorder

    def end(self, recorder_status: str | RunStatus = RunStatus.FINISHED) -> None:
        if self.active_recorder is not None:
            recorder, self.active_recorder = self.active_recorder, None
            recorder.end_run(recorder_status)

    # ------------------------------------------------------------------------------- recorders

    def create_recorder(self, recorder_name: str | None = None) -> Recorder:
        """An unsaved recorder (status SCHEDULED); it is stored when started."""
        return Recorder(self.manager, self.id, recorder_name or self._default_rec_name)

    def get_recorder(
        self,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        create: bool = True,
        start: bool = False,
    ) -> Recorder:
        """By id, else by name (newest), else the active recorder, else the default name.
        Missing: created (and started, with ``start``) if ``create``, else RunNotFound."""
        if recorder_id is None and recorder_name is None and self.active_recorder is not None:
            return self.active_recorder
        try:
            return self._get_recorder(recorder_id, recorder_name)
        except RunNotFound:
            if not create or recorder_id is not None:
                raise
        recorder = self.create_recorder(recorder_name)
        if start:
            self.active_recorder = recorder.start_run()
        return recorder

    def _get_recorder(self, recorder_id: str | None, recorder_name: str | None) -> Recorder:
        if recorder_id is not None:
            info = self.manager.get_run_info(recorder_id)
            if info.experiment_id != self.id or info.lifecycle.value != "active":
                raise RunNotFound(f"no recorder {recorder_id!r} in experiment {self.name!r}")
        else:
            from tracker.search import quote

            name = recorder_name or self._default_rec_name
            found = self.manager.search_run_infos(
                [self.id], filter_string=f"run_name = {quote(name)}", max_results=1
            )
            if not found:
                raise RunNotFound(f"no recorder named {name!r} in experiment {self.name!r}")
            info = found[0]
        return Recorder(self.manager, self.id, info=info)

    @overload
    def list_recorders(
        self,
        rtype: Literal["dict"] = ...,
        max_results: int = ...,
        status: str | None = ...,
        filter_string: str = ...,
    ) -> dict[str, Recorder]: ...
    @overload
    def list_recorders(
        self,
        rtype: Literal["list"],
        max_results: int = ...,
        status: str | None = ...,
        filter_string: str = ...,
    ) -> list[Recorder]: ...

    def list_recorders(
        self,
        rtype: str = RT_D,
        max_results: int = UNLIMITED,
        status: str | None = None,
        filter_string: str = "",
    ) -> dict[str, Recorder] | list[Recorder]:
        """Active recorders, newest first; ``status`` and ``filter_string`` narrow them
        in the database."""
        if rtype not in (self.RT_D, self.RT_L):
            raise InvalidInputError(f"rtype {rtype!r} must be 'dict' or 'list'")
        flt = filter_string
        if status is not None:
            from tracker.search import quote

            cond = f"status = {quote(str(status))}"
            flt = f"({flt}) and {cond}" if flt else cond
        infos = self.manager.search_run_infos([self.id], flt, max_results=max_results)
        recorders = [Recorder(self.manager, self.id, info=i) for i in infos]
        if rtype == self.RT_L:
            return recorders
        return {r.run_info.run_id: r for r in recorders}

    def search_records(self, **kwargs: Any) -> pd.DataFrame:
        from tracker.records import search_records

        return search_records(self.manager, [self.id], **kwargs)

    def delete_recorder(
        self, recorder_id: str | None = None, recorder_name: str | None = None
    ) -> None:
        """Soft delete: hidden from listings, restorable, purged by ``tracker gc``."""
        if recorder_id is None and recorder_name is None:
            raise InvalidInputError("delete_recorder needs recorder_id or recorder_name")
        recorder = self._get_recorder(recorder_id, recorder_name)
        self.manager.delete_run(recorder.run_info.run_id)

    def list_deleted(self) -> list[Recorder]:
        infos = self.manager.search_run_infos([self.id], view=ViewType.DELETED_ONLY)
        return [Recorder(self.manager, self.id, info=i) for i in infos]
