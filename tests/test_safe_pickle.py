"""tracker.safe_pickle: the data types Qlib-style artifacts hold load as with pickle; names of
code, class rewrites and structures pandas would read out of bounds are refused, and nothing
a refused pickle names is ever called."""

from __future__ import annotations

import datetime
import functools
import os
import pickle
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas._libs.internals import BlockPlacement

from tracker.errors import LoadObjectError, UnsafeObjectError
from tracker.safe_pickle import ALLOWED, CodeReference, SafeUnpickler, safe_load, safe_loads

DATA = Path(__file__).parent / "data"


def pred_frame(days: int = 5) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=days)
    index = pd.MultiIndex.from_product(
        [dates, ["SH600000", "SH600001", "SZ000001"]], names=["datetime", "instrument"]
    )
    return pd.DataFrame({"score": np.linspace(-1, 1, len(index))}, index=index)


def mixed_frame() -> pd.DataFrame:
    n = 4
    return pd.DataFrame(
        {
            "f8": np.arange(n, dtype=float),
            "f4": np.arange(n, dtype="float32"),
            "i8": np.arange(n),
            "u1": np.arange(n, dtype="uint8"),
            "bool": np.arange(n) % 2 == 0,
            "obj": pd.Series([{"a": 1}, [1], None, 2.5], dtype=object),
            "str": ["a", None, "c", "d"],
            "string": pd.array(["x", None, "y", "z"], dtype="string"),
            "category": pd.Categorical(["u", "v", "u", None], ordered=True),
            "datetime": pd.date_range("2020-01-01", periods=n),
            "tz": pd.date_range("2020-01-01", periods=n, tz="Asia/Shanghai"),
            "timedelta": pd.to_timedelta(np.arange(n), unit="D"),
            "period": pd.period_range("2020-01", periods=n, freq="M"),
            "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
            "Float64": pd.array([1.5, None, 3, 4], dtype="Float64"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "arrow": pd.Series([1, 2, None, 4], dtype="int64[pyarrow]"),
        },
        index=pd.RangeIndex(10, 10 + n, name="row"),
    )


TASK = {  # a Qlib task as configs hold it: plain data only
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": {"lr": 0.1}},
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {"class": "Alpha158", "kwargs": {"instruments": "csi300", "end": None}},
            "segments": {
                "train": (pd.Timestamp("2008-01-01"), pd.Timestamp("2014-12-31")),
                "valid": (datetime.date(2015, 1, 1), "2016-12-31"),
                "test": (np.datetime64("2017-01-01"), None),
            },
        },
    },
    "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"}],
}

OBJECTS = {
    "pred": pred_frame,
    "mixed": mixed_frame,
    "series": lambda: pred_frame()["score"],
    "series_unnamed": lambda: pd.Series([1.0, np.nan]),
    "dict_of_frames": lambda: {"pred": pred_frame(), "label": pred_frame().rename(columns=str)},
    "task": lambda: TASK,
    "datetime_index_freq": lambda: pd.bdate_range("2020-01-01", periods=3, name="d"),
    "frequencies": lambda: [
        pd.date_range("2020", periods=2, freq=f) for f in ("D", "W-FRI", "ME", "QE", "YE", "h", "C")
    ],
    "index_kinds": lambda: [
        pd.Index(["a", "b"]),
        pd.Index([1, 2]),
        pd.Index([1.5]),
        pd.Index([True]),
        pd.TimedeltaIndex(["1D"]),
        pd.CategoricalIndex(["a", "b", "a"]),
        pd.period_range("2020", periods=2, freq="D"),
    ],
    "scalars": lambda: [
        pd.Timestamp("2020-01-02 03:04"),
        pd.Timestamp("2020-01-01", tz="UTC"),
        pd.Timestamp("2020-01-01", tz="Asia/Shanghai"),
        pd.Timedelta("1D"),
        pd.NaT,
        pd.NA,
        pd.Period("2020-01", "M"),
    ],
    "arrays": lambda: [
        np.arange(6.0).reshape(2, 3),
        np.asfortranarray(np.ones((2, 3))),
        np.array(["a", 1], dtype=object),
        np.array(["ab"]),
        np.array(["2020-01-01"], dtype="datetime64[ns]"),
        np.zeros(0),
    ],
    "numpy_scalars": lambda: [
        np.float64(1.5),
        np.int64(2),
        np.float32(3),
        np.bool_(True),
        np.datetime64("2020-01-01"),
        np.timedelta64(1, "D"),
        np.str_("x"),
        np.complex128(1j),
        np.dtype("M8[ns]"),
    ],
    "stdlib": lambda: [
        datetime.datetime(2020, 1, 1, 9, 30),
        datetime.date(2020, 1, 1),
        datetime.time(9, 30),
        datetime.timedelta(days=1),
        datetime.datetime(2020, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")),
        datetime.timezone(datetime.timedelta(hours=8)),
        1j,
        slice(1, 2),
        range(3),
        {1, 2},
        frozenset({3}),
        bytearray(b"ab"),
        b"\x00\xff",
        (1, "a"),
        None,
        True,
        10**30,
        float("nan"),
    ],
}


def assert_same(got: object, want: object) -> None:
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want)
    elif isinstance(want, pd.Index):
        pd.testing.assert_index_equal(got, want, exact=True)
        assert getattr(got, "freq", None) == getattr(want, "freq", None)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.flags.f_contiguous == want.flags.f_contiguous
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_same(a, b)
    elif want is pd.NA or want is pd.NaT:
        assert got is want
    elif isinstance(want, float) and np.isnan(want):
        assert np.isnan(got)
    else:
        assert type(got) is type(want) and got == want


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("name", list(OBJECTS))
def test_data_types_load_as_with_pickle(name, protocol):
    want = OBJECTS[name]()
    data = pickle.dumps(want, protocol=protocol)
    assert_same(safe_loads(data), pickle.loads(data))
    assert_same(safe_loads(data), want)


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocols_load(protocol):
    want = {"pred": pred_frame(), "series": pd.Series([1.5, 2.5], name="x"), "task": TASK}
    assert_same(safe_loads(pickle.dumps(want, protocol=protocol)), want)


