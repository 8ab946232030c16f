"""ArtifactStore's contract on local disk, memory:// and S3 (moto's server); the codecs."""

from __future__ import annotations

import hashlib
import os
import pickle
import posixpath
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import fsspec.core
import numpy as np
import pandas as pd
import pytest
from fsspec.registry import _registry as _fsspec_registry
from hypothesis import given
from hypothesis import strategies as st

from tests.s3server import S3Server
from tracker.artifacts import TEMP_PREFIX, ArtifactStore, validate_path
from tracker.codecs import dumps, loads
from tracker.errors import (
    ArtifactNotFound,
    BackendUnavailable,
    InvalidArtifactPath,
    InvalidInputError,
    LoadObjectError,
    UnsupportedURIError,
)

pytest_plugins = ["tests.s3server"]

REPO = Path(__file__).resolve().parents[1]
PREFIX = "3/0f1e2d3c4b5a/artifacts"
OTHER_PREFIX = "3/99aa88bb77cc/artifacts"
TREE = {
    "a.txt": b"alpha",
    "sub/b.bin": bytes(range(256)) * 3,
    "sub/deeper/c.json": b'{"k": 1}',
    "sub/deeper/\u00e9t\u00e9.txt": "\u00fc\u65e5".encode(),
    "sub/empty.dat": b"",
}
BAD_PATHS = [
    pytest.param("", id="empty"),
    pytest.param("/abs", id="absolute"),
    pytest.param("../x", id="parent"),
    pytest.param("a/../../x", id="climbs-out"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("C:\\x", id="windows-drive"),
    pytest.param(".", id="dot"),
]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_tree(root: Path, files: dict[str, bytes] = TREE) -> Path:
    for rel, data in files.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()
    }


