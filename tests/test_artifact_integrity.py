"""The manifest and the stored bytes stay in step (issue 9, items 13, 14, 14b, 15): reads check
sha256 as they stream, temp files of killed saves are collected, a save killed on S3 never
leaves a wrong manifest entry, and a server that stops answering fails calls in time."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec.core
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import tracker
from tests.s3server import REGION, S3Server
from tracker import objects
from tracker.artifacts import TEMP_PREFIX, TIMEOUT_ENV, ArtifactStore
from tracker.cli.main import cli
from tracker.codecs import dumps
from tracker.errors import ArtifactChecksumError, ArtifactTimeout, ConfigError, LoadObjectError
from tracker.local_files import temp_name
from tracker.manifest import read_checked

pytest_plugins = ["tests.s3server"]

REPO = Path(__file__).resolve().parents[1]
FRAME = pd.DataFrame(
    {"score": np.linspace(-1, 1, 2000), "label": np.arange(2000) % 7},
    index=pd.MultiIndex.from_product(
        [pd.date_range("2020-01-01", periods=400), [f"SH60000{i}" for i in range(5)]],
        names=["datetime", "instrument"],
    ),
)
OBJECTS = {
    "pred.pkl": FRAME,
    "pred.parquet": FRAME,
    "metrics.json": {"IC": 0.05, "names": ["a", "b"]},
    "notes.txt": "trained on 2020",
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def equal(a: Any, b: Any) -> bool:
    return a.equals(b) if isinstance(a, pd.DataFrame) else bool(a == b)


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> tracker.ExpManager:
    """A SQLite store whose artifacts live on the local disk, memory:// or moto's S3."""
    options = None
    if request.param == "local":
        root = str(tmp_path / "artifacts")
    elif request.param == "memory":
        root = f"memory://t{uuid.uuid4().hex[:10]}"
    else:
        s3: S3Server = request.getfixturevalue("s3")
        root, options = s3.url(uuid.uuid4().hex[:10]), s3.storage_options
    return tracker.connect(tmp_path / "s", root, storage_options=options)


def start(manager: tracker.ExpManager) -> tracker.Recorder:
    return objects.get_exp(manager, experiment_name="A").start(recorder_name="r")


def overwrite(manager: tracker.ExpManager, rec: tracker.Recorder, path: str, data: bytes) -> None:
    """Change a stored file behind tracker's back, through fsspec directly."""
    store = manager.artifacts
    url = store.url(rec.run_info.artifact_prefix, path)
    fs, full = fsspec.core.url_to_fs(url, **store.storage_options)
    fs.pipe_file(full, data)


# ------------------------------------------------------------------------ item 13: checked reads


OTHER = {
    "pred.pkl": FRAME.head(3),
    "pred.parquet": FRAME.head(3),
    "metrics.json": {"IC": 0.5},
    "notes.txt": "tampered",
}


def flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


