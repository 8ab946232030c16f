"""Differential test of the filter grammar against the real ``mlflow`` package: the same runs,
logged into an MLflow SQLite store by MLflow's client and into tracker's native SQLite store,
must match the same filters in all three of MLflow, tracker's store and tracker's MLflow
adapter (reading the store MLflow wrote)."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import tracker
from tracker import Metric, RunStatus, ViewType

pytestmark = [
    pytest.mark.mlflow,
    # MLflow 3.17's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates; not ours.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

NAN, INF = math.nan, math.inf

# name, status, start, end, params, metrics, tags: values full of quotes, backslashes and
# wildcards, NaN and inf metrics, missing keys.
RUNS = [
    ("alpha", "FINISHED", 1000, 2000, {"lr": "0.1", "model": "lgb"},
     {"IC": 0.1, "loss": 0.5}, {"note": "100%", "stage": "dev"}),
    ("Alpha_2", "FAILED", 1100, 2100, {"lr": "0.01", "model": "LGB"},
     {"IC": -0.2, "loss": NAN}, {"note": "100\\%", "stage": "prod"}),
    ("beta[1]", "RUNNING", 1200, None, {"lr": "1e-3", "model": "lgb%"},
     {"IC": INF, "loss": 1.0}, {"note": "a_c"}),
    ("it's", "KILLED", 1300, 1400, {"lr": "abc", "model": "it's"},
     {"IC": NAN}, {"note": "it''s", "stage": "dev"}),
    ('say "hi"', "FINISHED", 1400, 5000, {"model": "x\\y"},
     {"IC": 0.0, "loss": -1.0}, {"note": "abc", "q": 'say "hi"'}),
    ("ÉTÉ", "RUNNING", 1500, None, {"model": "a\\\\b"}, {}, {"note": "ÉTÉ", "stage": "été"}),
    ("gamma", "FINISHED", 1600, 1700, {"lr": "0.1", "model": "x\\"},
     {"IC": 0.3, "loss": 0.25}, {"note": "ABC", "t with space": "v"}),
    ("100%", "FAILED", 1700, 1800, {}, {"IC": 0.1}, {"note": "x\\"}),
]  # fmt: skip

# Filters MLflow accepts; ``{alpha}`` stands for that run's id.
FILTERS = [
    # metrics: NaN matches only !=, inf is above every number (MLflow clamps it to the max)
    "metrics.IC > 0",
    "metrics.IC >= 0.1",
    "metrics.IC < 0",
    "metrics.IC <= 0",
    "metrics.IC = 0.1",
    "metrics.IC != 0.1",
    "metrics.loss != 1",
    "metrics.loss != 0.5 and metrics.IC != 0",
    "metric.IC > -1",
    "metrics.IC > 1e308",
    "metrics.IC > -.5",
    "metrics.loss >= -1E0",
    "metrics.`IC` > 0",
    'metrics."loss" < 1',
    "metrics.absent != 1",
    # params: strings as they are between the quotes, LIKE without an escape character
    "params.lr = '0.1'",
    "params.lr != '0.1'",
    "param.model LIKE 'lgb%'",
    "params.model ILIKE 'lgb%'",
    "params.model LIKE 'lgb_'",
    "params.model LIKE '%\\%'",
    "params.model = 'x\\y'",
    "params.model = 'a\\\\b'",
    "params.model LIKE 'a\\\\%'",
    "params.model = 'x\\'",
    'params.model = "it\'s"',
    "params.model = 'it''s'",
    "params.lr IS NULL",
    "params.lr IS NOT NULL",
    "parameters.lr != 'abc'",
    # tags
    "tags.note = '100%'",
    "tags.note LIKE '100%'",
    "tags.note LIKE '100\\%'",
    "tags.note = '100\\%'",
    "tags.note LIKE 'a_c'",
    "tags.note LIKE 'a\\_c'",
    "tags.note = 'it''s'",
    "tags.note = 'it\\'s'",
    "tags.q = 'say \"hi\"'",
    'tags.q = "say ""hi"""',
    "tags.note ILIKE 'été'",
    "tags.note ILIKE 'abc'",
    "tags.note LIKE 'ABC'",
    "tags.stage IS NULL",
    "tags.stage = 'été'",
    "tags.`t with space` = 'v'",
    "tag.note != 'abc'",
    # attributes; the run name is the tag mlflow.runName
    "attributes.status = 'FINISHED'",
    "status != 'RUNNING'",
    "run.status LIKE 'F%'",
    "attr.status ILIKE 'f%'",
    "attributes.run_name = 'alpha'",
    "run_name = 'it''s'",
    'run_name = "it\'s"',
    "run_name LIKE 'a%'",
    "attributes.run_name ILIKE 'a%'",
    "`Run name` = 'gamma'",
    "\"run name\" LIKE '%a'",
    "run_name LIKE '100%'",
    "tags.mlflow.runName = 'gamma'",
    "tags.`mlflow.runName` LIKE '%a%'",
    "tags.\"mlflow.runName\" ILIKE 'ALPHA%'",
    "attributes.start_time > 1250",
    "created >= 1300",
    "Created < 1300",
    "attributes.end_time > 2000",
    "end_time < 1500",
    "end_time != 1400",
    "attributes.run_id = '{alpha}'",
    "attributes.run_id IN ('{alpha}', '{gamma}')",
    "run_id NOT IN ('{alpha}')",
    # conjunctions
    "metrics.IC > 0 and params.model = 'lgb'",
    "metrics.IC != 0.1 AND tags.stage = 'dev'",
    "status = 'FINISHED' and metrics.loss < 1 and tags.note ILIKE 'a%'",
    "params.lr != '0.1' and metrics.IC != 0.3 and run_name LIKE '%a%'",
]