class ArtifactStoreContract:
    """Tests every backend must pass; subclasses provide the ``store`` fixture."""

    is_local = False

    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError

    def test_put_bytes_round_trip(self, store: ArtifactStore) -> None:
        data = os.urandom(10_000)
        entry = store.put_bytes(PREFIX, "a/b/c.bin", data)
        assert (entry.path, entry.size, entry.checksum) == ("a/b/c.bin", len(data), sha(data))
        assert entry.mtime > 1_600_000_000_000  # epoch milliseconds, not seconds
        assert store.get_bytes(PREFIX, "a/b/c.bin") == data
        assert store.exists(PREFIX, "a/b/c.bin") and store.exists(PREFIX, "a/b")
        assert not store.exists(PREFIX, "a/nope")

    def test_empty_artifact(self, store: ArtifactStore) -> None:
        entry = store.put_bytes(PREFIX, "empty", b"")
        assert (entry.size, entry.checksum) == (0, sha(b""))
        assert store.get_bytes(PREFIX, "empty") == b""

    def test_path_is_normalised(self, store: ArtifactStore) -> None:
        entry = store.put_bytes(PREFIX, "a/./b//x/../c.txt/", b"x")
        assert entry.path == "a/b/c.txt"
        assert store.get_bytes(PREFIX, "a/b/c.txt") == b"x"

    @pytest.mark.parametrize("artifact_path", [None, "models/lgb"])
    def test_put_file_keeps_basename(
        self, store: ArtifactStore, tmp_path: Path, artifact_path: str | None
    ) -> None:
        src = tmp_path / "pred.pkl"
        src.write_bytes(b"\x80\x05pred" * 1000)
        entry = store.put_file(PREFIX, str(src), artifact_path)
        expected = "pred.pkl" if artifact_path is None else f"{artifact_path}/pred.pkl"
        assert (entry.path, entry.size) == (expected, src.stat().st_size)
        assert entry.checksum == sha(src.read_bytes())
        assert store.get_bytes(PREFIX, expected) == src.read_bytes()

    def test_put_file_rejects_directory(self, store: ArtifactStore, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match="put_dir"):
            store.put_file(PREFIX, str(tmp_path))

    @pytest.mark.parametrize("artifact_path", [None, "out/run"])
    def test_put_dir_recursive(
        self, store: ArtifactStore, tmp_path: Path, artifact_path: str | None
    ) -> None:
        (tmp_path / "src" / "empty-dir").mkdir(parents=True)
        src = write_tree(tmp_path / "src")
        entries = store.put_dir(PREFIX, str(src), artifact_path)
        base = "" if artifact_path is None else artifact_path + "/"
        expected = {base + rel: data for rel, data in TREE.items()}
        assert {e.path: (e.size, e.checksum) for e in entries} == {
            p: (len(d), sha(d)) for p, d in expected.items()
        }
        for path, data in expected.items():
            assert store.get_bytes(PREFIX, path) == data
        listed = store.list_artifacts(PREFIX)
        assert [e.path for e in listed] == sorted(expected)
        assert {e.path: e.size for e in listed} == {p: len(d) for p, d in expected.items()}
        assert all(e.mtime > 1_600_000_000_000 and e.checksum == "" for e in listed)

    def test_put_dir_rejects_file(self, store: ArtifactStore, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"x")
        with pytest.raises(InvalidInputError, match="put_file"):
            store.put_dir(PREFIX, str(tmp_path / "f"))

    def test_overwrite(self, store: ArtifactStore) -> None:
        store.put_bytes(PREFIX, "pred.pkl", b"first version, longer")
        entry = store.put_bytes(PREFIX, "pred.pkl", b"second")
        assert (entry.size, entry.checksum) == (6, sha(b"second"))
        assert store.get_bytes(PREFIX, "pred.pkl") == b"second"
        assert [(e.path, e.size) for e in store.list_artifacts(PREFIX)] == [("pred.pkl", 6)]

    def test_list_artifacts(self, store: ArtifactStore, tmp_path: Path) -> None:
        store.put_dir(PREFIX, str(write_tree(tmp_path)))
        assert [e.path for e in store.list_artifacts(PREFIX, "sub/deeper")] == sorted(
            p for p in TREE if p.startswith("sub/deeper/")
        )
        [entry] = store.list_artifacts(PREFIX, "sub/b.bin")
        assert (entry.path, entry.size) == ("sub/b.bin", len(TREE["sub/b.bin"]))
        assert store.list_artifacts(PREFIX, "missing") == []
        assert store.list_artifacts(OTHER_PREFIX) == []

    def test_download_file(self, store: ArtifactStore, tmp_path: Path) -> None:
        store.put_bytes(PREFIX, "a/b.bin", b"payload")
        dst = store.download(PREFIX, "a/b.bin", str(tmp_path / "dst"))
        assert dst == str(tmp_path / "dst" / "b.bin")
        assert Path(dst).read_bytes() == b"payload"
        in_place = store.download(PREFIX, "a/b.bin")
        try:
            assert Path(in_place).read_bytes() == b"payload"
            local_dir = store.local_dir(PREFIX)
            if self.is_local:
                assert local_dir is not None
                assert in_place == os.path.join(local_dir, "a", "b.bin")
            else:
                assert local_dir is None
        finally:
            if not self.is_local:
                shutil.rmtree(Path(in_place).parent)

    def test_download_directory(self, store: ArtifactStore, tmp_path: Path) -> None:
        store.put_dir(PREFIX, str(write_tree(tmp_path / "src")))
        dst = store.download(PREFIX, "sub", str(tmp_path / "dst"))
        assert dst == str(tmp_path / "dst" / "sub")
        assert read_tree(dst) == {p[4:]: d for p, d in TREE.items() if p.startswith("sub/")}
        whole = store.download(PREFIX)
        try:
            assert read_tree(whole) == TREE
        finally:
            if not self.is_local:
                shutil.rmtree(whole)

    def test_missing_artifact(self, store: ArtifactStore) -> None:
        store.put_bytes(PREFIX, "dir/file", b"x")
        for path in ["nope.pkl", "dir/nope", "dir"]:
            with pytest.raises(ArtifactNotFound, match=re.escape(repr(path))) as info:
                store.get_bytes(PREFIX, path)
            assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(ArtifactNotFound, match="nope.pkl"):
            store.download(PREFIX, "nope.pkl")
        with pytest.raises(ArtifactNotFound):
            store.download(OTHER_PREFIX)

    @pytest.mark.parametrize("bad", BAD_PATHS)
    def test_invalid_path_rejected(self, store: ArtifactStore, tmp_path: Path, bad: str) -> None:
        src = tmp_path / "f.txt"
        src.write_bytes(b"x")
        calls = [
            lambda: store.put_bytes(PREFIX, bad, b"data"),
            lambda: store.put_file(PREFIX, str(src), bad),
            lambda: store.put_dir(PREFIX, str(tmp_path), bad),
            lambda: store.get_bytes(PREFIX, bad),
            lambda: store.exists(PREFIX, bad),
            lambda: store.download(PREFIX, bad, str(tmp_path / "dst")),
            lambda: store.url(PREFIX, bad),
            lambda: store.delete_prefix(bad),  # a bad prefix must never reach rm -r
        ]
        for call in calls:
            with pytest.raises(InvalidArtifactPath, match=re.escape(repr(bad))):
                call()
        assert store.list_artifacts(PREFIX) == []
        assert not (tmp_path / "dst").exists()
        if self.is_local:
            root = Path(str(store.local_dir(PREFIX))).parents[2]
            assert not root.exists() or not any(root.rglob("*"))

    def test_delete_prefix(self, store: ArtifactStore) -> None:
        store.put_bytes(PREFIX, "a/b/c", b"1")
        store.put_bytes(PREFIX, "d", b"2")
        store.put_bytes(OTHER_PREFIX, "a/b/c", b"other run")
        store.delete_prefix(PREFIX)
        assert store.list_artifacts(PREFIX) == []
        assert not store.exists(PREFIX, "d")
        assert store.get_bytes(OTHER_PREFIX, "a/b/c") == b"other run"
        store.delete_prefix(PREFIX)  # already gone: fine
        store.delete_prefix("7/never/artifacts")

    def test_url(self, store: ArtifactStore) -> None:
        store.put_bytes(PREFIX, "a/b.txt", b"via url")
        run_url = store.url(PREFIX)
        assert run_url.endswith("/" + PREFIX) and "://" in run_url
        assert store.url(PREFIX, "a/./b.txt") == run_url + "/a/b.txt"
        fs, path = fsspec.core.url_to_fs(store.url(PREFIX, "a/b.txt"), **store.storage_options)
        assert fs.cat_file(path) == b"via url"

    def test_objects_through_store(self, store: ArtifactStore) -> None:
        frame = pd.DataFrame({"score": [0.5, -1.25]}, index=pd.Index(["A", "B"], name="inst"))
        store.put_bytes(PREFIX, "pred.parquet", dumps("pred.parquet", frame))
        store.put_bytes(PREFIX, "params.pkl", dumps("params.pkl", {"lr": 0.1}))
        pd.testing.assert_frame_equal(
            loads("pred.parquet", store.get_bytes(PREFIX, "pred.parquet")), frame
        )
        assert loads("params.pkl", store.get_bytes(PREFIX, "params.pkl")) == {"lr": 0.1}


