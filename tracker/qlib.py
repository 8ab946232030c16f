"""tracker as real Qlib's experiment manager: Qlib's ``R`` and everything built on it
(records, trainers, online serving) write to a tracker store instead of MLflow.

Point Qlib at it when initialising (a qrun YAML's ``qlib_init`` takes the same mapping)::

    qlib.init(
        provider_uri="~/.qlib/qlib_data/us_data", region="us",
        exp_manager={
            "class": "TrackerExpManager",
            "module_path": "tracker.qlib",
            "kwargs": {"uri": "sqlite:///runs/tracker.db", "default_exp_name": "Experiment"},
        },
    )

``uri`` is any tracker store (a directory, ``file:``, ``sqlite:///``,
``postgresql+psycopg://…`` together with ``artifact_uri``). The classes here subclass Qlib's
own ``ExpManager``, ``Experiment`` and ``Recorder``, so Qlib's identity checks
(``OnlineToolR``, ``RecorderCollector``) pass, and they raise Qlib's exceptions where Qlib code
catches them: ``ValueError`` for a missing experiment or recorder,
``qlib.utils.exceptions.LoadObjectError`` and ``ExpAlreadyExistError``. A recorder's id is the
tracker run id, so ``tracker ls``/``show``/``diff`` see what Qlib wrote; heartbeats, stale
detection and lossless background logging apply as to any tracker run.

Deliberate differences from Qlib's MLflow manager: ``search_records`` returns a DataFrame (as
Qlib's docstring promises; MLflow's returns a list of runs); a recorder found by id keeps the
id of the experiment it belongs to; ``end_run()`` without a status ends FINISHED; deleted
recorders cannot be fetched by id.

This module imports Qlib (``pip install pyqlib``); ``import tracker`` does not import it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from qlib.config import C
from qlib.utils.exceptions import ExpAlreadyExistError, LoadObjectError
from qlib.utils.serial import Serializable
from qlib.workflow.exp import Experiment as QlibExperiment
from qlib.workflow.expm import ExpManager as QlibExpManager
from qlib.workflow.recorder import Recorder as QlibRecorder

import tracker
from tracker import codecs
from tracker.entities import ExperimentInfo, Lifecycle, RunInfo, ViewType
from tracker.errors import (
    AlreadyExistsError,
    ArtifactTimeout,
    InvalidInputError,
    InvalidStateError,
    InvalidTypeError,
    NotFoundError,
)
from tracker.errors import LoadObjectError as StoreLoadObjectError
from tracker.experiment import UNLIMITED
from tracker.experiment import Experiment as StoreExperiment
from tracker.manager import ExpManager as Store
from tracker.manifest import read_checked
from tracker.objects import search_records
from tracker.recorder import DEFAULT_RECORDER_NAME
from tracker.recorder import Recorder as StoreRecorder
from tracker.validation import check_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TrackerExpManager", "TrackerExperiment", "TrackerRecorder"]

# Protocols 2 and later start with this opcode; Qlib writes protocol 4 (C.dump_protocol_version).
_PICKLE_PROTO = b"\x80"
# Qlib's four, plus tracker's experiment_names.
_SEARCH_KEYWORDS = {"filter_string", "run_view_type", "max_results", "order_by", "experiment_names"}


@contextmanager
def _not_found_as_value_error() -> Iterator[None]:
    """Qlib code (``_get_or_create_exp``, ``run_all_model``, ``contrib/rolling``) catches
    ``ValueError`` for anything missing; tracker's NotFoundError is a LookupError, so it is
    raised again as an InvalidInputError (a ValueError)."""
    try:
        yield
    except NotFoundError as e:
        raise InvalidInputError(str(e)) from e


def _search_records(store: Store, experiment_ids: Any, kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """Qlib's ``search_records`` keywords (None means Qlib's default) on tracker's search."""
    unknown = set(kwargs) - _SEARCH_KEYWORDS
    if unknown:
        raise InvalidTypeError(f"search_records got unexpected keyword(s) {sorted(unknown)}")
    max_results = kwargs.get("max_results")
    return search_records(
        store,
        experiment_ids,
        experiment_names=kwargs.get("experiment_names"),
        filter_string=kwargs.get("filter_string") or "",
        order_by=kwargs.get("order_by"),
        max_results=100_000 if max_results is None else max_results,
        run_view_type=kwargs.get("run_view_type") or ViewType.ACTIVE_ONLY,
    )


