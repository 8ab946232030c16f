"""``tracker online EXPERIMENT``: the operator's view of an online experiment.

Which models are online and on which windows they were trained and tested, whether their
predictions reach the last date of their data (stale if the data has newer dates), which runs
failed or lost their heartbeat, and the task pools' counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from tracker import objects
from tracker.cli.context import Context
from tracker.errors import InvalidTypeError

ONLINE_FILTER = "tags.online_status = 'online'"


def _day(value: Any) -> str | None:
    import pandas as pd

    if value is None:
        return None
    try:
        return None if pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"
    except (TypeError, ValueError):
        return str(value)  # not a date: shown as stored (a CodeReference says what it was)


def _segment(seg: Any) -> list[str | None] | None:
    if seg is None:
        return None
    return [_day(t) for t in seg] if isinstance(seg, (list, tuple)) else [str(seg)]


def _get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]…``, None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _model(rec: Any) -> dict[str, Any]:
    """One online model: windows from its ``task``, last prediction vs last data date.

    The artifacts are loaded with :mod:`tracker.safe_pickle`: looking at a shared store must
    not run code that anyone who can write to it put in a pickle. A reference to code in the
    task (e.g. a model class) is shown as ``<not shown: contains code reference …>``."""
    import pandas as pd

    from tracker.online.workflow.task.utils import trading_calendar
    from tracker.safe_pickle import PlaceholderUnpickler, SafeUnpickler

    row: dict[str, Any] = {"run_id": rec.id, "name": rec.name, "status": rec.status}
    row["online_since"] = rec.list_tags().get("online_since")
    problems = []
    # Whatever a run's artifacts hold, the view reports it on that run's line and goes on.
    try:
        task = rec.load_object("task", unpickler=PlaceholderUnpickler)
        if not isinstance(task, Mapping):
            raise InvalidTypeError(f"not a task dict: {task}")
        segments = _get(task, "dataset", "kwargs", "segments")
        model = _get(task, "model", "class")
        row["model"] = None if model is None else str(model)
        row["train"] = _segment(_get(segments, "train"))
        row["test"] = _segment(_get(segments, "test"))
        row["data_end"] = _day(trading_calendar(task)[-1])
    except Exception as e:
        problems.append(f"task/data: {e}")
    try:
        pred = rec.load_object("pred.pkl", unpickler=SafeUnpickler)
        if not isinstance(pred, (pd.DataFrame, pd.Series)):
            raise InvalidTypeError(f"a {type(pred).__name__}, not a DataFrame of predictions")
        row["pred_end"] = _day(pred.dropna().index.get_level_values("datetime").max())
    except Exception as e:
        problems.append(f"pred.pkl: {e}")
    row["stale"] = bool(
        row.get("data_end") and (row.get("pred_end") is None or row["pred_end"] < row["data_end"])
    )
    row["problems"] = problems
    return row


def online_state(manager: Any, experiment: str, all_pools: bool = False) -> dict[str, Any]:
    """The view as a dict (what ``--json`` prints)."""
    from tracker.errors import InvalidInputError
    from tracker.online.workflow.task.manage import pool_counts

    exp = objects.get_exp(manager, experiment_name=experiment, create=False)
    online = exp.list_recorders(rtype="list", filter_string=ONLINE_FILTER)
    failed = exp.list_recorders(rtype="list", filter_string="status = 'FAILED'")
    stale = [r for r in manager.stale_runs() if str(r.experiment_id) == str(exp.id)]
    try:
        pools = pool_counts(manager)
    except InvalidInputError:  # a store without a SQL database has no pools
        pools = {}
    if not all_pools:
        pools = {p: c for p, c in pools.items() if p == experiment or p.startswith(experiment)}
    return {
        "experiment": experiment,
        "online": [_model(r) for r in online],
        "failed_runs": [{"run_id": r.id, "name": r.name} for r in failed],
        "stale_runs": [{"run_id": r.run_id, "name": r.name} for r in stale],
        "pools": pools,
    }


def _print(state: dict[str, Any]) -> None:
    click.echo(f"experiment {state['experiment']}: {len(state['online'])} online model(s)")
    for m in state["online"]:
        train, test = m.get("train") or [None, None], m.get("test") or [None, None]
        flag = "  STALE: data has newer dates" if m["stale"] else ""
        click.echo(
            f"  {m['run_id'][:12]} {m.get('model', '?')} train {train[0]}..{train[1]} "
            f"test {test[0]}..{test[1] or 'open'}  pred to {m.get('pred_end')} / data to "
            f"{m.get('data_end')}{flag}"
        )
        for problem in m["problems"]:
            click.echo(f"    ! {problem}")
    for key, label in (("failed_runs", "failed"), ("stale_runs", "stale (heartbeat lost)")):
        runs = state[key]
        click.echo(f"{label} runs: {len(runs)}")
        for r in runs[:20]:
            click.echo(f"  {r['run_id'][:12]} {r['name']}")
    if not state["pools"]:
        click.echo("task pools: none")
    for pool, counts in state["pools"].items():
        shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "empty"
        click.echo(f"task pool {pool}: {shown}")


@click.command("online")
@click.argument("experiment")
@click.option("--all-pools", is_flag=True, help="Show every task pool, not only the experiment's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def online(obj: Context, experiment: str, all_pools: bool, as_json: bool) -> None:
    """Online models of EXPERIMENT, their windows and freshness, failed or stale runs, and
    the task pools' counts (those named like EXPERIMENT)."""
    state = online_state(obj.manager, experiment, all_pools)
    if as_json:
        click.echo(json.dumps(state, indent=2, default=str))
    else:
        _print(state)
