"""``tracker worker`` (drain a task pool) and ``tracker tasks`` (pools, counts, maintenance)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from tracker.cli.context import Context
from tracker.cli.output import emit_table, output_options

COLUMNS = ("pool", "waiting", "running", "part_done", "done", "failed", "stale", "total")


@click.command("worker")
@click.option("--pool", required=True, metavar="NAME", help="Task pool to take tasks from.")
@click.option("--experiment", metavar="NAME", help="Experiment of the runs (default: the pool).")
@click.option("--forever", is_flag=True, help="Keep polling for new tasks instead of exiting.")
@click.option(
    "--lease",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a task stays this worker's without a heartbeat (renewed every third).",
)
@click.option(
    "--phase",
    type=click.Choice(["begin", "end"]),
    help="Delayed training: 'begin' records tasks (waiting -> part_done), 'end' trains them "
    "(part_done -> done). Default: train at once (waiting -> done).",
)
@click.pass_obj
def worker(
    obj: Context, pool: str, experiment: str | None, forever: bool, lease: float, phase: str | None
) -> None:
    """Train the tasks of a task pool until it is drained: nothing waiting and nothing
    running elsewhere (a dead worker's task comes back when its lease expires)."""
    import tracker
    from tracker.online.model.train import begin_task_train, end_task_train, task_train
    from tracker.online.workflow.task import manage as tm
    from tracker.online.workflow.task.worker import run_task

    steps = {
        None: (task_train, tm.STATUS_WAITING, tm.STATUS_DONE),
        "begin": (begin_task_train, tm.STATUS_WAITING, tm.STATUS_PART_DONE),
        "end": (end_task_train, tm.STATUS_PART_DONE, tm.STATUS_DONE),
    }
    func, before, after = steps[phase]
    manager = obj.manager
    tracker.init(exp_manager=manager)  # task_train records through R
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s worker %(process)d: %(message)s"))
    logger = logging.getLogger("tracker.online.workflow.task")  # the manager's and the loop's
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        ran = run_task(
            func,
            pool,
            before_status=before,
            after_status=after,
            lease_seconds=lease,
            idle_exit=False,
            forever=forever,
            exp_manager=manager,
            experiment_name=experiment or pool,
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    counts = tm.TaskManager(pool, manager).task_stat()
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"
    click.echo(f"worker {tm.worker_id()} ran {ran} task(s) of pool {pool!r}; pool: {shown}")


class _PoolOrCommand(click.Group):
    """``tracker tasks [POOL]`` lists; ``tracker tasks COMMAND …`` maintains. A plain group
    would read a subcommand's name as POOL, so the first bare word is POOL only when it is
    not a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            if arg == "--" or not arg.startswith("-"):
                if arg != "--" and arg not in self.commands:
                    ctx.meta["tasks_pool"] = arg
                    args = args[:i] + args[i + 1 :]
                break
        return super().parse_args(ctx, args)


@click.group(
    "tasks",
    cls=_PoolOrCommand,
    invoke_without_command=True,
    subcommand_metavar="[POOL] | COMMAND [ARGS]...",
)
@output_options("json")
@click.pass_context
def tasks(ctx: click.Context, fmt: str) -> None:
    """Task pools and their tasks' status counts (one pool with POOL).

    'stale' counts running tasks whose lease expired (their worker is gone); they go back
    to waiting at the next fetch or with `tracker tasks reset POOL`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from tracker.online.workflow.task.manage import pool_counts

    pool = ctx.meta.get("tasks_pool")
    counts = pool_counts(ctx.obj.manager, None if pool is None else [pool])
    if pool is not None and pool not in counts:
        known = ", ".join(pool_counts(ctx.obj.manager)) or "none yet"
        raise click.ClickException(f"no task pool {pool!r} (pools: {known})")
    rows = [_row(name, c) for name, c in counts.items()]
    emit_table(COLUMNS, rows, fmt)


def _row(pool: str, counts: dict[str, int]) -> list[Any]:
    total = sum(n for status, n in counts.items() if status != "stale")
    return [pool, *(counts.get(c, 0) for c in COLUMNS[1:-1]), total]


def _manager(obj: Context, pool: str) -> Any:
    from tracker.online.workflow.task.manage import TaskManager, pool_counts

    if pool not in pool_counts(obj.manager, [pool]):
        raise click.ClickException(f"no task pool {pool!r}: list them with `tracker tasks`")
    return TaskManager(pool, obj.manager)


_STATUS = click.Choice(["waiting", "running", "part_done", "done", "failed"])


@tasks.command("reset")
@click.argument("pool")
@click.option("--status", type=_STATUS, default="running", show_default=True, help="From.")
@click.option("--to", "to", type=_STATUS, default="waiting", show_default=True, help="To.")
@click.pass_obj
def reset(obj: Context, pool: str, status: str, to: str) -> None:
    """Move a pool's tasks from one status to another (attempts start again from 0; runs of
    tasks taken from running go back to SCHEDULED)."""
    n = _manager(obj, pool).reset_status({"status": status}, to)
    click.echo(f"reset {n} task(s) of pool {pool!r} from {status} to {to}")


@tasks.command("prioritize")
@click.argument("pool")
@click.argument("task_id", metavar="ID", type=int)
@click.argument("priority", type=int)
@click.pass_obj
def prioritize(obj: Context, pool: str, task_id: int, priority: int) -> None:
    """Set a task's PRIORITY (higher runs first; default 0)."""
    _manager(obj, pool).prioritize(task_id, priority)
    click.echo(f"task {task_id} of pool {pool!r}: priority {priority}")


@tasks.command("remove")
@click.argument("pool")
@click.option("--status", type=_STATUS, help="Only tasks in this status (default: all).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def remove(obj: Context, pool: str, status: str | None, yes: bool) -> None:
    """Delete a pool's tasks (all, or those in one status). Runs are kept."""
    tm = _manager(obj, pool)
    query = {} if status is None else {"status": status}
    n = sum(tm.task_stat(query).values())
    what = f"{n} {status or ''} task(s)".replace("  ", " ")
    if not yes:
        click.confirm(f"delete {what} of pool {pool!r}?", abort=True)
    click.echo(f"removed {tm.remove(query)} task(s) of pool {pool!r}")