class TrackerRecorder(StoreRecorder, QlibRecorder):
    """A tracker run that is also a Qlib ``Recorder``.

    It is tracker's :class:`~tracker.recorder.Recorder` (lossless background logging,
    heartbeats, ``flush``, ``get_metric_history`` …) with Qlib's object format: every object
    given to ``save_objects`` is pickled whatever its name, as Qlib does, and
    ``load_object`` raises Qlib's ``LoadObjectError``.
    """

    # Qlib's Recorder.__init__ is not called: it assigns id/status/start_time, which tracker
    # derives from the stored run (properties).
    def __init__(
        self,
        store: Store,
        experiment_id: str,
        name: str | None = None,
        info: RunInfo | None = None,
        *,
        uri: str | None = None,
    ) -> None:
        StoreRecorder.__init__(self, store, experiment_id, name, info)
        self._uri = uri

    @property
    def uri(self) -> str | None:
        """The tracking URI this recorder was obtained under (Qlib's ``Recorder.uri``)."""
        return self._uri

    @property
    def artifact_uri(self) -> str | None:
        return None if self.id is None else self.get_artifact_uri()

    def start_run(self) -> TrackerRecorder:
        first = self.id is None
        super().start_run()
        # Qlib logs the _QLIB_* environment variables as params; here once, at creation (on
        # resume a changed value would be a conflicting param).
        env = {k: v for k, v in os.environ.items() if k.startswith("_QLIB_")}
        if first and env:
            self.log_params(**env)
        return self

    def save_objects(
        self,
        local_path: str | os.PathLike[str] | None = None,
        artifact_path: str | None = None,
        **objects: Any,
    ) -> None:
        """A local file or directory (``local_path``), else each object pickled under its
        name as Qlib's ``Serializable.general_dump`` does (``config.json`` is a pickle too)."""
        if local_path is not None:
            super().save_objects(local_path, artifact_path, **objects)
            return
        store = self.manager.artifacts
        folder = f"{artifact_path.rstrip('/')}/" if artifact_path else ""
        # All pickled before the first write, so that one that fails stores nothing.
        self._put({store.validate_path(folder + name): _dump(obj) for name, obj in objects.items()})

    def load_object(self, name: str, unpickler: type[pickle.Unpickler] = pickle.Unpickler) -> Any:
        """The object stored under ``name``: a pickle (what Qlib writes, whatever the name)
        through ``unpickler``, else decoded by its suffix as tracker's own ``R`` wrote it; its
        sha256 is checked against the manifest as it streams. Any failure raises Qlib's
        ``LoadObjectError`` (``RecordTemp.load`` catches it to look in the parent record),
        except tracker's ArtifactTimeout: a store that does not answer is not a missing file."""

        def decode(file: IO[bytes]) -> Any:
            if file.peek(1)[:1] != _PICKLE_PROTO:  # type: ignore[attr-defined]
                return codecs.load(name, file)
            try:
                return unpickler(file).load()
            except Exception as e:  # checked against the manifest before it is raised
                raise StoreLoadObjectError(f"cannot unpickle {name!r}: {e!r}") from e

        try:
            return read_checked(self.manager, self.run_info, name, decode)
        except ArtifactTimeout:
            raise
        except Exception as e:
            raise LoadObjectError(f"cannot load {name!r} of recorder {self.id}: {e}") from e

    def get_artifact_uri(self) -> str:
        if self.id is None:
            raise InvalidInputError(
                f"recorder {self.name!r} has not been started, so it has no artifact URI"
            )
        return super().get_artifact_uri()

    def get_local_dir(self) -> str:
        """The run's local folder (the parent of its ``artifacts``), created if the run has
        no artifacts yet: Qlib's always exists. ValueError if not started, RuntimeError
        (tracker's InvalidStateError) if the artifacts are remote."""
        if self.id is None:
            raise InvalidInputError(
                f"recorder {self.name!r} has not been started, so it has no folder"
            )
        folder = super().get_local_dir()
        Path(folder).mkdir(parents=True, exist_ok=True)
        return folder


def _dump(obj: Any) -> bytes:
    """Bytes as Qlib's ``Serializable.general_dump`` writes them to a file."""
    if isinstance(obj, Serializable):
        obj.config()  # what to_pickle does before dumping
        return obj.get_backend().dumps(obj, protocol=C.dump_protocol_version)
    return pickle.dumps(obj, protocol=C.dump_protocol_version)


