"""An :class:`~tracker.manager.ExpManager` over MLflow's tracking client, so research code can
point the same ``R``/``Experiment``/``Recorder`` calls at an MLflow server or database.

Selected by ``mlflow+<MLflow tracking URI>``: ``mlflow+sqlite:///path/mlflow.db``,
``mlflow+postgresql://…``, ``mlflow+file:./mlruns``, ``mlflow+http://host:5000``. ``mlflow`` is
imported inside methods only (``import tracker`` must not pay its ~1.5 s import).

How our model maps onto MLflow's, where it does not fit natively:

- heartbeat, pid, host and a changed start time (resume) or cleared end time are run tags
  (``tracker.heartbeat`` …), hidden from :attr:`RunData.tags`; so is ``mlflow.runName``.
- keys MLflow refuses (characters outside ``[/\\w.\\- :]``, paths like ``a//b``) are escaped
  reversibly: ``":"`` + the key with each other character as ``:`` + 4 base-36 digits.
- ±inf metrics: MLflow clamps them to ±``sys.float_info.max``; a hidden companion metric
  ``tracker.inf/<key>`` (±1 at the same step and time) tells a clamped inf from a real max.
- values over MLflow's limits (params 6000, tags 8000 characters) are stored whole as the
  artifact ``.tracker/long_{params,tags}/<key>.txt`` with the value ``tracker:artifact:<path>``,
  and read back transparently: never truncated.
- the artifact manifest is one tag per file, ``tracker.artifact.<sha1 of path>`` =
  ``[path, size, checksum, mtime]``: an upsert each, so concurrent writers lose nothing.
- a deleted experiment's name is freed by renaming it ``"<name> (deleted <id> <token>)"``
  (MLflow only renames active ones) with the name kept in its tag ``tracker.name``.
- status transitions and compare-and-set are checked client-side (read, then write): best
  effort, as are batches (validated up front, then written in MLflow-sized chunks).
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tracker import writer
from tracker.backends.mlflow_artifacts import (
    INF_PREFIX,
    MANIFEST_PREFIX,
    MAX_PARAM,
    MAX_TAG,
    POINTER,
    MLflowArtifacts,
    batches,
    decode_key,
    encode_key,
    inf_key,
    manifest_key,
    manifest_tag,
    unclamp,
)
from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    Lifecycle,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import (
    AlreadyExistsError,
    ConfigError,
    ExperimentNotFound,
    InvalidInputError,
    InvalidStateError,
    MLflowLimitation,
    NotFoundError,
    RunNotFound,
    StoreError,
    StoreUnavailable,
    TrackerError,
)
from tracker.manager import ExpManager, RunUpdate, now_ms
from tracker.search import COMPARE_OPS, STALE, And, Comparison, Expr, OrderKey, ascii_upper
from tracker.uri import mask
from tracker.validation import check_point

T_HEARTBEAT, T_PID, T_HOST = "tracker.heartbeat", "tracker.pid", "tracker.host"
T_START, T_END, T_DELETED = "tracker.start_time", "tracker.end_time", "tracker.deleted"
EXP_NAME_TAG = "tracker.name"
HIDDEN_TAGS = frozenset({T_HEARTBEAT, T_PID, T_HOST, T_START, T_END, T_DELETED, "mlflow.runName"})
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_PUSH_KEY = re.compile(r"[\w.\- /]+")  # keys safe to quote in MLflow's filter grammar
_MAX = sys.float_info.max
_PAGE = 1000


# ------------------------------------------------------------------------------ the manager


class MLflowExpManager(ExpManager):
    """Experiments, runs and artifacts in MLflow, through ``MlflowClient``.

    Args:
        uri: ``mlflow+`` followed by an MLflow tracking URI.
        artifact_uri: where new experiments keep artifacts, for database tracking URIs
            (default: ``mlartifacts`` beside a SQLite file); file stores keep them in the
            store and servers decide themselves.
    """

    def __init__(
        self,
        uri: str,
        default_exp_name: str = "Experiment",
        artifact_uri: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if storage_options:
            raise ConfigError(
                "the MLflow backend takes no storage_options: MLflow's artifact repositories "
                "read their settings from the environment (AWS_*, MLFLOW_S3_ENDPOINT_URL, …)"
            )
        scheme, _, rest = uri.partition("+")
        if scheme.lower() != "mlflow" or not rest:
            raise ConfigError(
                f"{mask(uri)!r} is not an MLflow URI such as mlflow+sqlite:///mlflow.db"
            )
        tracking, artifact_uri = _locate(rest, artifact_uri)
        super().__init__(uri, default_exp_name, artifact_uri)
        self.tracking_uri = tracking
        self._locations: dict[str, str] = {}  # run id -> artifact URI (they never change)
        self._mlflow_artifacts = MLflowArtifacts(self)
        with _quiet():
            from mlflow.tracking import MlflowClient
            from mlflow.tracking._tracking_service.utils import _get_store

            db = "://" in tracking and not tracking.startswith(("http", "file", "databricks"))
            # The client's own store would put new experiments' artifacts under ./mlruns of
            # the working directory; one opened with our root is used to create experiments
            # (and, being first, to create the database).
            self._creator: Any = _get_store(tracking, artifact_uri) if db else None
            self.client = MlflowClient(tracking_uri=tracking)
            self._creator = self._creator or self.client

    @property
    def artifacts(self) -> MLflowArtifacts:  # type: ignore[override]
        return self._mlflow_artifacts

    def close(self) -> None:
        # The engine is MLflow's, shared per URI: disposing only closes pooled connections.
        engine = getattr(self._creator, "engine", None)
        if engine is not None:
            engine.dispose()

    @contextmanager
    def mlflow_errors(self, not_found: Callable[[], TrackerError] | None = None) -> Iterator[None]:
        """Turn MLflow's exceptions into tracker's."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as e:
            code, message = getattr(e, "error_code", ""), getattr(e, "message", str(e))
            if code == "RESOURCE_DOES_NOT_EXIST" or (
                not_found and code == "INVALID_PARAMETER_VALUE"
            ):
                raise (not_found() if not_found else NotFoundError(message)) from e
            if code == "RESOURCE_ALREADY_EXISTS":
                raise AlreadyExistsError(message) from e
            if code == "INVALID_PARAMETER_VALUE":
                raise InvalidInputError(f"MLflow refused it: {message}") from e
            if code == "INVALID_STATE":
                raise InvalidStateError(f"MLflow refused it: {message}") from e
            if code == "TEMPORARILY_UNAVAILABLE":  # e.g. its database was busy: nothing written
                raise StoreUnavailable(
                    f"MLflow ({mask(self.tracking_uri)}): {mask(message)}"
                ) from e
            raise StoreError(f"MLflow ({mask(self.tracking_uri)}): {mask(message)}") from e

    # ------------------------------------------------------------------------------ experiments

    def create_experiment(self, name: str) -> ExperimentInfo:
        from mlflow.exceptions import MlflowException

        try:
            experiment_id = self._creator.create_experiment(name)
        except MlflowException as e:
            if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                with self.mlflow_errors():
                    raise
            held = self._mlflow_experiment_by_name(name)
            if held is None or held.lifecycle_stage != "deleted":
                raise AlreadyExistsError(f"an experiment named {name!r} already exists") from e
            # Deleted by MLflow itself, so it still holds the name: move it aside and retry.
            with self.mlflow_errors():
                self.client.restore_experiment(held.experiment_id)
                self._retire(held.experiment_id, held.name)
            return self.create_experiment(name)
        return self.get_experiment(experiment_id)

    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        missing = lambda: ExperimentNotFound(f"no experiment with id {experiment_id!r}")  # noqa: E731
        with self.mlflow_errors(missing):
            return _exp_info(self.client.get_experiment(str(experiment_id)))

    def find_experiment(self, name: str) -> ExperimentInfo | None:
        exp = self._mlflow_experiment_by_name(name)
        return None if exp is None or exp.lifecycle_stage != "active" else _exp_info(exp)

    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        infos = [_exp_info(e) for e in self._mlflow_experiments(view)]
        # MLflow creates "Default" (id 0) in every store; it is shown once it holds runs.
        infos = [i for i in infos if not (i.experiment_id == "0" and self._empty_default(i))]
        return sorted(infos, key=lambda i: (i.creation_time, _num(i.experiment_id)))

    def set_experiment_lifecycle(self, experiment_id: str, lifecycle: Lifecycle) -> None:
        missing = lambda: ExperimentNotFound(f"no experiment with id {experiment_id!r}")  # noqa: E731
        with self.mlflow_errors(missing):
            exp = self.client.get_experiment(str(experiment_id))
        eid, deleted = exp.experiment_id, exp.lifecycle_stage == "deleted"
        if Lifecycle(lifecycle) is Lifecycle.DELETED:
            if not deleted:
                with self.mlflow_errors():
                    self._retire(eid, exp.name)
            return
        if not deleted:
            return
        name = exp.tags.get(EXP_NAME_TAG, exp.name)
        other = self.find_experiment(name)
        if other is not None and other.experiment_id != eid:
            raise AlreadyExistsError(
                f"cannot restore experiment {name!r}: an active experiment has that name; "
                "rename or delete it first"
            )
        with self.mlflow_errors():
            self.client.restore_experiment(eid)
            if exp.name != name:
                self.client.rename_experiment(eid, name)
            # MLflow restores every run of the experiment: delete again the ones deleted alone.
            for run in self._mlflow_runs([eid], f"tags.`{T_DELETED}` = '1'", ViewType.ACTIVE_ONLY):
                self.client.delete_run(run.info.run_id)

    def _retire(self, experiment_id: str, name: str) -> None:
        """Delete an active experiment under a new, unique name, so its own is free again."""
        token = os.urandom(4).hex()
        self.client.set_experiment_tag(experiment_id, EXP_NAME_TAG, name)
        self.client.rename_experiment(
            experiment_id, f"{name[:400]} (deleted {experiment_id} {token})"
        )
        self.client.delete_experiment(experiment_id)

    def _mlflow_experiment_by_name(self, name: str) -> Any:
        with self.mlflow_errors():
            return self.client.get_experiment_by_name(name)

    def _mlflow_experiments(self, view: ViewType) -> list[Any]:
        out, token = [], None
        with self.mlflow_errors():
            while True:
                page = self.client.search_experiments(
                    view_type=int(view), max_results=_PAGE, page_token=token
                )
                out += list(page)
                token = page.token
                if not token:
                    return out

    def _empty_default(self, info: ExperimentInfo) -> bool:
        if info.name != "Default":
            return False
        with self.mlflow_errors():
            return not self.client.search_runs(["0"], run_view_type=3, max_results=1)

    # ------------------------------------------------------------------------------------- runs

    def create_run(
        self,
        experiment_id: str,
        name: str,
        status: RunStatus = RunStatus.RUNNING,
        *,
        start_time: int | None = None,
        pid: int | None = None,
        host: str | None = None,
        run_id: str | None = None,
    ) -> RunInfo:
        if run_id is not None:
            if not _RUN_ID.fullmatch(run_id):
                raise InvalidInputError(f"run id {run_id!r} must be 32 lowercase hex digits")
            if self._mlflow_run(run_id, missing_ok=True) is not None:
                raise AlreadyExistsError(f"a run with id {run_id!r} already exists")
            raise MLflowLimitation(
                f"MLflow chooses run ids itself: cannot create run {run_id}; import into the "
                "native store (tracker import mlflow) to keep ids"
            )
        ts = now_ms()
        start = start_time if start_time is not None else ts
        beat = ts if status is RunStatus.RUNNING else None
        tags = {T_PID: pid, T_HOST: host, T_HEARTBEAT: beat}
        tags = {k: str(v) for k, v in tags.items() if v is not None}

        def missing() -> TrackerError:
            exp = self._mlflow_experiment(experiment_id)
            state = "does not exist" if exp is None else "is deleted"
            return ExperimentNotFound(f"experiment {experiment_id!r} {state}")

        with self.mlflow_errors(missing):
            run = self.client.create_run(str(experiment_id), start, tags, run_name=name)
        if status is not RunStatus.RUNNING:  # MLflow always creates RUNNING runs
            with self.mlflow_errors():
                self.client.update_run(run.info.run_id, status=RunStatus(status).value)
        self._locations[run.info.run_id] = run.info.artifact_uri
        return RunInfo(
            run.info.run_id, run.info.experiment_id, run.info.run_name, RunStatus(status),
            Lifecycle.ACTIVE, start, None, beat, pid, host,
        )  # fmt: skip

    def get_run_info(self, run_id: str) -> RunInfo:
        return _run_info(self._mlflow_run(run_id))

    def _update_run(self, run_id: str, update: RunUpdate, wait: float | None = None) -> RunInfo:
        run = self._mlflow_run(run_id)
        update.check(run_id, RunStatus(run.info.status))
        status, target, fields = update.status, update.lifecycle, update.fields()
        deleted = run.info.lifecycle_stage == "deleted"
        if deleted and target is None and status is None and set(fields) <= {"heartbeat"}:
            # The writer's beat alone is not worth restoring a deleted run for (others would
            # see it active for a moment): the beat is dropped.
            return _run_info(run)
        changes = status is not None or bool(fields)
        active = not deleted
        with self.mlflow_errors():
            # MLflow refuses changes to deleted runs: restore, change, delete again.
            if deleted and (target is Lifecycle.ACTIVE or changes):
                self.client.restore_run(run_id)
                self._delete_tags(run, [T_DELETED])
                active = True
            if changes:
                self._apply(run, status, fields)
            if active and (target is Lifecycle.DELETED or (target is None and deleted)):
                # Marked, so that restoring its experiment (which restores every run in
                # MLflow) can delete it again.
                self._send(run_id, [], [], [(T_DELETED, "1")])
                self.client.delete_run(run_id)
        return self.get_run_info(run_id)

    def _apply(self, run: Any, status: RunStatus | None, fields: Mapping[str, Any]) -> None:
        run_id, tags, drop = run.info.run_id, [], []
        for field, tag in (("heartbeat", T_HEARTBEAT), ("pid", T_PID), ("host", T_HOST)):
            if field in fields and fields[field] is None:
                drop.append(tag)
            elif field in fields:
                tags.append((tag, str(fields[field])))
        if "start_time" in fields:
            start = fields["start_time"]
            tags.append((T_START, "none" if start is None else str(start)))
        new_status = (status or RunStatus(run.info.status)).value
        if "end_time" in fields and fields["end_time"] is None:
            tags.append((T_END, "none"))  # MLflow cannot clear an end time
        elif "end_time" in fields:
            drop.append(T_END)
            self.client.set_terminated(run_id, new_status, end_time=fields["end_time"])
            status = None
        if status is not None or fields.get("name"):
            self.client.update_run(run_id, status=status and status.value, name=fields.get("name"))
        self._send(run_id, [], [], tags)
        self._delete_tags(run, drop)

    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        out = {}
        for run_id in run_ids:
            run = self._mlflow_run(run_id, missing_ok=True)
            if run is not None:
                out[run_id] = self._run_data(run)
        return out

    def _list_run_infos(
        self, experiment_ids: Sequence[str] | None, view: ViewType
    ) -> list[RunInfo]:
        return self._search_run_infos(experiment_ids, None, [], None, view)

    def _search_run_infos(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[RunInfo]:
        return [r.info for r in self._search(experiment_ids, expr, order, max_results, view)]

    def _search_runs(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[Run]:
        """One MLflow search gives infos and data; runs live in this process are re-read
        after writing what they have queued, as ``get_runs_data`` would."""
        runs = self._search(experiment_ids, expr, order, max_results, view)
        live = writer.current().buffers  # the runs this process queues points for
        for i, run in enumerate(runs):
            run_id = run.info.run_id
            if run_id in live:
                writer.flush_run(run_id)
                runs[i] = Run(run.info, self._get_runs_data([run_id]).get(run_id, run.data))
        return runs

    def _search(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[Run]:
        """MLflow evaluates the part of the filter it can (an AND of simple comparisons);
        the whole filter and the order are always applied here, by :mod:`tracker.search`."""
        from tracker.search import search_in_python

        if experiment_ids is None:
            ids = [e.experiment_id for e in self._mlflow_experiments(ViewType.ALL)]
        else:
            ids = [str(e) for e in experiment_ids if str(e).isdigit()]
        if not ids:
            return []
        runs = [
            Run(_run_info(r), self._run_data(r))
            for r in self._mlflow_runs(ids, pushdown(expr), view)
        ]
        return search_in_python(runs, expr, order, max_results)

    def _mlflow_runs(self, ids: list[str], mlflow_filter: str, view: ViewType) -> list[Any]:
        out, token = [], None
        with self.mlflow_errors():
            while True:
                page = self.client.search_runs(
                    ids, mlflow_filter, run_view_type=int(view), max_results=_PAGE, page_token=token
                )
                out += list(page)
                token = page.token
                if not token:
                    return out

    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if not (params or metrics or tags):
            return
        run = self._mlflow_run(run_id)
        _check_writable(run)
        new_params = []
        for key, value in (params or {}).items():
            stored = encode_key(key)
            old = run.data.params.get(stored)
            if old is None:
                new_params.append((stored, value))
                continue
            old = self.artifacts.resolve(run_id, old)
            if old != value:
                raise InvalidInputError(
                    f"param {key!r} of run {run_id} is already {old!r}; params are immutable, "
                    f"so it cannot become {value!r} (log it under another key, or use a tag)"
                )
        points = []
        for m in metrics or ():
            check_point(m)
            stored = encode_key(m.key)
            value = m.value
            if math.isinf(value):  # MLflow clamps it; the companion says it was infinite
                points.append((inf_key(stored), math.copysign(1.0, value), m.step, m.timestamp))
                value = math.copysign(_MAX, value)
            points.append((stored, value, m.step, m.timestamp))
        new_tags = [(encode_key(k), v) for k, v in (tags or {}).items()]
        # Every check is done: only now may over-long values go to artifacts.
        shorten = self.artifacts.shorten
        new_params = [(k, shorten(run_id, "params", k, v, MAX_PARAM)) for k, v in new_params]
        new_tags = [(k, shorten(run_id, "tags", k, v, MAX_TAG)) for k, v in new_tags]
        with self.mlflow_errors():
            self._send(run_id, new_params, points, new_tags)

    def _send(
        self,
        run_id: str,
        params: list[tuple[str, str]],
        metrics: list[tuple[str, float, int, int]],
        tags: list[tuple[str, str]],
    ) -> None:
        from mlflow.entities import Metric as MLflowMetric
        from mlflow.entities import Param, RunTag

        for p, m, t in batches(params, metrics, tags):
            self.client.log_batch(
                run_id,
                metrics=[MLflowMetric(k, v, ts, step) for k, v, step, ts in m],
                params=[Param(k, v) for k, v in p],
                tags=[RunTag(k, v) for k, v in t],
                synchronous=True,
            )

    def delete_tags(self, run_id: str, keys: Sequence[str]) -> None:
        run = self._mlflow_run(run_id)
        _check_writable(run)
        with self.mlflow_errors():
            self._delete_tags(run, [encode_key(k) for k in keys])

    def _delete_tags(self, run: Any, stored_keys: Iterable[str]) -> None:
        for key in stored_keys:
            if key in run.data.tags:
                self.client.delete_tag(run.info.run_id, key)

    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        stored = encode_key(key)
        with self.mlflow_errors():
            points = sorted(
                self.client.get_metric_history(run_id, stored), key=lambda m: (m.step, m.timestamp)
            )
            if not points:
                self._mlflow_run(run_id)  # RunNotFound for an unknown run
            signs: dict[tuple[int, int], float] = {}
            if any(abs(m.value) == _MAX for m in points):
                hist = self.client.get_metric_history(run_id, inf_key(stored))
                signs = {(m.step, m.timestamp): m.value for m in hist}
        return [
            Metric(key, unclamp(m.value, signs.get((m.step, m.timestamp))), m.step, m.timestamp)
            for m in points
        ]

    def delete_run_permanently(self, run_id: str) -> None:
        run = self._mlflow_run(run_id)
        hard_delete = self._hard_delete()
        with self.mlflow_errors():
            if run.info.lifecycle_stage != "deleted":
                self.client.delete_run(run_id)
            hard_delete(run_id)
        self._locations.pop(run_id, None)

    def purge_run(self, run_id: str) -> None:
        self._hard_delete()  # refuse before the files are gone, not after
        super().purge_run(run_id)

    def _hard_delete(self) -> Callable[[str], None]:
        # The client has no hard delete; database and file stores have the one `mlflow gc`
        # uses, a REST store has none.
        hard_delete = getattr(self.client._tracking_client.store, "_hard_delete_run", None)
        if hard_delete is None:
            raise MLflowLimitation(
                f"{mask(self.tracking_uri)} offers no permanent delete through MLflow's client: "
                "delete the run (soft) and run `mlflow gc` against the server's backend store"
            )
        return hard_delete  # type: ignore[no-any-return]

    # -------------------------------------------------------------------------------- artifacts

    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
        if not entries:
            return
        run = self._mlflow_run(run_id)
        _check_writable(run)
        tags = [manifest_tag(e) for e in entries]
        tags = [(k, self.artifacts.shorten(run_id, "tags", k, v, MAX_TAG)) for k, v in tags]
        with self.mlflow_errors():
            self._send(run_id, [], [], tags)

    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        if not paths:
            return
        run = self._mlflow_run(run_id)
        _check_writable(run)
        with self.mlflow_errors():
            self._delete_tags(run, [manifest_key(p) for p in paths])

    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        run = self._mlflow_run(run_id)
        return self.artifacts.manifest(run_id, run.data.tags)

    def artifact_location(self, run_id: str, *, missing_ok: bool = False) -> str | None:
        """The run's artifact URI; None for an unknown run with ``missing_ok``."""
        if run_id not in self._locations:
            run = self._mlflow_run(run_id, missing_ok=missing_ok)
            if run is None:
                return None
            self._locations[run_id] = run.info.artifact_uri
        return self._locations[run_id]

    # ---------------------------------------------------------------------------------- helpers

    def _mlflow_run(self, run_id: str, *, missing_ok: bool = False) -> Any:
        try:
            with self.mlflow_errors(lambda: RunNotFound(f"no run with id {run_id!r}")):
                return self.client.get_run(run_id)
        except RunNotFound:
            if missing_ok:
                return None
            raise

    def _mlflow_experiment(self, experiment_id: str) -> Any:
        try:
            with self.mlflow_errors(lambda: ExperimentNotFound(experiment_id)):
                return self.client.get_experiment(str(experiment_id))
        except ExperimentNotFound:
            return None

    def _run_data(self, run: Any) -> RunData:
        run_id, resolve = run.info.run_id, self.artifacts.resolve
        params = {decode_key(k): resolve(run_id, v) for k, v in run.data.params.items()}
        tags = {
            decode_key(k): resolve(run_id, v)
            for k, v in run.data.tags.items()
            if k not in HIDDEN_TAGS and not k.startswith(MANIFEST_PREFIX)
        }
        latest = {m.key: m for m in getattr(run.data, "_metric_objs", ())}
        metrics = {}
        for key, value in run.data.metrics.items():
            if key.startswith(INF_PREFIX):
                continue
            point, mark = latest.get(key), latest.get(inf_key(key))
            # The latest point was infinite if its companion has a point at the same place.
            if point and mark and (mark.step, mark.timestamp) == (point.step, point.timestamp):
                value = unclamp(value, mark.value)
            metrics[decode_key(key)] = value
        return RunData(params, metrics, tags)


# ---------------------------------------------------------------------- filters and entities


def pushdown(expr: Expr | None) -> str:
    """The part of a filter MLflow evaluates as we do, or more loosely (never excluding a run
    we would keep): the conjuncts that are plain comparisons on safe keys and values."""
    items = expr.items if isinstance(expr, And) else (expr,) if isinstance(expr, Comparison) else ()
    return " and ".join(c for c in (_clause(i) for i in items) if c)


def _clause(c: Expr) -> str | None:
    if not isinstance(c, Comparison):
        return None
    if c.kind == "metric" and c.op in COMPARE_OPS and isinstance(c.value, (int, float)):
        text = str(c.value)
        # Clamped infinities compare as ±max, so only values below it are pushed down.
        if _PUSH_KEY.fullmatch(c.key) and abs(c.value) < _MAX and "e" not in text.lower():
            return f"metrics.`{c.key}` {c.op} {text}"
        return None
    if c.op != "=" and not (c.kind == "attribute" and c.key == "status" and c.op == "!="):
        return None
    value = c.value
    if not isinstance(value, str) or "'" in value or "\\" in value or value.startswith(POINTER):
        return None
    if c.kind == "attribute" and c.key == "status":
        # MLflow compares statuses (upper-case) with case; a stale run is a RUNNING one.
        value = ascii_upper(value)
        if value == STALE:
            if c.op == "!=":
                return None  # fresh RUNNING runs pass != 'stale'
            value = "RUNNING"
    if c.kind in ("param", "tag"):
        # A longer value is a pointer in MLflow; so, unquotable keys aside, is '=' safe.
        limit = MAX_PARAM if c.kind == "param" else MAX_TAG
        if len(value) > limit or not _PUSH_KEY.fullmatch(c.key) or encode_key(c.key) != c.key:
            return None
        return f"{c.kind}s.`{c.key}` = '{value}'"
    if c.kind == "attribute" and c.key in ("status", "run_name", "run_id"):
        return f"attributes.{c.key} {c.op} '{value}'"
    return None


def _exp_info(exp: Any) -> ExperimentInfo:
    deleted = exp.lifecycle_stage == "deleted"
    name = exp.tags.get(EXP_NAME_TAG, exp.name) if deleted else exp.name
    return ExperimentInfo(
        str(exp.experiment_id), name, Lifecycle(exp.lifecycle_stage), exp.creation_time or 0
    )


def _run_info(run: Any) -> RunInfo:
    i, tags = run.info, run.data.tags
    start = _int(tags[T_START]) if T_START in tags else i.start_time
    end = None if tags.get(T_END) == "none" else i.end_time
    return RunInfo(
        run_id=i.run_id,
        experiment_id=str(i.experiment_id),
        name=i.run_name or "",
        status=RunStatus(i.status),
        lifecycle=Lifecycle(i.lifecycle_stage),
        start_time=start,
        end_time=end,
        heartbeat=_int(tags.get(T_HEARTBEAT)),
        pid=_int(tags.get(T_PID)),
        host=tags.get(T_HOST),
    )


def _check_writable(run: Any) -> None:
    """Deleted runs refuse writes; ended ones take them, as in MLflow itself."""
    if run.info.lifecycle_stage != "active":
        raise InvalidStateError(f"run {run.info.run_id} is deleted; restore it before writing")


def _int(text: str | None) -> int | None:
    try:
        return None if text is None or text == "none" else int(text)
    except ValueError:
        return None


def _num(experiment_id: str) -> tuple[int, str]:
    return (int(experiment_id), "") if experiment_id.isdigit() else (sys.maxsize, experiment_id)


def _locate(tracking: str, artifact_uri: str | None) -> tuple[str, str | None]:
    """Absolute local paths (MLflow resolves relative ones against the working directory of
    each call), and a default artifact root for databases."""
    scheme = tracking.split(":", 1)[0].lower()
    if scheme == "sqlite" and tracking.startswith("sqlite:///"):
        path = tracking[len("sqlite:///") :]
        if path in ("", ":memory:"):
            raise ConfigError(f"{tracking!r} is in memory, which other processes cannot see")
        path = os.path.abspath(os.path.expanduser(path))
        tracking = f"sqlite:///{path}"
        artifact_uri = artifact_uri or os.path.join(os.path.dirname(path), "mlartifacts")
    elif scheme == "file":
        path = tracking[5:].removeprefix("//")
        tracking = "file://" + os.path.abspath(os.path.expanduser(path))
        # The user chose MLflow's file store explicitly, which MLflow 3.13+ refuses by default.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        artifact_uri = None  # a file store keeps artifacts in the store
    elif scheme in ("http", "https", "databricks"):
        artifact_uri = None  # the server decides
    elif artifact_uri is None:
        raise ConfigError(
            f"{mask(tracking)!r} keeps metadata on a server, so artifacts need a shared place too: "
            "pass artifact_uri= (e.g. s3://bucket/mlflow) or set TRACKER_ARTIFACT_URI"
        )
    return tracking, artifact_uri


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow (and SQLAlchemy under it) warn about their own deprecations; not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield
