"""Housekeeping commands that change a store: ``rm`` / ``restore`` (soft deletion), ``gc``
(remove soft-deleted runs and their files for good), ``reap`` (fail runs whose process died)
and ``verify`` (check, and repair, the artifact manifest against the stored files)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import click

from tracker.cli.context import Context
from tracker.cli.output import emit_json, emit_table, fmt_bytes, fmt_time, plain
from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    Lifecycle,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import ExperimentNotFound
from tracker.liveness import process_alive
from tracker.manager import DEFAULT_STALE_AFTER, ExpManager, now_ms
from tracker.stale import stale_cutoff

_JSON_HELP = "Print the result as JSON."


class Duration(click.ParamType):
    """``30d``, ``12h``, ``45m``, ``90s`` or ``2w`` as milliseconds."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value).lower())
        if not match:
            self.fail(f"{value!r} is not a duration such as 30d, 12h, 45m, 90s or 2w", param, ctx)
        return int(float(match[1]) * self._UNITS[match[2]] * 1000)


# --------------------------------------------------------------------------------- helpers


def _stdin_is_tty() -> bool:
    # A function of its own so tests can pretend to be a terminal.
    return sys.stdin.isatty()


def _confirm(question: str, yes: bool) -> None:
    """Ask before changing anything; without a terminal refuse instead of waiting for input
    that may never come (cron, CI, a pipe)."""
    if yes:
        return
    if not _stdin_is_tty():
        raise click.ClickException(f"{question} Not confirmed: stdin is not a terminal; pass --yes")
    if not click.confirm(question, default=False, err=True):
        click.echo("Aborted; nothing was changed.", err=True)
        click.get_current_context().exit(1)


def _names(manager: ExpManager) -> dict[str, str]:
    return {e.experiment_id: e.name for e in manager.list_experiment_infos(ViewType.ALL)}


def _run_dict(info: RunInfo, names: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "experiment": names.get(info.experiment_id, info.experiment_id),
        "name": info.name,
        "status": info.status.value,
        "lifecycle": info.lifecycle.value,
        **extra,
    }


def _listing(runs: Sequence[RunInfo], names: dict[str, str]) -> str:
    rows = [[r.run_id[:12], names.get(r.experiment_id, "?"), r.name, str(r.status)] for r in runs]
    return plain(["run", "experiment", "name", "status"], rows) if rows else "(no runs)"


def _targets(obj: Context, refs: Sequence[str], experiment: str | None) -> list[RunInfo]:
    """The runs named on the command line (all resolved before anything changes)."""
    if bool(refs) == bool(experiment):
        raise click.UsageError("give RUN arguments or --experiment NAME (one of the two)")
    found = {}
    for ref in refs:
        info = obj.run(ref, obj.manager)
        found[info.run_id] = info
    return list(found.values())


# -------------------------------------------------------------------------------- rm / restore


@click.command("rm")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option("--experiment", "-e", metavar="NAME", help="Delete this experiment and its runs.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def rm(
    obj: Context, runs: tuple[str, ...], experiment: str | None, yes: bool, as_json: bool
) -> None:
    """Soft-delete runs (by id, unique id prefix or EXPERIMENT/RUN_NAME) or a whole experiment.

    Deleted runs are hidden but kept: `tracker restore` brings them back, `tracker gc`
    removes them and their artifacts for good. Asks for confirmation unless --yes (which
    is required when stdin is not a terminal)."""
    manager = obj.manager
    names = _names(manager)
    targets = _targets(obj, runs, experiment)
    if experiment:
        exp = manager.get_experiment_by_name(experiment)
        members = manager.search_run_infos([exp.experiment_id])
        click.echo(_listing(members, names), err=True)
        _confirm(f"Delete experiment {exp.name!r} and its {len(members)} run(s)?", yes)
        manager.set_experiment_lifecycle(exp.experiment_id, Lifecycle.DELETED)
        if as_json:
            emit_json({"experiment": exp.name, "runs": [_run_dict(r, names) for r in members]})
            return
        click.echo(
            f"Deleted experiment {exp.name!r} with {len(members)} run(s); undo with "
            f"`tracker restore --experiment {exp.name}`."
        )
        return
    todo = [r for r in targets if r.lifecycle is Lifecycle.ACTIVE]
    for info in targets:
        if info.lifecycle is not Lifecycle.ACTIVE:
            click.echo(f"{info.run_id[:12]} is already deleted", err=True)
    if todo:
        click.echo(_listing(todo, names), err=True)
        _confirm(f"Delete {len(todo)} run(s)?", yes)
    done = [manager.delete_run(r.run_id) for r in todo]
    if as_json:
        emit_json({"experiment": None, "runs": [_run_dict(r, names) for r in done]})
        return
    for info in done:
        click.echo(f"deleted {info.run_id[:12]} {names.get(info.experiment_id, '?')}/{info.name}")
    click.echo(f"Deleted {len(done)} run(s); undo with `tracker restore RUN`.")