class TrackerExperiment(QlibExperiment):
    """A tracker experiment as a Qlib ``Experiment``; Qlib's own ``get_recorder`` (create,
    start, the active recorder) runs on top of the methods below."""

    UNLIMITED = UNLIMITED

    def __init__(self, store: Store, info: ExperimentInfo, uri: str | None) -> None:
        super().__init__(info.experiment_id, info.name)
        self._exp = StoreExperiment(store, info)
        self._uri = uri
        self._default_rec_name = DEFAULT_RECORDER_NAME

    @property
    def store(self) -> Store:
        return self._exp.manager

    def _wrap(self, recorder: StoreRecorder) -> TrackerRecorder:
        info = recorder.run_info
        return TrackerRecorder(self.store, info.experiment_id, info=info, uri=self._uri)

    def start(
        self,
        *,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        resume: bool = False,
    ) -> TrackerRecorder:
        """Start a new recorder; with ``resume``, reopen the one with that id, else the newest
        with that name (default ``mlflow_recorder``), creating it if there is none (Qlib)."""
        recorder_name = recorder_name or self._default_rec_name
        if resume:
            recorder, _ = self._get_or_create_rec(
                recorder_id=recorder_id, recorder_name=recorder_name
            )
        else:
            recorder = self.create_recorder(recorder_name)
        self.active_recorder = recorder
        recorder.start_run()
        return recorder

    def end(self, recorder_status: str = QlibRecorder.STATUS_S) -> None:
        if self.active_recorder is not None:
            recorder, self.active_recorder = self.active_recorder, None
            recorder.end_run(recorder_status)

    def create_recorder(self, recorder_name: str | None = None) -> TrackerRecorder:
        """An unsaved recorder; it is stored when started."""
        name = recorder_name or self._default_rec_name
        return TrackerRecorder(self.store, self.id, name, uri=self._uri)

    def _get_recorder(
        self, recorder_id: str | None = None, recorder_name: str | None = None
    ) -> TrackerRecorder:
        """By id (anywhere in the store, as MLflow's ``get_run``), else the newest active
        recorder of this experiment with that name. ValueError if there is none."""
        if recorder_id is None and recorder_name is None:
            raise InvalidInputError("give a recorder id or name to look a recorder up")
        with _not_found_as_value_error():
            if recorder_id is None:
                return self._wrap(self._exp.get_recorder(None, recorder_name, create=False))
            info = self.store.get_run_info(str(recorder_id))
        if info.lifecycle is Lifecycle.DELETED:
            raise InvalidInputError(f"recorder {recorder_id!r} is deleted")
        return TrackerRecorder(self.store, info.experiment_id, info=info, uri=self._uri)

    def list_recorders(
        self,
        rtype: str = QlibExperiment.RT_D,
        max_results: int = UNLIMITED,
        status: str | None = None,
        filter_string: str = "",
    ) -> dict[str, TrackerRecorder] | list[TrackerRecorder]:
        """Active recorders, newest first, as ``{id: recorder}`` or a list (``rtype``)."""
        found = self._exp.list_recorders(
            StoreExperiment.RT_L, max_results, status=status, filter_string=filter_string
        )
        recorders = [self._wrap(r) for r in found]
        if rtype == self.RT_L:
            return recorders
        return {r.run_info.run_id: r for r in recorders}

    def search_records(self, **kwargs: Any) -> pd.DataFrame:
        """Runs as a DataFrame with ``metrics.*``, ``params.*``, ``tags.*`` columns."""
        return _search_records(self.store, [self.id], kwargs)

    def delete_recorder(
        self, recorder_id: str | None = None, recorder_name: str | None = None
    ) -> None:
        """Soft delete (``tracker restore`` brings it back). ValueError if not found."""
        recorder = self._get_recorder(recorder_id, recorder_name)
        self.store.delete_run(recorder.run_info.run_id)


