"""``tracker batch``: Qlib's ``run_all_model`` — several configs × several seeds, in parallel
processes writing to one store, summarised as Qlib's mean±std table."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

from cli.context import Context
from cli.run import HEADLINE

COLUMNS = ("Model Name", "Dataset", "IC", "ICIR", "Rank IC", "Rank ICIR",
           "Annualized Return", "Information Ratio", "Max Drawdown")  # fmt: skip
METRICS = HEADLINE  # the columns of Qlib's table, in its order


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


def _run(job: Job, uri: str, artifact_uri: str | None) -> Job:
    command = [job.python, "-c", "from cli.main import main; main()", "--uri", uri]
    if artifact_uri:
        command += ["--artifact-uri", artifact_uri]
    command += ["run", str(job.config), "-e", job.name, "--seed", str(job.seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        job.error = lines[-1] if lines else f"exit code {done.returncode}"
    return job


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
    Qlib's benchmark table over the FINISHED runs. A failing run is reported and the others
    go on."""
    import tracker
    from online.config import load_config
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
    failed: list[Job] = []
    with (
        ThreadPoolExecutor(max_workers=jobs) as pool,
        click.progressbar(length=len(queue), label="runs", file=sys.stderr) as bar,
    ):
        for job in pool.map(lambda j: _run(j, loc.uri, loc.artifact_uri), queue):
            bar.update(1)
            if job.error:
                failed.append(job)
    rows = []
    for path in paths:
        exp = (
            manager.get_exp(experiment_name=path.stem, create=False)
            if manager.find_experiment(path.stem)
            else None
        )
        recorders = exp.list_recorders(rtype="list", status="FINISHED") if exp else []
        values = {m: [] for m in METRICS}
        for rec in recorders:
            metrics = rec.list_metrics()
            if all(m in metrics for m in METRICS):
                for m in METRICS:
                    values[m].append(metrics[m])
        if values[METRICS[0]]:
            rows.append(
                [path.stem, dataset_name(loaded[path]), *(cell(values[m]) for m in METRICS)]
            )
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
        f"{len(queue) - len(failed)} of {len(queue)} runs finished; table in {out_dir}/table.md",
        err=True,
    )
