"""``tracker batch``: Qlib's ``run_all_model`` — several configs × several seeds, in parallel
processes writing to one store, summarised as Qlib's mean±std table.

Each batch tags its runs ``tracker.batch=<batch id>`` and the table averages those runs only,
never earlier runs of the same experiment."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

from tracker.cli.context import Context
from tracker.cli.run import HEADLINE, warn
from tracker.manager import ExpManager

COLUMNS = ("Model Name", "Dataset", "IC", "ICIR", "Rank IC", "Rank ICIR",
           "Annualized Return", "Information Ratio", "Max Drawdown")  # fmt: skip
METRICS = HEADLINE  # the columns of Qlib's table, in its order
BATCH_TAG = "tracker.batch"


@dataclass
class Job:
    config: Path
    name: str
    seed: int
    python: str
    error: str | None = None


def cell(values: list[float]) -> str:
    """Qlib's cell: mean (5.4f) ± sample std (2.2f); std 0 for a single run."""
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:5.4f}±{std:2.2f}"


def dataset_name(config: dict) -> str:
    if config.get("dataset_name"):
        return str(config["dataset_name"])
    handler = config.get("task", {}).get("dataset", {}).get("kwargs", {}).get("handler", {})
    data = handler.get("kwargs", {}).get("data") if isinstance(handler, dict) else None
    if isinstance(data, str):
        return Path(data).stem
    return "synthetic" if isinstance(data, dict) else "custom"


def isolated_python(config: Path, envs: Path) -> str:
    """A virtual environment per config, from the requirements.txt beside it. Packages it
    lacks come from this interpreter's environment (so tracker needs no reinstall); what the
    requirements install takes precedence."""
    import site
    import sysconfig

    requirements = config.parent / "requirements.txt"
    env = envs / config.stem
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        parents = {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
        # addsitedir (not a bare path) so the parent's own .pth files, e.g. editable installs,
        # are processed too; it appends, so the venv's packages win.
        lines = [f"import site; site.addsitedir({p!r})" for p in sorted(parents)]
        Path(purelib, "_tracker_parent.pth").write_text("\n".join(lines) + "\n")
        if requirements.exists():
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
                check=True,
                capture_output=True,
            )
    return str(python)


def _run(job: Job, batch_id: str, uri: str, artifact_uri: str | None) -> Job:
    command = [
        job.python,
        "-c",
        "from tracker.cli.main import main; main()",
        "run",
        str(job.config),
    ]
    command += ["-e", job.name, "--seed", str(job.seed), "--tag", f"{BATCH_TAG}={batch_id}"]
    # The store through the environment: a command line (and a password in it) is public.
    env = {**os.environ, "TRACKER_URI": uri}
    if artifact_uri:
        env["TRACKER_ARTIFACT_URI"] = artifact_uri
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
        job.error = (errors or lines or [f"exit code {done.returncode}"])[-1]
    return job


def batch_metrics(manager: ExpManager, experiment: str, batch_id: str) -> dict[str, list[float]]:
    """Each headline metric over the FINISHED runs of this batch that logged all of them."""
    exp = manager.find_experiment(experiment)
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    if exp is None:
        return values
    query = f"tags.{BATCH_TAG} = '{batch_id}' and status = 'FINISHED'"
    for run in manager.search_runs([exp.experiment_id], query):
        if all(m in run.data.metrics for m in METRICS):
            for m in METRICS:
                values[m].append(run.data.metrics[m])
    return values


@click.command("batch")
@click.argument("configs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--times", default=1, show_default=True, help="Runs per config, seeds 0..N-1.")
@click.option("--jobs", default=1, show_default=True, help="Parallel worker processes.")
@click.option("--isolate", is_flag=True, help="One venv per config from its requirements.txt.")
@click.option("-o", "--out", default=".", type=click.Path(file_okay=False), show_default=True,
              help="Where table.md and table.csv go.")  # fmt: skip
@click.pass_obj
def batch(
    obj: Context, configs: tuple[str, ...], times: int, jobs: int, isolate: bool, out: str
) -> None:
    """Run each workflow CONFIG --times times (experiment = the config's name) and print
    Qlib's benchmark table over this batch's FINISHED runs (tagged tracker.batch=ID). A
    failing run is reported and the others go on; the exit code is 1 if any run failed."""
    import tracker
    from tracker.online.workflow.config import load_config
    from tracker.uri import resolve

    if times < 1 or jobs < 1:
        raise click.BadParameter("--times and --jobs must be at least 1")
    loc = resolve(obj.uri, obj.artifact_uri)
    manager = tracker.connect(loc.uri, loc.artifact_uri)  # create the store before workers race
    paths = [Path(c).resolve() for c in configs]
    loaded = {p: load_config(p) for p in paths}
    envs = Path(out) / ".envs"
    pythons = {p: isolated_python(p, envs) if isolate else sys.executable for p in paths}
    queue = [Job(p, p.stem, seed, pythons[p]) for p in paths for seed in range(times)]
    batch_id = uuid.uuid4().hex[:12]
    failed: list[Job] = []
    with (
        ThreadPoolExecutor(max_workers=jobs) as pool,
        click.progressbar(length=len(queue), label="runs", file=sys.stderr) as bar,
    ):
        for job in pool.map(lambda j: _run(j, batch_id, loc.uri, loc.artifact_uri), queue):
            bar.update(1)
            if job.error:
                failed.append(job)
    rows = []
    for path in paths:
        values = batch_metrics(manager, path.stem, batch_id)
        if values[METRICS[0]]:
            rows.append(
                [path.stem, dataset_name(loaded[path]), *(cell(values[m]) for m in METRICS)]
            )
        elif any(job.config == path and not job.error for job in queue):
            warn(f"{path.stem}: no finished run logged all of {', '.join(METRICS)}; no row")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = "\n".join(
        ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )
    (out_dir / "table.md").write_text(table + "\n")
    with open(out_dir / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([COLUMNS, *rows])
    click.echo(table)
    for job in failed:
        click.echo(f"FAILED {job.name} seed {job.seed}: {job.error}", err=True)
    click.echo(
        f"batch {batch_id}: {len(queue) - len(failed)} of {len(queue)} runs finished; "
        f"table in {out_dir}/table.md (its runs: --filter \"tags.{BATCH_TAG} = '{batch_id}'\")",
        err=True,
    )
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(queue)} runs failed")