class TestLocalStore(ArtifactStoreContract):
    is_local = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return ArtifactStore(str(tmp_path / "root"))

    def test_file_url_root(self, tmp_path: Path) -> None:
        store = ArtifactStore((tmp_path / "r").as_uri())
        store.put_bytes(PREFIX, "x", b"1")
        assert (tmp_path / "r" / PREFIX / "x").read_bytes() == b"1"
        assert store.local_dir(PREFIX) == str(tmp_path / "r" / PREFIX)


class TestMemoryStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[ArtifactStore]:
        name = f"tracker-test-{uuid.uuid4().hex}"
        yield ArtifactStore(f"memory://{name}")
        mem = fsspec.filesystem("memory")
        for key in [k for k in mem.store if k.startswith(f"/{name}")]:
            del mem.store[key]
        mem.pseudo_dirs[:] = [d for d in mem.pseudo_dirs if not d.startswith(f"/{name}")]


@pytest.mark.s3
class TestS3Store(ArtifactStoreContract):
    @pytest.fixture
    def store(self, s3: S3Server) -> ArtifactStore:
        return ArtifactStore(s3.url(uuid.uuid4().hex), s3.storage_options)


# -- backends and their optional packages -------------------------------------------------------


def test_missing_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_fsspec_registry, "s3", raising=False)  # forget a loaded s3fs
    monkeypatch.setitem(sys.modules, "s3fs", None)  # None makes `import s3fs` fail
    with pytest.raises(
        BackendUnavailable, match=re.escape("pip install 'qlib-tracker[s3]'")
    ) as info:
        ArtifactStore("s3://bucket/prefix")
    assert isinstance(info.value, ImportError) and isinstance(info.value.__cause__, ImportError)


def test_missing_gcsfs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_fsspec_registry, "gs", raising=False)
    monkeypatch.delitem(_fsspec_registry, "gcs", raising=False)
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(BackendUnavailable, match=re.escape("pip install 'qlib-tracker[gcs]'")):
        ArtifactStore("gs://bucket/prefix")


