"""Integrity under load (issue 9, the bar): writer processes log flat out into one store while
``tracker reap``, ``tracker gc`` and ``tracker ls`` run in a loop beside them.

Checks, and prints with the figures:
- acknowledged points lost: every ``R.log_metrics`` call that returned (each writer counts them
  in a shared file after every call, so a writer that dies still tells) must be in the store,
  and none twice;
- live runs reaped: ``reap`` runs with a threshold below the writers' heartbeat interval, so
  every live run looks stale to it; none may be marked FAILED;
- every writer exits 0 and each of its runs ends FINISHED;
- on SQLite, ``PRAGMA integrity_check``.
A churn process creates and soft-deletes small runs meanwhile, so that ``gc`` purges something.

It needs a scratch store, because ``gc`` purges every soft-deleted run in it: a SQLite file that
does not exist yet, or a PostgreSQL database in which it creates (and drops) its own schema.

Run: python bench/stress_integrity.py --uri sqlite:////tmp/stress.db [--writers 8] [--seconds 20]
     python bench/stress_integrity.py --uri postgresql+psycopg://postgres@127.0.0.1/test
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url  # noqa: E402

import tracker  # noqa: E402
from tracker import RunStatus  # noqa: E402
from tracker.manager import now_ms  # noqa: E402

KEYS = 5
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "TRACKER_NO_CODE_STATE": "1",
}
TRACKER = [sys.executable, "-c", "from tracker.cli.main import main; main()"]  # this checkout's CLI

# argv: uri artifact_uri progress slot seconds run_seconds keys. Prints "start ID" when a run
# starts and "end ID STEPS" when it ended; its progress slot holds the current run's
# acknowledged steps.
WRITER = """
import mmap, struct, sys, time
import tracker
from tracker import R
uri, art, progress, slot, seconds, run_seconds, nkeys = sys.argv[1:8]
slot, seconds, run_seconds = int(slot), float(seconds), float(run_seconds)
tracker.init(uri, art)
with open(progress, "r+b") as f:
    mm = mmap.mmap(f.fileno(), 0)
here = slice(slot * 8, slot * 8 + 8)
keys = [f"k{i}" for i in range(int(nkeys))]
deadline = time.time() + seconds
run = 0
while time.time() < deadline:
    with R.start(experiment_name="stress", recorder_name=f"w{slot}-{run}") as rec:
        mm[here] = struct.pack("q", 0)
        print("start", rec.id, flush=True)
        stop = min(deadline, time.time() + run_seconds)
        step = 0
        while time.time() < stop:
            R.log_metrics(step=step, **dict.fromkeys(keys, step * 0.5))
            step += 1
            mm[here] = struct.pack("q", step)
    print("end", rec.id, step, flush=True)
    run += 1
"""

# Small runs created and soft-deleted for a while, for gc to purge. argv: uri art seconds
CHURN = """
import sys, time
import tracker
from tracker import R
uri, art, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
manager = tracker.init(uri, art)
deadline = time.time() + seconds
n = 0
while time.time() < deadline:
    with R.start(experiment_name="churn", recorder_name=f"c{n}") as rec:
        for step in range(200):
            R.log_metrics(step=step, x=step)
    manager.delete_run(rec.id)
    n += 1
    time.sleep(0.2)
print(n, flush=True)
"""


@dataclass
class Loop:
    """The housekeeping commands run beside the writers, and what they reported."""

    uri: str
    artifact_uri: str
    stale_after: float
    runs: dict[str, int] = field(default_factory=lambda: {"reap": 0, "gc": 0, "ls": 0})
    failures: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    purged: int = 0

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        """One thread per command, each running it again and again until ``stop``."""
        gc = ["gc", "--json"] + (["--yes"] if self._gc_has_yes() else [])
        commands = {
            "reap": ["reap", "--stale-after", str(self.stale_after), "--json"],
            "gc": gc,
            "ls": ["ls", "stress", "--json", "--limit", "0"],
        }
        threads = [
            threading.Thread(target=self._repeat, args=(name, args, stop))
            for name, args in commands.items()
        ]
        for thread in threads:
            thread.start()
        return threads

    def _repeat(self, name: str, args: list[str], stop: threading.Event) -> None:
        while not stop.is_set():
            out = self._tracker(*args)
            if out.returncode != 0:
                self.failures.append(f"tracker {' '.join(args)}: {out.stderr.strip()}")
                continue
            self.runs[name] += 1
            if name == "reap":
                self.reaped += [r["run_id"] for r in json.loads(out.stdout)["runs"]]
            elif name == "gc":
                self.purged += json.loads(out.stdout)["count"]

    def _gc_has_yes(self) -> bool:
        # `gc --yes` (confirmation) may not exist in this version; both are accepted.
        return "--yes" in self._tracker("gc", "--help").stdout

    def _tracker(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*TRACKER, "--uri", self.uri, "--artifact-uri", self.artifact_uri, *args]
        return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)


def heartbeat_ages(manager: tracker.ExpManager, stop: threading.Event, ages: list[float]) -> None:
    """The largest heartbeat age among RUNNING runs, sampled every 0.2 s."""
    while not stop.is_set():
        now = now_ms()
        running = manager.search_run_infos(filter_string="status = 'RUNNING'")
        ages += [(now - r.heartbeat) / 1000 for r in running if r.heartbeat]
        time.sleep(0.2)


@contextmanager
def scratch_store(uri: str, keep: bool) -> Iterator[str]:
    """A fresh store at ``uri``: a new SQLite file, or a new schema in a PostgreSQL database."""
    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not url.database or path.exists():
            sys.exit(f"{uri}: give a SQLite file that does not exist yet (gc purges its runs)")
        yield uri
        if not keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"stress_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def stored_counts(manager: tracker.ExpManager, run_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Per run: (points stored, distinct (key, step) pairs), counted in SQL."""
    engine = manager.db.engine  # type: ignore[attr-defined]
    query = (
        "SELECT r.id, count(*), count(DISTINCT m.key || ':' || m.step) FROM metrics m "
        "JOIN runs r ON r.pk = m.run_pk WHERE r.id IN (%s) GROUP BY r.id"
    )
    with engine.connect() as conn:
        marks = ", ".join(f"'{run_id}'" for run_id in run_ids)  # 32 hex digits each
        rows = conn.exec_driver_sql(query % marks).all() if run_ids else []
    return {run_id: (n, distinct) for run_id, n, distinct in rows}