class TrackerExpManager(QlibExpManager):
    """Qlib's experiment manager on a tracker store.

    Args:
        uri: the tracker store (default: ``TRACKER_URI``, else the nearest ``.tracker/``).
            Qlib keeps it in ``qlib.config.C`` as its default URI; ``R.set_uri``,
            ``R.uri_context`` and ``R.start(uri=…)`` switch stores as with MLflow.
        default_exp_name: the experiment used when none is named.
        artifact_uri: where the default store keeps artifacts (needed with a PostgreSQL
            ``uri``; an fsspec URL such as ``s3://bucket/prefix``).
    """

    active_experiment: TrackerExperiment | None

    def __init__(
        self,
        uri: str | None = None,
        default_exp_name: str | None = "Experiment",
        artifact_uri: str | None = None,
    ) -> None:
        self._home = (uri, artifact_uri)
        super().__init__(uri, default_exp_name or "Experiment")

    @property
    def default_uri(self) -> str | None:
        return C.exp_manager.get("kwargs", {}).get("uri")

    @default_uri.setter
    def default_uri(self, value: str | None) -> None:
        C.exp_manager.setdefault("kwargs", {})["uri"] = value

    @property
    def store(self) -> Store:
        """The tracker store at the current URI (opened once per process)."""
        uri = self.uri
        artifact_uri = self._home[1] if uri == self._home[0] else None
        return tracker.connect(uri, artifact_uri, default_exp_name=self._default_exp_name)

    def _experiment(self, store: Store, info: ExperimentInfo) -> TrackerExperiment:
        return TrackerExperiment(store, info, self.uri)

    def _start_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        resume: bool = False,
    ) -> TrackerExperiment:
        """Refused while an experiment is active: Qlib's MLflow backend refuses a second
        active run too (qlib #996), and the first would be left running."""
        if self.active_experiment is not None:
            raise InvalidStateError(
                f"experiment {self.active_experiment.name!r} is already active; end it first "
                "(R.end_exp(), or leave its `with R.start(...)` block)"
            )
        experiment, _ = self._get_or_create_exp(
            experiment_id=experiment_id, experiment_name=experiment_name or self._default_exp_name
        )
        self.active_experiment = experiment
        experiment.start(recorder_id=recorder_id, recorder_name=recorder_name, resume=resume)
        return experiment

    def _end_exp(self, recorder_status: str = QlibRecorder.STATUS_S) -> None:
        if self.active_experiment is not None:
            experiment, self.active_experiment = self.active_experiment, None
            experiment.end(recorder_status)

    def create_exp(self, experiment_name: str | None = None) -> TrackerExperiment:
        """Raises Qlib's ``ExpAlreadyExistError`` if an active experiment has the name."""
        store = self.store
        name = check_name(experiment_name or self._default_exp_name, "experiment name")
        try:
            info = store.create_experiment(name)
        except AlreadyExistsError as e:
            raise ExpAlreadyExistError(str(e)) from e
        return self._experiment(store, info)

    def _get_or_create_exp(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> tuple[TrackerExperiment, bool]:
        # Qlib's version takes a FileLock under a CWD-relative path for file: URIs (qlib
        # #2129); tracker's create is race-safe on its own.
        try:
            return self._get_exp(experiment_id, experiment_name), False
        except ValueError:
            pass
        name = experiment_name or self._default_exp_name  # Qlib's choice for a missing id too
        try:
            return self.create_exp(name), True
        except ExpAlreadyExistError:  # another process created it meanwhile
            return self._get_exp(experiment_name=name), False

    def _get_exp(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> TrackerExperiment:
        """By id, else by name; ValueError if missing or deleted."""
        if experiment_id is None and experiment_name is None:
            raise InvalidInputError("give an experiment id or name to look an experiment up")
        store = self.store
        with _not_found_as_value_error():
            if experiment_id is not None:
                info = store.get_experiment(str(experiment_id))
            else:
                info = store.get_experiment_by_name(str(experiment_name))
        if info.lifecycle is Lifecycle.DELETED:
            raise InvalidInputError(
                f"experiment {info.name!r} (id {info.experiment_id}) is deleted"
            )
        return self._experiment(store, info)

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> pd.DataFrame:
        """Runs as a DataFrame with ``metrics.*``, ``params.*``, ``tags.*`` columns; the
        keywords are Qlib's (``filter_string``, ``run_view_type``, ``max_results``,
        ``order_by``)."""
        return _search_records(self.store, experiment_ids, kwargs)

    def delete_exp(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> None:
        """Soft delete. ValueError if there is no such active experiment."""
        experiment = self._get_exp(experiment_id, experiment_name)
        self.store.set_experiment_lifecycle(experiment.id, Lifecycle.DELETED)

    def list_experiments(self) -> dict[str, TrackerExperiment]:
        store = self.store
        return {i.name: self._experiment(store, i) for i in store.list_experiment_infos()}