def test_pickles_written_by_pandas2_and_numpy1_load():
    """Written by pandas 2.2.3 / numpy 1.26.4 (``numpy.core`` and ``pandas.core.*`` names) with
    Python's default protocol 4, as a Qlib user's store holds them; loads without the
    DeprecationWarning numpy 2 gives plain pickle for ``numpy.core`` (warnings are errors)."""
    with open(DATA / "pandas2_numpy1.pkl", "rb") as f:
        got = safe_load(f)
    dates = pd.bdate_range("2020-01-01", periods=4)
    index = pd.MultiIndex.from_product(
        [dates, ["SH600000", "SZ000001"]], names=["datetime", "instrument"]
    )
    want = pd.DataFrame({"score": np.arange(8) / 10}, index=index)
    pd.testing.assert_frame_equal(
        got["pred"], want, check_index_type=False, check_column_type=False
    )
    assert got["label"].tolist() == ["up", "down"] * 4 and got["label"].name == "LABEL0"
    assert got["segments"]["train"][1] == pd.Timestamp("2020-01-03")


def test_allow_list_names_only_data_types():
    """No entry is a function of the stdlib or a module that runs code, reads files or looks up
    arbitrary attributes."""
    banned_modules = {"os", "posix", "subprocess", "sys", "importlib", "runpy", "pickle", "io"}
    banned_names = {"eval", "exec", "compile", "getattr", "__import__", "open", "partial"}
    for entry in ALLOWED:
        module, _, name = entry.rpartition(".")
        assert module.split(".")[0] not in banned_modules and name not in banned_names, entry


# ------------------------------------------------------------------------------ refusals