def parse_runs(stdout: str, current: int) -> dict[str, int]:
    """Run id -> acknowledged steps, from a writer's output and its progress slot."""
    runs: dict[str, int] = {}
    for line in stdout.splitlines():
        kind, run_id, *rest = line.split()
        runs[run_id] = int(rest[0]) if kind == "end" else current
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", required=True, help="sqlite:///NEW_FILE or a postgresql URL")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long writers log")
    parser.add_argument("--run-seconds", type=float, default=8.0, help="length of one run")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="writers' interval, s")
    parser.add_argument("--stale-after", type=float, default=0.5, help="reap's threshold, s")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, scratch_store(args.uri, args.keep) as uri:
        artifacts = str(Path(tmp) / "artifacts")
        manager = tracker.connect(uri, artifacts)  # creates the schema before the race
        for name in ("stress", "churn"):
            manager.get_or_create_experiment(name)
        progress = Path(tmp) / "progress"
        progress.write_bytes(struct.pack(f"{args.writers}q", *([0] * args.writers)))
        env = {**ENV, "TRACKER_HEARTBEAT_INTERVAL": str(args.heartbeat)}
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, uri, artifacts, str(progress), str(i)]
                + [str(args.seconds), str(args.run_seconds), str(KEYS)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(args.writers)
        ]
        churn = subprocess.Popen(
            [sys.executable, "-c", CHURN, uri, artifacts, str(args.seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        loop = Loop(uri, artifacts, args.stale_after)
        stop, ages = threading.Event(), [0.0]
        sampler = threading.Thread(target=heartbeat_ages, args=(manager, stop, ages))
        sampler.start()
        threads = [sampler, *loop.start(stop)]
        outputs = [w.communicate() for w in writers]
        churned = churn.communicate()[0].strip()
        stop.set()
        for thread in threads:
            thread.join()

        current = struct.unpack(f"{args.writers}q", progress.read_bytes())
        acked: dict[str, int] = {}
        for (out, _), steps in zip(outputs, current, strict=True):
            acked.update(parse_runs(out, steps))
        stored = stored_counts(manager, list(acked))
        infos = {run_id: manager.get_run_info(run_id) for run_id in acked}
        statuses = [i.status for i in infos.values()]
        points_acked = sum(steps * KEYS for steps in acked.values())
        points_stored = sum(n for n, _ in stored.values())
        duplicates = sum(n - distinct for n, distinct in stored.values())
        lost = sum(max(0, steps * KEYS - stored.get(r, (0, 0))[1]) for r, steps in acked.items())
        live_reaped = sorted(set(loop.reaped) & set(acked))
        codes = [w.returncode for w in writers]
        integrity = "n/a (PostgreSQL)"
        if make_url(uri).get_backend_name() == "sqlite":
            with sqlite3.connect(make_url(uri).database or "") as conn:
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        manager.close()

    finished = statuses.count(RunStatus.FINISHED)
    checks = {
        "writers exit 0": all(c == 0 for c in codes),
        "runs FINISHED": finished == len(statuses) > 0,
        "no point lost": lost == 0,
        "no point twice": duplicates == 0,
        "no live run reaped": not live_reaped,
        "commands succeeded": not loop.failures,
        "integrity_check": integrity in ("ok", "n/a (PostgreSQL)"),
    }
    backend = make_url(uri).get_backend_name()
    print(f"stress_integrity on {backend}: {args.writers} writers x {args.seconds:.0f} s")
    print(
        f"beside them in a loop: reap --stale-after {args.stale_after} x{loop.runs['reap']}, "
        f"gc x{loop.runs['gc']}, ls x{loop.runs['ls']}"
    )
    print(f"writers' exit codes: {codes}")
    print(f"runs: {len(statuses)} ({finished} FINISHED)")
    rate = points_acked / args.seconds
    print(f"acknowledged points: {points_acked:,} ({rate:,.0f}/s, all writers together)")
    print(f"stored points: {points_stored:,} (duplicates: {duplicates})")
    print(f"acknowledged points lost: {lost}")
    print(f"live runs reaped: {len(live_reaped)}")
    print(f"max heartbeat age seen: {max(ages):.1f} s (writers beat every {args.heartbeat} s)")
    print(f"churn runs created and deleted: {churned}, purged by gc: {loop.purged}")
    print(f"integrity_check: {integrity}")
    for failure in loop.failures[:5]:
        print(f"command failed: {failure}")
    for (_, err), code in zip(outputs, codes, strict=True):
        if code != 0:
            print(f"writer failed ({code}): {err.strip().splitlines()[-1:]}")
    failed = [name for name, ok in checks.items() if not ok]
    print("RESULT: PASS" if not failed else f"RESULT: FAIL ({', '.join(failed)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
