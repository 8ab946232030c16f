"""``R``: Qlib's global recorder facade over the default :class:`ExpManager`.

One experiment and one recorder are active per process at most (Qlib's rule). Logging with
nothing active starts the default experiment and a recorder named ``mlflow_recorder``, which
end when the process ends: FINISHED at a normal exit, FAILED after an uncaught exception,
KILLED on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tracker import exit_hooks, objects
from tracker.entities import RunStatus
from tracker.errors import InvalidInputError, InvalidStateError
from tracker.experiment import Experiment
from tracker.manager import ExpManager
from tracker.recorder import Recorder
from tracker.store import connect

if TYPE_CHECKING:
    import pandas as pd


class QlibRecorder:
    """The object behind ``tracker.R``; see Qlib's ``QlibRecorder`` for the method list."""

    def __init__(self) -> None:
        self._default: ExpManager | None = None
        self._default_exp_name = "Experiment"
        self._active_manager: ExpManager | None = None
        self.active_experiment: Experiment | None = None

    def __repr__(self) -> str:
        return f"QlibRecorder(manager={self._default!r}, active={self.active_experiment!r})"

    # --------------------------------------------------------------------------------- config

    def init(
        self,
        uri: str | os.PathLike[str] | None = None,
        artifact_uri: str | None = None,
        default_exp_name: str = "Experiment",
        exp_manager: ExpManager | Mapping[str, Any] | None = None,
    ) -> ExpManager:
        """Choose the default store. Refused while an experiment is active (its writes would
        otherwise be split across two stores)."""
        if self.active_experiment is not None:
            raise InvalidStateError(
                "cannot re-initialise tracker while an experiment is active; call R.end_exp() first"
            )
        if isinstance(exp_manager, ExpManager):
            manager = exp_manager
        else:
            kwargs = dict((exp_manager or {}).get("kwargs", {}))
            manager = connect(
                kwargs.get("uri", uri),
                kwargs.get("artifact_uri", artifact_uri),
                default_exp_name=kwargs.get("default_exp_name", default_exp_name),
            )
        self._default = manager
        self._default_exp_name = manager.default_exp_name
        return manager

    @property
    def exp_manager(self) -> ExpManager:
        """The manager in use: the active experiment's, else the default one."""
        if self._active_manager is not None:
            return self._active_manager
        if self._default is None:
            self.init()
        assert self._default is not None
        return self._default

    def get_uri(self) -> str:
        return self.exp_manager.uri

    def set_uri(self, uri: str | os.PathLike[str] | None) -> None:
        """Change the default store (by URI, resolved as :func:`tracker.init` does)."""
        manager = self.exp_manager
        self._default = connect(uri, default_exp_name=manager.default_exp_name)

    @contextmanager
    def uri_context(self, uri: str | os.PathLike[str]) -> Iterator[None]:
        """Use another store as the default inside the block (reading runs elsewhere)."""
        previous = self._default
        self.set_uri(uri)
        try:
            yield
        finally:
            self._default = previous

    # ------------------------------------------------------------------------------ lifecycle

    @contextmanager
    def start(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> Iterator[Recorder]:
        """Start an experiment and recorder for the block and yield the recorder. The run
        ends FINISHED, or FAILED if an exception escapes (re-raised), or KILLED on Ctrl-C or
        SIGTERM."""
        self.start_exp(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            recorder_id=recorder_id,
            recorder_name=recorder_name,
            uri=uri,
            resume=resume,
        )
        exp = self.active_experiment
        assert exp is not None and exp.active_recorder is not None
        try:
            yield exp.active_recorder
        except BaseException as e:
            self.end_exp(exit_hooks.status_for(e))
            raise
        self.end_exp(RunStatus.FINISHED)

    def start_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> Experiment:
        """Low level: the caller must call :meth:`end_exp`. Returns the started Experiment."""
        if self.active_experiment is not None:
            raise InvalidStateError(
                f"experiment {self.active_experiment.name!r} is already active; end it first "
                "(R.end_exp()), or start a second run with Experiment.start()"
            )
        manager = connect(uri, default_exp_name=self.exp_manager.default_exp_name) if uri else None
        manager = manager or self.exp_manager
        exp = objects.get_exp(manager, experiment_id=experiment_id, experiment_name=experiment_name)
        exp.start(recorder_id=recorder_id, recorder_name=recorder_name, resume=resume)
        self._active_manager = manager
        self.active_experiment = exp
        return exp

    def end_exp(self, recorder_status: str | RunStatus = RunStatus.FINISHED) -> None:
        """End the active experiment and its recorder; a no-op when none is active."""
        exp, self.active_experiment = self.active_experiment, None
        self._active_manager = None
        if exp is not None:
            exp.end(recorder_status)

    def reset(self) -> None:
        """Back to a fresh process's state: end the active experiment and its recorder as
        :meth:`end_exp` does (FINISHED), and forget the default store, so the next call resolves
        it again (``TRACKER_URI``, the working directory). For tests and notebooks."""
        self.end_exp(RunStatus.FINISHED)
        self._default = None
        self._default_exp_name = "Experiment"

    # ---------------------------------------------------------------------------- experiments

    def get_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        create: bool = True,
        start: bool = False,
    ) -> Experiment:
        """The active experiment when none is named; else by id or name (the default name if
        neither), created if missing and ``create``. With ``start`` and nothing active it
        becomes active with a new recorder."""
        active = self.active_experiment
        if active is not None and experiment_id is None and experiment_name is None:
            return active
        if active is not None and (experiment_id == active.id or experiment_name == active.name):
            return active
        exp = objects.get_exp(
            self.exp_manager,
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            create=create,
        )
        if start and active is None:
            exp.start()
            self._active_manager = self.exp_manager
            self.active_experiment = exp
        return exp

    def delete_exp(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> None:
        objects.delete_exp(self.exp_manager, experiment_id, experiment_name)

    def list_experiments(self) -> dict[str, Experiment]:
        return objects.list_experiments(self.exp_manager)

    def search_records(
        self, experiment_ids: Sequence[str] | str | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Runs as a DataFrame (``metrics.*``, ``params.*``, ``tags.*`` columns)."""
        return objects.search_records(self.exp_manager, experiment_ids, **kwargs)

    # ------------------------------------------------------------------------------ recorders

    def get_recorder(
        self,
        *,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
    ) -> Recorder:
        """The active recorder when nothing is named; else by id or name (newest) in the
        named, active or default experiment. Never creates anything."""
        exp = self.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=False
        )
        if recorder_id is None and recorder_name is None and exp.active_recorder is not None:
            return exp.active_recorder
        return exp.get_recorder(recorder_id, recorder_name, create=False)

    def list_recorders(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> dict[str, Recorder]:
        """Recorders of an existing experiment, newest first (Qlib created a missing one)."""
        exp = self.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=False
        )
        return exp.list_recorders(rtype=Experiment.RT_D)

    def delete_recorder(
        self,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
    ) -> None:
        exp = self.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=False
        )
        exp.delete_recorder(recorder_id, recorder_name)

    # --------------------------------------------- logging to the active (or an auto) recorder

    def _recorder(self) -> Recorder:
        """The active recorder; with nothing active, start the default experiment with a new
        recorder (Qlib's auto-start), which ends when the process exits."""
        exp = self.active_experiment
        if exp is None or exp.active_recorder is None:
            exp = self.get_exp(start=True)
        assert exp.active_recorder is not None
        return exp.active_recorder

    def log_params(self, **kwargs: Any) -> None:
        self._recorder().log_params(**kwargs)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self._recorder().log_metrics(step, **kwargs)

    def set_tags(self, **kwargs: Any) -> None:
        self._recorder().set_tags(**kwargs)

    def delete_tags(self, *keys: str) -> None:
        self._recorder().delete_tags(*keys)

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self._recorder().log_artifact(local_path, artifact_path)

    def save_objects(
        self,
        local_path: str | os.PathLike[str] | None = None,
        artifact_path: str | None = None,
        **objects: Any,
    ) -> None:
        if local_path is not None and objects:
            raise InvalidInputError("save_objects takes local_path or objects by name, not both")
        self._recorder().save_objects(local_path, artifact_path, **objects)

    def load_object(self, name: str, unpickler: type[pickle.Unpickler] | None = None) -> Any:
        """From the active recorder, else the default experiment's newest default-named one."""
        return self.get_recorder().load_object(name, unpickler)

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        return self.get_recorder().download_artifact(path, dst_path)

    def list_artifacts(
        self, artifact_path: str | None = None, recursive: bool = False
    ) -> list[str]:
        return self.get_recorder().list_artifacts(artifact_path, recursive)

    def flush(self) -> None:
        """Write everything queued by the active recorder now."""
        exp = self.active_experiment
        if exp is not None and exp.active_recorder is not None:
            exp.active_recorder.flush()


R = QlibRecorder()