class Payload:
    """Reduces to ``func(*args)``: what a malicious pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE


def global_call(module: str, name: str, arg: str, protocol: int) -> bytes:
    """A hand-written pickle calling ``module.name(arg)``: protocol 2 names it with GLOBAL,
    protocol 4 with STACK_GLOBAL (which also takes dotted names such as ``DataFrame.eval``)."""
    if protocol == 2:
        head = f"c{module}\n{name}\n".encode()
    else:
        head = _str(module) + _str(name) + b"\x93"
    return bytes([0x80, protocol]) + head + _str(arg) + b"\x85R."


DANGEROUS = [
    ("posix", "system"),
    ("os", "system"),
    ("os", "popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("builtins", "__import__"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "globals"),
    ("builtins", "type"),
    ("functools", "partial"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("importlib", "import_module"),
    ("runpy", "run_path"),
    ("pickle", "loads"),
    ("codecs", "decode"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("numpy", "load"),
    ("numpy", "frombuffer"),
    ("numpy.testing._private.utils", "runstring"),
    ("pandas", "read_pickle"),
    ("pandas", "eval"),
    ("pandas", "DataFrame.eval"),
    ("pandas", "DataFrame.query"),
    ("pandas.core.frame", "DataFrame.eval"),
    ("zoneinfo", "ZoneInfo._unpickle"),
    ("types", "FunctionType"),
]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("module, name", DANGEROUS)
def test_globals_that_can_run_code_are_refused(module, name, protocol, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(UnsafeObjectError) as caught:
        safe_loads(global_call(module, name, f"touch {marker}", protocol))
    error = caught.value
    reference = f"{module}.{name}"
    assert error.reference == reference and reference in str(error)
    assert isinstance(error, pickle.UnpicklingError) and isinstance(error, LoadObjectError)
    assert not marker.exists()


def test_a_real_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    for payload in (
        Payload(os.system, f"touch {marker}"),
        Payload(subprocess.call, ["touch", str(marker)]),
        Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        Payload(functools.partial(os.system, f"touch {marker}")),
        {"pred": pred_frame(), "hidden": [Payload(os.system, f"touch {marker}")]},
    ):
        data = pickle.dumps(payload, protocol=5)
        with pytest.raises(UnsafeObjectError, match="refers to"):
            safe_loads(data)
        placeholder = safe_loads(data, placeholders=True)  # nothing runs either way
        assert "<not shown: contains code reference" in repr(placeholder)
    assert not marker.exists()


def test_placeholders_keep_the_data_around_a_code_reference():
    task = {**TASK, "model": {"class": SafeUnpickler, "kwargs": {"lr": 0.1}}}
    got = safe_loads(pickle.dumps(task, protocol=5), placeholders=True)
    ref = got["model"]["class"]
    assert issubclass(ref, CodeReference) and ref.reference == "tracker.safe_pickle.SafeUnpickler"
    assert str(ref) == "<not shown: contains code reference tracker.safe_pickle.SafeUnpickler>"
    assert got["dataset"] == TASK["dataset"] and got["model"]["kwargs"] == {"lr": 0.1}


@pytest.mark.parametrize(
    "data, reference",
    [  # getattr only for ZoneInfo._unpickle: not to reach a method of an allowed class
        (b"\x80\x02cbuiltins\ngetattr\ncpandas\nDataFrame\n" + _str("eval") + b"\x86R.", "getattr"),
        (b"\x80\x02c_codecs\nencode\n" + _str("a") + _str("rot13") + b"\x86R.", "_codecs.encode"),
        (
            b"\x80\x02ccopyreg\n_reconstructor\ncpandas\nIndex\ncpandas\nDataFrame\nN\x87R.",
            "_reconstructor",
        ),
    ],
)
def test_checked_wrappers_refuse_other_uses(data, reference):
    with pytest.raises(UnsafeObjectError, match=reference):
        safe_loads(data)


def test_a_pickle_cannot_rewrite_a_class():
    """BUILD with slot state on a class is setattr on it: plain pickle lets a file replace
    ``pandas.Index.__len__`` for the whole process."""
    data = b"\x80\x02cpandas\nIndex\nN}" + _str("__len__") + b"cbuiltins\nslice\ns\x86b."
    before = vars(pd.Index)["__len__"]
    with pytest.raises(UnsafeObjectError, match="sets attributes of a class"):
        safe_loads(data)
    assert vars(pd.Index)["__len__"] is before and len(pd.Index([1, 2])) == 2


# ------------------------------------------------------------------ crafted structures


def bad_placement() -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    frame._mgr.blocks[0].mgr_locs = BlockPlacement(np.array([10_000_000]))
    return frame


def bad_multiindex_codes() -> pd.Series:
    index = pd.MultiIndex(
        levels=[["a", "b"], [1, 2]], codes=[[0, 5], [0, 1]], verify_integrity=False
    )
    return pd.Series([1.0, 2.0], index=index)


def bad_categorical_codes() -> pd.DataFrame:
    cat = pd.Categorical.from_codes([0, 1], categories=["a", "b"])
    cat._ndarray[1] = 100
    return pd.DataFrame({"c": cat})


def bad_mask() -> pd.Series:
    array = pd.array([1, 2], dtype="Int64")
    array._mask = np.zeros(1000, dtype=bool)
    return pd.Series(array)


def short_arrow_buffer() -> object:
    """An int64 array claiming 1000 values over an empty buffer."""
    state = (pa.int64(), 1000, 0, 0, [None, pa.py_buffer(b"")], [], None)
    return Payload(pa.lib._restore_array, state)


@pytest.mark.parametrize(
    "make, message",
    [
        (bad_placement, "BlockManager with block placements outside"),
        (bad_multiindex_codes, "MultiIndex with codes outside"),
        (bad_categorical_codes, "Categorical with codes outside"),
        (bad_mask, "a mask that does not match"),
        (lambda: np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]), "structured dtype"),
        (lambda: [{"deep": pd.Series([bad_categorical_codes()], dtype=object)}], "Categorical"),
    ],
)
def test_structures_pandas_would_read_out_of_bounds_are_refused(make, message):
    """Plain pickle loads these, and the first display reads (or writes) out of bounds: the
    placement case segfaults CPython. Wherever they hide in the result, they are refused."""
    with pytest.raises(UnsafeObjectError, match=message):
        safe_loads(pickle.dumps(make(), protocol=5))  # broken in place: as if written by hand


def test_arrow_arrays_are_validated():
    with pytest.raises(pa.ArrowInvalid, match="(?i)buffer"):
        safe_loads(pickle.dumps(short_arrow_buffer(), protocol=5))