def _deleted_experiment(manager: ExpManager, name: str) -> ExperimentInfo:
    """The most recently created deleted experiment of that name."""
    found = [e for e in manager.list_experiment_infos(ViewType.DELETED_ONLY) if e.name == name]
    if not found:
        state = "is not deleted" if manager.find_experiment(name) else "does not exist"
        raise ExperimentNotFound(f"no deleted experiment named {name!r} (it {state})")
    return max(found, key=lambda e: (e.creation_time, int(e.experiment_id)))


@click.command("restore")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option(
    "--experiment",
    "-e",
    metavar="NAME",
    help="Restore this deleted experiment (the newest deleted one of that name).",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def restore(obj: Context, runs: tuple[str, ...], experiment: str | None, as_json: bool) -> None:
    """Bring back soft-deleted runs or a soft-deleted experiment.

    Fails if another active experiment has since taken the experiment's name."""
    manager = obj.manager
    targets = _targets(obj, runs, experiment)
    names = _names(manager)
    if experiment:
        exp = _deleted_experiment(manager, experiment)
        manager.set_experiment_lifecycle(exp.experiment_id, Lifecycle.ACTIVE)
        members = manager.search_run_infos([exp.experiment_id])
        if as_json:
            emit_json({"experiment": exp.name, "runs": [_run_dict(r, names) for r in members]})
        else:
            click.echo(f"Restored experiment {exp.name!r} with {len(members)} run(s).")
        return
    done = []
    for info in targets:
        if info.lifecycle is Lifecycle.ACTIVE:
            click.echo(f"{info.run_id[:12]} is not deleted", err=True)
            continue
        done.append(manager.restore_run(info.run_id))
        exp_info = manager.get_experiment(info.experiment_id)
        if exp_info.lifecycle is Lifecycle.DELETED:
            click.echo(
                f"note: run {info.run_id[:12]} stays hidden while its experiment is deleted; "
                f"restore it with `tracker restore --experiment {exp_info.name}`",
                err=True,
            )
    if as_json:
        emit_json({"experiment": None, "runs": [_run_dict(r, names) for r in done]})
        return
    for info in done:
        click.echo(f"restored {info.run_id[:12]} {names.get(info.experiment_id, '?')}/{info.name}")
    click.echo(f"Restored {len(done)} run(s).")


# ---------------------------------------------------------------------------------------- gc


def _last_activity(info: RunInfo) -> int:
    return max(t for t in (info.start_time, info.end_time, info.heartbeat, 0) if t is not None)


def _is_live(info: RunInfo) -> bool:
    """RUNNING with a fresh heartbeat: a process may still be writing to the run."""
    return info.status is RunStatus.RUNNING and (info.heartbeat or 0) >= stale_cutoff()


def gc_candidates(
    manager: ExpManager, older_than_ms: int | None
) -> tuple[list[tuple[RunInfo, str]], list[RunInfo]]:
    """(run, why) pairs to remove, and deleted runs kept because they still look alive."""
    deleted_exps = manager.list_experiment_infos(ViewType.DELETED_ONLY)
    found: dict[str, tuple[RunInfo, str]] = {}
    if deleted_exps:
        ids = [e.experiment_id for e in deleted_exps]
        for info in manager.search_run_infos(ids, view=ViewType.ALL):
            found[info.run_id] = (info, "experiment deleted")
    for info in manager.search_run_infos(None, view=ViewType.DELETED_ONLY):
        found.setdefault(info.run_id, (info, "run deleted"))
    now = now_ms()
    picked, alive = [], []
    for info, why in found.values():
        # No deletion time is stored, so age is the run's last sign of life.
        if older_than_ms is not None and _last_activity(info) > now - older_than_ms:
            continue
        # A deleted run may still have a process writing to it: leave it until it ends.
        if _is_live(info):
            alive.append(info)
            continue
        picked.append((info, why))
    return picked, alive


@click.command("gc")
@click.option("--dry-run", "-n", is_flag=True, help="Only print what would be removed.")
@click.option(
    "--older-than",
    type=Duration(),
    metavar="DURATION",
    help="Only runs whose last activity (end, heartbeat or start) is older than this, "
    "e.g. 30d, 12h, 45m.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def gc(obj: Context, dry_run: bool, older_than: int | None, yes: bool, as_json: bool) -> None:
    """Permanently remove soft-deleted runs, and the runs of deleted experiments, with their
    artifact files (files first, then rows), and the temp files of killed saves. This cannot be
    undone: asks for confirmation unless --yes (which is required when stdin is not a terminal).

    Sizes come from the runs' artifact manifests. Deleted runs still RUNNING with a fresh
    heartbeat are left alone. The rows of deleted experiments are kept (empty), so their
    names stay free and `tracker restore --experiment` gives back an empty experiment.

    A temp file (.tracker-tmp-*, local artifact stores) is removed when the process that wrote
    it is gone (same host) or it has not been written to for an hour."""
    manager = obj.manager
    names = _names(manager)
    picked, alive = gc_candidates(manager, older_than)
    runs = []
    for info, why in picked:
        entries = manager.list_artifact_entries(info.run_id)
        runs.append(
            _run_dict(info, names, files=len(entries), bytes=sum(e.size for e in entries), why=why)
        )
    temps = manager.artifacts.stale_temp_files()
    total, temp_total = sum(r["bytes"] for r in runs), sum(size for _, size in temps)
    if not dry_run and (picked or temps):
        if not yes:
            if picked:
                click.echo(_listing([info for info, _ in picked], names), err=True)
            if temps:
                click.echo(_temp_listing(temps), err=True)
        _confirm(
            f"Permanently remove {len(runs)} run(s) ({fmt_bytes(total)} of artifacts) and "
            f"{len(temps)} temp file(s) of killed saves ({fmt_bytes(temp_total)})?",
            yes,
        )
        for info, _ in picked:
            manager.purge_run(info.run_id)
        for path, _ in temps:
            manager.artifacts.remove_temp_file(path)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "count": len(runs),
                "bytes": total,
                "runs": runs,
                "skipped_running": [r.run_id for r in alive],
                "temp_files": [{"path": path, "bytes": size} for path, size in temps],
                "temp_bytes": temp_total,
            }
        )
        return
    if runs:
        columns = ["run", "experiment", "name", "status", "files", "size", "why"]
        rows = [
            [r["run_id"][:12], r["experiment"], r["name"], r["status"], r["files"]]
            + [fmt_bytes(r["bytes"]), r["why"]]
            for r in runs
        ]
        emit_table(columns, rows)
    for info in alive:
        click.echo(f"kept {info.run_id[:12]}: deleted but still running", err=True)
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} {len(runs)} run(s), {fmt_bytes(total)} of artifacts.")
    if temps:
        if dry_run:
            click.echo(_temp_listing(temps))
        click.echo(f"{verb} {len(temps)} temp file(s) of killed saves, {fmt_bytes(temp_total)}.")