def test_unknown_protocol() -> None:
    with pytest.raises(UnsupportedURIError, match="nosuchproto"):
        ArtifactStore("nosuchproto://x")


# -- serialisation ------------------------------------------------------------------------------


class Model:
    """A picklable stand-in for a trained model."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.weights == self.weights

    __hash__ = None  # type: ignore[assignment]


def qlib_frame() -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [pd.date_range("2020-01-01", periods=4), ["SH600000", "SZ000001", "SZ000002"]],
        names=["datetime", "instrument"],
    )
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"score": rng.normal(size=12), "label": rng.integers(0, 5, 12), "tag": list("abcd") * 3},
        index=index,
    )


def test_parquet_dataframe_with_multiindex() -> None:
    frame = qlib_frame()
    data = dumps("pred.parquet", frame)
    assert data[:4] == b"PAR1"
    pd.testing.assert_frame_equal(loads("pred.parquet", data), frame)


def test_parquet_range_index_and_upper_case_suffix() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    pd.testing.assert_frame_equal(loads("X.PARQUET", dumps("X.PARQUET", frame)), frame)


@pytest.mark.parametrize("name", ["score", None, 0, ("a", "b")], ids=repr)
def test_parquet_series_keeps_name_and_index(name: Any) -> None:
    series = qlib_frame()["score"].rename(name)
    back = loads("pred.parquet", dumps("pred.parquet", series))
    assert isinstance(back, pd.Series)
    assert back.name is None if name is None else back.name == name
    pd.testing.assert_series_equal(back, series)


def test_json_dict() -> None:
    obj = {"IC": 0.05, "names": ["\u00e9", "\u65e5\u672c"], "nested": {"n": None, "ok": True}}
    data = dumps("metrics.json", obj)
    assert "\u65e5\u672c" in data.decode("utf-8")  # real UTF-8, not \\u escapes
    assert loads("metrics.json", data) == obj


@pytest.mark.parametrize(
    "obj", [{1, 2}, {"x": object()}, float("nan")], ids=["set", "object", "nan"]
)
def test_json_rejects_non_json(obj: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"'report\.json'.*'report\.pkl'"):
        dumps("report.json", obj)


def test_parquet_rejects_non_frame() -> None:
    with pytest.raises(InvalidInputError, match=r"'params\.parquet'.*dict.*'params\.pkl'"):
        dumps("params.parquet", {"a": 1})


@pytest.mark.parametrize("name", ["pred.pkl", "params.pkl", "task", "dataset", "model.bin"])
def test_pickle_default(name: str) -> None:
    obj = {"model": Model([1.0, 2.5]), "frame": qlib_frame(), "tuple": (1, "x")}
    back = loads(name, dumps(name, obj))
    assert back["model"] == obj["model"] and back["tuple"] == (1, "x")
    pd.testing.assert_frame_equal(back["frame"], obj["frame"])


def test_unpicklable_object() -> None:
    with pytest.raises(InvalidInputError, match="'fn.pkl'"):
        dumps("fn.pkl", lambda: None)


@pytest.mark.parametrize("name", ["pred.pkl", "task", "pred.parquet", "metrics.json"])
def test_corrupt_bytes_raise_load_object_error(name: str) -> None:
    with pytest.raises(LoadObjectError, match=re.escape(repr(name))) as info:
        loads(name, b"\xff\xfe definitely not a valid artifact")
    assert info.value.__cause__ is not None


def test_custom_unpickler_is_used() -> None:
    seen: list[tuple[str, str]] = []

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.append((module, name))
            return super().find_class(module, name)

    assert loads("model.pkl", dumps("model.pkl", Model([3.0])), unpickler=Recording) == Model([3.0])
    assert (__name__, "Model") in seen

    class Refusing(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")

    with pytest.raises(LoadObjectError, match="'model.pkl'.*refusing"):
        loads("model.pkl", dumps("model.pkl", Model([3.0])), unpickler=Refusing)


# -- validate_path as a property ------------------------------------------------------------------

SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "a", "b", "...", "C:", "\u00e9t\u00e9", "\u65e5\u672c", " "]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/"), max_size=4),
)


def expected_path(segments: list[str], absolute: bool) -> str | None:
    """An independent model: walk the segments, rejecting any step above the run's root."""
    if absolute or any(c in s for s in segments for c in "\\\x00"):
        return None
    stack: list[str] = []
    for seg in segments:
        if seg == "..":
            if not stack:
                return None
            stack.pop()
        elif seg not in ("", "."):
            stack.append(seg)
    if not stack or re.match("[A-Za-z]:", stack[0]):
        return None
    if any(s.startswith(TEMP_PREFIX) for s in stack):
        return None
    return "/".join(stack)