# Where tracker answers on purpose what MLflow does not: statuses ignore case (MLflow's are
# upper-case and it compares with case, so a lower-case status matches nothing there).
DIFFERENT_ON_PURPOSE = {
    "status = 'finished'": {"alpha", 'say "hi"', "gamma"},
    "attributes.status != 'running'": {"alpha", "Alpha_2", "it's", 'say "hi"', "gamma", "100%"},
}


@dataclass
class Stores:
    mlflow: object  # MlflowClient
    mlflow_exp: str
    native: tracker.ExpManager
    adapter: tracker.ExpManager
    exp: str  # the experiment id in both tracker stores
    adapter_exp: str
    ids: dict[str, str]  # run name -> run id (the same in every store)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, mlflow_db_template) -> Iterator[Stores]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric as MLflowMetric
    from mlflow.entities import Param, RunTag

    root = tmp_path_factory.mktemp("differential")
    db = root / "mlflow.db"
    shutil.copyfile(mlflow_db_template, db)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    mlflow_exp = client.create_experiment("grammar", artifact_location=str(root / "mlruns"))
    native = tracker.connect(f"sqlite:///{root / 'tracker.db'}", str(root / "artifacts"))
    exp = native.create_experiment("grammar").experiment_id
    ids = {}
    for name, status, start, end, params, metrics, tags in RUNS:
        run_id = client.create_run(mlflow_exp, start_time=start, run_name=name).info.run_id
        client.log_batch(
            run_id,
            metrics=[MLflowMetric(k, v, start, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=end)
        ids[name] = run_id
        native.create_run(exp, name, start_time=start, run_id=run_id)
        points = [Metric(k, v, 0, start) for k, v in metrics.items()]
        native.log_batch(run_id, params=params, metrics=points, tags=tags)
        if status != "RUNNING":
            native.update_run(run_id, status=RunStatus(status), end_time=end)
    adapter = tracker.connect(f"mlflow+sqlite:///{db}", str(root / "mlartifacts"))
    yield Stores(client, mlflow_exp, native, adapter, exp, mlflow_exp, ids)
    native.close()
    adapter.close()


def _names(stores: Stores, flt: str) -> dict[str, set[str]]:
    by_id = {run_id: name for name, run_id in stores.ids.items()}
    mlflow_runs = stores.mlflow.search_runs([stores.mlflow_exp], flt, max_results=1000)  # type: ignore[attr-defined]
    return {
        "mlflow": {by_id[r.info.run_id] for r in mlflow_runs},
        "tracker": {by_id[r.run_id] for r in stores.native.search_run_infos([stores.exp], flt)},
        "adapter": {
            by_id[r.run_id] for r in stores.adapter.search_run_infos([stores.adapter_exp], flt)
        },
    }


def test_the_stores_hold_the_same_runs(stores):
    native = stores.native.search_runs([stores.exp], view=ViewType.ALL)
    adapter = stores.adapter.search_runs([stores.adapter_exp], view=ViewType.ALL)
    for a, b in zip(native, adapter, strict=True):
        assert (a.info.run_id, a.info.name, a.info.status) == (
            b.info.run_id,
            b.info.name,
            b.info.status,
        )
        assert (a.data.params, a.data.tags) == (b.data.params, b.data.tags)
        assert a.data.metrics.keys() == b.data.metrics.keys()


@pytest.mark.parametrize("template", FILTERS)
def test_filter_agrees_with_mlflow(stores, template):
    flt = template.format(**stores.ids)
    found = _names(stores, flt)
    assert found["tracker"] == found["mlflow"], flt
    assert found["adapter"] == found["mlflow"], flt


def test_the_filters_split_the_runs(stores):
    """Most filters keep some runs and drop others, so that agreeing says something."""
    search = stores.mlflow.search_runs  # type: ignore[attr-defined]
    sizes = [len(search([stores.mlflow_exp], t.format(**stores.ids))) for t in FILTERS]
    splitting = [n for n in sizes if 0 < n < len(RUNS)]
    assert len(FILTERS) >= 40 and len(splitting) >= 0.75 * len(FILTERS)


@pytest.mark.parametrize(("flt", "expected"), DIFFERENT_ON_PURPOSE.items())
def test_status_ignores_case_unlike_mlflow(stores, flt, expected):
    found = _names(stores, flt)
    assert found["tracker"] == found["adapter"] == expected
    assert found["mlflow"] in (set(), {name for name, *_ in RUNS})  # MLflow: all or nothing