def _temp_listing(temps: Sequence[tuple[str, int]]) -> str:
    return plain(["temp file", "size"], [[path, fmt_bytes(size)] for path, size in temps])


# ------------------------------------------------------------------------------------ verify


@click.command("verify")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option(
    "--repair",
    is_flag=True,
    help="Make the manifest describe the stored files: record what is stored, forget what "
    "is missing.",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def verify(obj: Context, runs: tuple[str, ...], repair: bool, as_json: bool) -> None:
    """Check that the artifact manifest of runs (default: every active run) matches the stored
    files, reading every file once: a file missing, not recorded, or of another size or
    sha256 than recorded. Exits 1 when a mismatch is left.

    --repair records each stored file as it is (a file changed on purpose, a save killed before
    it was recorded) and forgets entries whose file is gone. Runs still RUNNING with a fresh
    heartbeat are checked but not repaired: a save may be under way."""
    from tracker.cli.bundle import _progress
    from tracker.manifest import check_run
    from tracker.manifest import repair as repair_manifest

    manager = obj.manager
    infos = [obj.run(r, manager) for r in runs] if runs else manager.search_run_infos()
    checks = [check_run(manager, info) for info in _progress(infos, "Verifying")]
    found = [m for c in checks for m in c.mismatches]
    live = {info.run_id for info in infos if _is_live(info)}
    fixed = [m for m in found if m.run_id not in live] if repair else []
    if fixed:
        repair_manifest(manager, fixed)
    files, size = sum(c.files for c in checks), sum(c.bytes for c in checks)
    if as_json:
        emit_json(
            {
                "runs": len(checks),
                "files": files,
                "bytes": size,
                "mismatches": [{**asdict(m), "repaired": m in fixed} for m in found],
            }
        )
    else:
        if found:
            columns = ["run", "path", "problem", "recorded", "stored"]
            rows = [
                [m.run_id[:12], m.path, m.problem, _described(m.recorded), _described(m.stored)]
                + (["yes" if m in fixed else "no"] if repair else [])
                for m in found
            ]
            emit_table(columns + (["repaired"] if repair else []), rows)
        for run_id in sorted({m.run_id for m in found if m not in fixed}) if repair else []:
            click.echo(f"kept {run_id[:12]}: still running, not repaired", err=True)
        done = f", {len(fixed)} repaired" if repair else ""
        click.echo(
            f"Checked {len(checks)} run(s), {files} file(s), {fmt_bytes(size)}: "
            f"{len(found)} mismatch(es){done}."
        )
    if len(found) > len(fixed):
        click.get_current_context().exit(1)


def _described(entry: ArtifactEntry | None) -> str:
    if entry is None:
        return "-"
    return f"{fmt_bytes(entry.size)} {entry.checksum.split(':', 1)[-1][:12] or '(no sha256)'}"


# -------------------------------------------------------------------------------------- reap


@click.command("reap")
@click.option("--dry-run", "-n", is_flag=True, help="Only list the runs it would mark.")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0),
    default=DEFAULT_STALE_AFTER,
    show_default=True,
    metavar="SECONDS",
    help="A RUNNING run whose heartbeat is older than this is taken as dead, unless its "
    "process is alive on this host.",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def reap(obj: Context, dry_run: bool, stale_after: float, as_json: bool) -> None:
    """Mark RUNNING runs whose process died as FAILED.

    A run is reaped when its heartbeat is older than --stale-after and its process is gone:
    a run started on this host is kept while its pid is alive (a late heartbeat only means a
    busy store); for a run started on another host the heartbeat alone decides, and if its
    process was alive after all it sets the run RUNNING again and keeps every point."""
    manager = obj.manager
    names = _names(manager)
    stale = manager.stale_runs(stale_after)
    found = manager.dead_runs(stale_after) if dry_run else manager.reap(stale_after)
    reaped = {r.run_id for r in found}
    kept = [r for r in stale if r.run_id not in reaped and process_alive(r)]
    runs = [_run_dict(r, names, heartbeat=r.heartbeat, pid=r.pid, host=r.host) for r in found]
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "stale_after": stale_after,
                "count": len(runs),
                "runs": runs,
                "kept_alive": [r.run_id for r in kept],
            }
        )
        return
    if runs:
        columns = ["run", "experiment", "name", "last heartbeat", "pid", "host"]
        rows = [
            [r["run_id"][:12], r["experiment"], r["name"], fmt_time(r["heartbeat"])]
            + [r["pid"], r["host"]]
            for r in runs
        ]
        emit_table(columns, rows)
    for info in kept:
        click.echo(
            f"kept {info.run_id[:12]}: heartbeat late, but its process (pid {info.pid}) is "
            "alive on this host",
            err=True,
        )
    verb = "Would mark" if dry_run else "Marked"
    click.echo(f"{verb} {len(runs)} stale run(s) FAILED.")