@given(segments=st.lists(SEGMENT, max_size=6), absolute=st.booleans(), trailing=st.booleans())
def test_validate_path_accepts_exactly_paths_inside_the_run(
    segments: list[str], absolute: bool, trailing: bool
) -> None:
    path = ("/" if absolute else "") + "/".join(segments) + ("/" if trailing else "")
    expected = expected_path(segments, absolute or path.startswith("/"))
    if expected is None:
        with pytest.raises(InvalidArtifactPath):
            validate_path(path)
        return
    assert validate_path(path) == expected
    assert validate_path(expected) == expected  # idempotent
    assert posixpath.normpath(f"/run/{expected}").startswith("/run/")


# -- atomicity against a real SIGKILL ------------------------------------------------------------

SIZE = 50 * 1024 * 1024
# The writer stores versions 1, 2, ... of big/blob.bin, each SIZE bytes of the version number.
# From version 2 on, "rename" stalls it with a complete temp file just before os.replace,
# "midwrite" feeds put_file through a FIFO and stalls halfway through the data, and "random"
# leaves the kill's timing to chance.
CHILD = """
import os, sys, threading, time
from tracker.artifacts import ArtifactStore

root, prefix, size, mode, work = sys.argv[1:6]
size = int(size)
store = ArtifactStore(root)
real_replace, version = os.replace, 0

def replace(src, dst):
    if mode == "rename" and version >= 2:
        print("stalled", version, flush=True)
        time.sleep(60)
    real_replace(src, dst)

def feed(fifo, data):
    with open(fifo, "wb") as f:
        f.write(data[: size // 2])
        f.flush()
        print("stalled", version, flush=True)
        time.sleep(60)

os.replace = replace
while True:
    version += 1
    data = bytes([version % 256]) * size
    print("start", version, flush=True)
    if mode == "midwrite" and version >= 2:
        fifo = os.path.join(work, "blob.bin")
        os.mkfifo(fifo)
        threading.Thread(target=feed, args=(fifo, data), daemon=True).start()
        entry = store.put_file(prefix, fifo, "big")
    else:
        entry = store.put_bytes(prefix, "big/blob.bin", data)
    print("done", version, entry.checksum, flush=True)
"""


def kill_writer_mid_write(root: str, work: str, mode: str) -> tuple[int, dict[int, str]]:
    """Run the writer, SIGKILL it mid-write; return the last started version and checksums."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, root, PREFIX, str(SIZE), mode, work],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    started, checksums = 0, {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, version, *rest = line.split()
            if word == "done":
                checksums[int(version)] = rest[0]
            elif word == "start":
                started = int(version)
                if mode == "random" and checksums:
                    threading.Event().wait(random.uniform(0.0, 0.05))
                    break
            elif word == "stalled":
                break
        else:
            pytest.fail(f"writer exited early with {proc.wait()}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return started, checksums


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX signals and FIFOs")
@pytest.mark.parametrize("mode", ["rename", "midwrite", "random"])
def test_sigkill_mid_write_leaves_old_or_new_version(tmp_path: Path, mode: str) -> None:
    root = str(tmp_path / "root")
    started, checksums = kill_writer_mid_write(root, str(tmp_path), mode)
    final = Path(root, PREFIX, "big", "blob.bin")
    data = final.read_bytes()  # version 1 completed, so the final name must exist
    assert len(data) == SIZE, f"partial artifact: {len(data)} of {SIZE} bytes"
    version = data[0]
    assert data == bytes([version]) * SIZE, "final file mixes two versions"
    assert 1 <= version <= started
    assert sha(data) == checksums.get(version, sha(bytes([version]) * SIZE))
    leftovers = [p.name for p in final.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    if mode != "random":
        assert version == 1 and leftovers, "the kill should land before the rename"
    store = ArtifactStore(root)
    assert [(e.path, e.size) for e in store.list_artifacts(PREFIX)] == [("big/blob.bin", SIZE)]
    assert store.get_bytes(PREFIX, "big/blob.bin") == data
    copied = store.download(PREFIX, "big", str(tmp_path / "copy"))
    assert sorted(read_tree(copied)) == ["blob.bin"]  # temp files are not artifacts