CHANGES: dict[str, Callable[[str, bytes], bytes]] = {
    "byte-flipped": lambda name, data: flip(data),
    "tail-appended": lambda name, data: data + b"\0",
    "other-version": lambda name, data: dumps(name, OTHER[name]),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_load_object_refuses_a_file_changed_outside_tracker(
    manager: tracker.ExpManager, change: str
) -> None:
    rec = start(manager)
    rec.save_objects(**OBJECTS)
    prefix = rec.run_info.artifact_prefix
    for name in OBJECTS:
        data = manager.artifacts.get_bytes(prefix, name)
        changed = CHANGES[change](name, data)
        overwrite(manager, rec, name, changed)
        with pytest.raises(ArtifactChecksumError) as info:
            rec.load_object(name)
        message = str(info.value)
        for needle in (rec.id, repr(name), sha(data), sha(changed), "verify --repair"):
            assert needle in message, message
        assert isinstance(info.value, LoadObjectError) and "\n" not in message


def test_load_object_streams_from_the_store_and_checks_the_whole_file(
    manager: tracker.ExpManager,
) -> None:
    rec = start(manager)
    rec.save_objects(**OBJECTS)
    files: list[Any] = []

    class Probe(pickle.Unpickler):
        def __init__(self, file: Any) -> None:
            files.append(file)
            super().__init__(file)

    for name, obj in OBJECTS.items():
        assert equal(rec.load_object(name, unpickler=Probe), obj)
    # The pickle was read from the open file, not from a bytes copy of it.
    assert [type(f).__name__ for f in files] == ["BufferedReader"]


def test_an_unrecorded_file_loads_unchecked(manager: tracker.ExpManager) -> None:
    rec = start(manager)
    manager.artifacts.put_bytes(rec.run_info.artifact_prefix, "x.pkl", dumps("x.pkl", [1, 2]))
    assert rec.load_object("x.pkl") == [1, 2]  # e.g. stored by a save killed before recording


def test_download_artifact_checks_what_it_copies(
    manager: tracker.ExpManager, tmp_path: Path
) -> None:
    rec = start(manager)
    rec.save_objects(artifact_path="out", **{"a.json": [1], "b.json": [2], "c.json": [3]})
    overwrite(manager, rec, "out/b.json", b"[9]")
    with pytest.raises(ArtifactChecksumError, match=r"'out/b\.json' of run .* holds sha256:"):
        rec.download_artifact("out", str(tmp_path / "dst"))
    got = sorted(p.name for p in (tmp_path / "dst" / "out").iterdir())
    assert "b.json" not in got and not any(n.startswith(TEMP_PREFIX) for n in got)
    copied = rec.download_artifact("out/c.json", str(tmp_path / "dst2"))
    assert Path(copied).read_bytes() == manager.artifacts.get_bytes(
        rec.run_info.artifact_prefix, "out/c.json"
    )


def test_a_read_racing_an_overwrite_is_read_again(tmp_path: Path) -> None:
    """A file saved again by another process mid-read mixes two versions: the changed entry
    shows it was a save, not damage, and the read is done again."""
    manager = tracker.connect(tmp_path / "s", f"memory://t{uuid.uuid4().hex[:10]}")
    rec = start(manager)
    first, second = os.urandom(3 << 20), os.urandom(3 << 20)
    rec.save_objects(**{"blob.pkl": first})
    calls = []

    def consume(file: Any) -> bytes:
        head = file.read(10)
        if not calls:  # first attempt: the other writer replaces the file now
            rec.save_objects(**{"blob.pkl": second})
        calls.append(1)
        return head + file.read()

    data = read_checked(manager, rec.run_info, "blob.pkl", consume)
    assert len(calls) == 2 and data == dumps("blob.pkl", second)


# ------------------------------------------------------- item 14: temp files of killed saves

# Stores a big file through a FIFO that stalls after 8 MiB, so that the kill lands mid-write.
SAVE_CHILD = """
import os, sys, threading, time
import tracker
from tracker import objects

store, fifo = sys.argv[1:3]
rec = objects.get_exp(tracker.connect(store), experiment_name="A").start(recorder_name="big")

def feed():
    with open(fifo, "wb") as f:
        f.write(b"x" * (8 << 20))
        f.flush()
        time.sleep(60)

os.mkfifo(fifo)
threading.Thread(target=feed, daemon=True).start()
print(rec.run_info.artifact_prefix, flush=True)
rec.manager.artifacts.put_file(rec.run_info.artifact_prefix, fifo, "big")
"""


def child_env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TRACKER_NO_CODE_STATE": "1"}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX signals and FIFOs")
def test_gc_removes_temp_files_of_killed_saves(tmp_path: Path) -> None:
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVE_CHILD, str(store), str(tmp_path / "fifo")],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        folder = store / "artifacts" / proc.stdout.readline().strip() / "big"

        def partial() -> list[Path]:
            temps = list(folder.glob(TEMP_PREFIX + "*")) if folder.is_dir() else []
            return [p for p in temps if p.stat().st_size == 8 << 20]

        [killed] = wait_for(partial, "the save to write 8 MiB")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    # Beside it: a temp file of a live process (this one), a young one of another host (its
    # process cannot be checked from here), and two untouched for two hours.
    live = folder / temp_name()
    other_host = folder / f"{TEMP_PREFIX}4242@elsewhere.0123abcd"
    old = [folder / f"{TEMP_PREFIX}4242@elsewhere.4567cdef", folder / f"{TEMP_PREFIX}0a1b2c3d"]
    for path in [live, other_host, *old]:
        path.write_bytes(b"partial")
    for path in old:
        os.utime(path, (time.time() - 7200,) * 2)

    def gc(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(cli, ["--uri", str(store), "gc", "--json", *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout)

    dry = gc("--dry-run")
    leftovers = sorted(str(p.relative_to(store / "artifacts")) for p in [killed, *old])
    assert [t["path"] for t in dry["temp_files"]] == leftovers
    assert dry["temp_bytes"] == (8 << 20) + 2 * len(b"partial") and killed.exists()
    assert [t["path"] for t in gc("--yes")["temp_files"]] == leftovers
    assert sorted(folder.iterdir()) == sorted([live, other_host])
    assert gc("--dry-run")["temp_files"] == []


# ----------------------------------------------- item 14b: a save killed during an overwrite

# Overwrites pred.pkl of an ended run again and again. "after-store" stalls once the new bytes
# are stored, before the manifest records them (the kill then lands in between); "random"
# leaves the kill's timing to chance.
OVERWRITE_CHILD = """
import json, sys, time
import tracker
from tracker import objects

store, root, options, run_id, mode = sys.argv[1:6]
manager = tracker.connect(store, root, storage_options=json.loads(options))
rec = objects.get_exp(manager, experiment_name="A").get_recorder(recorder_id=run_id)
record = manager.record_artifacts

def stalling_record(run_id, entries):
    if mode == "after-store":
        print("stored", flush=True)
        time.sleep(60)
    record(run_id, entries)

manager.record_artifacts = stalling_record
version = 1
while True:
    version += 1
    print("start", version, flush=True)
    rec.save_objects(**{"pred.pkl": bytes([version % 256]) * (2_000_000 + version)})
"""


def kill_overwrite(store: Path, root: str, options: dict[str, Any], run_id: str, mode: str) -> None:
    argv = [str(store), root, json.dumps(options), run_id, mode]
    proc = subprocess.Popen(
        [sys.executable, "-c", OVERWRITE_CHILD, *argv],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("stored") or (mode == "random" and line == "start 3\n"):
                break
        else:
            pytest.fail(f"writer exited early with {proc.wait()}")
        if mode == "random":
            time.sleep(random.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def verify(store: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--uri", str(store), "verify", "--json", *args])
    assert result.exit_code in (0, 1), (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_save_killed_during_an_overwrite_never_leaves_a_wrong_entry(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, options = tmp_path / "s", {}
    root = str(tmp_path / "artifacts")
    if backend == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        root, options = s3.url(uuid.uuid4().hex[:10]), s3.storage_options
        # The CLI reads S3 settings from the environment, as a user's shell would set them.
        for name, value in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", s3.endpoint_url),
            ("AWS_DEFAULT_REGION", REGION),
        ]:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRACKER_ARTIFACT_URI", root)
    manager = tracker.connect(store, root, storage_options=options)
    rec = start(manager)
    rec.save_objects(**{"pred.pkl": b"\x01" * 2_000_001})
    rec.end_run()
    prefix = rec.run_info.artifact_prefix
    for mode in ["after-store", "random", "random", "random"]:
        kill_overwrite(store, root, options, rec.id, mode)
        stored = manager.artifacts.get_bytes(prefix, "pred.pkl")
        entries = manager.list_artifact_entries(rec.id)
        # The manifest lists only fully stored bytes: the stored version, or nothing.
        assert [(e.size, e.checksum) for e in entries] in ([], [(len(stored), sha(stored))])
        code, report = verify(store, rec.id)
        assert [m["problem"] for m in report["mismatches"]] == ([] if entries else ["unrecorded"])
        assert code == (0 if entries else 1)
        if not entries:
            assert verify(store, "--repair", rec.id)[0] == 0
        assert verify(store, rec.id) == (0, {**report, "mismatches": []})
        assert rec.load_object("pred.pkl") == pickle.loads(stored)


# ------------------------------------------------------------- item 15: a server that hangs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_s3_server() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """A moto S3 server in a process of its own (the shared one runs in this process and
    must not be stopped), with a bucket ``stoppable``."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, "moto's server to listen")
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **keys)
        client.create_bucket(Bucket="stoppable")
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
        }
        yield proc, options
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def outcome(call: Callable[[], Any], limit: float) -> tuple[float, BaseException | None]:
    """Run ``call`` in a thread; (seconds taken, what it raised). Fails if it is still
    running after ``limit`` seconds (it is then left to finish in the background)."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            result.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result.append(e)

    t = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert result, f"still waiting after {limit} s"
    return time.monotonic() - t, result[0]


@pytest.mark.s3
@pytest.mark.slow
def test_calls_to_a_stopped_s3_server_fail_within_the_timeout(
    own_s3_server: tuple[subprocess.Popen[bytes], dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, options = own_s3_server
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    manager = tracker.connect(tmp_path / "s", "s3://stoppable/t", storage_options=options)
    assert manager.artifacts.timeout == 1
    manager.artifacts.timeout = 30  # the first call also starts s3fs's client: slow when busy
    rec = start(manager)
    rec.save_objects(**{"a.pkl": {"x": 1}})
    manager.artifacts.timeout = 1
    prefix, dst = rec.run_info.artifact_prefix, str(tmp_path / "dst")
    os.kill(proc.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        calls = {
            "save": lambda: rec.save_objects(**{"b.pkl": list(range(1000))}),
            "big save": lambda: rec.save_objects(**{"c.pkl": os.urandom(20 << 20)}),
            "load": lambda: rec.load_object("a.pkl"),
            "download": lambda: rec.download_artifact("a.pkl", dst),
            "list": lambda: manager.artifacts.list_artifacts(prefix),
        }
        for what, call in calls.items():
            # 20 MiB earns 2.5 more timeouts; the rest is slack for a busy machine.
            seconds, error = outcome(call, 30)
            assert isinstance(error, ArtifactTimeout), (what, error)
            assert seconds < (8 if what == "big save" else 5), (what, seconds)
            message = str(error)
            assert "\n" not in message and "s3://stoppable/t/" in message, message
            assert f"raise {TIMEOUT_ENV} (now 1)" in message, message
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # The server answers again (slowly at first, with the backlog): so does the same store.
    manager.artifacts.timeout = 30
    rec.save_objects(**{"b.pkl": [1]})
    assert rec.load_object("b.pkl") == [1] and rec.load_object("a.pkl") == {"x": 1}


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_timeout_setting_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(ConfigError, match=f"{TIMEOUT_ENV}={value!r} is not a number of seconds"):
        ArtifactStore("memory://x")


@pytest.mark.s3
def test_the_timeout_reaches_s3fs_unless_set_there(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    store = ArtifactStore(s3.url("x"), s3.storage_options)
    assert store.timeout == 2.5 and store.storage_options == s3.storage_options
    config = store._fs.config_kwargs
    assert (config["connect_timeout"], config["read_timeout"]) == (2.5, 2.5)
    mine = {**s3.storage_options, "config_kwargs": {"read_timeout": 300}}
    config = ArtifactStore(s3.url("x"), mine)._fs.config_kwargs
    assert (config["connect_timeout"], config["read_timeout"]) == (2.5, 300)
